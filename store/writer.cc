#include "store/writer.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <unordered_set>

#include "common/hash.h"
#include "common/log.h"
#include "common/thread.h"

namespace edgekv::store {
namespace {

// This thread's open WakeBatch scopes, and the writers they deferred waking (a handful:
// one per database file written to).
thread_local int t_batch_depth = 0;
thread_local std::vector<Writer*> t_deferred;

// While a file refuses writes at the cap, the writer retries a batch after this long
// without tasks, doubling up to the maximum: a failure that clears soon (a trigger, a lock,
// space freed) is noticed quickly, and one that lasts (a full disk) costs a failing
// transaction a second, not a busy writer.
constexpr std::chrono::milliseconds kFirstApplyRetry{10};
constexpr std::chrono::milliseconds kMaxApplyRetry{1000};

// Applied stage rows a commit group deletes at most; an idle writer deletes the rest.
constexpr uint64_t kDeleteSlice = 256;

// The largest batch handed to the applier, in stage_apply_batch units (post_if_due).
constexpr size_t kMaxCatchUp = 4;

// Free pages (4 KiB) in an empty stage file above which the writer gives them back: a
// burst (or a time of failing batches) leaves the file no larger than this for good,
// while the pages steady staging reuses stay.
constexpr int64_t kStageShrinkPages = 4096;

// SQLite's default page size, which the store's files keep (store/FORMAT.md).
constexpr uint64_t kPageBytes = 4096;

}  // namespace

Writer::Writer(EngineState& state, uint32_t file, sql::Db stage, sql::Db read,
               std::unique_ptr<Applier> applier)
    : state_(state),
      file_(file),
      db_(std::move(stage)),
      read_db_(std::move(read)),
      encoder_(state.options.compress_threshold_bytes, state.options.compress_level),
      applier_(std::move(applier)),
      staged_(*state.staged[file]) {}

Writer::~Writer() {
  if (thread_.joinable()) drain_and_join();
  if (db_.valid()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
}

Result<std::unique_ptr<Writer>> Writer::open(EngineState& state, uint32_t file, sql::Db stage,
                                             sql::Db read, std::unique_ptr<Applier> applier) {
  std::unique_ptr<Writer> writer(
      new Writer(state, file, std::move(stage), std::move(read), std::move(applier)));
  Result<std::unique_ptr<Checkpointer>> checkpointer = Checkpointer::open(
      writer->db_.path(), state.options.sync, state.options.checkpoint_pages,
      &state.counters.checkpoints, state.disk.eager_flag(), state.disk.full_flag());
  if (!checkpointer.ok()) return checkpointer.status();
  writer->checkpointer_ = std::move(*checkpointer);
  EDGEKV_RETURN_IF_ERROR(writer->prepare_statements());
  EDGEKV_RETURN_IF_ERROR(writer->apply_left_staged());
  EDGEKV_RETURN_IF_ERROR(writer->load_partition_state());
  EDGEKV_RETURN_IF_ERROR(writer->load_hint_counts());
  return writer;
}

Status Writer::prepare_statements() {
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&begin_, "BEGIN IMMEDIATE", "begin"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&commit_, "COMMIT", "commit"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&rollback_, "ROLLBACK", "rollback"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&insert_stage_,
                                          "INSERT INTO stage (id, partition, seq, key, hlc, origin,"
                                          " expiry_ms, op, codec, value)"
                                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                          "stage write"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&delete_staged_, "DELETE FROM stage WHERE id <= ?1",
                                          "delete applied stage rows"));
  EDGEKV_RETURN_IF_ERROR(read_db_.prepare_into(&read_begin_, "BEGIN", "begin read"));
  EDGEKV_RETURN_IF_ERROR(read_db_.prepare_into(&read_end_, "COMMIT", "end read"));
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&select_hint_,
                       "SELECT hlc, origin, length(owner) + length(key) + length(value) FROM hints"
                       " WHERE owner = ?1 AND key = ?2",
                       "read hint"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &upsert_hint_,
      "INSERT INTO hints (owner, key, hlc, origin, expiry_ms, tombstone, codec, value)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (owner, key) DO UPDATE SET"
      " hlc = ?3, origin = ?4, expiry_ms = ?5, tombstone = ?6, codec = ?7, value = ?8",
      "store hint"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &delete_hint_, "DELETE FROM hints WHERE owner = ?1 AND key = ?2", "remove hint"));

  // Partition statements are prepared on first use: most partitions of a large Q may never
  // have tables here.
  const Layout& layout = state_.layout;
  slots_.resize(layout.partitions_in_file(file_));
  for (uint32_t p = file_; p < layout.partitions; p += layout.db_files) {
    slots_[layout.slot_of(p)].partition = p;
  }
  return Status();
}

Result<bool> Writer::tables_ready(Slot& slot) {
  if (slot.prepared) return true;
  if (!state_.partitions[slot.partition].has_tables.load()) return false;
  end_read();
  const std::string kv = kv_table(slot.partition);
  EDGEKV_RETURN_IF_ERROR(read_db_.prepare_into(
      &slot.select_row,
      "SELECT hlc, origin, tombstone, expiry_ms FROM " + kv + " WHERE leaf = ?2 AND key = ?1",
      "read row"));
  // The partial expiry index's predicate is spelled out so that the planner may use it.
  EDGEKV_RETURN_IF_ERROR(
      read_db_.prepare_into(&slot.select_expired,
                            "SELECT key, hlc, origin, expiry_ms FROM " + kv +
                                " WHERE expiry_ms > 0 AND tombstone = 0 AND expiry_ms <= ?1"
                                " ORDER BY expiry_ms, key LIMIT ?2",
                            "find expired rows"));
  slot.prepared = true;
  return true;
}

Status Writer::load_hint_counts() {
  Result<std::string> counts = db_.query_text(
      "SELECT count(*) || ' ' || coalesce(sum(length(owner) + length(key) + length(value)), 0)"
      " FROM hints",
      "count hints");
  if (!counts.ok()) return counts.status();
  const size_t space = counts->find(' ');
  const uint64_t n = std::stoull(counts->substr(0, space));
  state_.hints.fetch_add(n);
  state_.hint_bytes.fetch_add(std::stoull(counts->substr(space + 1)) + n * kHintOverheadBytes);
  return Status();
}

