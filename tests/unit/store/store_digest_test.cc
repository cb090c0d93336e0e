// Anti-entropy digests (store/digest.h, Store::digest and Store::digest_entries): the
// hashing's properties, then both stores: equal digests for equal contents whatever the
// order of the writes and the sweeps, one key changing one leaf, the entries of the leaves
// asked for, a digest built again after reopening, the SQLite store and the MemoryStore
// agreeing, a randomized history checked against a computation from scratch (with writes
// running while the first digest is built), and the migration from format 5.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/hash.h"
#include "common/random.h"
#include "store/digest.h"
#include "store/memory_store.h"
#include "store/schema.h"
#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of the store suites

std::vector<uint32_t> all_leaves() {
  std::vector<uint32_t> out(kDigestLeaves);
  for (uint32_t i = 0; i < kDigestLeaves; ++i) out[i] = i;
  return out;
}

// --- The hashing -------------------------------------------------------------------------

TEST(DigestHashTest, AnExpiredRowAndItsExpiryTombstoneAreOneEntryAndADeleteAnother) {
  const Version v{hlc_at(0), 7};
  const DigestEntry live = digest_entry("k", v, /*tombstone=*/false, kNow.ms + 5);
  const DigestEntry expired = digest_entry("k", v, /*tombstone=*/true, kNow.ms + 5);
  EXPECT_EQ(live, expired);
  EXPECT_EQ(digest_entry_hash(live), digest_entry_hash(expired));
  const DigestEntry deleted = digest_entry("k", v, /*tombstone=*/true, 0);
  EXPECT_TRUE(deleted.deleted);
  EXPECT_EQ(deleted.expiry.ms, 0);
  // A live row without TTL and a delete of the same version differ.
  const DigestEntry plain = digest_entry("k", v, false, 0);
  EXPECT_NE(digest_entry_hash(plain), digest_entry_hash(deleted));
  // Every field counts.
  const uint64_t base = digest_entry_hash("k", v, false, 5);
  EXPECT_NE(base, digest_entry_hash("k2", v, false, 5));
  EXPECT_NE(base, digest_entry_hash("k", Version{v.hlc + 1, v.origin}, false, 5));
  EXPECT_NE(base, digest_entry_hash("k", Version{v.hlc, v.origin + 1}, false, 5));
  EXPECT_NE(base, digest_entry_hash("k", v, false, 6));
  EXPECT_NE(base, digest_entry_hash(std::string("k\0", 2), v, false, 5));
}

TEST(DigestHashTest, LeavesDoNotDependOnOrderAndRemovingUndoesAdding) {
  DigestLeaves a, b;
  for (int i = 0; i < 100; ++i) a.add("k" + std::to_string(i), Version{hlc_at(i), 1}, false, 0);
  for (int i = 99; i >= 0; --i) b.add("k" + std::to_string(i), Version{hlc_at(i), 1}, false, 0);
  EXPECT_EQ(a.leaves, b.leaves);
  EXPECT_EQ(a.to_digest(3).root, b.to_digest(3).root);
  EXPECT_EQ(a.to_digest(3).entries, 100u);
  for (int i = 0; i < 100; ++i) a.remove("k" + std::to_string(i), Version{hlc_at(i), 1}, false, 0);
  EXPECT_EQ(a.leaves, DigestLeaves().leaves);
  EXPECT_EQ(a.entries, 0);
  // One change touches one leaf: the key's.
  DigestLeaves c = b;
  c.remove("k5", Version{hlc_at(5), 1}, false, 0);
  c.add("k5", Version{hlc_at(50), 1}, false, 0);
  for (uint32_t leaf = 0; leaf < kDigestLeaves; ++leaf) {
    EXPECT_EQ(c.leaves[leaf] != b.leaves[leaf], leaf == digest_leaf("k5")) << leaf;
  }
  EXPECT_NE(c.to_digest(0).root, b.to_digest(0).root);
}

