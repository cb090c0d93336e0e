// MemoryStore: the partitions as ordered maps, operations queued until the scheduler runs
// their commit, and a second copy of the state for what a power cut leaves.
#include "store/memory_store.h"

#include <algorithm>
#include <bit>
#include <deque>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "common/hash.h"
#include "common/hlc.h"

namespace edgekv::store {
namespace {

// The SQLite store's bounds (store.cc), so that both refuse the same input.
constexpr uint32_t kMaxPartitions = 65536;
constexpr size_t kMaxKeyBytes = 1 << 20;
constexpr size_t kMaxValueBytes = 256 << 20;

// What a hint costs beyond its owner's, key's and value's bytes: its version, expiry, flags
// and the bookkeeping of a row, rounded up. A fixed overhead makes hints_max_bytes bound the
// count of hints too, empty keys and values included.
constexpr uint64_t kHintOverheadBytes = 64;

Status check_record(const Record& record) {
  if (record.version.is_zero()) {
    return Status::invalid_argument("record version is zero; every write has one");
  }
  if (record.key.size() > kMaxKeyBytes) {
    return Status::invalid_argument("key is " + std::to_string(record.key.size()) +
                                    " bytes; the store takes at most " +
                                    std::to_string(kMaxKeyBytes));
  }
  if (record.value.size() > kMaxValueBytes) {
    return Status::invalid_argument("value is " + std::to_string(record.value.size()) +
                                    " bytes; the store takes at most " +
                                    std::to_string(kMaxValueBytes));
  }
  return Status();
}

Status validate(const StoreOptions& o) {
  if (!std::has_single_bit(o.partitions) || o.partitions > kMaxPartitions) {
    return Status::invalid_argument("partitions is " + std::to_string(o.partitions) +
                                    "; it must be a power of two from 1 to 65536");
  }
  if (o.group_commit_max == 0 || o.write_queue_max == 0 || o.read_connections_max == 0) {
    return Status::invalid_argument(
        "group_commit_max, write_queue_max and read_connections_max must be at least 1");
  }
  if (o.tombstone_grace_ms < 0) {
    return Status::invalid_argument("tombstone_grace_ms is negative");
  }
  return Status();
}

// The hlc below which tombstones are purged: versions made more than grace_ms before `now`
// (0: none). As the SQLite store computes it; readings with bit 63 set are never purged.
uint64_t tombstone_cutoff(WallTime now, int64_t grace_ms) {
  if (now.ms <= grace_ms) return 0;
  const int64_t physical = now.ms - grace_ms;
  constexpr int64_t kMaxPhysical = std::numeric_limits<int64_t>::max() >> HybridClock::kLogicalBits;
  if (physical > kMaxPhysical) return static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  return HybridClock::pack(physical, 0);
}

// A key's stored state. Tombstones keep version and (expiry tombstones) expiry.
struct Row {
  std::string value;
  Version version;
  int64_t expiry_ms = 0;
  bool tombstone = false;
  uint64_t seq = 0;  // the change-log entry that made the row
};

struct LogEntry {
  uint64_t seq = 0;
  ChangeOp op = ChangeOp::kPut;
  std::string key;
  Version version;
  int64_t expiry_ms = 0;
};

struct Partition {
  std::map<std::string, Row, std::less<>> rows;
  // Live rows with an expiry, soonest first: the sweep's and stats()'s index.
  std::set<std::pair<int64_t, std::string>> expiring;
  // Tombstones of both kinds by version: the purge's index.
  std::set<std::pair<Version, std::string>> tombstones;
  // Every row by its digest leaf, then key: digest_entries' index.
  std::set<std::pair<uint32_t, std::string>> by_leaf;
  std::deque<LogEntry> log;  // contiguous seqs, ending at last_seq
  uint64_t last_seq = 0;
  // The hlc bound of the last purge by horizon: writes below it to keys with no row stay
  // out after a crash too, as the SQLite store keeps it in meta with the purge.
  uint64_t purge_floor = 0;
  uint64_t live = 0;  // rows that are not tombstones, expired or not
};

struct Hint {
  Record record;
  uint64_t order = 0;  // when it was stored: an owner's hints are read in this order
  uint64_t bytes = 0;
};

struct Hints {
  std::map<std::pair<std::string, std::string>, Hint> by_owner_key;
  std::map<std::string, std::map<uint64_t, std::string>, std::less<>> by_owner;  // order -> key
  std::map<std::string, std::set<std::string>, std::less<>> owners_of_key;
  uint64_t next_order = 1;
  uint64_t bytes = 0;
};

// Everything a commit changes and a crash may keep or lose.
struct State {
  std::vector<Partition> partitions;
  Hints hints;
  uint32_t sweep_cursor = 0;  // where the next sweep's purge and trim start
};

// The digests built since open, by partition (null: not asked for yet). Kept apart from
// State, like Counts: only the committed state's changes update them, never a replay onto
// the synced copy.
using Digests = std::vector<std::unique_ptr<DigestLeaves>>;

// Counters since open (StoreStats), kept apart from State: replaying operations onto the
// synced copy must not count them twice.
struct Counts {
  uint64_t puts = 0;
  uint64_t deletes = 0;
  uint64_t ignored = 0;
  uint64_t expired = 0;
  uint64_t purged = 0;
  uint64_t below_horizon = 0;
};

// An operation's input: enough to run it again on another copy of the state.
struct OpInput {
  enum class Kind : uint8_t { kApply, kHint, kRemoveHint, kSweep, kDrop };
  Kind kind = Kind::kApply;
  Record record;
  std::string owner;
  WallTime now;
  size_t max_rows = 0;
  uint32_t partition = 0;  // drop_partition()'s
  bool relayed = false;    // apply_relayed()
  // TombstonePurge::kByHorizon, taken when the operation first runs, so that a replay onto
  // the synced copy decides alike: what a relayed write or a tombstone is held to (an hlc;
  // 0: nothing),
  // a sweep's horizons.
  uint64_t horizon_hlc = 0;
  std::vector<PurgeHorizon> horizons;
};

// A live record that expired at `now` reads as the tombstone its expiry leaves.
Record as_read(const Record& record, WallTime now) {
  if (record.tombstone || record.expiry.ms == 0 || record.expiry > now) return record;
  Record out;
  out.key = record.key;
  out.version = record.version;
  out.expiry = record.expiry;
  out.tombstone = true;
  return out;
}

Record record_of(std::string_view key, const Row& row) {
  Record r;
  r.key = std::string(key);
  r.value = row.value;
  r.version = row.version;
  r.expiry = WallTime{row.expiry_ms};
  r.tombstone = row.tombstone;
  return r;
}

// What a record becomes when stored: a delete tombstone (no value, no expiry), an expiry
// tombstone (a tombstone that arrived with its expiry, or a put already expired at `now`:
// no value, expiry kept), or a put. Returns the change-log op.
ChangeOp normalize(Record& record, WallTime now) {
  if (record.tombstone) {
    record.value.clear();
    return record.expiry.ms != 0 ? ChangeOp::kExpire : ChangeOp::kDelete;
  }
  if (record.expiry.ms != 0 && record.expiry <= now) {
    record.value.clear();
    record.tombstone = true;
    return ChangeOp::kExpire;
  }
  return ChangeOp::kPut;
}

void unindex(Partition& part, const std::string& key, const Row& row) {
  if (row.tombstone) {
    part.tombstones.erase({row.version, key});
  } else {
    --part.live;
    if (row.expiry_ms != 0) part.expiring.erase({row.expiry_ms, key});
  }
}

void index(Partition& part, const std::string& key, const Row& row) {
  if (row.tombstone) {
    part.tombstones.insert({row.version, key});
  } else {
    ++part.live;
    if (row.expiry_ms != 0) part.expiring.insert({row.expiry_ms, key});
  }
}

// Logs a change to `key` and stores `row` as its state; returns the change.
ChangeEvent write_row(Partition& part, uint32_t partition, const std::string& key, ChangeOp op,
                      Row row, Digests* digests) {
  row.seq = ++part.last_seq;
  part.log.push_back(LogEntry{row.seq, op, key, row.version, row.expiry_ms});
  ChangeEvent event;
  event.op = op;
  event.key = key;
  if (op == ChangeOp::kPut) event.value = row.value;
  event.version = row.version;
  event.expiry = WallTime{row.expiry_ms};
  event.partition = partition;
  event.seq = row.seq;
  DigestLeaves* digest = digests != nullptr ? (*digests)[partition].get() : nullptr;
  auto it = part.rows.find(key);
  if (it != part.rows.end()) {
    unindex(part, key, it->second);
    if (digest != nullptr) {
      const Row& old = it->second;
      digest->remove(key, old.version, old.tombstone, old.expiry_ms);
    }
    it->second = std::move(row);
  } else {
    it = part.rows.emplace(key, std::move(row)).first;
    part.by_leaf.emplace(digest_leaf(key), key);
  }
  index(part, key, it->second);
  if (digest != nullptr) {
    digest->add(key, it->second.version, it->second.tombstone, it->second.expiry_ms);
  }
  return event;
}

ApplyResult run_apply(State& s, uint32_t partitions, Record record, WallTime now,
                      uint64_t horizon_hlc, Counts* counts, Digests* digests) {
  const uint32_t p = partition_of(record.key, partitions);
  Partition& part = s.partitions[p];
  ApplyResult result;
  if (auto it = part.rows.find(record.key); it != part.rows.end()) {
    result.current = it->second.version;
    if (!(record.version > it->second.version)) {
      ++counts->ignored;
      return result;
    }
  } else if (record.version.hlc < horizon_hlc) {
    // A purged tombstone may have superseded it, or it is a tombstone the key's absence
    // already stands for (Store::set_purge_horizon).
    ++counts->ignored;
    const bool leaves_tombstone =
        record.tombstone || (record.expiry.ms != 0 && record.expiry <= now);
    if (!leaves_tombstone) ++counts->below_horizon;
    return result;
  }
  const ChangeOp op = normalize(record, now);
  Row row;
  row.value = std::move(record.value);
  row.version = record.version;
  row.expiry_ms = op == ChangeOp::kDelete ? 0 : record.expiry.ms;
  row.tombstone = op != ChangeOp::kPut;
  result.applied = true;
  result.current = row.version;
  result.event = write_row(part, p, record.key, op, std::move(row), digests);
  switch (op) {
    case ChangeOp::kPut: ++counts->puts; break;
    case ChangeOp::kDelete: ++counts->deletes; break;
    case ChangeOp::kExpire: ++counts->expired; break;
  }
  return result;
}

Result<ApplyResult> run_hint(State& s, const StoreOptions& options, std::string owner,
                             Record record, WallTime now) {
  Hints& h = s.hints;
  auto id = std::make_pair(owner, record.key);
  auto it = h.by_owner_key.find(id);
  ApplyResult result;
  uint64_t replaced_bytes = 0;
  if (it != h.by_owner_key.end()) {
    result.current = it->second.record.version;
    if (!(record.version > it->second.record.version)) return result;
    replaced_bytes = it->second.bytes;
  }
  const ChangeOp op = normalize(record, now);
  const uint64_t bytes =
      owner.size() + record.key.size() + record.value.size() + kHintOverheadBytes;
  if (h.bytes - replaced_bytes + bytes > options.hints_max_bytes) {
    return Status::overloaded("hints reached " + std::to_string(h.bytes) +
                              " bytes (hints_max_bytes=" + std::to_string(options.hints_max_bytes) +
                              "); a hint of " + std::to_string(bytes) + " bytes does not fit");
  }
  if (it != h.by_owner_key.end()) {
    h.by_owner.find(owner)->second.erase(it->second.order);
    h.bytes -= it->second.bytes;
    h.by_owner_key.erase(it);
  }
  const uint64_t order = h.next_order++;
  h.by_owner[owner].emplace(order, record.key);
  h.owners_of_key[record.key].insert(owner);
  h.bytes += bytes;

  result.applied = true;
  result.current = record.version;
  ChangeEvent& event = result.event;
  event.op = op;
  event.key = record.key;
  event.value = record.value;
  event.version = record.version;
  event.expiry = record.expiry;
  event.partition = partition_of(record.key, static_cast<uint32_t>(s.partitions.size()));
  event.seq = 0;  // hints are not in the change log
  h.by_owner_key.emplace(std::move(id), Hint{std::move(record), order, bytes});
  return result;
}

// Store::remove_hint: forgets the hint for (owner, key) if it still has the version.
ApplyResult run_remove_hint(State& s, const std::string& owner, const Record& record) {
  Hints& h = s.hints;
  ApplyResult result;
  auto it = h.by_owner_key.find({owner, record.key});
  if (it == h.by_owner_key.end()) return result;
  result.current = it->second.record.version;
  if (it->second.record.version != record.version) return result;
  auto by_owner = h.by_owner.find(owner);
  by_owner->second.erase(it->second.order);
  if (by_owner->second.empty()) h.by_owner.erase(by_owner);
  auto owners = h.owners_of_key.find(record.key);
  owners->second.erase(owner);
  if (owners->second.empty()) h.owners_of_key.erase(owners);
  h.bytes -= it->second.bytes;
  h.by_owner_key.erase(it);
  result.applied = true;
  return result;
}

std::vector<ChangeEvent> run_sweep(State& s, const StoreOptions& options, WallTime now,
                                   size_t max_rows, const std::vector<PurgeHorizon>& horizons,
                                   Counts* counts, Digests* digests) {
  const auto n = static_cast<uint32_t>(s.partitions.size());
  // Expire: the soonest-expiring rows across partitions, then by key; within a partition
  // that is the SQLite store's order, so each partition's seqs come out alike.
  std::vector<std::tuple<int64_t, std::string, uint32_t>> due;
  for (uint32_t p = 0; p < n; ++p) {
    size_t taken = 0;
    for (const auto& [expiry_ms, key] : s.partitions[p].expiring) {
      if (expiry_ms > now.ms || taken == max_rows) break;
      due.emplace_back(expiry_ms, key, p);
      ++taken;
    }
  }
  std::sort(due.begin(), due.end());
  if (due.size() > max_rows) due.resize(max_rows);
  std::vector<ChangeEvent> events;
  events.reserve(due.size());
  for (const auto& [expiry_ms, key, p] : due) {
    Partition& part = s.partitions[p];
    const Row& old = part.rows.find(key)->second;
    Row row;
    row.version = old.version;
    row.expiry_ms = old.expiry_ms;
    row.tombstone = true;
    events.push_back(write_row(part, p, key, ChangeOp::kExpire, std::move(row), digests));
    ++counts->expired;
  }
  // Purge tombstones made before the grace period, then trim the change logs to
  // changelog_keep entries (at least the newest, as the SQLite store keeps it for last_seq),
  // each bounded by max_rows, from a partition that moves on with every sweep.
  const bool by_horizon = options.tombstone_purge == TombstonePurge::kByHorizon;
  const uint64_t age_cutoff = tombstone_cutoff(now, options.tombstone_grace_ms);
  size_t purge_left = max_rows;
  for (uint32_t i = 0; i < n && purge_left > 0; ++i) {
    const uint32_t p = (s.sweep_cursor + i) % n;
    Partition& part = s.partitions[p];
    // By age: older than the grace. By horizon: below both of the partition's bounds.
    uint64_t cutoff = age_cutoff;
    uint64_t seq_through = std::numeric_limits<uint64_t>::max();
    if (by_horizon) {
      cutoff = p < horizons.size() ? horizons[p].hlc_below : 0;
      seq_through = p < horizons.size() ? horizons[p].seq_through : 0;
    }
    DigestLeaves* digest = digests != nullptr ? (*digests)[p].get() : nullptr;
    bool purged_any = false;
    for (auto t = part.tombstones.begin();
         purge_left > 0 && t != part.tombstones.end() && t->first.hlc < cutoff;) {
      auto rows_it = part.rows.find(t->second);
      const Row& purged = rows_it->second;
      if (purged.seq > seq_through) {
        ++t;  // arrived after what the other replicas are known to hold
        continue;
      }
      if (digest != nullptr) {
        digest->remove(rows_it->first, purged.version, purged.tombstone, purged.expiry_ms);
      }
      part.by_leaf.erase({digest_leaf(rows_it->first), rows_it->first});
      t = part.tombstones.erase(t);
      part.rows.erase(rows_it);
      --purge_left;
      ++counts->purged;
      purged_any = true;
    }
    if (by_horizon && purged_any) part.purge_floor = std::max(part.purge_floor, cutoff);
  }
  const uint64_t keep = std::max<uint64_t>(options.changelog_keep, 1);
  size_t trim_left = max_rows;
  for (uint32_t i = 0; i < n && trim_left > 0; ++i) {
    Partition& part = s.partitions[(s.sweep_cursor + i) % n];
    while (trim_left > 0 && part.log.size() > keep) {
      part.log.pop_front();
      --trim_left;
    }
  }
  s.sweep_cursor = (s.sweep_cursor + 1) % n;
  return events;
}

// Store::drop_partition: the partition's rows and their indexes go, its change log and
// last_seq stay, its purge floor goes back to none. The digest, when built, becomes an
// empty partition's.
void run_drop(State& s, uint32_t partition, Digests* digests) {
  Partition& part = s.partitions[partition];
  part.rows.clear();
  part.expiring.clear();
  part.tombstones.clear();
  part.by_leaf.clear();
  part.purge_floor = 0;
  part.live = 0;
  if (digests != nullptr && (*digests)[partition] != nullptr) {
    *(*digests)[partition] = DigestLeaves{};
  }
}

// Runs `in` on `s` and returns what the operation's callback gets.
struct OpOutcome {
  Result<ApplyResult> apply = ApplyResult{};
  std::vector<ChangeEvent> events;
  bool changed = false;  // the state changed (what a sync must cover)
};

OpOutcome run(State& s, const StoreOptions& options, OpInput in, Counts* counts, Digests* digests) {
  OpOutcome out;
  switch (in.kind) {
    case OpInput::Kind::kApply:
      out.apply = run_apply(s, options.partitions, std::move(in.record), in.now, in.horizon_hlc,
                            counts, digests);
      out.changed = out.apply->applied;
      break;
    case OpInput::Kind::kHint:
      out.apply = run_hint(s, options, std::move(in.owner), std::move(in.record), in.now);
      out.changed = out.apply.ok() && out.apply->applied;
      break;
    case OpInput::Kind::kRemoveHint:
      out.apply = run_remove_hint(s, in.owner, in.record);
      out.changed = out.apply->applied;
      break;
    case OpInput::Kind::kSweep:
      out.events = run_sweep(s, options, in.now, in.max_rows, in.horizons, counts, digests);
      out.changed = true;  // the sweep cursor moves, whatever else
      break;
    case OpInput::Kind::kDrop:
      run_drop(s, in.partition, digests);
      out.changed = true;
      break;
  }
  return out;
}

}  // namespace

struct MemoryStore::Core {
  struct Op {
    uint64_t id = 0;
    OpInput input;
    ApplyCallback apply_done;
    SweepCallback sweep_done;
    DropCallback drop_done;
  };

