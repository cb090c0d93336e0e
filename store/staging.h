// Staged writes: acknowledged, durable in their file's `stage` table, not yet applied to
// their partition's tables. The in-memory half of "stage, then apply in bulk".
//
// Why: applying a write to its partition costs a row update on a random table leaf plus an
// append to the partition's change log, so a commit group of a dozen writes dirties two
// dozen pages, each written to the WAL and later checkpointed. Appending the same writes
// to one staging table dirties one or two pages, whatever the keys. The writer acknowledges
// a write once its group is staged, and later applies the oldest staged writes in large
// transactions, where many share a table leaf, each log's last leaf is written once, and a
// write already overwritten by a newer staged one is only logged, never written to the
// table. Until it is applied, reads and the writer's last-write-wins checks find a write
// here. store/FORMAT.md ("Staging") has the rules and the figures.
//
// Owns: one file's staged writes, oldest first, an index of each key's newest one and, per
// partition, its staged writes in sequence order.
// Thread-safety: only the file's writer thread adds and removes (taking the mutex); readers
// call the const lookups from any thread (they take the mutex). The writer's own lookups
// (newest, oldest) need no lock, since it is the only thread that changes anything.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/change.h"
#include "common/clock.h"
#include "common/version.h"
#include "store/codec.h"

namespace edgekv::store {

// A partition table's row for a key, as far as liveness and expiry go.
struct RowState {
  bool exists = false;
  bool tombstone = false;
  int64_t expiry_ms = 0;
};

struct StagedWrite {
  uint64_t id = 0;  // the stage table's key: staging order within the file
  uint32_t partition = 0;
  uint64_t seq = 0;  // the change-log entry it will become
  std::string key;
  Version version;
  int64_t expiry_ms = 0;  // 0 for tombstones, as in the tables
  bool tombstone = false;
  Codec codec = Codec::kRaw;
  std::string value;  // as stored: compressed or raw; empty for tombstones
  // The key's partition-table row as it stands until the key's newest staged write is
  // applied: only a key's newest staged write is ever written to the table, so all of a
  // key's staged writes share the row they found. Statistics use it.
  RowState base;

  ChangeOp op() const { return tombstone ? ChangeOp::kDelete : ChangeOp::kPut; }
};

// One staged change-log entry, as read_changes needs it.
struct StagedChange {
  uint64_t seq = 0;
  ChangeOp op = ChangeOp::kPut;
  Version version;
  int64_t expiry_ms = 0;
  std::string key;
  bool current = false;  // the key's newest write: the value below is the key's value
  Codec codec = Codec::kRaw;
  std::string value;  // as stored; only when `current` and a put
};

struct StagedChanges {
  std::vector<StagedChange> entries;
  std::unordered_map<std::string, uint64_t> newest_seq;  // per key staged in the partition
};

struct ExpiryAdjustment {
  int64_t expired = 0;   // change to the count of rows expired but not swept
  int64_t expiring = 0;  // change to the count of live rows with a TTL
};

class StagedWrites {
 public:
  // `db_files` and `partitions` as in the file's Layout: partition p is in slot p / db_files.
  StagedWrites(uint32_t db_files, uint32_t partitions_in_file)
      : db_files_(db_files), by_slot_(partitions_in_file) {}
  StagedWrites(const StagedWrites&) = delete;
  StagedWrites& operator=(const StagedWrites&) = delete;

  // Writer thread only. The key's newest staged write, or nullptr.
  const StagedWrite* newest(std::string_view key) const;
  // Writer thread only. All staged writes, oldest first.
  const std::deque<StagedWrite>& oldest() const { return writes_; }
  // Writer thread only. Adds committed writes (in staging order) and empties `writes`.
  void add(std::deque<StagedWrite>& writes);
  // Writer thread only. Forgets the `n` oldest writes (they were applied).
  void remove_oldest(size_t n);

  size_t size() const { return count_.load(std::memory_order_relaxed); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

  // Any thread. The key's newest staged write, copied; false when the key has none.
  bool find(std::string_view key, StagedWrite* out) const;
  // Any thread. Staged entries of `partition` with seq >= from_seq, oldest first, at most
  // `max`; and, taken at the same moment, each key staged in the partition with the seq
  // of its newest staged write (every logged put of the key older than that is superseded).
  StagedChanges changes(uint32_t partition, uint64_t from_seq, size_t max) const;
  // Any thread. How the staged writes change the partition tables' expiry counts at `now`:
  // each key's newest staged write replaces its row's contribution.
  ExpiryAdjustment expiry_adjustment(WallTime now) const;

  // Held by the writer (exclusively) from committing a batch until it removed the batch
  // from here, and by stats() (shared) while it counts the tables' expiry indexes and
  // adjusts for staged writes: the counts then see each write once, staged or applied.
  std::unique_lock<std::shared_mutex> lock_for_apply() { return std::unique_lock(apply_mu_); }
  std::shared_lock<std::shared_mutex> lock_for_counts() const {
    return std::shared_lock(apply_mu_);
  }

  // What one staged write costs in memory, roughly (for the apply threshold in bytes).
  static uint64_t footprint(const StagedWrite& w);

 private:
  const uint32_t db_files_;
  mutable std::shared_mutex apply_mu_;
  mutable std::mutex mu_;
  std::deque<StagedWrite> writes_;  // oldest first; elements never move (deque ends only)
  // Views into writes_' keys.
  std::unordered_map<std::string_view, const StagedWrite*> newest_;
  std::vector<std::deque<const StagedWrite*>> by_slot_;  // per partition, in seq order
  std::atomic<size_t> count_{0};
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace edgekv::store