TEST(DigestHashTest, KeysOfOnePartitionSpreadOverEveryLeaf) {
  // The leaf's seed is not the partition hash's: keys sharing the partition hash's top
  // bits still land on every leaf, about evenly.
  constexpr uint32_t kPartitions = 512;
  std::vector<int> per_leaf(kDigestLeaves, 0);
  int keys = 0;
  for (int i = 0; keys < 64 * static_cast<int>(kDigestLeaves); ++i) {
    const std::string key = "key:" + std::to_string(i);
    if (partition_of(key, kPartitions) != 7) continue;
    ++keys;
    const uint32_t leaf = digest_leaf(key);
    ASSERT_LT(leaf, kDigestLeaves);
    ++per_leaf[leaf];
  }
  // 64 expected per leaf; a Poisson(64) leaf falls under 25 or over 115 about once in 1e8.
  EXPECT_GT(*std::min_element(per_leaf.begin(), per_leaf.end()), 25);
  EXPECT_LT(*std::max_element(per_leaf.begin(), per_leaf.end()), 115);
}

TEST(DigestHashTest, LeafSetsAreCheckedSortedAndDeduplicated) {
  Result<std::vector<uint32_t>> set = digest_leaf_set({5, 1, 5, 1023});
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(*set, (std::vector<uint32_t>{1, 5, 1023}));
  Result<std::vector<uint32_t>> bad = digest_leaf_set({1, 1024});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("1024"), std::string::npos) << bad.status().message();
}

// --- Both stores --------------------------------------------------------------------------

enum class Kind { kSqlite, kMemory };

// A store of one kind whose writes and sweeps are waited for.
class Subject {
 public:
  Subject(Kind kind, StoreOptions options) : kind_(kind), options_(std::move(options)) {
    options_.dir = dir_.data();
    open();
  }

  Store& store() { return *store_; }

  ApplyResult apply(Record record, WallTime now = kNow) {
    Result<ApplyResult> r = store_->apply_sync(std::move(record), now);
    EDGEKV_ASSERT(r.ok());
    return *r;
  }
  std::vector<ChangeEvent> sweep(WallTime now, size_t max_rows = 100000) {
    Result<std::vector<ChangeEvent>> r = store_->sweep_sync(now, max_rows);
    EDGEKV_ASSERT(r.ok());
    return *r;
  }
  PartitionDigest digest(uint32_t p) {
    Result<PartitionDigest> d = store_->digest(p);
    EDGEKV_ASSERT(d.ok());
    return *d;
  }
  std::vector<DigestEntry> entries(uint32_t p) {
    Result<std::vector<DigestEntry>> e = store_->digest_entries(p, all_leaves(), SIZE_MAX);
    EDGEKV_ASSERT(e.ok());
    return *e;
  }
  // The partition's digest from its entries, as a scan would compute it.
  PartitionDigest from_scratch(uint32_t p) {
    DigestLeaves leaves;
    for (const DigestEntry& e : entries(p)) {
      leaves.add(e.key, e.version, e.deleted, e.expiry.ms);
    }
    return leaves.to_digest(p);
  }
  void reopen() {
    if (kind_ == Kind::kSqlite) {
      store_.reset();
      open();
    } else {
      auto& memory = static_cast<MemoryStore&>(*store_);
      memory.close();
      memory.reopen();
    }
  }

 private:
  void open() {
    if (kind_ == Kind::kSqlite) {
      store_ = open_or_die(options_);
      return;
    }
    Result<std::unique_ptr<MemoryStore>> store =
        MemoryStore::open(options_, [](std::function<void()> commit) { commit(); });
    EDGEKV_ASSERT(store.ok());
    store_ = std::move(*store);
  }

  TempDir dir_;
  Kind kind_;
  StoreOptions options_;
  std::unique_ptr<Store> store_;
};