  StoreOptions options;
  Scheduler scheduler;
  State state;                   // committed: what reads see
  State synced;                  // SyncMode::kNormal only: what a power cut leaves
  std::deque<OpInput> unsynced;  // committed since `synced`, oldest first
  size_t unsynced_writes = 0;    // of those, writes (a sweep syncs everything)
  std::deque<Op> queue;          // not yet committed, oldest first
  uint64_t next_id = 1;
  bool up = true;
  bool crashed = false;  // down because of crash(), not close()
  Counts counts;
  // TombstonePurge::kByHorizon: what set_purge_horizon() raised; back to the purge floors
  // after a crash (reopen).
  std::vector<PurgeHorizon> horizons;
  Digests digests;  // of `state`; dropped by crash() and reopen(), built again when asked
  std::vector<uint64_t> drops;  // Store::drops, by partition; since open (or reopen())
  uint64_t commit_groups = 0;
  uint64_t group_writes = 0;

  Status down_status() const {
    return Status::unavailable(crashed ? "store crashed and was not reopened" : "store is closed");
  }
  bool queue_full() const { return queue.size() >= options.write_queue_max; }
  Status queue_full_status() const {
    return Status::overloaded("store write queue is full (write_queue_max=" +
                              std::to_string(options.write_queue_max) + ")");
  }

