// The storage engine's single-threaded behaviour on real SQLite files: round trips, LWW,
// tombstones, compression, TTL, sweeping, the change log and opening directories.
#include "store/store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include "common/hash.h"
#include "common/random.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

std::string compressible(size_t n) {
  std::string out;
  while (out.size() < n) out += "edgekv stores values; this one repeats. ";
  out.resize(n);
  return out;
}

TEST(StoreTest, PutThenGetReturnsTheRecord) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  Result<ApplyResult> r = store->apply_sync(put("alpha", "one", hlc_at(0), 7), kNow);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->current, (Version{hlc_at(0), 7}));
  EXPECT_EQ(r->event.op, ChangeOp::kPut);
  EXPECT_EQ(r->event.key, "alpha");
  EXPECT_EQ(r->event.value, "one");
  EXPECT_EQ(r->event.partition, store->partition_of("alpha"));
  EXPECT_EQ(r->event.partition, partition_of("alpha", 64));
  EXPECT_EQ(r->event.seq, 1u);

  Result<Record> got = store->get("alpha", kNow);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->key, "alpha");
  EXPECT_EQ(got->value, "one");
  EXPECT_EQ(got->version, (Version{hlc_at(0), 7}));
  EXPECT_EQ(got->expiry, WallTime{0});
  EXPECT_FALSE(got->tombstone);
  EXPECT_EQ(store->get("beta", kNow).status().code(), Code::kNotFound);
}

TEST(StoreTest, KeysAndValuesAreBinarySafe) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  const std::string key_a("a\0b", 3);
  const std::string key_b("a\0c", 3);
  const std::string key_nul("\0", 1);
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  ASSERT_TRUE(store->apply_sync(put(key_a, all_bytes, hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put(key_b, std::string("\0\0\0", 3), hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put(key_nul, "", hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put("", "empty key", hlc_at(0)), kNow).ok());

  EXPECT_EQ(store->get(key_a, kNow)->value, all_bytes);
  EXPECT_EQ(store->get(key_b, kNow)->value, std::string("\0\0\0", 3));
  ASSERT_TRUE(store->get(key_nul, kNow).ok());
  EXPECT_EQ(store->get(key_nul, kNow)->value, "");
  EXPECT_EQ(store->get("", kNow)->value, "empty key");
  // A prefix up to the NUL byte is another key.
  EXPECT_EQ(store->get("a", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->get(std::string("a\0", 2), kNow).status().code(), Code::kNotFound);
}

TEST(StoreTest, OneMebibyteValuesRoundTrip) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  const std::string noise = random_bytes(1 << 20, 1);
  const std::string text = compressible(1 << 20);
  ASSERT_TRUE(store->apply_sync(put("noise", noise, hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put("text", text, hlc_at(0)), kNow).ok());
  EXPECT_EQ(store->get("noise", kNow)->value, noise);
  EXPECT_EQ(store->get("text", kNow)->value, text);
  store->close();
  auto reopened = open_or_die(options_for(dir));
  EXPECT_EQ(reopened->get("noise", kNow)->value, noise);
  EXPECT_EQ(reopened->get("text", kNow)->value, text);
}

TEST(StoreTest, LastWriteWinsByVersionAndOriginBreaksTies) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  const Version v100_1{hlc_at(100), 1};
  ASSERT_TRUE(store->apply_sync(put("k", "first", hlc_at(100), 1), kNow)->applied);

  Result<ApplyResult> older = store->apply_sync(put("k", "older", hlc_at(50), 9), kNow);
  ASSERT_TRUE(older.ok());
  EXPECT_FALSE(older->applied);
  EXPECT_EQ(older->current, v100_1);

  Result<ApplyResult> equal = store->apply_sync(put("k", "equal", hlc_at(100), 1), kNow);
  EXPECT_FALSE(equal->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "first");

  Result<ApplyResult> tie = store->apply_sync(put("k", "tie", hlc_at(100), 2), kNow);
  EXPECT_TRUE(tie->applied);
  EXPECT_EQ(tie->current, (Version{hlc_at(100), 2}));
  EXPECT_EQ(store->get("k", kNow)->value, "tie");

  EXPECT_FALSE(store->apply_sync(put("k", "lower origin", hlc_at(100), 1), kNow)->applied);

  Result<ApplyResult> newer = store->apply_sync(put("k", "newer", hlc_at(101), 1), kNow);
  EXPECT_TRUE(newer->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "newer");
  EXPECT_EQ(store->get("k", kNow)->version, (Version{hlc_at(101), 1}));

  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.puts_applied, 3u);
  EXPECT_EQ(stats.writes_ignored, 3u);
  EXPECT_EQ(stats.keys, 1u);
  // Ignored writes leave no trace in the change log.
  EXPECT_EQ(store->last_seq(store->partition_of("k")), 3u);
}

TEST(StoreTest, TombstoneHidesKeyAndBlocksOlderWrites) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  ASSERT_TRUE(store->apply_sync(put("k", "v", hlc_at(100)), kNow)->applied);
  Result<ApplyResult> del = store->apply_sync(tombstone("k", hlc_at(200)), kNow);
  ASSERT_TRUE(del.ok());
  EXPECT_TRUE(del->applied);
  EXPECT_EQ(del->event.op, ChangeOp::kDelete);
  EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->stats(kNow).keys, 0u);

  Result<ApplyResult> resurrect = store->apply_sync(put("k", "zombie", hlc_at(150)), kNow);
  EXPECT_FALSE(resurrect->applied);
  EXPECT_EQ(resurrect->current, (Version{hlc_at(200), 1}));
  EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);

  // A delete that arrives before the put it deletes still wins against it.
  EXPECT_TRUE(store->apply_sync(tombstone("early", hlc_at(300)), kNow)->applied);
  EXPECT_FALSE(store->apply_sync(put("early", "late put", hlc_at(250)), kNow)->applied);
  EXPECT_EQ(store->get("early", kNow).status().code(), Code::kNotFound);

  EXPECT_TRUE(store->apply_sync(put("k", "reborn", hlc_at(300)), kNow)->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "reborn");
  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.deletes_applied, 2u);
  EXPECT_EQ(stats.keys, 1u);
}

