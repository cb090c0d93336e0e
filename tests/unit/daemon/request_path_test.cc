// RequestPath against a real store in a temp dir: per-key ordering, read-modify-write, the
// clock-skew retry and the feed hand-off.
#include "daemon/request_path.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/hlc.h"
#include "daemon/completion_queue.h"
#include "store/store.h"

namespace edgekv::daemon {
namespace {

// Every test runs with the read cache off (0) and on, so caching can change speed only.
class RequestPathTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/edgekv-request-path-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store::StoreOptions options;
    options.dir = dir_ / "data";
    options.partitions = 4;
    auto store = store::Store::open(options);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    store_ = std::move(store).value();
    applied_ = std::make_unique<AppliedChanges>(
        GetParam(),
        [this](const store::ChangeEvent& e, cluster::ChangeSource) { published_.push_back(e); });
    path_ = std::make_unique<RequestPath>(clock_, hlc_, origin_of("n1"), *store_, completions_,
                                          *applied_);
  }
  void TearDown() override {
    path_.reset();
    store_->close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Feeds store completions back until no write is in flight (deadline 10 s).
  void settle() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (path_->writes_in_flight() > 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "writes never completed";
      pollfd pfd{completions_.fd(), POLLIN, 0};
      ::poll(&pfd, 1, 100);
      for (Completion& c : completions_.drain()) {
        path_->on_write_done(std::move(std::get<StoreWriteDone>(c)));
      }
    }
  }

  RequestPath::WriteDone record_write(std::vector<std::string>& log, std::string tag) {
    return [&log, tag](Result<WriteOutcome> r) { log.push_back(tag + (r.ok() ? ":ok" : ":err")); };
  }
  RequestPath::ReadDone record_read(std::vector<std::string>& log) {
    return [&log](Result<store::Record> r) {
      log.push_back(r.ok() ? "read:" + r->value
                           : "read:" + std::string(code_name(r.status().code())));
    };
  }

  ManualClock clock_;
  HybridClock hlc_{clock_};
  std::filesystem::path dir_;
  CompletionQueue completions_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<AppliedChanges> applied_;
  std::unique_ptr<RequestPath> path_;
  std::vector<store::ChangeEvent> published_;
};

TEST_P(RequestPathTest, ReadOfAnIdleKeyAnswersAtOnce) {
  std::vector<std::string> log;
  path_->get("absent", record_read(log));
  ASSERT_EQ(log, std::vector<std::string>{"read:NOT_FOUND"});
}

TEST_P(RequestPathTest, OperationsOnOneKeyTakeEffectInArrivalOrder) {
  std::vector<std::string> log;
  path_->put("k", "a", WallTime{0}, record_write(log, "put-a"));
  path_->get("k", record_read(log));
  path_->put("k", "b", WallTime{0}, record_write(log, "put-b"));
  path_->get("k", record_read(log));
  path_->del("k", record_write(log, "del"));
  path_->get("k", record_read(log));
  EXPECT_TRUE(log.empty()) << "nothing may answer before the first write commits";
  EXPECT_EQ(path_->writes_in_flight(), 1u) << "one write per key in flight";
  settle();
  EXPECT_EQ(log, (std::vector<std::string>{"put-a:ok", "read:a", "put-b:ok", "read:b", "del:ok",
                                           "read:NOT_FOUND"}));
  ASSERT_EQ(published_.size(), 3u);
  EXPECT_LT(published_[0].version, published_[1].version);
  EXPECT_LT(published_[1].version, published_[2].version);
  EXPECT_EQ(published_[2].op, ChangeOp::kDelete);
}

TEST_P(RequestPathTest, DifferentKeysDoNotWaitForEachOther) {
  std::vector<std::string> log;
  path_->put("a", "1", WallTime{0}, record_write(log, "a"));
  path_->put("b", "2", WallTime{0}, record_write(log, "b"));
  EXPECT_EQ(path_->writes_in_flight(), 2u);
  path_->get("c", record_read(log));
  EXPECT_EQ(log, std::vector<std::string>{"read:NOT_FOUND"});
  settle();
  EXPECT_EQ(log.size(), 3u);
}

