#include "store/writer.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>

#include "common/hlc.h"
#include "common/log.h"

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

// Tombstones whose version's wall-clock part is older than `now - grace` may go: the
// newest hlc that counts as old, as the (signed) INTEGER the table stores.
int64_t tombstone_cutoff(WallTime now, int64_t grace_ms) {
  if (now.ms <= grace_ms) return 0;  // nothing is that old (and no underflow)
  int64_t physical = now.ms - grace_ms;
  constexpr int64_t kMaxPhysical = std::numeric_limits<int64_t>::max() >> HybridClock::kLogicalBits;
  if (physical > kMaxPhysical) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(HybridClock::pack(physical, 0));
}

}  // namespace

Writer::Writer(EngineState& state, uint32_t file, sql::Db db)
    : state_(state),
      file_(file),
      db_(std::move(db)),
      encoder_(state.options.compress_threshold_bytes, state.options.compress_level),
      staged_(*state.staged[file]) {}

Writer::~Writer() {
  if (thread_.joinable()) drain_and_join();
  if (db_.valid()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
}

Result<std::unique_ptr<Writer>> Writer::open(EngineState& state, uint32_t file, sql::Db db) {
  std::unique_ptr<Writer> writer(new Writer(state, file, std::move(db)));
  Result<std::unique_ptr<Checkpointer>> checkpointer =
      Checkpointer::open(writer->db_.path(), state.options.sync, state.options.checkpoint_pages,
                         &state.counters.checkpoints);
  if (!checkpointer.ok()) return checkpointer.status();
  writer->checkpointer_ = std::move(*checkpointer);
  EDGEKV_RETURN_IF_ERROR(writer->prepare_statements());
  EDGEKV_RETURN_IF_ERROR(writer->apply_left_staged());
  EDGEKV_RETURN_IF_ERROR(writer->load_partition_state());
  return writer;
}

Status Writer::prepare_statements() {
  auto prepare = [this](sql::Stmt* out, const std::string& sql, std::string_view what) {
    Result<sql::Stmt> stmt = db_.prepare(sql, what);
    if (!stmt.ok()) return stmt.status();
    *out = std::move(*stmt);
    return Status();
  };
  EDGEKV_RETURN_IF_ERROR(prepare(&begin_, "BEGIN IMMEDIATE", "begin"));
  EDGEKV_RETURN_IF_ERROR(prepare(&commit_, "COMMIT", "commit"));
  EDGEKV_RETURN_IF_ERROR(prepare(&rollback_, "ROLLBACK", "rollback"));
  EDGEKV_RETURN_IF_ERROR(prepare(&insert_stage_,
                                 "INSERT INTO stage (id, partition, seq, key, hlc, origin,"
                                 " expiry_ms, tombstone, codec, value)"
                                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                 "stage write"));
  EDGEKV_RETURN_IF_ERROR(
      prepare(&delete_staged_, "DELETE FROM stage WHERE id <= ?1", "delete applied stage rows"));

  const Layout& layout = state_.layout;
  slots_.resize(layout.partitions_in_file(file_));
  for (uint32_t p = file_; p < layout.partitions; p += layout.db_files) {
    Slot& slot = slots_[layout.slot_of(p)];
    slot.partition = p;
    const std::string kv = kv_table(p);
    const std::string log = log_table(p);
    EDGEKV_RETURN_IF_ERROR(prepare(
        &slot.select_row,
        "SELECT hlc, origin, tombstone, expiry_ms FROM " + kv + " WHERE key = ?1", "read row"));
    // Staging read the row, so applying mostly knows whether it exists: a plain UPDATE is
    // one b-tree descent cheaper than INSERT ... ON CONFLICT DO UPDATE, which is kept for
    // new keys and for rows that went away meanwhile.
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.insert_row,
                                   "INSERT INTO " + kv +
                                       " (key, hlc, origin, expiry_ms, tombstone, seq, codec, value)"
                                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                                       " ON CONFLICT (key) DO UPDATE SET hlc = ?2, origin = ?3,"
                                       " expiry_ms = ?4, tombstone = ?5, seq = ?6, codec = ?7,"
                                       " value = ?8",
                                   "insert row"));
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.update_row,
                                   "UPDATE " + kv +
                                       " SET hlc = ?2, origin = ?3, expiry_ms = ?4, tombstone = ?5,"
                                       " seq = ?6, codec = ?7, value = ?8 WHERE key = ?1",
                                   "update row"));
    EDGEKV_RETURN_IF_ERROR(
        prepare(&slot.delete_row, "DELETE FROM " + kv + " WHERE key = ?1", "delete row"));
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.insert_log,
                                   "INSERT INTO " + log +
                                       " (seq, op, hlc, origin, expiry_ms, key)"
                                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                   "append change log"));
    // `expiry_ms > 0` is spelled out so the planner may use the partial expiry index.
    EDGEKV_RETURN_IF_ERROR(
        prepare(&slot.select_expired,
                "SELECT key, hlc, origin, expiry_ms FROM " + kv +
                    " WHERE expiry_ms > 0 AND expiry_ms <= ?1 ORDER BY expiry_ms LIMIT ?2",
                "find expired rows"));
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.purge_tombstones,
                                   "DELETE FROM " + kv + " WHERE key IN (SELECT key FROM " + kv +
                                       " WHERE tombstone = 1 AND hlc >= 0 AND hlc < ?1 LIMIT ?2)",
                                   "purge tombstones"));
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.trim_log,
                                   "DELETE FROM " + log + " WHERE seq IN (SELECT seq FROM " + log +
                                       " WHERE seq < ?1 ORDER BY seq LIMIT ?2)",
                                   "trim change log"));
  }
  return Status();
}

