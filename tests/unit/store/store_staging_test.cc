// Staging: writes are acknowledged once appended to their file's stage table and applied
// to their partitions later, in batches. These tests hold the store with staging to the
// store without it (every write applied right after its group), check what is on disk
// while writes are staged, what happens to staged writes at a crash, at open and when
// an old directory is migrated, and how a file whose batches fail stops at its cap.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/hash.h"
#include "common/random.h"
#include "store/schema.h"
#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

int64_t count_rows(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  EDGEKV_ASSERT(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EDGEKV_ASSERT(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  EDGEKV_ASSERT(sqlite3_step(s) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close_v2(db);
  return n;
}

void exec_sql(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  EDGEKV_ASSERT(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  // An open store's writer may be inside a transaction: wait for it rather than fail.
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EDGEKV_ASSERT(rc == SQLITE_OK);
  sqlite3_close_v2(db);
}

std::filesystem::path stage_file(const TempDir& dir, int file) {
  return dir.data() / ("stage-" + std::to_string(file) + ".db");
}

int64_t staged_rows_in(const std::filesystem::path& stage) {
  return count_rows(stage, "SELECT count(*) FROM stage");
}

int64_t staged_rows(const TempDir& dir) {
  int64_t n = 0;
  for (int f = 0; f < 2; ++f) n += count_rows(stage_file(dir, f), "SELECT count(*) FROM stage");
  return n;
}

// What a reader can observe of a store: every key, the stats and every partition's log.
struct Observed {
  std::map<std::string, std::string> values;  // key -> "value@hlc/origin exp" or the error
  uint64_t keys = 0, keys_with_expiry = 0, puts = 0, deletes = 0, ignored = 0, expired = 0;
  std::vector<std::string> log;  // one line per entry, all partitions

  std::vector<uint64_t> counts() const {
    return {keys, keys_with_expiry, puts, deletes, ignored, expired};
  }
};

std::string describe(const ChangeEvent& e) {
  return std::to_string(e.partition) + "#" + std::to_string(e.seq) + " " +
         std::string(change_op_name(e.op)) + " " + e.key + " " + std::to_string(e.version.hlc) +
         "/" + std::to_string(e.version.origin) + " exp " + std::to_string(e.expiry.ms) + " '" +
         e.value + "'";
}

// A read: "value@hlc/origin exp ms", or the error's code.
std::string describe(const Result<Record>& r) {
  if (!r.ok()) return std::string(code_name(r.status().code()));
  return r->value + "@" + std::to_string(r->version.hlc) + "/" + std::to_string(r->version.origin) +
         " exp " + std::to_string(r->expiry.ms);
}

Observed observe(Store& store, const std::vector<std::string>& keys, WallTime now,
                 uint64_t from_seq, size_t max) {
  Observed o;
  for (const std::string& key : keys) {
    o.values[key] = describe(store.get(key, now));
  }
  StoreStats s = store.stats(now);
  o.keys = s.keys;
  o.keys_with_expiry = s.keys_with_expiry;
  o.puts = s.puts_applied;
  o.deletes = s.deletes_applied;
  o.ignored = s.writes_ignored;
  o.expired = s.expired;
  for (uint32_t p = 0; p < store.partitions(); ++p) {
    Result<std::vector<ChangeEvent>> log = store.read_changes(p, from_seq, max);
    EDGEKV_ASSERT(log.ok());
    for (const ChangeEvent& e : *log) o.log.push_back(describe(e));
    o.log.push_back("last " + std::to_string(store.last_seq(p)));
  }
  return o;
}

// The reference for the differential test: what store.h and store/FORMAT.md say a store
// holds, kept as plainly as it can be. A std::map of key -> row; apply is last-write-wins
// on (hlc, origin) against whatever row the key has (live, expired or tombstone), and a
// newer record already expired at `now` is stored as the tombstone its expiry leaves; a
// read sees a row that is no tombstone and has no expiry or one after `now`; a sweep turns
// rows expired at `now` into tombstones that keep their version and expiry (format 5).
// Each applied write and each expiry takes the next seq of its partition's log.
class Model {
 public:
  struct Row {
    std::string value;
    Version version;
    WallTime expiry;
    bool tombstone = false;
    uint64_t seq = 0;  // the log entry that wrote the row
  };

  explicit Model(uint32_t partitions) : logs_(partitions) {}

  // What apply(record, now) must answer; applies it.
  ApplyResult apply(const Record& record, WallTime now) {
    ApplyResult out;
    auto it = rows_.find(record.key);
    out.current = it == rows_.end() ? Version{} : it->second.version;
    const bool expired = !record.tombstone && record.expiry.ms != 0 && record.expiry.ms <= now.ms;
    if (record.version <= out.current) {
      ++ignored_;
      return out;
    }
    const bool tombstone = record.tombstone || expired;
    const bool expiry_tombstone = tombstone && record.expiry.ms != 0;
    out.applied = true;
    out.current = record.version;
    ChangeEvent& e = out.event;
    e.op = expiry_tombstone ? ChangeOp::kExpire : tombstone ? ChangeOp::kDelete : ChangeOp::kPut;
    e.key = record.key;
    e.value = tombstone ? "" : record.value;
    e.version = record.version;
    e.expiry = record.expiry;
    log(e);
    rows_[record.key] = Row{e.value, e.version, e.expiry, tombstone, e.seq};
    ++(expiry_tombstone ? expired_ : tombstone ? deletes_ : puts_);
    return out;
  }

  // Checks a sweep's events at `now` with budget `max_rows` (which expired rows go first
  // is the store's choice: the model checks that each was due, that none was skipped while
  // budget was left, and that each took the next seq), then applies them.
  void sweep(const std::vector<ChangeEvent>& events, WallTime now, size_t max_rows) {
    size_t due = 0;
    for (const auto& [key, row] : rows_) due += is_expired(row, now) ? 1 : 0;
    EXPECT_EQ(events.size(), std::min(due, max_rows)) << "rows expired at " << now.ms;
    for (const ChangeEvent& got : events) {
      auto it = rows_.find(got.key);
      ASSERT_TRUE(it != rows_.end() && is_expired(it->second, now)) << describe(got);
      ChangeEvent want;
      want.op = ChangeOp::kExpire;
      want.key = got.key;
      want.version = it->second.version;
      want.expiry = it->second.expiry;
      log(want);
      EXPECT_EQ(describe(got), describe(want));
      it->second.tombstone = true;  // keeps its version and expiry
      it->second.value.clear();
      it->second.seq = want.seq;
      ++expired_;
    }
  }

  // A reopen: the data stays, the counters start again.
  void reopen() { puts_ = deletes_ = ignored_ = expired_ = 0; }

  // What observe() must see.
  Observed observe(const std::vector<std::string>& keys, WallTime now, uint64_t from_seq,
                   size_t max) const {
    Observed o;
    for (const std::string& key : keys) {
      auto it = rows_.find(key);
      if (it == rows_.end() || !is_live(it->second, now)) {
        o.values[key] = describe(Result<Record>(Status::not_found(key)));
        continue;
      }
      const Row& row = it->second;
      o.values[key] = describe(Result<Record>(Record{key, row.value, row.version, row.expiry}));
    }
    for (const auto& [key, row] : rows_) {
      if (!is_live(row, now)) continue;
      ++o.keys;
      if (row.expiry.ms != 0) ++o.keys_with_expiry;
    }
    o.puts = puts_;
    o.deletes = deletes_;
    o.ignored = ignored_;
    o.expired = expired_;
    for (uint32_t p = 0; p < logs_.size(); ++p) {
      size_t n = 0;
      for (ChangeEvent e : logs_[p]) {
        if (e.seq < from_seq || n == max) continue;
        ++n;
        // A put the key's row no longer carries is read without its value.
        auto it = rows_.find(e.key);
        if (e.op == ChangeOp::kPut && (it == rows_.end() || it->second.seq != e.seq)) e.value = "";
        o.log.push_back(describe(e));
      }
      o.log.push_back("last " + std::to_string(logs_[p].size()));
    }
    return o;
  }

 private:
  static bool is_expired(const Row& row, WallTime now) {
    return !row.tombstone && row.expiry.ms != 0 && row.expiry.ms <= now.ms;
  }
  static bool is_live(const Row& row, WallTime now) {
    return !row.tombstone && !is_expired(row, now);
  }
  void log(ChangeEvent& e) {
    e.partition = edgekv::partition_of(e.key, static_cast<uint32_t>(logs_.size()));
    e.seq = logs_[e.partition].size() + 1;  // gapless from 1
    logs_[e.partition].push_back(e);
  }

  std::map<std::string, Row> rows_;
  std::vector<std::vector<ChangeEvent>> logs_;  // per partition, entry i has seq i + 1
  uint64_t puts_ = 0, deletes_ = 0, ignored_ = 0, expired_ = 0;
};

// The same random writes, deletes, stale writes, expiries and sweeps go to three stores:
// one that applies every group at once, one that applies small batches often (so that
// reads straddle staged and applied writes), one that keeps everything staged until a
// sweep. Each is held to the Model above: every apply's answer and every sweep's events,
// every key's read after every step, the logs and counters every few steps, and the final
// state; so a store bug all three share (an older version winning, an expired key still
// read) is caught too. Everything a reader can see must agree across a reopen.
// The first reads every row it checks (no row cache), the second has a row cache of 4
// keys (forgetting all the time), the third one large enough for every key.
void run_differential(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  Random rng(seed);
  TempDir dirs[3];
  StoreOptions options[3];
  for (int i = 0; i < 3; ++i) {
    options[i].dir = dirs[i].data();
    options[i].partitions = 8;
    options[i].compress_threshold_bytes = 64;
  }
  options[0].stage_apply_at = 0;
  options[0].row_cache_entries = 0;
  options[1].stage_apply_at = 7;
  options[1].stage_apply_batch = 5;
  options[1].row_cache_entries = 4;
  options[2].stage_apply_at = 1'000'000;
  std::unique_ptr<Store> stores[3];
  for (int i = 0; i < 3; ++i) stores[i] = open_or_die(options[i]);
  Model model(options[0].partitions);

  std::vector<std::string> keys;
  for (int k = 0; k < 24; ++k) keys.push_back("key-" + std::to_string(k));
  int64_t now_ms = kNow.ms;
  uint64_t hlc = hlc_at(0);
  uint64_t batches = 0;
  for (int step = 0; step < 600; ++step) {
    const WallTime now{now_ms};
    const std::string& key = keys[rng.uniform(keys.size())];
    const uint64_t pick = rng.uniform(100);
    if (pick < 8) {
      // A sweep: in the staging stores it applies everything first.
      std::vector<std::string> events[3];
      std::vector<ChangeEvent> swept;
      const size_t budget = 1 + rng.uniform(4);
      for (int i = 0; i < 3; ++i) {
        Result<std::vector<ChangeEvent>> r = stores[i]->sweep_sync(now, budget);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        for (const ChangeEvent& e : *r) events[i].push_back(describe(e));
        if (i == 0) swept = *r;
      }
      ASSERT_EQ(events[0], events[1]);
      ASSERT_EQ(events[0], events[2]);
      ASSERT_NO_FATAL_FAILURE(model.sweep(swept, now, budget));
    } else if (pick < 10) {
      batches += stores[1]->stats(now).apply_batches;  // counters start again at open
      for (int i = 0; i < 3; ++i) {
        stores[i].reset();
        stores[i] = open_or_die(options[i]);
        EXPECT_EQ(stores[i]->stats(now).staged, 0u) << "a clean close applies everything";
      }
      model.reopen();
    } else {
      Record record;
      if (pick < 25) {
        record = tombstone(key, hlc += 7);
      } else if (pick < 32) {
        record = put(key, "stale", hlc - 1000 * (1 + rng.uniform(5)));  // loses to the stored
      } else {
        // Small values, values long enough to be compressed, and values that do not
        // compress and are long enough for the value table.
        std::string value = "v" + std::to_string(step);
        switch (rng.uniform(3)) {
          case 0: value += std::string(3, 'a' + (step % 26)); break;
          case 1: value += std::string(200, 'a' + (step % 26)); break;
          default:
            for (size_t n = 300 + rng.uniform(300); value.size() < n;) {
              value += static_cast<char>(rng.next() & 0xff);
            }
        }
        // Some arrive already expired: newer than the stored row, they become its tombstone.
        const uint64_t ttl = rng.uniform(8);
        WallTime expiry{ttl < 3   ? now_ms + 1 + static_cast<int64_t>(rng.uniform(50))
                        : ttl < 4 ? now_ms - static_cast<int64_t>(rng.uniform(50))
                                  : 0};
        record = put(key, value, hlc += 7, 1 + rng.uniform(2), expiry);
      }
      const ApplyResult want = model.apply(record, now);
      for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("store " + std::to_string(i) + ", step " + std::to_string(step));
        Result<ApplyResult> r = stores[i]->apply_sync(record, now);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        EXPECT_EQ(r->applied, want.applied);
        EXPECT_EQ(r->current, want.current);
        if (want.applied) {
          EXPECT_EQ(describe(r->event), describe(want.event));
        }
      }
    }
    now_ms += static_cast<int64_t>(rng.uniform(10));
    // Every key reads as the model says, in every store, after every step.
    const Observed reads = model.observe(keys, WallTime{now_ms}, 0, 0);
    for (int i = 0; i < 3; ++i) {
      for (const std::string& k : keys) {
        ASSERT_EQ(describe(stores[i]->get(k, WallTime{now_ms})), reads.values.at(k))
            << "store " << i << ", step " << step;
      }
    }
    if (step % 5 == 0) {
      const uint64_t from = rng.uniform(4) == 0 ? 0 : rng.uniform(40);
      const size_t max = 1 + rng.uniform(60);
      Observed expected = model.observe(keys, WallTime{now_ms}, from, max);
      for (int i = 0; i < 3; ++i) {
        SCOPED_TRACE("store " + std::to_string(i) + ", step " + std::to_string(step));
        Observed got = observe(*stores[i], keys, WallTime{now_ms}, from, max);
        ASSERT_EQ(got.values, expected.values);
        ASSERT_EQ(got.log, expected.log);
        ASSERT_EQ(got.counts(), expected.counts());
      }
    }
  }
  // Something was really staged, and really applied in batches, on the way.
  batches += stores[1]->stats(WallTime{now_ms}).apply_batches;
  // The final state, every log entry included, is the model's.
  const Observed final_state = model.observe(keys, WallTime{now_ms}, 0, 1'000'000);
  for (int i = 0; i < 3; ++i) {
    const Observed got = observe(*stores[i], keys, WallTime{now_ms}, 0, 1'000'000);
    EXPECT_EQ(got.values, final_state.values) << "store " << i;
    EXPECT_EQ(got.log, final_state.log) << "store " << i;
    EXPECT_EQ(got.counts(), final_state.counts()) << "store " << i;
  }
  EXPECT_GT(batches, 20u);
  // Every value in a value table belongs to a row, and every row's value is there.
  for (int i = 0; i < 3; ++i) {
    stores[i].reset();
    for (const auto& entry : std::filesystem::directory_iterator(dirs[i].data())) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with("data-") || !name.ends_with(".db")) continue;
      EXPECT_EQ(RawDb(entry.path()).value_table_mismatches(), 0) << entry.path();
    }
  }
}

TEST(StoreStagingTest, StagedAndAppliedWritesLookTheSameToReaders) {
  for (uint64_t seed : {1, 2, 3, 4}) run_differential(seed);
}

TEST(StoreStagingTest, OnlyTheNewestWriteOfAKeyReachesItsTableButEveryOneIsLogged) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.stage_apply_at = 1'000'000;
  auto store = open_or_die(options);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store->apply_sync(put("k", "v" + std::to_string(i), hlc_at(i)), kNow)->applied);
  }
  const uint32_t p = store->partition_of("k");
  const std::string table = kv_table_of(p);
  EXPECT_EQ(staged_rows(dir), 5);
  // Nothing applied yet: the partition has no tables (format 5 creates them with its first
  // applied write).
  EXPECT_EQ(file_with_table(dir.data(), table), std::filesystem::path());
  EXPECT_EQ(store->stats(kNow).staged, 5u);
  EXPECT_EQ(store->get("k", kNow)->value, "v5");

  ASSERT_TRUE(store->sweep_sync(kNow, 10).ok());  // applies everything staged
  // The writer deletes the stage rows of applied writes once it hears they were applied.
  EXPECT_TRUE(eventually([&] { return staged_rows(dir) == 0; }));
  EXPECT_EQ(store->stats(kNow).staged, 0u);
  EXPECT_EQ(store->stats(kNow).apply_batches, 1u);
  const std::filesystem::path file = file_with_table(dir.data(), table);
  EXPECT_EQ(RawDb(file).stored_value(table, "k"), "v5");
  Result<std::vector<ChangeEvent>> log = store->read_changes(p, 0, 100);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*log)[i].seq, i + 1);
    EXPECT_EQ((*log)[i].version.hlc, hlc_at(static_cast<int64_t>(i) + 1));
    // Superseded puts come without value; the newest carries it.
    EXPECT_EQ((*log)[i].value, i == 4 ? "v5" : "");
  }
}