TEST_P(RequestPathTest, ReadModifyWriteWritesBeforeLaterOperations) {
  std::vector<std::string> log;
  path_->put("k", "1", WallTime{0}, record_write(log, "put-1"));
  // An increment, queued behind put-1; the get arrives after it and must see its result.
  path_->read_modify_write("k", [&](Result<store::Record> r) {
    ASSERT_TRUE(r.ok());
    std::string next = std::to_string(std::stoi(r->value) + 1);
    path_->put("k", next, WallTime{0}, record_write(log, "put-" + next));
  });
  path_->get("k", record_read(log));
  settle();
  EXPECT_EQ(log, (std::vector<std::string>{"put-1:ok", "put-2:ok", "read:2"}));
}

TEST_P(RequestPathTest, ExpiryIsWrittenAndReadsHonourIt) {
  std::vector<std::string> log;
  WallTime expiry{clock_.wall_now().ms + 1000};
  path_->put("t", "v", expiry, [&](Result<WriteOutcome> r) {
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->expiry, expiry);
  });
  settle();
  path_->get("t", record_read(log));
  clock_.advance(std::chrono::milliseconds(1000));
  path_->get("t", record_read(log));
  EXPECT_EQ(log, (std::vector<std::string>{"read:v", "read:NOT_FOUND"}));
}

TEST_P(RequestPathTest, AStoredVersionOfThisNodeAheadOfItsClockIsOvertakenByARetry) {
  // A record this node wrote under a clock one hour ahead, as after a restart with a clock
  // stepped back.
  store::Record ahead;
  ahead.key = "k";
  ahead.value = "old";
  ahead.version = Version{HybridClock::pack(clock_.wall_now().ms + 3'600'000, 0), origin_of("n1")};
  ASSERT_TRUE(store_->apply_sync(ahead, clock_.wall_now())->applied);
  Version written;
  path_->put("k", "new", WallTime{0}, [&](Result<WriteOutcome> r) {
    ASSERT_TRUE(r.ok());
    written = r->version;
  });
  settle();
  EXPECT_GT(written, ahead.version);
  std::vector<std::string> log;
  path_->get("k", record_read(log));
  EXPECT_EQ(log, std::vector<std::string>{"read:new"});
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].version, written);
  // The clock moved past the stored version: later writes are versioned after it too.
  EXPECT_GT(hlc_.now(), ahead.version.hlc);
}

TEST_P(RequestPathTest, ANewerVersionFromAnotherOriginSupersedesTheWriteWithoutARetry) {
  // Another node's write, versioned ahead of this node's clock (within the bound or not:
  // it is stored, so it is the newer write).
  store::Record newer;
  newer.key = "k";
  newer.value = "theirs";
  newer.version = Version{HybridClock::pack(clock_.wall_now().ms + 300, 0), origin_of("n2")};
  ASSERT_TRUE(store_->apply_sync(newer, clock_.wall_now())->applied);
  std::vector<std::string> log;
  path_->get("k", record_read(log));  // fills the cache when it is on
  Result<WriteOutcome> outcome = Status::internal("not answered");
  path_->put("k", "mine", WallTime{0}, [&](Result<WriteOutcome> r) { outcome = std::move(r); });
  settle();
  ASSERT_TRUE(outcome.ok()) << outcome.status().to_string();
  EXPECT_EQ(outcome->version, newer.version) << "answered with the winner's version";
  EXPECT_TRUE(published_.empty()) << "nothing was applied";
  path_->get("k", record_read(log));
  EXPECT_EQ(log, (std::vector<std::string>{"read:theirs", "read:theirs"}));
  // Nothing was re-stamped: the clock still follows the wall clock.
  EXPECT_LT(hlc_.now(), newer.version.hlc);
  EXPECT_EQ(store_->stats(clock_.wall_now()).puts_applied, 1u);
}

