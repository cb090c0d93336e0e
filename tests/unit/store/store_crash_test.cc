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
#include <string>
#include <vector>

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

// Drops under kill -9: a child fills one partition (and another), drops the first and
// reports through a pipe; the parent kills it, reopens the directory and finds the
// partition whole or empty, never in between.
constexpr int kDropKeys = 3000;
constexpr uint32_t kDropPartition = 1;

// The child's keys of `partition`, kDropKeys of them.
std::vector<std::string> drop_keys(const Store& store, uint32_t partition) {
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < kDropKeys; ++i) {
    std::string k = "drop-" + std::to_string(i);
    if (store.partition_of(k) == partition) keys.push_back(std::move(k));
  }
  return keys;
}

// The child: never returns. Writes byte 'F' once the partition is filled (followed by its
// last_seq), submits the drop, and writes 'D' once the drop is acknowledged.
[[noreturn]] void fill_and_drop(const StoreOptions& options, int ack_fd) {
  Result<std::unique_ptr<Store>> opened = Store::open(options);
  if (!opened.ok()) _exit(2);
  Store& store = **opened;
  Acks acks;
  for (uint32_t p : {kDropPartition, kDropPartition + 1}) {
    const std::vector<std::string> keys = drop_keys(store, p);
    for (int i = 0; i < kDropKeys; ++i) {
      store.apply(put(keys[i], crash_value(i), hlc_at(0)), kNow, acks.callback());
    }
  }
  if (!acks.wait_for(2 * kDropKeys) || !acks.errors().empty()) _exit(3);
  const uint64_t seq = store.last_seq(kDropPartition);
  char filled[1 + sizeof seq] = {'F'};
  std::memcpy(filled + 1, &seq, sizeof seq);
  if (write(ack_fd, filled, sizeof filled) != sizeof filled) _exit(4);
  store.drop_partition(kDropPartition, kNow, [ack_fd](Status status) {
    if (!status.ok()) _exit(5);
    if (write(ack_fd, "D", 1) != 1) _exit(4);
  });
  for (;;) pause();
}

// Kills the child once it reported `until` ('F': filled, the drop just submitted; 'D': the
// drop acknowledged); returns the partition's last_seq before the drop.
uint64_t run_drop_child_until(const StoreOptions& options, char until) {
  int fds[2];
  EDGEKV_ASSERT(pipe(fds) == 0);
  pid_t child = fork();
  EDGEKV_ASSERT(child >= 0);
  if (child == 0) {
    close(fds[0]);
    fill_and_drop(options, fds[1]);
  }
  close(fds[1]);
  auto read_exact = [&](void* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(fds[0], static_cast<char*>(out) + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  };
  char tag = 0;
  uint64_t seq = 0;
  EXPECT_TRUE(read_exact(&tag, 1) && tag == 'F' && read_exact(&seq, sizeof seq))
      << "the child stopped before filling the partition";
  if (until == 'D') {
    EXPECT_TRUE(read_exact(&tag, 1) && tag == 'D') << "the drop was not acknowledged";
  }
  EXPECT_EQ(kill(child, SIGKILL), 0);
  close(fds[0]);
  int wstatus = 0;
  EXPECT_EQ(waitpid(child, &wstatus, 0), child);
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child exited with status " << wstatus;
  return seq;
}

// The partition's rows: how many of the child's keys are there, checked against its digest.
int rows_left(Store& store, uint32_t partition) {
  int left = 0;
  const std::vector<std::string> keys = drop_keys(store, partition);
  for (int i = 0; i < kDropKeys; ++i) {
    Result<Record> got = store.get(keys[i], kNow);
    if (got.ok()) {
      EXPECT_EQ(got->value, crash_value(i));
      ++left;
    }
  }
  Result<PartitionDigest> digest = store.digest(partition);
  EXPECT_TRUE(digest.ok());
  if (digest.ok()) {
    EXPECT_EQ(digest->entries, static_cast<uint64_t>(left));
  }
  return left;
}

// Both ways a drop goes: tables dropped (a large partition) and rows deleted (a small one).
constexpr uint64_t kDropWays[] = {0, uint64_t{1} << 30};

const char* drop_way(uint64_t drop_by_delete_rows) {
  return drop_by_delete_rows == 0 ? "tables dropped" : "rows deleted";
}

TEST(StoreCrashTest, AnAcknowledgedDropSurvivesSigkill) {
  for (uint64_t way : kDropWays) {
    SCOPED_TRACE(drop_way(way));
    TempDir dir;
    StoreOptions options = options_for(dir);
    options.partitions = 8;
    options.drop_by_delete_rows = way;
    const uint64_t seq = run_drop_child_until(options, 'D');
    auto store = open_or_die(options);
    EXPECT_EQ(rows_left(*store, kDropPartition), 0);
    EXPECT_EQ(rows_left(*store, kDropPartition + 1), kDropKeys);
    EXPECT_GE(store->last_seq(kDropPartition), seq);
    EXPECT_TRUE(store->digest_entries(kDropPartition, {0, 1, 2, 3}, 100)->empty());
  }
}

TEST(StoreCrashTest, ADropCutShortBySigkillLeavesThePartitionWholeOrEmpty) {
  for (uint64_t way : kDropWays) {
    SCOPED_TRACE(drop_way(way));
    TempDir dir;
    StoreOptions options = options_for(dir);
    options.partitions = 8;
    options.drop_by_delete_rows = way;
    const uint64_t seq = run_drop_child_until(options, 'F');
    auto store = open_or_die(options);
    const int left = rows_left(*store, kDropPartition);
    EXPECT_TRUE(left == 0 || left == kDropKeys) << left << " rows left of " << kDropKeys;
    EXPECT_EQ(rows_left(*store, kDropPartition + 1), kDropKeys);
    EXPECT_EQ(store->last_seq(kDropPartition), seq);
  }
}

}  // namespace
}  // namespace edgekv::store