TEST(StoreStagingTest, BatchesApplyAtTheThresholdOldestFirst) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.stage_apply_at = 10;
  options.stage_apply_batch = 4;
  auto store = open_or_die(options);
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(store->apply_sync(put("k" + std::to_string(i), "v", hlc_at(0)), kNow).ok());
  }
  EXPECT_EQ(store->stats(kNow).staged, 9u);
  EXPECT_EQ(store->stats(kNow).apply_batches, 0u);
  ASSERT_TRUE(store->apply_sync(put("k9", "v", hlc_at(0)), kNow).ok());
  // The tenth write reached the threshold: the four oldest are handed to the applier, which
  // applies them beside the writer. Then the writer deletes their stage rows.
  EXPECT_TRUE(eventually([&] { return store->stats(kNow).staged == 6u; }));
  EXPECT_EQ(store->stats(kNow).apply_batches, 1u);
  ASSERT_TRUE(store->apply_sync(put("k10", "v", hlc_at(0)), kNow).ok());
  EXPECT_TRUE(
      eventually([&] { return count_rows(stage_file(dir, 0), "SELECT min(id) FROM stage") == 5; }));
  EXPECT_EQ(store->stats(kNow).staged, 7u);
  EXPECT_EQ(store->stats(kNow).apply_batches, 1u);
  for (int i = 0; i <= 10; ++i) EXPECT_TRUE(store->get("k" + std::to_string(i), kNow).ok());
}

