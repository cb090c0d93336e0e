// A writer: the thread that owns one file's stage connection. It takes the tasks queued
// for its file in groups of at most group_commit_max, stages each group's writes in ONE
// transaction (appends to the stage file's table), commits, and only then runs the tasks'
// callbacks (group commit). When the transaction fails, every task in the group gets the
// error and nothing of it is staged. It hands the oldest staged writes to its applier
// (applier.h) in batches, which applies them to the data file on a thread of its own, and
// deletes stage rows once they are applied. Last-write-wins checks read the key's newest
// staged write, else its row through a read connection to the data file.
//
// Hints (Store::apply_hint) are tasks of the writer too: each is upserted into the stage
// file's hints table inside its commit group and answered after the commit, like a write;
// they are never staged in memory nor applied to the partitions.
//
// Drops (Store::drop_partition) are groups of their own too (DropTask): the drops queued one
// after another go together, in one transaction of the data file.
//
// A sweep is a group of its own: it stages an expiry for each expired key (row or staged
// write), then hands everything staged to the applier, followed by the sweep's purge and
// trim. When that is done, the sweep goes on to the next file's writer (set_next), with
// what is left of its budget, so max_rows bounds the whole sweep.
//
// When batches fail, staging goes on until the file's staged writes reach
// stage_max_bytes. From then on the file's writes are refused with OVERLOADED (at submit,
// and in the writer for those already queued), and the writer hands the batch on again on
// a timer, since no new group comes to do it, until one applies and the file is below the
// cap again. While batches apply but the file is at the cap, the writer takes no new group
// until a batch has applied.
//
// Owns: the stage connection, the read connection and their prepared statements, the
// applier, the queue, the thread, the in-transaction (not yet committed) sequence numbers
// of its file's partitions, the group's not yet committed staged writes, and whether the
// file refuses writes at the cap.
// Thread-safety: submit, stop_accepting and drain_and_join may be called from any thread
// (drain_and_join not from a callback); the rest runs on the writer thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/random.h"
#include "store/applier.h"
#include "store/checkpointer.h"
#include "store/codec.h"
#include "store/engine.h"
#include "store/sqlite.h"
#include "store/staging.h"
#include "store/store.h"

namespace edgekv::store {

class Writer {
 public:
  struct ApplyTask {
    Record record;
    WallTime now;
    uint32_t partition = 0;
    Store::ApplyCallback done;
    bool relayed = false;  // Store::apply_relayed: held to the purge horizon
  };
  struct SweepTask {
    std::shared_ptr<SweepJob> job;
  };
  // A hint for `owner` (Store::apply_hint): upserted into the stage file's hints table in
  // the commit group, like a write, and acknowledged with it.
  struct HintTask {
    std::string owner;
    Record record;
    WallTime now;
    Store::ApplyCallback done;
    bool remove = false;  // Store::remove_hint: `record` names the key and the version
  };
  // Store::drop_partition: a group of its own. Everything staged before it is handed to the
  // applier, which applies it and then drops the partition in one transaction of the data
  // file; the writer waits for that before it takes its next group, so the writes queued
  // after the drop find the partition empty (their last-write-wins reads, the row cache
  // and the read snapshot all come after the drop).
  struct DropTask {
    uint32_t partition = 0;
    WallTime now;
    Store::DropCallback done;
  };
  using Task = std::variant<ApplyTask, SweepTask, HintTask, DropTask>;

  // Takes over `stage` (the stage file, configured as a writer), `read` (the data file,
  // configured as a reader) and `applier`, prepares the statements, applies whatever the
  // previous run left staged, and loads its partitions' sequence numbers and row counts
  // into `state`. Starts no thread.
  static Result<std::unique_ptr<Writer>> open(EngineState& state, uint32_t file, sql::Db stage,
                                              sql::Db read, std::unique_ptr<Applier> applier);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void set_next(Writer* next) { next_ = next; }
  void start();

  // Queues a task. When it cannot be queued (write_queue_max reached: OVERLOADED; closing:
  // UNAVAILABLE), answers its callback at once, on the calling thread.
  void submit(Task task);
  // Wakes the writer thread (submit() does, unless a WakeBatch defers it).
  void wake() { wake_.notify_one(); }
  // Refuses further submit() calls; queued tasks stay queued.
  void stop_accepting();
  // Commits everything queued (running the callbacks), applies everything staged, then
  // stops the threads.
  void drain_and_join();
  // Finalizes the statements and closes the connections; after drain_and_join.
  void close_connection();

