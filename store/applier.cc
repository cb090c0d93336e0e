#include "store/applier.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

#include "common/hlc.h"
#include "common/log.h"
#include "common/thread.h"
#include "store/schema.h"

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

int64_t clamp_budget(size_t n) {
  return static_cast<int64_t>(std::min<size_t>(n, std::numeric_limits<int64_t>::max()));
}

}  // namespace

Applier::Applier(EngineState& state, uint32_t file, sql::Db db)
    : state_(state), file_(file), db_(std::move(db)), staged_(*state.staged[file]) {}

Applier::~Applier() { stop(); }

Result<std::unique_ptr<Applier>> Applier::open(EngineState& state, uint32_t file, sql::Db db) {
  std::unique_ptr<Applier> applier(new Applier(state, file, std::move(db)));
  // Always fsync'd: the writer deletes stage rows once their batch committed, so the batch
  // must outlive a power cut whenever the deletion does.
  Result<std::unique_ptr<Checkpointer>> checkpointer = Checkpointer::open(
      applier->db_.path(), SyncMode::kFull, state.options.checkpoint_pages,
      &state.counters.checkpoints, state.disk.eager_flag(), state.disk.full_flag());
  if (!checkpointer.ok()) return checkpointer.status();
  applier->checkpointer_ = std::move(*checkpointer);
  EDGEKV_RETURN_IF_ERROR(applier->prepare_statements());
  Result<std::string> applied =
      applier->db_.query_text("SELECT coalesce((SELECT value FROM meta WHERE name = '" +
                                  std::string(kAppliedStageId) + "'), 0)",
                              "read applied stage id");
  if (!applied.ok()) return applied.status();
  applier->applied_id_ = std::stoull(*applied);
  Result<std::vector<uint64_t>> logged = applier->last_logged();
  if (!logged.ok()) return logged.status();
  for (size_t i = 0; i < logged->size(); ++i) applier->slots_[i].logged_seq = (*logged)[i];
  EDGEKV_RETURN_IF_ERROR(applier->load_purge_floors());
  return applier;
}

// The purge floors kept in meta (`purge_floor.P`, the hlc bound of P's last purge by
// horizon): the horizon each partition starts from, so that writes below it stay out.
Status Applier::load_purge_floors() {
  Result<sql::Stmt> stmt = db_.prepare(
      "SELECT name, value FROM meta WHERE name LIKE 'purge_floor.%'", "read purge floors");
  if (!stmt.ok()) return stmt.status();
  sql::StmtScope scope(*stmt);
  const Layout& layout = state_.layout;
  for (;;) {
    Result<bool> row = stmt->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const std::string name(stmt->blob_at(0));
    const int64_t value = stmt->int64_at(1);
    char* end = nullptr;
    const unsigned long p = std::strtoul(name.c_str() + 12, &end, 10);
    if (end == name.c_str() + 12 || *end != '\0' || p >= layout.partitions ||
        layout.file_of(static_cast<uint32_t>(p)) != file_ || value < 0) {
      return Status::corruption(db_.path() + ": meta row '" + name + "' (" + std::to_string(value) +
                                ") is not a purge floor of this file");
    }
    const auto partition = static_cast<uint32_t>(p);
    slots_[layout.slot_of(partition)].floor_kept = static_cast<uint64_t>(value);
    raise_to(state_.partitions[partition].horizon_hlc, static_cast<uint64_t>(value));
  }
  return Status();
}

Status Applier::prepare_statements() {
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&begin_, "BEGIN IMMEDIATE", "begin"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&commit_, "COMMIT", "commit"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&rollback_, "ROLLBACK", "rollback"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &set_floor_, "INSERT OR REPLACE INTO meta (name, value) VALUES ('purge_floor.' || ?1, ?2)",
      "record purge floor"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &drop_floor_, "DELETE FROM meta WHERE name = 'purge_floor.' || ?1", "forget purge floor"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&set_applied_,
                                          "INSERT OR REPLACE INTO meta (name, value) VALUES ('" +
                                              std::string(kAppliedStageId) + "', ?1)",
                                          "record applied stage id"));

  const Layout& layout = state_.layout;
  slots_.resize(layout.partitions_in_file(file_));
  for (uint32_t p = file_; p < layout.partitions; p += layout.db_files) {
    slots_[layout.slot_of(p)].partition = p;
  }
  Result<std::vector<uint32_t>> held = partitions_with_tables(db_);
  if (!held.ok()) return held.status();
  for (uint32_t p : *held) {
    if (p >= layout.partitions || layout.file_of(p) != file_) {
      return Status::corruption(db_.path() + " holds tables of partition " + std::to_string(p) +
                                ", which belongs to another file");
    }
    slots_[layout.slot_of(p)].has_tables = true;
    state_.partitions[p].has_tables.store(true);
  }
  return Status();
}

