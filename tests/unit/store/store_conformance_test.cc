// One suite of store.h's contracts, run against every Store: the SQLite store on real files,
// and the MemoryStore with commits run at once or held and then run newest first. Then a
// randomized differential test that applies the same histories to both and compares what
// they answer after every step.
//
// Tests of format-5 behaviour (expiry tombstones, read(), hints) are named Format5*; until
// the SQLite store implements format 5 they pass for the MemoryStore only, and
// `--gtest_filter=-*Format5*/Sqlite:*Format5Random*` runs the rest.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/hash.h"
#include "common/random.h"
#include "store/memory_store.h"
#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of the store suites

enum class Kind { kSqlite, kMemoryAtOnce, kMemoryHeld };

std::string kind_name(Kind kind) {
  switch (kind) {
    case Kind::kSqlite: return "Sqlite";
    case Kind::kMemoryAtOnce: return "MemoryAtOnce";
    case Kind::kMemoryHeld: return "MemoryHeld";
  }
  return "?";
}

// Waits, with a deadline, for the one callback of an operation.
template <typename T>
class Outcome {
 public:
  std::function<void(T)> callback() {
    return [this](T value) {
      std::lock_guard lock(mu_);
      value_.emplace(std::move(value));
      changed_.notify_all();
    };
  }
  T wait() {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, kDeadline, [this] { return value_.has_value(); })) {
      ADD_FAILURE() << "no callback within the deadline";
      return Status::timeout("no callback");
    }
    return std::move(*value_);
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::optional<T> value_;
};

// A store of one kind, opened with given options, and how to see its operations through.
class Subject {
 public:
  static Result<std::unique_ptr<Subject>> open(Kind kind, const StoreOptions& options) {
    auto subject = std::unique_ptr<Subject>(new Subject(kind, options));
    EDGEKV_RETURN_IF_ERROR(subject->open_store());
    return subject;
  }

  Store& store() { return *store_; }
  Kind kind() const { return kind_; }

  Result<ApplyResult> apply(Record record, WallTime now = kNow) {
    Outcome<Result<ApplyResult>> out;
    store_->apply(std::move(record), now, out.callback());
    drain();
    return out.wait();
  }
  Result<ApplyResult> apply_relayed(Record record, WallTime now = kNow) {
    Outcome<Result<ApplyResult>> out;
    store_->apply_relayed(std::move(record), now, out.callback());
    drain();
    return out.wait();
  }
  Result<ApplyResult> hint(std::string owner, Record record, WallTime now = kNow) {
    Outcome<Result<ApplyResult>> out;
    store_->apply_hint(std::move(owner), std::move(record), now, out.callback());
    drain();
    return out.wait();
  }
  Result<ApplyResult> remove_hint(std::string owner, std::string key, Version version) {
    Outcome<Result<ApplyResult>> out;
    store_->remove_hint(std::move(owner), std::move(key), version, out.callback());
    drain();
    return out.wait();
  }
  Result<std::vector<ChangeEvent>> sweep(WallTime now, size_t max_rows) {
    Outcome<Result<std::vector<ChangeEvent>>> out;
    store_->sweep(now, max_rows, out.callback());
    drain();
    return out.wait();
  }

  Status drop(uint32_t partition, WallTime now = kNow) {
    Outcome<Status> out;
    store_->drop_partition(partition, now, out.callback());
    drain();
    return out.wait();
  }

  // Runs the commits a held MemoryStore was handed (nothing for the others).
  void settle() { drain(); }

  // Closes the store and opens it again on what it committed.
  void reopen() {
    store_->close();
    if (kind_ == Kind::kSqlite) {
      store_.reset();
      EDGEKV_ASSERT(open_store().ok());
    } else {
      static_cast<MemoryStore&>(*store_).reopen();
    }
  }

 private:
  Subject(Kind kind, const StoreOptions& options) : kind_(kind), options_(options) {
    options_.dir = dir_.data();
  }

  Status open_store() {
    if (kind_ == Kind::kSqlite) {
      Result<std::unique_ptr<Store>> store = Store::open(options_);
      if (!store.ok()) return store.status();
      store_ = std::move(*store);
      return Status();
    }
    MemoryStore::Scheduler scheduler;
    if (kind_ == Kind::kMemoryAtOnce) {
      scheduler = [](std::function<void()> commit) { commit(); };
    } else {
      scheduler = [this](std::function<void()> commit) { held_.push_back(std::move(commit)); };
    }
    Result<std::unique_ptr<MemoryStore>> store = MemoryStore::open(options_, std::move(scheduler));
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    return Status();
  }

  // Runs the held commits, newest first: the newest commits everything before it, and the
  // older ones then find nothing left to do.
  void drain() {
    while (!held_.empty()) {
      std::vector<std::function<void()>> commits;
      commits.swap(held_);
      for (auto it = commits.rbegin(); it != commits.rend(); ++it) (*it)();
    }
  }

  Kind kind_;
  TempDir dir_;
  StoreOptions options_;
  std::vector<std::function<void()>> held_;
  std::unique_ptr<Store> store_;
};

class StoreConformance : public ::testing::TestWithParam<Kind> {
 protected:
  // The options every subject starts from (the SQLite suite's, with its staging override).
  StoreOptions options() {
    StoreOptions o = options_for(options_dir_);
    o.dir.clear();
    return o;
  }
  std::unique_ptr<Subject> open(const StoreOptions& o) {
    Result<std::unique_ptr<Subject>> subject = Subject::open(GetParam(), o);
    EDGEKV_ASSERT(subject.ok());
    return std::move(*subject);
  }
  std::unique_ptr<Subject> open() { return open(options()); }
  // DropsQueuedTogetherEachTakeTheirPartitionAndLeaveTheRest, on one subject.
  void drops_queued_together(std::unique_ptr<Subject> s);

 private:
  TempDir options_dir_;  // only for options_for(); each subject has its own directory
};

Record expiring(std::string key, std::string value, uint64_t hlc, WallTime expiry,
                NodeOrigin origin = 1) {
  return put(std::move(key), std::move(value), hlc, origin, expiry);
}

TEST_P(StoreConformance, PutThenGetReturnsTheRecord) {
  auto s = open();
  Result<ApplyResult> r = s->apply(put("alpha", "one", hlc_at(0), 7));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->current, (Version{hlc_at(0), 7}));
  EXPECT_EQ(r->event.op, ChangeOp::kPut);
  EXPECT_EQ(r->event.key, "alpha");
  EXPECT_EQ(r->event.value, "one");
  EXPECT_EQ(r->event.version, (Version{hlc_at(0), 7}));
  EXPECT_EQ(r->event.partition, s->store().partition_of("alpha"));
  EXPECT_EQ(r->event.seq, 1u);
  Result<Record> got = s->store().get("alpha", kNow);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->key, "alpha");
  EXPECT_EQ(got->value, "one");
  EXPECT_EQ(got->version, (Version{hlc_at(0), 7}));
  EXPECT_EQ(got->expiry, WallTime{0});
  EXPECT_FALSE(got->tombstone);
  EXPECT_EQ(s->store().get("beta", kNow).status().code(), Code::kNotFound);
  const std::string binary("a\0b", 3);
  ASSERT_TRUE(s->apply(put(binary, std::string("\0\0", 2), hlc_at(0)))->applied);
  EXPECT_EQ(s->store().get(binary, kNow)->value, std::string("\0\0", 2));
  EXPECT_EQ(s->store().get("a", kNow).status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, LastWriteWinsInEitherArrivalOrder) {
  auto s = open();
  // Newer first: the older one changes nothing and is told the winner.
  ASSERT_TRUE(s->apply(put("a", "new", hlc_at(200), 1))->applied);
  Result<ApplyResult> older = s->apply(put("a", "old", hlc_at(100), 9));
  ASSERT_TRUE(older.ok());
  EXPECT_FALSE(older->applied);
  EXPECT_EQ(older->current, (Version{hlc_at(200), 1}));
  EXPECT_EQ(s->store().get("a", kNow)->value, "new");
  // Older first: both apply, the newer one last.
  ASSERT_TRUE(s->apply(put("b", "old", hlc_at(100), 9))->applied);
  ASSERT_TRUE(s->apply(put("b", "new", hlc_at(200), 1))->applied);
  EXPECT_EQ(s->store().get("b", kNow)->value, "new");
  // Equal versions: the second is ignored, whatever its value.
  Result<ApplyResult> equal = s->apply(put("a", "same version", hlc_at(200), 1));
  EXPECT_FALSE(equal->applied);
  EXPECT_EQ(s->store().get("a", kNow)->value, "new");
  // The origin breaks ties between equal hlc readings.
  EXPECT_TRUE(s->apply(put("a", "tie", hlc_at(200), 2))->applied);
  EXPECT_FALSE(s->apply(put("a", "lower origin", hlc_at(200), 1))->applied);
  EXPECT_EQ(s->store().get("a", kNow)->value, "tie");
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.puts_applied, 4u);
  EXPECT_EQ(stats.writes_ignored, 3u);
  EXPECT_EQ(stats.keys, 2u);
  // Ignored writes leave no trace in the change log.
  EXPECT_EQ(s->store().last_seq(s->store().partition_of("a")) +
                s->store().last_seq(s->store().partition_of("b")),
            s->store().partition_of("a") == s->store().partition_of("b") ? 8u : 4u);
}

