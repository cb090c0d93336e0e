#include "store/writer.h"

#include <pthread.h>

#include <algorithm>
#include <limits>
#include <string>

#include "common/hlc.h"
#include "common/log.h"

namespace edgekv::store {
namespace {

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
      encoder_(state.options.compress_threshold_bytes, state.options.compress_level) {}

Writer::~Writer() {
  if (thread_.joinable()) drain_and_join();
}

Result<std::unique_ptr<Writer>> Writer::open(EngineState& state, uint32_t file, sql::Db db) {
  std::unique_ptr<Writer> writer(new Writer(state, file, std::move(db)));
  EDGEKV_RETURN_IF_ERROR(writer->prepare_statements());
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

  const Layout& layout = state_.layout;
  slots_.resize(layout.partitions_in_file(file_));
  for (uint32_t p = file_; p < layout.partitions; p += layout.db_files) {
    Slot& slot = slots_[layout.slot_of(p)];
    slot.partition = p;
    const std::string kv = kv_table(p);
    const std::string log = log_table(p);
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.select_row,
                                   "SELECT hlc, origin, tombstone FROM " + kv + " WHERE key = ?1",
                                   "read row"));
    // apply_one() has just read the row, so it knows which of the two applies: a plain
    // INSERT or UPDATE is one b-tree descent cheaper than INSERT ... ON CONFLICT DO UPDATE.
    EDGEKV_RETURN_IF_ERROR(prepare(&slot.insert_row,
                                   "INSERT INTO " + kv +
                                       " (key, hlc, origin, expiry_ms, tombstone, seq, codec, value)"
                                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
    } else if (state_.queued.fetch_add(1) >= state_.options.write_queue_max) {
      state_.queued.fetch_sub(1);
      refused = Status::overloaded("store write queue is full (write_queue_max=" +
                                   std::to_string(state_.options.write_queue_max) + ")");
    } else {
      queue_.push_back(Queued{std::move(task), true});
    }
  }
  if (refused.ok()) {
    wake_.notify_one();
  } else {
    answer(task, refused);
  }
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
}

void Writer::close_connection() {
  EDGEKV_ASSERT(!thread_.joinable());
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
      wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything queued is committed
      size_t n = std::min(queue_.size(), state_.options.group_commit_max);
      for (size_t i = 0; i < n; ++i) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    size_t counted =
        std::count_if(group.begin(), group.end(), [](const Queued& q) { return q.counted; });
    state_.queued.fetch_sub(counted);
    commit_group(group);
    group.clear();
  }
}

void Writer::commit_group(std::vector<Queued>& group) {
  std::vector<Outcome> outcomes(group.size());
  GroupTotals totals;
  Status status = begin_.run();
  for (size_t i = 0; status.ok() && i < group.size(); ++i) {
    if (auto* apply = std::get_if<ApplyTask>(&group[i].task)) {
      status = apply_one(*apply, &outcomes[i], &totals);
    } else {
      status = sweep_file(*std::get<SweepTask>(group[i].task).job, &outcomes[i], &totals);
    }
  }
  if (status.ok()) status = commit_.run();

  if (status.ok()) {
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

Status Writer::apply_one(ApplyTask& task, Outcome* out, GroupTotals* totals) {
  ++totals->writes;
  Record& record = task.record;
  Slot& slot = slots_[state_.layout.slot_of(task.partition)];

  bool exists = false;
  bool stored_tombstone = false;
  Version stored;
  {
    sql::StmtScope scope(slot.select_row);
    slot.select_row.bind_blob(1, record.key);
    Result<bool> row = slot.select_row.step();
    if (!row.ok()) return row.status();
    if (*row) {
      exists = true;
      stored.hlc = slot.select_row.u64_at(0);
      stored.origin = slot.select_row.u64_at(1);
      stored_tombstone = slot.select_row.int64_at(2) != 0;
    }
  }
  out->apply.current = stored;
  bool expired = record.expiry.ms != 0 && record.expiry <= task.now;
  if (expired || (exists && !(record.version > stored))) {
    ++totals->ignored;
    return Status();
  }

  touch(task.partition);
  const uint64_t seq = slot.seq + 1;
  // A tombstone hides the key whatever its expiry, and the sweeper must not remove it
  // before the grace period: it is stored without value and without expiry.
  const int64_t expiry_ms = record.tombstone ? 0 : record.expiry.ms;
  if (record.tombstone) record.value.clear();
  Codec codec = Codec::kRaw;
  std::string_view stored_value = encoder_.encode(record.value, &codec);
  {
    sql::Stmt& s = exists ? slot.update_row : slot.insert_row;
    s.bind_blob(1, record.key);
    s.bind_u64(2, record.version.hlc);
    s.bind_u64(3, record.version.origin);
    s.bind_int64(4, expiry_ms);
    s.bind_int64(5, record.tombstone ? 1 : 0);
    s.bind_u64(6, seq);
    s.bind_int64(7, static_cast<int64_t>(codec));
    s.bind_blob(8, stored_value);
    EDGEKV_RETURN_IF_ERROR(s.run());
  }
  const ChangeOp op = record.tombstone ? ChangeOp::kDelete : ChangeOp::kPut;
  {
    sql::Stmt& s = slot.insert_log;
    s.bind_u64(1, seq);
    s.bind_int64(2, static_cast<int64_t>(op));
    s.bind_u64(3, record.version.hlc);
    s.bind_u64(4, record.version.origin);
    s.bind_int64(5, expiry_ms);
    s.bind_blob(6, record.key);
    EDGEKV_RETURN_IF_ERROR(s.run());
  }
  slot.seq = seq;
  slot.live_delta += (record.tombstone ? 0 : 1) - ((exists && !stored_tombstone) ? 1 : 0);
  ++(record.tombstone ? totals->deletes : totals->puts);

  out->apply.applied = true;
  out->apply.current = record.version;
  ChangeEvent& event = out->apply.event;
  event.op = op;
  event.key = std::move(record.key);
  event.value = std::move(record.value);
  event.version = record.version;
  event.expiry = WallTime{expiry_ms};
  event.partition = task.partition;
  event.seq = seq;
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
    sql::Stmt& s = slot.insert_log;
    s.bind_u64(1, seq);
    s.bind_int64(2, static_cast<int64_t>(ChangeOp::kExpire));
    s.bind_u64(3, row.version.hlc);
    s.bind_u64(4, row.version.origin);
    s.bind_int64(5, row.expiry_ms);
    s.bind_blob(6, row.key);
    EDGEKV_RETURN_IF_ERROR(s.run());
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