StoreOptions small_options() {
  StoreOptions o;
  o.partitions = 4;
  // Tombstones older than a second are purged by a sweep.
  o.tombstone_grace_ms = 1000;
  if (const char* at = getenv("EDGEKV_TEST_STAGE_APPLY_AT"); at != nullptr && *at != 0) {
    o.stage_apply_at = std::stoull(at);
  }
  return o;
}

void expect_same_digests(Subject& a, Subject& b, const std::string& what) {
  for (uint32_t p = 0; p < a.store().partitions(); ++p) {
    PartitionDigest da = a.digest(p), db = b.digest(p);
    EXPECT_EQ(da.leaves, db.leaves) << what << ", partition " << p;
    EXPECT_EQ(da.root, db.root) << what << ", partition " << p;
    EXPECT_EQ(da.entries, db.entries) << what << ", partition " << p;
  }
}

// A history of writes: several versions per key, TTLs (some already expired when they
// arrive), deletes.
std::vector<Record> history(uint64_t seed, int keys, int writes) {
  Random rng(seed);
  std::vector<Record> out;
  for (int i = 0; i < writes; ++i) {
    std::string key = "key" + std::to_string(rng.uniform(keys));
    const uint64_t hlc = hlc_at(static_cast<int64_t>(rng.uniform(5000)), rng.uniform(4));
    const NodeOrigin origin = 1 + rng.uniform(3);
    switch (rng.uniform(5)) {
      case 0: out.push_back(tombstone(std::move(key), hlc, origin)); break;
      case 1:
        out.push_back(put(std::move(key), "t" + std::to_string(i), hlc, origin,
                          WallTime{kNow.ms + static_cast<int64_t>(rng.uniform(2000)) - 500}));
        break;
      default: out.push_back(put(std::move(key), "v" + std::to_string(i), hlc, origin)); break;
    }
  }
  return out;
}

class StoreDigestTest : public ::testing::TestWithParam<Kind> {};

INSTANTIATE_TEST_SUITE_P(Stores, StoreDigestTest, ::testing::Values(Kind::kSqlite, Kind::kMemory),
                         [](const ::testing::TestParamInfo<Kind>& param) {
                           return param.param == Kind::kSqlite ? "Sqlite" : "Memory";
                         });

TEST_P(StoreDigestTest, TheSameWritesInAnotherOrderAndWithSweepsGiveEqualDigests) {
  const std::vector<Record> writes = history(11, 60, 400);
  std::vector<Record> shuffled = writes;
  Random rng(12);
  for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[rng.uniform(i)]);

  Subject a(GetParam(), small_options());
  Subject b(GetParam(), small_options());
  // `a` is asked before its writes (kept up as they commit), `b` only after.
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(a.digest(p).entries, 0u);
  for (const Record& r : writes) a.apply(r);
  for (size_t i = 0; i < shuffled.size(); ++i) {
    b.apply(shuffled[i]);
    // Sweeps at times when some TTLs have passed, in small budgets; the grace period is
    // not over for any tombstone, so nothing is purged.
    if (i % 50 == 49) b.sweep(WallTime{kNow.ms + static_cast<int64_t>(i)}, 7);
  }
  expect_same_digests(a, b, "before the last sweep");
  b.sweep(WallTime{kNow.ms + 1500});
  expect_same_digests(a, b, "after sweeping everything expired");
  for (uint32_t p = 0; p < 4; ++p) {
    EXPECT_EQ(a.digest(p).leaves, a.from_scratch(p).leaves) << p;
    EXPECT_EQ(b.digest(p).leaves, b.from_scratch(p).leaves) << p;
  }
}

