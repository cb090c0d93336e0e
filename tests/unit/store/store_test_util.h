// Helpers for the store tests: temporary data directories, records, waiting for callbacks
// with deadlines, holding a writer thread, and peeking at the database files directly.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/hlc.h"
#include "common/random.h"
#include "store/store.h"

namespace edgekv::store::testing {

using namespace std::chrono_literals;

inline constexpr WallTime kNow{1'700'000'000'000};
inline constexpr auto kDeadline = 20s;

// Yields until `done()` holds or kDeadline passes; returns whether it held. For waiting on
// other threads' progress counters, which have nothing to notify.
template <typename Pred>
bool eventually(Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// An hlc reading `ms` milliseconds after kNow.
inline uint64_t hlc_at(int64_t ms_after_now, uint64_t logical = 0) {
  return HybridClock::pack(kNow.ms + ms_after_now, logical);
}

// `n` bytes that do not compress, the same for the same seed.
inline std::string random_bytes(size_t n, uint64_t seed) {
  Random rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng.next() & 0xff);
  return out;
}

inline Record put(std::string key, std::string value, uint64_t hlc, NodeOrigin origin = 1,
                  WallTime expiry = WallTime{0}) {
  Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.version = Version{hlc, origin};
  r.expiry = expiry;
  return r;
}

inline Record tombstone(std::string key, uint64_t hlc, NodeOrigin origin = 1) {
  Record r;
  r.key = std::move(key);
  r.version = Version{hlc, origin};
  r.tombstone = true;
  return r;
}

// A fresh directory under TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/edgekv-store-test-XXXXXX";
    EDGEKV_ASSERT(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path data() const { return path_ / "data"; }

 private:
  std::filesystem::path path_;
};

// EDGEKV_TEST_STAGE_APPLY_AT overrides StoreOptions::stage_apply_at, so that the whole
// suite also runs with every write applied right after its commit group (ctest runs it
// both ways; see CMakeLists.txt).
inline StoreOptions options_for(const TempDir& dir) {
  StoreOptions o;
  o.dir = dir.data();
  if (const char* at = getenv("EDGEKV_TEST_STAGE_APPLY_AT"); at != nullptr && *at != 0) {
    o.stage_apply_at = std::stoull(at);
  }
  return o;
}

inline std::unique_ptr<Store> open_or_die(const StoreOptions& options) {
  Result<std::unique_ptr<Store>> store = Store::open(options);
  EDGEKV_ASSERT(store.ok());
  return std::move(*store);
}

// Counts callbacks and their failures; waits for a count with a deadline.
class Acks {
 public:
  Store::ApplyCallback callback() {
    return [this](Result<ApplyResult> result) {
      std::lock_guard lock(mu_);
      if (result.ok()) {
        results_.push_back(*result);
      } else {
        errors_.push_back(result.status());
      }
      changed_.notify_all();
    };
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kDeadline,
                             [&] { return results_.size() + errors_.size() >= n; });
  }
  std::vector<ApplyResult> results() {
    std::lock_guard lock(mu_);
    return results_;
  }
  std::vector<Status> errors() {
    std::lock_guard lock(mu_);
    return errors_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<ApplyResult> results_;
  std::vector<Status> errors_;
};

// Holds a writer thread inside a callback, so that writes submitted meanwhile queue up and
// are then committed together as one group.
class Gate {
 public:
  ~Gate() { open(); }
  Store::ApplyCallback hold() {
    return [this](Result<ApplyResult>) {
      std::unique_lock lock(mu_);
      entered_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return open_; });
    };
  }
  // Applies a write whose callback holds the writer; returns once the writer is held.
  bool close_on(Store& store, Record record) {
    store.apply(std::move(record), kNow, hold());
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kDeadline, [this] { return entered_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool entered_ = false;
  bool open_ = false;
};

// A separate SQLite connection to the store's files, to look at what is really stored.
class RawDb {
 public:
  explicit RawDb(const std::filesystem::path& file) {
    EDGEKV_ASSERT(sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  bool has_table(const std::string& name) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1", -1,
                       &s, nullptr);
    sqlite3_bind_text(s, 1, name.c_str(), -1, SQLITE_TRANSIENT);
    bool found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
  }
  // codec and stored length of the value of `key` in kv table `table`, wherever it is (the
  // row, or the partition's value table).
  std::optional<std::pair<int64_t, int64_t>> codec_and_length(const std::string& table,
                                                              std::string_view key) {
    sqlite3_stmt* s = nullptr;
    std::string sql = "SELECT k.codec, length(coalesce(v.value, k.value)) FROM " + table +
                      " AS k LEFT JOIN " + value_table(table) +
                      " AS v ON v.id = k.value_id WHERE k.key = ?1";
    EDGEKV_ASSERT(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    sqlite3_bind_blob(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    std::optional<std::pair<int64_t, int64_t>> out;
    if (sqlite3_step(s) == SQLITE_ROW) {
      out = std::make_pair(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1));
    }
    sqlite3_finalize(s);
    return out;
  }
  std::string stored_value(const std::string& table, std::string_view key) {
    sqlite3_stmt* s = nullptr;
    std::string sql = "SELECT coalesce(v.value, k.value) FROM " + table + " AS k LEFT JOIN " +
                      value_table(table) + " AS v ON v.id = k.value_id WHERE k.key = ?1";
    EDGEKV_ASSERT(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    sqlite3_bind_blob(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW) {
      out.assign(static_cast<const char*>(sqlite3_column_blob(s, 0)),
                 static_cast<size_t>(sqlite3_column_bytes(s, 0)));
    }
    sqlite3_finalize(s);
    return out;
  }
  // Stores `value` in the row itself (its value-table entry, if any, goes).
  // Whether the value of `key` lives in the partition's value table, not in its row.
  bool value_out_of_row(const std::string& table, std::string_view key) {
    return query_int("SELECT value_id IS NOT NULL FROM " + table + " WHERE key = ?1", key) == 1;
  }
  int64_t query_int(const std::string& sql, std::string_view bind = {}) {
    sqlite3_stmt* s = nullptr;
    EDGEKV_ASSERT(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    if (sqlite3_bind_parameter_count(s) > 0) {
      sqlite3_bind_blob(s, 1, bind.data(), static_cast<int>(bind.size()), SQLITE_TRANSIENT);
    }
    int64_t out = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return out;
  }
  void exec(const std::string& sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    EDGEKV_ASSERT(rc == SQLITE_OK);
    sqlite3_free(error);
  }
  // Values in the file's value tables that no row points to, plus rows that point to a
  // value that is not there: 0 when the value tables are consistent.
  int64_t value_table_mismatches() {
    int64_t n = 0;
    for (const std::string& kv : kv_tables()) {
      const std::string val = value_table(kv);
      n += query_int("SELECT count(*) FROM " + val + " AS v WHERE NOT EXISTS (SELECT 1 FROM " + kv +
                     " AS k WHERE k.value_id = v.id)");
      n += query_int("SELECT count(*) FROM " + kv +
                     " AS k WHERE k.value_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM " + val +
                     " AS v WHERE v.id = k.value_id)");
    }
    return n;
  }
  std::vector<std::string> kv_tables() {
    std::vector<std::string> names;
    sqlite3_stmt* s = nullptr;
    EDGEKV_ASSERT(sqlite3_prepare_v2(db_,
                                     "SELECT name FROM sqlite_schema WHERE type = 'table'"
                                     " AND name LIKE 'kv\\_%' ESCAPE '\\'",
                                     -1, &s, nullptr) == SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
      names.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    }
    sqlite3_finalize(s);
    return names;
  }

  // Turns a format 4 data file back into format 3: values moved back into their rows, no
  // value tables and their triggers, no value_id column, format_version 3.
  // Rebuilds row table `kv` as format 5 kept it: keyed by key alone, without the digest
  // leaf, with its indexes and value triggers.
  static std::string drop_digest_leaf_sql(const std::string& kv) {
    const std::string old = kv + "_v5";
    const std::string val = value_table(kv);
    return "CREATE TABLE " + old +
           " (key BLOB NOT NULL PRIMARY KEY, hlc INTEGER NOT NULL, origin INTEGER NOT NULL,"
           " expiry_ms INTEGER NOT NULL, tombstone INTEGER NOT NULL, seq INTEGER NOT NULL,"
           " value_id INTEGER, codec INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;"
           "INSERT INTO " +
           old +
           " SELECT key, hlc, origin, expiry_ms, tombstone, seq, value_id, codec, value FROM " +
           kv + "; DROP TABLE " + kv + "; ALTER TABLE " + old + " RENAME TO " + kv +
           "; CREATE INDEX " + kv + "_expiry ON " + kv +
           " (expiry_ms) WHERE expiry_ms > 0 AND tombstone = 0; CREATE INDEX " + kv +
           "_tombstone ON " + kv + " (hlc) WHERE tombstone = 1; CREATE TRIGGER " + kv +
           "_value_update AFTER UPDATE OF value_id ON " + kv +
           " WHEN old.value_id IS NOT NULL AND old.value_id IS NOT new.value_id"
           " BEGIN DELETE FROM " +
           val + " WHERE id = old.value_id; END; CREATE TRIGGER " + kv +
           "_value_delete AFTER DELETE ON " + kv +
           " WHEN old.value_id IS NOT NULL BEGIN DELETE FROM " + val +
           " WHERE id = old.value_id; END;";
  }

  // What format 5 looked like, in a data file (a stage file's meta says 5 too).
  void downgrade_to_format_5() {
    std::string sql = "BEGIN;";
    for (const std::string& kv : kv_tables()) sql += drop_digest_leaf_sql(kv);
    sql += "UPDATE meta SET value = 5 WHERE name = 'format_version'; COMMIT;";
    exec(sql);
  }

  void downgrade_to_format_3() {
    std::string sql = "BEGIN;";
    for (const std::string& kv : kv_tables()) {
      sql += drop_digest_leaf_sql(kv);
      sql += "UPDATE " + kv + " SET value = (SELECT v.value FROM " + value_table(kv) +
             " AS v WHERE v.id = value_id), value_id = NULL WHERE value_id IS NOT NULL;";
      sql += "DROP TRIGGER " + kv + "_value_update; DROP TRIGGER " + kv + "_value_delete;";
      sql += "DROP TABLE " + value_table(kv) + "; ALTER TABLE " + kv + " DROP COLUMN value_id;";
    }
    sql += "UPDATE meta SET value = 3 WHERE name = 'format_version'; COMMIT;";
    exec(sql);
  }

  void set_value(const std::string& table, std::string_view key, std::string_view value,
                 int64_t codec) {
    sqlite3_stmt* s = nullptr;
    std::string sql =
        "UPDATE " + table + " SET value = ?2, codec = ?3, value_id = NULL WHERE key = ?1";
    EDGEKV_ASSERT(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    sqlite3_bind_blob(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, codec);
    EDGEKV_ASSERT(sqlite3_step(s) == SQLITE_DONE);
    EDGEKV_ASSERT(sqlite3_changes(db_) == 1);
    sqlite3_finalize(s);
  }

 private:
  static std::string value_table(const std::string& kv_table) {
    return "val" + kv_table.substr(2);  // kv_00005 -> val_00005
  }

  sqlite3* db_ = nullptr;
};

// The data file holding `table` (the tests do not assume which file a partition is in).
inline std::filesystem::path file_with_table(const std::filesystem::path& data_dir,
                                             const std::string& table) {
  for (const auto& entry : std::filesystem::directory_iterator(data_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("data-") && name.ends_with(".db") &&
        RawDb(entry.path()).has_table(table)) {
      return entry.path();
    }
  }
  return {};
}

inline std::string kv_table_of(uint32_t partition) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "kv_%05u", partition);
  return buf;
}

}  // namespace edgekv::store::testing