Status Writer::load_partition_state() {
  for (Slot& slot : slots_) {
    const std::string kv = kv_table(slot.partition);
    Result<std::string> seq = db_.query_text(
        "SELECT coalesce(max(seq), 0) FROM " + log_table(slot.partition), "read last seq");
    if (!seq.ok()) return seq.status();
    // Total minus tombstones: both counts walk b-tree pages only (never value overflow
    // pages), the second one only the small partial tombstone index.
    Result<std::string> live =
        db_.query_text("SELECT (SELECT count(*) FROM " + kv + ") - (SELECT count(*) FROM " + kv +
                           " WHERE tombstone = 1)",
                       "count rows");
    if (!live.ok()) return live.status();
    slot.seq = std::stoull(*seq);
    PartitionState& ps = state_.partitions[slot.partition];
    ps.last_seq.store(slot.seq);
    ps.live_rows.store(std::stoll(*live));
  }
  return Status();
}

void Writer::start() {
  checkpointer_->start(db_.handle(), "edgekv-ck" + std::to_string(file_));
  thread_ = std::thread([this] {
    std::string name = "edgekv-wr" + std::to_string(file_);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    run();
  });
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
  if (checkpointer_) checkpointer_->stop();
}

void Writer::close_connection() {
  EDGEKV_ASSERT(!thread_.joinable());
  // The hook points at the checkpointer: unhook before it goes. Closing the last
  // connection checkpoints whatever is left, as before.
  if (db_.valid()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
  checkpointer_.reset();
  slots_.clear();  // statements first: a connection closes only once they are finalized
  begin_ = sql::Stmt();
  commit_ = sql::Stmt();
  rollback_ = sql::Stmt();
  db_ = sql::Db();
}

void Writer::answer(Task& task, const Status& status) {
  if (auto* apply = std::get_if<ApplyTask>(&task)) {
    if (apply->done) apply->done(status);
  } else {
    auto& job = std::get<SweepTask>(task).job;
    if (job->done) job->done(status);
  }
}

void Writer::run() {
  std::vector<Queued> group;
  group.reserve(std::min<size_t>(state_.options.group_commit_max, 4096));
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto ready = [this] { return !queue_.empty() || stopping_; };
      if (refusal_.ok()) {
        wake_.wait(lock, ready);
      } else {
        // Refused writes bring no groups, so the batch is retried when this runs out.
        wake_.wait_for(lock, apply_retry_delay_, ready);
      }
      if (queue_.empty() && stopping_) break;  // everything queued is committed
      // A sweep is a group of its own: it applies everything staged first, so it sees
      // every write in the partition tables, and no write of its group is left staged.
      size_t n = std::min(queue_.size(), state_.options.group_commit_max);
      for (size_t i = 0; i < n; ++i) {
        bool sweep = std::holds_alternative<SweepTask>(queue_.front().task);
        if (sweep && !group.empty()) break;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
        if (sweep) break;
      }
    }
    if (!group.empty()) {
      size_t counted =
          std::count_if(group.begin(), group.end(), [](const Queued& q) { return q.counted; });
      state_.queued.fetch_sub(counted);
      commit_group(group);
      group.clear();
    }
    apply_if_due();
    update_refusal();
  }
  // A clean stop leaves nothing staged, so the stage table of a closed store is empty.
  Status applied = apply_all_staged();
  if (!applied.ok()) {
    EDGEKV_LOG(kError) << "store: " << db_.path() << ": " << staged_.size()
                       << " staged writes stay staged until the next open: "
                       << applied.to_string();
  }
}