TEST_P(StoreDigestTest, OneDifferingKeyChangesExactlyItsLeaf) {
  Subject a(GetParam(), small_options());
  Subject b(GetParam(), small_options());
  for (int i = 0; i < 200; ++i) {
    a.apply(put("k" + std::to_string(i), "v", hlc_at(i)));
    b.apply(put("k" + std::to_string(i), "v", hlc_at(i)));
  }
  const uint32_t p = a.store().partition_of("k17");
  const PartitionDigest before = a.digest(p);
  EXPECT_EQ(before.leaves, b.digest(p).leaves);
  // A newer version, then a delete, then an expiry: each changes the key's leaf only.
  const std::vector<Record> changes = {put("k17", "w", hlc_at(1000)),
                                       tombstone("k17", hlc_at(1001)),
                                       put("k17", "x", hlc_at(1002), 1, WallTime{kNow.ms + 10})};
  for (const Record& r : changes) {
    a.apply(r);
    const PartitionDigest after = a.digest(p);
    for (uint32_t leaf = 0; leaf < kDigestLeaves; ++leaf) {
      EXPECT_EQ(after.leaves[leaf] != before.leaves[leaf], leaf == digest_leaf("k17"))
          << "leaf " << leaf;
    }
    EXPECT_NE(after.root, before.root);
    EXPECT_EQ(after.entries, before.entries);
  }
  // A new key adds an entry to its leaf; other partitions do not change.
  const uint32_t q = (p + 1) % 4;
  const PartitionDigest other = a.digest(q);
  std::string fresh;
  for (int i = 0; fresh.empty(); ++i) {
    if (a.store().partition_of("new" + std::to_string(i)) == p) fresh = "new" + std::to_string(i);
  }
  a.apply(put(fresh, "n", hlc_at(5)));
  EXPECT_EQ(a.digest(p).entries, before.entries + 1);
  EXPECT_EQ(a.digest(q).leaves, other.leaves);
}

TEST_P(StoreDigestTest, DigestEntriesAreExactlyTheStatesOfTheLeavesAsked) {
  Subject s(GetParam(), small_options());
  const std::vector<Record> writes = history(21, 300, 900);
  for (const Record& r : writes) s.apply(r);
  s.sweep(WallTime{kNow.ms + 100});  // some expiry tombstones, some expired rows left
  const uint32_t p = 2;
  // What the partition holds, from read(): every key written to it.
  std::set<std::string> keys;
  for (const Record& r : writes) {
    if (s.store().partition_of(r.key) == p) keys.insert(r.key);
  }
  ASSERT_GT(keys.size(), 30u);
  const std::vector<uint32_t> asked = {digest_leaf(*keys.begin()), 3, digest_leaf(*keys.rbegin()),
                                       700};
  std::vector<DigestEntry> want;
  for (const std::string& key : keys) {
    const uint32_t leaf = digest_leaf(key);
    if (std::find(asked.begin(), asked.end(), leaf) == asked.end()) continue;
    Result<Record> r = s.store().read(key, kNow);
    ASSERT_TRUE(r.ok()) << key;
    want.push_back(digest_entry(key, r->version, r->tombstone, r->expiry.ms));
  }
  std::sort(want.begin(), want.end(), [](const DigestEntry& a, const DigestEntry& b) {
    const uint32_t la = digest_leaf(a.key), lb = digest_leaf(b.key);
    return la != lb ? la < lb : a.key < b.key;
  });
  Result<std::vector<DigestEntry>> got = s.store().digest_entries(p, asked, 1000);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(*got, want);
  // Their hashes make up those leaves.
  const PartitionDigest d = s.digest(p);
  std::map<uint32_t, uint64_t> xor_of;
  for (const DigestEntry& e : *got) xor_of[digest_leaf(e.key)] ^= digest_entry_hash(e);
  for (uint32_t leaf : asked) EXPECT_EQ(xor_of[leaf], d.leaves[leaf]) << leaf;
  // At most `max`, the first in (leaf, key) order.
  Result<std::vector<DigestEntry>> two = s.store().digest_entries(p, asked, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, std::vector<DigestEntry>(want.begin(), want.begin() + 2));
  // All leaves: every key of the partition.
  EXPECT_EQ(s.entries(p).size(), keys.size());
  EXPECT_EQ(d.entries, keys.size());
}

