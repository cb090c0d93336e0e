#include "store/schema.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string_view>

#include "store/digest.h"

namespace edgekv::store {
namespace {

// Per-connection page cache (negative: KiB). The writer touches every table of its file;
// readers mostly look up single rows.
constexpr int kWriterCacheKib = 16 * 1024;
constexpr int kReaderCacheKib = 4 * 1024;
// Bytes of each database file a reader or the writer maps (PRAGMA mmap_size); larger files
// are read past that with pread(). 1 GiB of address space per connection.
constexpr int64_t kMmapBytes = int64_t{1} << 30;
// How long a connection waits on a lock held by another connection of this process (a
// checkpoint, a reader recovering the WAL index) before giving up with UNAVAILABLE.
constexpr int kBusyTimeoutMs = 5000;
// After a checkpoint, the WAL file is truncated to this size, so one burst does not leave
// a huge WAL behind for good.
constexpr int64_t kJournalSizeLimitBytes = 64 * 1024 * 1024;
// Checkpoint (copy WAL pages back into the database, and fsync) when the WAL reaches this
// many pages. Random keys dirty about one page per write in each commit; checkpointing
// less often copies a page rewritten by many commits once. 8192 pages instead of SQLite's
// 1000 measured +30-60% write throughput (store/FORMAT.md); crash recovery replays at
// most this much WAL.
constexpr int kWalAutocheckpointPages = 8192;
constexpr int64_t kPageBytes = 4096;  // SQLite's default, stated so max_page_count is exact

std::string table_name(const char* prefix, uint32_t partition) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s_%05u", prefix, partition);
  return buf;
}

// Replaces every `{name}` in `text` with `value`.
std::string substitute(std::string text, std::string_view name, const std::string& value) {
  const std::string placeholder = "{" + std::string(name) + "}";
  for (size_t at = text.find(placeholder); at != std::string::npos;
       at = text.find(placeholder, at + value.size())) {
    text.replace(at, placeholder.size(), value);
  }
  return text;
}

// Rows are kept in (leaf, key) order, `leaf` being the key's digest leaf (store/digest.h,
// format 6): the rows of a few leaves are a range of the table, found without reading the
// partition, and no second index has to be written for each new key (an index on `leaf`
// cost applying a fresh key a fifth to a third more CPU; store/FORMAT.md). Every lookup by key
// computes the leaf first (digest_leaf), so it is still one descent. Small fixed-width columns
// first and the value last: reading hlc or tombstone never walks a large value's overflow pages.
// Values longer than kInlineValueMaxBytes live in {val}, a rowid table, and the row holds their id
// and an empty value: a WITHOUT ROWID table's rows are its b-tree's keys, so a large one spills to
// overflow pages that every comparison of a lookup reads back, and leaves few keys per interior
// page. A partition's tables are created by its first applied write (format 5); IF NOT EXISTS makes
// that safe for tables an operator or a test created meanwhile.
constexpr const char* kRowTableDdl = R"sql(
CREATE TABLE IF NOT EXISTS {kv} (
  leaf INTEGER NOT NULL, key BLOB NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL,
  expiry_ms INTEGER NOT NULL, tombstone INTEGER NOT NULL, seq INTEGER NOT NULL,
  value_id INTEGER, codec INTEGER NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY (leaf, key)) WITHOUT ROWID;
)sql";
constexpr const char* kRowIndexDdl = R"sql(
CREATE INDEX IF NOT EXISTS {kv}_expiry ON {kv} (expiry_ms) WHERE expiry_ms > 0 AND tombstone = 0;
CREATE INDEX IF NOT EXISTS {kv}_tombstone ON {kv} (hlc) WHERE tombstone = 1;
)sql";
constexpr const char* kLogDdl = R"sql(
CREATE TABLE IF NOT EXISTS {log} (
  seq INTEGER PRIMARY KEY, op INTEGER NOT NULL, hlc INTEGER NOT NULL,
  origin INTEGER NOT NULL, expiry_ms INTEGER NOT NULL, key BLOB NOT NULL);
)sql";

// The value table of a partition and the triggers that delete a value with the row that
// pointed to it, however the row changed (overwritten, deleted, expired, purged). Format 4;
// a format 3 table gets `value_id` added at its end.
constexpr const char* kValueDdl = R"sql(
CREATE TABLE IF NOT EXISTS {val} (id INTEGER PRIMARY KEY, value BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS {kv}_value_update AFTER UPDATE OF value_id ON {kv}
  WHEN old.value_id IS NOT NULL AND old.value_id IS NOT new.value_id
  BEGIN DELETE FROM {val} WHERE id = old.value_id; END;
CREATE TRIGGER IF NOT EXISTS {kv}_value_delete AFTER DELETE ON {kv} WHEN old.value_id IS NOT NULL
  BEGIN DELETE FROM {val} WHERE id = old.value_id; END;
)sql";

