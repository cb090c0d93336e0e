#include "store/reader.h"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>

#include "store/schema.h"

namespace edgekv::store {
namespace {

int64_t clamp_limit(size_t n) {
  return static_cast<int64_t>(std::min<uint64_t>(n, std::numeric_limits<int64_t>::max()));
}

}  // namespace

Result<std::unique_ptr<Reader>> Reader::open(EngineState& state) {
  std::unique_ptr<Reader> reader(new Reader(state));
  for (uint32_t f = 0; f < state.layout.db_files; ++f) {
    Result<sql::Db> db = sql::Db::open(state.layout.file_path(f), /*create=*/false);
    if (!db.ok()) return db.status();
    EDGEKV_RETURN_IF_ERROR(
        configure_connection(*db, ConnectionRole::kReader, state.options.sync, 0));
    // The change log's join finds a put's row by the leaf of the logged key.
    EDGEKV_RETURN_IF_ERROR(register_digest_leaf(*db));
    reader->dbs_.push_back(std::move(*db));
  }
  reader->statements_.resize(state.layout.partitions);
  reader->hints_.resize(state.layout.db_files);
  return reader;
}

Result<Reader::Statements*> Reader::statements(uint32_t partition) {
  Statements& s = statements_[partition];
  if (s.get.valid()) return &s;
  if (!state_.partitions[partition].has_tables.load()) return nullptr;
  sql::Db& db = dbs_[state_.layout.file_of(partition)];
  const std::string kv = kv_table(partition);
  const std::string log = log_table(partition);
  const std::string val = val_table(partition);
  // A large value is in the value table (format 4), a small one or one written before
  // format 4 in the row.
  Result<sql::Stmt> get = db.prepare(
      "SELECT k.hlc, k.origin, k.expiry_ms, k.tombstone, k.codec, coalesce(v.value, k.value)"
      " FROM " +
          kv + " AS k LEFT JOIN " + val +
          " AS v ON v.id = k.value_id WHERE k.leaf = ?2 AND k.key = ?1",
      "get");
  if (!get.ok()) return get.status();
  // A put's value is not copied into the log: it is joined from the row, and only while
  // the row still holds that put (same seq).
  Result<sql::Stmt> changes = db.prepare(
      "SELECT l.seq, l.op, l.hlc, l.origin, l.expiry_ms, l.key, k.seq IS NOT NULL, k.codec,"
      " coalesce(v.value, k.value) FROM " +
          log + " AS l LEFT JOIN " + kv +
          " AS k ON l.op = 1 AND k.leaf = edgekv_digest_leaf(l.key) AND k.key = l.key"
          " AND k.seq = l.seq LEFT JOIN " +
          val + " AS v ON v.id = k.value_id WHERE l.seq >= ?1 ORDER BY l.seq LIMIT ?2",
      "read changes");
  if (!changes.ok()) return changes.status();
  Result<sql::Stmt> expired = db.prepare(
      "SELECT coalesce(sum(expiry_ms <= ?1), 0), coalesce(sum(expiry_ms > ?1), 0) FROM " + kv +
          " WHERE expiry_ms > 0 AND tombstone = 0",
      "count expiring rows");
  if (!expired.ok()) return expired.status();
  Result<sql::Stmt> digest_scan =
      db.prepare("SELECT key, hlc, origin, tombstone, expiry_ms FROM " + kv, "scan for digest");
  if (!digest_scan.ok()) return digest_scan.status();
  Result<sql::Stmt> leaf_rows = db.prepare("SELECT key, hlc, origin, tombstone, expiry_ms FROM " +
                                               kv + " WHERE leaf = ?1 ORDER BY leaf, key LIMIT ?2",
                                           "read digest leaf");
  if (!leaf_rows.ok()) return leaf_rows.status();
  s.digest_scan = std::move(*digest_scan);
  s.leaf_rows = std::move(*leaf_rows);
  s.get = std::move(*get);
  s.changes = std::move(*changes);
  s.expired = std::move(*expired);
  return &s;
}

Result<Record> Reader::stored(std::string_view key, uint32_t partition) {
  // A staged write is newer than the key's row. Looked up before the row: a write applied
  // meanwhile left the staged writes only after its transaction committed, so the row read
  // below (a snapshot taken later) has it.
  const uint32_t file = state_.layout.file_of(partition);
  StagedWrite staged;
  if (state_.staged[file]->find(key, &staged)) {
    Record record;
    if (!staged.tombstone) {
      Result<std::string> value = decoder_.decode(static_cast<int64_t>(staged.codec), staged.value);
      if (!value.ok()) return value.status();
      record.value = std::move(*value);
    }
    record.key = std::move(staged.key);
    record.version = staged.version;
    record.expiry = WallTime{staged.expiry_ms};
    record.tombstone = staged.tombstone;
    return record;
  }
  Result<Statements*> s = statements(partition);
  if (!s.ok()) return s.status();
  if (*s == nullptr) return Status::not_found("key not found");
  sql::Stmt& stmt = (*s)->get;
  sql::StmtScope scope(stmt);
  stmt.bind_blob(1, key);
  stmt.bind_int64(2, digest_leaf(key));
  Result<bool> row = stmt.step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::not_found("key not found");
  Record record;
  record.key = std::string(key);
  record.version = Version{stmt.u64_at(0), stmt.u64_at(1)};
  record.expiry = WallTime{stmt.int64_at(2)};
  record.tombstone = stmt.int64_at(3) != 0;
  if (record.tombstone) return record;
  Result<std::string> value = decoder_.decode(stmt.int64_at(4), stmt.blob_at(5));
  if (!value.ok()) {
    return Status(value.status().code(),
                  dbs_[file].path() + ": " + kv_table(partition) + ": " + value.status().message());
  }
  record.value = std::move(*value);
  return record;
}

Result<Record> Reader::get(std::string_view key, uint32_t partition, WallTime now) {
  Result<Record> record = stored(key, partition);
  if (!record.ok()) return record;
  if (record->expired_tombstone()) return Status::not_found("key expired");
  if (record->tombstone) return Status::not_found("key was deleted");
  if (record->expiry.ms != 0 && record->expiry <= now) return Status::not_found("key expired");
  return record;
}

Result<Record> Reader::read(std::string_view key, uint32_t partition, WallTime now) {
  Result<Record> record = stored(key, partition);
  if (!record.ok()) return record;
  // A live row expired at `now` is as good as the tombstone the sweep will leave.
  if (!record->tombstone && record->expiry.ms != 0 && record->expiry <= now) {
    record->tombstone = true;
    record->value.clear();
  }
  return record;
}

Result<Reader::HintStatements*> Reader::hint_statements(uint32_t file) {
  HintStatements& h = hints_[file];
  if (h.by_key.valid()) return &h;
  Result<sql::Db> db = sql::Db::open(state_.layout.stage_path(file), /*create=*/false);
  if (!db.ok()) return db.status();
  EDGEKV_RETURN_IF_ERROR(
      configure_connection(*db, ConnectionRole::kReader, state_.options.sync, 0));
  constexpr const char* kColumns =
      "SELECT key, hlc, origin, expiry_ms, tombstone, codec, value FROM hints";
  Result<sql::Stmt> by_owner = db->prepare(
      std::string(kColumns) + " WHERE owner = ?1 ORDER BY hlc, origin LIMIT ?2", "read hints");
  if (!by_owner.ok()) return by_owner.status();
  Result<sql::Stmt> by_key =
      db->prepare(std::string(kColumns) + " WHERE key = ?1 ORDER BY hlc DESC, origin DESC LIMIT 1",
                  "read hint");
  if (!by_key.ok()) return by_key.status();
  // Row values walk the (owner, hlc, origin) index from the cursor on.
  Result<sql::Stmt> by_owner_after = db->prepare(
      std::string(kColumns) +
          " WHERE owner = ?1 AND (hlc, origin) > (?2, ?3) ORDER BY hlc, origin LIMIT ?4",
      "read hints");
  if (!by_owner_after.ok()) return by_owner_after.status();
  Result<sql::Stmt> owners = db->prepare(
      "SELECT owner, count(*), sum(length(owner) + length(key) + length(value)), min(hlc),"
      " min(origin) FROM hints GROUP BY owner ORDER BY owner",
      "summarize hints");
  if (!owners.ok()) return owners.status();
  h.db = std::move(*db);
  h.by_owner = std::move(*by_owner);
  h.by_owner_after = std::move(*by_owner_after);
  h.by_key = std::move(*by_key);
  h.owners = std::move(*owners);
  return &h;
}

Result<Record> Reader::hint_at(sql::Stmt& stmt) {
  Record record;
  record.key = std::string(stmt.blob_at(0));
  record.version = Version{stmt.u64_at(1), stmt.u64_at(2)};
  record.expiry = WallTime{stmt.int64_at(3)};
  record.tombstone = stmt.int64_at(4) != 0;
  if (!record.tombstone) {
    Result<std::string> value = decoder_.decode(stmt.int64_at(5), stmt.blob_at(6));
    if (!value.ok()) return value.status();
    record.value = std::move(*value);
  }
  return record;
}

Result<std::vector<Record>> Reader::read_hints(std::string_view owner, size_t max) {
  std::vector<Record> out;
  if (max == 0) return out;
  // Each file's oldest `max`, merged: the oldest `max` of all.
  for (uint32_t f = 0; f < state_.layout.db_files; ++f) {
    Result<HintStatements*> h = hint_statements(f);
    if (!h.ok()) return h.status();
    sql::Stmt& stmt = (*h)->by_owner;
    sql::StmtScope scope(stmt);
    stmt.bind_blob(1, owner);
    stmt.bind_int64(2, clamp_limit(max));
    for (;;) {
      Result<bool> row = stmt.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      Result<Record> record = hint_at(stmt);
      if (!record.ok()) return record.status();
      out.push_back(std::move(*record));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Record& a, const Record& b) { return a.version < b.version; });
  if (out.size() > max) out.resize(max);
  return out;
}

Result<std::vector<Record>> Reader::read_hints_after(std::string_view owner, Version after,
                                                     size_t max, uint64_t max_bytes) {
  std::vector<Record> out;
  if (max == 0) return out;
  // Each file's first hints after the cursor, up to `max` of them or `max_bytes`, merged:
  // whatever the merged page takes from a file is a prefix of what was read from it.
  for (uint32_t f = 0; f < state_.layout.db_files; ++f) {
    Result<HintStatements*> h = hint_statements(f);
    if (!h.ok()) return h.status();
    sql::Stmt& stmt = (*h)->by_owner_after;
    sql::StmtScope scope(stmt);
    stmt.bind_blob(1, owner);
    stmt.bind_u64(2, after.hlc);
    stmt.bind_u64(3, after.origin);
    stmt.bind_int64(4, clamp_limit(max));
    uint64_t bytes = 0;
    while (bytes < max_bytes) {
      Result<bool> row = stmt.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      Result<Record> record = hint_at(stmt);
      if (!record.ok()) return record.status();
      bytes += record->key.size() + record->value.size();
      out.push_back(std::move(*record));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Record& a, const Record& b) { return a.version < b.version; });
  uint64_t bytes = 0;
  size_t keep = 0;
  while (keep < out.size() && keep < max && (keep == 0 || bytes < max_bytes)) {
    bytes += out[keep].key.size() + out[keep].value.size();
    ++keep;
  }
  out.resize(keep);
  return out;
}

Result<std::vector<HintOwnerSummary>> Reader::hint_owners() {
  std::map<std::string, HintOwnerSummary, std::less<>> merged;
  for (uint32_t f = 0; f < state_.layout.db_files; ++f) {
    Result<HintStatements*> h = hint_statements(f);
    if (!h.ok()) return h.status();
    sql::Stmt& stmt = (*h)->owners;
    sql::StmtScope scope(stmt);
    for (;;) {
      Result<bool> row = stmt.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      std::string owner(stmt.blob_at(0));
      HintOwnerSummary& s = merged[owner];
      s.owner = owner;
      const uint64_t count = stmt.u64_at(1);
      s.hints += count;
      s.bytes += stmt.u64_at(2) + count * kHintOverheadBytes;
      // min(hlc) and min(origin) are taken apart; the hlc dates the oldest, which is what
      // the summary is for.
      const Version oldest{stmt.u64_at(3), stmt.u64_at(4)};
      if (s.oldest == Version{} || oldest < s.oldest) s.oldest = oldest;
    }
  }
  std::vector<HintOwnerSummary> out;
  for (auto& [owner, s] : merged) out.push_back(std::move(s));
  return out;
}

Result<Record> Reader::read_hint(std::string_view key, uint32_t partition, WallTime now) {
  Result<HintStatements*> h = hint_statements(state_.layout.file_of(partition));
  if (!h.ok()) return h.status();
  sql::Stmt& stmt = (*h)->by_key;
  sql::StmtScope scope(stmt);
  stmt.bind_blob(1, key);
  Result<bool> row = stmt.step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::not_found("no hint for the key");
  Result<Record> record = hint_at(stmt);
  if (record.ok() && !record->tombstone && record->expiry.ms != 0 && record->expiry <= now) {
    record->tombstone = true;  // as read() reports an expired row
    record->value.clear();
  }
  return record;
}

Result<std::vector<ChangeEvent>> Reader::read_changes(uint32_t partition, uint64_t from_seq,
                                                      size_t max) {
  std::vector<ChangeEvent> events;
  if (max == 0) return events;
  // Staged entries first, then the log: an entry applied in between is in both (and taken
  // from the log), never in neither. Staged entries are newer than every logged one.
  const StagedWrites& staged_writes = *state_.staged[state_.layout.file_of(partition)];
  StagedChanges staged = staged_writes.changes(partition, from_seq, max);
  Result<Statements*> s = statements(partition);
  if (!s.ok()) return s.status();
  if (*s != nullptr) {
    sql::Stmt& stmt = (*s)->changes;
    sql::StmtScope scope(stmt);
    stmt.bind_u64(1, from_seq);
    stmt.bind_int64(2, clamp_limit(max));
    for (;;) {
      Result<bool> row = stmt.step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      int64_t op = stmt.int64_at(1);
      if (op < static_cast<int64_t>(ChangeOp::kPut) ||
          op > static_cast<int64_t>(ChangeOp::kExpire)) {
        return Status::corruption(dbs_[state_.layout.file_of(partition)].path() + ": " +
                                  log_table(partition) + ": unknown change op " +
                                  std::to_string(op));
      }
      ChangeEvent event;
      event.seq = stmt.u64_at(0);
      event.op = static_cast<ChangeOp>(op);
      event.version = Version{stmt.u64_at(2), stmt.u64_at(3)};
      event.expiry = WallTime{stmt.int64_at(4)};
      event.key = std::string(stmt.blob_at(5));
      event.partition = partition;
      if (stmt.int64_at(6) != 0) {  // the row still holds this put
        Result<std::string> value = decoder_.decode(stmt.int64_at(7), stmt.blob_at(8));
        if (!value.ok()) return value.status();
        event.value = std::move(*value);
      }
      events.push_back(std::move(event));
    }
  }
  // A logged put whose key had a newer staged write when the staged entries were taken is
  // superseded: no value, as for the log's own superseded puts. (Looked up in that
  // snapshot, not now: the staged write may have been applied since.)
  if (!staged.newest_seq.empty()) {
    for (ChangeEvent& event : events) {
      if (event.op != ChangeOp::kPut || event.value.empty()) continue;
      auto it = staged.newest_seq.find(event.key);
      if (it != staged.newest_seq.end() && it->second > event.seq) event.value.clear();
    }
  }
  const uint64_t logged_to = events.empty() ? 0 : events.back().seq;
  for (StagedChange& c : staged.entries) {
    if (events.size() >= max) break;
    if (c.seq <= logged_to) continue;
    ChangeEvent& event = events.emplace_back();
    event.seq = c.seq;
    event.op = c.op;
    event.version = c.version;
    event.expiry = WallTime{c.expiry_ms};
    event.key = std::move(c.key);
    event.partition = partition;
    if (c.current && c.op == ChangeOp::kPut) {
      Result<std::string> value = decoder_.decode(static_cast<int64_t>(c.codec), c.value);
      if (!value.ok()) return value.status();
      event.value = std::move(*value);
    }
  }
  return events;
}

Status Reader::scan_digest(uint32_t partition, DigestLeaves* scan) {
  const uint32_t file = state_.layout.file_of(partition);
  FileDigests& digests = *state_.digests[file];
  sql::Db& db = dbs_[file];
  std::vector<DigestEntry> staged;
  sql::Stmt* rows = nullptr;
  bool row_ready = false;
  {
    std::lock_guard lock(digests.mu);
    auto& slot = digests.by_slot[state_.layout.slot_of(partition)];
    if (slot == nullptr) slot = std::make_unique<FileDigests::Partition>();
    staged = state_.staged[file]->digest_entries(partition, nullptr);
    // Without tables the partition has nothing but staged writes: tables a batch creates
    // from now on hold writes staged already (copied above) or changes the digest takes.
    Result<Statements*> s = statements(partition);
    if (!s.ok()) return s.status();
    if (*s != nullptr) {
      EDGEKV_RETURN_IF_ERROR(db.exec("BEGIN", "begin digest scan"));
      rows = &(*s)->digest_scan;
      // The first step takes the snapshot, while no change can commit unseen.
      Result<bool> row = rows->step();
      if (!row.ok()) {
        rows->reset();
        (void)db.exec("ROLLBACK", "end digest scan");
        return row.status();
      }
      row_ready = *row;
    }
  }
  std::unordered_set<std::string_view> staged_keys;
  for (const DigestEntry& e : staged) {
    staged_keys.insert(e.key);
    scan->add(e.key, e.version, e.deleted, e.expiry.ms);
  }
  if (rows == nullptr) return Status();
  Status status;
  {
    sql::StmtScope scope(*rows);
    while (row_ready) {
      const std::string_view key = rows->blob_at(0);
      // A staged write is newer than its key's row.
      if (staged_keys.count(key) == 0) {
        scan->add(key, Version{rows->u64_at(1), rows->u64_at(2)}, rows->int64_at(3) != 0,
                  rows->int64_at(4));
      }
      Result<bool> row = rows->step();
      if (!row.ok()) {
        status = row.status();
        break;
      }
      row_ready = *row;
    }
  }
  Status ended = db.exec("COMMIT", "end digest scan");
  return status.ok() ? ended : status;
}

Result<std::vector<DigestEntry>> Reader::digest_entries(uint32_t partition,
                                                        const std::vector<uint32_t>& leaves,
                                                        size_t max) {
  std::vector<DigestEntry> out;
  if (max == 0 || leaves.empty()) return out;
  std::vector<bool> wanted(kDigestLeaves, false);
  for (uint32_t leaf : leaves) wanted[leaf] = true;
  // Staged writes first, then the rows: a write applied in between is in both (the newer
  // version is kept), never in neither, as for reads.
  const uint32_t file = state_.layout.file_of(partition);
  std::vector<DigestEntry> staged = state_.staged[file]->digest_entries(partition, &wanted);
  std::vector<std::pair<uint32_t, DigestEntry*>> staged_order;
  for (DigestEntry& e : staged) staged_order.emplace_back(digest_leaf(e.key), &e);
  std::sort(staged_order.begin(), staged_order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->key < b.second->key;
  });
  Result<Statements*> s = statements(partition);
  if (!s.ok()) return s.status();
  size_t next_staged = 0;
  for (uint32_t leaf : leaves) {
    if (out.size() >= max) break;
    // This leaf's staged entries, by key.
    std::vector<DigestEntry*> in_leaf;
    while (next_staged < staged_order.size() && staged_order[next_staged].first == leaf) {
      in_leaf.push_back(staged_order[next_staged++].second);
    }
    std::vector<DigestEntry> rows;
    if (*s != nullptr) {
      sql::Stmt& stmt = (*s)->leaf_rows;
      sql::StmtScope scope(stmt);
      stmt.bind_int64(1, leaf);
      stmt.bind_int64(2, clamp_limit(max - out.size()));
      for (;;) {
        Result<bool> row = stmt.step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        rows.push_back(digest_entry(std::string(stmt.blob_at(0)),
                                    Version{stmt.u64_at(1), stmt.u64_at(2)}, stmt.int64_at(3) != 0,
                                    stmt.int64_at(4)));
      }
    }
    // Merged by key; a key in both takes the newer version.
    size_t r = 0, st = 0;
    while ((r < rows.size() || st < in_leaf.size()) && out.size() < max) {
      if (st == in_leaf.size() || (r < rows.size() && rows[r].key < in_leaf[st]->key)) {
        out.push_back(std::move(rows[r++]));
      } else if (r == rows.size() || in_leaf[st]->key < rows[r].key) {
        out.push_back(std::move(*in_leaf[st++]));
      } else {
        out.push_back(rows[r].version > in_leaf[st]->version ? std::move(rows[r])
                                                             : std::move(*in_leaf[st]));
        ++r;
        ++st;
      }
    }
  }
  return out;
}