Status Applier::ready(Slot& slot, bool create) {
  if (slot.prepared) return Status();
  if (!slot.has_tables) {
    if (!create) return Status();
    EDGEKV_RETURN_IF_ERROR(db_.exec(partition_schema_sql(slot.partition), "create partition"));
    slot.has_tables = true;
    created_.push_back(state_.layout.slot_of(slot.partition));
  }
  const uint32_t p = slot.partition;
  const std::string kv = kv_table(p);
  const std::string log = log_table(p);
  // Staging read the row, so applying mostly knows whether it exists: a plain UPDATE is
  // one b-tree descent cheaper than INSERT ... ON CONFLICT DO UPDATE, which is kept for
  // new keys and for rows that went away meanwhile.
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&slot.insert_row,
                       "INSERT INTO " + kv +
                           " (key, hlc, origin, expiry_ms, tombstone, seq, codec, value,"
                           " value_id, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                           " ON CONFLICT (leaf, key) DO UPDATE SET hlc = ?2, origin = ?3,"
                           " expiry_ms = ?4, tombstone = ?5, seq = ?6, codec = ?7,"
                           " value = ?8, value_id = ?9",
                       "insert row"));
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&slot.update_row,
                       "UPDATE " + kv +
                           " SET hlc = ?2, origin = ?3, expiry_ms = ?4, tombstone = ?5,"
                           " seq = ?6, codec = ?7, value = ?8, value_id = ?9"
                           " WHERE leaf = ?10 AND key = ?1",
                       "update row"));
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&slot.update_inline_row,
                       "UPDATE " + kv +
                           " SET hlc = ?2, origin = ?3, expiry_ms = ?4, tombstone = ?5,"
                           " seq = ?6, codec = ?7, value = ?8 WHERE leaf = ?10 AND key = ?1"
                           " AND value_id IS NULL",
                       "update row"));
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&slot.update_row_keep_value,
                       "UPDATE " + kv +
                           " SET hlc = ?2, origin = ?3, expiry_ms = ?4, tombstone = ?5,"
                           " seq = ?6, codec = ?7, value = ?8 WHERE leaf = ?10 AND key = ?1"
                           " AND value_id IS NOT NULL RETURNING value_id",
                       "update row"));
  const std::string val = val_table(p);
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &slot.insert_value, "INSERT INTO " + val + " (value) VALUES (?1)", "insert value"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &slot.update_value, "UPDATE " + val + " SET value = ?2 WHERE id = ?1", "update value"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&slot.insert_log,
                                          "INSERT INTO " + log +
                                              " (seq, op, hlc, origin, expiry_ms, key)"
                                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                          "append change log"));
  // The purge reads the old tombstones (through the tombstone index) and then deletes them
  // one by one: a row-value `(leaf, key) IN (...)` would scan each leaf's range.
  EDGEKV_RETURN_IF_ERROR(
      db_.prepare_into(&slot.purge_tombstones,
                       "SELECT leaf, key, hlc, origin, expiry_ms FROM " + kv +
                           " WHERE tombstone = 1 AND hlc >= 0 AND hlc < ?1 AND seq <= ?3"
                           " LIMIT ?2",
                       "find old tombstones"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(
      &slot.purge_row, "DELETE FROM " + kv + " WHERE leaf = ?1 AND key = ?2", "purge tombstone"));
  EDGEKV_RETURN_IF_ERROR(db_.prepare_into(&slot.trim_log,
                                          "DELETE FROM " + log + " WHERE seq IN (SELECT seq FROM " +
                                              log + " WHERE seq < ?1 ORDER BY seq LIMIT ?2)",
                                          "trim change log"));
  slot.prepared = true;
  return Status();
}

void Applier::publish_created() {
  for (uint32_t i : created_) state_.partitions[slots_[i].partition].has_tables.store(true);
  created_.clear();
}

Result<std::vector<uint64_t>> Applier::last_logged() {
  std::vector<uint64_t> seqs(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].has_tables) continue;  // no log: nothing logged yet
    Result<std::string> seq = db_.query_text(
        "SELECT coalesce(max(seq), 0) FROM " + log_table(slots_[i].partition), "read last seq");
    if (!seq.ok()) return seq.status();
    seqs[i] = std::stoull(*seq);
  }
  return seqs;
}

