// The storage engine: partitions of records in SQLite WAL databases.
//
// What it owns: Q partitions (a power of two, fixed when the data directory is created and
// recorded in it), each a WITHOUT ROWID table keyed by key (created by the partition's first
// write, so a node keeps tables only for partitions it holds), and per partition a change log
// with a gapless, monotonic sequence number. Values above a threshold are stored
// zstd-compressed. Writes are last-write-wins on Version: applying a record whose version
// is not newer than the stored one changes nothing, so replays are idempotent.
//
// Time: the store never reads a clock. Every call that depends on time takes `now`, so TTL
// tests set the time instead of sleeping. Expiry is an absolute WallTime set by whoever
// built the record (the coordinator), so all replicas agree.
//
// Threads: reads (get, read_changes, stats, last_seq, digest, digest_entries) may be called
// from any thread concurrently; each read runs on a connection of its own, lent from a pool
// for the call (at most read_connections_max; readers never wait for the writers). Writes (apply,
// sweep, drop_partition) are queued to the writer thread(s), which stage concurrent writes in one
// transaction (group commit) and then run each write's callback, on the writer thread,
// after its transaction committed (and, with sync=full, was fsync'd). Staged writes are
// applied to their partitions' tables later, in batches, by an applier thread per file
// beside the writer; reads see them either way (store/FORMAT.md, "Staging"). A callback must be
// quick and must not throw: hand the result to another thread rather than doing work in it,
// and never call close(), apply_sync() or sweep_sync() from it (they would wait for the
// thread running the callback). A directory is used by one Store at a time (a LOCK file).
//
// Hints for other replicas (apply_hint) are kept durably beside the partitions, bounded by
// hints_max_bytes.
//
// Anti-entropy digests (digest, digest_entries; the hashing is store/digest.h) are kept in
// memory, a partition's from the first time it is asked for after open: that call builds it
// by one scan of the partition, and from then on every committed change of the partition
// (puts, deletes, expiries, purges, drops; hints are not partition data) updates it as it
// commits. 8 KiB per partition asked for.
//
// On-disk format: store/FORMAT.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/change.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/version.h"
#include "store/digest.h"