TEST(StoreTest, LargeValuesAreStoredCompressedAndReadBackIntact) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.compress_threshold_bytes = 1024;
  auto store = open_or_die(options);
  const std::string big = compressible(64 * 1024);
  const std::string at_threshold = compressible(1024);
  const std::string noise = random_bytes(8 * 1024, 2);
  ASSERT_TRUE(store->apply_sync(put("big", big, hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put("at", at_threshold, hlc_at(0)), kNow).ok());
  ASSERT_TRUE(store->apply_sync(put("noise", noise, hlc_at(0)), kNow).ok());

  auto read_back = [&] {
    EXPECT_EQ(store->get("big", kNow)->value, big);
    EXPECT_EQ(store->get("at", kNow)->value, at_threshold);
    EXPECT_EQ(store->get("noise", kNow)->value, noise);
    Result<std::vector<ChangeEvent>> changes =
        store->read_changes(store->partition_of("big"), 0, 100);
    ASSERT_TRUE(changes.ok());
    bool seen = false;
    for (const ChangeEvent& e : *changes) {
      if (e.key == "big") {
        EXPECT_EQ(e.value, big);
        seen = true;
      }
    }
    EXPECT_TRUE(seen);
  };
  read_back();  // staged (unless every group is applied at once)
  // A sweep applies every staged write: from here on the rows are in the tables.
  ASSERT_TRUE(store->sweep_sync(kNow, 0).ok());
  EXPECT_EQ(store->stats(kNow).staged, 0u);
  read_back();

  auto stored = [&](const std::string& key) {
    std::string table = kv_table_of(store->partition_of(key));
    std::filesystem::path file = file_with_table(dir.data(), table);
    EDGEKV_ASSERT(!file.empty());
    return RawDb(file).codec_and_length(table, key).value();
  };
  auto [big_codec, big_len] = stored("big");
  EXPECT_EQ(big_codec, 1);  // zstd
  EXPECT_LT(big_len, static_cast<int64_t>(big.size() / 20));
  EXPECT_EQ(stored("at"), std::make_pair(int64_t{0}, int64_t{1024}));     // not longer: raw
  EXPECT_EQ(stored("noise"), std::make_pair(int64_t{0}, int64_t{8192}));  // would not shrink
}