// A stage file's table: writes acknowledged but not yet applied to their partitions
// (store/staging.h), in staging order. Rows are appended at the end and deleted from the
// front once applied. `op` is the ChangeOp the write logs: 1 put, 2 delete, 3 expire.
constexpr const char* kStageDdl = R"sql(
CREATE TABLE stage (
  id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, seq INTEGER NOT NULL, key BLOB NOT NULL,
  hlc INTEGER NOT NULL, origin INTEGER NOT NULL, expiry_ms INTEGER NOT NULL,
  op INTEGER NOT NULL, codec INTEGER NOT NULL, value BLOB NOT NULL);
)sql";

// Hints (format 5): records kept for a replica that was down, one per (owner, key), the
// newest version. In the stage file, so a hint commits in the commit group that stages
// it, as a write does (store/FORMAT.md, "Hints"). Read by owner in version order (delivery)
// and by key (a sloppy read at a fallback).
constexpr const char* kHintsDdl = R"sql(
CREATE TABLE hints (
  owner BLOB NOT NULL, key BLOB NOT NULL, hlc INTEGER NOT NULL, origin INTEGER NOT NULL,
  expiry_ms INTEGER NOT NULL, tombstone INTEGER NOT NULL, codec INTEGER NOT NULL,
  value BLOB NOT NULL, PRIMARY KEY (owner, key));
CREATE INDEX hints_by_owner ON hints (owner, hlc, origin);
CREATE INDEX hints_by_key ON hints (key);
)sql";

// Format 2's stage table, in the data file; migrated (and dropped) by version 3.
constexpr const char* kStageDdlV2 = R"sql(
CREATE TABLE stage (
  id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, seq INTEGER NOT NULL, key BLOB NOT NULL,
  hlc INTEGER NOT NULL, origin INTEGER NOT NULL, expiry_ms INTEGER NOT NULL,
  tombstone INTEGER NOT NULL, codec INTEGER NOT NULL, value BLOB NOT NULL);
)sql";

std::string meta_sql(const Layout& layout, uint32_t file_index) {
  std::string sql = "PRAGMA application_id=" + std::to_string(kApplicationId) + ";";
  sql +=
      "CREATE TABLE meta (name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL) "
      "WITHOUT ROWID;";
  sql += "INSERT INTO meta (name, value) VALUES ('format_version', " +
         std::to_string(kFormatVersion) + "), ('partitions', " + std::to_string(layout.partitions) +
         "), ('db_files', " + std::to_string(layout.db_files) + "), ('file_index', " +
         std::to_string(file_index) + ");";
  return sql;
}

Status exec_transaction(sql::Db& db, const std::string& body, std::string_view what) {
  Status status = db.exec("BEGIN IMMEDIATE;" + body + "COMMIT;", what);
  if (!status.ok() && db.in_transaction()) (void)db.exec("ROLLBACK", "roll back");
  return status;
}

// Version 2 to 3: the data file's stage rows go to the stage file, then the table goes.
Status migrate_2_to_3(sql::Db& data, sql::Db& stage) {
  Result<sql::Stmt> select = data.prepare(
      "SELECT id, partition, seq, key, hlc, origin, expiry_ms, tombstone, codec, value"
      " FROM stage ORDER BY id",
      "read format 2 stage table");
  if (!select.ok()) return select.status();
  Result<sql::Stmt> insert = stage.prepare(
      "INSERT OR IGNORE INTO stage (id, partition, seq, key, hlc, origin, expiry_ms, op, codec,"
      " value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
      "copy stage rows");
  if (!insert.ok()) return insert.status();
  Status status = stage.exec("BEGIN IMMEDIATE", "begin");
  {
    sql::StmtScope scope(*select);
    while (status.ok()) {
      Result<bool> row = select->step();
      if (!row.ok()) {
        status = row.status();
        break;
      }
      if (!*row) break;
      // Columns 0-6 are the same in both tables (the key, 3, a blob).
      for (int c = 0; c < 7; ++c) {
        if (c == 3) {
          insert->bind_blob(c + 1, select->blob_at(c));
        } else {
          insert->bind_int64(c + 1, select->int64_at(c));
        }
      }
      // tombstone 1 was a delete (ChangeOp 2), 0 a put (1).
      insert->bind_int64(8, select->int64_at(7) != 0 ? 2 : 1);
      insert->bind_int64(9, select->int64_at(8));
      insert->bind_blob(10, select->blob_at(9));
      status = insert->run();
    }
  }
  if (status.ok()) status = stage.exec("COMMIT", "commit copied stage rows");
  if (!status.ok()) {
    if (stage.in_transaction()) (void)stage.exec("ROLLBACK", "roll back");
    return status;
  }
  return exec_transaction(data,
                          "DROP TABLE stage;"
                          "INSERT OR REPLACE INTO meta (name, value) VALUES ('" +
                              std::string(kAppliedStageId) +
                              "', 0);"
                              "UPDATE meta SET value = 3 WHERE name = 'format_version';",
                          "migrate format 2 to 3");
}