namespace edgekv::store {

enum class SyncMode {
  kNormal,  // survives a crash of the process (SQLite synchronous=NORMAL in WAL mode)
  kFull,    // also survives a power cut: each commit group is fsync'd before acks
};

// How sweep() decides that a tombstone may go (StoreOptions::tombstone_purge).
enum class TombstonePurge : uint8_t { kByAge, kByHorizon };

// A partition's purge horizon (TombstonePurge::kByHorizon): a tombstone of the partition
// may be purged once its version's hlc is below `hlc_below` and the change that left it is
// at or below `seq_through` in the partition's change log. The second bound is what the
// replication layer knows other replicas hold (every change up to a seq this node had when
// a comparison with them began); the first keeps the purge on the tombstone index's range
// and is what writes are held to once tombstones went (Store::set_purge_horizon).
struct PurgeHorizon {
  uint64_t hlc_below = 0;
  uint64_t seq_through = 0;
};

struct StoreOptions {
  std::filesystem::path dir;
  uint32_t partitions = 64;  // a power of two, 1..65536; must match an existing directory
  SyncMode sync = SyncMode::kNormal;
  size_t compress_threshold_bytes = 1024;  // values longer than this are zstd-compressed
  int compress_level = 1;                  // zstd level: fast, the store is write-heavy
  // Most writes one commit group holds. Bounds the latency a group adds to its first write.
  size_t group_commit_max = 1024;
  // Most writes waiting for the writer before apply() answers OVERLOADED. Bounds memory.
  size_t write_queue_max = 65536;
  // Change-log entries kept per partition; older ones are trimmed by sweep(). A subscriber
  // further behind than this must re-read the keys it cares about.
  uint64_t changelog_keep = 100000;
  // Which tombstones sweep() purges (TombstonePurge). kByAge: those older than
  // tombstone_grace_ms by their version's wall-clock part. kByHorizon: those below the
  // partition's purge horizon (set_purge_horizon), which whoever knows the other replicas
  // sets; none until it does.
  TombstonePurge tombstone_purge = TombstonePurge::kByAge;
  int64_t tombstone_grace_ms = 24 * 3600 * 1000;
  // Most read connections (sets: one connection per database file) open at once; a read
  // beyond that waits for one to be free. Bounds file handles and page-cache memory.
  size_t read_connections_max = 32;
  // Database files holding the partitions, each with its own writer thread; fixed when the
  // directory is created (store/FORMAT.md says why the default is what it is). 0: the
  // directory's recorded value, or the default for a new directory; otherwise 1..16 and at
  // most `partitions`, and it must match an existing directory.
  uint32_t db_files = 0;
  // Staging (store/FORMAT.md, "Staging"): a commit group is appended to its file's stage
  // file and acknowledged; staged writes are applied to their partitions' tables and
  // change logs later, in batches, by the file's applier thread. A file hands its oldest
  // `stage_apply_batch` staged writes (more when the applier fell behind) to the applier
  // whenever it holds at least `stage_apply_at` of them or `stage_apply_bytes` of them in
  // memory (0: after every commit group), one batch at a time. Larger batches share more
  // table pages between writes. Staged writes are also applied before a sweep purges and
  // at close.
  size_t stage_apply_at = 8192;
  size_t stage_apply_batch = 4096;
  uint64_t stage_apply_bytes = 32 << 20;
  // Most bytes of staged writes a file holds in memory while applying them fails (an
  // SQLite error): at it, apply() answers OVERLOADED for that file's writes, at once, until
  // a batch applies again; the writer keeps retrying. A file whose batches apply never
  // refuses: at the cap its writer waits for a batch before it takes a new group. 0: 4 x
  // stage_apply_bytes, at least 4 MiB (the default: 128 MiB). Bytes and not a count,
  // because memory is what runs out, and each write's bytes include its fixed overhead, so
  // the count is bounded too.
  uint64_t stage_max_bytes = 0;
  // Caps each database file's size, data and stage files alike (0: no cap). A commit group
  // that would grow a stage file past it fails with IO_ERROR, as on a full disk; a batch
  // that would grow a data file past it fails and stays staged (stage_max_bytes).
  uint64_t max_db_bytes = 0;
  // A database file's WAL is copied back into it by a thread of its own once it holds this
  // many pages (store/checkpointer.h); the writer does it inline, as SQLite would, only at
  // four times as many. Larger: fewer copies of pages rewritten often, a longer WAL to
  // replay after a crash.
  int checkpoint_pages = 8192;
  // Keys per database file whose row state (version, expiry, whether there is a row) the
  // writer remembers after their last write was applied, so that the next write of such a
  // key skips reading its row for last-write-wins (0: none). Each costs about 100 bytes
  // plus its key; when full, a random one makes room.
  size_t row_cache_entries = 65536;
  // drop_partition of a partition with at most this many live rows deletes its rows; of a
  // larger one, drops its tables and makes them again (store/FORMAT.md, "Dropping a
  // partition"): deleting costs a few microseconds per row, dropping a few milliseconds per
  // partition plus a schema reload on every other connection of the file.
  uint64_t drop_by_delete_rows = 16384;
  // Bytes of disk the store holds in a file of its own (`reserve` in the directory) and
  // gives back when the disk fills, so that deletes, expiry, applying staged writes and
  // checkpoints still have room while writes that add data are refused (disk_guard.h,
  // store/FORMAT.md "A full disk"). 0: no reserve; deletes then work on a full disk only
  // as far as SQLite finds free pages.
  uint64_t disk_reserve_bytes = 0;
  // Most bytes of hints (keys, values and their fixed overhead) the store keeps; apply_hint
  // answers OVERLOADED beyond it, so a long outage of one replica cannot fill the disk of
  // the nodes standing in for it (anti-entropy repairs what hints could not hold).
  uint64_t hints_max_bytes = uint64_t{1} << 30;
};

// Committed changes (common/change.h); read_changes returns superseded puts without value.
using edgekv::ChangeEvent;
using edgekv::ChangeOp;

// A key's stored state. A tombstone is a delete: it keeps the version so that an older
// write arriving later does not resurrect the key.
//
// A key that expired leaves a tombstone too (format 5): it keeps the version and the expiry
// it had (`tombstone` true, `expiry` non-zero), so that a late copy of an older version
// does not bring the key back either. Delete tombstones have expiry 0.
struct Record {
  std::string key;
  std::string value;  // uncompressed; empty for tombstones
  Version version;
  WallTime expiry;  // 0: never expires; for a tombstone, when the key expired (0: deleted)
  bool tombstone = false;

