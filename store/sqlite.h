// A thin RAII layer over the SQLite C API for the store, and the one place where SQLite
// result codes become a Status (sqlite_status).
//
// Owns: one connection (Db) or one prepared statement (Stmt) each.
// Thread-safety: connections are opened with SQLITE_OPEN_NOMUTEX, so a Db and every Stmt
// prepared on it must be used by one thread at a time; the store hands each connection to
// exactly one thread (a writer, or the reader holding it from the pool).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace edgekv::store::sql {

// The one mapping from a SQLite result code to a Status. `what` names the file and the
// operation ("/data/data-0.db: commit"); the connection, when given, adds its message.
Status sqlite_status(int rc, sqlite3* db, std::string_view what);

// Whether the last error of connection `db` was a full disk (SQLITE_FULL, which a cap by
// max_page_count gives too, or an I/O error with ENOSPC or EDQUOT). Ask before anything
// else runs on the connection (a rollback resets it).
bool is_disk_full(sqlite3* db);

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3_stmt* stmt, std::string context) : stmt_(stmt), context_(std::move(context)) {}

  bool valid() const { return stmt_ != nullptr; }

  // Parameters count from 1. A failed bind (e.g. a blob over SQLite's length limit) is
  // remembered and reported by the next step(), so call sites bind without checking each.
  void bind_int64(int index, int64_t value);
  // uint64 versions are stored as INTEGER by a two's-complement cast: lossless both ways.
  void bind_u64(int index, uint64_t value) { bind_int64(index, static_cast<int64_t>(value)); }
  void bind_null(int index);
  // Binds without copying: `bytes` must stay alive until reset(). Empty binds an empty
  // blob, never NULL.
  void bind_blob(int index, std::string_view bytes);

  // Runs the statement one step: true when a row is ready, false when it finished.
  Result<bool> step();
  // Runs a statement that returns no rows to completion, then resets it.
  Status run();

  int64_t int64_at(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  uint64_t u64_at(int column) const { return static_cast<uint64_t>(int64_at(column)); }
  std::string_view blob_at(int column) const;

  // Ends the statement (so it holds no read snapshot) and clears its bindings.
  void reset();

 private:
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
  std::string context_;  // "<path>: <what>" for error messages
  int bind_rc_ = SQLITE_OK;
};

// Resets a statement when leaving the scope, so an early return never leaves it mid-step
// (a statement mid-step pins a WAL snapshot and blocks checkpoints).
class StmtScope {
 public:
  explicit StmtScope(Stmt& stmt) : stmt_(stmt) {}
  ~StmtScope() { stmt_.reset(); }
  StmtScope(const StmtScope&) = delete;
  StmtScope& operator=(const StmtScope&) = delete;

 private:
  Stmt& stmt_;
};

class Db {
 public:
  // Opens `path` read-write; creates the file when `create`.
  static Result<Db> open(const std::filesystem::path& path, bool create);

  Db() = default;
  bool valid() const { return db_ != nullptr; }
  sqlite3* handle() const { return db_.get(); }
  const std::string& path() const { return path_; }

  // Runs SQL without results (DDL, pragmas that return nothing, BEGIN/COMMIT).
  Status exec(const std::string& sql, std::string_view what);
  // Runs a pragma or query returning one value in one row; the value as text.
  Result<std::string> query_text(const std::string& sql, std::string_view what);
  // Prepares a statement kept for the connection's lifetime.
  Result<Stmt> prepare(std::string_view sql, std::string_view what);
  // The same, into `out` (for a class preparing its statements one after another).
  Status prepare_into(Stmt* out, std::string_view sql, std::string_view what);

  // An error in terms of this connection (its path and its last message).
  Status error(int rc, std::string_view what) const;
  bool in_transaction() const { return db_ && sqlite3_get_autocommit(db_.get()) == 0; }

 private:
  struct Close {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  std::unique_ptr<sqlite3, Close> db_;
  std::string path_;
};

}  // namespace edgekv::store::sql