// A value longer than kInlineValueMaxBytes once stored lives in its partition's value table
// and the row points to it; overwriting, deleting or expiring the row takes the value along.
TEST(StoreTest, LargeValuesLiveInTheValueTableAndGoWithTheirRow) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  const std::filesystem::path file = dir.data() / "data-0.db";
  auto values_stored = [&] {
    // Over the partitions that have tables (a partition's come with its first write).
    std::string sql = "SELECT 0";
    for (const char* val : {"val_00000", "val_00001", "val_00002", "val_00003"}) {
      if (RawDb(file).has_table(val)) sql += std::string(" + (SELECT count(*) FROM ") + val + ")";
    }
    return RawDb(file).query_int(sql);
  };
  const std::string big = random_bytes(4096, 11);   // does not compress: 4096 bytes stored
  const std::string other = random_bytes(300, 12);  // over the threshold, under compression's
  const std::string small = std::string(256, 's');  // at the threshold: in the row
  auto store = open_or_die(options);
  const std::string table = kv_table_of(store->partition_of("k"));
  // A sweep applies everything staged, so each step below is in the tables.
  auto write = [&](Record r) {
    Result<ApplyResult> applied = store->apply_sync(std::move(r), kNow);
    ASSERT_TRUE(applied.ok() && applied->applied);
    ASSERT_TRUE(store->sweep_sync(kNow, 0).ok());
  };

  write(put("k", big, hlc_at(0)));
  EXPECT_TRUE(RawDb(file).value_out_of_row(table, "k"));
  EXPECT_EQ(values_stored(), 1);
  EXPECT_EQ(RawDb(file).stored_value(table, "k"), big);
  EXPECT_EQ(store->get("k", kNow)->value, big);
  Result<std::vector<ChangeEvent>> changes = store->read_changes(store->partition_of("k"), 0, 10);
  ASSERT_TRUE(changes.ok() && !changes->empty());
  EXPECT_EQ(changes->back().value, big);  // the change log joins the value table too

  write(put("k", other, hlc_at(1)));
  EXPECT_EQ(values_stored(), 1);  // the new value in, the old one out
  EXPECT_EQ(store->get("k", kNow)->value, other);

  write(put("k", small, hlc_at(2)));
  EXPECT_FALSE(RawDb(file).value_out_of_row(table, "k"));
  EXPECT_EQ(values_stored(), 0);
  EXPECT_EQ(store->get("k", kNow)->value, small);

  write(put("k", big, hlc_at(3)));
  EXPECT_EQ(values_stored(), 1);
  write(tombstone("k", hlc_at(4)));
  EXPECT_EQ(values_stored(), 0);
  EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);

  write(put("t", big, hlc_at(5), 1, WallTime{kNow.ms + 10}));
  EXPECT_EQ(values_stored(), 1);
  ASSERT_TRUE(store->sweep_sync(WallTime{kNow.ms + 1000}, 100).ok());
  EXPECT_TRUE(eventually([&] { return values_stored() == 0; })) << values_stored();

  write(put("r", big, hlc_at(6)));
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->get("r", kNow)->value, big);
  EXPECT_EQ(store->stats(kNow).keys, 1u);
  EXPECT_EQ(values_stored(), 1);
}

TEST(StoreTest, CorruptCompressedValuesAreReportedNotCrashedOn) {
  TempDir dir;
  const std::string value = compressible(16 * 1024);
  std::map<std::string, uint32_t> partition;
  {
    auto store = open_or_die(options_for(dir));
    for (const char* key : {"garbage", "truncated", "bad codec", "intact"}) {
      ASSERT_TRUE(store->apply_sync(put(key, value, hlc_at(0)), kNow).ok());
      partition[key] = store->partition_of(key);
    }
  }
  {
    auto table = [&](const char* key) { return kv_table_of(partition[key]); };
    RawDb garbage(file_with_table(dir.data(), table("garbage")));
    // A zstd magic number followed by junk.
    garbage.set_value(table("garbage"), "garbage", std::string("\x28\xb5\x2f\xfd junk", 9), 1);
    RawDb truncated(file_with_table(dir.data(), table("truncated")));
    std::string frame = truncated.stored_value(table("truncated"), "truncated");
    truncated.set_value(table("truncated"), "truncated", frame.substr(0, frame.size() / 2), 1);
    RawDb bad_codec(file_with_table(dir.data(), table("bad codec")));
    bad_codec.set_value(table("bad codec"), "bad codec", "whatever", 7);
  }
  auto store = open_or_die(options_for(dir));
  for (const char* key : {"garbage", "truncated", "bad codec"}) {
    Result<Record> got = store->get(key, kNow);
    EXPECT_EQ(got.status().code(), Code::kCorruption) << key << ": " << got.status().to_string();
    Result<std::vector<ChangeEvent>> changes = store->read_changes(partition[key], 0, 100);
    EXPECT_EQ(changes.status().code(), Code::kCorruption) << key;
  }
  EXPECT_EQ(store->get("intact", kNow)->value, value);
}

