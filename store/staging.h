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
// Thread-safety: the file's writer thread adds, its applier thread removes, and any thread
// looks up; all of them take the mutex. The applier reads the writes of the batches it was
// handed without it: a deque's elements never move, and only the applier removes them,
// after it applied them.
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
#include "store/digest.h"

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
  // As in the tables: 0 for a delete tombstone; an expiry tombstone keeps the expiry.
  int64_t expiry_ms = 0;
  bool tombstone = false;  // a delete or an expiry: the key has no value once applied
  // An expiry (format 5), logged as kExpire: a sweep's of the key's row, or a write that
  // arrived already expired. Applying it leaves a tombstone that keeps the version and the
  // expiry (`tombstone` is set too), so that an older write arriving later stays out.
  bool expire = false;
  Codec codec = Codec::kRaw;
  std::string value;  // as stored: compressed or raw; empty for tombstones
  // The key's partition-table row as it stands until the key's newest staged write is
  // applied: only a key's newest staged write is ever written to the table, so all of a
  // key's staged writes share the row they found. Statistics use it.
  RowState base;
  // When `base` came from an older staged write of the key (its id, else 0), and the row
  // that write leaves: should it be applied before this write joins the index, the row
  // is that (a write handed to the applier while its key's newest writes its row).
  uint64_t base_from = 0;
  RowState base_if_applied;

  // The row this write leaves once applied.
  RowState row_after() const { return RowState{true, tombstone, expiry_ms}; }

  ChangeOp op() const {
    return expire ? ChangeOp::kExpire : tombstone ? ChangeOp::kDelete : ChangeOp::kPut;
  }
  // Whether the key has a live value once this write is applied.
  bool live() const { return !tombstone; }
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

  // Writer thread only. Adds committed writes (in staging order) and empties `writes`.
  void add(std::deque<StagedWrite>& writes);
  // Writer thread only. Appends to `writes` the oldest staged writes with an id above
  // `after_id`, at most `max`, and to `write_row` whether each is its key's newest.
  void collect(uint64_t after_id, size_t max, std::vector<const StagedWrite*>* writes,
               std::vector<bool>* write_row) const;
  // Applier thread only, holding lock_for_apply() (so stats() sees each write once, staged
  // or applied). Forgets the `n` oldest writes, which were just applied; `wrote_row[i]`:
  // the i-th was written to its key's row, which a newer staged write of the key now
  // finds as its `base`.
  void remove_applied(size_t n, const std::vector<bool>& wrote_row);

  size_t size() const { return count_.load(std::memory_order_relaxed); }
  // Counts the batches removed (remove_applied). It moves before their writes leave, so a
  // thread that misses a write here and then sees the count unchanged since it began a
  // read transaction knows the write was not applied before that transaction began.
  uint64_t removals() const { return removals_.load(); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

  // Any thread. The key's newest staged write, copied; false when the key has none.
  bool find(std::string_view key, StagedWrite* out) const;
  // Any thread. The key's newest staged write without its key and value (what
  // last-write-wins and the row counts need); false when the key has none.
  bool find_state(std::string_view key, StagedWrite* out) const;
  // Any thread. Staged entries of `partition` with seq >= from_seq, oldest first, at most
  // `max`; and, taken at the same moment, each key staged in the partition with the seq
  // of its newest staged write (every logged put of the key older than that is superseded).
  StagedChanges changes(uint32_t partition, uint64_t from_seq, size_t max) const;
  // Any thread. The digest entry of each key staged in `partition` (its newest staged
  // write), only those whose digest leaf is set in `leaves` when given (kDigestLeaves
  // flags); in no particular order. Costs the partition's staged writes.
  std::vector<DigestEntry> digest_entries(uint32_t partition,
                                          const std::vector<bool>* leaves) const;
  // Any thread. The newest staged writes of `partition`'s keys that are puts expired at
  // `now`, copied, in staging order.
  std::vector<StagedWrite> expired(uint32_t partition, WallTime now) const;
  // Any thread. How the staged writes change the partition tables' expiry counts at `now`:
  // each key's newest staged write replaces its row's contribution.
  ExpiryAdjustment expiry_adjustment(WallTime now) const;

  // Held by the applier (exclusively) from committing a batch until it removed the batch
  // from here, and by stats() (shared) while it counts the tables' expiry
  // indexes and adjusts for the staged writes not applied yet: the counts then see each
  // write once, staged or applied.
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
  std::unordered_map<std::string_view, StagedWrite*> newest_;
  std::vector<std::deque<const StagedWrite*>> by_slot_;  // per partition, in seq order
  std::atomic<size_t> count_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> removals_{0};
};

}  // namespace edgekv::store
