#include "tests/sim/cluster_sim.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common/assert.h"
#include "common/hash.h"

namespace edgekv::sim {

using cluster::Consistency;
using cluster::NodeId;
using cluster::RequestOptions;

namespace {

// A client that is not one of the workload's: the reads heal_and_read() makes.
constexpr uint32_t kHealingClient = 1u << 30;

// How many times heal_and_read() tries a key's read before giving up: each try that fails
// (a timeout while a node is still catching up) is retried at another node, half a second
// later, since some failures answer at once: a quorum read whose newest state is a
// tombstone the other home replicas already purged fails (UNAVAILABLE, its repairs
// ignored) until the last holder purges it too.
constexpr int kHealingReadTries = 10;
constexpr Millis kHealingReadRetry{500};

}  // namespace

std::string ClusterSim::id(size_t i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "n%03zu", i);
  return buf;
}

ClusterSim::ClusterSim(uint64_t seed, ClusterOptions options)
    : options_(std::move(options)),
      seed_(seed),
      sim_(seed, options_.network),
      placement_(first_table(options_)),
      disk_rng_(seed ^ 0x636c6f636b73ULL) {
  for (size_t i = 0; i < options_.nodes; ++i) add_disk_and_slot(i);
  incarnation_.assign(options_.nodes, 0);
  in_flight_.resize(options_.nodes);
}

ClusterSim::~ClusterSim() = default;

cluster::Placement ClusterSim::first_table(const ClusterOptions& options) {
  // As a cluster of edgekvd builds it: from an empty table (epoch 0, what a new node
  // holds), the members join, one epoch on. A table made by Placement::create with its
  // members would be epoch 0 too, and a new node's empty table, at the same epoch, could
  // order above it by digest.
  std::vector<NodeId> members;
  for (size_t i = 0; i < options.nodes; ++i) members.push_back(id(i));
  Result<cluster::Placement> p =
      cluster::Placement::create(options.partitions, options.replication_factor, {});
  EDGEKV_ASSERT(p.ok() && p->join(members).ok());
  return std::move(p).value();
}

size_t ClusterSim::index_of(const NodeId& id) {
  return static_cast<size_t>(std::stoul(id.substr(1)));
}

void ClusterSim::add_disk_and_slot(size_t i) {
  Random& rng = disk_rng_;
  int64_t offset = 0;
  if (options_.max_clock_offset_ms > 0) {
    offset = static_cast<int64_t>(
                 rng.uniform(static_cast<uint64_t>(2 * options_.max_clock_offset_ms + 1))) -
             options_.max_clock_offset_ms;
  }
  double drift = 0;
  if (options_.max_drift_ppm > 0) {
    drift = (static_cast<double>(rng.uniform(2001)) / 1000.0 - 1.0) * options_.max_drift_ppm;
  }
  auto disk = std::make_unique<NodeDisk>(sim_.clock(), offset, drift, rng.next(),
                                         options_.storage_delay_max);
  store::StoreOptions store_options;
  store_options.partitions = options_.partitions;
  store_options.sync = options_.sync;
  // As the daemon runs them: tombstones go by the horizon anti-entropy sets.
  store_options.tombstone_purge = store::TombstonePurge::kByHorizon;
  NodeDisk* d = disk.get();
  Result<std::unique_ptr<store::MemoryStore>> opened = store::MemoryStore::open(
      store_options, [d](std::function<void()> commit) { d->schedule(std::move(commit)); });
  EDGEKV_ASSERT(opened.ok());
  disk->store = std::move(opened).value();
  disks_.push_back(std::move(disk));
  sim_.add_node({ReplicaNode::gossip_address(id(i)), ReplicaNode::peer_address(id(i))},
                [this, i](uint32_t life) { return make(i, life); });
}

size_t ClusterSim::add_node(Millis bootstrap_wait) {
  const size_t i = size();
  add_disk_and_slot(i);
  incarnation_.push_back(0);
  in_flight_.emplace_back();
  added_[i] = bootstrap_wait;
  sim_.start(i);
  return i;
}