TEST(StoreTest, ExpiredKeysAreNotFoundBeforeAnySweep) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  const WallTime expiry{kNow.ms + 1000};
  ASSERT_TRUE(store->apply_sync(put("ttl", "v", hlc_at(0), 1, expiry), kNow)->applied);
  EXPECT_EQ(store->get("ttl", kNow)->expiry, expiry);
  EXPECT_TRUE(store->get("ttl", WallTime{expiry.ms - 1}).ok());
  EXPECT_EQ(store->get("ttl", expiry).status().code(), Code::kNotFound);
  EXPECT_EQ(store->get("ttl", WallTime{expiry.ms + 5000}).status().code(), Code::kNotFound);
  // Not swept: still a row, counted live before its expiry and gone at it.
  EXPECT_EQ(store->stats(kNow).expired, 0u);
  EXPECT_EQ(store->stats(kNow).keys, 1u);
  EXPECT_EQ(store->stats(expiry).keys, 0u);
}

// Format 5: a record newer than the stored state that arrives already expired is stored as
// the tombstone its expiry leaves, logged as an expiry with its version; an older one
// changes nothing.
TEST(StoreTest, ANewerRecordAlreadyExpiredBecomesAnExpiryTombstone) {
  TempDir dir;
  auto store = open_or_die(options_for(dir));
  const uint32_t p = store->partition_of("gone");
  const WallTime expiry{kNow.ms - 1};
  Result<ApplyResult> past = store->apply_sync(put("gone", "v", hlc_at(0), 1, expiry), kNow);
  ASSERT_TRUE(past.ok());
  EXPECT_TRUE(past->applied);
  EXPECT_EQ(past->event.op, ChangeOp::kExpire);
  EXPECT_EQ(past->event.version, (Version{hlc_at(0), 1}));
  EXPECT_EQ(past->event.expiry, expiry);
  EXPECT_EQ(past->event.value, "");
  // Not found for get() at any time, even one before the expiry: it is a tombstone.
  EXPECT_EQ(store->get("gone", WallTime{0}).status().code(), Code::kNotFound);
  Result<Record> stored = store->read("gone", kNow);
  ASSERT_TRUE(stored.ok()) << stored.status().to_string();
  EXPECT_TRUE(stored->expired_tombstone());
  EXPECT_EQ(stored->version, (Version{hlc_at(0), 1}));
  EXPECT_EQ(stored->expiry, expiry);
  EXPECT_EQ(stored->value, "");

  // An older copy, live or not, stays out.
  EXPECT_FALSE(store->apply_sync(put("gone", "old", hlc_at(-5)), kNow)->applied);
  Result<ApplyResult> same = store->apply_sync(put("gone", "v", hlc_at(0), 1, kNow), kNow);
  EXPECT_FALSE(same->applied);
  EXPECT_EQ(same->current, (Version{hlc_at(0), 1}));
  EXPECT_EQ(store->get("gone", kNow).status().code(), Code::kNotFound);

  Result<std::vector<ChangeEvent>> log = store->read_changes(p, 0, 10);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ((*log)[0].op, ChangeOp::kExpire);
  EXPECT_EQ((*log)[0].version, (Version{hlc_at(0), 1}));
  EXPECT_EQ((*log)[0].expiry, expiry);
  EXPECT_EQ(store->last_seq(p), 1u);
  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.writes_ignored, 2u);
  EXPECT_EQ(stats.expired, 1u);
  EXPECT_EQ(stats.keys, 0u);

  // A newer write brings the key back, as after any tombstone.
  EXPECT_TRUE(store->apply_sync(put("gone", "new", hlc_at(1)), kNow)->applied);
  EXPECT_EQ(store->get("gone", kNow)->value, "new");
  EXPECT_EQ(store->stats(kNow).keys, 1u);
}