TEST_P(RequestPathTest, InflightBytesCountWhatWritesHoldUntilTheyComplete) {
  const std::string value(1000, 'v');
  EXPECT_EQ(path_->inflight_bytes(), 0u);
  int done = 0;
  auto count = [&](Result<WriteOutcome> r) {
    ASSERT_TRUE(r.ok());
    ++done;
  };
  path_->put("a", value, WallTime{0}, count);
  // Submitted: the store's copy and the one kept for the cache and a retry.
  EXPECT_EQ(path_->inflight_bytes(), 2 * (1 + value.size()));
  path_->put("a", value, WallTime{0}, count);  // waits behind the first: one copy
  path_->del("b", count);                      // submitted, a key alone
  EXPECT_EQ(path_->inflight_bytes(), 3 * (1 + value.size()) + 2 * 1);
  settle();
  EXPECT_EQ(done, 3);
  EXPECT_EQ(path_->inflight_bytes(), 0u);
}

TEST_P(RequestPathTest, RepeatedReadsOfAKeyAreServedFromTheCacheWhenItIsOn) {
  path_->put("hot", "v1", WallTime{0}, [](Result<WriteOutcome> r) { ASSERT_TRUE(r.ok()); });
  settle();
  std::vector<std::string> log;
  for (int i = 0; i < 5; ++i) path_->get("hot", record_read(log));
  path_->get("cold", record_read(log));
  path_->get("cold", record_read(log));
  EXPECT_EQ(log, (std::vector<std::string>{"read:v1", "read:v1", "read:v1", "read:v1", "read:v1",
                                           "read:NOT_FOUND", "read:NOT_FOUND"}));
  if (GetParam() == 0) {
    EXPECT_EQ(path_->cache().hits(), 0u);
  } else {
    EXPECT_EQ(path_->cache().hits(), 6u);  // the write filled "hot"; the first miss, "cold"
    EXPECT_EQ(path_->cache().misses(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(CacheOffAndOn, RequestPathTest, ::testing::Values(0, 1 << 20));

store::Record rec(std::string key, std::string value, int64_t expiry_ms = 0) {
  store::Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.version = Version{1, 1};
  r.expiry = WallTime{expiry_ms};
  return r;
}

TEST(ReadCacheTest, FindsRemembersAbsenceAndHonoursExpiry) {
  ReadCache cache(1 << 20);
  store::Record out;
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kMiss);
  cache.put(rec("k", "v", 100));
  ASSERT_EQ(cache.get("k", WallTime{99}, &out), ReadCache::Lookup::kFound);
  EXPECT_EQ(out.value, "v");
  EXPECT_EQ(cache.get("k", WallTime{100}, &out), ReadCache::Lookup::kAbsent);
  store::Record gone = rec("k", "");
  gone.tombstone = true;
  cache.put(gone);
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kAbsent);
  cache.erase("k");
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kMiss);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ReadCacheTest, EvictsLeastRecentlyUsedWithinItsCapacity) {
  ReadCache cache(4096);
  store::Record out;
  for (int i = 0; i < 100; ++i) {
    cache.put(rec("key" + std::to_string(i), std::string(100, 'x')));
    ASSERT_LE(cache.bytes(), 4096u);
    // Keep key0 hot: it must survive while colder keys go.
    ASSERT_EQ(cache.get("key0", WallTime{0}, &out), ReadCache::Lookup::kFound) << i;
  }
  EXPECT_EQ(cache.get("key1", WallTime{0}, &out), ReadCache::Lookup::kMiss);
  EXPECT_EQ(cache.get("key99", WallTime{0}, &out), ReadCache::Lookup::kFound);
  EXPECT_GT(cache.entries(), 5u);
}

TEST(ReadCacheTest, RewritingACachedKeyUpdatesItInPlaceAndRecharges) {
  ReadCache cache(1 << 20);
  store::Record out;
  cache.put(rec("hot", "one"));
  cache.put(rec("cold", "c"));
  const size_t before = cache.bytes();
  store::Record next = rec("hot", std::string(50, 'v'), 500);
  next.version = Version{42, 7};
  cache.put(next);
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_EQ(cache.bytes(), before + 50 - 3);
  ASSERT_EQ(cache.get("hot", WallTime{499}, &out), ReadCache::Lookup::kFound);
  EXPECT_EQ(out.key, "hot");
  EXPECT_EQ(out.value, std::string(50, 'v'));
  EXPECT_EQ(out.version, (Version{42, 7}));
  EXPECT_EQ(out.expiry.ms, 500);
  EXPECT_EQ(cache.get("hot", WallTime{500}, &out), ReadCache::Lookup::kAbsent);
  // A tombstone over a cached value: absent, and charged without the old value.
  store::Record gone = rec("hot", "ignored");
  gone.tombstone = true;
  cache.put(gone);
  EXPECT_EQ(cache.get("hot", WallTime{0}, &out), ReadCache::Lookup::kAbsent);
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_EQ(cache.bytes(), before - 3);
  // The updated entry became the most recently used: a put that needs room evicts the
  // entry written after it, not it.
  ReadCache lru(8192);
  lru.put(rec("a", "1"));  // each costs 130 bytes
  lru.put(rec("b", "2"));
  lru.put(rec("a", "3"));
  for (int i = 0; i < 7; ++i) lru.put(rec("f" + std::to_string(i), std::string(870, 'x')));
  ASSERT_EQ(lru.bytes(), 7260u);  // 1000 bytes per filler: all fit
  lru.put(rec("f7", std::string(870, 'x')));
  EXPECT_EQ(lru.get("b", WallTime{0}, &out), ReadCache::Lookup::kMiss);
  ASSERT_EQ(lru.get("a", WallTime{0}, &out), ReadCache::Lookup::kFound);
  EXPECT_EQ(out.value, "3");
}

TEST(ReadCacheTest, PutIfNewerKeepsANewerCopyAndAddsOnlyWhenAsked) {
  ReadCache cache(1 << 20);
  store::Record out;
  store::Record v2 = rec("k", "two");
  v2.version = Version{2, 1};
  store::Record v1 = rec("k", "one");
  v1.version = Version{1, 9};
  cache.put_if_newer(v2, ReadCache::Absent::kSkip);
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kMiss) << "skipped, not cached";
  cache.put_if_newer(v2, ReadCache::Absent::kAdd);
  cache.put_if_newer(v1, ReadCache::Absent::kAdd);
  ASSERT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kFound);
  EXPECT_EQ(out.value, "two");
  // The expiry of that very version (a tombstone keeping it) replaces it...
  store::Record expired = rec("k", "", 5);
  expired.version = v2.version;
  expired.tombstone = true;
  cache.put_if_newer(expired, ReadCache::Absent::kSkip);
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kAbsent);
  // ...and the record it ended, arriving again, does not come back over it.
  cache.put_if_newer(v2, ReadCache::Absent::kAdd);
  EXPECT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kAbsent);
  store::Record v3 = rec("k", "three");
  v3.version = Version{3, 1};
  cache.put_if_newer(v3, ReadCache::Absent::kSkip);
  ASSERT_EQ(cache.get("k", WallTime{0}, &out), ReadCache::Lookup::kFound);
  EXPECT_EQ(out.value, "three");
}

TEST(ReadCacheTest, AValueTooLargeForItIsNotCachedAndDropsAStaleCopy) {
  ReadCache cache(8192);
  store::Record out;
  cache.put(rec("big", "small"));
  cache.put(rec("big", std::string(4096, 'x')));  // over an eighth of the capacity
  EXPECT_EQ(cache.get("big", WallTime{0}, &out), ReadCache::Lookup::kMiss);
  ReadCache off(0);
  off.put(rec("k", "v"));
  EXPECT_EQ(off.get("k", WallTime{0}, &out), ReadCache::Lookup::kMiss);
}

}  // namespace
}  // namespace edgekv::daemon