Status ClusterSim::remove(size_t target, size_t at) {
  ReplicaNode* n = node(at);
  if (n == nullptr) return Status::unavailable(id(at) + " is down");
  Status s = n->remove({id(target)}, sim_.now());
  sim_.poke(at);
  return s;
}

Status ClusterSim::abort_hand_over(size_t at) {
  ReplicaNode* n = node(at);
  if (n == nullptr) return Status::unavailable(id(at) + " is down");
  Status s = n->abort_hand_over(sim_.now());
  sim_.poke(at);
  return s;
}

void ClusterSim::crash_for_good(size_t i) {
  crash(i);
  retired_.insert(i);
}

bool ClusterSim::placements_agree(cluster::Placement* agreed) {
  const cluster::Placement* first = nullptr;
  for (size_t i = 0; i < size(); ++i) {
    if (!sim_.is_running(i)) continue;
    const cluster::PlacementKeeper& k = sim_.node_as<ReplicaNode>(i).keeper();
    if (k.pending().has_value()) return false;
    if (first == nullptr) {
      first = &k.placement();
    } else if (!(k.placement() == *first)) {
      return false;
    }
  }
  if (first == nullptr) return false;
  if (agreed != nullptr) *agreed = *first;
  return true;
}

std::unique_ptr<SimNode> ClusterSim::make(size_t i, uint32_t life) {
  ReplicaNodeConfig config;
  config.id = id(i);
  config.gossip = gossip::Options::local();
  config.gossip.partitions = options_.partitions;
  config.gossip.seeds = {ReplicaNode::gossip_address(id(0))};
  config.gossip_seed = seed_ * 0x9e3779b97f4a7c15ULL + i * 1000003ULL + life;
  config.incarnation = incarnation_[i];
  config.partitions = options_.partitions;
  config.replication_factor = options_.replication_factor;
  config.keeper_seed = config.gossip_seed ^ 0x706c6163656d6e74ULL;
  if (auto added = added_.find(i); added != added_.end()) {
    // A new data directory expecting a cluster (edgekvd given seeds): an empty table.
    config.keeper.bootstrap_wait = added->second;
  } else {
    // Each node builds the placement itself, as a daemon does from the same members: the
    // transitions are deterministic, so every node arrives at the same table.
    cluster::Placement placement = first_table(options_);
    EDGEKV_ASSERT(placement.digest() == placement_.digest());
    config.placement = std::move(placement);
  }
  config.coordinator.request_timeout = options_.request_timeout;
  if (options_.handoff.has_value()) config.handoff = *options_.handoff;
  config.anti_entropy = options_.anti_entropy;
  return std::make_unique<ReplicaNode>(std::move(config), *disks_[i]);
}

ReplicaNode* ClusterSim::node(size_t i) {
  if (!sim_.is_up(i)) return nullptr;
  return &sim_.node_as<ReplicaNode>(i);
}

bool ClusterSim::converged() const {
  for (size_t i = 0; i < size(); ++i) {
    if (!sim_.is_running(i)) continue;
    const auto& n = sim_.node_as<ReplicaNode>(i);
    for (size_t j = 0; j < size(); ++j) {
      if (n.sees_up(id(j)) != sim_.is_up(j)) return false;
    }
  }
  return true;
}

bool ClusterSim::start_all(Millis limit) {
  for (size_t i = 0; i < size(); ++i) sim_.start(i);
  return sim_.run_until([&] { return converged(); }, limit);
}

void ClusterSim::crash(size_t i) {
  if (!sim_.is_up(i)) return;
  incarnation_[i] = sim_.node_as<ReplicaNode>(i).swim().incarnation() + 1;
  for (size_t op : in_flight_[i]) {
    HistoryOp& h = history_[op];
    h.outcome = Outcome::kUnknown;
    if (h.client < clients_.size()) clients_[h.client].busy = false;
  }
  in_flight_[i].clear();
  disks_[i]->store->crash(options_.crash_kind);
  disks_[i]->commits.clear();
  sim_.crash(i, true);
}