 private:
  struct Queued {
    Task task;
    bool counted;  // counts against write_queue_max (false: a sweep handed on by a writer)
  };
  // A partition of this file: its statements and its not-yet-committed state.
  struct Slot {
    uint32_t partition = 0;
    uint64_t seq = 0;        // newest sequence number, including the open transaction
    int64_t live_delta = 0;  // change of live_rows in the open transaction
    bool touched = false;
    // On the read connection, prepared once the partition has tables (tables_ready).
    bool prepared = false;
    sql::Stmt select_row;
    sql::Stmt select_expired;
  };
  // What one task produced inside the transaction, reported after it commits.
  struct Outcome {
    Status refused;  // not OK: the write was not staged (the file is at the cap)
    ApplyResult apply;
    std::vector<ChangeEvent> events;  // a sweep's
  };
  struct GroupTotals {
    uint64_t puts = 0, deletes = 0, ignored = 0, below_horizon = 0, expired = 0, writes = 0;
  };
  // An applier's report on a batch (Applier::Report).
  struct Report {
    uint64_t epoch;
    size_t writes;
    uint64_t last_id;
    Status status;
  };
  // The state a key has for last-write-wins and the row counts: its newest staged write
  // (of the open group, else of the file), else its row.
  struct KeyState {
    bool staged = false;  // from a staged write, else from the row
    bool exists = false;  // a row or a staged write
    bool tombstone = false;
    Version version;
    int64_t expiry_ms = 0;  // the state's own (a staged write's, else the row's)
    bool in_group = false;  // from a write of the open group
    RowState base;
    uint64_t base_from = 0;  // as in StagedWrite
    RowState base_if_applied;
  };
  // The key state a staged write replaces, as the digests need it (engine.h, FileDigests).
  struct DigestOld {
    bool exists = false;
    bool tombstone = false;
    bool in_group = false;  // a write of the open group: no purge can have taken it
    Version version;
    int64_t expiry_ms = 0;
  };

  Writer(EngineState& state, uint32_t file, sql::Db stage, sql::Db read,
         std::unique_ptr<Applier> applier);
  Status prepare_statements();
  Status load_partition_state();
  // Counts the hints the stage file holds into the store's totals.
  Status load_hint_counts();
  // Applies, in one transaction, the stage rows left by a run that ended without applying
  // them (a crash), in staging order, and empties the stage table.
  Status apply_left_staged();

  void run();
  void commit_group(std::vector<Queued>& group);
  // Stages `group` in one transaction and commits it; puts get `put_refusal` instead when
  // it is not OK. On failure everything is rolled back, the records are as they were, and
  // `out_of_space` says whether the disk was full.
  Status stage_group(std::vector<Queued>& group, const Status& put_refusal,
                     std::vector<Outcome>& outcomes, GroupTotals* totals, bool* out_of_space);
  Status stage_one(ApplyTask& task, Outcome* out, GroupTotals* totals, const Status& put_refusal);
  Status stage_hint(HintTask& task, Outcome* out, const Status& put_refusal);
  Result<KeyState> key_state(Slot& slot, std::string_view key);
  // Whether the partition has tables (the applier creates them with its first write), its
  // statements prepared once it does. Preparing ends the open read transaction, whose
  // snapshot may predate the tables.
  Result<bool> tables_ready(Slot& slot);
  // Makes the read connection's transaction see every batch removed from the staged
  // writes: begins one, or begins it again when a batch was removed since it began. A
  // group's reads share one transaction (StagedWrites::removals says why that is safe).
  Status fresh_read();
  void end_read();
  // The row cache: what a key's row holds, for keys not staged. Every change of a row is a
  // staged write of this writer (puts, deletes, expiries), so a key's entry is set from its
  // newest write when that write's group commits, and from its row when it is read; it
  // holds once the write left the index. Tombstones are not kept: the applier purges old
  // ones without the writer (after which an older write is accepted again).
  void remember_row(std::string_view key, const RowState& row, Version version);
  void remember_written(const StagedWrite& w);
  // Appends `w` (filled in but for id and seq) to the open group: the stage row, the
  // group's index, the partition's sequence number and `old`, the state it replaces.
  Status stage_write(Slot& slot, StagedWrite& w, const DigestOld& old);
  // After the group committed: its changes into the digests and its writes into the
  // staged writes, in one hold of the digests' lock (engine.h, FileDigests).
  void publish_writes();
  Status sweep_file(SweepJob& job, Outcome* out, GroupTotals* totals);
  Status expire_in(Slot& slot, SweepJob& job, Outcome* out, GroupTotals* totals);
  // Hands the applier a batch when the staged writes reach the thresholds (or the cap),
  // and again after a failed batch.
  void post_if_due();
  // Hands the applier every staged write not handed on yet, in batches.
  void post_all();
  void post_batch(size_t max);
  void take_reports(std::vector<Report>& reports);
  // Deletes the stage rows of applied writes, at most `max_rows` of the oldest, inside the
  // open transaction.
  Status delete_applied(uint64_t max_rows);
  // With nothing staged: gives the stage file's free pages back to the file system when
  // they are many.
  void shrink_stage_file();
  // Whether the writer must wait for a batch before it takes another group: a batch is on
  // its way and the file is at the cap, or the disk is nearly full and more than
  // DiskGuard::low_space_stage_bytes is staged.
  bool throttled() const;
  // Whether the next write must be refused: the staged writes (with the open group's)
  // reached stage_max_bytes and the last batch failed.
  bool at_cap() const;
  // The OVERLOADED status refused writes get, naming the size and the last apply error.
  Status cap_refusal() const;
  // Publishes at_cap() to submit() (refusal_) and logs when it changes.
  void update_refusal();
  Slot& touch(uint32_t partition);
  void publish(const GroupTotals& totals);
  void abandon();
  // Queues a sweep handed on by the previous writer (not counted against the queue bound).
  void hand_on(std::shared_ptr<SweepJob> job);
  // Tells the disk guard how many bytes of free pages the data file has (out of space).
  void report_free_pages();
  // Runs a group of drops (DropTasks queued one after another) in one transaction of the
  // data file and answers each; the writer waits for the applier meanwhile.
  void drop_partitions(std::vector<Queued>& group);
  // Forgets what the writer knew of a dropped partition (dropped: status OK) and answers.
  void dropped_partition(DropTask& task, const Status& status);
  // Ends a sweep in this file: on to the next writer, or its callback.
  void finish_sweep(std::shared_ptr<SweepJob> job, const Status& status);
  static void answer(Task& task, const Status& status);