TEST(StoreStagingTest, WritesLeftStagedByACrashAreAppliedAtOpen) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.stage_apply_at = 1'000'000;
  constexpr int kKeys = 200;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Acknowledged writes, then an exit that never closes the store (no final apply).
    Result<std::unique_ptr<Store>> store = Store::open(options);
    if (!store.ok()) _exit(2);
    for (int i = 0; i < kKeys; ++i) {
      Result<ApplyResult> r = (*store)->apply_sync(
          put("k" + std::to_string(i), "v" + std::to_string(i), hlc_at(i)), kNow);
      if (!r.ok() || !r->applied) _exit(3);
    }
    Result<ApplyResult> r = (*store)->apply_sync(tombstone("k0", hlc_at(1000)), kNow);
    if (!r.ok()) _exit(4);
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  EXPECT_EQ(staged_rows(dir), kKeys + 1);

  auto store = open_or_die(options);
  EXPECT_EQ(store->stats(kNow).staged, 0u);
  EXPECT_EQ(staged_rows(dir), 0);
  EXPECT_EQ(store->get("k0", kNow).status().code(), Code::kNotFound);
  for (int i = 1; i < kKeys; ++i) {
    EXPECT_EQ(store->get("k" + std::to_string(i), kNow)->value, "v" + std::to_string(i));
  }
  EXPECT_EQ(store->stats(kNow).keys, static_cast<uint64_t>(kKeys - 1));
  uint64_t logged = 0;
  for (uint32_t p = 0; p < store->partitions(); ++p) {
    Result<std::vector<ChangeEvent>> log = store->read_changes(p, 0, 1000);
    ASSERT_TRUE(log.ok());
    for (size_t k = 0; k < log->size(); ++k) ASSERT_EQ((*log)[k].seq, k + 1);
    EXPECT_EQ(store->last_seq(p), log->size());
    logged += log->size();
  }
  EXPECT_EQ(logged, static_cast<uint64_t>(kKeys + 1));
}