void ClusterSim::restart(size_t i) {
  if (sim_.is_up(i)) return;
  disks_[i]->store->reopen();
  sim_.restart(i);
}

size_t ClusterSim::random_running(const std::vector<size_t>& among) {
  std::vector<size_t> running;
  for (size_t i = 0; i < size(); ++i) {
    if (!sim_.is_running(i)) continue;
    if (among.empty() || std::find(among.begin(), among.end(), i) != among.end()) {
      running.push_back(i);
    }
  }
  if (running.empty()) return size();
  return running[sim_.random().uniform(running.size())];
}

size_t ClusterSim::submit(HistoryOp op, size_t at) {
  size_t index = history_.size();
  op.invoke = next_position_++;
  op.invoke_time = sim_.now();
  op.node = at;
  op.outcome = Outcome::kPending;
  history_.push_back(std::move(op));
  in_flight_[at].insert(index);
  sim_.trace().record(0x1f0c, index, at);

  ReplicaNode& n = sim_.node_as<ReplicaNode>(at);
  const HistoryOp& h = history_[index];
  RequestOptions options{h.consistency, h.strict};
  MonoTime now = sim_.now();
  switch (h.type) {
    case OpType::kGet:
      n.coordinator().get(h.key, options, now, [this, index](Result<store::Record> r) {
        if (r.ok()) {
          complete(index, Outcome::kOk, r->version, r->expiry, r->value);
        } else {
          complete(index,
                   r.status().code() == Code::kNotFound ? Outcome::kNotFound : Outcome::kFailed,
                   Version{}, WallTime{}, {});
        }
      });
      break;
    case OpType::kPut: {
      WallTime expiry{};
      if (h.ttl_ms > 0) expiry = WallTime{disks_[at]->clock.wall_now().ms + h.ttl_ms};
      n.coordinator().put(h.key, h.value, expiry, options, now,
                          [this, index](Result<cluster::WriteOutcome> r) {
                            if (r.ok()) {
                              complete(index, Outcome::kOk, r->version, r->expiry, {});
                            } else {
                              complete(index, Outcome::kFailed, Version{}, WallTime{}, {});
                            }
                          });
      break;
    }
    case OpType::kDel:
      n.coordinator().del(h.key, options, now, [this, index](Result<cluster::WriteOutcome> r) {
        if (r.ok()) {
          complete(index, Outcome::kOk, r->version, r->expiry, {});
        } else {
          complete(index, Outcome::kFailed, Version{}, WallTime{}, {});
        }
      });
      break;
  }
  n.pump(now);
  sim_.poke(at);
  return index;
}

void ClusterSim::complete(size_t index, Outcome outcome, const Version& version, WallTime expiry,
                          std::string value) {
  HistoryOp& h = history_[index];
  if (h.outcome != Outcome::kPending) return;
  h.outcome = outcome;
  h.complete = next_position_++;
  h.complete_time = sim_.now();
  h.version = version;
  h.expiry = expiry;
  h.read_value = std::move(value);
  in_flight_[h.node].erase(index);
  sim_.trace().record(0xd0e, index, version.hlc);
  if (h.client < clients_.size()) clients_[h.client].busy = false;
}

void ClusterSim::issue(uint32_t client, size_t at, const Workload& w) {
  Random& rng = sim_.random();
  HistoryOp op;
  op.client = client;
  op.key = key_name(rng.uniform(w.keys));
  auto percent = [&](int p) { return static_cast<int>(rng.uniform(100)) < p; };
  if (percent(w.write_percent)) {
    if (percent(w.delete_percent_of_writes)) {
      op.type = OpType::kDel;
    } else {
      op.type = OpType::kPut;
      op.value = "v" + std::to_string(next_value_++);
      if (percent(w.ttl_percent_of_puts)) {
        op.ttl_ms = w.ttl_min_ms + static_cast<int64_t>(rng.uniform(
                                       static_cast<uint64_t>(w.ttl_max_ms - w.ttl_min_ms + 1)));
      }
    }
  } else {
    op.type = OpType::kGet;
  }
  int level = static_cast<int>(rng.uniform(100));
  op.consistency = level < w.one_percent                   ? Consistency::kOne
                   : level < w.one_percent + w.all_percent ? Consistency::kAll
                                                           : Consistency::kQuorum;
  op.strict = percent(w.strict_percent);
  clients_[client].busy = true;
  submit(std::move(op), at);
}