TEST_P(StoreDigestTest, BadArgumentsAreRefusedNamingThem) {
  Subject s(GetParam(), small_options());
  Result<PartitionDigest> d = s.store().digest(4);
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
  EXPECT_NE(d.status().message().find("partition 4"), std::string::npos);
  Result<std::vector<DigestEntry>> e = s.store().digest_entries(4, {0}, 10);
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  e = s.store().digest_entries(0, {0, 5000}, 10);
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_NE(e.status().message().find("5000"), std::string::npos);
  e = s.store().digest_entries(0, {}, 10);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
}

TEST_P(StoreDigestTest, ADigestIsBuiltAgainAfterReopenAndEqual) {
  Subject s(GetParam(), small_options());
  for (const Record& r : history(31, 100, 500)) s.apply(r);
  std::vector<PartitionDigest> before;
  for (uint32_t p = 0; p < 4; ++p) before.push_back(s.digest(p));
  s.reopen();
  for (uint32_t p = 0; p < 4; ++p) {
    const PartitionDigest after = s.digest(p);
    EXPECT_EQ(after.leaves, before[p].leaves) << p;
    EXPECT_EQ(after.root, before[p].root) << p;
    EXPECT_EQ(after.entries, before[p].entries) << p;
  }
  // And kept up after the rebuild.
  s.apply(put("late", "l", hlc_at(9000)));
  const uint32_t p = s.store().partition_of("late");
  EXPECT_EQ(s.digest(p).leaves, s.from_scratch(p).leaves);
}

// A randomized history of puts, deletes, TTLs, expired arrivals, sweeps that expire and
// purge; after every step the incremental digest equals one computed from scratch.
TEST_P(StoreDigestTest, RandomHistoriesKeepTheIncrementalDigestEqualToAScan) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    StoreOptions o = small_options();
    o.stage_apply_at = seed == 1 ? 0 : 16;  // batches after every group, or every few
    o.stage_apply_batch = 8;
    Subject s(GetParam(), o);
    Random rng(seed);
    int64_t now_ms = kNow.ms;
    // Two partitions asked for from the start, the others halfway.
    s.digest(0);
    s.digest(1);
    for (int step = 0; step < 600; ++step) {
      const std::string key = "k" + std::to_string(rng.uniform(80));
      const uint64_t hlc =
          HybridClock::pack(now_ms - static_cast<int64_t>(rng.uniform(3000)), rng.uniform(8));
      switch (rng.uniform(8)) {
        case 0: s.apply(tombstone(key, hlc), WallTime{now_ms}); break;
        case 1:
          s.apply(put(key, "ttl", hlc, 1,
                      WallTime{now_ms + static_cast<int64_t>(rng.uniform(400)) - 100}),
                  WallTime{now_ms});
          break;
        case 2: s.sweep(WallTime{now_ms}, 1 + rng.uniform(20)); break;
        case 3: now_ms += static_cast<int64_t>(rng.uniform(300)); break;
        default: s.apply(put(key, "v", hlc, 1 + rng.uniform(2)), WallTime{now_ms}); break;
      }
      if (step == 300) {
        s.digest(2);
        s.digest(3);
      }
      if (step % 25 == 0 || step == 599) {
        for (uint32_t p = 0; p < 4; ++p) {
          ASSERT_EQ(s.digest(p).leaves, s.from_scratch(p).leaves) << "step " << step << " p " << p;
        }
      }
    }
    EXPECT_GT(s.store().stats(WallTime{now_ms}).tombstones_purged, 0u);
    std::vector<PartitionDigest> kept;
    for (uint32_t p = 0; p < 4; ++p) kept.push_back(s.digest(p));
    s.reopen();
    for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(s.digest(p).leaves, kept[p].leaves) << p;
  }
}

