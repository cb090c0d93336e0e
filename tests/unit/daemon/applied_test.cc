// AppliedChanges against a real store: the read cache stays the store's committed state
// whatever order changes from several sources arrive in, and every applied change is fed
// exactly once.
#include "daemon/applied.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/hlc.h"
#include "common/random.h"
#include "store/store.h"

namespace edgekv::daemon {
namespace {

using cluster::ChangeSource;

// One fed (or expected) change: what identifies it and where it came from.
using FedChange = std::tuple<std::string, ChangeOp, Version, ChangeSource>;

FedChange fed(const ChangeEvent& e, ChangeSource source) {
  return {e.key, e.op, e.version, source};
}

class AppliedChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/edgekv-applied-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store::StoreOptions options;
    options.dir = dir_ / "data";
    options.partitions = 4;
    auto store = store::Store::open(options);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    store_ = std::move(store).value();
  }
  void TearDown() override {
    store_->close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<AppliedChanges> make(size_t cache_bytes) {
    return std::make_unique<AppliedChanges>(
        cache_bytes,
        [this](const ChangeEvent& e, ChangeSource source) { fed_.push_back(fed(e, source)); });
  }

  // Applies `record` to the store; the change when it was applied.
  std::optional<ChangeEvent> write(store::Record record) {
    auto result = store_->apply_sync(std::move(record), clock_.wall_now());
    EXPECT_TRUE(result.ok()) << result.status().to_string();
    if (!result.ok() || !result->applied) return std::nullopt;
    return result->event;
  }

  // A read as the replica side makes it: the cache, else the store (filling the cache).
  Result<store::Record> read(AppliedChanges& applied, const std::string& key) {
    return applied.read(*store_, key, clock_.wall_now());
  }

  // The cached state of `key`, if any, is the store's (Store::read's: tombstones and the
  // tombstones expiries leave included).
  void expect_cache_matches_store(AppliedChanges& applied, const std::string& key,
                                  const std::string& when) {
    store::Record cached;
    ReadCache::Lookup lookup = applied.cache().peek(key, clock_.wall_now(), &cached);
    if (lookup == ReadCache::Lookup::kMiss) return;
    Result<store::Record> stored = store_->read(key, clock_.wall_now());
    if (lookup == ReadCache::Lookup::kAbsent) {
      EXPECT_FALSE(stored.ok()) << when << ": cached absent, stored " << stored->value << " "
                                << stored->version.to_string();
      return;
    }
    ASSERT_TRUE(stored.ok()) << when << ": cached " << cached.value << " "
                             << cached.version.to_string() << ", stored absent";
    EXPECT_EQ(cached.value, stored->value) << when;
    EXPECT_EQ(cached.version, stored->version) << when;
    EXPECT_EQ(cached.expiry, stored->expiry) << when;
    EXPECT_EQ(cached.tombstone, stored->tombstone) << when;
  }

  store::Record put(const std::string& key, const std::string& value, Version version,
                    int64_t expiry_ms = 0) {
    store::Record r;
    r.key = key;
    r.value = value;
    r.version = version;
    r.expiry = WallTime{expiry_ms};
    return r;
  }

  ManualClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::vector<FedChange> fed_;
};

TEST_F(AppliedChangesTest, AChangeOlderThanTheCachedCopyDoesNotReplaceIt) {
  auto applied = make(1 << 20);
  const int64_t now = clock_.wall_now().ms;
  const Version v1{HybridClock::pack(now, 1), 2};
  const Version v2{HybridClock::pack(now, 2), 3};
  // Two replica writes commit; a read sees the second before either change arrives.
  std::optional<ChangeEvent> first = write(put("k", "one", v1));
  std::optional<ChangeEvent> second = write(put("k", "two", v2));
  ASSERT_TRUE(first && second);
  ASSERT_EQ(read(*applied, "k")->value, "two");
  applied->apply(*first, ChangeSource::kReplica);
  ASSERT_TRUE(read(*applied, "k").ok());
  EXPECT_EQ(read(*applied, "k")->value, "two") << "the older change replaced the newer copy";
  applied->apply(*second, ChangeSource::kReplica);
  EXPECT_EQ(read(*applied, "k")->version, v2);
  EXPECT_EQ(fed_, (std::vector<FedChange>{fed(*first, ChangeSource::kReplica),
                                          fed(*second, ChangeSource::kReplica)}));
}

TEST_F(AppliedChangesTest, AnExpiryReportedAfterALaterWriteLeavesTheWriteCached) {
  auto applied = make(1 << 20);
  const int64_t now = clock_.wall_now().ms;
  std::optional<ChangeEvent> ttl =
      write(put("k", "short", Version{HybridClock::pack(now, 0), 1}, now + 10));
  ASSERT_TRUE(ttl);
  applied->apply(*ttl, ChangeSource::kCoordinated);
  ASSERT_EQ(read(*applied, "k")->value, "short");  // now cached
  clock_.advance(std::chrono::milliseconds(10));
  auto swept = store_->sweep_sync(clock_.wall_now(), 100);
  ASSERT_TRUE(swept.ok());
  ASSERT_EQ(swept->size(), 1u);
  // The key is written again before the sweep's events come back.
  std::optional<ChangeEvent> again =
      write(put("k", "back", Version{HybridClock::pack(now + 10, 0), 1}));
  ASSERT_TRUE(again);
  applied->apply(*again, ChangeSource::kCoordinated);
  applied->apply((*swept)[0], ChangeSource::kExpiry);
  Result<store::Record> got = read(*applied, "k");
  ASSERT_TRUE(got.ok() && !got->tombstone) << "the late expiry hid a live key";
  EXPECT_EQ(got->value, "back");
  EXPECT_EQ(std::get<ChangeOp>(fed_.back()), ChangeOp::kExpire);  // fed all the same
}

TEST_F(AppliedChangesTest, AnExpiryOfTheCachedVersionLeavesItsTombstone) {
  auto applied = make(1 << 20);
  const int64_t now = clock_.wall_now().ms;
  const Version version{HybridClock::pack(now, 0), 1};
  std::optional<ChangeEvent> ttl = write(put("k", "v", version, now + 10));
  ASSERT_TRUE(ttl);
  applied->apply(*ttl, ChangeSource::kCoordinated);
  ASSERT_EQ(read(*applied, "k")->value, "v");  // now cached
  clock_.advance(std::chrono::milliseconds(10));
  auto swept = store_->sweep_sync(clock_.wall_now(), 100);
  ASSERT_TRUE(swept.ok() && swept->size() == 1u);
  applied->apply((*swept)[0], ChangeSource::kExpiry);
  // The expiry's tombstone, with the version and expiry of the record it ended, whatever
  // the time the cache is asked at, as the store answers.
  const uint64_t hits = applied->cache().hits();
  Result<store::Record> got = applied->read(*store_, "k", WallTime{now});
  EXPECT_EQ(applied->cache().hits(), hits + 1) << "answered from the store, not the cache";
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(got->tombstone);
  EXPECT_EQ(got->version, version);
  EXPECT_EQ(got->expiry.ms, now + 10);
  EXPECT_TRUE(got->value.empty());
}

TEST_F(AppliedChangesTest, AChangeToAKeyNotCachedLeavesItOut) {
  auto applied = make(1 << 20);
  const int64_t now = clock_.wall_now().ms;
  std::optional<ChangeEvent> first = write(put("k", "one", Version{HybridClock::pack(now, 1), 1}));
  ASSERT_TRUE(first);
  applied->apply(*first, ChangeSource::kCoordinated);
  EXPECT_EQ(applied->cache().entries(), 0u);
  // A read caches it; a missing key is cached as absent, and a change then takes its place.
  EXPECT_EQ(read(*applied, "k")->value, "one");
  EXPECT_EQ(read(*applied, "gone").status().code(), Code::kNotFound);
  EXPECT_EQ(applied->cache().entries(), 2u);
  std::optional<ChangeEvent> later =
      write(put("gone", "back", Version{HybridClock::pack(now, 2), 1}));
  ASSERT_TRUE(later);
  applied->apply(*later, ChangeSource::kReplica);
  const uint64_t hits = applied->cache().hits();
  EXPECT_EQ(read(*applied, "gone")->value, "back");
  EXPECT_EQ(applied->cache().hits(), hits + 1);
}

TEST_F(AppliedChangesTest, ADroppedPartitionIsReadFromTheStoreAgain) {
  auto applied = make(1 << 20);
  const int64_t now = clock_.wall_now().ms;
  const uint32_t p = store_->partition_of("k");
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    const std::string key = "other-" + std::to_string(i);
    if (store_->partition_of(key) != p) other = key;
  }
  ASSERT_TRUE(write(put("k", "v", Version{HybridClock::pack(now, 5), 1})));
  ASSERT_TRUE(write(put(other, "o", Version{HybridClock::pack(now, 5), 1})));
  ASSERT_EQ(read(*applied, "k")->value, "v");  // both cached now
  ASSERT_EQ(read(*applied, other)->value, "o");
  ASSERT_TRUE(store_->drop_partition_sync(p, clock_.wall_now()).ok());
  // No change arrives for a drop; the next read of the partition asks the store.
  EXPECT_EQ(read(*applied, "k").status().code(), Code::kNotFound);
  const uint64_t hits = applied->cache().hits();
  EXPECT_EQ(read(*applied, other)->value, "o");
  EXPECT_EQ(applied->cache().hits(), hits + 1) << "another partition's key was forgotten too";
  // A write older than the dropped copy lands, and its change is what a read sees.
  std::optional<ChangeEvent> older =
      write(put("k", "older", Version{HybridClock::pack(now, 1), 1}));
  ASSERT_TRUE(older);
  applied->apply(*older, ChangeSource::kReplica);
  EXPECT_EQ(read(*applied, "k")->value, "older");
}

