// State shared by a store's writers and readers: the layout, the options, per-partition
// sequence numbers and row counts, and the statistics counters.
//
// Owns: nothing beyond these values. Thread-safety: the layout and options are fixed after
// open; everything else is atomic. Each partition's values are written only by the writer
// of its file, after the transaction that changed them committed, so readers see
// committed state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "store/digest.h"
#include "store/disk_guard.h"
#include "store/schema.h"
#include "store/staging.h"
#include "store/store.h"

namespace edgekv::store {

struct PartitionState {
  std::atomic<uint64_t> last_seq{0};  // newest committed change-log entry
  std::atomic<int64_t> live_rows{0};  // rows that are not tombstones (expired ones included)
  // Whether the partition's tables exist (format 5 creates them on its first write). Set
  // by the file's applier once the batch creating them committed, before that batch's
  // writes leave the staged writes: a reader or writer that no longer finds a write
  // staged finds the tables too.
  std::atomic<bool> has_tables{false};
  // The purge horizon (Store::set_purge_horizon; TombstonePurge::kByHorizon), each bound
  // only raised. At open, horizon_hlc is the hlc bound of the partition's last purge, which
  // the applier keeps in the data file's meta with the purge (`purge_floor.P`), so writes
  // below it to keys with no row stay ignored across restarts.
  std::atomic<uint64_t> horizon_hlc{0};
  std::atomic<uint64_t> horizon_seq{0};
  // Drops of the partition committed since open (Store::drops), raised by the file's
  // writer after the drop committed.
  std::atomic<uint64_t> drops{0};
};

// Raises `a` to `v` if it is lower.
inline void raise_to(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load();
  while (cur < v && !a.compare_exchange_weak(cur, v)) {
  }
}

// One file's anti-entropy digests (store.h, Store::digest), kept in memory.
//
// A partition's digest exists from the first time it is asked for: created empty (the
// partition "active"), it takes every change committed from then on, while a scan of the
// partition as it stood when it was created is added to it once (Store::digest). The
// writer applies a commit group's changes (`leaf ^= h(old) ^ h(new)`) and adds its writes
// to the staged writes in one hold of `mu`, and the applier commits a purge and takes the
// purged rows out under it, so a scan that starts under `mu` (the staged writes copied, a
// read snapshot taken) sees each change either in what it reads or in what the digest
// takes later, never both or neither.
//
// A purge and a write of the same key may cross: the writer read a tombstone for the
// write's `old` before the applier purged it. So the applier records the keys whose
// entries it took out in `purged`, and the writer, under `mu`, takes a key it finds there
// as having no old entry, then clears the set: every group read its rows after the last
// clear, so a purge that is not in the set was in what the group read.
//
// Thread-safety: everything under `mu` (lock order: `mu`, then the staged writes' mutex);
// `build_mu` is held by whoever builds a digest of the file, one at a time.
struct FileDigests {
  explicit FileDigests(uint32_t partitions_in_file) : by_slot(partitions_in_file) {}

  struct Partition {
    DigestLeaves leaves;
    bool built = false;  // false while the first scan runs
  };
  std::mutex mu;
  std::vector<std::unique_ptr<Partition>> by_slot;  // null: not asked for since open
  std::unordered_set<std::string> purged;           // see above; cleared at every commit group
  std::mutex build_mu;
};

struct Counters {
  std::atomic<uint64_t> puts_applied{0};
  std::atomic<uint64_t> deletes_applied{0};
  std::atomic<uint64_t> writes_ignored{0};
  std::atomic<uint64_t> writes_below_horizon{0};
  std::atomic<uint64_t> expired{0};
  std::atomic<uint64_t> tombstones_purged{0};
  std::atomic<uint64_t> commit_groups{0};
  std::atomic<uint64_t> group_writes{0};
  std::atomic<uint64_t> apply_batches{0};
  std::atomic<uint64_t> apply_failures{0};
  std::atomic<uint64_t> checkpoints{0};
};

struct EngineState {
  EngineState(Layout layout_in, StoreOptions options_in)
      : layout(std::move(layout_in)),
        options(std::move(options_in)),
        partitions(std::make_unique<PartitionState[]>(layout.partitions)),
        disk(layout.dir, options.disk_reserve_bytes, layout.db_files) {
    for (uint32_t f = 0; f < layout.db_files; ++f) {
      staged.push_back(
          std::make_unique<StagedWrites>(layout.db_files, layout.partitions_in_file(f)));
      digests.push_back(std::make_unique<FileDigests>(layout.partitions_in_file(f)));
    }
  }

  const Layout layout;
  const StoreOptions options;  // validated; db_files resolved
  std::unique_ptr<PartitionState[]> partitions;
  Counters counters;
  // Per file: writes staged but not yet applied to their partitions (staging.h).
  std::vector<std::unique_ptr<StagedWrites>> staged;
  // Per file: the digests asked for since open.
  std::vector<std::unique_ptr<FileDigests>> digests;
  // Tasks waiting in all writer queues, against write_queue_max.
  std::atomic<size_t> queued{0};
  // Hints held in all stage files, and their bytes as hints_max_bytes counts them. A
  // writer adds a hint's bytes when it stages it (so that writers of several files share
  // the bound exactly) and takes them back if its group fails.
  std::atomic<uint64_t> hints{0};
  std::atomic<uint64_t> hint_bytes{0};
  // The reserve file and whether the disk is full (disk_guard.h).
  DiskGuard disk;
};

}  // namespace edgekv::store
