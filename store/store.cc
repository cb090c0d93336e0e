// Store::open and the Store implementation: it validates options, takes the directory's
// LOCK, opens or creates the database files (schema.h), starts one Writer per file and
// routes reads to the ReaderPool.
#include "store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <system_error>
#include <utility>

#include "common/hash.h"
#include "common/log.h"
#include "store/applier.h"
#include "store/engine.h"
#include "store/reader.h"
#include "store/schema.h"
#include "store/writer.h"

namespace edgekv::store {
namespace {

constexpr uint32_t kMaxPartitions = 65536;
// Sanity bounds far above the daemon's limits (common/limits.h) and below SQLite's 1 GB per
// row: a write past them is refused alone, instead of failing its whole commit group.
constexpr size_t kMaxKeyBytes = 1 << 20;
constexpr size_t kMaxValueBytes = 256 << 20;
constexpr uint32_t kMaxDbFiles = 16;
// Database files of a new directory. Measured, see store/FORMAT.md ("How many files").
constexpr uint32_t kDefaultDbFiles = 2;
// The least staged-bytes cap the store derives by itself (StoreOptions::stage_max_bytes).
constexpr uint64_t kMinStageMaxBytes = 4 << 20;

// The directory's LOCK file, held with flock for the Store's lifetime, so two stores (in
// one process or two) never write the same files. The kernel drops it when the process
// dies, so a crash leaves nothing to clean up.
class DirLock {
 public:
  DirLock() = default;
  explicit DirLock(int fd) : fd_(fd) {}
  DirLock(DirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirLock& operator=(DirLock&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

Status validate(const StoreOptions& o) {
  if (o.dir.empty()) return Status::invalid_argument("store directory is empty");
  if (!std::has_single_bit(o.partitions) || o.partitions > kMaxPartitions) {
    return Status::invalid_argument("partitions is " + std::to_string(o.partitions) +
                                    "; it must be a power of two from 1 to 65536");
  }
  if (o.db_files > kMaxDbFiles || o.db_files > o.partitions) {
    return Status::invalid_argument("db_files is " + std::to_string(o.db_files) +
                                    "; it must be at most 16 and at most partitions");
  }
  if (o.group_commit_max == 0 || o.write_queue_max == 0 || o.read_connections_max == 0) {
    return Status::invalid_argument(
        "group_commit_max, write_queue_max and read_connections_max must be at least 1");
  }
  if (o.tombstone_grace_ms < 0) {
    return Status::invalid_argument("tombstone_grace_ms is negative");
  }
  if (o.checkpoint_pages < 1 || o.checkpoint_pages > (1 << 24)) {
    return Status::invalid_argument("checkpoint_pages is " + std::to_string(o.checkpoint_pages) +
                                    "; it must be from 1 to 16777216");
  }
  return Status();
}

// The cap on a file's staged bytes (StoreOptions::stage_max_bytes). Derived as 4 x
// stage_apply_bytes: a batch is due at 1 x, so a file whose batches apply stays far below
// it even when large commit groups land between batches, and only a file whose batches
// keep failing gets there, after staging three thresholds' worth on top of the one it
// could not apply. The floor matters when stage_apply_bytes is 0 or tiny (apply after
// every group): there 4 x would refuse writes at the first failed batch.
uint64_t stage_max_bytes(const StoreOptions& o) {
  if (o.stage_max_bytes != 0) return o.stage_max_bytes;
  const uint64_t derived = o.stage_apply_bytes > std::numeric_limits<uint64_t>::max() / 4
                               ? std::numeric_limits<uint64_t>::max()
                               : o.stage_apply_bytes * 4;
  return std::max(derived, kMinStageMaxBytes);
}

Status check_record(const Record& record) {
  if (record.version.is_zero()) {
    return Status::invalid_argument("record version is zero; every write has one");
  }
  if (record.key.size() > kMaxKeyBytes) {
    return Status::invalid_argument("key is " + std::to_string(record.key.size()) +
                                    " bytes; the store takes at most " +
                                    std::to_string(kMaxKeyBytes));
  }
  if (record.value.size() > kMaxValueBytes) {
    return Status::invalid_argument("value is " + std::to_string(record.value.size()) +
                                    " bytes; the store takes at most " +
                                    std::to_string(kMaxValueBytes));
  }
  return Status();
}

Result<DirLock> lock_dir(const Layout& layout) {
  std::error_code ec;
  std::filesystem::create_directories(layout.dir, ec);
  if (ec) {
    return Status::io_error("cannot create data directory " + layout.dir.string() + ": " +
                            ec.message());
  }
  int fd = ::open(layout.lock_path().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::io_error("cannot write in data directory " + layout.dir.string() + ": " +
                            std::strerror(errno));
  }
  DirLock lock(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::failed_precondition("data directory " + layout.dir.string() +
                                         " is in use by another store (its LOCK is held)");
    }
    return Status::io_error("cannot lock " + layout.lock_path().string() + ": " +
                            std::strerror(errno));
  }
  return lock;
}

// A data file's write connection (the applier's). Always synchronous=FULL: stage rows are
// deleted once their batch committed here, so the batch must outlive a power cut whenever
// the deletion does; it costs one fsync per batch of thousands of writes.
Result<sql::Db> open_data_db(const Layout& layout, uint32_t file, bool create,
                             const StoreOptions& options) {
  Result<sql::Db> db = sql::Db::open(layout.file_path(file), create);
  if (!db.ok()) {
    if (!create && db.status().code() == Code::kIoError) {
      return Status::corruption("data directory " + layout.dir.string() + " is missing " +
                                layout.file_path(file).filename().string() + " (" +
                                db.status().message() + ")");
    }
    return db.status();
  }
  EDGEKV_RETURN_IF_ERROR(
      configure_connection(*db, ConnectionRole::kWriter, SyncMode::kFull, options.max_db_bytes));
  return db;
}

// A stage file's write connection (the writer's): commit groups sync as `sync` says.
// Created when missing: a directory of format 2 or older has none yet.
Result<sql::Db> open_stage_db(const Layout& layout, uint32_t file, const StoreOptions& options) {
  Result<sql::Db> db = sql::Db::open(layout.stage_path(file), /*create=*/true);
  if (!db.ok()) return db.status();
  // Rows come and go in bursts: a new stage file keeps what it needs to give free pages
  // back (Writer::shrink_stage_file). Possible only before WAL mode and the first table.
  Result<std::string> pages = db->query_text("PRAGMA page_count", "read stage file size");
  if (!pages.ok()) return pages.status();
  if (*pages == "0") {
    EDGEKV_RETURN_IF_ERROR(db->exec("PRAGMA auto_vacuum=INCREMENTAL", "set auto_vacuum"));
  }
  EDGEKV_RETURN_IF_ERROR(
      configure_connection(*db, ConnectionRole::kWriter, options.sync, options.max_db_bytes));
  return db;
}

// Checks a file's meta against the directory's layout (from file 0).
Status check_meta(const Layout& layout, const std::filesystem::path& path, uint32_t file,
                  const FileMeta& meta) {
  if (meta.format_version != kFormatVersion || meta.partitions != layout.partitions ||
      meta.db_files != layout.db_files || meta.file_index != file) {
    return Status::corruption(path.string() + " does not belong with the rest of data directory " +
                              layout.dir.string() + " (its meta says format " +
                              std::to_string(meta.format_version) +
                              ", partitions=" + std::to_string(meta.partitions) +
                              ", db_files=" + std::to_string(meta.db_files) + ", file " +
                              std::to_string(meta.file_index) + ")");
  }
  return Status();
}

// The layout recorded by an existing directory, refused when the options disagree.
Result<Layout> layout_of_existing(const StoreOptions& options, const FileMeta& meta) {
  const std::string dir = options.dir.string();
  if (meta.format_version > kFormatVersion) {
    return Status::failed_precondition(
        "data directory " + dir + " has format version " + std::to_string(meta.format_version) +
        "; this build reads format version " + std::to_string(kFormatVersion));
  }
  if (meta.format_version < 1 || meta.file_index != 0 || meta.db_files == 0 ||
      meta.db_files > meta.partitions || !std::has_single_bit(meta.partitions)) {
    return Status::corruption("data directory " + dir + " has an invalid meta table");
  }
  if (meta.partitions != options.partitions) {
    return Status::failed_precondition(
        "data directory " + dir +
        " was created with partitions=" + std::to_string(meta.partitions) +
        "; refusing to open it with partitions=" + std::to_string(options.partitions));
  }
  if (options.db_files != 0 && meta.db_files != options.db_files) {
    return Status::failed_precondition(
        "data directory " + dir + " was created with db_files=" + std::to_string(meta.db_files) +
        "; refusing to open it with db_files=" + std::to_string(options.db_files));
  }
  return Layout{options.dir, meta.partitions, meta.db_files};
}

// One file's connections as open_files leaves them.
struct FileDbs {
  sql::Db data;
  sql::Db stage;
};

// Opens (creating it when new, with its schema) file `f`'s stage file and brings the data
// file `data` (of an existing directory) to the current format.
Status open_stage(const Layout& layout, uint32_t f, const StoreOptions& options, sql::Db& data,
                  std::optional<FileMeta> data_meta, FileDbs* out) {
  Result<sql::Db> stage = open_stage_db(layout, f, options);
  if (!stage.ok()) return stage.status();
  Result<std::optional<FileMeta>> meta = read_meta(*stage);
  if (!meta.ok()) return meta.status();
  if (meta->has_value()) {
    // Only after file 0 said the directory's format is one this build reads.
    EDGEKV_RETURN_IF_ERROR(migrate_stage(*stage, &**meta));
    EDGEKV_RETURN_IF_ERROR(check_meta(layout, layout.stage_path(f), f, **meta));
  } else {
    EDGEKV_RETURN_IF_ERROR(create_stage_schema(*stage, layout, f));
  }
  if (data_meta.has_value()) {
    EDGEKV_RETURN_IF_ERROR(migrate(data, *stage, &*data_meta));
    EDGEKV_RETURN_IF_ERROR(check_meta(layout, layout.file_path(f), f, *data_meta));
  }
  out->stage = std::move(*stage);
  return Status();
}

// Opens every database file of the directory, creating the missing ones when the
// directory is new. Data file 0 is created last: its meta table marks the directory
// complete, so a crash while creating leaves a directory that the next open finishes.
// Stage files are created before their data files are migrated or created.
Result<std::vector<FileDbs>> open_files(const StoreOptions& options, Layout* layout) {
  layout->dir = options.dir;
  Result<sql::Db> db0 = open_data_db(*layout, 0, /*create=*/true, options);
  if (!db0.ok()) return db0.status();
  Result<std::optional<FileMeta>> meta0 = read_meta(*db0);
  if (!meta0.ok()) return meta0.status();

  const bool created = meta0->has_value();
  if (created) {
    Result<Layout> existing = layout_of_existing(options, **meta0);
    if (!existing.ok()) return existing.status();
    *layout = *existing;
  } else {
    layout->partitions = options.partitions;
    layout->db_files = options.db_files != 0
                           ? options.db_files
                           : std::min<uint32_t>(kDefaultDbFiles, options.partitions);
  }

  std::vector<FileDbs> dbs(layout->db_files);
  for (uint32_t f = layout->db_files - 1; f >= 1; --f) {
    Result<sql::Db> db = open_data_db(*layout, f, /*create=*/!created, options);
    if (!db.ok()) return db.status();
    Result<std::optional<FileMeta>> meta = read_meta(*db);
    if (!meta.ok()) return meta.status();
    if (!meta->has_value() && created) {
      return Status::corruption("data directory " + layout->dir.string() + " has an empty " +
                                layout->file_path(f).filename().string());
    }
    // Only after file 0 said the directory's format is one this build reads.
    EDGEKV_RETURN_IF_ERROR(open_stage(*layout, f, options, *db, *meta, &dbs[f]));
    if (!meta->has_value()) EDGEKV_RETURN_IF_ERROR(create_schema(*db, *layout, f));
    dbs[f].data = std::move(*db);
  }
  // File 0 last, so a directory whose file 0 is migrated has every file migrated.
  EDGEKV_RETURN_IF_ERROR(open_stage(*layout, 0, options, *db0, *meta0, &dbs[0]));
  if (!created) EDGEKV_RETURN_IF_ERROR(create_schema(*db0, *layout, 0));
  dbs[0].data = std::move(*db0);
  return dbs;
}

uint64_t file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  uintmax_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(size);
}

class StoreImpl final : public Store {
 public:
  StoreImpl(std::unique_ptr<EngineState> state, DirLock lock)
      : state_(std::move(state)), lock_(std::move(lock)), readers_(*state_) {}
  ~StoreImpl() override { close(); }