void Applier::start(Report report) {
  report_ = std::move(report);
  checkpointer_->start(db_.handle(), "edgekv-ck" + std::to_string(file_));
  thread_ = start_named_thread("edgekv-ap" + std::to_string(file_), [this] { run(); });
}

void Applier::post(Batch batch) {
  {
    std::lock_guard lock(mu_);
    jobs_.emplace_back(std::move(batch));
  }
  wake_.notify_one();
}

void Applier::post(SweepTail tail) {
  {
    std::lock_guard lock(mu_);
    jobs_.emplace_back(std::move(tail));
  }
  wake_.notify_one();
}

void Applier::post(DropTail tail) {
  {
    std::lock_guard lock(mu_);
    jobs_.emplace_back(std::move(tail));
  }
  wake_.notify_one();
}

void Applier::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (checkpointer_) checkpointer_->stop();
  if (db_.valid()) sqlite3_wal_hook(db_.handle(), nullptr, nullptr);
  checkpointer_.reset();
  // Statements first: a connection closes only once they are finalized. Closing the last
  // connection checkpoints whatever is left.
  slots_.clear();
  begin_ = sql::Stmt();
  commit_ = sql::Stmt();
  rollback_ = sql::Stmt();
  set_applied_ = sql::Stmt();
  set_floor_ = sql::Stmt();
  drop_floor_ = sql::Stmt();
  db_ = sql::Db();
}

void Applier::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
      if (jobs_.empty()) return;  // stopping, and everything queued done
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (auto* batch = std::get_if<Batch>(&job)) {
      const uint64_t last_id = batch->writes.empty() ? 0 : batch->writes.back()->id;
      Status status = failed_;
      if (batch->epoch > failed_epoch_) {
        status = apply(batch->writes, batch->write_row);
        if (!status.ok()) {
          failed_epoch_ = batch->epoch;
          failed_ = status;
        }
      }
      report_(batch->epoch, batch->writes.size(), last_id, status);
    } else if (auto* drop_tail = std::get_if<DropTail>(&job)) {
      drop_tail->done(drop_tail->epoch > failed_epoch_ ? drop(drop_tail->partitions) : failed_);
    } else {
      SweepTail& tail = std::get<SweepTail>(job);
      tail.done(tail.epoch > failed_epoch_ ? sweep(*tail.job) : failed_);
    }
  }
}

Status Applier::rollback(Status status) {
  if (db_.in_transaction()) {
    Status rolled_back = rollback_.run();
    if (!rolled_back.ok()) {
      EDGEKV_LOG(kError) << "store: rollback failed: " << rolled_back.to_string();
    }
  }
  // Tables created by the transaction are gone with it: created again by the next write.
  for (uint32_t i : created_) {
    Slot fresh;
    fresh.partition = slots_[i].partition;
    fresh.logged_seq = slots_[i].logged_seq;
    slots_[i] = std::move(fresh);
  }
  created_.clear();
  return status;
}

// A value up to kInlineValueMaxBytes goes in the row; a longer one in the value table, the
// row holding its id (store/FORMAT.md, "Large values"). Each statement is the cheapest for
// its case: a row and its new value both in the row, or both out of it, are updated in
// place without the triggers; a change from one to the other lets the update trigger
// delete the old value; a new key (or a row gone since staging read it) is inserted.
Status Applier::write_row_of(Slot& slot, const StagedWrite& w) {
  const bool large = w.value.size() > kInlineValueMaxBytes;
  const uint32_t leaf = digest_leaf(w.key);
  auto bind_row = [&w, large, leaf](sql::Stmt& s) {
    s.bind_blob(1, w.key);
    s.bind_int64(10, leaf);
    s.bind_u64(2, w.version.hlc);
    s.bind_u64(3, w.version.origin);
    s.bind_int64(4, w.expiry_ms);
    s.bind_int64(5, w.tombstone ? 1 : 0);
    s.bind_u64(6, w.seq);
    s.bind_int64(7, static_cast<int64_t>(w.codec));
    s.bind_blob(8, large ? std::string_view() : std::string_view(w.value));
  };
  if (w.base.exists && !large) {
    bind_row(slot.update_inline_row);
    EDGEKV_RETURN_IF_ERROR(slot.update_inline_row.run());
    if (sqlite3_changes64(db_.handle()) > 0) return Status();
  }
  if (w.base.exists && large) {
    sql::Stmt& s = slot.update_row_keep_value;
    sql::StmtScope scope(s);
    bind_row(s);
    Result<bool> row = s.step();
    if (!row.ok()) return row.status();
    if (*row) {
      const int64_t value_id = s.int64_at(0);
      s.reset();
      slot.update_value.bind_int64(1, value_id);
      slot.update_value.bind_blob(2, w.value);
      return slot.update_value.run();
    }
  }
  int64_t value_id = 0;
  if (large) {
    slot.insert_value.bind_blob(1, w.value);
    EDGEKV_RETURN_IF_ERROR(slot.insert_value.run());
    value_id = sqlite3_last_insert_rowid(db_.handle());
  }
  auto bind_value_id = [value_id](sql::Stmt& s) {
    if (value_id != 0) {
      s.bind_int64(9, value_id);
    } else {
      s.bind_null(9);
    }
  };
  if (w.base.exists) {
    bind_row(slot.update_row);
    bind_value_id(slot.update_row);
    EDGEKV_RETURN_IF_ERROR(slot.update_row.run());
    if (sqlite3_changes64(db_.handle()) > 0) return Status();
  }
  bind_row(slot.insert_row);
  bind_value_id(slot.insert_row);
  return slot.insert_row.run();
}