std::string value_ddl(uint32_t partition) {
  return substitute(substitute(kValueDdl, "kv", kv_table(partition)), "val", val_table(partition));
}

std::string partition_ddl(uint32_t partition) {
  const std::string kv = kv_table(partition);
  return substitute(kRowTableDdl, "kv", kv) + substitute(kRowIndexDdl, "kv", kv) +
         substitute(kLogDdl, "log", log_table(partition)) + value_ddl(partition);
}

// Version 3 to 4: each partition gets its value table; rows keep their values inline
// until they are next written.
Status migrate_3_to_4(sql::Db& data) {
  Result<std::vector<uint32_t>> held = partitions_with_tables(data);
  if (!held.ok()) return held.status();
  std::string sql;
  for (uint32_t p : *held) {
    sql += "ALTER TABLE " + kv_table(p) + " ADD COLUMN value_id INTEGER;" + value_ddl(p);
  }
  return exec_transaction(data, sql + "UPDATE meta SET value = 4 WHERE name = 'format_version';",
                          "migrate format 3 to 4");
}

// The partition whose row table is named `name` ("kv_00005"); nullopt for other names.
std::optional<uint32_t> partition_of_table(std::string_view name) {
  if (name.size() != 8 || name.substr(0, 3) != "kv_") return std::nullopt;
  uint32_t p = 0;
  for (char c : name.substr(3)) {
    if (c < '0' || c > '9') return std::nullopt;
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  return p;
}

// Version 4 to 5: expired keys leave tombstones that keep their expiry, which the expiry
// index must leave out (the sweep would find them again): its predicate gains
// `tombstone = 0`. Format 4 stored tombstones without expiry, so the new index has the
// same entries; building it reads each table once.
Status migrate_4_to_5(sql::Db& data) {
  Result<std::vector<uint32_t>> held = partitions_with_tables(data);
  if (!held.ok()) return held.status();
  std::string sql;
  for (uint32_t p : *held) {
    const std::string kv = kv_table(p);
    sql += "DROP INDEX " + kv + "_expiry; CREATE INDEX " + kv + "_expiry ON " + kv +
           " (expiry_ms) WHERE expiry_ms > 0 AND tombstone = 0;";
  }
  return exec_transaction(data, sql + "UPDATE meta SET value = 5 WHERE name = 'format_version';",
                          "migrate format 4 to 5");
}

// edgekv_digest_leaf(key): digest_leaf of a blob.
void digest_leaf_function(sqlite3_context* ctx, int, sqlite3_value** args) {
  const void* bytes = sqlite3_value_blob(args[0]);
  const int size = sqlite3_value_bytes(args[0]);
  sqlite3_result_int64(ctx, digest_leaf(std::string_view(static_cast<const char*>(bytes),
                                                         static_cast<size_t>(size))));
}

// Version 5 to 6: each row table is rebuilt in (leaf, key) order with the leaf of every
// row (digest_entries); its indexes and value triggers are made again, its values stay
// where they are (dropping a table fires no trigger). Rewrites every row once.
Status migrate_5_to_6(sql::Db& data) {
  Result<std::vector<uint32_t>> held = partitions_with_tables(data);
  if (!held.ok()) return held.status();
  EDGEKV_RETURN_IF_ERROR(register_digest_leaf(data));
  std::string sql;
  for (uint32_t p : *held) {
    const std::string kv = kv_table(p);
    const std::string rebuilt = kv + "_v6";
    constexpr const char* kColumns =
        "key, hlc, origin, expiry_ms, tombstone, seq, value_id, codec, value";
    sql += substitute(kRowTableDdl, "kv", rebuilt) + "INSERT INTO " + rebuilt + " (leaf, " +
           kColumns + ") SELECT edgekv_digest_leaf(key), " + kColumns + " FROM " + kv +
           "; DROP TABLE " + kv + "; ALTER TABLE " + rebuilt + " RENAME TO " + kv + ";" +
           substitute(kRowIndexDdl, "kv", kv) + value_ddl(p);
  }
  return exec_transaction(data, sql + "UPDATE meta SET value = 6 WHERE name = 'format_version';",
                          "migrate format 5 to 6");
}

}  // namespace