TEST_P(StoreConformance, TombstonesHideKeysAndBlockOlderWrites) {
  auto s = open();
  ASSERT_TRUE(s->apply(put("k", "v", hlc_at(100)))->applied);
  Result<ApplyResult> del = s->apply(tombstone("k", hlc_at(200)));
  ASSERT_TRUE(del.ok());
  EXPECT_TRUE(del->applied);
  EXPECT_EQ(del->event.op, ChangeOp::kDelete);
  EXPECT_EQ(del->event.expiry, WallTime{0});
  EXPECT_EQ(s->store().get("k", kNow).status().code(), Code::kNotFound);
  Result<ApplyResult> zombie = s->apply(put("k", "zombie", hlc_at(150)));
  EXPECT_FALSE(zombie->applied);
  EXPECT_EQ(zombie->current, (Version{hlc_at(200), 1}));
  // A delete that arrives before the put it deletes still wins against it.
  EXPECT_TRUE(s->apply(tombstone("early", hlc_at(300)))->applied);
  EXPECT_FALSE(s->apply(put("early", "late put", hlc_at(250)))->applied);
  EXPECT_EQ(s->store().get("early", kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(s->apply(put("k", "reborn", hlc_at(300)))->applied);
  EXPECT_EQ(s->store().get("k", kNow)->value, "reborn");
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.deletes_applied, 2u);
  EXPECT_EQ(stats.keys, 1u);
}

TEST_P(StoreConformance, TtlExpiryIsVisibleAtNowBeforeAnySweep) {
  auto s = open();
  const WallTime expiry{kNow.ms + 1000};
  ASSERT_TRUE(s->apply(expiring("ttl", "v", hlc_at(0), expiry))->applied);
  EXPECT_EQ(s->store().get("ttl", kNow)->expiry, expiry);
  EXPECT_TRUE(s->store().get("ttl", WallTime{expiry.ms - 1}).ok());
  EXPECT_EQ(s->store().get("ttl", expiry).status().code(), Code::kNotFound);
  EXPECT_EQ(s->store().get("ttl", WallTime{expiry.ms + 5000}).status().code(), Code::kNotFound);
  EXPECT_EQ(s->store().stats(kNow).keys, 1u);
  EXPECT_EQ(s->store().stats(kNow).keys_with_expiry, 1u);
  EXPECT_EQ(s->store().stats(expiry).keys, 0u);
  EXPECT_EQ(s->store().stats(expiry).keys_with_expiry, 0u);
  EXPECT_EQ(s->store().stats(expiry).expired, 0u);  // not swept
  // An expired, unswept row still blocks older writes: its version is stored.
  EXPECT_FALSE(s->apply(put("ttl", "older", hlc_at(-5)), expiry)->applied);
}

TEST_P(StoreConformance, Format5ARecordArrivingExpiredIsStoredAsAnExpiryTombstone) {
  auto s = open();
  const WallTime past{kNow.ms - 1};
  const uint32_t p = s->store().partition_of("gone");
  // Newer than nothing: stored as the tombstone its expiry leaves, and logged as an expiry.
  Result<ApplyResult> r = s->apply(expiring("gone", "v", hlc_at(0), past));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->current, (Version{hlc_at(0), 1}));
  EXPECT_EQ(r->event.op, ChangeOp::kExpire);
  EXPECT_EQ(r->event.expiry, past);
  EXPECT_TRUE(r->event.value.empty());
  EXPECT_EQ(r->event.seq, 1u);
  EXPECT_EQ(s->store().get("gone", WallTime{0}).status().code(), Code::kNotFound);
  Result<Record> read = s->store().read("gone", kNow);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_TRUE(read->tombstone);
  EXPECT_TRUE(read->expired_tombstone());
  EXPECT_EQ(read->expiry, past);
  EXPECT_EQ(read->version, (Version{hlc_at(0), 1}));
  EXPECT_TRUE(read->value.empty());
  // Expiring exactly at `now` is expired.
  EXPECT_EQ(s->apply(expiring("at-now", "v", hlc_at(0), kNow))->event.op, ChangeOp::kExpire);
  // It blocks an older live write arriving later.
  Result<ApplyResult> late = s->apply(put("gone", "older", hlc_at(-10)));
  EXPECT_FALSE(late->applied);
  EXPECT_EQ(late->current, (Version{hlc_at(0), 1}));
  // An expired record older than the stored one changes nothing.
  ASSERT_TRUE(s->apply(put("live", "v", hlc_at(10)))->applied);
  Result<ApplyResult> old = s->apply(expiring("live", "v0", hlc_at(5), past));
  EXPECT_FALSE(old->applied);
  EXPECT_EQ(s->store().get("live", kNow)->value, "v");
  // A newer expired record replaces a live row.
  Result<ApplyResult> newer = s->apply(expiring("live", "v2", hlc_at(20), past));
  EXPECT_TRUE(newer->applied);
  EXPECT_EQ(s->store().get("live", kNow).status().code(), Code::kNotFound);
  // A newer live write brings the key back.
  EXPECT_TRUE(s->apply(put("gone", "back", hlc_at(30)))->applied);
  EXPECT_EQ(s->store().get("gone", kNow)->value, "back");

  Result<std::vector<ChangeEvent>> log = s->store().read_changes(p, 1, 10);
  ASSERT_TRUE(log.ok());
  ASSERT_GE(log->size(), 2u);
  EXPECT_EQ((*log)[0].op, ChangeOp::kExpire);
  EXPECT_EQ((*log)[0].expiry, past);
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.keys, 1u);
  EXPECT_EQ(stats.expired, 3u);
  EXPECT_EQ(stats.puts_applied, 2u);
  EXPECT_EQ(stats.writes_ignored, 2u);
}

TEST_P(StoreConformance, Format5ExpiryTombstonesBlockOlderLateWrites) {
  auto s = open();
  const WallTime expiry{kNow.ms + 10};
  ASSERT_TRUE(s->apply(expiring("k", "v", hlc_at(0), expiry))->applied);
  Result<std::vector<ChangeEvent>> swept = s->sweep(WallTime{kNow.ms + 100}, 100);
  ASSERT_TRUE(swept.ok());
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_EQ((*swept)[0].op, ChangeOp::kExpire);
  EXPECT_EQ((*swept)[0].expiry, expiry);
  // Swept, the key keeps its version: a late copy of an older version stays out.
  Result<ApplyResult> late = s->apply(put("k", "older", hlc_at(-1)), WallTime{kNow.ms + 100});
  EXPECT_FALSE(late->applied);
  EXPECT_EQ(late->current, (Version{hlc_at(0), 1}));
  EXPECT_FALSE(s->apply(tombstone("k", hlc_at(-1)))->applied);
  EXPECT_EQ(s->store().get("k", kNow).status().code(), Code::kNotFound);
  Result<Record> read = s->store().read("k", kNow);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_TRUE(read->expired_tombstone());
  EXPECT_EQ(read->version, (Version{hlc_at(0), 1}));
  EXPECT_EQ(read->expiry, expiry);
  // A newer write wins over it.
  EXPECT_TRUE(s->apply(put("k", "newer", hlc_at(50)))->applied);
  EXPECT_EQ(s->store().get("k", kNow)->value, "newer");
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.keys, 1u);
  EXPECT_EQ(stats.keys_with_expiry, 0u);
}