// Batches apply on the applier's thread, to the data file; commit groups go to the stage
// file. So a batch that cannot get the data file (here: another connection holds its
// write lock) holds no write up: writes are acknowledged meanwhile, and applied once the
// data file is free again.
TEST(StoreStagingTest, CommitGroupsGoOnWhileABatchWaitsForTheDataFile) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  options.stage_apply_at = 4;
  options.stage_apply_batch = 4;
  auto store = open_or_die(options);
  const std::filesystem::path file = dir.data() / "data-0.db";
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open_v2(file.c_str(), &holder, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  constexpr int kWrites = 200;
  for (int i = 0; i < kWrites; ++i) {
    Result<ApplyResult> r =
        store->apply_sync(put("k" + std::to_string(i), "v" + std::to_string(i), hlc_at(i)), kNow);
    ASSERT_TRUE(r.ok() && r->applied) << i << ": " << r.status().to_string();
  }
  // Every write was acknowledged, none applied: the applier still waits for the lock.
  EXPECT_EQ(store->stats(kNow).apply_batches, 0u);
  EXPECT_EQ(store->stats(kNow).staged, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(store->get("k7", kNow)->value, "v7");
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close_v2(holder);

  ASSERT_TRUE(store->apply_sync(put("last", "l", hlc_at(kWrites)), kNow).ok());
  EXPECT_TRUE(eventually([&] { return store->stats(kNow).apply_batches > 0; }));
  ASSERT_TRUE(store->sweep_sync(kNow, 10).ok());  // applies everything staged
  EXPECT_EQ(store->stats(kNow).staged, 0u);
  EXPECT_EQ(count_rows(file, "SELECT " + std::string("(SELECT count(*) FROM kv_00000) +") +
                                 " (SELECT count(*) FROM kv_00001) + (SELECT count(*) FROM" +
                                 " kv_00002) + (SELECT count(*) FROM kv_00003)"),
            kWrites + 1);
  EXPECT_TRUE(eventually([&] { return staged_rows_in(stage_file(dir, 0)) == 0; }));
}

// A crash after a batch committed to the data file and before its stage rows were deleted
// leaves them in the stage file. The data file records the newest stage id it applied, so
// the next open applies only what came after and deletes the rest.
TEST(StoreStagingTest, StageRowsTheDataFileAlreadyAppliedAreNotAppliedAgain) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  uint32_t partition = 0;
  uint64_t seq = 0;
  {
    auto store = open_or_die(options);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(store->apply_sync(put("k", "v" + std::to_string(i), hlc_at(i)), kNow).ok());
    }
    partition = store->partition_of("k");
    seq = store->last_seq(partition);
  }
  const int64_t applied = count_rows(dir.data() / "data-0.db",
                                     "SELECT value FROM meta WHERE name = 'applied_stage_id'");
  ASSERT_GE(applied, 5);
  // What such a crash leaves: an applied write (id <= applied) still in the stage file,
  // and one staged after it. The first must not come back; the second must be applied.
  const std::string p = std::to_string(partition);
  exec_sql(stage_file(dir, 0),
           "INSERT INTO stage VALUES (" + std::to_string(applied) + ", " + p + ", " +
               std::to_string(seq) + ", CAST('k' AS BLOB), " + std::to_string(hlc_at(4)) +
               ", 1, 0, 1, 0, CAST('v4' AS BLOB));"
               "INSERT INTO stage VALUES (" +
               std::to_string(applied + 1) + ", " + p + ", " + std::to_string(seq + 1) +
               ", CAST('k' AS BLOB), " + std::to_string(hlc_at(9)) +
               ", 1, 0, 1, 0, CAST('v9' AS BLOB));");
  auto store = open_or_die(options);
  EXPECT_EQ(store->get("k", kNow)->value, "v9");
  EXPECT_EQ(store->last_seq(partition), seq + 1);
  Result<std::vector<ChangeEvent>> log = store->read_changes(partition, 0, 100);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), seq + 1);  // each entry once: nothing applied twice
  for (size_t i = 0; i < log->size(); ++i) EXPECT_EQ((*log)[i].seq, i + 1);
  EXPECT_EQ(staged_rows_in(stage_file(dir, 0)), 0);
  // New writes take ids above both.
  ASSERT_TRUE(store->apply_sync(put("k", "v10", hlc_at(10)), kNow).ok());
  store.reset();
  EXPECT_GT(count_rows(dir.data() / "data-0.db",
                       "SELECT value FROM meta WHERE name = 'applied_stage_id'"),
            applied + 1);
  store = open_or_die(options);
  EXPECT_EQ(store->get("k", kNow)->value, "v10");
}

TEST(StoreStagingTest, AStageRowForAnotherFilesPartitionIsCorruption) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  { auto store = open_or_die(options); }
  // Partition 1 lives in file 1, not file 0.
  exec_sql(stage_file(dir, 0), "INSERT INTO stage VALUES (1, 1, 1, 'k', 1, 1, 0, 1, 0, 'v')");
  Result<std::unique_ptr<Store>> store = Store::open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
  EXPECT_NE(store.status().message().find("stage row 1 names partition 1"), std::string::npos)
      << store.status().to_string();
}