  // A tombstone left by expiry rather than by a delete.
  bool expired_tombstone() const { return tombstone && expiry.ms != 0; }
};

struct ApplyResult {
  bool applied = false;  // false: the stored version was newer or equal; nothing changed
  ChangeEvent event;     // the committed change when applied
  Version current;       // the stored version after the call (winner)
};

struct StoreStats {
  // Live rows, tombstones of both kinds and not-yet-swept expired rows excluded ("expired" as of
  // the latest `now` any call handed the store, since the store never reads a clock).
  uint64_t keys = 0;
  uint64_t keys_with_expiry = 0;  // of those, the ones with a TTL
  uint64_t puts_applied = 0;
  uint64_t deletes_applied = 0;
  uint64_t writes_ignored = 0;  // not newer than the stored version, or below the purge floor
  // Of those, relayed writes (apply_relayed) to a key with no row whose version is below
  // the partition's purge horizon: a purged tombstone may have superseded them.
  uint64_t writes_below_horizon = 0;
  uint64_t expired = 0;
  uint64_t tombstones_purged = 0;
  uint64_t commit_groups = 0;
  uint64_t group_writes = 0;    // writes committed in those groups (avg = ratio)
  uint64_t staged = 0;          // acknowledged writes not yet applied to their partitions
  uint64_t apply_batches = 0;   // batches of staged writes applied
  uint64_t apply_failures = 0;  // batches that failed to apply (and stayed staged)
  uint64_t checkpoints = 0;     // WAL checkpoints run off the commit path (checkpointer.h)
  uint64_t bytes_on_disk = 0;
  bool disk_full = false;           // writes that add data are refused (disk_guard.h)
  uint64_t disk_full_events = 0;    // times the disk was found full since open
  uint64_t disk_reserve_bytes = 0;  // bytes the reserve file holds now
  uint64_t hints = 0;               // hints held for other replicas (apply_hint)
  uint64_t hint_bytes = 0;          // their size, as hints_max_bytes counts it
};

// What a store holds as hints for one owner (Store::hint_owners).
struct HintOwnerSummary {
  std::string owner;
  uint64_t hints = 0;
  uint64_t bytes = 0;  // as hints_max_bytes counts them
  Version oldest;      // the oldest hint's version (its wall-clock part dates it)
};

// Writes a thread submits while a WakeBatch it created is alive are queued at once but
// wake their writers only when the outermost batch on that thread ends. A front-end that
// makes many writes per turn of its event loop (one per client with a request waiting)
// opens one batch per turn: each writer then wakes once and commits that turn's writes as
// one group, instead of waking for the first and committing the rest in further, smaller
// groups, each with its own commit and thread switch. Stores must outlive the batches that
// wrote to them. A batch changes when writers wake, never what is written; apply_sync()
// and sweep_sync() wake what was deferred before they wait.
class WakeBatch {
 public:
  WakeBatch();
  ~WakeBatch();
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;
  // Wakes the writers this thread's open batches deferred, now.
  static void wake_deferred();
};

class Store {
 public:
  using ApplyCallback = std::function<void(Result<ApplyResult>)>;
  using SweepCallback = std::function<void(Result<std::vector<ChangeEvent>>)>;
  using DropCallback = std::function<void(Status)>;

  // Opens (creating if absent) the data directory. Fails with FAILED_PRECONDITION naming
  // both values when the directory was created with another partition count, IO_ERROR
  // naming the path when it cannot be created or written.
  static Result<std::unique_ptr<Store>> open(const StoreOptions& options);

  virtual ~Store() = default;

  virtual uint32_t partitions() const = 0;
  uint32_t partition_of(std::string_view key) const;

  // The live record for `key` at `now`: NOT_FOUND when absent, deleted or expired
  // (expiry <= now), even if the sweeper has not removed it yet.
  virtual Result<Record> get(std::string_view key, WallTime now) = 0;