void ClusterSim::run_clients(Millis duration, const Workload& w) {
  if (clients_.size() < w.clients) clients_.resize(w.clients);
  MonoTime end = sim_.now() + duration;
  while (sim_.now() < end) {
    MonoTime now = sim_.now();
    MonoTime next = std::min(end, now + Millis(5));
    for (uint32_t c = 0; c < w.clients; ++c) {
      Client& client = clients_[c];
      if (client.busy) continue;
      if (client.next_at == MonoTime{}) {
        client.next_at =
            now + Millis(sim_.random().uniform(static_cast<uint64_t>(w.think_max.count()) + 1));
      }
      if (client.next_at <= now) {
        size_t at = random_running(w.at);
        client.next_at = MonoTime{};
        if (at < size()) {
          issue(c, at, w);
        } else {
          client.next_at = now + Millis(10);
        }
      }
      if (!client.busy && client.next_at != MonoTime{}) next = std::min(next, client.next_at);
    }
    sim_.run_until(std::max(next, now + Millis(1)));
  }
}

bool ClusterSim::heal_and_read(const Workload& w, std::string* why) {
  sim_.heal();
  sim_.network() = NetworkOptions{};
  for (size_t i = 0; i < size(); ++i) {
    if (!retired_.contains(i)) restart(i);
  }
  for (Client& c : clients_) c.busy = true;  // the workload is over
  if (!sim_.run_until([&] { return converged(); }, Millis(60000))) {
    *why = "gossip did not converge within 60 s of healing";
    return false;
  }
  auto idle = [&] {
    for (const auto& ops : in_flight_) {
      if (!ops.empty()) return false;
    }
    return true;
  };
  if (!sim_.run_until(idle, options_.request_timeout * 10)) {
    *why = "requests still in flight long after healing";
    return false;
  }
  for (bool final : {false, true}) {
    for (size_t k = 0; k < w.keys; ++k) {
      bool answered = false;
      for (int attempt = 0; attempt < kHealingReadTries && !answered; ++attempt) {
        HistoryOp op;
        op.client = kHealingClient;
        op.key = key_name(k);
        op.type = OpType::kGet;
        op.consistency = Consistency::kQuorum;
        op.strict = true;
        op.final = final;
        size_t index = submit(std::move(op), random_running());
        sim_.run_until([&] { return history_[index].outcome != Outcome::kPending; },
                       options_.request_timeout * 3);
        Outcome o = history_[index].outcome;
        answered = o == Outcome::kOk || o == Outcome::kNotFound;
        if (!answered) sim_.run_for(kHealingReadRetry);
        if (!answered) sim_.run_for(Millis(500));
      }
      if (!answered) {
        *why = "no QUORUM read of " + key_name(k) + " answered after healing";
        return false;
      }
    }
  }
  return true;
}

uint64_t ClusterSim::digest() const {
  uint64_t d = sim_.digest();
  for (const HistoryOp& op : history_) {
    uint64_t words[5] = {d, op.version.hlc, op.version.origin, static_cast<uint64_t>(op.outcome),
                         op.complete};
    d = hash64(std::string_view(reinterpret_cast<const char*>(words), sizeof(words)));
  }
  return d;
}

size_t ClusterSim::count(Outcome outcome) const {
  return static_cast<size_t>(
      std::count_if(history_.begin(), history_.end(),
                    [&](const HistoryOp& op) { return op.outcome == outcome; }));
}

}  // namespace edgekv::sim