// Format 5: the sweep turns an expired row into a tombstone that keeps its version and
// expiry, so that a late copy of an older version does not bring the key back; the
// tombstone survives a reopen, is not found again by later sweeps and is purged like a
// delete's after the grace period.
TEST(StoreTest, AnExpiredKeyKeepsItsVersionAgainstLateOlderWrites) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 4;
  options.tombstone_grace_ms = 60'000;
  auto store = open_or_die(options);
  const WallTime expiry{kNow.ms + 10};
  const std::string big = random_bytes(4096, 3);  // in the value table: freed by the sweep
  ASSERT_TRUE(store->apply_sync(put("ttl", big, hlc_at(0), 1, expiry), kNow)->applied);
  ASSERT_TRUE(store->apply_sync(put("keep", "k", hlc_at(0)), kNow)->applied);
  const WallTime later{expiry.ms + 1};
  // Before the sweep, read() reports the expired row as its tombstone already.
  Result<Record> before = store->read("ttl", later);
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->expired_tombstone());
  EXPECT_EQ(before->value, "");

  Result<std::vector<ChangeEvent>> swept = store->sweep_sync(later, 100);
  ASSERT_TRUE(swept.ok());
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_EQ((*swept)[0].op, ChangeOp::kExpire);
  EXPECT_EQ((*swept)[0].version, (Version{hlc_at(0), 1}));
  // Nothing more to expire: the expiry index does not find the tombstone again.
  EXPECT_TRUE(store->sweep_sync(WallTime{later.ms + 1000}, 100)->empty());

  // The late copy of the older version, still live at `later` by its own TTL, stays out.
  Record late = put("ttl", "late", hlc_at(-1), 2, WallTime{later.ms + 100000});
  Result<ApplyResult> r = store->apply_sync(late, later);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->applied);
  EXPECT_EQ(r->current, (Version{hlc_at(0), 1}));
  EXPECT_EQ(store->get("ttl", later).status().code(), Code::kNotFound);

  store.reset();
  store = open_or_die(options);
  EXPECT_FALSE(store->apply_sync(late, later)->applied) << "after a reopen too";
  Result<Record> stored = store->read("ttl", later);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->tombstone);
  EXPECT_EQ(stored->expiry, expiry);
  EXPECT_EQ(stored->version, (Version{hlc_at(0), 1}));
  EXPECT_EQ(store->stats(later).keys, 1u);
  EXPECT_EQ(store->stats(later).keys_with_expiry, 0u);
  EXPECT_EQ(store->read("never", later).status().code(), Code::kNotFound);
  EXPECT_EQ(store->read("keep", later)->value, "k");

  // Purged once its version is older than the grace period; then the key is absent.
  ASSERT_TRUE(store->sweep_sync(WallTime{kNow.ms + 60'001}, 100).ok());
  EXPECT_EQ(store->read("ttl", later).status().code(), Code::kNotFound);
  EXPECT_EQ(store->stats(later).tombstones_purged, 1u);
}

// read() reports deletes as tombstones with expiry 0, from a staged write and from the row.
TEST(StoreTest, ReadShowsDeleteTombstonesStagedAndApplied) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.stage_apply_at = 1'000'000;  // stays staged until the sweep
  auto store = open_or_die(options);
  ASSERT_TRUE(store->apply_sync(put("k", "v", hlc_at(0)), kNow)->applied);
  ASSERT_TRUE(store->apply_sync(tombstone("k", hlc_at(1)), kNow)->applied);
  for (int round = 0; round < 2; ++round) {
    Result<Record> r = store->read("k", kNow);
    ASSERT_TRUE(r.ok()) << round;
    EXPECT_TRUE(r->tombstone);
    EXPECT_FALSE(r->expired_tombstone());
    EXPECT_EQ(r->version, (Version{hlc_at(1), 1}));
    EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);
    ASSERT_TRUE(store->sweep_sync(kNow, 0).ok());  // applies what is staged
  }
}