Status Writer::load_partition_state() {
  Result<std::vector<uint64_t>> logged = applier_->last_logged();
  if (!logged.ok()) return logged.status();
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (!state_.partitions[slot.partition].has_tables.load()) continue;  // empty: all zero
    const std::string kv = kv_table(slot.partition);
    // Total minus tombstones: both counts walk b-tree pages only (never value overflow
    // pages), the second one only the small partial tombstone index.
    Result<std::string> live =
        read_db_.query_text("SELECT (SELECT count(*) FROM " + kv + ") - (SELECT count(*) FROM " +
                                kv + " WHERE tombstone = 1)",
                            "count rows");
    if (!live.ok()) return live.status();
    slot.seq = (*logged)[i];
    PartitionState& ps = state_.partitions[slot.partition];
    ps.last_seq.store(slot.seq);
    ps.live_rows.store(std::stoll(*live));
  }
  return Status();
}

void Writer::start() {
  applier_->start([this](uint64_t epoch, size_t writes, uint64_t last_id, const Status& status) {
    {
      std::lock_guard lock(mu_);
      reports_.push_back(Report{epoch, writes, last_id, status});
    }
    wake_.notify_one();
  });
  checkpointer_->start(db_.handle(), "edgekv-cs" + std::to_string(file_));
  thread_ = start_named_thread("edgekv-wr" + std::to_string(file_), [this] { run(); });
}

void Writer::submit(Task task) {
  Status refused;
  {
    std::lock_guard lock(mu_);
    if (!accepting_) {
      refused = Status::unavailable("store " + state_.layout.dir.string() + " is closed");
    } else if (!refusal_.ok() && std::holds_alternative<ApplyTask>(task)) {
      // At the cap: a write would only add to what cannot be applied. Sweeps still run,
      // since they retry the apply first.
      refused = refusal_;
    } else if (state_.queued.fetch_add(1) >= state_.options.write_queue_max) {
      state_.queued.fetch_sub(1);
      refused = Status::overloaded("store write queue is full (write_queue_max=" +
                                   std::to_string(state_.options.write_queue_max) + ")");
    } else {
      queue_.push_back(Queued{std::move(task), true});
    }
  }
  if (refused.ok()) {
    if (t_batch_depth == 0) {
      wake_.notify_one();
    } else if (std::find(t_deferred.begin(), t_deferred.end(), this) == t_deferred.end()) {
      t_deferred.push_back(this);
    }
  } else {
    answer(task, refused);
  }
}

WakeBatch::WakeBatch() { ++t_batch_depth; }

WakeBatch::~WakeBatch() {
  if (--t_batch_depth == 0) wake_deferred();
}

void WakeBatch::wake_deferred() {
  for (Writer* writer : t_deferred) writer->wake();
  t_deferred.clear();
}

void Writer::hand_on(std::shared_ptr<SweepJob> job) {
  {
    // Accepted even while draining: close() drains the writers in file order, so this
    // writer is still running when the previous one hands a sweep on.
    std::lock_guard lock(mu_);
    queue_.push_back(Queued{SweepTask{std::move(job)}, false});
  }
  wake_.notify_one();
}

void Writer::stop_accepting() {
  std::lock_guard lock(mu_);
  accepting_ = false;
}

void Writer::drain_and_join() {
  EDGEKV_ASSERT(std::this_thread::get_id() != thread_.get_id());  // close() from a callback
  {
    std::lock_guard lock(mu_);
    accepting_ = false;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  // Runs what is still queued (a sweep's tail hands the sweep to the next writer, which is
  // still running: close() drains in file order), then closes the data file.
  if (applier_) applier_->stop();
  if (checkpointer_) checkpointer_->stop();
}

void Writer::close_connection() {
  EDGEKV_ASSERT(!thread_.joinable());
  // The hook points at the checkpointer: unhook before it goes. Closing the last
  // connection checkpoints whatever is left, as before.
  if (db_.valid()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
  checkpointer_.reset();
  applier_.reset();
  slots_.clear();  // statements first: a connection closes only once they are finalized
  begin_ = sql::Stmt();
  commit_ = sql::Stmt();
  rollback_ = sql::Stmt();
  insert_stage_ = sql::Stmt();
  delete_staged_ = sql::Stmt();
  select_hint_ = sql::Stmt();
  upsert_hint_ = sql::Stmt();
  delete_hint_ = sql::Stmt();
  read_begin_ = sql::Stmt();
  read_end_ = sql::Stmt();
  db_ = sql::Db();
  read_db_ = sql::Db();
}

void Writer::answer(Task& task, const Status& status) {
  if (auto* apply = std::get_if<ApplyTask>(&task)) {
    if (apply->done) apply->done(status);
  } else if (auto* hint = std::get_if<HintTask>(&task)) {
    if (hint->done) hint->done(status);
  } else if (auto* drop = std::get_if<DropTask>(&task)) {
    if (drop->done) drop->done(status);
  } else {
    auto& job = std::get<SweepTask>(task).job;
    if (job->done) job->done(status);
  }
}

void Writer::run() {
  std::vector<Queued> group;
  group.reserve(std::min<size_t>(state_.options.group_commit_max, 4096));
  std::vector<Report> reports;
  for (;;) {
    bool stop = false;
    bool timed_out = false;
    {
      std::unique_lock lock(mu_);
      auto ready = [this] {
        return !reports_.empty() || stopping_ || (!queue_.empty() && !throttled());
      };
      if (refusal_.ok()) {
        wake_.wait(lock, ready);
      } else {
        // Refused writes bring no groups, so the batch is retried when this runs out.
        timed_out = !wake_.wait_for(lock, apply_retry_delay_, ready);
      }
      reports.swap(reports_);
      stop = queue_.empty() && stopping_;  // everything queued is committed
      // A sweep is a group of its own, so that its expiries are the only writes of the
      // group and it hands on everything staged before it; so are drops, the ones queued
      // one after another together (one transaction: see Applier::DropTail).
      const size_t n =
          throttled() && !stopping_ ? 0 : std::min(queue_.size(), state_.options.group_commit_max);
      for (size_t i = 0; i < n; ++i) {
        const bool sweep = std::holds_alternative<SweepTask>(queue_.front().task);
        const bool drop = std::holds_alternative<DropTask>(queue_.front().task);
        const bool drops = !group.empty() && std::holds_alternative<DropTask>(group.front().task);
        if (!group.empty() && (sweep || drop != drops)) break;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
        if (sweep) break;
      }
    }
    take_reports(reports);
    if (stop) break;
    // After a failed batch, one is handed on again after the next group, or on the timer
    // when writes are refused: not in a loop of failing transactions.
    bool may_retry = timed_out;
    if (!group.empty()) {
      size_t counted =
          std::count_if(group.begin(), group.end(), [](const Queued& q) { return q.counted; });
      state_.queued.fetch_sub(counted);
      if (std::holds_alternative<DropTask>(group.front().task)) {
        drop_partitions(group);
      } else {
        commit_group(group);
      }
      group.clear();
      may_retry = true;
    } else if (applied_id_ > deleted_id_) {
      // Idle: delete the applied writes' stage rows now rather than with the next groups.
      const uint64_t deleted_before = deleted_id_;
      Status deleted = begin_.run();
      if (deleted.ok()) deleted = delete_applied(UINT64_MAX);
      if (deleted.ok()) deleted = commit_.run();
      if (!deleted.ok()) {
        if (db_.in_transaction()) (void)rollback_.run();
        deleted_id_ = deleted_before;  // tried again with the next group
        EDGEKV_LOG(kWarning) << "store: deleting applied stage rows failed: "
                             << deleted.to_string();
      } else if (staged_.size() == 0) {
        shrink_stage_file();
      }
    }
    if (!apply_failing_ || may_retry) post_if_due();
    update_refusal();
    state_.disk.maintain();
  }
  // A clean stop leaves nothing staged, so the stage table of a closed store is empty.
  post_all();
  while (in_flight_ > 0) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return !reports_.empty(); });
      reports.swap(reports_);
    }
    take_reports(reports);
    if (apply_failing_) break;  // logged by the applier
  }
  Status deleted = begin_.run();
  if (deleted.ok()) deleted = delete_applied(UINT64_MAX);
  if (deleted.ok()) deleted = commit_.run();
  if (!deleted.ok() && db_.in_transaction()) (void)rollback_.run();
  if (staged_.size() > 0) {
    EDGEKV_LOG(kError) << "store: " << db_.path() << ": " << staged_.size()
                       << " staged writes stay staged until the next open: "
                       << last_apply_error_.to_string();
  }
}