  Status start(std::vector<FileDbs> dbs) {
    for (uint32_t f = 0; f < dbs.size(); ++f) {
      Result<std::unique_ptr<Applier>> applier = Applier::open(*state_, f, std::move(dbs[f].data));
      if (!applier.ok()) return applier.status();
      // The writer's last-write-wins reads go through a reader connection of its own.
      Result<sql::Db> read = sql::Db::open(state_->layout.file_path(f), /*create=*/false);
      if (!read.ok()) return read.status();
      EDGEKV_RETURN_IF_ERROR(
          configure_connection(*read, ConnectionRole::kReader, state_->options.sync, 0));
      // It looks up keys all over the file, as the writer's connection did: the same cache.
      EDGEKV_RETURN_IF_ERROR(read->exec("PRAGMA cache_size=-16384", "size lookup cache"));
      Result<std::unique_ptr<Writer>> writer =
          Writer::open(*state_, f, std::move(dbs[f].stage), std::move(*read), std::move(*applier));
      if (!writer.ok()) return writer.status();
      writers_.push_back(std::move(*writer));
    }
    for (size_t f = 0; f + 1 < writers_.size(); ++f) writers_[f]->set_next(writers_[f + 1].get());
    for (auto& writer : writers_) writer->start();
    DiskGuard& disk = state_->disk;
    disk.maintain(/*now_please=*/true);
    if (disk.reserve_held() < state_->options.disk_reserve_bytes) {
      EDGEKV_LOG(kWarning) << "store: no room for the " << state_->options.disk_reserve_bytes
                           << "-byte reserve in " << state_->layout.dir.string()
                           << " (it needs twice that free); it is taken once there is";
    }
    return Status();
  }