TEST_P(StoreConformance, Format5ReadShowsEveryState) {
  StoreOptions o = options();
  o.tombstone_grace_ms = 1000;
  auto s = open(o);
  Store& st = s->store();
  EXPECT_EQ(st.read("absent", kNow).status().code(), Code::kNotFound);

  ASSERT_TRUE(s->apply(put("live", "v", hlc_at(0)))->applied);
  Result<Record> live = st.read("live", kNow);
  ASSERT_TRUE(live.ok()) << live.status().to_string();
  EXPECT_EQ(live->value, "v");
  EXPECT_FALSE(live->tombstone);

  const WallTime expiry{kNow.ms + 10};
  ASSERT_TRUE(s->apply(expiring("ttl", "v", hlc_at(1), expiry))->applied);
  EXPECT_EQ(st.read("ttl", kNow)->value, "v");
  EXPECT_EQ(st.read("ttl", kNow)->expiry, expiry);
  // Expired but not swept: read as the tombstone its expiry leaves.
  Result<Record> expired = st.read("ttl", expiry);
  ASSERT_TRUE(expired.ok());
  EXPECT_TRUE(expired->expired_tombstone());
  EXPECT_TRUE(expired->value.empty());
  EXPECT_EQ(expired->version, (Version{hlc_at(1), 1}));
  EXPECT_EQ(expired->expiry, expiry);

  ASSERT_TRUE(s->apply(tombstone("deleted", hlc_at(2)))->applied);
  Result<Record> deleted = st.read("deleted", kNow);
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->tombstone);
  EXPECT_FALSE(deleted->expired_tombstone());
  EXPECT_EQ(deleted->expiry, WallTime{0});
  EXPECT_EQ(deleted->version, (Version{hlc_at(2), 1}));

  // Swept: the same tombstone, now stored.
  ASSERT_EQ(s->sweep(expiry, 100)->size(), 1u);
  Result<Record> swept = st.read("ttl", kNow);
  ASSERT_TRUE(swept.ok());
  EXPECT_TRUE(swept->expired_tombstone());
  EXPECT_EQ(swept->expiry, expiry);
  EXPECT_EQ(swept->version, (Version{hlc_at(1), 1}));
  // Both tombstones outlive their grace period, then no row is left.
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 999}, 100).ok());
  EXPECT_TRUE(st.read("ttl", kNow).ok());
  EXPECT_TRUE(st.read("deleted", kNow).ok());
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 1003}, 100).ok());
  EXPECT_EQ(st.read("ttl", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(st.read("deleted", kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(st.read("live", kNow).ok());
  EXPECT_EQ(st.stats(kNow).tombstones_purged, 2u);
}

TEST_P(StoreConformance, SweepExpiresInBoundedBatchesWithGaplessEvents) {
  StoreOptions o = options();
  o.partitions = 4;
  auto s = open(o);
  std::map<std::string, Version> due;
  for (int i = 0; i < 25; ++i) {
    Record r = expiring("exp-" + std::to_string(i), "v", hlc_at(i), WallTime{kNow.ms + 10 + i}, 3);
    due[r.key] = r.version;
    ASSERT_TRUE(s->apply(std::move(r))->applied);
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(s->apply(put("keep-" + std::to_string(i), "v", hlc_at(0)))->applied);
    ASSERT_TRUE(s->apply(expiring("later-" + std::to_string(i), "v", hlc_at(0),
                                  WallTime{kNow.ms + 100'000}))
                    ->applied);
  }
  std::vector<uint64_t> seq_before(4);
  for (uint32_t p = 0; p < 4; ++p) seq_before[p] = s->store().last_seq(p);
  const WallTime at{kNow.ms + 1000};
  std::vector<ChangeEvent> all;
  std::vector<size_t> sizes;
  for (int round = 0; round < 10; ++round) {
    Result<std::vector<ChangeEvent>> events = s->sweep(at, 10);
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    sizes.push_back(events->size());
    if (events->empty()) break;
    all.insert(all.end(), events->begin(), events->end());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 10, 5, 0}));
  std::map<uint32_t, std::vector<uint64_t>> seqs;
  for (const ChangeEvent& e : all) {
    EXPECT_EQ(e.op, ChangeOp::kExpire);
    ASSERT_TRUE(due.count(e.key)) << e.key;
    EXPECT_EQ(e.version, due[e.key]);
    EXPECT_EQ(e.partition, s->store().partition_of(e.key));
    EXPECT_TRUE(e.value.empty());
    seqs[e.partition].push_back(e.seq);
    due.erase(e.key);
  }
  EXPECT_TRUE(due.empty());
  for (auto& [p, list] : seqs) {
    std::sort(list.begin(), list.end());
    for (size_t i = 0; i < list.size(); ++i) EXPECT_EQ(list[i], seq_before[p] + 1 + i);
    Result<std::vector<ChangeEvent>> logged = s->store().read_changes(p, seq_before[p] + 1, 100);
    ASSERT_TRUE(logged.ok());
    ASSERT_EQ(logged->size(), list.size());
    for (const ChangeEvent& e : *logged) EXPECT_EQ(e.op, ChangeOp::kExpire);
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(s->store().get("keep-" + std::to_string(i), at).ok());
    EXPECT_TRUE(s->store().get("later-" + std::to_string(i), at).ok());
  }
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.expired, 25u);
  EXPECT_EQ(stats.keys, 10u);
}

TEST_P(StoreConformance, SweepPurgesDeleteTombstonesAfterTheGracePeriod) {
  StoreOptions o = options();
  o.tombstone_grace_ms = 1000;
  auto s = open(o);
  ASSERT_TRUE(s->apply(tombstone("k", hlc_at(0)))->applied);
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 999}, 100).ok());
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 0u);
  EXPECT_FALSE(s->apply(put("k", "older", hlc_at(-10)))->applied);
  Result<std::vector<ChangeEvent>> events = s->sweep(WallTime{kNow.ms + 1001}, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());  // purging is silent: the delete is already in the log
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 1u);
  // Gone, the tombstone no longer blocks the older write.
  EXPECT_TRUE(s->apply(put("k", "older", hlc_at(-10)))->applied);
  EXPECT_EQ(s->store().get("k", kNow)->value, "older");
}