void Writer::take_reports(std::vector<Report>& reports) {
  for (Report& r : reports) {
    if (r.epoch != epoch_) continue;  // dropped behind a failure already taken
    if (r.status.ok()) {
      in_flight_ -= std::min(in_flight_, r.writes);
      applied_id_ = std::max(applied_id_, r.last_id);
      apply_failing_ = false;
    } else {
      // The applier drops the rest of this epoch; hand everything on again, oldest first.
      // Counted here, once the writer knows: from then on it refuses writes at the cap.
      state_.counters.apply_failures.fetch_add(1, std::memory_order_relaxed);
      apply_failing_ = true;
      last_apply_error_ = r.status;
      ++epoch_;
      in_flight_ = 0;
      posted_id_ = applied_id_;
    }
  }
  reports.clear();
}

void Writer::shrink_stage_file() {
  Result<std::string> free_pages = db_.query_text("PRAGMA freelist_count", "count free pages");
  if (!free_pages.ok() || std::stoll(*free_pages) < kStageShrinkPages) return;
  // Gives the free pages back to the file system (the stage file is created with
  // auto_vacuum=INCREMENTAL); the WAL's next checkpoint truncates the file.
  Status shrunk = db_.exec("PRAGMA incremental_vacuum", "shrink stage file");
  if (!shrunk.ok()) {
    EDGEKV_LOG(kWarning) << "store: " << shrunk.to_string();
  }
}

Status Writer::delete_applied(uint64_t max_rows) {
  if (applied_id_ <= deleted_id_) return Status();
  const uint64_t through =
      applied_id_ - deleted_id_ <= max_rows ? applied_id_ : deleted_id_ + max_rows;
  delete_staged_.bind_u64(1, through);
  EDGEKV_RETURN_IF_ERROR(delete_staged_.run());
  deleted_id_ = through;
  return Status();
}

Status Writer::stage_group(std::vector<Queued>& group, const Status& put_refusal,
                           std::vector<Outcome>& outcomes, GroupTotals* totals,
                           bool* out_of_space) {
  const uint64_t deleted_before = deleted_id_;
  Status status = begin_.run();
  // A slice per group: deleting a whole batch's rows would hold up this group's writes.
  if (status.ok()) status = delete_applied(kDeleteSlice);
  for (size_t i = 0; status.ok() && i < group.size(); ++i) {
    if (auto* apply = std::get_if<ApplyTask>(&group[i].task)) {
      status = stage_one(*apply, &outcomes[i], totals, put_refusal);
    } else if (auto* hint = std::get_if<HintTask>(&group[i].task)) {
      status = stage_hint(*hint, &outcomes[i], put_refusal);
    } else {
      status = sweep_file(*std::get<SweepTask>(group[i].task).job, &outcomes[i], totals);
    }
  }
  if (status.ok()) status = commit_.run();
  // Ends the group's reads: an open read transaction would hold checkpoints back.
  end_read();
  if (status.ok()) return status;

  *out_of_space = sql::is_disk_full(db_.handle());  // before the rollback forgets it
  if (db_.in_transaction()) {
    Status rolled_back = rollback_.run();
    if (!rolled_back.ok()) {
      EDGEKV_LOG(kError) << "store: rollback failed: " << rolled_back.to_string();
    }
  }
  deleted_id_ = deleted_before;
  state_.hint_bytes.fetch_sub(hint_bytes_reserved_);
  hint_bytes_reserved_ = hint_bytes_freed_ = 0;
  hint_count_delta_ = 0;
  pending_.clear();
  pending_newest_.clear();
  pending_old_.clear();
  pending_bytes_ = 0;
  abandon();
  // Give the staged writes back their records (stage_one moved them into the events), so
  // that the group can be staged again.
  for (size_t i = 0; i < group.size(); ++i) {
    auto* apply = std::get_if<ApplyTask>(&group[i].task);
    if (apply == nullptr || !outcomes[i].apply.applied) continue;
    apply->record.key = std::move(outcomes[i].apply.event.key);
    apply->record.value = std::move(outcomes[i].apply.event.value);
  }
  return status;
}

