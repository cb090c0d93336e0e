// A writer: the thread that owns one database file's only write connection. It takes the
// tasks queued for its file in groups of at most group_commit_max, stages each group's
// writes in ONE transaction (appends to the file's stage table), commits, and only then
// runs the tasks' callbacks (group commit). When the transaction fails, every task in the
// group gets the error and nothing of it is staged. Between groups it applies staged writes
// to their partitions' tables and change logs in batches (staging.h); a sweep is a group of
// its own and applies everything staged before it runs, and so does stopping.
//
// When batches fail, staging goes on until the file's staged writes reach
// stage_max_bytes. From then on the file's writes are refused with OVERLOADED (at submit,
// and in the writer for those already queued), and the writer retries the batch on a
// timer, since no new group comes to retry it, until one applies and the file is below the
// cap again.
//
// A sweep visits every file: it starts on writer 0 and each writer hands what is left of
// its budget to the next (set_next), so max_rows bounds the whole sweep.
//
// Owns: the write connection and its prepared statements, the queue, the thread, the
// in-transaction (not yet committed) sequence numbers of its file's partitions, the
// group's not yet committed staged writes, and whether the file refuses writes at the cap.
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

#include "store/checkpointer.h"
#include "store/codec.h"
#include "store/engine.h"
#include "store/sqlite.h"
#include "store/staging.h"
#include "store/store.h"

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

class Writer {
 public:
  struct ApplyTask {
    Record record;
    WallTime now;
    uint32_t partition = 0;
    Store::ApplyCallback done;
  };
  struct SweepTask {
    std::shared_ptr<SweepJob> job;
  };
  using Task = std::variant<ApplyTask, SweepTask>;

  // Takes over `db` (already configured as a writer), prepares the statements, applies
  // whatever the previous run left staged, and loads its partitions' sequence numbers and
  // row counts into `state`. Starts no thread.
  static Result<std::unique_ptr<Writer>> open(EngineState& state, uint32_t file, sql::Db db);
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
  // Commits everything queued (running the callbacks), then stops the thread.
  void drain_and_join();
  // Finalizes the statements and closes the connection; after drain_and_join.
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
    sql::Stmt select_row;
    sql::Stmt insert_row;  // upsert: applying a staged write over a row it did not see
    sql::Stmt update_row;
    sql::Stmt delete_row;
    sql::Stmt insert_log;
    sql::Stmt select_expired;
    sql::Stmt purge_tombstones;
    sql::Stmt trim_log;
  };
  // What one task produced inside the transaction, reported after it commits.
  struct Outcome {
    Status refused;  // not OK: the write was not staged (the file is at the cap)
    ApplyResult apply;
    std::vector<ChangeEvent> events;  // a sweep's
  };
  struct GroupTotals {
    uint64_t puts = 0, deletes = 0, ignored = 0, expired = 0, purged = 0, writes = 0;
  };

  Writer(EngineState& state, uint32_t file, sql::Db db);
  Status prepare_statements();
  Status load_partition_state();
  // Applies, in one transaction, the stage table's rows left by a run that ended without
  // applying them (a crash), in staging order.
  Status apply_left_staged();

  void run();
  void commit_group(std::vector<Queued>& group);
  Status stage_one(ApplyTask& task, Outcome* out, GroupTotals* totals);
  // Applies the oldest staged writes, at most `max`, in one transaction.
  Status apply_staged(size_t max);
  // Applies every staged write, batch by batch.
  Status apply_all_staged();
  // Applies a batch when the staged writes reach the thresholds, and at the cap more
  // batches until below it.
  void apply_if_due();
  // Whether the next write must be refused: the staged writes (with the open group's)
  // reached stage_max_bytes and the last batch failed.
  bool at_cap() const;
  // The OVERLOADED status refused writes get, naming the size and the last apply error.
  Status cap_refusal() const;
  // Publishes at_cap() to submit() (refusal_) and logs when it changes.
  void update_refusal();
  // Writes a row of a partition table: an UPDATE when the row is known to exist, falling
  // back to the upsert (which also covers a row that is not there).
  Status write_row(Slot& slot, const StagedWrite& w, bool row_exists);
  Status append_log(Slot& slot, uint64_t seq, ChangeOp op, Version version, int64_t expiry_ms,
                    std::string_view key);
  Status sweep_file(SweepJob& job, Outcome* out, GroupTotals* totals);
  Status expire_in(Slot& slot, SweepJob& job, Outcome* out, GroupTotals* totals);
  Slot& touch(uint32_t partition);
  void publish(const GroupTotals& totals);
  void abandon();
  // Queues a sweep handed on by the previous writer (not counted against the queue bound).
  void hand_on(std::shared_ptr<SweepJob> job);
  static void answer(Task& task, const Status& status);

  EngineState& state_;
  const uint32_t file_;
  sql::Db db_;
  sql::Stmt begin_, commit_, rollback_;
  sql::Stmt insert_stage_, delete_staged_;
  std::vector<Slot> slots_;  // by Layout::slot_of(partition)
  std::vector<uint32_t> touched_;
  ValueEncoder encoder_;
  uint32_t sweep_cursor_ = 0;  // rotates so that a small budget reaches every partition
  bool failing_ = false;       // the last group failed: log recovery once
  Writer* next_ = nullptr;

  StagedWrites& staged_;  // state_.staged[file_]
  // The open group's staged writes, added to staged_ once it commits; and each key's
  // newest of them (views into pending_, whose elements never move).
  std::deque<StagedWrite> pending_;
  std::unordered_map<std::string_view, const StagedWrite*> pending_newest_;
  uint64_t pending_bytes_ = 0;  // StagedWrites::footprint of pending_
  uint64_t next_stage_id_ = 1;
  bool apply_failing_ = false;  // the last batch failed: log recovery once
  Status last_apply_error_;     // of the last failed batch, for cap_refusal()
  bool refusing_ = false;       // at_cap() as last published in refusal_
  // While refusing: how long the writer waits for a task before retrying a batch.
  std::chrono::milliseconds apply_retry_delay_{0};

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;  // guarded by mu_
  bool accepting_ = true;     // guarded by mu_
  bool stopping_ = false;     // guarded by mu_
  Status refusal_;            // guarded by mu_; not OK: refuse writes with it (at the cap)
  std::thread thread_;
  std::unique_ptr<Checkpointer> checkpointer_;  // this file's; started with the thread
};

}  // namespace edgekv::store
