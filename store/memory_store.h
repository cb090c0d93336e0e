// An in-memory store::Store for the simulator and for tests: the SQLite store's semantics
// (store.h), format 5 included, without files, threads or clock reads, and with storage
// completions and crashes under the caller's control.
//
// What it owns: the partitions' rows (live records, delete tombstones and expiry
// tombstones), the per-partition change logs with their gapless sequence numbers, the
// hints, and the writes queued but not yet committed.
//
// Completions. apply(), apply_hint(), sweep() and drop_partition() validate their input
// and queue the operation; nothing of it is done inside the call. For each queued operation
// the store hands one commit to the scheduler given at open ("run this later"); the
// simulator runs it as an event after a seeded delay, a test at once or whenever it likes.
// A commit executes every operation queued up to and including its own, oldest first, and
// runs their callbacks in that order: like the SQLite store's commit groups, a commit
// covers the writes queued before it, so writes of one store commit and complete in the
// order they were made, whatever order the scheduler runs commits in. A commit whose
// operations were already committed by a later one, or lost to crash(), does nothing.
//
// Visibility. An operation's effect (last-write-wins against the stored row, its change-log
// seq) is decided when its commit runs, and reads see it from then on: the SQLite store
// makes a commit group's writes visible when the group has committed to its stage file,
// just before their callbacks run (store/FORMAT.md, "Staging"), not when apply() is called,
// so a read never sees a write that a process crash could still take back. The
// refusals decided at once (INVALID_ARGUMENT, OVERLOADED at write_queue_max, UNAVAILABLE)
// call `done` inside the call, as the SQLite store does; a hint refused at hints_max_bytes
// is refused by its commit.
//
// Records (format 5). A put that arrives newer than the stored row but already expired at
// `now` is stored as an expiry tombstone (no value; version and expiry kept), logged as
// kExpire and counted in `expired`. A tombstone that carries an expiry is an expiry
// tombstone as read() reports it (read repair sends those): it is stored and logged the
// same way, and only a tombstone without expiry is a delete. The sweep turns expired rows
// into expiry tombstones; the purge removes tombstones of both kinds by their version's
// time. Hints are stored in the same forms, outside the partitions and the change logs
// (their ApplyResult event has seq 0); a hint's bytes are its owner, key and value plus a
// fixed overhead. StoreStats has no disk here: bytes_on_disk, staged and the disk fields
// stay 0, and commit_groups counts commits that ran an operation.
//
// Crashes. crash(kProcess) is kill -9: queued operations are lost and their callbacks never
// run; everything committed survives. crash(kPowerCut) also loses what the SQLite store
// would with the same options (FORMAT.md, "Sync modes and power cuts"): with SyncMode::kFull
// nothing committed; with kNormal the committed writes no sync covered yet. Here a sync
// covers everything committed when a sweep or a drop commits (each applies everything
// staged to the data files, fsync'd), and the oldest `stage_apply_batch` committed writes whenever
// `stage_apply_at` of them are not yet covered (a batch applied, fsync'd), as well as
// everything at reopen() and close(). The SQLite store may keep more (a checkpoint of a
// stage file syncs it too) and, while a batch is being applied, less. With kNormal the
// store keeps a second copy of its state, the synced one, and the unsynced operations. After
// crash() the store refuses everything with UNAVAILABLE until reopen(), which starts it again from
// the surviving state with counters at zero, as a new process opening the directory would. close()
// commits what is queued (running the callbacks) and refuses from then on; reopen() works
// after it too.
//
// Digests (store.h): a partition's is built by one scan of its rows the first time it is
// asked for after open or reopen(), and then updated by every commit that changes a row
// (a write, an expiry, a purge, a drop), never by the replays onto the synced copy; crash() drops
// them, since what survives may be older. digest_entries reads an index of the rows by
// leaf, so it costs what the leaves hold.
//
// Determinism: no clock reads (time comes in as `now`), no randomness, and ordered
// containers wherever an order shows (sweeps expire soonest expiry first, then by key;
// hints of an owner come in the order they were stored).
//
// Thread-safety: none. One thread (the simulator's) makes every call, and the scheduler
// runs the commits on that thread. A commit may outlive the store: it then does nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace edgekv::store {

class MemoryStore final : public Store {
 public:
  // Hands a commit to whoever decides when storage work completes.
  using Scheduler = std::function<void(std::function<void()>)>;

  enum class CrashKind {
    kProcess,   // the process dies: uncommitted writes are lost
    kPowerCut,  // the machine loses power: with SyncMode::kNormal, unsynced commits too
  };

  // Takes the StoreOptions the SQLite store takes and validates them alike (`dir` is not
  // used); uses partitions, sync, write_queue_max, changelog_keep, tombstone_purge,
  // tombstone_grace_ms, stage_apply_at, stage_apply_batch and hints_max_bytes. INVALID_ARGUMENT for
  // the options the SQLite store refuses, and for a scheduler that is empty.
  static Result<std::unique_ptr<MemoryStore>> open(const StoreOptions& options,
                                                   Scheduler scheduler);

  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  uint32_t partitions() const override;
  Result<Record> get(std::string_view key, WallTime now) override;
  void apply(Record record, WallTime now, ApplyCallback done) override;
  void apply_relayed(Record record, WallTime now, ApplyCallback done) override;
  Result<Record> read(std::string_view key, WallTime now) override;
  void apply_hint(std::string owner, Record record, WallTime now, ApplyCallback done) override;
  Result<std::vector<Record>> read_hints(std::string_view owner, size_t max) override;
  Result<std::vector<Record>> read_hints_after(std::string_view owner, Version after, size_t max,
                                               uint64_t max_bytes) override;
  Result<std::vector<HintOwnerSummary>> hint_owners() override;
  void remove_hint(std::string owner, std::string key, Version version,
                   ApplyCallback done) override;
  Result<Record> read_hint(std::string_view key, WallTime now) override;
  void sweep(WallTime now, size_t max_rows, SweepCallback done) override;
  void drop_partition(uint32_t partition, WallTime now, DropCallback done) override;
  uint64_t drops(uint32_t partition) const override;
  Result<std::vector<ChangeEvent>> read_changes(uint32_t partition, uint64_t from_seq,
                                                size_t max) override;
  uint64_t last_seq(uint32_t partition) override;
  void set_purge_horizon(uint32_t partition, PurgeHorizon horizon) override;
  PurgeHorizon purge_horizon(uint32_t partition) const override;
  Result<PartitionDigest> digest(uint32_t partition) override;
  Result<std::vector<DigestEntry>> digest_entries(uint32_t partition,
                                                  const std::vector<uint32_t>& leaves,
                                                  size_t max) override;
  StoreStats stats(WallTime now) override;
  void close() override;

  // Loses what the crash loses (above); the store is down until reopen().
  void crash(CrashKind kind = CrashKind::kProcess);
  // Brings a crashed or closed store back with what survived; no-op when it is up.
  void reopen();

  // Operations queued and not yet committed.
  size_t pending() const;

 private:
  void submit(Record record, WallTime now, ApplyCallback done, bool relayed);
  struct Core;
  explicit MemoryStore(std::shared_ptr<Core> core);
  // INVALID_ARGUMENT out of range, the down status while crashed or closed.
  Status check_partition(uint32_t partition) const;

  // Shared with the commits handed to the scheduler, which hold it weakly.
  std::shared_ptr<Core> core_;
};

}  // namespace edgekv::store
