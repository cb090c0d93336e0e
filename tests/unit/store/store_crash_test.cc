// Crash safety: a child process applies writes in a loop and reports each acknowledged key
// through a pipe; the parent kills it with SIGKILL mid-burst, reopens the directory and
// checks that every acknowledged write survived.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <semaphore>

#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

constexpr uint64_t kAcksBeforeKill = 3000;
constexpr int kWritesInFlight = 64;

std::string crash_key(uint64_t i) { return "crash-" + std::to_string(i); }
std::string crash_value(uint64_t i) { return "value-" + std::to_string(i) + std::string(100, 'x'); }

// The child: never returns. Writes until killed; each callback reports its key's index.
[[noreturn]] void write_until_killed(const StoreOptions& options, int ack_fd) {
  Result<std::unique_ptr<Store>> store = Store::open(options);
  if (!store.ok()) _exit(2);
  std::counting_semaphore<kWritesInFlight> slots(kWritesInFlight);
  for (uint64_t i = 0;; ++i) {
    slots.acquire();
    (*store)->apply(put(crash_key(i), crash_value(i), hlc_at(0)), kNow,
                    [i, ack_fd, &slots](Result<ApplyResult> r) {
                      if (!r.ok() || !r->applied) _exit(3);
                      // After the commit: the key is acknowledged from here on.
                      if (write(ack_fd, &i, sizeof i) != sizeof i) _exit(4);
                      slots.release();
                    });
  }
}

void check_acknowledged_writes_survive_sigkill(SyncMode sync) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.sync = sync;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    close(fds[0]);
    write_until_killed(options, fds[1]);
  }
  close(fds[1]);

  std::vector<uint64_t> acked;
  auto read_ack = [&]() {
    uint64_t i = 0;
    size_t got = 0;
    while (got < sizeof i) {
      ssize_t n = read(fds[0], reinterpret_cast<char*>(&i) + got, sizeof i - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    acked.push_back(i);
    return true;
  };
  // Blocking reads: the pipe reports EOF if the child dies early, so this cannot hang.
  while (acked.size() < kAcksBeforeKill && read_ack()) {
  }
  ASSERT_EQ(acked.size(), kAcksBeforeKill) << "the child stopped early";
  ASSERT_EQ(kill(child, SIGKILL), 0);
  while (read_ack()) {  // acks written before the kill landed
  }
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child exited with status " << wstatus;

  auto store = open_or_die(options);
  size_t missing = 0;
  for (uint64_t i : acked) {
    Result<Record> got = store->get(crash_key(i), kNow);
    if (!got.ok() || got->value != crash_value(i)) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged writes";
  // Sequence numbers resumed where the log ends.
  for (uint32_t p = 0; p < store->partitions(); ++p) {
    Result<std::vector<ChangeEvent>> log = store->read_changes(p, 0, 1'000'000);
    ASSERT_TRUE(log.ok());
    for (size_t k = 0; k < log->size(); ++k) ASSERT_EQ((*log)[k].seq, k + 1);
    EXPECT_EQ(store->last_seq(p), log->size());
  }
}

TEST(StoreCrashTest, AcknowledgedWritesSurviveSigkillWithSyncNormal) {
  check_acknowledged_writes_survive_sigkill(SyncMode::kNormal);
}

TEST(StoreCrashTest, AcknowledgedWritesSurviveSigkillWithSyncFull) {
  check_acknowledged_writes_survive_sigkill(SyncMode::kFull);
}

}  // namespace
}  // namespace edgekv::store