TEST(StoreDigestAgreementTest, TheSqliteStoreAndTheMemoryStoreGiveTheSameDigests) {
  Subject sqlite(Kind::kSqlite, small_options());
  Subject memory(Kind::kMemory, small_options());
  const std::vector<Record> writes = history(41, 200, 1000);
  for (size_t i = 0; i < writes.size(); ++i) {
    sqlite.apply(writes[i]);
    memory.apply(writes[i]);
    if (i % 100 == 99) {
      const WallTime at{kNow.ms + static_cast<int64_t>(i) * 3};
      sqlite.sweep(at, 10);
      memory.sweep(at, 10);
    }
  }
  expect_same_digests(sqlite, memory, "after the same writes and sweeps");
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(sqlite.entries(p), memory.entries(p)) << p;
  // Purges too: past the grace period of every tombstone.
  sqlite.sweep(WallTime{kNow.ms + 100000});
  memory.sweep(WallTime{kNow.ms + 100000});
  expect_same_digests(sqlite, memory, "after purging");
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(sqlite.entries(p), memory.entries(p)) << p;
}

// The first digest of a partition is built while writes keep committing to it: whatever
// commits during the scan is in the digest once, as a scan after them finds.
TEST(StoreDigestConcurrencyTest, ADigestBuiltDuringWritesTakesEachOfThemOnce) {
  StoreOptions o = small_options();
  o.partitions = 1;
  o.db_files = 1;
  o.stage_apply_at = 64;
  o.stage_apply_batch = 32;
  Subject s(Kind::kSqlite, o);
  for (int i = 0; i < 20000; ++i) s.apply(put("pre" + std::to_string(i), "v", hlc_at(i)));
  // Tombstones old enough to be purged while the writer runs.
  for (int i = 0; i < 2000; i += 2) s.apply(tombstone("pre" + std::to_string(i), hlc_at(20000)));
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    Random rng(5);
    Acks acks;
    int n = 0;
    while (!stop.load()) {
      const std::string key = "pre" + std::to_string(rng.uniform(4000));
      const uint64_t hlc = hlc_at(30000 + n);
      s.store().apply(n % 3 == 0 ? tombstone(key, hlc) : put(key, "w", hlc), kNow, acks.callback());
      ++n;
      if (n % 64 == 0) {
        EDGEKV_ASSERT(acks.wait_for(static_cast<size_t>(n)));
        written.store(n);
      }
    }
    EDGEKV_ASSERT(acks.wait_for(static_cast<size_t>(n)));
  });
  std::thread sweeper([&] {
    while (!stop.load()) {
      (void)s.store().sweep_sync(WallTime{kNow.ms + 1'000'000}, 50);
    }
  });
  ASSERT_TRUE(eventually([&] { return written.load() >= 256; }));
  const PartitionDigest built = s.digest(0);
  EXPECT_GT(built.entries, 0u);
  ASSERT_TRUE(eventually([&] { return written.load() >= 12000; }));
  stop.store(true);
  writer.join();
  sweeper.join();
  EXPECT_EQ(s.digest(0).leaves, s.from_scratch(0).leaves);
  EXPECT_GT(s.store().stats(kNow).tombstones_purged, 0u);
}