  // Queues a write (put or tombstone). LWW: applied only if record.version is greater
  // than the stored version (a tombstone of either kind included). A put already expired
  // at `now` is stored as the expiry tombstone it leaves (logged as kExpire, counted in
  // `expired`), so that older copies arriving later stay out. `done` runs
  // after the commit group holding it committed. Answers OVERLOADED (through `done`, at
  // once) when write_queue_max writes are waiting or when the key's file holds
  // stage_max_bytes of staged writes that fail to apply, UNAVAILABLE once close() began.
  // While the disk is full a put is refused with IO_ERROR ("disk full: ..."), but for
  // probes; a tombstone is not (disk_guard.h).
  // INVALID_ARGUMENT (at once) for a zero version (no write has one), a key over 1 MiB or
  // a value over 256 MiB (sanity bounds far above the daemon's limits). A tombstone is
  // stored without value, with the expiry it carries (0: a delete; otherwise an expiry
  // tombstone copied from another replica, logged as kExpire): it hides the key until
  // purged.
  virtual void apply(Record record, WallTime now, ApplyCallback done) = 0;
  // As apply(), for a write that comes late from outside the key's home replicas (a hint
  // handed over by a fallback): under TombstonePurge::kByHorizon, when its key has no row
  // and its version's hlc is below the partition's purge horizon, it is ignored (answered
  // not applied, counted in writes_below_horizon), since a tombstone purged meanwhile may
  // have superseded it and applying it would bring a deleted key back. Writes copied from
  // another home replica (repair) need no such check: a home replica never holds what a
  // tombstone every home replica held superseded. The default is apply().
  virtual void apply_relayed(Record record, WallTime now, ApplyCallback done);

  // The key's stored state, tombstones included, for replication (read repair, LWW between
  // replicas): NOT_FOUND only when there is no row (never written, or its tombstone was
  // purged). A live row expired at `now` is reported as the tombstone its expiry leaves:
  // tombstone set, value empty, version and expiry kept.
  virtual Result<Record> read(std::string_view key, WallTime now) = 0;

  // Hints: records a fallback replica keeps for a home replica that was down (sloppy
  // quorum), durably, in a table of their own, apart from the partitions. One hint per
  // (owner, key): a hint replaces an older one (by version) for the same owner and key.
  // `done` runs after the commit, like apply()'s; `applied` is false when the stored hint
  // was newer or equal. OVERLOADED when the store holds hints_max_bytes of hints.
  virtual void apply_hint(std::string owner, Record record, WallTime now, ApplyCallback done) = 0;
  // The hints held for `owner`, oldest first, at most `max`.
  virtual Result<std::vector<Record>> read_hints(std::string_view owner, size_t max) = 0;
  // A page of the hints held for `owner` in version order, for delivery: those with a
  // version after `after` (Version{}: from the first), at most `max` of them, and no more
  // once `max_bytes` of keys and values are taken (at least one, however large). A
  // deliverer pages through an owner's hints with the last version of each page, without
  // waiting for the hints it sent to be removed. Stores that keep no hints answer
  // FAILED_PRECONDITION.
  virtual Result<std::vector<Record>> read_hints_after(std::string_view owner, Version after,
                                                       size_t max, uint64_t max_bytes);
  // Per owner, what the store holds for it (kvcli hints, and the owners a node must
  // deliver to after a restart), in owner order. A scan of the hints: for operators and
  // start-up, not for every request.
  virtual Result<std::vector<HintOwnerSummary>> hint_owners();
  // The newest hint held for `key`, whichever owner it is for (a sloppy read at a fallback);
  // NOT_FOUND when none.
  virtual Result<Record> read_hint(std::string_view key, WallTime now) = 0;
  // Forgets the hint for (owner, key) if it still has `version` (once delivered; a newer
  // hint kept meanwhile stays). `done` runs after the commit; `applied` is whether a hint
  // went, `current` the version held before. Its bytes count no more against
  // hints_max_bytes. Stores that keep no hints answer FAILED_PRECONDITION.
  virtual void remove_hint(std::string owner, std::string key, Version version, ApplyCallback done);

  // Queues one sweep: turns up to `max_rows` rows that expired at `now` (through the
  // expiry index) into expiry tombstones that keep their version and expiry (values
  // freed) and emits kExpire events for them; purges tombstones of both kinds older than the
  // grace period and trims change logs beyond changelog_keep. `done` gets the events.
  // Purging and trimming are each bounded by `max_rows` rows per call too. With several
  // database files the sweep is one transaction per file, visited in turn; if one fails,
  // `done` gets its error, and the files swept before it keep their (logged) kExpire entries.
  virtual void sweep(WallTime now, size_t max_rows, SweepCallback done) = 0;