TEST(StoreStagingTest, AFormatOneDirectoryIsMigratedWithItsData) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  {
    auto store = open_or_die(options);
    ASSERT_TRUE(store->apply_sync(put("kept", "v", hlc_at(0)), kNow).ok());
  }
  // What format 1 looked like: no stage table or file, version 1 in meta.
  for (int f = 0; f < 2; ++f) {
    std::filesystem::remove(stage_file(dir, f));
    RawDb(dir.data() / ("data-" + std::to_string(f) + ".db")).downgrade_to_format_3();
    exec_sql(dir.data() / ("data-" + std::to_string(f) + ".db"),
             "DELETE FROM meta WHERE name = 'applied_stage_id';"
             "UPDATE meta SET value = 1 WHERE name = 'format_version';");
  }
  auto store = open_or_die(options);
  EXPECT_EQ(store->get("kept", kNow)->value, "v");
  ASSERT_TRUE(store->apply_sync(put("new", "w", hlc_at(1)), kNow).ok());
  EXPECT_EQ(store->get("new", kNow)->value, "w");
  for (int f = 0; f < 2; ++f) {
    EXPECT_EQ(count_rows(dir.data() / ("data-" + std::to_string(f) + ".db"),
                         "SELECT value FROM meta WHERE name = 'format_version'"),
              kFormatVersion);
    EXPECT_EQ(count_rows(stage_file(dir, f), "SELECT value FROM meta WHERE name = 'file_index'"),
              f);
  }
}

// Format 2 kept staged writes in a table of the data file. A crash could leave rows there;
// opening with format 3 moves them to the stage file and applies them, nothing lost.
TEST(StoreStagingTest, WritesAFormatTwoDirectoryLeftStagedAreApplied) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  uint32_t partition = 0, p_gone = 0;
  uint64_t seq_new = 0, seq_gone = 0;
  {
    auto store = open_or_die(options);
    ASSERT_TRUE(store->apply_sync(put("old", "o", hlc_at(0)), kNow).ok());
    ASSERT_TRUE(store->apply_sync(put("gone", "g", hlc_at(0)), kNow).ok());
    partition = store->partition_of("new");
    p_gone = store->partition_of("gone");
    seq_new = store->last_seq(partition) + 1;
    seq_gone = (p_gone == partition ? seq_new : store->last_seq(p_gone)) + 1;
  }
  std::filesystem::remove(stage_file(dir, 0));
  RawDb(dir.data() / "data-0.db").downgrade_to_format_3();
  // A put of a new key and a delete of "gone", as format 2 staged them (tombstone column).
  exec_sql(dir.data() / "data-0.db",
           "CREATE TABLE stage (id INTEGER PRIMARY KEY, partition INTEGER NOT NULL,"
           " seq INTEGER NOT NULL, key BLOB NOT NULL, hlc INTEGER NOT NULL,"
           " origin INTEGER NOT NULL, expiry_ms INTEGER NOT NULL, tombstone INTEGER NOT NULL,"
           " codec INTEGER NOT NULL, value BLOB NOT NULL);"
           "INSERT INTO stage VALUES (7, " +
               std::to_string(partition) + ", " + std::to_string(seq_new) +
               ", CAST('new' AS BLOB), " + std::to_string(hlc_at(5)) +
               ", 1, 0, 0, 0, CAST('n' AS BLOB));"
               "INSERT INTO stage VALUES (8, " +
               std::to_string(p_gone) + ", " + std::to_string(seq_gone) +
               ", CAST('gone' AS BLOB), " + std::to_string(hlc_at(6)) +
               ", 1, 0, 1, 0, CAST('' AS BLOB));"
               "DELETE FROM meta WHERE name = 'applied_stage_id';"
               "UPDATE meta SET value = 2 WHERE name = 'format_version';");

  auto store = open_or_die(options);
  EXPECT_EQ(store->get("old", kNow)->value, "o");
  EXPECT_EQ(store->get("new", kNow)->value, "n");
  EXPECT_EQ(store->get("gone", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->last_seq(partition), p_gone == partition ? seq_gone : seq_new);
  EXPECT_EQ(store->stats(kNow).keys, 2u);
  EXPECT_EQ(count_rows(dir.data() / "data-0.db",
                       "SELECT count(*) FROM sqlite_schema WHERE name = 'stage'"),
            0);
  EXPECT_EQ(
      count_rows(dir.data() / "data-0.db", "SELECT value FROM meta WHERE name = 'format_version'"),
      kFormatVersion);
  EXPECT_EQ(staged_rows_in(stage_file(dir, 0)), 0);
  // New writes take ids above the migrated ones.
  ASSERT_TRUE(store->apply_sync(put("after", "a", hlc_at(7)), kNow).ok());
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->get("after", kNow)->value, "a");
  EXPECT_EQ(store->get("new", kNow)->value, "n");
}

// Format 4 keeps large values in value tables. A format 3 directory's values stay in their
// rows, where reads find them, until their keys are written again.
TEST(StoreStagingTest, AFormatThreeDirectoryKeepsItsValuesInTheirRowsUntilRewritten) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  const std::filesystem::path file = dir.data() / "data-0.db";
  std::string table;
  {
    auto store = open_or_die(options);
    table = kv_table_of(store->partition_of("big"));
    ASSERT_TRUE(store->apply_sync(put("big", random_bytes(3000, 1), hlc_at(0)), kNow).ok());
    ASSERT_TRUE(store->apply_sync(put("small", "s", hlc_at(0)), kNow).ok());
  }
  RawDb(file).downgrade_to_format_3();
  ASSERT_FALSE(RawDb(file).has_table("val_00000"));

  auto store = open_or_die(options);
  EXPECT_EQ(count_rows(file, "SELECT value FROM meta WHERE name = 'format_version'"),
            kFormatVersion);
  EXPECT_FALSE(RawDb(file).value_out_of_row(table, "big"));
  EXPECT_EQ(store->get("big", kNow)->value, random_bytes(3000, 1));
  EXPECT_EQ(store->get("small", kNow)->value, "s");
  Result<std::vector<ChangeEvent>> changes =
      store->read_changes(store->partition_of("big"), 0, 100);
  ASSERT_TRUE(changes.ok());
  bool seen = false;
  for (const ChangeEvent& e : *changes) {
    if (e.key == "big") seen = e.value == random_bytes(3000, 1);
  }
  EXPECT_TRUE(seen);

  ASSERT_TRUE(store->apply_sync(put("big", random_bytes(3000, 2), hlc_at(1)), kNow).ok());
  ASSERT_TRUE(store->sweep_sync(kNow, 0).ok());  // applies what is staged
  EXPECT_TRUE(RawDb(file).value_out_of_row(table, "big"));
  EXPECT_EQ(store->get("big", kNow)->value, random_bytes(3000, 2));
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->get("big", kNow)->value, random_bytes(3000, 2));
  EXPECT_EQ(store->stats(kNow).keys, 2u);
}