TEST(StoreTest, SweepDeletesExpiredRowsInBoundedBatchesWithEvents) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 4;
  auto store = open_or_die(options);
  std::map<std::string, Version> expiring;
  for (int i = 0; i < 25; ++i) {
    std::string key = "exp-" + std::to_string(i);
    Record r = put(key, "v", hlc_at(i), 3, WallTime{kNow.ms + 10 + i});
    expiring[key] = r.version;
    ASSERT_TRUE(store->apply_sync(std::move(r), kNow)->applied);
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->apply_sync(put("keep-" + std::to_string(i), "v", hlc_at(0)), kNow).ok());
    ASSERT_TRUE(store
                    ->apply_sync(put("later-" + std::to_string(i), "v", hlc_at(0), 1,
                                     WallTime{kNow.ms + 100'000}),
                                 kNow)
                    .ok());
  }
  std::vector<uint64_t> seq_before(4);
  for (uint32_t p = 0; p < 4; ++p) seq_before[p] = store->last_seq(p);

  const WallTime sweep_at{kNow.ms + 1000};
  std::vector<ChangeEvent> all;
  std::vector<size_t> batch_sizes;
  for (int round = 0; round < 10; ++round) {
    Result<std::vector<ChangeEvent>> events = store->sweep_sync(sweep_at, 10);
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    batch_sizes.push_back(events->size());
    if (events->empty()) break;
    all.insert(all.end(), events->begin(), events->end());
  }
  EXPECT_EQ(batch_sizes, (std::vector<size_t>{10, 10, 5, 0}));
  ASSERT_EQ(all.size(), 25u);

  std::map<uint32_t, std::vector<uint64_t>> seqs;
  for (const ChangeEvent& e : all) {
    EXPECT_EQ(e.op, ChangeOp::kExpire);
    ASSERT_TRUE(expiring.count(e.key)) << e.key;
    EXPECT_EQ(e.version, expiring[e.key]);
    EXPECT_EQ(e.partition, store->partition_of(e.key));
    EXPECT_TRUE(e.value.empty());
    seqs[e.partition].push_back(e.seq);
    expiring.erase(e.key);
  }
  EXPECT_TRUE(expiring.empty());
  // Each partition's expire entries continue its sequence without gaps, and the change log
  // holds exactly these events.
  for (auto& [p, list] : seqs) {
    std::sort(list.begin(), list.end());
    for (size_t i = 0; i < list.size(); ++i) EXPECT_EQ(list[i], seq_before[p] + 1 + i);
    EXPECT_EQ(store->last_seq(p), seq_before[p] + list.size());
    Result<std::vector<ChangeEvent>> logged = store->read_changes(p, seq_before[p] + 1, 100);
    ASSERT_TRUE(logged.ok());
    ASSERT_EQ(logged->size(), list.size());
    for (const ChangeEvent& e : *logged) EXPECT_EQ(e.op, ChangeOp::kExpire);
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(store->get("keep-" + std::to_string(i), sweep_at).ok());
    EXPECT_TRUE(store->get("later-" + std::to_string(i), sweep_at).ok());
  }
  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.expired, 25u);
  EXPECT_EQ(stats.keys, 10u);
}

TEST(StoreTest, SweepPurgesTombstonesOnlyAfterTheGracePeriod) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.tombstone_grace_ms = 1000;
  auto store = open_or_die(options);
  ASSERT_TRUE(store->apply_sync(tombstone("k", hlc_at(0)), kNow)->applied);

  ASSERT_TRUE(store->sweep_sync(WallTime{kNow.ms + 999}, 100).ok());
  EXPECT_EQ(store->stats(kNow).tombstones_purged, 0u);
  EXPECT_FALSE(store->apply_sync(put("k", "older", hlc_at(-10)), kNow)->applied);

  Result<std::vector<ChangeEvent>> events = store->sweep_sync(WallTime{kNow.ms + 1001}, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());  // purging is silent: the delete is already in the log
  EXPECT_EQ(store->stats(kNow).tombstones_purged, 1u);
  // The tombstone is gone, so the older write is no longer blocked.
  EXPECT_TRUE(store->apply_sync(put("k", "older", hlc_at(-10)), kNow)->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "older");
}

TEST(StoreTest, SweepTrimsChangeLogsButKeepsTheNewestEntry) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 1;
  options.changelog_keep = 5;
  {
    auto store = open_or_die(options);
    for (int i = 1; i <= 20; ++i) {
      ASSERT_TRUE(store->apply_sync(put("k" + std::to_string(i), "v", hlc_at(i)), kNow).ok());
    }
    ASSERT_TRUE(store->sweep_sync(kNow, 1000).ok());
    Result<std::vector<ChangeEvent>> log = store->read_changes(0, 0, 100);
    ASSERT_TRUE(log.ok());
    ASSERT_EQ(log->size(), 5u);
    EXPECT_EQ(log->front().seq, 16u);
    EXPECT_EQ(log->back().seq, 20u);

    // Trimming is bounded by max_rows too.
    for (int i = 21; i <= 40; ++i) {
      ASSERT_TRUE(store->apply_sync(put("k" + std::to_string(i), "v", hlc_at(i)), kNow).ok());
    }
    ASSERT_TRUE(store->sweep_sync(kNow, 3).ok());
    EXPECT_EQ(store->read_changes(0, 0, 100)->front().seq, 19u);
  }
  options.changelog_keep = 0;
  {
    auto store = open_or_die(options);
    ASSERT_TRUE(store->sweep_sync(kNow, 1000).ok());
    Result<std::vector<ChangeEvent>> log = store->read_changes(0, 0, 100);
    ASSERT_EQ(log->size(), 1u);
    EXPECT_EQ(log->front().seq, 40u);
  }
  auto store = open_or_die(options);
  EXPECT_EQ(store->last_seq(0), 40u);
  EXPECT_EQ(store->apply_sync(put("next", "v", hlc_at(0)), kNow)->event.seq, 41u);
}