void Writer::commit_group(std::vector<Queued>& group) {
  DiskGuard& disk = state_.disk;
  // Out of space, puts are refused but for a probe now and then (disk_guard.h).
  const bool was_full = disk.full();
  Status put_refusal = disk.take_probe() ? Status() : disk.refusal();
  std::vector<Outcome> outcomes(group.size());
  GroupTotals totals;
  bool out_of_space = false;
  Status status = stage_group(group, put_refusal, outcomes, &totals, &out_of_space);
  if (!status.ok() && out_of_space) {
    disk.enter_full(db_.path(), status);
    // The room the reserve gave back is for deletes and expiry: stage the group again
    // without its puts and hints, which get the full disk's refusal.
    const bool others = std::any_of(group.begin(), group.end(), [](const Queued& q) {
      if (std::holds_alternative<SweepTask>(q.task)) return true;
      if (const auto* hint = std::get_if<HintTask>(&q.task)) return hint->remove;
      const auto* apply = std::get_if<ApplyTask>(&q.task);
      return apply != nullptr && apply->record.tombstone;
    });
    if (put_refusal.ok() && others) {
      put_refusal = disk.refusal();
      outcomes.assign(group.size(), Outcome{});
      totals = GroupTotals{};
      status = stage_group(group, put_refusal, outcomes, &totals, &out_of_space);
    }
  }

  if (status.ok()) {
    for (const StagedWrite& w : pending_) remember_written(w);
    publish_writes();
    state_.hint_bytes.fetch_sub(hint_bytes_freed_);
    state_.hints.fetch_add(static_cast<uint64_t>(hint_count_delta_));
    hint_bytes_reserved_ = hint_bytes_freed_ = 0;
    hint_count_delta_ = 0;
    pending_newest_.clear();
    pending_bytes_ = 0;
    publish(totals);
    if (failing_) {
      failing_ = false;
      EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": commits succeed again";
    }
    if (disk.full()) report_free_pages();
    // A probe's puts committed, and this file's batches apply: there is room again.
    if (was_full && put_refusal.ok() && totals.puts > 0 && !apply_failing_) {
      disk.resume(db_.path());
    }
  } else if (!failing_) {  // once per run of failures, not once per group
    failing_ = true;
    EDGEKV_LOG(kError) << "store: a commit group of " << group.size()
                       << " tasks failed, none applied: " << status.to_string();
  }

  // Callbacks only now: an apply is acknowledged after its transaction committed.
  for (size_t i = 0; i < group.size(); ++i) {
    Task& task = group[i].task;
    if (!status.ok()) {
      answer(task, status);
    } else if (!outcomes[i].refused.ok()) {
      answer(task, outcomes[i].refused);
    } else if (auto* apply = std::get_if<ApplyTask>(&task)) {
      if (apply->done) apply->done(std::move(outcomes[i].apply));
    } else if (auto* hint = std::get_if<HintTask>(&task)) {
      if (hint->done) hint->done(std::move(outcomes[i].apply));
    } else {
      std::shared_ptr<SweepJob>& job = std::get<SweepTask>(task).job;
      std::move(outcomes[i].events.begin(), outcomes[i].events.end(),
                std::back_inserter(job->events));
      // The applier purges and trims once everything staged so far is applied.
      post_all();
      applier_->post(
          Applier::SweepTail{epoch_, job, [this, job](Status done) { finish_sweep(job, done); }});
    }
  }
}

void Writer::publish_writes() {
  FileDigests& digests = *state_.digests[file_];
  std::lock_guard lock(digests.mu);
  for (size_t i = 0; i < pending_.size(); ++i) {
    const StagedWrite& w = pending_[i];
    FileDigests::Partition* d = digests.by_slot[state_.layout.slot_of(w.partition)].get();
    if (d == nullptr) continue;  // not asked for: a scan will find the write
    const DigestOld& old = pending_old_[i];
    // A tombstone read as `old` that the applier purged since is out of the digest already.
    if (old.exists && (old.in_group || digests.purged.count(w.key) == 0)) {
      d->leaves.remove(w.key, old.version, old.tombstone, old.expiry_ms);
    }
    d->leaves.add(w.key, w.version, w.tombstone, w.expiry_ms);
  }
  digests.purged.clear();
  pending_old_.clear();
  staged_.add(pending_);
}

void Writer::report_free_pages() {
  // Outside a transaction: the newest snapshot, with the batches applied so far.
  Result<std::string> pages = read_db_.query_text("PRAGMA freelist_count", "count free pages");
  if (pages.ok()) state_.disk.set_free_pages(file_, std::stoull(*pages) * kPageBytes);
}