TEST(StoreStagingTest, ReadersNeverSeeAKeyGoBackWhileBatchesApply) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 4;
  options.stage_apply_at = 16;
  options.stage_apply_batch = 8;
  auto store = open_or_die(options);
  constexpr int kKeys = 8;
  constexpr int kRounds = 300;
  std::atomic<bool> done{false};
  std::atomic<int> regressions{0};  // a key read older than before
  std::atomic<int> gaps{0};         // a log entry missing, or one short of last_seq
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      std::vector<uint64_t> seen(kKeys, 0);
      std::vector<uint64_t> last_seq(4, 0);
      while (!done.load()) {
        for (int k = 0; k < kKeys; ++k) {
          Result<Record> r = store->get("k" + std::to_string(k), kNow);
          if (!r.ok()) continue;
          if (r->version.hlc < seen[k]) ++regressions;
          seen[k] = r->version.hlc;
          ++reads;
        }
        for (uint32_t p = 0; p < 4; ++p) {
          // Every entry up to last_seq is there, with no gap, staged or applied.
          uint64_t last = store->last_seq(p);
          Result<std::vector<ChangeEvent>> log = store->read_changes(p, last_seq[p] + 1, 100000);
          if (!log.ok()) {
            ++gaps;
            continue;
          }
          uint64_t expect = last_seq[p] + 1;
          for (const ChangeEvent& e : *log) {
            if (e.seq != expect++) ++gaps;
          }
          if (!log->empty()) last_seq[p] = log->back().seq;
          if (last_seq[p] < last) ++gaps;
        }
      }
    });
  }
  for (int round = 1; round <= kRounds; ++round) {
    for (int k = 0; k < kKeys; ++k) {
      ASSERT_TRUE(store->apply_sync(put("k" + std::to_string(k), "v", hlc_at(round)), kNow).ok());
    }
    // Readers may start late; make sure they read while most of the rounds are still to come.
    if (round == 10) {
      EXPECT_TRUE(eventually([&] { return reads.load() > 0; }));
    }
  }
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(regressions.load(), 0);
  EXPECT_EQ(gaps.load(), 0);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_GT(store->stats(kNow).apply_batches, 20u);
}

// Makes every batch of `file` fail from now on: each of its partition tables refuses new
// and changed rows. Staging only appends to the stage table, so it goes on working.
void fail_batches(const std::filesystem::path& file, uint32_t partitions) {
  for (uint32_t p = 0; p < partitions; ++p) {
    // Tables come with a partition's first write (format 5); the triggers need them now.
    exec_sql(file, partition_schema_sql(p));
    for (const std::string op : {"INSERT", "UPDATE"}) {
      const std::string t = kv_table_of(p);
      exec_sql(file, "CREATE TRIGGER fail_" + op + "_" + t + " BEFORE " + op + " ON " + t +
                         " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    }
  }
}

void let_batches_apply(const std::filesystem::path& file, uint32_t partitions) {
  for (uint32_t p = 0; p < partitions; ++p) {
    for (const std::string op : {"INSERT", "UPDATE"}) {
      exec_sql(file, "DROP TRIGGER fail_" + op + "_" + kv_table_of(p));
    }
  }
}

// A value that stays uncompressed (below compress_threshold_bytes), so that each staged
// write holds more than 1000 bytes and the cap is reached after a known few.
std::string big_value(int i) { return std::to_string(i) + std::string(1000, 'x'); }

// One write's answer, and whether it came on the calling thread before apply() returned.
struct Answer {
  Status status;
  bool at_once = false;
};

Answer apply_and_wait(Store& store, Record record) {
  struct Shared {
    std::mutex mu;
    std::optional<Status> status;
    bool on_caller = false;
  };
  auto shared = std::make_shared<Shared>();
  const std::thread::id caller = std::this_thread::get_id();
  store.apply(std::move(record), kNow, [shared, caller](Result<ApplyResult> r) {
    std::lock_guard lock(shared->mu);
    shared->status = r.status();
    shared->on_caller = std::this_thread::get_id() == caller;
  });
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(shared->mu);
    return shared->status.has_value();
  }));
  std::lock_guard lock(shared->mu);
  return Answer{shared->status.value_or(Status::internal("no answer")), shared->on_caller};
}

TEST(StoreStagingTest, AFileWhoseBatchesFailRefusesWritesAtTheCapAndRecovers) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  options.stage_apply_at = 4;
  options.stage_apply_batch = 4;
  options.stage_max_bytes = 16 << 10;  // about 13 writes of big_value()
  const std::filesystem::path file = dir.data() / "data-0.db";
  const std::filesystem::path stage = stage_file(dir, 0);
  std::map<std::string, std::string> acked;
  {
    auto store = open_or_die(options);
    fail_batches(file, options.partitions);

    Status refused;
    int i = 0;
    for (; i < 1000 && refused.ok(); ++i) {
      const std::string key = "k" + std::to_string(i);
      Result<ApplyResult> r = store->apply_sync(put(key, big_value(i), hlc_at(i)), kNow);
      if (r.ok()) {
        ASSERT_TRUE(r->applied);
        acked[key] = big_value(i);
      } else {
        refused = r.status();
      }
    }
    ASSERT_FALSE(refused.ok()) << "1000 writes were staged without reaching the cap";
    EXPECT_EQ(refused.code(), Code::kOverloaded) << refused.to_string();
    EXPECT_NE(refused.message().find("staged writes not yet applied reached"), std::string::npos)
        << refused.to_string();
    EXPECT_NE(refused.message().find("stage_max_bytes=16384"), std::string::npos)
        << refused.to_string();
    EXPECT_NE(refused.message().find("injected"), std::string::npos) << refused.to_string();
    // Batches were due from the fourth write on and failed; staging went on until the cap,
    // and not past it: each write holds more than 1000 bytes.
    EXPECT_GT(acked.size(), options.stage_apply_at);
    EXPECT_LE(acked.size(), options.stage_max_bytes / 1000);
    EXPECT_EQ(store->stats(kNow).staged, acked.size());
    EXPECT_EQ(store->stats(kNow).apply_batches, 0u);
    EXPECT_EQ(count_rows(stage, "SELECT count(*) FROM stage"), static_cast<int64_t>(acked.size()));

    // Once the writer has taken note, a write is refused at once, on the caller's thread.
    EXPECT_TRUE(eventually([&] {
      Answer a = apply_and_wait(*store, put("refused", "v", hlc_at(0)));
      EXPECT_EQ(a.status.code(), Code::kOverloaded) << a.status.to_string();
      return a.at_once;
    }));
    EXPECT_EQ(store->get("refused", kNow).status().code(), Code::kNotFound);
    for (const auto& [key, value] : acked) {
      Result<Record> r = store->get(key, kNow);
      ASSERT_TRUE(r.ok()) << key << ": " << r.status().to_string();
      EXPECT_EQ(r->value, value) << key;
    }

    // The writer retries by itself: with every write refused, no group comes to do it.
    let_batches_apply(file, options.partitions);
    EXPECT_TRUE(eventually([&] { return store->stats(kNow).staged < acked.size(); }));
    EXPECT_GT(store->stats(kNow).apply_batches, 0u);
    EXPECT_TRUE(eventually([&] {
      Result<ApplyResult> r = store->apply_sync(put("after", "a", hlc_at(i)), kNow);
      return r.ok() && r->applied;
    }));
    acked["after"] = "a";
    for (int j = 0; j < 40; ++j) {
      const std::string key = "later" + std::to_string(j);
      Result<ApplyResult> r = store->apply_sync(put(key, big_value(j), hlc_at(i + 1)), kNow);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      acked[key] = big_value(j);
    }
  }

  auto store = open_or_die(options);
  EXPECT_EQ(count_rows(stage, "SELECT count(*) FROM stage"), 0);
  for (const auto& [key, value] : acked) {
    Result<Record> r = store->get(key, kNow);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status().to_string();
    EXPECT_EQ(r->value, value) << key;
  }
  EXPECT_EQ(store->stats(kNow).keys, acked.size());
}

