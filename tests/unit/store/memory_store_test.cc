// What the MemoryStore adds to the store contract (store_conformance_test.cc covers that):
// commits run by the caller's scheduler, in order, and crashes that lose what no commit
// (or, for a power cut with sync=normal, no sync) covered.
#include "store/memory_store.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of the store suites

// A scheduler that holds every commit until the test runs it.
struct Held {
  std::vector<std::function<void()>> commits;
  MemoryStore::Scheduler scheduler() {
    return [this](std::function<void()> commit) { commits.push_back(std::move(commit)); };
  }
  void run_all() {
    while (!commits.empty()) {
      std::vector<std::function<void()>> now;
      now.swap(commits);
      for (auto& commit : now) commit();
    }
  }
};

std::unique_ptr<MemoryStore> open_memory(const StoreOptions& options, Held& held) {
  Result<std::unique_ptr<MemoryStore>> store = MemoryStore::open(options, held.scheduler());
  EDGEKV_ASSERT(store.ok());
  return std::move(*store);
}

// Records the order callbacks ran in, by label.
struct Calls {
  std::vector<std::string> order;
  std::vector<Result<ApplyResult>> results;
  Store::ApplyCallback on(std::string label) {
    return [this, label](Result<ApplyResult> r) {
      order.push_back(label);
      results.push_back(std::move(r));
    };
  }
};

TEST(MemoryStoreTest, NothingIsDoneUntilItsCommitRuns) {
  Held held;
  auto store = open_memory(StoreOptions{}, held);
  Calls calls;
  store->apply(put("k", "v", hlc_at(0)), kNow, calls.on("put"));
  EXPECT_TRUE(calls.order.empty());
  EXPECT_EQ(store->pending(), 1u);
  EXPECT_EQ(held.commits.size(), 1u);
  // Not visible before its commit: reads see what a crash would leave.
  EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->last_seq(store->partition_of("k")), 0u);
  held.run_all();
  ASSERT_EQ(calls.order, std::vector<std::string>{"put"});
  EXPECT_TRUE(calls.results[0]->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "v");
  EXPECT_EQ(store->pending(), 0u);
}

TEST(MemoryStoreTest, ACommitCoversEveryOperationBeforeItInOrder) {
  Held held;
  auto store = open_memory(StoreOptions{}, held);
  Calls calls;
  store->apply(put("k", "one", hlc_at(1)), kNow, calls.on("one"));
  store->apply(put("k", "two", hlc_at(2)), kNow, calls.on("two"));
  std::optional<size_t> swept;
  store->sweep(kNow, 10, [&](Result<std::vector<ChangeEvent>> r) {
    calls.order.push_back("sweep");
    swept = r->size();
  });
  store->apply(put("k", "old", hlc_at(0)), kNow, calls.on("old"));
  ASSERT_EQ(held.commits.size(), 4u);
  held.commits[2]();  // the sweep's: it commits the two puts before it, first
  EXPECT_EQ(calls.order, (std::vector<std::string>{"one", "two", "sweep"}));
  EXPECT_EQ(swept, 0u);
  EXPECT_EQ(store->get("k", kNow)->value, "two");
  held.commits[0]();  // already committed: nothing happens
  held.commits[1]();
  EXPECT_EQ(calls.order.size(), 3u);
  held.commits[3]();
  EXPECT_EQ(calls.order, (std::vector<std::string>{"one", "two", "sweep", "old"}));
  EXPECT_FALSE(calls.results[2]->applied);
  EXPECT_EQ(store->stats(kNow).commit_groups, 2u);
}

TEST(MemoryStoreTest, ACallbackMayQueueMoreWork) {
  Held held;
  auto store = open_memory(StoreOptions{}, held);
  Calls calls;
  store->apply(put("a", "v", hlc_at(0)), kNow, [&](Result<ApplyResult>) {
    store->apply(put("b", "v", hlc_at(0)), kNow, calls.on("b"));
  });
  held.run_all();
  EXPECT_EQ(calls.order, std::vector<std::string>{"b"});
  EXPECT_TRUE(store->get("b", kNow).ok());
}

