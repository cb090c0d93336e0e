#include "store/sqlite.h"

#include <cerrno>
#include <climits>

namespace edgekv::store::sql {

Status sqlite_status(int rc, sqlite3* db, std::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return Status();
  // The connection's message is more specific ("no such table: kv_00003") but only when it
  // describes this error; otherwise fall back to the code's generic text.
  const char* text = (db != nullptr && sqlite3_extended_errcode(db) == rc) ? sqlite3_errmsg(db)
                                                                           : sqlite3_errstr(rc);
  std::string message(what);
  message += ": ";
  message += text;
  message += " (sqlite code ";
  message += std::to_string(rc);
  message += ')';
  switch (rc & 0xff) {  // the primary code; extended codes refine it
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_AUTH: return Status::io_error(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT: return Status::corruption(std::move(message));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL: return Status::unavailable(std::move(message));
    case SQLITE_TOOBIG:
    case SQLITE_RANGE: return Status::invalid_argument(std::move(message));
    default:  // SQLITE_ERROR (bad SQL), SQLITE_MISUSE, SQLITE_NOMEM, ...: our bug or no memory
      return Status::internal(std::move(message));
  }
}

bool is_disk_full(sqlite3* db) {
  if (db == nullptr) return false;
  const int rc = sqlite3_extended_errcode(db) & 0xff;
  if (rc == SQLITE_FULL) return true;
  const int err = sqlite3_system_errno(db);
  return rc == SQLITE_IOERR && (err == ENOSPC || err == EDQUOT);
}

void Stmt::bind_int64(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_.get(), index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

void Stmt::bind_null(int index) {
  int rc = sqlite3_bind_null(stmt_.get(), index);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

void Stmt::bind_blob(int index, std::string_view bytes) {
  // A null pointer would bind NULL, which the NOT NULL columns refuse: use a static empty.
  static const char kEmpty = 0;
  const void* data = bytes.empty() ? &kEmpty : bytes.data();
  int rc = sqlite3_bind_blob64(stmt_.get(), index, data, bytes.size(), SQLITE_STATIC);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

Result<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK) {
    int rc = bind_rc_;
    return sqlite_status(rc, nullptr, context_ + ": bind");
  }
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return sqlite_status(rc, sqlite3_db_handle(stmt_.get()), context_);
}

Status Stmt::run() {
  StmtScope scope(*this);
  Result<bool> row = step();
  if (!row.ok()) return row.status();
  return Status();
}

std::string_view Stmt::blob_at(int column) const {
  const void* data = sqlite3_column_blob(stmt_.get(), column);
  int size = sqlite3_column_bytes(stmt_.get(), column);
  if (data == nullptr || size <= 0) return {};
  return {static_cast<const char*>(data), static_cast<size_t>(size)};
}

void Stmt::reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bind_rc_ = SQLITE_OK;
}

Result<Db> Db::open(const std::filesystem::path& path, bool create) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db;
  db.db_.reset(raw);  // closed on every path, also when open failed
  db.path_ = path.string();
  if (rc != SQLITE_OK) return db.error(rc, "open");
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

Status Db::exec(const std::string& sql, std::string_view what) {
  int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc, what);
  return Status();
}

Result<std::string> Db::query_text(const std::string& sql, std::string_view what) {
  Result<Stmt> stmt = prepare(sql, what);
  if (!stmt.ok()) return stmt.status();
  StmtScope scope(*stmt);
  Result<bool> row = stmt->step();
  if (!row.ok()) return row.status();
  if (!*row) return std::string();
  std::string_view text = stmt->blob_at(0);
  return std::string(text);
}

Result<Stmt> Db::prepare(std::string_view sql, std::string_view what) {
  sqlite3_stmt* raw = nullptr;
  EDGEKV_ASSERT(sql.size() < INT_MAX);
  int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  std::string context = path_ + ": " + std::string(what);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    return sqlite_status(rc, db_.get(), context);
  }
  return Stmt(raw, std::move(context));
}

Status Db::prepare_into(Stmt* out, std::string_view sql, std::string_view what) {
  Result<Stmt> stmt = prepare(sql, what);
  if (!stmt.ok()) return stmt.status();
  *out = std::move(*stmt);
  return Status();
}

Status Db::error(int rc, std::string_view what) const {
  std::string context = path_ + ": " + std::string(what);
  return sqlite_status(rc, db_.get(), context);
}

}  // namespace edgekv::store::sql