TEST(StoreStagingTest, WritesQueuedWhenTheCapIsReachedAreRefusedNotStaged) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;  // one writer, so that the gate holds every write
  options.partitions = 4;
  options.stage_apply_at = 1;
  options.stage_max_bytes = 16 << 10;
  const std::filesystem::path file = dir.data() / "data-0.db";
  const std::filesystem::path stage = stage_file(dir, 0);
  constexpr int kWrites = 40;  // over 40000 bytes: far past the cap in one group
  std::vector<Status> answers(kWrites);
  {
    std::mutex mu;
    std::condition_variable answered;
    int count = 0;
    auto store = open_or_die(options);
    fail_batches(file, options.partitions);
    // A failed batch, well below the cap; then the gate holds the writer while the rest
    // queue up, so they reach it as one group.
    ASSERT_TRUE(store->apply_sync(put("first", "v", hlc_at(0)), kNow).ok());
    // The batch fails beside the writer; wait until the writer took note.
    EXPECT_TRUE(eventually([&] { return store->stats(kNow).apply_failures > 0; }));
    Gate gate;
    ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));
    for (int i = 0; i < kWrites; ++i) {
      store->apply(put("k" + std::to_string(i), big_value(i), hlc_at(1)), kNow,
                   [&, i](Result<ApplyResult> r) {
                     std::lock_guard lock(mu);
                     answers[i] = r.status();
                     ++count;
                     answered.notify_all();
                   });
    }
    gate.open();
    std::unique_lock lock(mu);
    ASSERT_TRUE(answered.wait_for(lock, kDeadline, [&] { return count == kWrites; }));
  }
  // The group staged writes in order until the cap, and refused the rest.
  int accepted = 0;
  while (accepted < kWrites && answers[accepted].ok()) ++accepted;
  EXPECT_GT(accepted, 0);
  EXPECT_LE(accepted, static_cast<int>(options.stage_max_bytes / 1000));
  for (int i = accepted; i < kWrites; ++i) {
    EXPECT_EQ(answers[i].code(), Code::kOverloaded) << i << ": " << answers[i].to_string();
    EXPECT_NE(answers[i].message().find("injected"), std::string::npos) << answers[i].to_string();
  }

  // Closed with the batches failing: the acknowledged writes (with "first" and "gate")
  // stayed in the stage table, and the next open applies them.
  EXPECT_EQ(count_rows(stage, "SELECT count(*) FROM stage"), accepted + 2);
  let_batches_apply(file, options.partitions);
  auto store = open_or_die(options);
  EXPECT_EQ(count_rows(stage, "SELECT count(*) FROM stage"), 0);
  for (int i = 0; i < kWrites; ++i) {
    Result<Record> r = store->get("k" + std::to_string(i), kNow);
    if (i < accepted) {
      ASSERT_TRUE(r.ok()) << i << ": " << r.status().to_string();
      EXPECT_EQ(r->value, big_value(i));
    } else {
      EXPECT_EQ(r.status().code(), Code::kNotFound) << i;
    }
  }
  EXPECT_EQ(store->get("first", kNow)->value, "v");
  EXPECT_EQ(store->get("gate", kNow)->value, "g");
}

TEST(StoreStagingTest, AFileWhoseBatchesApplyNeverRefusesAtTheCap) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.stage_apply_at = 1'000'000;  // only the cap makes batches due
  options.stage_apply_batch = 2;
  options.stage_max_bytes = 8 << 10;  // below what one group of the writes below stages
  auto store = open_or_die(options);
  constexpr int kWrites = 40;
  Gate gate;
  ASSERT_TRUE(gate.close_on(*store, put("gate", "g", hlc_at(0))));
  Acks acks;
  for (int i = 0; i < kWrites; ++i) {
    store->apply(put("k" + std::to_string(i), big_value(i), hlc_at(1)), kNow, acks.callback());
  }
  gate.open();
  ASSERT_TRUE(acks.wait_for(kWrites));
  EXPECT_TRUE(acks.errors().empty()) << acks.errors().front().to_string();
  // The group went past the cap; batch after batch brought the file below it before the
  // next group.
  for (int i = 0; i < kWrites; ++i) {
    Result<ApplyResult> r =
        store->apply_sync(put("s" + std::to_string(i), big_value(i), hlc_at(2)), kNow);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_LE(store->stats(kNow).staged, options.stage_max_bytes / 1000);
  }
  // Bringing the group's 40 writes below 8 took batches of 2, at least 16 of them.
  EXPECT_GE(store->stats(kNow).apply_batches, static_cast<uint64_t>(kWrites - 8) / 2);
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(store->get("k" + std::to_string(i), kNow)->value, big_value(i));
    EXPECT_EQ(store->get("s" + std::to_string(i), kNow)->value, big_value(i));
  }
}