Status Applier::write_one(const StagedWrite& w, bool write_row) {
  Slot& slot = slots_[state_.layout.slot_of(w.partition)];
  EDGEKV_RETURN_IF_ERROR(ready(slot, /*create=*/true));
  // An expiry leaves its tombstone like a delete does (format 5): the row is rewritten
  // without value, and the trigger frees a value kept in the value table.
  if (write_row) EDGEKV_RETURN_IF_ERROR(write_row_of(slot, w));
  sql::Stmt& log = slot.insert_log;
  log.bind_u64(1, w.seq);
  log.bind_int64(2, static_cast<int64_t>(w.op()));
  log.bind_u64(3, w.version.hlc);
  log.bind_u64(4, w.version.origin);
  log.bind_int64(5, w.expiry_ms);
  log.bind_blob(6, w.key);
  return log.run();
}

Status Applier::apply(const std::vector<const StagedWrite*>& writes,
                      const std::vector<bool>& write_row) {
  if (writes.empty()) return Status();
  Status status = begin_.run();
  for (size_t i = 0; status.ok() && i < writes.size(); ++i) {
    status = write_one(*writes[i], write_row[i]);
  }
  const uint64_t last_id = writes.back()->id;
  if (status.ok()) {
    set_applied_.bind_u64(1, last_id);
    status = set_applied_.run();
  }
  std::unique_lock<std::shared_mutex> counting = staged_.lock_for_apply();
  if (status.ok()) status = commit_.run();
  if (!status.ok()) {
    counting.unlock();
    // Before the rollback, which forgets the error: out of space, the guard gives its
    // reserve back, and the retried batch has room for the deletes in it.
    if (sql::is_disk_full(db_.handle())) state_.disk.enter_full(db_.path(), status);
    (void)rollback(status);
    if (!failing_) {
      failing_ = true;
      EDGEKV_LOG(kError) << "store: applying " << writes.size()
                         << " staged writes failed; they stay staged: " << status.to_string();
    }
    return status;
  }
  for (const StagedWrite* w : writes) {
    Slot& slot = slots_[state_.layout.slot_of(w->partition)];
    slot.logged_seq = std::max(slot.logged_seq, w->seq);
  }
  state_.counters.apply_batches.fetch_add(1, std::memory_order_relaxed);
  // Before the writes leave the staged writes: whoever misses them there finds the tables.
  publish_created();
  // The writes go away here: nothing below may look at them.
  staged_.remove_applied(writes.size(), write_row);
  counting.unlock();
  applied_id_ = last_id;
  if (failing_) {
    failing_ = false;
    EDGEKV_LOG(kNotice) << "store: " << db_.path() << ": staged writes apply again";
  }
  return Status();
}

Status Applier::apply_now(const std::deque<StagedWrite>& writes) {
  if (writes.empty()) return Status();
  std::vector<const StagedWrite*> pointers;
  std::vector<bool> write_row;
  pointers.reserve(writes.size());
  for (const StagedWrite& w : writes) {
    pointers.push_back(&w);
    // Staging checked last-write-wins; the rows apply in staging order, each one written
    // (they are not in the index, so nothing to remove or to rebase).
    write_row.push_back(true);
  }
  Status status = begin_.run();
  for (size_t i = 0; status.ok() && i < pointers.size(); ++i) {
    status = write_one(*pointers[i], true);
  }
  if (status.ok()) {
    set_applied_.bind_u64(1, writes.back().id);
    status = set_applied_.run();
  }
  if (status.ok()) status = commit_.run();
  if (!status.ok()) return rollback(status);
  publish_created();
  applied_id_ = writes.back().id;
  for (const StagedWrite& w : writes) {
    Slot& slot = slots_[state_.layout.slot_of(w.partition)];
    slot.logged_seq = std::max(slot.logged_seq, w.seq);
  }
  return Status();
}