  void enqueue(std::weak_ptr<Core> self, OpInput input, ApplyCallback apply_done,
               SweepCallback sweep_done, DropCallback drop_done = nullptr) {
    const uint64_t id = next_id++;
    queue.push_back(Op{id, std::move(input), std::move(apply_done), std::move(sweep_done),
                       std::move(drop_done)});
    scheduler([self = std::move(self), id] {
      if (std::shared_ptr<Core> core = self.lock()) core->commit_through(id);
    });
  }

  // Commits every queued operation up to `id`, oldest first, each followed by its callback.
  // A callback may queue more (with greater ids), crash or close the store.
  void commit_through(uint64_t id) {
    bool any = false;
    while (!queue.empty() && queue.front().id <= id) {
      Op op = std::move(queue.front());
      queue.pop_front();
      if (!any) ++commit_groups;
      any = true;
      const bool sweep = op.input.kind == OpInput::Kind::kSweep;
      // A drop applies everything staged before it to the data file, fsync'd, as a sweep.
      const bool drop = op.input.kind == OpInput::Kind::kDrop;
      if (!sweep && !drop) ++group_writes;
      if (drop) horizons[op.input.partition] = PurgeHorizon{};
      if (options.tombstone_purge == TombstonePurge::kByHorizon) {
        if (sweep) {
          op.input.horizons = horizons;
        } else if (op.input.kind == OpInput::Kind::kApply &&
                   (op.input.relayed || op.input.record.tombstone ||
                    (op.input.record.expiry.ms != 0 && op.input.record.expiry <= op.input.now))) {
          const uint32_t p = edgekv::partition_of(op.input.record.key, options.partitions);
          op.input.horizon_hlc = std::max(horizons[p].hlc_below, state.partitions[p].purge_floor);
        }
      }
      OpInput replay;
      if (options.sync == SyncMode::kNormal) replay = op.input;
      OpOutcome out = run(state, options, std::move(op.input), &counts, &digests);
      if (options.sync == SyncMode::kNormal && out.changed) {
        unsynced.push_back(std::move(replay));
        if (sweep || drop) {
          sync(unsynced.size());
        } else {
          ++unsynced_writes;
          sync_batches();
        }
      }
      if (drop) {
        ++drops[op.input.partition];
        if (op.drop_done) op.drop_done(Status());
      } else if (sweep) {
        if (op.sweep_done) op.sweep_done(std::move(out.events));
      } else if (op.apply_done) {
        op.apply_done(std::move(out.apply));
      }
    }
  }

