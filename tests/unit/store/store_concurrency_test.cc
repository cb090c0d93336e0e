// Group commit and its edges: concurrent writers, LWW inside one group, the write queue
// bound, close() draining, a failing transaction, and readers running beside the writers.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "common/random.h"
#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

TEST(StoreGroupCommitTest, ConcurrentWritersShareCommitGroups) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 300;
  Acks acks;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        store->apply(put(key, "value of " + key, hlc_at(i), t + 1), kNow, acks.callback());
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(acks.wait_for(kThreads * kPerThread));
  EXPECT_TRUE(acks.errors().empty());
  for (const ApplyResult& r : acks.results()) EXPECT_TRUE(r.applied);

  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.group_writes, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.commit_groups, stats.group_writes);
  EXPECT_EQ(stats.keys, static_cast<uint64_t>(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
      Result<Record> got = store->get(key, kNow);
      ASSERT_TRUE(got.ok()) << key;
      EXPECT_EQ(got->value, "value of " + key);
    }
  }
}

// Whether every writer thread of this process ("edgekv-wr<N>") is asleep, i.e. waiting
// for work: state S in /proc (a writer doing I/O would be D or R).
bool writers_asleep() {
  int writers = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("edgekv-wr", 0) != 0) continue;
    ++writers;
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ...: the state follows the last ')'.
    size_t close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'S') {
      return false;
    }
  }
  return writers > 0;
}

TEST(StoreGroupCommitTest, WritesSubmittedInAWakeBatchCommitAsOneGroupWhenItEnds) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  auto store = open_or_die(options);
  constexpr int kWrites = 100;
  // A writer that is awake takes whatever is queued, woken or not: start from one asleep.
  ASSERT_TRUE(eventually(writers_asleep));
  const uint64_t groups_before = store->stats(kNow).commit_groups;
  Acks acks;
  {
    // The writer sleeps until the batch ends, so it finds every write queued: without the
    // batch, it would wake for the first and commit the others in later groups.
    WakeBatch batch;
    for (int i = 0; i < kWrites; ++i) {
      store->apply(put("k" + std::to_string(i), "v", hlc_at(0)), kNow, acks.callback());
    }
  }
  ASSERT_TRUE(acks.wait_for(kWrites));
  EXPECT_TRUE(acks.errors().empty());
  EXPECT_EQ(store->stats(kNow).commit_groups - groups_before, 1u);
  EXPECT_EQ(store->stats(kNow).group_writes, static_cast<uint64_t>(kWrites));

  // Nested batches defer until the outermost ends; a synchronous write inside one wakes
  // what was deferred instead of waiting for a writer nobody woke.
  Acks more;
  {
    WakeBatch outer;
    {
      WakeBatch inner;
      store->apply(put("deferred", "v", hlc_at(1)), kNow, more.callback());
    }
    Result<ApplyResult> sync = store->apply_sync(put("sync", "v", hlc_at(1)), kNow);
    ASSERT_TRUE(sync.ok()) << sync.status().to_string();
    EXPECT_TRUE(sync->applied);
    ASSERT_TRUE(more.wait_for(1));
  }
  EXPECT_TRUE(store->get("deferred", kNow).ok());
}

TEST(StoreGroupCommitTest, WritesToOneKeyInOneGroupObeyLwwInSubmissionOrder) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;  // one writer, so that the gate holds every write
  auto store = open_or_die(options);
  Gate gate;
  ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));
  const uint64_t groups_before = store->stats(kNow).commit_groups;

  Acks acks;
  store->apply(put("k", "a", hlc_at(10)), kNow, acks.callback());
  store->apply(put("k", "b (older)", hlc_at(5)), kNow, acks.callback());
  store->apply(put("k", "c", hlc_at(20)), kNow, acks.callback());
  store->apply(tombstone("k", hlc_at(15)), kNow, acks.callback());
  store->apply(put("k", "d (equal)", hlc_at(20)), kNow, acks.callback());
  store->apply(tombstone("k2", hlc_at(20)), kNow, acks.callback());
  store->apply(put("k2", "e (older than the tombstone)", hlc_at(19)), kNow, acks.callback());
  gate.open();
  ASSERT_TRUE(acks.wait_for(7));
  ASSERT_TRUE(acks.errors().empty());

  std::vector<ApplyResult> results = acks.results();
  ASSERT_EQ(results.size(), 7u);
  std::vector<bool> applied;
  for (const ApplyResult& r : results) applied.push_back(r.applied);
  EXPECT_EQ(applied, (std::vector<bool>{true, false, true, false, false, true, false}));
  EXPECT_EQ(results[1].current, (Version{hlc_at(10), 1}));
  EXPECT_EQ(results[3].current, (Version{hlc_at(20), 1}));
  EXPECT_EQ(store->get("k", kNow)->value, "c");
  EXPECT_EQ(store->get("k2", kNow).status().code(), Code::kNotFound);
  // All seven were one transaction.
  EXPECT_EQ(store->stats(kNow).commit_groups, groups_before + 1);
}