  EngineState& state_;
  const uint32_t file_;
  sql::Db db_;       // the stage file
  sql::Db read_db_;  // the data file, read-only
  sql::Stmt begin_, commit_, rollback_;
  sql::Stmt insert_stage_, delete_staged_;
  sql::Stmt select_hint_, upsert_hint_, delete_hint_;
  // Of the open group's hints: bytes added to EngineState::hint_bytes while staging them
  // (taken back if the group fails), bytes freed by replacing hints with smaller ones and
  // the change in the count (both published when it commits).
  uint64_t hint_bytes_reserved_ = 0;
  uint64_t hint_bytes_freed_ = 0;
  int64_t hint_count_delta_ = 0;
  sql::Stmt read_begin_, read_end_;  // on read_db_
  bool reading_ = false;             // read_db_ is in a transaction
  uint64_t read_removals_ = 0;       // StagedWrites::removals when it began
  std::vector<Slot> slots_;          // by Layout::slot_of(partition)
  std::vector<uint32_t> touched_;
  ValueEncoder encoder_;
  uint32_t sweep_cursor_ = 0;  // rotates so that a small budget reaches every partition
  bool failing_ = false;       // the last group failed: log recovery once
  Writer* next_ = nullptr;
  std::unique_ptr<Applier> applier_;
  struct CachedRow {
    Version version;
    RowState row;  // never a tombstone
  };
  struct KeyHash {  // looks keys up by string_view
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  std::unordered_map<std::string, CachedRow, KeyHash, std::equal_to<>> row_cache_;
  Random cache_rng_{0x726f77};  // picks what a full cache forgets

  StagedWrites& staged_;  // state_.staged[file_]
  // The open group's staged writes, added to staged_ once it commits; and each key's
  // newest of them (views into pending_, whose elements never move).
  std::deque<StagedWrite> pending_;
  std::unordered_map<std::string_view, const StagedWrite*> pending_newest_;
  std::vector<DigestOld> pending_old_;  // by position in pending_
  uint64_t pending_bytes_ = 0;          // StagedWrites::footprint of pending_
  uint64_t next_stage_id_ = 1;
  // Batches: the epoch (Applier::Report), the newest stage id handed on, how many writes
  // are on their way, the newest id applied and the newest whose stage row is deleted.
  uint64_t epoch_ = 1;
  uint64_t posted_id_ = 0;
  size_t in_flight_ = 0;
  uint64_t applied_id_ = 0;
  uint64_t deleted_id_ = 0;
  bool apply_failing_ = false;  // the last batch failed: log recovery once
  Status last_apply_error_;     // of the last failed batch, for cap_refusal()
  bool refusing_ = false;       // at_cap() as last published in refusal_
  // While refusing: how long the writer waits for a task before retrying a batch.
  std::chrono::milliseconds apply_retry_delay_{0};

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;     // guarded by mu_
  std::vector<Report> reports_;  // guarded by mu_
  bool accepting_ = true;        // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  Status refusal_;               // guarded by mu_; not OK: refuse writes with it (at the cap)
  std::thread thread_;
  std::unique_ptr<Checkpointer> checkpointer_;  // the stage file's; started with the thread
};

}  // namespace edgekv::store
