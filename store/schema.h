// The store's on-disk format (described for people in store/FORMAT.md): which file holds
// which partition, the tables and indexes, the per-connection pragmas and the meta table
// that records the format version and the settings fixed at creation.
//
// Owns: nothing; functions over a connection. Thread-safety: as the connection's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace edgekv::store {

// Bumped when the format changes incompatibly; an older build refuses a newer directory.
inline constexpr int64_t kFormatVersion = 6;
// SQLite's header field for "which application's file is this": "EKV1".
inline constexpr int64_t kApplicationId = 0x454b5631;

// Where partitions live. Fixed when the directory is created.
struct Layout {
  std::filesystem::path dir;
  uint32_t partitions = 0;
  uint32_t db_files = 0;

  uint32_t file_of(uint32_t partition) const { return partition % db_files; }
  // A partition's position among its file's partitions.
  uint32_t slot_of(uint32_t partition) const { return partition / db_files; }
  uint32_t partitions_in_file(uint32_t file) const {
    return (partitions - file + db_files - 1) / db_files;
  }
  std::filesystem::path file_path(uint32_t file) const;   // <dir>/data-<file>.db
  std::filesystem::path stage_path(uint32_t file) const;  // <dir>/stage-<file>.db
  std::filesystem::path lock_path() const;                // <dir>/LOCK
};

// The meta table of one file.
struct FileMeta {
  int64_t format_version = 0;
  uint32_t partitions = 0;
  uint32_t db_files = 0;
  uint32_t file_index = 0;
};

std::string kv_table(uint32_t partition);   // "kv_00005"
std::string log_table(uint32_t partition);  // "log_00005"
std::string val_table(uint32_t partition);  // "val_00005"

// A put whose stored value (after compression) is longer than this keeps it in the
// partition's value table, not in its row (format 4, store/FORMAT.md "Large values").
inline constexpr size_t kInlineValueMaxBytes = 256;

// kWriter: the one connection that writes a file (the applier's for a data file, the
// writer's for a stage file). kCheckpointer: a second read-write connection that only runs
// WAL checkpoints (checkpointer.h); it syncs as the writer does.
enum class ConnectionRole { kWriter, kReader, kCheckpointer };

// Sets the pragmas of a connection: WAL mode and the sync level for the writer, read-only
// for readers, the sync level for the checkpointer. `max_db_bytes` (0: none) caps the file
// size through max_page_count.
Status configure_connection(sql::Db& db, ConnectionRole role, SyncMode sync, uint64_t max_db_bytes);

// The meta entry of a data file that names the newest stage row applied to it (0: none).
inline constexpr const char* kAppliedStageId = "applied_stage_id";

// The file's meta table; nullopt for a new (empty) file. FAILED_PRECONDITION when the
// file holds something other than edgekv data.
Result<std::optional<FileMeta>> read_meta(sql::Db& db);

// Creates data file `file_index` of `layout` in one transaction: the meta table only. A
// partition's tables are created by its first write (partition_schema_sql), so a node
// keeps tables only for the partitions it holds (format 5).
Status create_schema(sql::Db& db, const Layout& layout, uint32_t file_index);

// The DDL of one partition: its row, value and log tables, their indexes and triggers.
std::string partition_schema_sql(uint32_t partition);

// Registers edgekv_digest_leaf(key), digest_leaf of a blob, on `db`: for SQL that finds a
// row from a key it did not bind (the change log's join) and for the migration to format 6.
Status register_digest_leaf(sql::Db& db);

// The partitions of data file `db` that have tables, by the names in its schema.
Result<std::vector<uint32_t>> partitions_with_tables(sql::Db& db);

// Creates stage file `file_index` of `layout` in one transaction: the meta table (as the
// data file's), the stage table and the hints table.
Status create_stage_schema(sql::Db& db, const Layout& layout, uint32_t file_index);

// Brings stage file `stage` (whose meta is `meta`) of an older format up to
// kFormatVersion: format 5 added the hints table, format 6 changed only the version it
// records. Does nothing for a current one.
Status migrate_stage(sql::Db& stage, FileMeta* meta);

// Hints keep this many bytes per hint on top of their owner, key and value, against
// hints_max_bytes: the row's fixed columns and its entries in the table's three indexes.
inline constexpr uint64_t kHintOverheadBytes = 64;

// Brings data file `data` of an older format up to kFormatVersion, one step per version,
// each recording the new version in `meta`; updates `meta`. Version 3 moved the stage table
// into a file of its own: the step copies the rows staged in `data` to `stage` (a created
// stage file) and commits them there before it drops the table from `data`, so a crash in
// between leaves them in both, and the step, run again, copies them again (the same ids).
// Version 4 added the value tables: existing rows keep their values inline. Version 5
// keeps expiry tombstones: the expiry index leaves tombstones out. Version 6 keeps rows in
// (digest leaf, key) order: the step rebuilds every row table.
// Does nothing for a file of the current format.
Status migrate(sql::Db& data, sql::Db& stage, FileMeta* meta);

}  // namespace edgekv::store