TEST(StoreTest, ChangeLogIsGaplessPerPartitionAndSurvivesReopen) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 4;
  std::map<std::string, std::string> latest;  // key -> current value ("" = deleted)
  std::map<uint32_t, uint64_t> last;
  {
    auto store = open_or_die(options);
    Random rng(42);
    for (int i = 0; i < 200; ++i) {
      std::string key = "key-" + std::to_string(rng.uniform(30));
      Record r = rng.chance(0.2) ? tombstone(key, hlc_at(i))
                                 : put(key, "value-" + std::to_string(i), hlc_at(i));
      std::string value = r.value;
      Result<ApplyResult> result = store->apply_sync(std::move(r), kNow);
      ASSERT_TRUE(result.ok());
      ASSERT_TRUE(result->applied);
      EXPECT_EQ(result->event.seq, ++last[result->event.partition]);
      latest[key] = value;
    }
    for (uint32_t p = 0; p < 4; ++p) {
      EXPECT_EQ(store->last_seq(p), last[p]);
      Result<std::vector<ChangeEvent>> log = store->read_changes(p, 1, 1000);
      ASSERT_TRUE(log.ok());
      ASSERT_EQ(log->size(), last[p]);
      std::set<std::string> newer_seen;  // keys with an entry after the current one
      for (size_t i = 0; i < log->size(); ++i) {
        const ChangeEvent& e = (*log)[i];
        EXPECT_EQ(e.seq, i + 1);
        EXPECT_EQ(e.partition, p);
      }
      // Walk newest first: the newest entry of a key is current, older puts are superseded.
      for (auto it = log->rbegin(); it != log->rend(); ++it) {
        bool current = newer_seen.insert(it->key).second;
        if (it->op == ChangeOp::kPut && current) {
          EXPECT_EQ(it->value, latest[it->key]) << it->key;
          EXPECT_FALSE(it->value.empty());
        } else {
          EXPECT_TRUE(it->value.empty()) << it->key << " seq " << it->seq;
        }
      }
      // From a seq, at most max.
      if (last[p] >= 5) {
        Result<std::vector<ChangeEvent>> tail = store->read_changes(p, 3, 2);
        ASSERT_EQ(tail->size(), 2u);
        EXPECT_EQ((*tail)[0].seq, 3u);
        EXPECT_EQ((*tail)[1].seq, 4u);
      }
      EXPECT_TRUE(store->read_changes(p, last[p] + 1, 10)->empty());
    }
  }
  auto store = open_or_die(options);
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(store->last_seq(p), last[p]);
  for (auto& [key, value] : latest) {
    Result<Record> got = store->get(key, kNow);
    if (value.empty()) {
      EXPECT_EQ(got.status().code(), Code::kNotFound);
    } else {
      EXPECT_EQ(got->value, value);
    }
  }
  Result<ApplyResult> next = store->apply_sync(put("key-0", "after reopen", hlc_at(10'000)), kNow);
  EXPECT_EQ(next->event.seq, last[next->event.partition] + 1);
}

TEST(StoreTest, ReopeningWithAnotherPartitionCountIsRefused) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  ASSERT_TRUE(open_or_die(options)->apply_sync(put("k", "v", hlc_at(0)), kNow).ok());
  options.partitions = 128;
  Result<std::unique_ptr<Store>> store = Store::open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(store.status().message(),
            "data directory " + dir.data().string() +
                " was created with partitions=64; refusing to open it with partitions=128");
  // The refusal changed nothing.
  options.partitions = 64;
  EXPECT_EQ(open_or_die(options)->get("k", kNow)->value, "v");
}

TEST(StoreTest, UncreatableDirectoryIsAnIoErrorNamingThePath) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "not a directory";
  StoreOptions options;
  options.dir = dir.path() / "file" / "sub";
  Result<std::unique_ptr<Store>> store = Store::open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kIoError);
  EXPECT_NE(store.status().message().find(options.dir.string()), std::string::npos)
      << store.status().message();
}