std::string partition_schema_sql(uint32_t partition) { return partition_ddl(partition); }

Status register_digest_leaf(sql::Db& db) {
  int rc = sqlite3_create_function_v2(db.handle(), "edgekv_digest_leaf", 1,
                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                      digest_leaf_function, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status() : db.error(rc, "register edgekv_digest_leaf");
}

Result<std::vector<uint32_t>> partitions_with_tables(sql::Db& db) {
  Result<sql::Stmt> stmt = db.prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name GLOB 'kv_[0-9]*'"
      " ORDER BY name",
      "list partition tables");
  if (!stmt.ok()) return stmt.status();
  sql::StmtScope scope(*stmt);
  std::vector<uint32_t> out;
  for (;;) {
    Result<bool> row = stmt->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (std::optional<uint32_t> p = partition_of_table(stmt->blob_at(0))) out.push_back(*p);
  }
  return out;
}

std::filesystem::path Layout::file_path(uint32_t file) const {
  return dir / ("data-" + std::to_string(file) + ".db");
}

std::filesystem::path Layout::stage_path(uint32_t file) const {
  return dir / ("stage-" + std::to_string(file) + ".db");
}

std::filesystem::path Layout::lock_path() const { return dir / "LOCK"; }

std::string kv_table(uint32_t partition) { return table_name("kv", partition); }
std::string log_table(uint32_t partition) { return table_name("log", partition); }
std::string val_table(uint32_t partition) { return table_name("val", partition); }

Status configure_connection(sql::Db& db, ConnectionRole role, SyncMode sync,
                            uint64_t max_db_bytes) {
  std::string pragmas = "PRAGMA busy_timeout=" + std::to_string(kBusyTimeoutMs) + ";";
  if (role == ConnectionRole::kReader) {
    pragmas += "PRAGMA query_only=1;PRAGMA cache_size=-" + std::to_string(kReaderCacheKib) + ";";
    // Reads map the database instead of copying pages in with pread(): a point read then
    // costs no system call for pages already in the page cache. Address space, not memory.
    pragmas += "PRAGMA mmap_size=" + std::to_string(kMmapBytes) + ";";
    return db.exec(pragmas, "configure reader");
  }
  const char* synchronous =
      sync == SyncMode::kFull ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
  if (role == ConnectionRole::kCheckpointer) {
    // A checkpoint syncs the WAL and the file as this says: as the writer's, so that
    // sync = full keeps its promise across checkpoints too.
    return db.exec(pragmas + synchronous, "configure checkpointer");
  }
  Result<std::string> mode = db.query_text("PRAGMA journal_mode=WAL", "set WAL mode");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return Status::io_error(db.path() + ": cannot use WAL mode (journal_mode is '" + *mode +
                            "'); the file system must support shared memory maps");
  }
  pragmas += synchronous;
  // Debian builds SQLite with SECURE_DELETE, which zeroes every freed page: extra writes
  // on each overwrite and delete that buy nothing here (the disk is not a privacy boundary).
  pragmas += "PRAGMA secure_delete=OFF;PRAGMA temp_store=MEMORY;";
  pragmas += "PRAGMA cache_size=-" + std::to_string(kWriterCacheKib) + ";";
  // Pages missing from the writer's cache (LWW checks and applies of keys not written
  // lately, overflow chains freed by overwriting large values) are read through the map
  // too, instead of a pread() each. Writes still go through write(), so a stray pointer
  // cannot corrupt the file.
  pragmas += "PRAGMA mmap_size=" + std::to_string(kMmapBytes) + ";";
  pragmas += "PRAGMA journal_size_limit=" + std::to_string(kJournalSizeLimitBytes) + ";";
  pragmas += "PRAGMA wal_autocheckpoint=" + std::to_string(kWalAutocheckpointPages) + ";";
  if (max_db_bytes > 0) {
    uint64_t pages = std::max<uint64_t>(1, max_db_bytes / kPageBytes);
    pragmas += "PRAGMA max_page_count=" + std::to_string(pages) + ";";
  }
  return db.exec(pragmas, "configure writer");
}