Result<ExpiryCounts> Reader::count_expiry(uint32_t partition, WallTime now) {
  Result<Statements*> s = statements(partition);
  if (!s.ok()) return s.status();
  if (*s == nullptr) return ExpiryCounts{};
  sql::Stmt& stmt = (*s)->expired;
  sql::StmtScope scope(stmt);
  stmt.bind_int64(1, now.ms);
  Result<bool> row = stmt.step();
  if (!row.ok()) return row.status();
  return ExpiryCounts{static_cast<uint64_t>(stmt.int64_at(0)),
                      static_cast<uint64_t>(stmt.int64_at(1))};
}

Result<ReaderPool::Lease> ReaderPool::acquire() {
  {
    std::unique_lock lock(mu_);
    returned_.wait(lock, [this] {
      return closed_ || !idle_.empty() || open_ < state_.options.read_connections_max;
    });
    if (closed_) {
      return Status::unavailable("store " + state_.layout.dir.string() + " is closed");
    }
    if (!idle_.empty()) {
      std::unique_ptr<Reader> reader = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(reader));
    }
    ++open_;  // reserve the slot; open outside the lock (opening parses the schema)
  }
  Result<std::unique_ptr<Reader>> reader = Reader::open(state_);
  if (!reader.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    returned_.notify_all();
    return reader.status();
  }
  return Lease(this, std::move(*reader));
}

void ReaderPool::give_back(std::unique_ptr<Reader> reader) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(reader));
  returned_.notify_all();
}

void ReaderPool::close() {
  std::unique_lock lock(mu_);
  closed_ = true;
  returned_.notify_all();
  returned_.wait(lock, [this] { return idle_.size() == open_; });
  idle_.clear();
  open_ = 0;
}

}  // namespace edgekv::store