Status Applier::sweep(SweepJob& job) {
  const uint32_t n = static_cast<uint32_t>(slots_.size());
  if (n == 0) return Status();
  const bool by_horizon = state_.options.tombstone_purge == TombstonePurge::kByHorizon;
  const int64_t age_cutoff = tombstone_cutoff(job.now, state_.options.tombstone_grace_ms);
  const uint64_t keep = std::max<uint64_t>(state_.options.changelog_keep, 1);
  uint64_t purged_total = 0;
  // The purged tombstones, for the digests (engine.h, FileDigests).
  struct Purged {
    uint32_t partition;
    uint32_t leaf;
    std::string key;
    Version version;
    int64_t expiry_ms;
  };
  std::vector<Purged> purged_rows;
  std::vector<std::pair<Slot*, uint64_t>> floors_raised;  // kept once the sweep commits
  Status status = begin_.run();
  for (uint32_t i = 0; status.ok() && i < n && job.purge_left > 0; ++i) {
    Slot& slot = slots_[(sweep_cursor_ + i) % n];
    if (!slot.has_tables) continue;  // nothing to purge, nor to trim below
    // By age: older than the grace, whatever the seq. By horizon: below both bounds, read
    // once here; the writer holds writes to the hlc bound, which only goes up.
    int64_t cutoff = age_cutoff;
    int64_t seq_through = std::numeric_limits<int64_t>::max();
    if (by_horizon) {
      const PartitionState& ps = state_.partitions[slot.partition];
      cutoff = static_cast<int64_t>(
          std::min<uint64_t>(ps.horizon_hlc.load(), std::numeric_limits<int64_t>::max()));
      seq_through = static_cast<int64_t>(
          std::min<uint64_t>(ps.horizon_seq.load(), std::numeric_limits<int64_t>::max()));
    }
    if (cutoff <= 0) continue;
    status = ready(slot, /*create=*/false);
    if (!status.ok()) break;
    const size_t first = purged_rows.size();
    {
      sql::Stmt& s = slot.purge_tombstones;
      sql::StmtScope scope(s);
      s.bind_int64(1, cutoff);
      s.bind_int64(2, clamp_budget(job.purge_left));
      s.bind_int64(3, seq_through);
      for (;;) {
        Result<bool> row = s.step();
        if (!row.ok()) {
          status = row.status();
          break;
        }
        if (!*row) break;
        purged_rows.push_back(Purged{slot.partition, static_cast<uint32_t>(s.int64_at(0)),
                                     std::string(s.blob_at(1)), Version{s.u64_at(2), s.u64_at(3)},
                                     s.int64_at(4)});
      }
    }
    for (size_t r = first; status.ok() && r < purged_rows.size(); ++r) {
      slot.purge_row.bind_int64(1, purged_rows[r].leaf);
      slot.purge_row.bind_blob(2, purged_rows[r].key);
      status = slot.purge_row.run();
    }
    if (!status.ok()) break;
    const uint64_t purged = purged_rows.size() - first;
    if (by_horizon && purged > 0 && static_cast<uint64_t>(cutoff) > slot.floor_kept) {
      set_floor_.bind_int64(1, slot.partition);
      set_floor_.bind_int64(2, cutoff);
      status = set_floor_.run();
      if (!status.ok()) break;
      floors_raised.emplace_back(&slot, static_cast<uint64_t>(cutoff));
    }
    job.purge_left -= std::min<size_t>(job.purge_left, purged);
    purged_total += purged;
  }
  // Keep at least the newest entry: after a restart, last_seq is read from the log.
  for (uint32_t i = 0; status.ok() && i < n && job.trim_left > 0; ++i) {
    Slot& slot = slots_[(sweep_cursor_ + i) % n];
    if (slot.logged_seq <= keep) continue;
    status = ready(slot, /*create=*/false);
    if (!status.ok()) break;
    sql::Stmt& s = slot.trim_log;
    s.bind_u64(1, slot.logged_seq - keep + 1);  // entries below this seq go
    s.bind_int64(2, clamp_budget(job.trim_left));
    status = s.run();
    if (!status.ok()) break;
    auto trimmed = static_cast<uint64_t>(sqlite3_changes64(db_.handle()));
    job.trim_left -= std::min<size_t>(job.trim_left, trimmed);
  }
  sweep_cursor_ = (sweep_cursor_ + 1) % n;
  // A purge commits and leaves the digests in one hold of their lock (engine.h); a sweep
  // that purged nothing (trims only) changes no key state and commits without it.
  FileDigests& digests = *state_.digests[file_];
  std::unique_lock digest_lock(digests.mu, std::defer_lock);
  if (!purged_rows.empty()) digest_lock.lock();
  if (status.ok()) status = commit_.run();
  if (!status.ok()) {
    if (digest_lock.owns_lock()) digest_lock.unlock();
    if (sql::is_disk_full(db_.handle())) state_.disk.enter_full(db_.path(), status);
    return rollback(status);
  }
  for (Purged& r : purged_rows) {
    // A key with a staged write was not in the digest as this row: its staged write is.
    StagedWrite newer;
    if (staged_.find_state(r.key, &newer)) continue;
    FileDigests::Partition* d = digests.by_slot[state_.layout.slot_of(r.partition)].get();
    if (d != nullptr) d->leaves.remove(r.key, r.version, /*tombstone=*/true, r.expiry_ms);
    digests.purged.insert(std::move(r.key));
  }
  if (digest_lock.owns_lock()) digest_lock.unlock();
  for (auto& [slot, floor] : floors_raised) slot->floor_kept = floor;
  state_.counters.tombstones_purged.fetch_add(purged_total, std::memory_order_relaxed);
  return Status();
}