// TombstonePurge::kByHorizon: nothing goes on age; a tombstone goes once below both of
// its partition's bounds; relayed writes below the hlc bound to keys with no row stay out,
// across a restart too; the bounds only go up.
TEST_P(StoreConformance, PurgeByHorizonNeedsBothBoundsAndHoldsOlderWritesOut) {
  StoreOptions o = options();
  o.tombstone_purge = TombstonePurge::kByHorizon;
  o.tombstone_grace_ms = 1000;
  auto s = open(o);
  Store& st = s->store();
  const uint32_t p = st.partition_of("gone");
  // Another key of the same partition, for the seq bound.
  std::string late;
  for (int i = 0; late.empty(); ++i) {
    if (st.partition_of("late-" + std::to_string(i)) == p) late = "late-" + std::to_string(i);
  }
  ASSERT_TRUE(s->apply(put("gone", "v", hlc_at(-20)))->applied);
  ASSERT_TRUE(s->apply(tombstone("gone", hlc_at(-10)))->applied);
  // Far past the grace: by age it would go; by horizon nothing is set yet.
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 100'000}, 100).ok());
  EXPECT_EQ(st.stats(kNow).tombstones_purged, 0u);
  const uint64_t seq_gone = st.last_seq(p);

  // A tombstone older by version but made here later (a late delete): above the seq bound.
  ASSERT_TRUE(s->apply(put(late, "v", hlc_at(-30)))->applied);
  ASSERT_TRUE(s->apply(tombstone(late, hlc_at(-15)))->applied);
  st.set_purge_horizon(p, PurgeHorizon{hlc_at(0), seq_gone});
  EXPECT_EQ(st.purge_horizon(p).hlc_below, hlc_at(0));
  EXPECT_EQ(st.purge_horizon(p).seq_through, seq_gone);
  ASSERT_TRUE(s->sweep(kNow, 100).ok());
  EXPECT_EQ(st.stats(kNow).tombstones_purged, 1u);
  EXPECT_EQ(st.read("gone", kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(st.read(late, kNow)->tombstone);

  // Older relayed writes to the purged key stay out; a key with a row still decides by
  // last-write-wins alone.
  Result<ApplyResult> old_write = s->apply_relayed(put("gone", "back", hlc_at(-20)));
  ASSERT_TRUE(old_write.ok());
  EXPECT_FALSE(old_write->applied);
  EXPECT_EQ(st.stats(kNow).writes_below_horizon, 1u);
  EXPECT_EQ(st.read("gone", kNow).status().code(), Code::kNotFound);
  EXPECT_FALSE(s->apply_relayed(put(late, "older", hlc_at(-20)))->applied);
  EXPECT_EQ(st.stats(kNow).writes_below_horizon, 1u);  // it has a row: last-write-wins

  // Lowering is ignored; raising the seq bound lets the late tombstone go.
  st.set_purge_horizon(p, PurgeHorizon{hlc_at(-100), 0});
  EXPECT_EQ(st.purge_horizon(p).hlc_below, hlc_at(0));
  st.set_purge_horizon(p, PurgeHorizon{hlc_at(0), st.last_seq(p)});
  ASSERT_TRUE(s->sweep(kNow, 100).ok());
  EXPECT_EQ(st.stats(kNow).tombstones_purged, 2u);
  EXPECT_EQ(st.read(late, kNow).status().code(), Code::kNotFound);

  // The hlc bound of the purges outlives the store: an older write is still held out.
  s->reopen();
  EXPECT_EQ(s->store().purge_horizon(p).hlc_below, hlc_at(0));
  EXPECT_EQ(s->store().purge_horizon(p).seq_through, 0u);
  EXPECT_FALSE(s->apply_relayed(put("gone", "back", hlc_at(-20)))->applied);
  EXPECT_FALSE(s->apply_relayed(tombstone(late, hlc_at(-1)))->applied);
  EXPECT_TRUE(s->apply_relayed(put("gone", "new", hlc_at(1)))->applied);
  EXPECT_EQ(s->store().get("gone", kNow)->value, "new");
  // Other partitions were never purged: their writes are not held.
  for (int i = 0; i < 64; ++i) {
    const std::string k = "other-" + std::to_string(i);
    if (s->store().partition_of(k) == p) continue;
    EXPECT_TRUE(s->apply_relayed(put(k, "v", hlc_at(-50)))->applied) << k;
  }
  // A write that is not relayed (a repair from another home replica) is not held, but a
  // tombstone below the horizon is: the key's absence stands for it, and a purged delete
  // is not logged a second time.
  const uint64_t seq = s->store().last_seq(p);
  EXPECT_FALSE(s->apply(tombstone(late, hlc_at(-15)))->applied);
  EXPECT_EQ(s->store().last_seq(p), seq);
  EXPECT_EQ(s->store().read(late, kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(s->apply(put(late, "repaired", hlc_at(-20)))->applied);
  EXPECT_TRUE(s->apply(tombstone(late, hlc_at(-10)))->applied);  // a row: last-write-wins
}

TEST_P(StoreConformance, PurgeByAgeIgnoresHorizons) {
  StoreOptions o = options();
  o.tombstone_grace_ms = 1000;
  auto s = open(o);
  const uint32_t p = s->store().partition_of("k");
  s->store().set_purge_horizon(p, PurgeHorizon{hlc_at(100'000), 1'000'000});
  EXPECT_EQ(s->store().purge_horizon(p).hlc_below, 0u);
  ASSERT_TRUE(s->apply(tombstone("k", hlc_at(0)))->applied);
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 999}, 100).ok());
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 0u);
  EXPECT_TRUE(s->apply_relayed(put("j", "v", hlc_at(-5)))->applied);
}

TEST_P(StoreConformance, Format5SweepPurgesExpiryTombstonesByVersionTime) {
  StoreOptions o = options();
  o.tombstone_grace_ms = 1000;
  auto s = open(o);
  // Made at kNow, expiring a minute later: purged a grace period after its version, once
  // expired, not a grace period after its expiry.
  const WallTime expiry{kNow.ms + 60'000};
  ASSERT_TRUE(s->apply(expiring("k", "v", hlc_at(0), expiry))->applied);
  ASSERT_TRUE(
      s->apply(expiring("arrived-expired", "v", hlc_at(0), WallTime{kNow.ms - 1}))->applied);
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 999}, 100).ok());
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 0u);
  EXPECT_TRUE(s->store().read("arrived-expired", kNow).ok());
  ASSERT_TRUE(s->sweep(WallTime{kNow.ms + 1001}, 100).ok());
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 1u);
  EXPECT_EQ(s->store().read("arrived-expired", kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(s->store().read("k", kNow).ok());  // live until its expiry
  Result<std::vector<ChangeEvent>> expired = s->sweep(expiry, 100);
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  // Expired and long past its version's grace period: purged in the same sweep.
  EXPECT_EQ(s->store().read("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(s->store().stats(kNow).tombstones_purged, 2u);
  EXPECT_TRUE(s->apply(put("arrived-expired", "older", hlc_at(-10)))->applied);
}

TEST_P(StoreConformance, ChangeLogHoldsEveryChangeGaplessWithCurrentValues) {
  StoreOptions o = options();
  o.partitions = 4;
  auto s = open(o);
  std::map<std::string, std::string> latest;  // "" = deleted
  std::map<uint32_t, uint64_t> last;
  Random rng(42);
  for (int i = 0; i < 200; ++i) {
    std::string key = "key-" + std::to_string(rng.uniform(30));
    Record r = rng.chance(0.2) ? tombstone(key, hlc_at(i))
                               : put(key, "value-" + std::to_string(i), hlc_at(i));
    const std::string value = r.value;
    Result<ApplyResult> result = s->apply(std::move(r));
    ASSERT_TRUE(result.ok());
    ASSERT_TRUE(result->applied);
    EXPECT_EQ(result->event.seq, ++last[result->event.partition]);
    latest[key] = value;
  }
  for (uint32_t p = 0; p < 4; ++p) {
    EXPECT_EQ(s->store().last_seq(p), last[p]);
    Result<std::vector<ChangeEvent>> log = s->store().read_changes(p, 1, 1000);
    ASSERT_TRUE(log.ok());
    ASSERT_EQ(log->size(), last[p]);
    for (size_t i = 0; i < log->size(); ++i) {
      EXPECT_EQ((*log)[i].seq, i + 1);
      EXPECT_EQ((*log)[i].partition, p);
    }
    std::set<std::string> seen;  // newest first: a key's first entry is current
    for (auto it = log->rbegin(); it != log->rend(); ++it) {
      const bool current = seen.insert(it->key).second;
      if (it->op == ChangeOp::kPut && current) {
        EXPECT_EQ(it->value, latest[it->key]);
      } else {
        EXPECT_TRUE(it->value.empty()) << it->key << " seq " << it->seq;
      }
    }
    if (last[p] >= 5) {
      Result<std::vector<ChangeEvent>> tail = s->store().read_changes(p, 3, 2);
      ASSERT_EQ(tail->size(), 2u);
      EXPECT_EQ((*tail)[0].seq, 3u);
      EXPECT_EQ((*tail)[1].seq, 4u);
    }
    EXPECT_TRUE(s->store().read_changes(p, last[p] + 1, 10)->empty());
    EXPECT_TRUE(s->store().read_changes(p, 1, 0)->empty());
  }
}

TEST_P(StoreConformance, Format5ChangeLogRecordsExpiriesAndSupersededPuts) {
  StoreOptions o = options();
  o.partitions = 1;
  auto s = open(o);
  const WallTime expiry{kNow.ms + 10};
  ASSERT_TRUE(s->apply(expiring("ttl", "v", hlc_at(0), expiry))->applied);
  ASSERT_TRUE(s->apply(put("plain", "p", hlc_at(1)))->applied);
  // Before the sweep the put is current (unswept rows keep their value in the log).
  EXPECT_EQ(s->store().read_changes(0, 1, 10)->front().value, "v");
  ASSERT_EQ(s->sweep(expiry, 100)->size(), 1u);
  ASSERT_TRUE(s->apply(expiring("late", "x", hlc_at(2), WallTime{kNow.ms - 5}))->applied);
  Result<std::vector<ChangeEvent>> log = s->store().read_changes(0, 1, 10);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 4u);
  EXPECT_EQ((*log)[0].op, ChangeOp::kPut);
  EXPECT_TRUE((*log)[0].value.empty());  // superseded by its expiry
  EXPECT_EQ((*log)[1].value, "p");
  EXPECT_EQ((*log)[2].op, ChangeOp::kExpire);
  EXPECT_EQ((*log)[2].key, "ttl");
  EXPECT_EQ((*log)[2].expiry, expiry);
  EXPECT_EQ((*log)[2].version, (Version{hlc_at(0), 1}));
  EXPECT_EQ((*log)[3].op, ChangeOp::kExpire);
  EXPECT_EQ((*log)[3].key, "late");
  EXPECT_EQ((*log)[3].expiry, WallTime{kNow.ms - 5});
  EXPECT_TRUE((*log)[3].value.empty());
  EXPECT_EQ((*log)[3].seq, 4u);
}

TEST_P(StoreConformance, SweepTrimsChangeLogsToTheNewestEntries) {
  StoreOptions o = options();
  o.partitions = 1;
  o.changelog_keep = 5;
  auto s = open(o);
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(s->apply(put("k" + std::to_string(i), "v", hlc_at(i)))->applied);
  }
  ASSERT_TRUE(s->sweep(kNow, 1000).ok());
  Result<std::vector<ChangeEvent>> log = s->store().read_changes(0, 0, 100);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 5u);
  EXPECT_EQ(log->front().seq, 16u);
  EXPECT_EQ(log->back().seq, 20u);
  // Trimming is bounded by max_rows too.
  for (int i = 21; i <= 40; ++i) {
    ASSERT_TRUE(s->apply(put("k" + std::to_string(i), "v", hlc_at(i)))->applied);
  }
  ASSERT_TRUE(s->sweep(kNow, 3).ok());
  EXPECT_EQ(s->store().read_changes(0, 0, 100)->front().seq, 19u);
  // The sequence goes on across a reopen, whatever was trimmed.
  s->reopen();
  EXPECT_EQ(s->store().last_seq(0), 40u);
  EXPECT_EQ(s->apply(put("next", "v", hlc_at(0)))->event.seq, 41u);
}