TEST(StoreTest, ADirectoryIsOpenedByOneStoreAtATime) {
  TempDir dir;
  auto first = open_or_die(options_for(dir));
  Result<std::unique_ptr<Store>> second = Store::open(options_for(dir));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
  first->close();
  EXPECT_TRUE(Store::open(options_for(dir)).ok());
}

TEST(StoreTest, BadInputGetsAStatus) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 3;
  EXPECT_EQ(Store::open(options).status().code(), Code::kInvalidArgument);
  options.partitions = 64;
  options.db_files = 17;
  EXPECT_EQ(Store::open(options).status().code(), Code::kInvalidArgument);
  options.db_files = 0;
  auto store = open_or_die(options);
  Result<ApplyResult> zero = store->apply_sync(put("k", "v", 0, 0), kNow);
  EXPECT_EQ(zero.status().code(), Code::kInvalidArgument);
  Result<ApplyResult> huge_key =
      store->apply_sync(put(std::string((1 << 20) + 1, 'k'), "v", hlc_at(0)), kNow);
  EXPECT_EQ(huge_key.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->stats(kNow).group_writes, 0u);  // refused before reaching a writer
  EXPECT_EQ(store->read_changes(64, 0, 10).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->last_seq(64), 0u);
}

TEST(StoreTest, DbFilesAreFixedAtCreationAndSweepsSpanThem) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 16;
  options.db_files = 4;
  {
    auto store = open_or_die(options);
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(
          store
              ->apply_sync(put("k" + std::to_string(i), "v", hlc_at(0), 1, WallTime{kNow.ms + 10}),
                           kNow)
              .ok());
    }
    std::vector<size_t> sizes;
    for (int round = 0; round < 10; ++round) {
      Result<std::vector<ChangeEvent>> events = store->sweep_sync(WallTime{kNow.ms + 10}, 15);
      ASSERT_TRUE(events.ok());
      sizes.push_back(events->size());
      if (events->empty()) break;
    }
    EXPECT_EQ(sizes, (std::vector<size_t>{15, 15, 10, 0}));
  }
  for (int f = 0; f < 4; ++f) {
    EXPECT_TRUE(std::filesystem::exists(dir.data() / ("data-" + std::to_string(f) + ".db")));
  }
  options.db_files = 0;  // the recorded value
  EXPECT_TRUE(Store::open(options).ok());
  options.db_files = 2;
  Result<std::unique_ptr<Store>> other = Store::open(options);
  EXPECT_EQ(other.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("created with db_files=4"), std::string::npos);
}

TEST(StoreTest, StatsCountLiveKeysAcrossReopenAndDiskBytes) {
  TempDir dir;
  {
    auto store = open_or_die(options_for(dir));
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(store->apply_sync(put("k" + std::to_string(i), "v", hlc_at(0)), kNow).ok());
    }
    ASSERT_TRUE(store->apply_sync(put("k0", "again", hlc_at(1)), kNow).ok());
    ASSERT_TRUE(store->apply_sync(tombstone("k1", hlc_at(1)), kNow).ok());
    ASSERT_TRUE(store->apply_sync(tombstone("k2", hlc_at(1)), kNow).ok());
    ASSERT_TRUE(store->apply_sync(tombstone("never-written", hlc_at(1)), kNow).ok());
    StoreStats stats = store->stats(kNow);
    EXPECT_EQ(stats.keys, 8u);  // 10 written, 2 deleted
    EXPECT_EQ(stats.puts_applied, 11u);
    EXPECT_EQ(stats.deletes_applied, 3u);
    EXPECT_EQ(stats.group_writes, 14u);
    EXPECT_GT(stats.bytes_on_disk, 0u);
  }
  auto store = open_or_die(options_for(dir));
  EXPECT_EQ(store->stats(kNow).keys, 8u);
}

TEST(StoreTest, ChangeOpNames) {
  EXPECT_EQ(change_op_name(ChangeOp::kPut), "put");
  EXPECT_EQ(change_op_name(ChangeOp::kDelete), "delete");
  EXPECT_EQ(change_op_name(ChangeOp::kExpire), "expire");
}

}  // namespace
}  // namespace edgekv::store