Status Applier::drop(const std::vector<uint32_t>& partitions) {
  FileDigests& digests = *state_.digests[file_];
  // No digest of the file is built meanwhile: a scan whose snapshot predates the drop
  // would add the dropped rows back to the emptied digest. (Lock order: build_mu, then mu,
  // as Store::digest takes them; a scan never waits for this thread.)
  std::lock_guard building(digests.build_mu);
  Status status = begin_.run();
  for (uint32_t partition : partitions) {
    if (!status.ok()) break;
    Slot& slot = slots_[state_.layout.slot_of(partition)];
    const int64_t rows = state_.partitions[partition].live_rows.load();
    if (slot.has_tables && rows >= 0 &&
        static_cast<uint64_t>(rows) <= state_.options.drop_by_delete_rows) {
      // Few rows: deleted, values first (the row trigger then finds none to delete). No
      // schema change, so no other connection reads the schema again.
      status = db_.exec(
          "DELETE FROM " + val_table(partition) + "; DELETE FROM " + kv_table(partition) + ";",
          "drop partition " + std::to_string(partition));
    } else if (slot.has_tables) {
      // The slot's statements name the old tables: finalized, and prepared again on the
      // new ones when next used.
      Slot fresh;
      fresh.partition = slot.partition;
      fresh.logged_seq = slot.logged_seq;
      fresh.has_tables = true;
      fresh.floor_kept = slot.floor_kept;
      slot = std::move(fresh);
      // Dropping a table frees its pages (its indexes and triggers go with it); the row
      // and value tables, their indexes and triggers are made again as a first write
      // makes them, and the log, which exists, stays.
      status = db_.exec("DROP TABLE " + kv_table(partition) + "; DROP TABLE " +
                            val_table(partition) + ";" + partition_schema_sql(partition),
                        "drop partition " + std::to_string(partition));
    }
    if (status.ok()) {
      drop_floor_.bind_int64(1, partition);
      status = drop_floor_.run();
    }
  }
  // The commit and the digest's reset in one hold of the digests' lock, as for a purge.
  std::unique_lock digest_lock(digests.mu);
  if (status.ok()) status = commit_.run();
  if (!status.ok()) {
    digest_lock.unlock();
    if (sql::is_disk_full(db_.handle())) state_.disk.enter_full(db_.path(), status);
    return rollback(status);
  }
  for (uint32_t partition : partitions) {
    if (auto& d = digests.by_slot[state_.layout.slot_of(partition)]; d != nullptr) {
      d->leaves = DigestLeaves{};
    }
  }
  digest_lock.unlock();
  for (uint32_t partition : partitions) slots_[state_.layout.slot_of(partition)].floor_kept = 0;
  return Status();
}

}  // namespace edgekv::store