TEST_P(StoreConformance, Format5HintsAreKeptPerOwnerAndKeyApartFromThePartitions) {
  auto s = open();
  Store& st = s->store();
  Result<ApplyResult> first = s->hint("node-b", put("k", "v1", hlc_at(1)));
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(first->applied);
  EXPECT_EQ(first->current, (Version{hlc_at(1), 1}));
  ASSERT_TRUE(s->hint("node-b", put("j", "w", hlc_at(2)))->applied);
  ASSERT_TRUE(s->hint("node-c", put("k", "v3", hlc_at(3)))->applied);
  // Not in the partitions: no row, no change-log entry.
  EXPECT_EQ(st.get("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(st.read("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(st.last_seq(st.partition_of("k")), 0u);
  EXPECT_EQ(st.last_seq(st.partition_of("j")), 0u);

  Result<std::vector<Record>> b = st.read_hints("node-b", 10);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].key, "k");  // oldest first
  EXPECT_EQ((*b)[0].value, "v1");
  EXPECT_EQ((*b)[1].key, "j");
  EXPECT_EQ(st.read_hints("node-b", 1)->size(), 1u);
  EXPECT_TRUE(st.read_hints("node-z", 10)->empty());

  // An older or equal hint for the same owner and key changes nothing.
  Result<ApplyResult> older = s->hint("node-b", put("k", "v0", hlc_at(0)));
  ASSERT_TRUE(older.ok());
  EXPECT_FALSE(older->applied);
  EXPECT_EQ(older->current, (Version{hlc_at(1), 1}));
  EXPECT_FALSE(s->hint("node-b", put("k", "same", hlc_at(1)))->applied);
  // A newer one replaces it: still one hint per owner and key.
  ASSERT_TRUE(s->hint("node-b", put("k", "v4", hlc_at(4)))->applied);
  b = st.read_hints("node-b", 10);
  ASSERT_EQ(b->size(), 2u);
  std::map<std::string, std::string> values;
  for (const Record& r : *b) values[r.key] = r.value;
  EXPECT_EQ(values["k"], "v4");
  EXPECT_EQ(st.stats(kNow).hints, 3u);
  EXPECT_GT(st.stats(kNow).hint_bytes, 0u);

  // The newest hint for a key, whichever owner it is for.
  EXPECT_EQ(st.read_hint("k", kNow)->value, "v4");
  ASSERT_TRUE(s->hint("node-d", tombstone("k", hlc_at(5)))->applied);
  Result<Record> newest = st.read_hint("k", kNow);
  ASSERT_TRUE(newest.ok());
  EXPECT_TRUE(newest->tombstone);
  EXPECT_EQ(newest->version, (Version{hlc_at(5), 1}));
  EXPECT_EQ(st.read_hint("nothing", kNow).status().code(), Code::kNotFound);
  // A hint whose record expired by `now` reads as the tombstone its expiry leaves.
  ASSERT_TRUE(s->hint("node-b", expiring("ttl", "v", hlc_at(6), WallTime{kNow.ms + 10}))->applied);
  EXPECT_EQ(st.read_hint("ttl", kNow)->value, "v");
  Result<Record> expired = st.read_hint("ttl", WallTime{kNow.ms + 10});
  ASSERT_TRUE(expired.ok());
  EXPECT_TRUE(expired->expired_tombstone());
  EXPECT_TRUE(expired->value.empty());
  // Durable: they outlive a restart.
  s->reopen();
  EXPECT_EQ(s->store().read_hints("node-b", 10)->size(), 3u);
  EXPECT_EQ(s->store().read_hint("j", kNow)->value, "w");
}

// Delivery pages through an owner's hints by version, bounded in count and bytes, and
// removes each once delivered; the summary counts what is left per owner.
TEST_P(StoreConformance, HintsArePagedByVersionRemovedAndSummarized) {
  auto s = open();
  Store& st = s->store();
  // Stored out of version order, across keys (so across files of the SQLite store).
  const std::vector<int> order = {5, 1, 9, 3, 7, 2, 8, 4, 6, 0};
  for (int i : order) {
    ASSERT_TRUE(s->hint("node-b", put("key" + std::to_string(i), std::string(100, 'x'), hlc_at(i)))
                    ->applied);
  }
  ASSERT_TRUE(s->hint("node-c", put("other", "v", hlc_at(20)))->applied);

  std::vector<std::string> seen;
  Version cursor;
  for (int pages = 0; pages < 20; ++pages) {
    Result<std::vector<Record>> page = st.read_hints_after("node-b", cursor, 3, 1 << 20);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    if (page->empty()) break;
    EXPECT_LE(page->size(), 3u);
    for (const Record& r : *page) {
      EXPECT_GT(r.version, cursor);
      cursor = r.version;
      seen.push_back(r.key);
    }
  }
  std::vector<std::string> expected;
  for (int i = 0; i < 10; ++i) expected.push_back("key" + std::to_string(i));
  EXPECT_EQ(seen, expected);
  // The byte bound: past it no further hint is taken, but one always is.
  EXPECT_EQ(st.read_hints_after("node-b", Version{}, 10, 250)->size(), 3u);
  EXPECT_EQ(st.read_hints_after("node-b", Version{}, 10, 1)->size(), 1u);
  EXPECT_TRUE(st.read_hints_after("node-z", Version{}, 10, 1 << 20)->empty());

  Result<std::vector<HintOwnerSummary>> owners = st.hint_owners();
  ASSERT_TRUE(owners.ok()) << owners.status().to_string();
  ASSERT_EQ(owners->size(), 2u);
  EXPECT_EQ((*owners)[0].owner, "node-b");
  EXPECT_EQ((*owners)[0].hints, 10u);
  EXPECT_EQ((*owners)[0].oldest.hlc, hlc_at(0));
  EXPECT_EQ((*owners)[1].owner, "node-c");
  EXPECT_EQ((*owners)[1].hints, 1u);
  EXPECT_EQ((*owners)[0].bytes + (*owners)[1].bytes, st.stats(kNow).hint_bytes);

  // Removal takes the version delivered only: a newer hint kept meanwhile stays.
  ASSERT_TRUE(s->hint("node-b", put("key3", "newer", hlc_at(30)))->applied);
  Result<ApplyResult> stale = s->remove_hint("node-b", "key3", Version{hlc_at(3), 1});
  ASSERT_TRUE(stale.ok()) << stale.status().to_string();
  EXPECT_FALSE(stale->applied);
  Result<ApplyResult> gone = s->remove_hint("node-b", "key4", Version{hlc_at(4), 1});
  ASSERT_TRUE(gone.ok()) << gone.status().to_string();
  EXPECT_TRUE(gone->applied);
  EXPECT_FALSE(s->remove_hint("node-b", "key4", Version{hlc_at(4), 1})->applied);
  EXPECT_EQ(st.read_hints("node-b", 100)->size(), 9u);
  EXPECT_EQ(st.stats(kNow).hints, 10u);
  s->reopen();
  EXPECT_EQ(s->store().hint_owners()->at(0).hints, 9u);
  EXPECT_EQ(s->store().read_hints_after("node-b", Version{hlc_at(29), 0}, 10, 1 << 20)->at(0).value,
            "newer");
}

TEST_P(StoreConformance, Format5HintsAreRefusedAtTheirBound) {
  StoreOptions o = options();
  o.hints_max_bytes = 4096;
  auto s = open(o);
  const std::string value(300, 'h');
  size_t accepted = 0;
  Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    Result<ApplyResult> r = s->hint("node-b", put("k" + std::to_string(i), value, hlc_at(i)));
    if (r.ok()) {
      ASSERT_TRUE(r->applied);
      ++accepted;
    } else {
      refused = r.status();
    }
  }
  ASSERT_EQ(refused.code(), Code::kOverloaded) << refused.to_string();
  EXPECT_GE(accepted, 5u);   // 300-byte values: at least 4096 / (300 + overhead) fit ...
  EXPECT_LE(accepted, 13u);  // ... and no more than their values alone would fill
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.hints, accepted);
  EXPECT_LE(stats.hint_bytes, o.hints_max_bytes);
  EXPECT_EQ(s->store().read_hint("k" + std::to_string(accepted), kNow).status().code(),
            Code::kNotFound);
  // Replacing a held hint by one no larger still fits.
  ASSERT_TRUE(s->hint("node-b", put("k0", value, hlc_at(1000)))->applied);
  EXPECT_EQ(s->store().stats(kNow).hint_bytes, stats.hint_bytes);
  // The partitions are not bounded by it.
  EXPECT_TRUE(s->apply(put("k0", value, hlc_at(0)))->applied);
}

TEST_P(StoreConformance, StatsCountWritesAndLiveKeys) {
  auto s = open();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(s->apply(put("k" + std::to_string(i), "v", hlc_at(0)))->applied);
  }
  ASSERT_TRUE(s->apply(put("k0", "again", hlc_at(1)))->applied);
  ASSERT_TRUE(s->apply(tombstone("k1", hlc_at(1)))->applied);
  ASSERT_TRUE(s->apply(tombstone("never-written", hlc_at(1)))->applied);
  ASSERT_FALSE(s->apply(put("k2", "old", hlc_at(-1)))->applied);
  ASSERT_TRUE(s->apply(expiring("t1", "v", hlc_at(0), WallTime{kNow.ms + 10}))->applied);
  ASSERT_TRUE(s->apply(expiring("t2", "v", hlc_at(0), WallTime{kNow.ms + 20}))->applied);
  StoreStats stats = s->store().stats(kNow);
  EXPECT_EQ(stats.keys, 11u);  // 10 written, 1 deleted, 2 expiring
  EXPECT_EQ(stats.keys_with_expiry, 2u);
  EXPECT_EQ(stats.puts_applied, 13u);
  EXPECT_EQ(stats.deletes_applied, 2u);
  EXPECT_EQ(stats.writes_ignored, 1u);
  EXPECT_EQ(stats.group_writes, 16u);
  EXPECT_EQ(s->store().stats(WallTime{kNow.ms + 10}).keys, 10u);
  EXPECT_EQ(s->store().stats(WallTime{kNow.ms + 10}).keys_with_expiry, 1u);
  ASSERT_EQ(s->sweep(WallTime{kNow.ms + 15}, 100)->size(), 1u);
  stats = s->store().stats(kNow);
  EXPECT_EQ(stats.expired, 1u);
  EXPECT_EQ(stats.keys, 10u);
  EXPECT_EQ(stats.keys_with_expiry, 1u);
  // Counters are since open; the live keys are the stored ones.
  s->reopen();
  stats = s->store().stats(kNow);
  EXPECT_EQ(stats.keys, 10u);
  EXPECT_EQ(stats.puts_applied, 0u);
}