// Changes from every source, committed in random order and arriving later, in the orders
// the daemon can see them: one key's writes in commit order, the sweep's expiries whenever
// its sweep is done, reads at any time.
// After each step the cache must hold the store's state of every key with nothing in
// flight; a read never returns a version older than one returned before; and every
// applied change is fed exactly once.
class AppliedChangesRandomTest : public AppliedChangesTest,
                                 public ::testing::WithParamInterface<std::tuple<size_t, int>> {};

TEST_P(AppliedChangesRandomTest, CacheFollowsTheStoreAndEveryChangeIsFedOnce) {
  const auto [cache_bytes, seed] = GetParam();
  auto applied = make(cache_bytes);
  Random rng(static_cast<uint64_t>(seed));
  constexpr int kKeys = 12;
  constexpr int kSteps = 1500;
  constexpr ChangeSource kOthers[] = {ChangeSource::kReplica, ChangeSource::kRepair,
                                      ChangeSource::kHint, ChangeSource::kHandover};
  struct Pending {
    ChangeEvent event;
    ChangeSource source;
  };
  std::map<std::string, std::deque<Pending>> writes;  // per key, in commit order
  std::vector<ChangeEvent> sweep_events;              // a sweep done, not yet reported
  std::map<std::string, Version> last_read;           // newest version a read returned
  std::vector<FedChange> expected;
  uint32_t logical = 0;
  auto key_of = [](uint64_t i) { return "key" + std::to_string(i); };

  for (int step = 0; step < kSteps; ++step) {
    const std::string key = key_of(rng.uniform(kKeys));
    const uint64_t action = rng.uniform(100);
    const std::string when = "seed " + std::to_string(seed) + " step " + std::to_string(step);
    if (action < 40) {
      // A write from some source, sometimes older than what is stored (then ignored).
      const bool coordinated = rng.chance(0.4);
      const ChangeSource source =
          coordinated ? ChangeSource::kCoordinated : kOthers[rng.uniform(4)];
      const int64_t now = clock_.wall_now().ms;
      const int64_t physical = rng.chance(0.2) ? now - static_cast<int64_t>(rng.uniform(50)) : now;
      const Version version{HybridClock::pack(physical, ++logical), 1 + rng.uniform(3)};
      store::Record record = put(key, "v" + std::to_string(step), version);
      if (rng.chance(0.3)) {
        record.value.clear();
        record.tombstone = true;
      } else if (rng.chance(0.4)) {
        record.expiry = WallTime{now + 1 + static_cast<int64_t>(rng.uniform(20))};
      }
      if (std::optional<ChangeEvent> event = write(std::move(record))) {
        expected.push_back(fed(*event, source));
        writes[key].push_back({std::move(*event), source});
      }
    } else if (action < 65) {
      // The oldest change of a key arrives.
      auto it = writes.find(key);
      if (it == writes.end() || it->second.empty()) continue;
      Pending next = std::move(it->second.front());
      it->second.pop_front();
      applied->apply(std::move(next.event), next.source);
    } else if (action < 85) {
      Result<store::Record> got = read(*applied, key);
      if (got.ok()) {
        auto [it, fresh] = last_read.try_emplace(key, got->version);
        ASSERT_GE(got->version, it->second) << when << ": a read went back in time";
        it->second = got->version;
      }
    } else if (action < 92) {
      clock_.advance(std::chrono::milliseconds(1 + rng.uniform(10)));
    } else if (action < 97) {
      if (!sweep_events.empty()) continue;  // one sweep at a time, as the daemon runs them
      auto swept = store_->sweep_sync(clock_.wall_now(), 1000);
      ASSERT_TRUE(swept.ok()) << swept.status().to_string();
      for (ChangeEvent& e : *swept) {
        expected.push_back(fed(e, ChangeSource::kExpiry));
        sweep_events.push_back(std::move(e));
      }
    } else {
      for (ChangeEvent& e : sweep_events) applied->apply(std::move(e), ChangeSource::kExpiry);
      sweep_events.clear();
    }
    for (int i = 0; i < kKeys; ++i) {
      const std::string k = key_of(i);
      auto it = writes.find(k);
      const bool in_flight = (it != writes.end() && !it->second.empty()) ||
                             std::any_of(sweep_events.begin(), sweep_events.end(),
                                         [&](const ChangeEvent& e) { return e.key == k; });
      if (!in_flight) expect_cache_matches_store(*applied, k, when + " " + k);
    }
    if (HasFailure()) return;
  }
  // Everything arrives; then every key's cached state is the store's.
  for (auto& [key, queue] : writes) {
    for (Pending& p : queue) applied->apply(std::move(p.event), p.source);
  }
  for (ChangeEvent& e : sweep_events) applied->apply(std::move(e), ChangeSource::kExpiry);
  for (int i = 0; i < kKeys; ++i) expect_cache_matches_store(*applied, key_of(i), "at the end");
  std::sort(expected.begin(), expected.end());
  std::vector<FedChange> got = fed_;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected) << "every applied change fed exactly once";
  EXPECT_GT(expected.size(), 200u);
  if (cache_bytes > 0) {
    EXPECT_GT(applied->cache().hits(), 0u);
  }
}

// A cache of a few entries (so keys are evicted between their changes) and one holding all.
INSTANTIATE_TEST_SUITE_P(SmallAndLargeCache, AppliedChangesRandomTest,
                         ::testing::Combine(::testing::Values(size_t{1200}, size_t{1} << 20),
                                            ::testing::Values(1, 2, 3, 4)));

}  // namespace
}  // namespace edgekv::daemon