  uint32_t partitions() const override { return state_->layout.partitions; }

  Result<Record> get(std::string_view key, WallTime now) override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->get(key, partition_of(key), now);
  }

  Result<Record> read(std::string_view key, WallTime now) override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->read(key, partition_of(key), now);
  }

  void apply_hint(std::string owner, Record record, WallTime now, ApplyCallback done) override {
    Status bad = check_record(record);
    if (bad.ok() && owner.empty()) bad = Status::invalid_argument("hint owner is empty");
    if (bad.ok() && owner.size() > kMaxKeyBytes) {
      bad = Status::invalid_argument("hint owner is " + std::to_string(owner.size()) +
                                     " bytes; the store takes at most " +
                                     std::to_string(kMaxKeyBytes));
    }
    if (!bad.ok()) {
      if (done) done(std::move(bad));
      return;
    }
    // In the stage file of the key's partition: the writer of the file that holds the key.
    Writer& writer = *writers_[state_->layout.file_of(partition_of(record.key))];
    writer.submit(Writer::HintTask{std::move(owner), std::move(record), now, std::move(done)});
  }

  void remove_hint(std::string owner, std::string key, Version version,
                   ApplyCallback done) override {
    Writer& writer = *writers_[state_->layout.file_of(partition_of(key))];
    Record record;
    record.key = std::move(key);
    record.version = version;
    writer.submit(
        Writer::HintTask{std::move(owner), std::move(record), WallTime{0}, std::move(done), true});
  }