// Format 6 keeps rows in (digest leaf, key) order. A format 5 directory's row tables are
// rebuilt so in one transaction per data file, and the digest and the entries of every
// leaf are what they were, large values included.
TEST(StoreDigestMigrationTest, AFormatFiveDirectoryGetsTheLeafOfEveryRow) {
  TempDir dir;
  StoreOptions options = small_options();
  options.dir = dir.data();
  std::vector<PartitionDigest> before;
  std::vector<std::vector<DigestEntry>> entries_before;
  {
    auto store = open_or_die(options);
    for (const Record& r : history(51, 300, 800)) ASSERT_TRUE(store->apply_sync(r, kNow).ok());
    ASSERT_TRUE(store->apply_sync(put("big", random_bytes(3000, 9), hlc_at(99998)), kNow).ok());
    for (uint32_t p = 0; p < 4; ++p) {
      before.push_back(*store->digest(p));
      entries_before.push_back(*store->digest_entries(p, all_leaves(), SIZE_MAX));
    }
  }
  for (int f = 0; f < 2; ++f) {
    const std::string n = std::to_string(f);
    RawDb(dir.data() / ("data-" + n + ".db")).downgrade_to_format_5();
    RawDb(dir.data() / ("stage-" + n + ".db"))
        .exec("UPDATE meta SET value = 5 WHERE name = 'format_version';");
    ASSERT_EQ(RawDb(dir.data() / ("data-" + n + ".db"))
                  .query_int("SELECT count(*) FROM pragma_table_info('kv_0000" + n +
                             "') WHERE name = 'leaf'"),
              0);
  }
  auto store = open_or_die(options);
  for (int f = 0; f < 2; ++f) {
    const std::string n = std::to_string(f);
    for (const char* file : {"data-", "stage-"}) {
      EXPECT_EQ(RawDb(dir.data() / (file + n + ".db"))
                    .query_int("SELECT value FROM meta WHERE name = 'format_version'"),
                kFormatVersion);
    }
    // Rows in (leaf, key) order, with their indexes and value triggers made again.
    RawDb data(dir.data() / ("data-" + n + ".db"));
    EXPECT_EQ(data.query_int("SELECT count(*) FROM pragma_index_info('sqlite_autoindex_kv_0000" +
                             n + "_1') WHERE name = 'leaf' AND seqno = 0"),
              1);
    EXPECT_EQ(data.query_int("SELECT count(*) FROM sqlite_schema WHERE tbl_name = 'kv_0000" + n +
                             "' AND type IN ('index', 'trigger') AND sql IS NOT NULL"),
              4);
  }
  for (uint32_t p = 0; p < 4; ++p) {
    const PartitionDigest after = *store->digest(p);
    EXPECT_EQ(after.leaves, before[p].leaves) << p;
    EXPECT_EQ(after.entries, before[p].entries) << p;
    // Leaf by leaf, through the index the migration built.
    std::vector<DigestEntry> by_leaf;
    for (uint32_t leaf = 0; leaf < kDigestLeaves; ++leaf) {
      Result<std::vector<DigestEntry>> e = store->digest_entries(p, {leaf}, SIZE_MAX);
      ASSERT_TRUE(e.ok());
      by_leaf.insert(by_leaf.end(), e->begin(), e->end());
    }
    EXPECT_EQ(by_leaf, entries_before[p]) << p;
  }
  EXPECT_EQ(store->get("big", kNow)->value, random_bytes(3000, 9));
  // The value triggers work on the rebuilt tables: overwriting frees the old value.
  ASSERT_TRUE(store->apply_sync(put("big", "small now", hlc_at(99999)), kNow).ok());
  EXPECT_EQ(store->get("big", kNow)->value, "small now");
  // New rows in migrated tables get their leaf too.
  ASSERT_TRUE(store->apply_sync(put("after-migration", "a", hlc_at(99999)), kNow).ok());
  // No value is left without its row, nor a row without its value.
  for (int f = 0; f < 2; ++f) {
    store.reset();
    EXPECT_EQ(RawDb(dir.data() / ("data-" + std::to_string(f) + ".db")).value_table_mismatches(), 0)
        << f;
    store = open_or_die(options);
  }
  const uint32_t p = store->partition_of("after-migration");
  store.reset();
  store = open_or_die(options);
  Result<std::vector<DigestEntry>> e =
      store->digest_entries(p, {digest_leaf("after-migration")}, SIZE_MAX);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(std::any_of(e->begin(), e->end(),
                          [](const DigestEntry& x) { return x.key == "after-migration"; }));
}

}  // namespace
}  // namespace edgekv::store
