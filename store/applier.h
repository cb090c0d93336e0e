// An applier: the thread that owns one data file's only write connection. It applies the
// batches of staged writes its writer hands it (staging.h) to their partitions' tables and
// change logs, one transaction per batch, each recording the newest stage id it applied
// (kAppliedStageId) and fsync'd whatever the sync mode, so the writer may then delete
// those rows from the stage file. It also runs the parts of a sweep that only change the
// data file (purging old tombstones, trimming change logs), and takes the tombstones it
// purges out of the file's digests (engine.h, FileDigests), and drops partitions
// (Store::drop_partition) in the writes' order. A partition's tables are
// created by the batch that applies its first write (format 5), and its statements are
// prepared when first needed.
//
// Why a thread of its own: a batch of thousands of writes takes tens of milliseconds.
// Run by the writer, every commit group arriving meanwhile waited for it, which made the
// p99 of SETs (store/FORMAT.md, "Tail latency"). The stage file is another database file,
// so its commits never wait for the data file's lock.
//
// Owns: the data file's write connection and its prepared statements, its checkpointer,
// the queue of jobs and the thread. Thread-safety: post from the writer's thread; the
// calls before start (apply_now, last_logged) and stop from the thread that opens or closes
// the store; the rest runs on the applier thread, the report callback included.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "store/checkpointer.h"
#include "store/engine.h"
#include "store/sqlite.h"
#include "store/staging.h"

namespace edgekv::store {

// One sweep as it travels from file to file. Budgets count rows still allowed.
struct SweepJob {
  WallTime now;
  size_t expire_left = 0;
  size_t purge_left = 0;
  size_t trim_left = 0;
  std::vector<ChangeEvent> events;
  Store::SweepCallback done;
};

class Applier {
 public:
  // The oldest staged writes not yet handed on, in staging order; `write_row[i]`: whether
  // writes[i] is its key's newest staged write (else it is only logged).
  struct Batch {
    uint64_t epoch = 0;
    std::vector<const StagedWrite*> writes;
    std::vector<bool> write_row;
  };
  // The data-file half of a sweep: purge and trim with the job's budgets, then `done`
  // with the outcome (on the applier thread). Queued after the batches that hold the
  // sweep's expiries, so it runs once they are applied.
  struct SweepTail {
    uint64_t epoch = 0;
    std::shared_ptr<SweepJob> job;
    std::function<void(Status)> done;
  };
  // A drop of `partitions` (Store::drop_partition, the drops queued one after another),
  // queued after the batches holding every write staged before it: in one transaction,
  // each one's row and value tables are dropped and made again empty (DROP TABLE frees
  // their pages without reading a row into memory or running the value trigger per row),
  // its change log is kept (last_seq stays), its purge floor leaves meta; their digests
  // become empty partitions' as the transaction commits. Then `done` with the outcome (on
  // the applier thread); a failed batch before it fails it too, as for a sweep. One
  // transaction for them all, because each commit that changes the schema makes every
  // other connection of the file read the whole schema again and prepare its statements
  // again: a hand-over drops a quarter of a node's partitions at once, and dropping them
  // one transaction at a time held the node's reads up for seconds.
  struct DropTail {
    uint64_t epoch = 0;
    std::vector<uint32_t> partitions;
    std::function<void(const Status&)> done;
  };
  // How a batch went, reported to the writer (on the applier thread) in posting order.
  // Jobs carry the writer's epoch. When a batch fails, every later job of its epoch fails
  // with the same status without running (a batch applies only after the ones before it);
  // the writer starts a new epoch and hands the writes on again, oldest first.
  using Report =
      std::function<void(uint64_t epoch, size_t writes, uint64_t last_id, const Status&)>;

  // Takes over `db` (configured as a writer), prepares the statements, reads the newest
  // stage id applied. Starts no thread.
  static Result<std::unique_ptr<Applier>> open(EngineState& state, uint32_t file, sql::Db db);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // The newest stage id whose write is in the tables (kAppliedStageId).
  uint64_t applied_stage_id() const { return applied_id_; }
  // Before start(): applies `writes` (rows left in the stage file by a run that ended
  // without applying them) in one transaction, on the calling thread.
  Status apply_now(const std::deque<StagedWrite>& writes);
  // Before start(): each partition of the file's newest logged seq, by slot.
  Result<std::vector<uint64_t>> last_logged();

  void start(Report report);
  void post(Batch batch);
  void post(SweepTail tail);
  void post(DropTail tail);
  // Runs what is queued, then stops the thread and closes the connection (which
  // checkpoints the WAL into the file).
  void stop();

 private:
  struct Slot {
    uint32_t partition = 0;
    uint64_t logged_seq = 0;  // newest seq in the partition's log table
    // Whether the partition's tables exist (format 5 creates them with its first write),
    // and whether the statements below are prepared (on first use).
    bool has_tables = false;
    bool prepared = false;
    // Row writes, chosen by Applier::write_row_of: an upsert (a new key, or a row that
    // went away); an update that sets value_id, so the trigger deletes the old value; an
    // update of a row whose old and new value are both in the row; one of a row whose old
    // and new value are both in val_<p>, returning the value's id.
    sql::Stmt insert_row;
    sql::Stmt update_row;
    sql::Stmt update_inline_row;
    sql::Stmt update_row_keep_value;
    // A value over kInlineValueMaxBytes into val_<p>, or over the old one there, in place.
    sql::Stmt insert_value;
    sql::Stmt update_value;
    sql::Stmt insert_log;
    sql::Stmt purge_tombstones;  // finds them; purge_row deletes each
    sql::Stmt purge_row;
    sql::Stmt trim_log;
    // The hlc bound of the last purge kept in meta (`purge_floor.P`; kByHorizon).
    uint64_t floor_kept = 0;
  };
  using Job = std::variant<Batch, SweepTail, DropTail>;

  Applier(EngineState& state, uint32_t file, sql::Db db);
  Status prepare_statements();
  Status load_purge_floors();
  // The slot's statements, prepared; with `create`, its tables are created first if the
  // partition has none, inside the open transaction (rollback() forgets them again).
  // Without, a slot without tables stays unprepared.
  Status ready(Slot& slot, bool create);
  // After a commit: tells readers and the writer which partitions now have tables.
  void publish_created();
  void run();
  // Applies `writes` in one transaction; `write_row[i]` as in Batch.
  Status apply(const std::vector<const StagedWrite*>& writes, const std::vector<bool>& write_row);
  Status write_row_of(Slot& slot, const StagedWrite& w);
  Status write_one(const StagedWrite& w, bool write_row);
  Status sweep(SweepJob& job);
  Status drop(const std::vector<uint32_t>& partitions);
  Status rollback(Status status);

  EngineState& state_;
  const uint32_t file_;
  sql::Db db_;
  sql::Stmt begin_, commit_, rollback_, set_applied_, set_floor_, drop_floor_;
  std::vector<Slot> slots_;        // by Layout::slot_of(partition)
  std::vector<uint32_t> created_;  // slots whose tables the open transaction created
  StagedWrites& staged_;
  uint64_t applied_id_ = 0;
  std::unique_ptr<Checkpointer> checkpointer_;
  Report report_;
  bool failing_ = false;       // the last batch failed: log recovery once
  uint64_t failed_epoch_ = 0;  // jobs of this epoch and older fail with failed_
  Status failed_;
  uint32_t sweep_cursor_ = 0;  // rotates so that a small budget reaches every partition

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace edgekv::store