TEST_P(StoreConformance, PartitionOfIsTheSharedHash) {
  for (uint32_t partitions : {1u, 4u, 16u, 64u}) {
    StoreOptions o = options();
    o.partitions = partitions;
    if (o.db_files > partitions) o.db_files = partitions;
    auto s = open(o);
    EXPECT_EQ(s->store().partitions(), partitions);
    for (int i = 0; i < 50; ++i) {
      const std::string key = "key-" + std::to_string(i);
      EXPECT_EQ(s->store().partition_of(key), partition_of(key, partitions));
    }
    Result<ApplyResult> r = s->apply(put("somewhere", "v", hlc_at(0)));
    EXPECT_EQ(r->event.partition, partition_of("somewhere", partitions));
    EXPECT_EQ(s->store().last_seq(partition_of("somewhere", partitions)), 1u);
  }
}

TEST_P(StoreConformance, BadInputGetsAStatus) {
  StoreOptions o = options();
  o.partitions = 3;
  EXPECT_EQ(Subject::open(GetParam(), o).status().code(), Code::kInvalidArgument);
  o.partitions = 64;
  o.tombstone_grace_ms = -1;
  EXPECT_EQ(Subject::open(GetParam(), o).status().code(), Code::kInvalidArgument);
  o.tombstone_grace_ms = 1000;
  o.write_queue_max = 0;
  EXPECT_EQ(Subject::open(GetParam(), o).status().code(), Code::kInvalidArgument);
  auto s = open();
  EXPECT_EQ(s->apply(put("k", "v", 0, 0)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->apply(put(std::string((1 << 20) + 1, 'k'), "v", hlc_at(0))).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->store().stats(kNow).group_writes, 0u);  // refused before being queued
  EXPECT_EQ(s->store().read_changes(64, 0, 10).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->store().last_seq(64), 0u);
  EXPECT_EQ(s->store().get("k", kNow).status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, Format5HintsRefuseBadRecords) {
  auto s = open();
  EXPECT_EQ(s->hint("node-b", put("k", "v", 0, 0)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s->hint("node-b", put(std::string((1 << 20) + 1, 'k'), "v", hlc_at(0))).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(s->store().stats(kNow).hints, 0u);
}

TEST_P(StoreConformance, CommittedWritesSurviveAReopen) {
  auto s = open();
  ASSERT_TRUE(s->apply(put("a", "1", hlc_at(0)))->applied);
  ASSERT_TRUE(s->apply(tombstone("b", hlc_at(0)))->applied);
  ASSERT_TRUE(s->apply(expiring("c", "3", hlc_at(0), WallTime{kNow.ms + 50}))->applied);
  const uint32_t p = s->store().partition_of("a");
  const uint64_t seq = s->store().last_seq(p);
  s->reopen();
  EXPECT_EQ(s->store().get("a", kNow)->value, "1");
  EXPECT_EQ(s->store().get("b", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(s->store().get("c", kNow)->expiry, WallTime{kNow.ms + 50});
  EXPECT_EQ(s->store().last_seq(p), seq);
  EXPECT_FALSE(s->apply(put("b", "older", hlc_at(-1)))->applied);
  EXPECT_EQ(s->apply(put("a", "2", hlc_at(1)))->event.seq, seq + 1);
}

TEST_P(StoreConformance, Format5ExpiryTombstonesSurviveAReopen) {
  auto s = open();
  ASSERT_TRUE(s->apply(expiring("e", "v", hlc_at(0), WallTime{kNow.ms - 1}))->applied);
  ASSERT_TRUE(s->apply(expiring("f", "v", hlc_at(0), WallTime{kNow.ms + 1}))->applied);
  ASSERT_EQ(s->sweep(WallTime{kNow.ms + 1}, 100)->size(), 1u);
  s->reopen();
  for (const char* key : {"e", "f"}) {
    Result<Record> r = s->store().read(key, kNow);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status().to_string();
    EXPECT_TRUE(r->expired_tombstone()) << key;
    EXPECT_FALSE(s->apply(put(key, "older", hlc_at(-1)))->applied) << key;
  }
}

// Keys of partition `p` of `st`, `n` of them, named after `prefix`.
std::vector<std::string> keys_of(Store& st, uint32_t p, const std::string& prefix, size_t n) {
  std::vector<std::string> out;
  for (int i = 0; out.size() < n; ++i) {
    std::string k = prefix + std::to_string(i);
    if (st.partition_of(k) == p) out.push_back(std::move(k));
  }
  return out;
}

std::vector<uint32_t> all_leaves() {
  std::vector<uint32_t> leaves(kDigestLeaves);
  for (uint32_t i = 0; i < kDigestLeaves; ++i) leaves[i] = i;
  return leaves;
}

TEST_P(StoreConformance, DropPartitionLeavesItEmptyAndTheRestAlone) {
  StoreOptions o = options();
  o.tombstone_purge = TombstonePurge::kByHorizon;
  auto s = open(o);
  Store& st = s->store();
  const uint32_t p = st.partition_of("dropped");
  const uint32_t q = (p + 1) % st.partitions();
  const std::vector<std::string> mine = keys_of(st, p, "mine-", 40);
  const std::vector<std::string> theirs = keys_of(st, q, "theirs-", 10);
  // Every kind of row: small and large values (a large one lives in the value table), delete
  // tombstones, an expiry tombstone, a live row with a TTL; and in the other partition too.
  for (size_t i = 0; i < mine.size(); ++i) {
    const std::string value = i % 3 == 0 ? random_bytes(3000, i) : "v" + std::to_string(i);
    ASSERT_TRUE(s->apply(put(mine[i], value, hlc_at(-100)))->applied);
  }
  for (size_t i = 0; i < 10; ++i) ASSERT_TRUE(s->apply(tombstone(mine[i], hlc_at(-50)))->applied);
  ASSERT_TRUE(s->apply(expiring(mine[10], "e", hlc_at(-40), WallTime{kNow.ms - 1}))->applied);
  ASSERT_TRUE(s->apply(expiring(mine[11], "t", hlc_at(-40), WallTime{kNow.ms + 1000}))->applied);
  for (const std::string& k : theirs) ASSERT_TRUE(s->apply(put(k, "q", hlc_at(-100)))->applied);
  ASSERT_TRUE(s->apply(tombstone(theirs[0], hlc_at(-60)))->applied);
  ASSERT_TRUE(s->apply(tombstone(theirs[1], hlc_at(-60)))->applied);
  // Purges by horizon in both partitions, so that both have a purge floor.
  st.set_purge_horizon(p, PurgeHorizon{hlc_at(-45), st.last_seq(p)});
  st.set_purge_horizon(q, PurgeHorizon{hlc_at(-55), st.last_seq(q)});
  ASSERT_TRUE(s->sweep(kNow, 1000).ok());
  ASSERT_EQ(st.stats(kNow).tombstones_purged, 12u);
  // Hints are not partition data, whatever their key's partition.
  ASSERT_TRUE(s->hint("node-b", put(mine[20], "hinted", hlc_at(-10)))->applied);
  ASSERT_TRUE(s->hint("node-b", put(theirs[5], "hinted", hlc_at(-10)))->applied);
  ASSERT_TRUE(s->apply(put(mine[12], "queued", hlc_at(-5))).ok());

  const Result<PartitionDigest> digest_q = st.digest(q);
  ASSERT_TRUE(digest_q.ok());
  ASSERT_TRUE(st.digest(p).ok());  // built before the drop, so the drop must reset it
  const PurgeHorizon horizon_q = st.purge_horizon(q);
  const uint64_t seq_p = st.last_seq(p);
  const uint64_t seq_q = st.last_seq(q);
  const uint64_t keys_q = st.stats(kNow).keys - (mine.size() - 11);
  ASSERT_EQ(st.drops(p), 0u);

  ASSERT_TRUE(s->drop(p).ok());

  const PartitionDigest empty = DigestLeaves{}.to_digest(p);
  for (const std::string& k : mine) {
    EXPECT_EQ(st.get(k, kNow).status().code(), Code::kNotFound) << k;
    EXPECT_EQ(st.read(k, kNow).status().code(), Code::kNotFound) << k;
  }
  Result<PartitionDigest> digest_p = st.digest(p);
  ASSERT_TRUE(digest_p.ok());
  EXPECT_EQ(digest_p->leaves, empty.leaves);
  EXPECT_EQ(digest_p->entries, 0u);
  EXPECT_EQ(digest_p->root, empty.root);
  EXPECT_TRUE(st.digest_entries(p, all_leaves(), 1000)->empty());
  // No change made: the log ends where it ended, and nothing new is in it.
  EXPECT_GE(st.last_seq(p), seq_p);
  EXPECT_TRUE(st.read_changes(p, seq_p + 1, 100)->empty());
  EXPECT_EQ(st.purge_horizon(p).hlc_below, 0u);
  EXPECT_EQ(st.purge_horizon(p).seq_through, 0u);
  EXPECT_EQ(st.drops(p), 1u);
  EXPECT_EQ(st.drops(q), 0u);
  // The other partition, its horizon and the hints are as they were.
  EXPECT_EQ(st.stats(kNow).keys, keys_q);
  EXPECT_EQ(st.last_seq(q), seq_q);
  EXPECT_EQ(st.purge_horizon(q).hlc_below, horizon_q.hlc_below);
  EXPECT_EQ(st.purge_horizon(q).seq_through, horizon_q.seq_through);
  EXPECT_EQ(st.digest(q)->root, digest_q->root);
  EXPECT_EQ(st.get(theirs[3], kNow)->value, "q");
  EXPECT_TRUE(st.read(theirs[2], kNow).ok());
  EXPECT_EQ(st.read_hint(mine[20], kNow)->value, "hinted");
  EXPECT_EQ(st.read_hints("node-b", 10)->size(), 2u);
  EXPECT_EQ(st.stats(kNow).hints, 2u);

  // The partition takes writes as a never-written one: an older version than the dropped
  // rows' (no row, no horizon to hold it to) is applied, logged after the kept log.
  Result<ApplyResult> again = s->apply(put(mine[1], "again", hlc_at(-200)));
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->applied);
  EXPECT_EQ(again->event.seq, st.last_seq(p));
  EXPECT_GT(again->event.seq, seq_p);
  EXPECT_EQ(st.get(mine[1], kNow)->value, "again");
  EXPECT_TRUE(s->apply_relayed(put(mine[2], "relayed", hlc_at(-200)))->applied);
  EXPECT_EQ(st.stats(kNow).keys, keys_q + 2);
  PartitionDigest two = empty;
  {
    DigestLeaves leaves;
    leaves.add(mine[1], Version{hlc_at(-200), 1}, false, 0);
    leaves.add(mine[2], Version{hlc_at(-200), 1}, false, 0);
    two = leaves.to_digest(p);
  }
  EXPECT_EQ(st.digest(p)->root, two.root);
  const uint64_t seq_after = st.last_seq(p);

  // All of it holds after a reopen: rows, log end, horizons (the purge floor went).
  s->reopen();
  Store& re = s->store();
  for (size_t i = 3; i < mine.size(); ++i) {
    EXPECT_EQ(re.read(mine[i], kNow).status().code(), Code::kNotFound) << mine[i];
  }
  EXPECT_EQ(re.get(mine[1], kNow)->value, "again");
  EXPECT_EQ(re.last_seq(p), seq_after);
  EXPECT_EQ(re.purge_horizon(p).hlc_below, 0u);
  EXPECT_EQ(re.purge_horizon(q).hlc_below, horizon_q.hlc_below);
  EXPECT_EQ(re.digest(p)->root, two.root);
  EXPECT_EQ(re.digest(q)->root, digest_q->root);
  EXPECT_EQ(re.stats(kNow).keys, keys_q + 2);
  EXPECT_EQ(re.read_hints("node-b", 10)->size(), 2u);
  EXPECT_EQ(re.drops(p), 0u);  // since open
}

TEST_P(StoreConformance, DropPartitionTakesWritesQueuedBeforeItAndKeepsThoseAfter) {
  auto s = open();
  Store& st = s->store();
  const uint32_t p = st.partition_of("order");
  const std::vector<std::string> keys = keys_of(st, p, "order-", 4);
  ASSERT_TRUE(s->apply(put(keys[0], "old", hlc_at(0)))->applied);
  // Queued together, in this order, none waited for: the drop commits the write before it
  // and drops it; the writes after it find the partition empty.
  Outcome<Result<ApplyResult>> before, newer_after, older_after;
  Outcome<Status> dropped;
  st.apply(put(keys[1], "before", hlc_at(0)), kNow, before.callback());
  st.drop_partition(p, kNow, dropped.callback());
  st.apply(put(keys[0], "older-after", hlc_at(-10)), kNow, older_after.callback());
  st.apply(put(keys[2], "after", hlc_at(0)), kNow, newer_after.callback());
  s->settle();
  WakeBatch::wake_deferred();
  ASSERT_TRUE(before.wait().ok());
  ASSERT_TRUE(dropped.wait().ok());
  Result<ApplyResult> older = older_after.wait();
  ASSERT_TRUE(older.ok()) << older.status().to_string();
  EXPECT_TRUE(older->applied);  // the row it would have lost to went with the drop
  ASSERT_TRUE(newer_after.wait().ok());
  EXPECT_EQ(st.get(keys[0], kNow)->value, "older-after");
  EXPECT_EQ(st.get(keys[1], kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(st.get(keys[2], kNow)->value, "after");
  EXPECT_EQ(st.digest(p)->entries, 2u);
  EXPECT_EQ(st.stats(kNow).keys, 2u);
  // A drop of an empty or never-written partition is a no-op that succeeds; out of range
  // is refused.
  const uint32_t never = (p + 1) % st.partitions();
  EXPECT_TRUE(s->drop(never).ok());
  EXPECT_EQ(st.last_seq(never), 0u);
  EXPECT_EQ(s->drop(st.partitions()).code(), Code::kInvalidArgument);
}

// A hand-over drops many partitions at once: drops queued one after another (the SQLite
// store runs them in one transaction per file) each take their own partition, whatever the
// order, a partition dropped twice included, and a write queued between them stays.
// Both ways (the SQLite store drops the tables of a large partition and deletes the rows of
// a small one; drop_by_delete_rows 0 drops every partition's tables).
TEST_P(StoreConformance, DropsQueuedTogetherEachTakeTheirPartitionAndLeaveTheRest) {
  for (uint64_t way : {uint64_t{0}, uint64_t{1} << 30}) {
    SCOPED_TRACE(way == 0 ? "tables dropped" : "rows deleted");
    StoreOptions o = options();
    o.drop_by_delete_rows = way;
    drops_queued_together(open(o));
  }
}

void StoreConformance::drops_queued_together(std::unique_ptr<Subject> s) {
  Store& st = s->store();
  const uint32_t q = st.partitions();
  std::vector<std::vector<std::string>> keys(q);
  for (uint32_t p = 0; p < q; ++p) {
    keys[p] = keys_of(st, p, "many-" + std::to_string(p) + "-", 3);
    for (const std::string& k : keys[p]) {
      ASSERT_TRUE(s->apply(put(k, "v", hlc_at(0)))->applied);
    }
  }
  // Every third partition goes; the first of them is dropped twice, with a write to it in
  // between.
  std::vector<uint32_t> dropped;
  for (uint32_t p = 0; p < q; p += 3) dropped.push_back(p);
  ASSERT_GE(dropped.size(), 2u);
  const uint32_t twice = dropped.front();
  std::vector<Outcome<Status>> drops(dropped.size() + 1);
  Outcome<Result<ApplyResult>> between, after;
  st.drop_partition(twice, kNow, drops[0].callback());
  st.apply(put(keys[twice][0], "between", hlc_at(-5)), kNow, between.callback());
  for (size_t i = 1; i < dropped.size(); ++i) {
    st.drop_partition(dropped[i], kNow, drops[i].callback());
  }
  st.drop_partition(twice, kNow, drops.back().callback());
  st.apply(put(keys[twice][1], "after", hlc_at(-5)), kNow, after.callback());
  s->settle();
  WakeBatch::wake_deferred();
  for (Outcome<Status>& d : drops) {
    Status status = d.wait();
    ASSERT_TRUE(status.ok()) << status.to_string();
  }
  ASSERT_TRUE(between.wait().ok());
  ASSERT_TRUE(after.wait().ok());
  for (uint32_t p = 0; p < q; ++p) {
    const bool gone = p % 3 == 0;
    for (size_t i = 0; i < keys[p].size(); ++i) {
      Result<Record> got = st.get(keys[p][i], kNow);
      if (p == twice && i == 1) {
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        EXPECT_EQ(got->value, "after");
      } else if (gone) {
        EXPECT_EQ(got.status().code(), Code::kNotFound) << keys[p][i] << " of partition " << p;
      } else {
        ASSERT_TRUE(got.ok()) << keys[p][i] << ": " << got.status().to_string();
        EXPECT_EQ(got->value, "v");
      }
    }
    EXPECT_EQ(st.digest(p)->entries, p == twice ? 1u : gone ? 0u : 3u) << "partition " << p;
  }
  EXPECT_EQ(st.stats(kNow).keys, (q - dropped.size()) * 3 + 1);
}

std::string param_name(const ::testing::TestParamInfo<Kind>& param) {
  return kind_name(param.param);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreConformance,
                         ::testing::Values(Kind::kSqlite, Kind::kMemoryAtOnce, Kind::kMemoryHeld),
                         param_name);

// ------------------------------------------------------------------ differential

std::string describe(const Result<Record>& r) {
  if (!r.ok()) return std::string(code_name(r.status().code()));
  return r->key + " value=" + r->value + " version=" + r->version.to_string() +
         " expiry=" + std::to_string(r->expiry.ms) + (r->tombstone ? " tombstone" : "");
}

std::string describe(const ChangeEvent& e) {
  return std::string(change_op_name(e.op)) + " " + e.key + " value=" + e.value +
         " version=" + e.version.to_string() + " expiry=" + std::to_string(e.expiry.ms) +
         " partition=" + std::to_string(e.partition) + " seq=" + std::to_string(e.seq);
}

std::string describe(const Result<ApplyResult>& r) {
  if (!r.ok()) return r.status().to_string();
  return std::string(r->applied ? "applied " : "ignored ") + r->current.to_string() + " " +
         (r->applied ? describe(r->event) : "");
}

std::vector<std::string> describe(const Result<std::vector<ChangeEvent>>& r) {
  if (!r.ok()) return {r.status().to_string()};
  std::vector<ChangeEvent> events = *r;
  std::sort(events.begin(), events.end(), [](const ChangeEvent& a, const ChangeEvent& b) {
    return std::tie(a.partition, a.seq) < std::tie(b.partition, b.seq);
  });
  std::vector<std::string> out;
  for (const ChangeEvent& e : events) out.push_back(describe(e));
  return out;
}

std::string describe(const StoreStats& s, bool format5) {
  std::string out =
      "keys=" + std::to_string(s.keys) + " keys_with_expiry=" + std::to_string(s.keys_with_expiry) +
      " puts=" + std::to_string(s.puts_applied) + " deletes=" + std::to_string(s.deletes_applied) +
      " ignored=" + std::to_string(s.writes_ignored) + " expired=" + std::to_string(s.expired) +
      " group_writes=" + std::to_string(s.group_writes);
  // Format 4 deletes an expired row where format 5 leaves a tombstone to purge later.
  if (format5) out += " purged=" + std::to_string(s.tombstones_purged);
  return out;
}

// Applies one seeded random history to the SQLite store and the MemoryStore and compares
// every answer, the touched key after each step, and everything every 50 steps. Without
// `format5` the history avoids what format 4 answers differently (records arriving
// expired, older writes to keys that may have expired) and read() is not compared.
void compare_histories(uint64_t seed, int steps, bool format5) {
  TempDir options_dir;
  StoreOptions o = options_for(options_dir);
  o.dir.clear();
  o.partitions = 8;
  o.tombstone_grace_ms = 2000;
  o.changelog_keep = 30;
  auto sqlite = std::move(*Subject::open(Kind::kSqlite, o));
  auto memory = std::move(*Subject::open(Kind::kMemoryHeld, o));
  Random rng(seed);
  WallTime now = kNow;
  uint64_t last_hlc = 0;
  std::map<std::string, Record> newest;  // the newest record sent, by key
  std::set<std::string> keys;

  auto fresh = [&] {
    last_hlc = std::max(last_hlc + 1, HybridClock::pack(now.ms, 0));
    return Version{last_hlc, 1 + rng.uniform(3)};
  };
  auto compare_key = [&](const std::string& key, int step) {
    ASSERT_EQ(describe(sqlite->store().get(key, now)), describe(memory->store().get(key, now)))
        << "get " << key << " at step " << step << ", seed " << seed;
    if (format5) {
      ASSERT_EQ(describe(sqlite->store().read(key, now)), describe(memory->store().read(key, now)))
          << "read " << key << " at step " << step << ", seed " << seed;
    }
  };
  auto compare_all = [&](int step) {
    for (const std::string& key : keys) {
      compare_key(key, step);
      if (::testing::Test::HasFatalFailure()) return;
    }
    ASSERT_EQ(describe(sqlite->store().stats(now), format5),
              describe(memory->store().stats(now), format5))
        << "stats at step " << step << ", seed " << seed;
    for (uint32_t p = 0; p < o.partitions; ++p) {
      ASSERT_EQ(sqlite->store().last_seq(p), memory->store().last_seq(p)) << "partition " << p;
      ASSERT_EQ(describe(sqlite->store().read_changes(p, 0, 1 << 20)),
                describe(memory->store().read_changes(p, 0, 1 << 20)))
          << "change log of partition " << p << " at step " << step << ", seed " << seed;
    }
  };

  for (int step = 0; step < steps; ++step) {
    now.ms += static_cast<int64_t>(rng.uniform(40));
    const std::string key = "key-" + std::to_string(rng.uniform(40));
    keys.insert(key);
    auto known = newest.find(key);
    // Older writes to a key that may have expired, and records arriving expired, are
    // answered differently by format 4.
    const bool may_go_back =
        known != newest.end() && known->second.version.hlc > 1000 &&
        (format5 || (known->second.expiry.ms == 0 && !known->second.tombstone));
    const uint64_t choice = rng.uniform(100);
    if (choice >= 92) {
      // Which rows a bounded sweep takes is the store's choice (the SQLite store visits its
      // files in turn, the memory store its partitions): only whole sweeps are compared.
      const size_t max_rows = rng.chance(0.5) ? (1 << 20) : 1 + rng.uniform(8);
      if (max_rows < (1 << 20)) continue;  // which rows a bounded sweep takes differs
      ASSERT_EQ(describe(sqlite->sweep(now, max_rows)), describe(memory->sweep(now, max_rows)))
          << "sweep at step " << step << ", seed " << seed;
      continue;
    }
    Record r;
    r.key = key;
    if (choice < 35) {
      r = put(key, "v" + std::to_string(step), 0);
      r.version = fresh();
    } else if (choice < 50) {
      r = put(key, "t" + std::to_string(step), 0, 1,
              WallTime{now.ms + 1 + static_cast<int64_t>(rng.uniform(400))});
      r.version = fresh();
    } else if (choice < 60) {
      r = tombstone(key, 0);
      r.version = fresh();
    } else if (choice < 75 && may_go_back) {
      // A late copy of an older version.
      const uint64_t back = 1 + rng.uniform(std::min<uint64_t>(known->second.version.hlc - 1,
                                                               HybridClock::pack(500, 0)));
      r = rng.chance(0.7) ? put(key, "late" + std::to_string(step), 0) : tombstone(key, 0);
      r.version = Version{known->second.version.hlc - back, 1 + rng.uniform(3)};
      if (format5 && !r.tombstone && rng.chance(0.3)) {
        r.expiry = WallTime{now.ms - 50 + static_cast<int64_t>(rng.uniform(100))};
      }
    } else if (choice < 83 && format5) {
      // Arriving expired: a put whose expiry passed, or an expiry tombstone (a repair).
      r = rng.chance(0.6) ? put(key, "x" + std::to_string(step), 0) : tombstone(key, 0);
      r.expiry = WallTime{now.ms - static_cast<int64_t>(rng.uniform(100))};
      r.version = may_go_back && rng.chance(0.4)
                      ? Version{known->second.version.hlc - 1, 1 + rng.uniform(3)}
                      : fresh();
    } else if (choice < 88 && known != newest.end() && may_go_back) {
      r = known->second;  // the same version again
    } else {
      r = put(key, "w" + std::to_string(step), 0);
      r.version = fresh();
    }
    if (known == newest.end() || r.version > known->second.version) newest[key] = r;
    ASSERT_EQ(describe(sqlite->apply(r, now)), describe(memory->apply(r, now)))
        << "apply " << describe(Result<Record>(r)) << " at step " << step << ", seed " << seed;
    compare_key(key, step);
    if (::testing::Test::HasFatalFailure()) return;
    if (step % 50 == 49) {
      compare_all(step);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  ASSERT_EQ(describe(sqlite->sweep(now, 1 << 20)), describe(memory->sweep(now, 1 << 20)));
  compare_all(steps);
  // The history went through every kind of outcome it is there to compare.
  const StoreStats stats = memory->store().stats(now);
  EXPECT_GT(stats.puts_applied, 0u);
  EXPECT_GT(stats.deletes_applied, 0u);
  EXPECT_GT(stats.writes_ignored, 0u);
  EXPECT_GT(stats.expired, 0u);
  EXPECT_GT(stats.tombstones_purged, 0u);
  for (uint32_t p = 0; p < o.partitions; ++p) {
    EXPECT_GT(memory->store().read_changes(p, 0, 1)->front().seq, 1u) << "never trimmed";
  }
}

// Puts, deletes, expiring puts, sweeps at an advancing `now`, late older versions of keys
// that never expire and repeated versions: what format 4 and format 5 answer alike.
TEST(StoreDifferential, RandomHistoriesAgree) { compare_histories(7, 2500, false); }

// Everything, records arriving expired and older versions of expired keys included, with
// read() compared too.
TEST(StoreDifferential, Format5RandomHistoriesAgree) { compare_histories(11, 2500, true); }

}  // namespace
}  // namespace edgekv::store