  Result<std::vector<Record>> read_hints(std::string_view owner, size_t max) override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->read_hints(owner, max);
  }

  Result<std::vector<Record>> read_hints_after(std::string_view owner, Version after, size_t max,
                                               uint64_t max_bytes) override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->read_hints_after(owner, after, max, max_bytes);
  }

  Result<std::vector<HintOwnerSummary>> hint_owners() override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->hint_owners();
  }

  Result<Record> read_hint(std::string_view key, WallTime now) override {
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->read_hint(key, partition_of(key), now);
  }

  void apply(Record record, WallTime now, ApplyCallback done) override {
    submit(std::move(record), now, std::move(done), /*relayed=*/false);
  }

  void apply_relayed(Record record, WallTime now, ApplyCallback done) override {
    submit(std::move(record), now, std::move(done), /*relayed=*/true);
  }

  void submit(Record record, WallTime now, ApplyCallback done, bool relayed) {
    if (Status bad = check_record(record); !bad.ok()) {
      if (done) done(std::move(bad));
      return;
    }
    const uint32_t partition = partition_of(record.key);
    Writer& writer = *writers_[state_->layout.file_of(partition)];
    writer.submit(Writer::ApplyTask{std::move(record), now, partition, std::move(done), relayed});
  }

  void sweep(WallTime now, size_t max_rows, SweepCallback done) override {
    auto job = std::make_shared<SweepJob>();
    job->now = now;
    job->expire_left = job->purge_left = job->trim_left = max_rows;
    job->done = std::move(done);
    writers_.front()->submit(Writer::SweepTask{std::move(job)});
  }

  void drop_partition(uint32_t partition, WallTime now, DropCallback done) override {
    if (partition >= partitions()) {
      if (done) {
        done(Status::invalid_argument(
            "partition " + std::to_string(partition) +
            " is out of range (partitions=" + std::to_string(partitions()) + ")"));
      }
      return;
    }
    Writer& writer = *writers_[state_->layout.file_of(partition)];
    writer.submit(Writer::DropTask{partition, now, std::move(done)});
  }

  uint64_t drops(uint32_t partition) const override {
    if (partition >= state_->layout.partitions) return 0;
    return state_->partitions[partition].drops.load();
  }

  Result<std::vector<ChangeEvent>> read_changes(uint32_t partition, uint64_t from_seq,
                                                size_t max) override {
    if (partition >= partitions()) {
      return Status::invalid_argument(
          "partition " + std::to_string(partition) +
          " is out of range (partitions=" + std::to_string(partitions()) + ")");
    }
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->read_changes(partition, from_seq, max);
  }

  uint64_t last_seq(uint32_t partition) override {
    if (partition >= partitions()) return 0;
    return state_->partitions[partition].last_seq.load();
  }

  void set_purge_horizon(uint32_t partition, PurgeHorizon horizon) override {
    if (state_->options.tombstone_purge != TombstonePurge::kByHorizon) return;
    if (partition >= partitions()) return;
    PartitionState& ps = state_->partitions[partition];
    raise_to(ps.horizon_hlc, horizon.hlc_below);
    raise_to(ps.horizon_seq, horizon.seq_through);
  }

  PurgeHorizon purge_horizon(uint32_t partition) const override {
    if (partition >= state_->layout.partitions) return PurgeHorizon{};
    const PartitionState& ps = state_->partitions[partition];
    return PurgeHorizon{ps.horizon_hlc.load(), ps.horizon_seq.load()};
  }

  Result<PartitionDigest> digest(uint32_t partition) override {
    EDGEKV_RETURN_IF_ERROR(check_partition(partition));
    FileDigests& digests = *state_->digests[state_->layout.file_of(partition)];
    const uint32_t slot = state_->layout.slot_of(partition);
    auto kept = [&]() -> std::optional<DigestLeaves> {
      std::lock_guard lock(digests.mu);
      const auto& d = digests.by_slot[slot];
      if (d == nullptr || !d->built) return std::nullopt;
      return d->leaves;
    };
    if (std::optional<DigestLeaves> leaves = kept()) return leaves->to_digest(partition);
    // The first call since open: one scan, one builder per file at a time.
    std::lock_guard building(digests.build_mu);
    if (std::optional<DigestLeaves> leaves = kept()) return leaves->to_digest(partition);
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    auto scan = std::make_unique<DigestLeaves>();
    Status scanned = (*lease)->scan_digest(partition, scan.get());
    std::lock_guard lock(digests.mu);
    auto& d = digests.by_slot[slot];
    if (!scanned.ok()) {
      d.reset();  // asked for again, scanned again
      return scanned;
    }
    d->leaves.merge(*scan);
    d->built = true;
    return d->leaves.to_digest(partition);
  }

  Result<std::vector<DigestEntry>> digest_entries(uint32_t partition,
                                                  const std::vector<uint32_t>& leaves,
                                                  size_t max) override {
    EDGEKV_RETURN_IF_ERROR(check_partition(partition));
    Result<std::vector<uint32_t>> wanted = digest_leaf_set(leaves);
    if (!wanted.ok()) return wanted.status();
    Result<ReaderPool::Lease> lease = readers_.acquire();
    if (!lease.ok()) return lease.status();
    return (*lease)->digest_entries(partition, *wanted, max);
  }

  StoreStats stats(WallTime now) override {
    StoreStats s;
    const Counters& c = state_->counters;
    s.puts_applied = c.puts_applied.load(std::memory_order_relaxed);
    s.deletes_applied = c.deletes_applied.load(std::memory_order_relaxed);
    s.writes_ignored = c.writes_ignored.load(std::memory_order_relaxed);
    s.writes_below_horizon = c.writes_below_horizon.load(std::memory_order_relaxed);
    s.expired = c.expired.load(std::memory_order_relaxed);
    s.tombstones_purged = c.tombstones_purged.load(std::memory_order_relaxed);
    s.commit_groups = c.commit_groups.load(std::memory_order_relaxed);
    s.group_writes = c.group_writes.load(std::memory_order_relaxed);
    s.apply_batches = c.apply_batches.load(std::memory_order_relaxed);
    s.apply_failures = c.apply_failures.load(std::memory_order_relaxed);
    s.checkpoints = c.checkpoints.load(std::memory_order_relaxed);
    for (const auto& staged : state_->staged) s.staged += staged->size();
    s.disk_full = state_->disk.full();
    s.disk_full_events = state_->disk.full_events();
    s.disk_reserve_bytes = state_->disk.reserve_held();
    s.hints = state_->hints.load();
    s.hint_bytes = state_->hint_bytes.load();

    int64_t live = 0;
    for (uint32_t p = 0; p < partitions(); ++p) live += state_->partitions[p].live_rows.load();
    // No batch of staged writes lands while the tables are counted (staging.h).
    std::vector<std::shared_lock<std::shared_mutex>> no_batches;
    for (const auto& staged : state_->staged) no_batches.push_back(staged->lock_for_counts());
    // Rows already expired but not yet swept are not live; rows expiring later are the
    // keys with a TTL. Counted through the expiry index: as many entries as keys with a TTL.
    if (live > 0) {
      Result<ReaderPool::Lease> lease = readers_.acquire();
      for (uint32_t p = 0; lease.ok() && p < partitions(); ++p) {
        Result<ExpiryCounts> counts = (*lease)->count_expiry(p, now);
        if (!counts.ok()) {
          EDGEKV_LOG(kWarning) << "store: stats: " << counts.status().to_string();
          break;
        }
        live -= static_cast<int64_t>(counts->expired);
        s.keys_with_expiry += counts->expiring;
      }
    }
    // Staged writes are not in the expiry indexes yet: each key's newest one stands in for
    // its row.
    for (const auto& staged : state_->staged) {
      if (staged->size() == 0) continue;
      ExpiryAdjustment adjust = staged->expiry_adjustment(now);
      live -= adjust.expired;
      s.keys_with_expiry = static_cast<uint64_t>(
          std::max<int64_t>(0, static_cast<int64_t>(s.keys_with_expiry) + adjust.expiring));
    }
    s.keys = live > 0 ? static_cast<uint64_t>(live) : 0;

    for (uint32_t f = 0; f < state_->layout.db_files; ++f) {
      for (const std::filesystem::path& db :
           {state_->layout.file_path(f), state_->layout.stage_path(f)}) {
        s.bytes_on_disk += file_bytes(db) + file_bytes(db.string() + "-wal");
      }
    }
    return s;
  }

  void close() override {
    std::lock_guard lock(close_mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& writer : writers_) writer->stop_accepting();
    // In file order: a sweep still travelling from file to file finds the next writer up.
    for (auto& writer : writers_) writer->drain_and_join();
    readers_.close();
    // Closing the last connection checkpoints the WAL into the database and removes it.
    for (auto& writer : writers_) writer->close_connection();
    lock_ = DirLock();
    EDGEKV_LOG(kInfo) << "store: closed " << state_->layout.dir.string();
  }

 private:
  Status check_partition(uint32_t partition) {
    if (partition >= partitions()) {
      return Status::invalid_argument(
          "partition " + std::to_string(partition) +
          " is out of range (partitions=" + std::to_string(partitions()) + ")");
    }
    std::lock_guard lock(close_mu_);
    if (closed_) return Status::unavailable("store " + state_->layout.dir.string() + " is closed");
    return Status();
  }

  std::unique_ptr<EngineState> state_;
  DirLock lock_;
  ReaderPool readers_;
  std::vector<std::unique_ptr<Writer>> writers_;  // by file; kept after close to refuse
  std::mutex close_mu_;
  bool closed_ = false;  // guarded by close_mu_
};

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options) {
  EDGEKV_RETURN_IF_ERROR(validate(options));
  Layout layout;
  layout.dir = options.dir;
  Result<DirLock> lock = lock_dir(layout);
  if (!lock.ok()) return lock.status();
  // The reserve is given back first, so that recovering what a full disk left staged has
  // its room; it is taken again once the writers run, if there is room (disk_guard.h).
  DiskGuard(layout.dir, 0, 0).release_reserve();
  Result<std::vector<FileDbs>> dbs = open_files(options, &layout);
  if (!dbs.ok()) return dbs.status();

  StoreOptions resolved = options;
  resolved.dir = layout.dir;
  resolved.partitions = layout.partitions;
  resolved.db_files = layout.db_files;
  resolved.stage_max_bytes = stage_max_bytes(options);
  auto state = std::make_unique<EngineState>(layout, resolved);
  auto store = std::make_unique<StoreImpl>(std::move(state), std::move(*lock));
  EDGEKV_RETURN_IF_ERROR(store->start(std::move(*dbs)));
  // Rows count as live here until a sweep or a read with a real `now` says otherwise.
  StoreStats stats = store->stats(WallTime{0});
  EDGEKV_LOG(kInfo) << "store: opened " << layout.dir.string()
                    << " (partitions=" << layout.partitions << ", db_files=" << layout.db_files
                    << ", format " << kFormatVersion << ", " << stats.keys << " keys)";
  return std::unique_ptr<Store>(std::move(store));
}