// A burst of staged writes grows the stage file; once they are applied and nothing is
// staged, the writer gives the free pages back when over 4096 are free, so the file does not
// keep the burst's size. (Batches apply and their rows are deleted one after the other, so
// the last deletion may leave fewer than 4096 free pages: they stay.)
TEST(StoreStagingTest, TheStageFileShrinksOnceABurstIsApplied) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.db_files = 1;
  options.partitions = 4;
  options.stage_apply_at = 1'000'000;  // nothing applies until the sweep
  const std::filesystem::path stage = stage_file(dir, 0);
  auto store = open_or_die(options);
  Acks acks;
  constexpr int kWrites = 40000;  // about 44 MB staged: over 12000 pages
  for (int i = 0; i < kWrites; ++i) {
    store->apply(put("k" + std::to_string(i), big_value(i), hlc_at(i)), kNow, acks.callback());
  }
  ASSERT_TRUE(acks.wait_for(kWrites));
  const int64_t burst_pages = count_rows(stage, "PRAGMA page_count");
  constexpr int64_t kShrinkPages = 4096;  // free pages at which the writer gives them back
  EXPECT_GT(burst_pages, 3 * kShrinkPages);
  ASSERT_TRUE(store->sweep_sync(kNow, 10).ok());  // applies everything staged
  EXPECT_TRUE(eventually([&] {
    return count_rows(stage, "PRAGMA page_count") < kShrinkPages + 100;
  })) << count_rows(stage, "PRAGMA page_count")
      << " pages, " << burst_pages << " at the burst";
  EXPECT_EQ(store->get("k7", kNow)->value, big_value(7));
}

// A drop is one transaction of the data file: made to fail after its tables were dropped
// (a trigger refuses the removal of the purge floor, its last statement), it leaves the
// partition whole, on disk and in memory, after a reopen too; once the fault is gone it
// goes through and stays.
TEST(StoreStagingTest, ADropThatFailsLeavesThePartitionWhole) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 4;
  options.db_files = 1;
  options.tombstone_purge = TombstonePurge::kByHorizon;
  auto store = open_or_die(options);
  const uint32_t p = store->partition_of("whole");
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 60; ++i) {
    std::string k = "whole-" + std::to_string(i);
    if (store->partition_of(k) == p) keys.push_back(std::move(k));
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string value = i % 2 == 0 ? random_bytes(2000, i) : "small";
    ASSERT_TRUE(store->apply_sync(put(keys[i], value, hlc_at(-100)), kNow)->applied);
  }
  for (size_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->apply_sync(tombstone(keys[i], hlc_at(-50)), kNow)->applied);
  }
  store->set_purge_horizon(p, PurgeHorizon{hlc_at(-40), store->last_seq(p)});
  ASSERT_TRUE(store->sweep_sync(kNow, 100).ok());
  ASSERT_EQ(store->stats(kNow).tombstones_purged, 5u);
  ASSERT_TRUE(store->apply_sync(tombstone(keys[5], hlc_at(-30)), kNow)->applied);
  const Result<PartitionDigest> before = store->digest(p);
  ASSERT_TRUE(before.ok());
  const uint64_t seq = store->last_seq(p);
  const std::filesystem::path data = dir.data() / "data-0.db";
  const std::string floor_row =
      "SELECT count(*) FROM meta WHERE name = 'purge_floor." + std::to_string(p) + "'";
  ASSERT_EQ(count_rows(data, floor_row), 1);

  auto expect_whole = [&](Store& s, const std::string& when) {
    for (size_t i = 6; i < keys.size(); ++i) {
      Result<Record> got = s.get(keys[i], kNow);
      ASSERT_TRUE(got.ok()) << when << ": " << keys[i] << ": " << got.status().to_string();
      EXPECT_EQ(got->value, i % 2 == 0 ? random_bytes(2000, i) : "small") << when;
    }
    EXPECT_TRUE(s.read(keys[5], kNow)->tombstone) << when;
    EXPECT_EQ(s.digest(p)->root, before->root) << when;
    EXPECT_EQ(s.purge_horizon(p).hlc_below, hlc_at(-40)) << when;
    EXPECT_EQ(s.last_seq(p), seq) << when;
    // The purge floor holds: a tombstone below it to a purged key is not taken again.
    EXPECT_FALSE(s.apply_sync(tombstone(keys[0], hlc_at(-60)), kNow)->applied) << when;
  };

  exec_sql(data,
           "CREATE TRIGGER fail_drop BEFORE DELETE ON meta"
           " BEGIN SELECT RAISE(ABORT, 'injected'); END");
  Status failed = store->drop_partition_sync(p, kNow);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("injected"), std::string::npos) << failed.to_string();
  EXPECT_EQ(store->drops(p), 0u);
  expect_whole(*store, "after the failed drop");
  // Writes go on: the writer is not stuck behind the failed drop.
  ASSERT_TRUE(store->apply_sync(put("other", "v", hlc_at(0)), kNow).ok());
  store->close();
  store.reset();
  EXPECT_EQ(count_rows(data, "SELECT count(*) FROM " + kv_table_of(p)), 55);
  EXPECT_EQ(count_rows(data, floor_row), 1);
  store = open_or_die(options);
  expect_whole(*store, "reopened");

  exec_sql(data, "DROP TRIGGER fail_drop");
  ASSERT_TRUE(store->drop_partition_sync(p, kNow).ok());
  EXPECT_EQ(store->digest(p)->entries, 0u);
  store->close();
  store.reset();
  EXPECT_EQ(count_rows(data, "SELECT count(*) FROM " + kv_table_of(p)), 0);
  EXPECT_EQ(count_rows(data, "SELECT count(*) FROM val_" + kv_table_of(p).substr(3)), 0);
  EXPECT_EQ(count_rows(data, floor_row), 0);
  // The log stays: the seqs go on from it.
  EXPECT_EQ(count_rows(data, "SELECT max(seq) FROM log_" + kv_table_of(p).substr(3)),
            static_cast<int64_t>(seq));
  store = open_or_die(options);
  EXPECT_EQ(store->last_seq(p), seq);
  EXPECT_EQ(store->read(keys[10], kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->get("other", kNow)->value, "v");
  EXPECT_EQ(store->purge_horizon(p).hlc_below, 0u);
  EXPECT_TRUE(store->apply_sync(tombstone(keys[0], hlc_at(-60)), kNow)->applied);
}

}  // namespace
}  // namespace edgekv::store