  // TombstonePurge::kByHorizon: raises the purge horizon of `partition` (each bound only
  // goes up; a lower value is ignored). From then on sweep() purges the partition's
  // tombstones below it, and apply_relayed() ignores a write whose version's hlc is below
  // `hlc_below` to a key that has no row; so do both apply()s for a tombstone (or a put
  // already expired) below it to such a key: the absence stands for it, and taking it
  // again after its purge would log the same delete twice. The hlc bound a purge used is kept in
  // the data files with the purge, so that holds after a restart as well. Does nothing under kByAge
  // or for a partition out of range.
  virtual void set_purge_horizon(uint32_t partition, PurgeHorizon horizon);
  // The horizon in force (after a restart: the hlc bound of the last purge, seq 0).
  virtual PurgeHorizon purge_horizon(uint32_t partition) const;

  // Change-log entries of `partition` with seq >= from_seq, oldest first, at most `max`.
  // A kPut whose key has since been overwritten is returned with an empty value: a later
  // entry for the same key carries the newer state.
  virtual Result<std::vector<ChangeEvent>> read_changes(uint32_t partition, uint64_t from_seq,
                                                        size_t max) = 0;
  virtual uint64_t last_seq(uint32_t partition) = 0;

  // Drops what this node holds of `partition`, for a node that stops being one of its home
  // replicas for good (hand-over): every row of it, live values and tombstones of both
  // kinds, so that a later return as a home replica cannot bring back keys whose deletes
  // the other replicas purged meanwhile. Afterwards the partition reads as one never
  // written: no rows, digest() equal to an empty partition's, no digest_entries, purge
  // horizon PurgeHorizon{} (its persisted purge floor removed). Not a delete: no change
  // event is made, and the change log is kept as it is, so last_seq(partition) never goes
  // back (store/FORMAT.md, "Dropping a partition"). Hints, other partitions and their
  // horizons are left alone.
  //
  // Ordered like a write: writes queued before it are committed first and dropped with
  // the partition; writes queued after it find the partition empty, and a write
  // acknowledged after `done` is kept. `done` runs once the drop committed (durable: one
  // transaction per file, so a crash leaves the partition whole or empty); an error
  // changes nothing. INVALID_ARGUMENT (at once) for a partition out of range, UNAVAILABLE
  // once close() began. Stores that keep no partitions of their own answer
  // FAILED_PRECONDITION. `now` is the caller's time, as for every write.
  virtual void drop_partition(uint32_t partition, WallTime now, DropCallback done);
  // How many drops of `partition` committed since open: a cache in front of the store
  // (daemon/applied.h) forgets the partition's keys when it changes. 0 out of range.
  virtual uint64_t drops(uint32_t partition) const;

  // The anti-entropy digest of `partition` (store/digest.h): its leaves, the number of key
  // states in it (tombstones included) and a root over the leaves. Reflects every change
  // committed before the call (a change committing meanwhile may or may not be in it). The
  // first call for a partition after open scans it (the caller waits for the scan; writes
  // to the partition go on meanwhile); later calls copy what is kept. INVALID_ARGUMENT for
  // a partition out of range; UNAVAILABLE once the store is closed.
  virtual Result<PartitionDigest> digest(uint32_t partition);

  // The entries (store/digest.h) of `partition` in the given leaves: every key state whose
  // digest_leaf is one of `leaves`, tombstones and expired rows included, ordered by leaf
  // then key (bytewise), at most `max` (the first ones in that order; a caller that gets
  // `max` asks again for the rest of the last leaf with fewer leaves). Costs in proportion
  // to the entries in those leaves (and the partition's staged writes), not to the
  // partition. INVALID_ARGUMENT for a partition or a leaf out of range. Stores that keep no
  // digests answer FAILED_PRECONDITION, as for digest().
  virtual Result<std::vector<DigestEntry>> digest_entries(uint32_t partition,
                                                          const std::vector<uint32_t>& leaves,
                                                          size_t max);

  // Counters, and the live key count at `now` (rows expired by then count as gone, swept
  // or not).
  virtual StoreStats stats(WallTime now) = 0;

  // Stops taking writes, commits everything queued (running its callbacks), stops the
  // writer threads and closes the databases. Idempotent; the destructor calls it.
  virtual void close() = 0;

  // Conveniences for tests and tools: apply/sweep and wait for the callback.
  Result<ApplyResult> apply_sync(Record record, WallTime now);
  Result<std::vector<ChangeEvent>> sweep_sync(WallTime now, size_t max_rows);
  Status drop_partition_sync(uint32_t partition, WallTime now);
};

}  // namespace edgekv::store