TEST(StoreGroupCommitTest, FullWriteQueueAnswersOverloadedAtOnce) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.write_queue_max = 4;
  auto store = open_or_die(options);
  Gate gate;
  ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));

  Acks queued;
  for (int i = 0; i < 4; ++i) {
    store->apply(put("k" + std::to_string(i), "v", hlc_at(0)), kNow, queued.callback());
  }
  // Refusals are answered on this thread before apply() returns; the shared state keeps
  // a wrongly queued write's late callback harmless.
  auto overloaded = std::make_shared<std::optional<Status>>();
  store->apply(put("one too many", "v", hlc_at(0)), kNow,
               [overloaded](Result<ApplyResult> r) { *overloaded = r.status(); });
  ASSERT_TRUE(overloaded->has_value());
  EXPECT_EQ((*overloaded)->code(), Code::kOverloaded);
  auto sweep_refused = std::make_shared<std::optional<Status>>();
  store->sweep(kNow, 10, [sweep_refused](Result<std::vector<ChangeEvent>> r) {
    *sweep_refused = r.status();
  });
  ASSERT_TRUE(sweep_refused->has_value());
  EXPECT_EQ((*sweep_refused)->code(), Code::kOverloaded);

  gate.open();
  ASSERT_TRUE(queued.wait_for(4));
  EXPECT_TRUE(queued.errors().empty());
  EXPECT_EQ(store->get("one too many", kNow).status().code(), Code::kNotFound);
  // Room again once the writer took the queue.
  EXPECT_TRUE(store->apply_sync(put("later", "v", hlc_at(0)), kNow)->applied);
}

TEST(StoreGroupCommitTest, CloseCommitsEverythingQueuedThenRefusesWrites) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  auto store = open_or_die(options);
  Gate gate;
  ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));
  Acks acks;
  constexpr int kQueued = 100;
  for (int i = 0; i < kQueued; ++i) {
    store->apply(put("q" + std::to_string(i), "v", hlc_at(0)), kNow, acks.callback());
  }

  std::thread closer([&] { store->close(); });
  // Writes submitted before close() began are queued (and committed) too; from the moment
  // it began they are refused at once.
  // Each attempt gets its own answer slot: an accepted write calls back much later.
  struct Answer {
    std::atomic<bool> answered{false};
    Status status;
  };
  int accepted_late = 0;
  Status refused;
  Acks late_acks;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    auto answer = std::make_shared<Answer>();
    store->apply(put("late" + std::to_string(accepted_late), "v", hlc_at(0)), kNow,
                 [answer, ack = late_acks.callback()](Result<ApplyResult> r) {
                   answer->status = r.status();
                   answer->answered = true;
                   ack(std::move(r));
                 });
    if (answer->answered) {  // at once: refused
      refused = answer->status;
      break;
    }
    ++accepted_late;
    std::this_thread::yield();
  }
  EXPECT_EQ(refused.code(), Code::kUnavailable);
  gate.open();
  closer.join();

  // close() returned only after every queued callback ran.
  EXPECT_EQ(acks.results().size(), static_cast<size_t>(kQueued));
  EXPECT_TRUE(acks.errors().empty());
  EXPECT_EQ(late_acks.results().size(), static_cast<size_t>(accepted_late));
  EXPECT_EQ(store->get("q0", kNow).status().code(), Code::kUnavailable);
  EXPECT_EQ(store->sweep_sync(kNow, 10).status().code(), Code::kUnavailable);
  store->close();  // idempotent

  auto reopened = open_or_die(options);
  for (int i = 0; i < kQueued; ++i) {
    EXPECT_TRUE(reopened->get("q" + std::to_string(i), kNow).ok()) << i;
  }
  for (int i = 0; i < accepted_late; ++i) {
    EXPECT_TRUE(reopened->get("late" + std::to_string(i), kNow).ok()) << i;
  }
}