void Writer::drop_partitions(std::vector<Queued>& group) {
  // The applier runs its jobs in order: the batches handed on here (every write staged
  // before the drops, of any partition of the file) apply first, and the drops fail with
  // their error if one fails, changing nothing.
  post_all();
  std::vector<uint32_t> partitions;
  partitions.reserve(group.size());
  for (Queued& q : group) partitions.push_back(std::get<DropTask>(q.task).partition);
  std::promise<Status> dropped;
  std::future<Status> result = dropped.get_future();
  applier_->post(Applier::DropTail{
      epoch_, partitions, [&dropped](const Status& status) { dropped.set_value(status); }});
  const Status status = result.get();
  // The next group's reads see the partitions without their rows.
  end_read();
  if (status.ok()) {
    // Nothing of the partitions is staged any more (it all applied before the drops), so
    // their keys have no rows to remember: one pass over the row cache for them all (it
    // holds up to row_cache_entries keys; a pass per partition held the writer for
    // seconds when a hand-over dropped a quarter of the partitions).
    std::vector<bool> gone(state_.layout.partitions, false);
    for (uint32_t p : partitions) gone[p] = true;
    for (auto it = row_cache_.begin(); it != row_cache_.end();) {
      if (gone[edgekv::partition_of(it->first, state_.layout.partitions)]) {
        it = row_cache_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Queued& q : group) dropped_partition(std::get<DropTask>(q.task), status);
}

void Writer::dropped_partition(DropTask& task, const Status& status) {
  if (status.ok()) {
    // Its row count is 0 (the row cache forgot its keys already).
    PartitionState& ps = state_.partitions[task.partition];
    ps.live_rows.store(0);
    ps.horizon_hlc.store(0);
    ps.horizon_seq.store(0);
    ps.drops.fetch_add(1);
    EDGEKV_LOG(kNotice) << "store: dropped partition " << task.partition << " (its change log "
                        << "stays, through seq " << ps.last_seq.load() << ")";
  } else {
    EDGEKV_LOG(kError) << "store: dropping partition " << task.partition
                       << " failed, it stays whole: " << status.to_string();
  }
  if (task.done) task.done(status);
}

void Writer::finish_sweep(std::shared_ptr<SweepJob> job, const Status& status) {
  if (!status.ok()) {
    if (job->done) job->done(status);
  } else if (next_ != nullptr) {
    next_->hand_on(std::move(job));
  } else if (job->done) {
    job->done(std::move(job->events));
  }
}

Writer::Slot& Writer::touch(uint32_t partition) {
  Slot& slot = slots_[state_.layout.slot_of(partition)];
  if (!slot.touched) {
    slot.touched = true;
    touched_.push_back(partition);
  }
  return slot;
}

void Writer::publish(const GroupTotals& totals) {
  for (uint32_t p : touched_) {
    Slot& slot = slots_[state_.layout.slot_of(p)];
    PartitionState& ps = state_.partitions[p];
    ps.last_seq.store(slot.seq);
    ps.live_rows.fetch_add(slot.live_delta);
    slot.live_delta = 0;
    slot.touched = false;
  }
  touched_.clear();
  Counters& c = state_.counters;
  c.puts_applied.fetch_add(totals.puts, std::memory_order_relaxed);
  c.deletes_applied.fetch_add(totals.deletes, std::memory_order_relaxed);
  c.writes_ignored.fetch_add(totals.ignored, std::memory_order_relaxed);
  c.writes_below_horizon.fetch_add(totals.below_horizon, std::memory_order_relaxed);
  c.expired.fetch_add(totals.expired, std::memory_order_relaxed);
  c.group_writes.fetch_add(totals.writes, std::memory_order_relaxed);
  c.commit_groups.fetch_add(1, std::memory_order_relaxed);
}

void Writer::abandon() {
  // The transaction rolled back: forget what it did to sequence numbers and row counts.
  for (uint32_t p : touched_) {
    Slot& slot = slots_[state_.layout.slot_of(p)];
    slot.seq = state_.partitions[p].last_seq.load();
    slot.live_delta = 0;
    slot.touched = false;
  }
  touched_.clear();
}

Result<Writer::KeyState> Writer::key_state(Slot& slot, std::string_view key) {
  KeyState state;
  StagedWrite staged;
  const StagedWrite* newest = nullptr;
  if (auto it = pending_newest_.find(key); it != pending_newest_.end()) {
    newest = it->second;
  } else if (staged_.find_state(key, &staged)) {
    newest = &staged;
  }
  if (newest != nullptr) {
    // A key's staged writes share the row they found (`base`).
    state.staged = true;
    state.exists = true;
    state.tombstone = newest->tombstone;
    state.version = newest->version;
    state.expiry_ms = newest->expiry_ms;
    state.in_group = newest != &staged;
    state.base = newest->base;
    if (newest == &staged) {
      state.base_from = staged.id;
      state.base_if_applied = staged.row_after();
    } else {
      state.base_from = newest->base_from;
      state.base_if_applied = newest->base_if_applied;
    }
    return state;
  }
  // Not staged: its row, as last written (the row cache) or read.
  if (auto it = row_cache_.find(key); it != row_cache_.end()) {
    state.exists = it->second.row.exists;
    state.version = it->second.version;
    state.expiry_ms = it->second.row.expiry_ms;
    state.base = it->second.row;
    return state;
  }
  // A partition without tables has no rows: its writes are all staged (has_tables).
  Result<bool> tables = tables_ready(slot);
  if (!tables.ok()) return tables.status();
  if (!*tables) return state;
  // A batch applied meanwhile left the staged writes only after it committed, and
  // fresh_read() takes a snapshot that has it, so a write is found in one place or the
  // other.
  EDGEKV_RETURN_IF_ERROR(fresh_read());
  sql::StmtScope scope(slot.select_row);
  slot.select_row.bind_blob(1, key);
  slot.select_row.bind_int64(2, digest_leaf(key));
  Result<bool> row = slot.select_row.step();
  if (!row.ok()) return row.status();
  if (*row) {
    state.exists = true;
    state.version = Version{slot.select_row.u64_at(0), slot.select_row.u64_at(1)};
    state.tombstone = slot.select_row.int64_at(2) != 0;
    state.expiry_ms = slot.select_row.int64_at(3);
    state.base = RowState{true, state.tombstone, state.expiry_ms};
  }
  if (!state.tombstone) remember_row(key, state.base, state.version);
  return state;
}

void Writer::remember_row(std::string_view key, const RowState& row, Version version) {
  const size_t max = state_.options.row_cache_entries;
  if (max == 0) return;
  if (auto it = row_cache_.find(key); it != row_cache_.end()) {
    it->second = CachedRow{version, row};
    return;
  }
  if (row_cache_.size() >= max) {
    // Forget the first key of a random bucket: no order to keep up on every write, and
    // keys written again soon are remembered again when they are.
    size_t bucket = cache_rng_.uniform(row_cache_.bucket_count());
    while (row_cache_.bucket_size(bucket) == 0) bucket = (bucket + 1) % row_cache_.bucket_count();
    row_cache_.erase(row_cache_.find(row_cache_.begin(bucket)->first));
  }
  row_cache_.emplace(std::string(key), CachedRow{version, row});
}

void Writer::remember_written(const StagedWrite& w) {
  if (w.tombstone) {
    if (auto it = row_cache_.find(std::string_view(w.key)); it != row_cache_.end()) {
      row_cache_.erase(it);
    }
    return;
  }
  remember_row(w.key, w.row_after(), w.version);
}

Status Writer::fresh_read() {
  const uint64_t removals = staged_.removals();
  if (reading_ && removals == read_removals_) return Status();
  if (reading_) end_read();
  read_removals_ = removals;
  EDGEKV_RETURN_IF_ERROR(read_begin_.run());
  reading_ = true;
  return Status();
}

void Writer::end_read() {
  if (!reading_) return;
  reading_ = false;
  // A read transaction ends without error; if it did not, the next BEGIN says so.
  (void)read_end_.run();
}

Status Writer::stage_write(Slot& slot, StagedWrite& w, const DigestOld& old) {
  w.id = next_stage_id_++;
  w.seq = slot.seq + 1;
  sql::Stmt& s = insert_stage_;
  s.bind_u64(1, w.id);
  s.bind_int64(2, w.partition);
  s.bind_u64(3, w.seq);
  s.bind_blob(4, w.key);
  s.bind_u64(5, w.version.hlc);
  s.bind_u64(6, w.version.origin);
  s.bind_int64(7, w.expiry_ms);
  s.bind_int64(8, static_cast<int64_t>(w.op()));
  s.bind_int64(9, static_cast<int64_t>(w.codec));
  s.bind_blob(10, w.value);
  EDGEKV_RETURN_IF_ERROR(s.run());
  pending_newest_[w.key] = &w;
  pending_old_.push_back(old);
  pending_bytes_ += StagedWrites::footprint(w);
  slot.seq = w.seq;
  return Status();
}

Status Writer::stage_one(ApplyTask& task, Outcome* out, GroupTotals* totals,
                         const Status& put_refusal) {
  // Writes queued before the file reached the cap get there too: refused, not staged, so
  // the cap holds to within one write. The rest of the group commits.
  if (at_cap()) {
    out->refused = cap_refusal();
    return Status();
  }
  if (!put_refusal.ok() && !task.record.tombstone) {
    out->refused = put_refusal;
    return Status();
  }
  ++totals->writes;
  Record& record = task.record;
  Slot& slot = slots_[state_.layout.slot_of(task.partition)];
  Result<KeyState> key = key_state(slot, record.key);
  if (!key.ok()) return key.status();
  const bool live_before = key->exists && !key->tombstone;
  out->apply.current = key->version;
  if (key->exists && !(record.version > key->version)) {
    ++totals->ignored;
    return Status();
  }
  // A key with no row may have had a tombstone the purge took: a write older than the
  // purge horizon could be one it superseded (Store::set_purge_horizon).
  // A tombstone below it to a key with no row adds nothing: the key's absence already
  // holds older writes out, and taking it again after its purge would log the same delete
  // twice (a repair from a replica that has not purged it yet).
  const bool leaves_tombstone =
      record.tombstone || (record.expiry.ms != 0 && record.expiry <= task.now);
  if ((task.relayed || leaves_tombstone) && !key->exists &&
      state_.options.tombstone_purge == TombstonePurge::kByHorizon &&
      record.version.hlc < state_.partitions[task.partition].horizon_hlc.load()) {
    ++totals->ignored;
    if (task.relayed && !leaves_tombstone) ++totals->below_horizon;
    return Status();
  }
  // A put that arrives already expired is newer than what is stored: it leaves the
  // tombstone its expiry would have left, so that an older copy arriving later stays out.
  const bool expired = !record.tombstone && record.expiry.ms != 0 && record.expiry <= task.now;

  touch(task.partition);
  StagedWrite& w = pending_.emplace_back();
  w.partition = task.partition;
  w.version = record.version;
  w.tombstone = record.tombstone || expired;
  // A tombstone keeps the expiry it came with: 0 for a delete, the key's expiry for an
  // expiry tombstone copied from another replica. Either hides the key whatever the time.
  w.expire = w.tombstone && record.expiry.ms != 0;
  w.expiry_ms = record.expiry.ms;
  if (w.tombstone) record.value.clear();
  w.value = encoder_.encode(record.value, &w.codec);
  w.key = record.key;
  w.base = key->base;
  w.base_from = key->base_from;
  w.base_if_applied = key->base_if_applied;
  Status staged = stage_write(
      slot, w, DigestOld{key->exists, key->tombstone, key->in_group, key->version, key->expiry_ms});
  if (!staged.ok()) {
    pending_.pop_back();
    return staged;
  }
  slot.live_delta += (w.tombstone ? 0 : 1) - (live_before ? 1 : 0);
  ++(w.expire ? totals->expired : w.tombstone ? totals->deletes : totals->puts);

  out->apply.applied = true;
  out->apply.current = w.version;
  ChangeEvent& event = out->apply.event;
  event.op = w.op();
  event.key = std::move(record.key);
  event.value = std::move(record.value);
  event.version = w.version;
  event.expiry = WallTime{w.expiry_ms};
  event.partition = task.partition;
  event.seq = w.seq;
  return Status();
}

Status Writer::stage_hint(HintTask& task, Outcome* out, const Status& put_refusal) {
  // A hint adds data: refused on a full disk as a put is (disk_guard.h).
  if (!put_refusal.ok() && !task.remove) {
    out->refused = put_refusal;
    return Status();
  }
  const Record& record = task.record;
  uint64_t old_bytes = 0;
  bool exists = false;
  {
    sql::StmtScope scope(select_hint_);
    select_hint_.bind_blob(1, task.owner);
    select_hint_.bind_blob(2, record.key);
    Result<bool> row = select_hint_.step();
    if (!row.ok()) return row.status();
    if (*row) {
      exists = true;
      out->apply.current = Version{select_hint_.u64_at(0), select_hint_.u64_at(1)};
      old_bytes = select_hint_.u64_at(2) + kHintOverheadBytes;
    }
  }
  if (task.remove) {
    if (!exists || out->apply.current != record.version) return Status();
    delete_hint_.bind_blob(1, task.owner);
    delete_hint_.bind_blob(2, record.key);
    EDGEKV_RETURN_IF_ERROR(delete_hint_.run());
    hint_bytes_freed_ += old_bytes;
    --hint_count_delta_;
    out->apply.applied = true;
    return Status();
  }
  if (exists && !(record.version > out->apply.current)) return Status();

  // As apply() stores it: a put already expired at `now` is kept as its expiry tombstone.
  const bool expired = !record.tombstone && record.expiry.ms != 0 && record.expiry <= task.now;
  const bool tombstone = record.tombstone || expired;
  Codec codec = Codec::kRaw;
  std::string value =
      tombstone ? std::string() : std::string(encoder_.encode(record.value, &codec));
  const uint64_t new_bytes =
      task.owner.size() + record.key.size() + value.size() + kHintOverheadBytes;
  if (new_bytes > old_bytes) {
    // Reserved at once, so that the writers of several files share the bound exactly.
    const uint64_t grow = new_bytes - old_bytes;
    const uint64_t max = state_.options.hints_max_bytes;
    uint64_t held = state_.hint_bytes.load();
    do {
      if (held > max || grow > max - held) {
        out->refused = Status::overloaded("hints hold " + std::to_string(held) +
                                          " bytes and this one needs " + std::to_string(grow) +
                                          " more (hints_max_bytes=" + std::to_string(max) +
                                          "); not keeping a hint for " + task.owner);
        return Status();
      }
    } while (!state_.hint_bytes.compare_exchange_weak(held, held + grow));
    hint_bytes_reserved_ += grow;
  } else {
    hint_bytes_freed_ += old_bytes - new_bytes;
  }

  sql::Stmt& u = upsert_hint_;
  u.bind_blob(1, task.owner);
  u.bind_blob(2, record.key);
  u.bind_u64(3, record.version.hlc);
  u.bind_u64(4, record.version.origin);
  u.bind_int64(5, record.expiry.ms);
  u.bind_int64(6, tombstone ? 1 : 0);
  u.bind_int64(7, static_cast<int64_t>(codec));
  u.bind_blob(8, value);
  EDGEKV_RETURN_IF_ERROR(u.run());
  if (!exists) ++hint_count_delta_;

  out->apply.applied = true;
  out->apply.current = record.version;
  ChangeEvent& event = out->apply.event;
  event.op = expired || (tombstone && record.expiry.ms != 0) ? ChangeOp::kExpire
             : tombstone                                     ? ChangeOp::kDelete
                                                             : ChangeOp::kPut;
  event.key = record.key;
  event.version = record.version;
  event.expiry = record.expiry;
  event.partition = edgekv::partition_of(record.key, state_.layout.partitions);
  return Status();
}

void Writer::post_batch(size_t max) {
  Applier::Batch batch;
  batch.epoch = epoch_;
  staged_.collect(posted_id_, max, &batch.writes, &batch.write_row);
  if (batch.writes.empty()) return;
  posted_id_ = batch.writes.back()->id;
  in_flight_ += batch.writes.size();
  applier_->post(std::move(batch));
}

void Writer::post_all() {
  // Until nothing is left that was not handed on. (Not from the counts: the applier drops
  // a batch from the staged writes before the writer hears it applied.)
  const size_t batch = std::max<size_t>(state_.options.stage_apply_batch, 1);
  for (;;) {
    const uint64_t before = posted_id_;
    post_batch(batch);
    if (posted_id_ == before) break;
  }
}

void Writer::post_if_due() {
  const StoreOptions& o = state_.options;
  // One batch on its way at a time: the next one is due, if at all, when it applied.
  if (in_flight_ > 0 || staged_.size() == 0) return;
  // Nearly out of space, what is staged is applied at once: a full disk then finds little
  // staged that still needs room in the data file (disk_guard.h).
  if (!state_.disk.eager() && staged_.size() < o.stage_apply_at &&
      staged_.bytes() < o.stage_apply_bytes && staged_.bytes() < o.stage_max_bytes) {
    return;
  }
  // The oldest stage_apply_batch, or more when the applier fell behind: as many as leave
  // stage_apply_at - stage_apply_batch staged, where a file that keeps up stays. At most
  // kMaxCatchUp batches' worth, so that dropping a batch from the index (under the lock
  // that reads take) stays short; further behind, the cap throttles the writer.
  const size_t batch = std::max<size_t>(o.stage_apply_batch, 1);
  const size_t over = staged_.size() > o.stage_apply_at ? staged_.size() - o.stage_apply_at : 0;
  post_batch(std::min(batch + over, kMaxCatchUp * batch));
}

bool Writer::throttled() const {
  if (apply_failing_ || in_flight_ == 0) return false;
  const uint64_t bytes = staged_.bytes();
  // Nearly out of space, little may wait to be applied: it needs room when the disk fills
  // (disk_guard.h, low_space_stage_bytes).
  return bytes >= state_.options.stage_max_bytes ||
         (state_.disk.eager() && bytes >= state_.disk.low_space_stage_bytes());
}

bool Writer::at_cap() const {
  return apply_failing_ && staged_.bytes() + pending_bytes_ >= state_.options.stage_max_bytes;
}

Status Writer::cap_refusal() const {
  return Status::overloaded(
      "staged writes not yet applied reached " + std::to_string(staged_.bytes() + pending_bytes_) +
      " bytes (stage_max_bytes=" + std::to_string(state_.options.stage_max_bytes) +
      "): applying them fails: " + last_apply_error_.to_string());
}

void Writer::update_refusal() {
  const bool refuse = at_cap();
  if (!refuse && !refusing_) return;  // the common case: nothing to publish, no lock
  Status refusal = refuse ? cap_refusal() : Status();
  if (refuse && !refusing_) {
    EDGEKV_LOG(kError) << "store: " << db_.path() << ": refusing writes: " << refusal.message();
    apply_retry_delay_ = kFirstApplyRetry;
  } else if (refuse) {
    apply_retry_delay_ = std::min(apply_retry_delay_ * 2, kMaxApplyRetry);
  } else {
    EDGEKV_LOG(kNotice) << "store: " << db_.path()
                        << ": staged writes are below stage_max_bytes again; accepting writes";
  }
  refusing_ = refuse;
  std::lock_guard lock(mu_);
  refusal_ = std::move(refusal);
}

Status Writer::apply_left_staged() {
  const uint64_t applied = applier_->applied_stage_id();
  Result<sql::Stmt> select = db_.prepare(
      "SELECT id, partition, seq, key, hlc, origin, expiry_ms, op, codec, value"
      " FROM stage WHERE id > ?1 ORDER BY id",
      "read stage table");
  if (!select.ok()) return select.status();
  Result<std::string> max_id =
      db_.query_text("SELECT coalesce(max(id), 0) FROM stage", "read newest stage id");
  if (!max_id.ok()) return max_id.status();
  std::deque<StagedWrite> left;
  {
    sql::StmtScope scope(*select);
    select->bind_u64(1, applied);
    for (;;) {
      Result<bool> row = select->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      StagedWrite& w = left.emplace_back();
      w.id = select->u64_at(0);
      const int64_t partition = select->int64_at(1);
      w.seq = select->u64_at(2);
      w.key = std::string(select->blob_at(3));
      w.version = Version{select->u64_at(4), select->u64_at(5)};
      w.expiry_ms = select->int64_at(6);
      const int64_t op = select->int64_at(7);
      const int64_t codec = select->int64_at(8);
      w.value = std::string(select->blob_at(9));
      if (partition < 0 || partition >= state_.layout.partitions ||
          state_.layout.file_of(static_cast<uint32_t>(partition)) != file_ ||
          op < static_cast<int64_t>(ChangeOp::kPut) ||
          op > static_cast<int64_t>(ChangeOp::kExpire) ||
          (codec != static_cast<int64_t>(Codec::kRaw) &&
           codec != static_cast<int64_t>(Codec::kZstd))) {
        return Status::corruption(db_.path() + ": stage row " + std::to_string(w.id) +
                                  " names partition " + std::to_string(partition) + ", op " +
                                  std::to_string(op) + " and codec " + std::to_string(codec) +
                                  ", which this file does not hold");
      }
      w.partition = static_cast<uint32_t>(partition);
      w.expire = op == static_cast<int64_t>(ChangeOp::kExpire);
      // Format 4 deleted an expired row; format 5 leaves its expiry tombstone either way.
      w.tombstone = w.expire || op == static_cast<int64_t>(ChangeOp::kDelete);
      w.codec = static_cast<Codec>(codec);
      // The rows apply in staging order; a row that is not there is inserted.
      w.base = RowState{true, false, 0};
    }
  }
  EDGEKV_RETURN_IF_ERROR(applier_->apply_now(left));
  // Ids go on above every id used, applied or not, so that the data file's applied id
  // never covers a new write.
  next_stage_id_ = std::max<uint64_t>(applied, std::stoull(*max_id)) + 1;
  applied_id_ = posted_id_ = deleted_id_ = next_stage_id_ - 1;
  EDGEKV_RETURN_IF_ERROR(db_.exec("DELETE FROM stage", "empty stage table"));
  if (!left.empty()) {
    EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": applied " << left.size()
                        << " staged writes left by the previous run";
  }
  return Status();
}

Status Writer::sweep_file(SweepJob& job, Outcome* out, GroupTotals* totals) {
  const uint32_t n = static_cast<uint32_t>(slots_.size());
  if (n == 0) return Status();
  const uint32_t start = sweep_cursor_;
  sweep_cursor_ = (sweep_cursor_ + 1) % n;
  for (uint32_t i = 0; i < n && job.expire_left > 0; ++i) {
    EDGEKV_RETURN_IF_ERROR(expire_in(slots_[(start + i) % n], job, out, totals));
  }
  return Status();
}

Status Writer::expire_in(Slot& slot, SweepJob& job, Outcome* out, GroupTotals* totals) {
  struct Expired {
    std::string key;
    Version version;
    int64_t expiry_ms;
    RowState base;
    uint64_t base_from = 0;  // as in StagedWrite
    RowState base_if_applied;
  };
  // The partition's expired keys, soonest expiry first (then by key, as the expiry index
  // orders rows): rows with no staged write, and keys whose newest staged write is an
  // expired put.
  std::vector<Expired> found;
  std::unordered_set<std::string_view> staged_keys;
  for (const StagedWrite& w : staged_.expired(slot.partition, job.now)) {
    found.push_back(Expired{w.key, w.version, w.expiry_ms, w.base, w.id, w.row_after()});
  }
  for (const Expired& e : found) staged_keys.insert(e.key);
  std::vector<std::string> rows;
  Result<bool> tables = tables_ready(slot);
  if (!tables.ok()) return tables.status();
  if (*tables) {
    EDGEKV_RETURN_IF_ERROR(fresh_read());
    sql::Stmt& s = slot.select_expired;
    sql::StmtScope scope(s);
    s.bind_int64(1, job.now.ms);
    // Rows of keys staged since are skipped below; read enough to fill the budget anyway.
    s.bind_int64(2, static_cast<int64_t>(std::min<size_t>(
                        job.expire_left + staged_.size() + pending_.size(), INT64_MAX)));
    for (;;) {
      Result<bool> row = s.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      if (staged_keys.count(s.blob_at(0)) == 0) rows.emplace_back(s.blob_at(0));
    }
  }
  // The scan's snapshot may predate a batch applied meanwhile: each key's state is taken
  // again, staged writes first (key_state), and kept if it is an expired row.
  for (std::string& key : rows) {
    Result<KeyState> state = key_state(slot, key);
    if (!state.ok()) return state.status();
    if (state->staged || !state->exists || state->tombstone) continue;
    const int64_t expiry_ms = state->base.expiry_ms;
    if (expiry_ms == 0 || expiry_ms > job.now.ms) continue;
    found.push_back(Expired{std::move(key), state->version, expiry_ms, state->base, 0, RowState{}});
  }
  std::sort(found.begin(), found.end(), [](const Expired& a, const Expired& b) {
    return a.expiry_ms != b.expiry_ms ? a.expiry_ms < b.expiry_ms : a.key < b.key;
  });
  if (found.size() > job.expire_left) found.resize(job.expire_left);
  if (found.empty()) return Status();
  touch(slot.partition);
  for (Expired& e : found) {
    StagedWrite& w = pending_.emplace_back();
    w.partition = slot.partition;
    w.key = e.key;
    w.version = e.version;
    w.expiry_ms = e.expiry_ms;
    w.tombstone = true;  // the expiry tombstone keeps the version and the expiry
    w.expire = true;
    w.base = e.base;
    w.base_from = e.base_from;
    w.base_if_applied = e.base_if_applied;
    // The expired row, live until now: its entry and its tombstone's are the same.
    Status staged = stage_write(slot, w, DigestOld{true, false, false, e.version, e.expiry_ms});
    if (!staged.ok()) {
      pending_.pop_back();
      return staged;
    }
    slot.live_delta -= 1;  // only live rows are found (the expiry index leaves tombstones out)
    ++totals->expired;

    ChangeEvent event;
    event.op = ChangeOp::kExpire;
    event.key = std::move(e.key);
    event.version = e.version;
    event.expiry = WallTime{e.expiry_ms};
    event.partition = slot.partition;
    event.seq = w.seq;
    out->events.push_back(std::move(event));
  }
  job.expire_left -= found.size();
  return Status();
}

}  // namespace edgekv::store