TEST(MemoryStoreTest, AProcessCrashLosesWhatWasNotCommitted) {
  Held held;
  auto store = open_memory(StoreOptions{}, held);
  Calls calls;
  store->apply(put("kept", "v", hlc_at(0)), kNow, calls.on("kept"));
  held.run_all();
  store->apply(put("lost", "v", hlc_at(0)), kNow, calls.on("lost"));
  store->apply_hint("node-b", put("lost-hint", "v", hlc_at(0)), kNow, calls.on("lost-hint"));
  store->crash();
  held.run_all();  // the lost writes' commits, run late, do nothing
  EXPECT_EQ(calls.order, std::vector<std::string>{"kept"});

  // Down until reopened.
  EXPECT_EQ(store->get("kept", kNow).status().code(), Code::kUnavailable);
  store->apply(put("x", "v", hlc_at(0)), kNow, calls.on("while down"));
  EXPECT_EQ(calls.results.back().status().code(), Code::kUnavailable);
  EXPECT_TRUE(held.commits.empty());

  store->reopen();
  EXPECT_EQ(store->get("kept", kNow)->value, "v");
  EXPECT_EQ(store->get("lost", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->read_hint("lost-hint", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->stats(kNow).puts_applied, 0u);  // counters start again, as in a new process
  EXPECT_EQ(store->stats(kNow).keys, 1u);
  // The lost write's seq is given again: it never was in the log.
  const uint32_t p = store->partition_of("kept");
  store->apply(put("kept", "again", hlc_at(1)), kNow, calls.on("again"));
  held.run_all();
  EXPECT_EQ(calls.results.back()->event.seq, 2u);
  EXPECT_EQ(store->last_seq(p), 2u);
}

TEST(MemoryStoreTest, APowerCutWithSyncFullLosesNothingCommitted) {
  Held held;
  StoreOptions options;
  options.sync = SyncMode::kFull;
  options.partitions = 1;
  auto store = open_memory(options, held);
  for (int i = 0; i < 10; ++i) store->apply(put("k" + std::to_string(i), "v", hlc_at(i)), kNow, {});
  held.run_all();
  store->apply(put("uncommitted", "v", hlc_at(0)), kNow, {});
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_EQ(store->last_seq(0), 10u);
  EXPECT_EQ(store->stats(kNow).keys, 10u);
}

TEST(MemoryStoreTest, APowerCutWithSyncNormalLosesWhatNoSyncCovered) {
  Held held;
  StoreOptions options;
  options.sync = SyncMode::kNormal;
  options.partitions = 1;
  options.stage_apply_at = 4;
  options.stage_apply_batch = 2;
  auto store = open_memory(options, held);
  auto write = [&](int i) {
    store->apply(put("k" + std::to_string(i), "v", hlc_at(i)), kNow, {});
    held.run_all();
  };
  // Below stage_apply_at, nothing was synced: all three are lost.
  for (int i = 1; i <= 3; ++i) write(i);
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_EQ(store->last_seq(0), 0u);
  EXPECT_EQ(store->get("k1", kNow).status().code(), Code::kNotFound);

  // At four unsynced writes, the oldest two are applied (synced); the rest are lost.
  for (int i = 1; i <= 5; ++i) write(i);
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_EQ(store->last_seq(0), 2u);
  EXPECT_TRUE(store->get("k2", kNow).ok());
  EXPECT_EQ(store->get("k3", kNow).status().code(), Code::kNotFound);

  // A sweep syncs everything before it, itself included.
  for (int i = 3; i <= 5; ++i) write(i);
  std::optional<size_t> swept;
  store->sweep(kNow, 10, [&](Result<std::vector<ChangeEvent>> r) { swept = r->size(); });
  held.run_all();
  ASSERT_EQ(swept, 0u);
  write(6);
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_EQ(store->last_seq(0), 5u);
  EXPECT_TRUE(store->get("k5", kNow).ok());
  EXPECT_EQ(store->get("k6", kNow).status().code(), Code::kNotFound);

  // So does a reopen after a process crash: opening applies what was left staged.
  write(6);
  store->crash(MemoryStore::CrashKind::kProcess);
  store->reopen();
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_TRUE(store->get("k6", kNow).ok());
}

TEST(MemoryStoreTest, ADropSyncsEverythingBeforeItAsASweepDoes) {
  Held held;
  StoreOptions options;
  options.sync = SyncMode::kNormal;
  options.partitions = 2;
  options.stage_apply_at = 100;
  auto store = open_memory(options, held);
  std::vector<std::string> keys;  // of partition 0
  for (int i = 0; keys.size() < 4; ++i) {
    if (store->partition_of("k" + std::to_string(i)) == 0) keys.push_back("k" + std::to_string(i));
  }
  for (const std::string& k : keys) store->apply(put(k, "v", hlc_at(0)), kNow, {});
  std::optional<Status> dropped;
  store->drop_partition(0, kNow, [&](Status s) { dropped = s; });
  store->apply(put(keys[0], "after", hlc_at(-1)), kNow, {});
  held.run_all();
  ASSERT_TRUE(dropped.has_value() && dropped->ok());
  EXPECT_EQ(store->drops(0), 1u);
  // A power cut keeps the drop (and the writes it took), loses the write after it.
  store->crash(MemoryStore::CrashKind::kPowerCut);
  store->reopen();
  EXPECT_EQ(store->last_seq(0), 4u);
  for (const std::string& k : keys) {
    EXPECT_EQ(store->read(k, kNow).status().code(), Code::kNotFound) << k;
  }
  EXPECT_EQ(store->digest(0)->entries, 0u);
  EXPECT_EQ(store->drops(0), 0u);  // counted since open
}

TEST(MemoryStoreTest, CloseCommitsWhatIsQueuedAndThenRefuses) {
  Held held;
  auto store = open_memory(StoreOptions{}, held);
  Calls calls;
  store->apply(put("k", "v", hlc_at(0)), kNow, calls.on("queued"));
  store->close();
  EXPECT_EQ(calls.order, std::vector<std::string>{"queued"});
  store->apply(put("k", "w", hlc_at(1)), kNow, calls.on("after close"));
  EXPECT_EQ(calls.results.back().status().code(), Code::kUnavailable);
  EXPECT_EQ(store->read("k", kNow).status().code(), Code::kUnavailable);
  store->close();  // idempotent
  store->reopen();
  EXPECT_EQ(store->get("k", kNow)->value, "v");
}

TEST(MemoryStoreTest, AFullQueueAnswersOverloadedAtOnce) {
  Held held;
  StoreOptions options;
  options.write_queue_max = 2;
  auto store = open_memory(options, held);
  Calls calls;
  store->apply(put("a", "v", hlc_at(0)), kNow, calls.on("a"));
  store->apply_hint("node-b", put("b", "v", hlc_at(0)), kNow, calls.on("b"));
  store->apply(put("c", "v", hlc_at(0)), kNow, calls.on("c"));
  ASSERT_EQ(calls.order, std::vector<std::string>{"c"});
  EXPECT_EQ(calls.results[0].status().code(), Code::kOverloaded);
  EXPECT_NE(calls.results[0].status().message().find("write_queue_max=2"), std::string::npos);
  std::optional<Status> sweep;
  store->sweep(kNow, 10, [&](Result<std::vector<ChangeEvent>> r) { sweep = r.status(); });
  ASSERT_TRUE(sweep.has_value());
  EXPECT_EQ(sweep->code(), Code::kOverloaded);
  held.run_all();
  store->apply(put("c", "v", hlc_at(0)), kNow, calls.on("c again"));
  held.run_all();
  EXPECT_TRUE(calls.results.back()->applied);
}

TEST(MemoryStoreTest, ACommitRunAfterTheStoreIsGoneDoesNothing) {
  Held held;
  Calls calls;
  {
    auto store = open_memory(StoreOptions{}, held);
    store->apply(put("k", "v", hlc_at(0)), kNow, calls.on("k"));
    store->crash();
  }
  ASSERT_EQ(held.commits.size(), 1u);
  held.run_all();
  EXPECT_TRUE(calls.order.empty());
}

TEST(MemoryStoreTest, OpeningNeedsASchedulerAndValidOptions) {
  Result<std::unique_ptr<MemoryStore>> none = MemoryStore::open(StoreOptions{}, nullptr);
  EXPECT_EQ(none.status().code(), Code::kInvalidArgument);
  StoreOptions options;
  options.partitions = 0;
  Held held;
  Result<std::unique_ptr<MemoryStore>> bad = MemoryStore::open(options, held.scheduler());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("partitions is 0"), std::string::npos);
}

}  // namespace
}  // namespace edgekv::store