  // The oldest `n` unsynced operations become what a power cut leaves.
  void sync(size_t n) {
    Counts ignored;
    for (size_t i = 0; i < n && !unsynced.empty(); ++i) {
      const OpInput::Kind kind = unsynced.front().kind;
      (void)run(synced, options, std::move(unsynced.front()), &ignored, nullptr);
      unsynced.pop_front();
      if (kind != OpInput::Kind::kSweep && kind != OpInput::Kind::kDrop) --unsynced_writes;
    }
  }

  // A batch applied to the data files: the oldest stage_apply_batch writes once
  // stage_apply_at are unsynced, everything at once with stage_apply_at 0.
  void sync_batches() {
    if (options.stage_apply_at == 0) {
      sync(unsynced.size());
      return;
    }
    const size_t batch = std::max<size_t>(options.stage_apply_batch, 1);
    while (unsynced_writes >= options.stage_apply_at) sync(batch);
  }
};

Result<std::unique_ptr<MemoryStore>> MemoryStore::open(const StoreOptions& options,
                                                       Scheduler scheduler) {
  EDGEKV_RETURN_IF_ERROR(validate(options));
  if (!scheduler) return Status::invalid_argument("memory store needs a scheduler for commits");
  auto core = std::make_shared<Core>();
  core->options = options;
  core->scheduler = std::move(scheduler);
  core->state.partitions.resize(options.partitions);
  core->horizons.resize(options.partitions);
  core->digests.resize(options.partitions);
  core->drops.resize(options.partitions);
  if (options.sync == SyncMode::kNormal) core->synced = core->state;
  return std::unique_ptr<MemoryStore>(new MemoryStore(std::move(core)));
}

MemoryStore::MemoryStore(std::shared_ptr<Core> core) : core_(std::move(core)) {}

MemoryStore::~MemoryStore() { close(); }

uint32_t MemoryStore::partitions() const { return core_->options.partitions; }

Result<Record> MemoryStore::get(std::string_view key, WallTime now) {
  if (!core_->up) return core_->down_status();
  const Partition& part = core_->state.partitions[partition_of(key)];
  auto it = part.rows.find(key);
  if (it == part.rows.end()) return Status::not_found("key not found");
  const Row& row = it->second;
  if (row.tombstone) {
    return Status::not_found(row.expiry_ms != 0 ? "key expired" : "key was deleted");
  }
  if (row.expiry_ms != 0 && row.expiry_ms <= now.ms) return Status::not_found("key expired");
  return record_of(key, row);
}

void MemoryStore::apply(Record record, WallTime now, ApplyCallback done) {
  submit(std::move(record), now, std::move(done), /*relayed=*/false);
}

void MemoryStore::apply_relayed(Record record, WallTime now, ApplyCallback done) {
  submit(std::move(record), now, std::move(done), /*relayed=*/true);
}

void MemoryStore::submit(Record record, WallTime now, ApplyCallback done, bool relayed) {
  Core& c = *core_;
  Status refused;
  if (!c.up) {
    refused = c.down_status();
  } else if (Status bad = check_record(record); !bad.ok()) {
    refused = std::move(bad);
  } else if (c.queue_full()) {
    refused = c.queue_full_status();
  }
  if (!refused.ok()) {
    if (done) done(std::move(refused));
    return;
  }
  OpInput in;
  in.kind = OpInput::Kind::kApply;
  in.record = std::move(record);
  in.now = now;
  in.relayed = relayed;
  c.enqueue(core_, std::move(in), std::move(done), nullptr);
}

Result<Record> MemoryStore::read(std::string_view key, WallTime now) {
  if (!core_->up) return core_->down_status();
  const Partition& part = core_->state.partitions[partition_of(key)];
  auto it = part.rows.find(key);
  if (it == part.rows.end()) return Status::not_found("key not found");
  return as_read(record_of(key, it->second), now);
}

void MemoryStore::apply_hint(std::string owner, Record record, WallTime now, ApplyCallback done) {
  Core& c = *core_;
  Status refused;
  if (!c.up) {
    refused = c.down_status();
  } else if (Status bad = check_record(record); !bad.ok()) {
    refused = std::move(bad);
  } else if (owner.empty()) {
    refused = Status::invalid_argument("hint owner is empty; a hint names the replica it is for");
  } else if (c.queue_full()) {
    refused = c.queue_full_status();
  }
  if (!refused.ok()) {
    if (done) done(std::move(refused));
    return;
  }
  OpInput in;
  in.kind = OpInput::Kind::kHint;
  in.owner = std::move(owner);
  in.record = std::move(record);
  in.now = now;
  c.enqueue(core_, std::move(in), std::move(done), nullptr);
}

Result<std::vector<Record>> MemoryStore::read_hints(std::string_view owner, size_t max) {
  if (!core_->up) return core_->down_status();
  const Hints& h = core_->state.hints;
  std::vector<Record> out;
  auto owner_it = h.by_owner.find(owner);
  if (owner_it == h.by_owner.end()) return out;
  for (const auto& [order, key] : owner_it->second) {
    if (out.size() >= max) break;
    out.push_back(h.by_owner_key.find({owner_it->first, key})->second.record);
  }
  return out;
}

void MemoryStore::remove_hint(std::string owner, std::string key, Version version,
                              ApplyCallback done) {
  Core& c = *core_;
  if (!c.up) {
    if (done) done(c.down_status());
    return;
  }
  // Removing frees space: never refused at write_queue_max (as the SQLite store does not).
  OpInput in;
  in.kind = OpInput::Kind::kRemoveHint;
  in.owner = std::move(owner);
  in.record.key = std::move(key);
  in.record.version = version;
  c.enqueue(core_, std::move(in), std::move(done), nullptr);
}

Result<std::vector<Record>> MemoryStore::read_hints_after(std::string_view owner, Version after,
                                                          size_t max, uint64_t max_bytes) {
  if (!core_->up) return core_->down_status();
  const Hints& h = core_->state.hints;
  std::vector<Record> out;
  auto owner_it = h.by_owner.find(owner);
  if (owner_it == h.by_owner.end() || max == 0) return out;
  std::vector<const Record*> after_cursor;
  for (const auto& [order, key] : owner_it->second) {
    const Record& r = h.by_owner_key.find({owner_it->first, key})->second.record;
    if (r.version > after) after_cursor.push_back(&r);
  }
  std::sort(after_cursor.begin(), after_cursor.end(),
            [](const Record* a, const Record* b) { return a->version < b->version; });
  uint64_t bytes = 0;
  for (const Record* r : after_cursor) {
    if (out.size() >= max || (!out.empty() && bytes >= max_bytes)) break;
    bytes += r->key.size() + r->value.size();
    out.push_back(*r);
  }
  return out;
}

Result<std::vector<HintOwnerSummary>> MemoryStore::hint_owners() {
  if (!core_->up) return core_->down_status();
  const Hints& h = core_->state.hints;
  std::vector<HintOwnerSummary> out;
  for (const auto& [owner, keys] : h.by_owner) {
    HintOwnerSummary s;
    s.owner = owner;
    for (const auto& [order, key] : keys) {
      const Hint& hint = h.by_owner_key.find({owner, key})->second;
      ++s.hints;
      s.bytes += hint.bytes;
      if (s.oldest == Version{} || hint.record.version < s.oldest) s.oldest = hint.record.version;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<Record> MemoryStore::read_hint(std::string_view key, WallTime now) {
  if (!core_->up) return core_->down_status();
  const Hints& h = core_->state.hints;
  auto owners = h.owners_of_key.find(key);
  const Record* newest = nullptr;
  if (owners != h.owners_of_key.end()) {
    for (const std::string& owner : owners->second) {
      const Record& r = h.by_owner_key.find({owner, owners->first})->second.record;
      if (newest == nullptr || r.version > newest->version) newest = &r;
    }
  }
  if (newest == nullptr) return Status::not_found("no hint for the key");
  return as_read(*newest, now);
}

void MemoryStore::sweep(WallTime now, size_t max_rows, SweepCallback done) {
  Core& c = *core_;
  Status refused;
  if (!c.up) {
    refused = c.down_status();
  } else if (c.queue_full()) {
    refused = c.queue_full_status();
  }
  if (!refused.ok()) {
    if (done) done(std::move(refused));
    return;
  }
  OpInput in;
  in.kind = OpInput::Kind::kSweep;
  in.now = now;
  in.max_rows = max_rows;
  c.enqueue(core_, std::move(in), nullptr, std::move(done));
}

void MemoryStore::drop_partition(uint32_t partition, WallTime now, DropCallback done) {
  Core& c = *core_;
  Status refused = check_partition(partition);
  if (refused.ok() && c.queue_full()) {
    refused = c.queue_full_status();
  }
  if (!refused.ok()) {
    if (done) done(std::move(refused));
    return;
  }
  OpInput in;
  in.kind = OpInput::Kind::kDrop;
  in.partition = partition;
  in.now = now;
  c.enqueue(core_, std::move(in), nullptr, nullptr, std::move(done));
}

uint64_t MemoryStore::drops(uint32_t partition) const {
  return partition < core_->drops.size() ? core_->drops[partition] : 0;
}

Result<std::vector<ChangeEvent>> MemoryStore::read_changes(uint32_t partition, uint64_t from_seq,
                                                           size_t max) {
  if (partition >= partitions()) {
    return Status::invalid_argument("partition " + std::to_string(partition) +
                                    " is out of range (partitions=" + std::to_string(partitions()) +
                                    ")");
  }
  if (!core_->up) return core_->down_status();
  const Partition& part = core_->state.partitions[partition];
  std::vector<ChangeEvent> events;
  if (part.log.empty() || max == 0) return events;
  const uint64_t first = part.log.front().seq;
  const size_t start = from_seq <= first ? 0 : static_cast<size_t>(from_seq - first);
  for (size_t i = start; i < part.log.size() && events.size() < max; ++i) {
    const LogEntry& e = part.log[i];
    ChangeEvent& event = events.emplace_back();
    event.op = e.op;
    event.key = e.key;
    event.version = e.version;
    event.expiry = WallTime{e.expiry_ms};
    event.partition = partition;
    event.seq = e.seq;
    // A put carries its value while its row still holds it, as the SQLite store's join does.
    if (e.op == ChangeOp::kPut) {
      auto row = part.rows.find(e.key);
      if (row != part.rows.end() && row->second.seq == e.seq) event.value = row->second.value;
    }
  }
  return events;
}

Status MemoryStore::check_partition(uint32_t partition) const {
  if (partition >= partitions()) {
    return Status::invalid_argument("partition " + std::to_string(partition) +
                                    " is out of range (partitions=" + std::to_string(partitions()) +
                                    ")");
  }
  return core_->up ? Status() : core_->down_status();
}

Result<PartitionDigest> MemoryStore::digest(uint32_t partition) {
  EDGEKV_RETURN_IF_ERROR(check_partition(partition));
  std::unique_ptr<DigestLeaves>& digest = core_->digests[partition];
  if (digest == nullptr) {
    // The first call since open: one scan, then kept up by every commit (write_row, the purge).
    digest = std::make_unique<DigestLeaves>();
    for (const auto& [key, row] : core_->state.partitions[partition].rows) {
      digest->add(key, row.version, row.tombstone, row.expiry_ms);
    }
  }
  return digest->to_digest(partition);
}

Result<std::vector<DigestEntry>> MemoryStore::digest_entries(uint32_t partition,
                                                             const std::vector<uint32_t>& leaves,
                                                             size_t max) {
  EDGEKV_RETURN_IF_ERROR(check_partition(partition));
  Result<std::vector<uint32_t>> wanted = digest_leaf_set(leaves);
  if (!wanted.ok()) return wanted.status();
  const Partition& part = core_->state.partitions[partition];
  std::vector<DigestEntry> out;
  for (uint32_t leaf : *wanted) {
    for (auto it = part.by_leaf.lower_bound({leaf, std::string()});
         it != part.by_leaf.end() && it->first == leaf && out.size() < max; ++it) {
      const Row& row = part.rows.find(it->second)->second;
      out.push_back(digest_entry(it->second, row.version, row.tombstone, row.expiry_ms));
    }
  }
  return out;
}

uint64_t MemoryStore::last_seq(uint32_t partition) {
  if (partition >= partitions()) return 0;
  return core_->state.partitions[partition].last_seq;
}

void MemoryStore::set_purge_horizon(uint32_t partition, PurgeHorizon horizon) {
  if (core_->options.tombstone_purge != TombstonePurge::kByHorizon) return;
  if (partition >= partitions()) return;
  PurgeHorizon& h = core_->horizons[partition];
  h.hlc_below = std::max(h.hlc_below, horizon.hlc_below);
  h.seq_through = std::max(h.seq_through, horizon.seq_through);
}

PurgeHorizon MemoryStore::purge_horizon(uint32_t partition) const {
  if (partition >= core_->horizons.size()) return PurgeHorizon{};
  return core_->horizons[partition];
}

StoreStats MemoryStore::stats(WallTime now) {
  const Core& c = *core_;
  StoreStats s;
  s.puts_applied = c.counts.puts;
  s.deletes_applied = c.counts.deletes;
  s.writes_ignored = c.counts.ignored;
  s.writes_below_horizon = c.counts.below_horizon;
  s.expired = c.counts.expired;
  s.tombstones_purged = c.counts.purged;
  s.commit_groups = c.commit_groups;
  s.group_writes = c.group_writes;
  for (const Partition& part : c.state.partitions) {
    const auto not_yet = part.expiring.lower_bound({now.ms + 1, std::string()});
    const auto expired = static_cast<uint64_t>(std::distance(part.expiring.begin(), not_yet));
    s.keys += part.live - expired;
    s.keys_with_expiry += part.expiring.size() - expired;
  }
  s.hints = c.state.hints.by_owner_key.size();
  s.hint_bytes = c.state.hints.bytes;
  return s;
}

void MemoryStore::close() {
  Core& c = *core_;
  if (!c.up) return;
  c.commit_through(std::numeric_limits<uint64_t>::max());
  // A callback may have crashed or closed the store meanwhile.
  if (!c.up) return;
  // A clean close applies everything staged to the data files (FORMAT.md, "Staging").
  c.sync(c.unsynced.size());
  c.up = false;
  c.crashed = false;
}

void MemoryStore::crash(CrashKind kind) {
  Core& c = *core_;
  c.queue.clear();
  if (kind == CrashKind::kPowerCut && c.options.sync == SyncMode::kNormal) {
    c.state = c.synced;
    c.unsynced.clear();
    c.unsynced_writes = 0;
  }
  c.up = false;
  c.crashed = true;
  for (auto& digest : c.digests) digest.reset();
}

void MemoryStore::reopen() {
  Core& c = *core_;
  if (c.up) return;
  // Opening applies what the last run left staged, fsync'd (FORMAT.md, "Recover").
  c.sync(c.unsynced.size());
  c.counts = Counts{};
  for (uint32_t p = 0; p < c.horizons.size(); ++p) {
    c.horizons[p] = PurgeHorizon{c.state.partitions[p].purge_floor, 0};
  }
  for (auto& digest : c.digests) digest.reset();  // built again by one scan, as at open
  c.commit_groups = 0;
  c.group_writes = 0;
  c.drops.assign(c.drops.size(), 0);
  c.up = true;
  c.crashed = false;
}

size_t MemoryStore::pending() const { return core_->queue.size(); }

}  // namespace edgekv::store