uint32_t Store::partition_of(std::string_view key) const {
  return edgekv::partition_of(key, partitions());
}

Result<std::vector<Record>> Store::read_hints_after(std::string_view, Version, size_t, uint64_t) {
  return Status::failed_precondition("this store keeps no hints");
}

Result<std::vector<HintOwnerSummary>> Store::hint_owners() {
  return Status::failed_precondition("this store keeps no hints");
}

void Store::remove_hint(std::string, std::string, Version, ApplyCallback done) {
  if (done) done(Status::failed_precondition("this store keeps no hints"));
}

void Store::apply_relayed(Record record, WallTime now, ApplyCallback done) {
  apply(std::move(record), now, std::move(done));
}

void Store::set_purge_horizon(uint32_t, PurgeHorizon) {}

PurgeHorizon Store::purge_horizon(uint32_t) const { return PurgeHorizon{}; }

void Store::drop_partition(uint32_t, WallTime, DropCallback done) {
  if (done) done(Status::failed_precondition("this store keeps no partitions to drop"));
}

uint64_t Store::drops(uint32_t) const { return 0; }

Result<PartitionDigest> Store::digest(uint32_t) {
  return Status::failed_precondition("this store keeps no digests");
}

Result<std::vector<DigestEntry>> Store::digest_entries(uint32_t, const std::vector<uint32_t>&,
                                                       size_t) {
  return Status::failed_precondition("this store keeps no digests");
}

Result<ApplyResult> Store::apply_sync(Record record, WallTime now) {
  std::promise<Result<ApplyResult>> promise;
  std::future<Result<ApplyResult>> future = promise.get_future();
  apply(std::move(record), now,
        [&promise](Result<ApplyResult> result) { promise.set_value(std::move(result)); });
  WakeBatch::wake_deferred();  // waiting for a writer this thread has not woken yet
  return future.get();
}

Status Store::drop_partition_sync(uint32_t partition, WallTime now) {
  std::promise<Status> promise;
  std::future<Status> future = promise.get_future();
  drop_partition(partition, now,
                 [&promise](Status status) { promise.set_value(std::move(status)); });
  WakeBatch::wake_deferred();
  return future.get();
}

Result<std::vector<ChangeEvent>> Store::sweep_sync(WallTime now, size_t max_rows) {
  std::promise<Result<std::vector<ChangeEvent>>> promise;
  auto future = promise.get_future();
  sweep(now, max_rows, [&promise](Result<std::vector<ChangeEvent>> result) {
    promise.set_value(std::move(result));
  });
  WakeBatch::wake_deferred();
  return future.get();
}

}  // namespace edgekv::store
