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
#include <vector>

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
};

struct Counters {
  std::atomic<uint64_t> puts_applied{0};
  std::atomic<uint64_t> deletes_applied{0};
  std::atomic<uint64_t> writes_ignored{0};
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
    }
  }

  const Layout layout;
  const StoreOptions options;  // validated; db_files resolved
  std::unique_ptr<PartitionState[]> partitions;
  Counters counters;
  // Per file: writes staged but not yet applied to their partitions (staging.h).
  std::vector<std::unique_ptr<StagedWrites>> staged;
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