void Writer::commit_group(std::vector<Queued>& group) {
  std::vector<Outcome> outcomes(group.size());
  GroupTotals totals;
  Status status;
  if (std::holds_alternative<SweepTask>(group.front().task)) status = apply_all_staged();
  if (status.ok()) status = begin_.run();
  for (size_t i = 0; status.ok() && i < group.size(); ++i) {
    if (auto* apply = std::get_if<ApplyTask>(&group[i].task)) {
      status = stage_one(*apply, &outcomes[i], &totals);
    } else {
      status = sweep_file(*std::get<SweepTask>(group[i].task).job, &outcomes[i], &totals);
    }
  }
  if (status.ok()) status = commit_.run();

  if (status.ok()) {
    staged_.add(pending_);
    pending_newest_.clear();
    pending_bytes_ = 0;
    publish(totals);
    if (failing_) {
      failing_ = false;
      EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": commits succeed again";
    }
  } else {
    if (db_.in_transaction()) {
      Status rolled_back = rollback_.run();
      if (!rolled_back.ok()) {
        EDGEKV_LOG(kError) << "store: rollback failed: " << rolled_back.to_string();
      }
    }
    pending_.clear();
    pending_newest_.clear();
    pending_bytes_ = 0;
    abandon();
    if (!failing_) {  // once per run of failures, not once per group
      failing_ = true;
      EDGEKV_LOG(kError) << "store: a commit group of " << group.size()
                         << " tasks failed, none applied: " << status.to_string();
    }
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
    } else {
      std::shared_ptr<SweepJob>& job = std::get<SweepTask>(task).job;
      std::move(outcomes[i].events.begin(), outcomes[i].events.end(),
                std::back_inserter(job->events));
      if (next_ != nullptr) {
        next_->hand_on(std::move(job));
      } else if (job->done) {
        job->done(std::move(job->events));
      }
    }
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
  c.expired.fetch_add(totals.expired, std::memory_order_relaxed);
  c.tombstones_purged.fetch_add(totals.purged, std::memory_order_relaxed);
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

Status Writer::stage_one(ApplyTask& task, Outcome* out, GroupTotals* totals) {
  // Writes queued before the file reached the cap get there too: refused, not staged, so
  // the cap holds to within one write. The rest of the group commits.
  if (at_cap()) {
    out->refused = cap_refusal();
    return Status();
  }
  ++totals->writes;
  Record& record = task.record;
  Slot& slot = slots_[state_.layout.slot_of(task.partition)];

  // What the key holds now: its newest staged write (of this group, else of earlier
  // groups), else its row. A key's staged writes share the row they found (`base`).
  const StagedWrite* newest = nullptr;
  if (auto it = pending_newest_.find(record.key); it != pending_newest_.end()) {
    newest = it->second;
  } else {
    newest = staged_.newest(record.key);
  }
  RowState base;
  bool exists = false;
  bool stored_tombstone = false;
  Version stored;
  if (newest != nullptr) {
    base = newest->base;
    exists = true;
    stored = newest->version;
    stored_tombstone = newest->tombstone;
  } else {
    sql::StmtScope scope(slot.select_row);
    slot.select_row.bind_blob(1, record.key);
    Result<bool> row = slot.select_row.step();
    if (!row.ok()) return row.status();
    if (*row) {
      exists = true;
      stored.hlc = slot.select_row.u64_at(0);
      stored.origin = slot.select_row.u64_at(1);
      stored_tombstone = slot.select_row.int64_at(2) != 0;
      base = RowState{true, stored_tombstone, slot.select_row.int64_at(3)};
    }
  }
  out->apply.current = stored;
  bool expired = record.expiry.ms != 0 && record.expiry <= task.now;
  if (expired || (exists && !(record.version > stored))) {
    ++totals->ignored;
    return Status();
  }

  touch(task.partition);
  StagedWrite& w = pending_.emplace_back();
  w.id = next_stage_id_++;
  w.partition = task.partition;
  w.seq = slot.seq + 1;
  w.version = record.version;
  w.tombstone = record.tombstone;
  // A tombstone hides the key whatever its expiry, and the sweeper must not remove it
  // before the grace period: it is stored without value and without expiry.
  w.expiry_ms = record.tombstone ? 0 : record.expiry.ms;
  if (record.tombstone) record.value.clear();
  w.value = encoder_.encode(record.value, &w.codec);
  w.key = record.key;
  w.base = base;
  {
    sql::Stmt& s = insert_stage_;
    s.bind_u64(1, w.id);
    s.bind_int64(2, w.partition);
    s.bind_u64(3, w.seq);
    s.bind_blob(4, w.key);
    s.bind_u64(5, w.version.hlc);
    s.bind_u64(6, w.version.origin);
    s.bind_int64(7, w.expiry_ms);
    s.bind_int64(8, w.tombstone ? 1 : 0);
    s.bind_int64(9, static_cast<int64_t>(w.codec));
    s.bind_blob(10, w.value);
    EDGEKV_RETURN_IF_ERROR(s.run());
  }
  pending_newest_[w.key] = &w;
  pending_bytes_ += StagedWrites::footprint(w);
  slot.seq = w.seq;
  slot.live_delta += (w.tombstone ? 0 : 1) - ((exists && !stored_tombstone) ? 1 : 0);
  ++(w.tombstone ? totals->deletes : totals->puts);

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

Status Writer::write_row(Slot& slot, const StagedWrite& w, bool row_exists) {
  auto bind = [&w](sql::Stmt& s) {
    s.bind_blob(1, w.key);
    s.bind_u64(2, w.version.hlc);
    s.bind_u64(3, w.version.origin);
    s.bind_int64(4, w.expiry_ms);
    s.bind_int64(5, w.tombstone ? 1 : 0);
    s.bind_u64(6, w.seq);
    s.bind_int64(7, static_cast<int64_t>(w.codec));
    s.bind_blob(8, w.value);
  };
  if (row_exists) {
    bind(slot.update_row);
    EDGEKV_RETURN_IF_ERROR(slot.update_row.run());
    if (sqlite3_changes64(db_.handle()) > 0) return Status();
    // The row went away since staging read it (e.g. a tombstone purged): insert it.
  }
  bind(slot.insert_row);
  return slot.insert_row.run();
}

Status Writer::append_log(Slot& slot, uint64_t seq, ChangeOp op, Version version,
                          int64_t expiry_ms, std::string_view key) {
  sql::Stmt& s = slot.insert_log;
  s.bind_u64(1, seq);
  s.bind_int64(2, static_cast<int64_t>(op));
  s.bind_u64(3, version.hlc);
  s.bind_u64(4, version.origin);
  s.bind_int64(5, expiry_ms);
  s.bind_blob(6, key);
  return s.run();
}

Status Writer::apply_staged(size_t max) {
  const std::deque<StagedWrite>& staged = staged_.oldest();
  const size_t n = std::min(max, staged.size());
  if (n == 0) return Status();
  Status status = begin_.run();
  for (size_t i = 0; status.ok() && i < n; ++i) {
    const StagedWrite& w = staged[i];
    Slot& slot = slots_[state_.layout.slot_of(w.partition)];
    // Only a key's newest staged write reaches the table; every write reaches the log.
    if (staged_.newest(w.key) == &w) status = write_row(slot, w, w.base.exists);
    if (status.ok()) status = append_log(slot, w.seq, w.op(), w.version, w.expiry_ms, w.key);
  }
  if (status.ok()) {
    delete_staged_.bind_u64(1, staged[n - 1].id);
    status = delete_staged_.run();
  }
  std::unique_lock<std::shared_mutex> counting = staged_.lock_for_apply();
  if (status.ok()) status = commit_.run();
  if (!status.ok()) {
    counting.unlock();
    if (db_.in_transaction()) {
      Status rolled_back = rollback_.run();
      if (!rolled_back.ok()) {
        EDGEKV_LOG(kError) << "store: rollback failed: " << rolled_back.to_string();
      }
    }
    if (!apply_failing_) {
      apply_failing_ = true;
      EDGEKV_LOG(kError) << "store: applying " << n << " staged writes failed; they stay staged: "
                         << status.to_string();
    }
    last_apply_error_ = status;
    return status;
  }
  if (apply_failing_) {
    apply_failing_ = false;
    EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": staged writes apply again";
  }
  staged_.remove_oldest(n);
  state_.counters.apply_batches.fetch_add(1, std::memory_order_relaxed);
  return Status();
}

Status Writer::apply_all_staged() {
  const size_t batch = std::max<size_t>(state_.options.stage_apply_batch, 1);
  while (staged_.size() > 0) EDGEKV_RETURN_IF_ERROR(apply_staged(batch));
  return Status();
}

void Writer::apply_if_due() {
  const StoreOptions& o = state_.options;
  if (staged_.size() == 0) return;
  if (staged_.size() < o.stage_apply_at && staged_.bytes() < o.stage_apply_bytes &&
      staged_.bytes() < o.stage_max_bytes) {
    return;
  }
  // Failures are logged by apply_staged; the writes stay staged (and readable) and the
  // next group retries (at the cap, the writer's timer).
  const size_t batch = std::max<size_t>(o.stage_apply_batch, 1);
  Status applied = apply_staged(batch);
  // At the cap (large groups between small batches), batch after batch until below it:
  // a file whose batches apply never refuses writes.
  while (applied.ok() && staged_.size() > 0 && staged_.bytes() >= o.stage_max_bytes) {
    applied = apply_staged(batch);
  }
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
  Result<sql::Stmt> select = db_.prepare(
      "SELECT id, partition, seq, key, hlc, origin, expiry_ms, tombstone, codec, value"
      " FROM stage ORDER BY id",
      "read stage table");
  if (!select.ok()) return select.status();
  uint64_t applied = 0;
  Status status = begin_.run();
  {
    sql::StmtScope scope(*select);
    while (status.ok()) {
      Result<bool> row = select->step();
      if (!row.ok()) {
        status = row.status();
        break;
      }
      if (!*row) break;
      StagedWrite w;
      w.id = select->u64_at(0);
      int64_t partition = select->int64_at(1);
      w.seq = select->u64_at(2);
      w.key = std::string(select->blob_at(3));
      w.version = Version{select->u64_at(4), select->u64_at(5)};
      w.expiry_ms = select->int64_at(6);
      w.tombstone = select->int64_at(7) != 0;
      int64_t codec = select->int64_at(8);
      w.value = std::string(select->blob_at(9));
      if (partition < 0 || partition >= state_.layout.partitions ||
          state_.layout.file_of(static_cast<uint32_t>(partition)) != file_ ||
          (codec != static_cast<int64_t>(Codec::kRaw) &&
           codec != static_cast<int64_t>(Codec::kZstd))) {
        status = Status::corruption(db_.path() + ": stage row " + std::to_string(w.id) +
                                    " names partition " + std::to_string(partition) +
                                    " and codec " + std::to_string(codec) +
                                    ", which this file does not hold");
        break;
      }
      w.partition = static_cast<uint32_t>(partition);
      w.codec = static_cast<Codec>(codec);
      Slot& slot = slots_[state_.layout.slot_of(w.partition)];
      // Staging checked last-write-wins; the rows apply in staging order.
      status = write_row(slot, w, /*row_exists=*/true);
      if (status.ok()) status = append_log(slot, w.seq, w.op(), w.version, w.expiry_ms, w.key);
      ++applied;
    }
  }
  if (status.ok()) status = db_.exec("DELETE FROM stage", "empty stage table");
  if (status.ok()) status = commit_.run();
  if (!status.ok()) {
    if (db_.in_transaction()) (void)rollback_.run();
    return status;
  }
  if (applied > 0) {
    EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": applied " << applied
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

  const int64_t cutoff = tombstone_cutoff(job.now, state_.options.tombstone_grace_ms);
  for (uint32_t i = 0; i < n && job.purge_left > 0 && cutoff > 0; ++i) {
    sql::Stmt& s = slots_[(start + i) % n].purge_tombstones;
    s.bind_int64(1, cutoff);
    s.bind_int64(2, static_cast<int64_t>(std::min<size_t>(job.purge_left, INT64_MAX)));
    EDGEKV_RETURN_IF_ERROR(s.run());
    auto purged = static_cast<uint64_t>(sqlite3_changes64(db_.handle()));
    job.purge_left -= std::min<size_t>(job.purge_left, purged);
    totals->purged += purged;
  }

  // Keep at least the newest entry: after a restart, last_seq is read from the log.
  const uint64_t keep = std::max<uint64_t>(state_.options.changelog_keep, 1);
  for (uint32_t i = 0; i < n && job.trim_left > 0; ++i) {
    Slot& slot = slots_[(start + i) % n];
    if (slot.seq <= keep) continue;
    sql::Stmt& s = slot.trim_log;
    s.bind_u64(1, slot.seq - keep + 1);  // entries below this seq go
    s.bind_int64(2, static_cast<int64_t>(std::min<size_t>(job.trim_left, INT64_MAX)));
    EDGEKV_RETURN_IF_ERROR(s.run());
    auto trimmed = static_cast<uint64_t>(sqlite3_changes64(db_.handle()));
    job.trim_left -= std::min<size_t>(job.trim_left, trimmed);
  }
  return Status();
}

Status Writer::expire_in(Slot& slot, SweepJob& job, Outcome* out, GroupTotals* totals) {
  struct Expired {
    std::string key;
    Version version;
    int64_t expiry_ms;
  };
  std::vector<Expired> rows;
  {
    sql::Stmt& s = slot.select_expired;
    sql::StmtScope scope(s);
    s.bind_int64(1, job.now.ms);
    s.bind_int64(2, static_cast<int64_t>(std::min<size_t>(job.expire_left, INT64_MAX)));
    for (;;) {
      Result<bool> row = s.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      rows.push_back(
          Expired{std::string(s.blob_at(0)), Version{s.u64_at(1), s.u64_at(2)}, s.int64_at(3)});
    }
  }
  if (rows.empty()) return Status();
  touch(slot.partition);
  for (Expired& row : rows) {
    slot.delete_row.bind_blob(1, row.key);
    EDGEKV_RETURN_IF_ERROR(slot.delete_row.run());
    const uint64_t seq = slot.seq + 1;
    EDGEKV_RETURN_IF_ERROR(
        append_log(slot, seq, ChangeOp::kExpire, row.version, row.expiry_ms, row.key));
    slot.seq = seq;
    slot.live_delta -= 1;  // only live rows carry an expiry (tombstones are stored without)
    ++totals->expired;

    ChangeEvent event;
    event.op = ChangeOp::kExpire;
    event.key = std::move(row.key);
    event.version = row.version;
    event.expiry = WallTime{row.expiry_ms};
    event.partition = slot.partition;
    event.seq = seq;
    out->events.push_back(std::move(event));
  }
  job.expire_left -= rows.size();
  return Status();
}

}  // namespace edgekv::store