TEST(StoreGroupCommitTest, AFailedTransactionFailsEveryWriteInItAndAppliesNone) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 1;
  options.db_files = 1;
  options.max_db_bytes = 64 * 1024;  // a small "disk"
  auto store = open_or_die(options);
  ASSERT_TRUE(store->apply_sync(put("before", "v", hlc_at(0)), kNow)->applied);
  const uint64_t seq_before = store->last_seq(0);
  const uint64_t groups_before = store->stats(kNow).commit_groups;

  Gate gate;
  ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));
  Acks acks;
  store->apply(put("small-1", "v", hlc_at(1)), kNow, acks.callback());
  store->apply(put("small-2", "v", hlc_at(1)), kNow, acks.callback());
  std::string huge(256 * 1024, '\0');
  Random rng(7);
  for (char& c : huge) c = static_cast<char>(rng.next());  // incompressible: really 256 KiB
  store->apply(put("huge", huge, hlc_at(1)), kNow, acks.callback());
  store->apply(put("small-3", "v", hlc_at(1)), kNow, acks.callback());
  gate.open();
  ASSERT_TRUE(acks.wait_for(4));
  std::vector<Status> errors = acks.errors();
  ASSERT_EQ(errors.size(), 4u);
  for (const Status& s : errors) EXPECT_EQ(s.code(), Code::kIoError) << s.to_string();

  for (const char* key : {"small-1", "small-2", "huge", "small-3"}) {
    EXPECT_EQ(store->get(key, kNow).status().code(), Code::kNotFound) << key;
  }
  EXPECT_EQ(store->last_seq(0), seq_before + 1);  // only the gate's write
  EXPECT_EQ(store->stats(kNow).commit_groups, groups_before + 1);
  EXPECT_EQ(store->stats(kNow).keys, 2u);

  // The store goes on; sequence numbers stay gapless after the rolled-back group.
  Result<ApplyResult> after = store->apply_sync(put("after", "v", hlc_at(2)), kNow);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(after->event.seq, seq_before + 2);
  Result<std::vector<ChangeEvent>> log = store->read_changes(0, 0, 100);
  ASSERT_TRUE(log.ok());
  for (size_t i = 0; i < log->size(); ++i) EXPECT_EQ((*log)[i].seq, i + 1);
}

TEST(StoreGroupCommitTest, CheckpointsRunOffTheCommitPathAndBoundTheWal) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  options.stage_apply_at = std::min<size_t>(options.stage_apply_at, 64);
  options.stage_apply_batch = 64;
  options.checkpoint_pages = 32;  // the writer checkpoints inline at 128
  const std::filesystem::path wal = dir.data() / "data-0.db-wal";
  constexpr int kWrites = 3000;  // each commit adds a few pages: thousands without checkpoints
  constexpr uintmax_t kWalBoundBytes = 1500 * 4120;  // frames of 4 KiB plus their headers
  {
    auto store = open_or_die(options);
    uintmax_t largest_wal = 0;
    for (int i = 0; i < kWrites; ++i) {
      ASSERT_TRUE(
          store->apply_sync(put("k" + std::to_string(i), std::string(1000, 'v'), hlc_at(0)), kNow)
              .ok());
      largest_wal = std::max(largest_wal, std::filesystem::file_size(wal));
    }
    EXPECT_GT(store->stats(kNow).checkpoints, 0u);
    // The WAL starts over after each checkpoint, so its file never outgrows the inline
    // threshold by more than the commits of one stalled background checkpoint.
    EXPECT_LT(largest_wal, kWalBoundBytes);
  }
  auto store = open_or_die(options);
  EXPECT_EQ(store->stats(kNow).keys, static_cast<uint64_t>(kWrites));
  for (int i = 0; i < kWrites; i += 97) {
    Result<Record> got = store->get("k" + std::to_string(i), kNow);
    ASSERT_TRUE(got.ok()) << i;
    EXPECT_EQ(got->value, std::string(1000, 'v'));
  }
}

TEST(StoreGroupCommitTest, ReadersRunBesideWriters) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.read_connections_max = 2;  // fewer than the readers: some wait for a connection
  auto store = open_or_die(options);
  constexpr int kKeys = 200;
  std::atomic<bool> done{false};
  std::atomic<int> read_errors{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&, r] {
      Random rng(r);
      while (!done.load()) {
        std::string key = "k" + std::to_string(rng.uniform(kKeys));
        Result<Record> got = store->get(key, kNow);
        if (!got.ok() && got.status().code() != Code::kNotFound) ++read_errors;
        if (got.ok() && got->value != "v-" + key) ++read_errors;
        Result<std::vector<ChangeEvent>> changes =
            store->read_changes(static_cast<uint32_t>(rng.uniform(64)), 0, 20);
        if (!changes.ok()) ++read_errors;
        (void)store->stats(kNow);
        ++reads;
      }
    });
  }
  // Half the writes, then wait for reads to finish among them, then the other half: a fast
  // writer must not finish before any reader has run (threads may start late).
  Acks acks;
  auto write = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      std::string key = "k" + std::to_string(i);
      store->apply(put(key, "v-" + key, hlc_at(0)), kNow, acks.callback());
    }
  };
  write(0, kKeys / 2);
  EXPECT_TRUE(eventually([&] { return reads.load() >= 4; }));
  const int reads_before_second_half = reads.load();
  write(kKeys / 2, kKeys);
  EXPECT_TRUE(eventually([&] { return reads.load() > reads_before_second_half; }));
  ASSERT_TRUE(acks.wait_for(kKeys));
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(read_errors.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_TRUE(acks.errors().empty());
}

}  // namespace
}  // namespace edgekv::store