Result<std::optional<FileMeta>> read_meta(sql::Db& db) {
  Result<std::string> app = db.query_text("PRAGMA application_id", "read application_id");
  if (!app.ok()) return app.status();
  Result<std::string> objects = db.query_text("SELECT count(*) FROM sqlite_schema", "read schema");
  if (!objects.ok()) return objects.status();
  Result<std::string> has_meta = db.query_text(
      "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", "read schema");
  if (!has_meta.ok()) return has_meta.status();
  bool foreign_app = *app != "0" && *app != std::to_string(kApplicationId);
  if (foreign_app || (*has_meta == "0" && *objects != "0")) {
    return Status::failed_precondition(db.path() + " is not an edgekv data file");
  }
  if (*has_meta == "0") return std::optional<FileMeta>();

  Result<sql::Stmt> stmt = db.prepare("SELECT name, value FROM meta", "read meta");
  if (!stmt.ok()) return stmt.status();
  sql::StmtScope scope(*stmt);
  FileMeta meta;
  int seen = 0;
  for (;;) {
    Result<bool> row = stmt->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::string_view name = stmt->blob_at(0);
    int64_t value = stmt->int64_at(1);
    if (name == "format_version") {
      meta.format_version = value;
    } else if (name == "partitions") {
      meta.partitions = static_cast<uint32_t>(value);
    } else if (name == "db_files") {
      meta.db_files = static_cast<uint32_t>(value);
    } else if (name == "file_index") {
      meta.file_index = static_cast<uint32_t>(value);
    } else {
      continue;  // a newer build's extra setting; format_version says whether we may read on
    }
    ++seen;
  }
  if (seen != 4) return Status::corruption(db.path() + ": meta table is incomplete");
  return std::optional<FileMeta>(meta);
}

Status create_schema(sql::Db& db, const Layout& layout, uint32_t file_index) {
  std::string sql = meta_sql(layout, file_index);
  sql += "INSERT INTO meta (name, value) VALUES ('" + std::string(kAppliedStageId) + "', 0);";
  return exec_transaction(db, sql, "create schema");
}

Status create_stage_schema(sql::Db& db, const Layout& layout, uint32_t file_index) {
  return exec_transaction(db, meta_sql(layout, file_index) + kStageDdl + kHintsDdl,
                          "create stage schema");
}

Status migrate_stage(sql::Db& stage, FileMeta* meta) {
  if (meta->format_version < 5) {
    // Stage files were created at format 3 and changed nothing until 5, which adds the
    // hints; one transaction, so a crash leaves the file at 4 or at 5.
    EDGEKV_RETURN_IF_ERROR(exec_transaction(
        stage, std::string(kHintsDdl) + "UPDATE meta SET value = 5 WHERE name = 'format_version';",
        "migrate stage file to format 5"));
    meta->format_version = 5;
  }
  if (meta->format_version == 5) {
    // Format 6 changed the data files only (the digest leaf); the stage file says 6 too.
    EDGEKV_RETURN_IF_ERROR(
        exec_transaction(stage, "UPDATE meta SET value = 6 WHERE name = 'format_version';",
                         "migrate stage file to format 6"));
    meta->format_version = 6;
  }
  return Status();
}

Status migrate(sql::Db& data, sql::Db& stage, FileMeta* meta) {
  if (meta->format_version == 1) {
    // Version 2 added the stage table; version 1 files have nothing staged.
    EDGEKV_RETURN_IF_ERROR(exec_transaction(
        data, std::string(kStageDdlV2) + "UPDATE meta SET value = 2 WHERE name = 'format_version';",
        "migrate format 1 to 2"));
    meta->format_version = 2;
  }
  if (meta->format_version == 2) {
    EDGEKV_RETURN_IF_ERROR(migrate_2_to_3(data, stage));
    meta->format_version = 3;
  }
  if (meta->format_version == 3) {
    EDGEKV_RETURN_IF_ERROR(migrate_3_to_4(data));
    meta->format_version = 4;
  }
  if (meta->format_version == 4) {
    EDGEKV_RETURN_IF_ERROR(migrate_4_to_5(data));
    meta->format_version = 5;
  }
  if (meta->format_version == 5) {
    EDGEKV_RETURN_IF_ERROR(migrate_5_to_6(data));
    meta->format_version = 6;
  }
  return Status();
}

}  // namespace edgekv::store
