// A replicated edgekv cluster under simulation, with clients and a recorded history.
//
// ClusterSim builds `nodes` ReplicaNodes n000, n001, ... (tests/sim/replica_node.h), all
// members of one placement from the start (Q small, N = 3), each with its own wall clock
// (a seeded offset and drift), and drives a seeded workload of concurrent clients: each
// client sends one request at a time to a random running node's coordinator (puts with and
// without TTL, deletes, gets; QUORUM mostly, some ONE and ALL; strict or sloppy), and every
// request is recorded in a History (tests/sim/history.h) with its invoke and completion.
//
// Faults are the simulation's (loss, delay, duplication, reordering, partitions) plus
// crash()/restart(): a crash loses the store's uncommitted writes and the node's machines;
// the requests that node was coordinating are recorded as "unknown outcome".
//
// Membership changes are hand-overs, as in edgekvd (cluster/placement_keeper.h): each node
// keeps its own placement table. add_node() starts a new node with an empty table that
// joins itself into the running cluster (it expects one: it waits bootstrap_wait for a
// peer's table); remove() asks one node to remove another for good, as `kvcli remove`
// does; crash_for_good() crashes a node that heal_and_read() does not bring back.
//
// heal_and_read() ends a run the way the properties need: heal the network, restart every
// node, wait for gossip to see everyone, repair every key with a QUORUM read, then make a
// final QUORUM read of every key. check() judges the history.
//
// Thread-safety: none, like the simulation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/sim/history.h"
#include "tests/sim/replica_node.h"
#include "tests/sim/sim.h"

namespace edgekv::sim {

struct ClusterOptions {
  size_t nodes = 5;
  uint32_t partitions = 16;
  uint32_t replication_factor = 3;
  NetworkOptions network;
  // Each node's wall clock is off the simulation's by up to this much, either way...
  int64_t max_clock_offset_ms = 0;
  // ...and runs fast or slow by up to this many millionths.
  double max_drift_ppm = 0;
  Millis storage_delay_max{3};
  // What the nodes' stores promise (sync) and what a crash() is (a killed process, or a
  // power cut, which with SyncMode::kNormal also loses commits no sync covered yet).
  store::SyncMode sync = store::SyncMode::kNormal;
  store::MemoryStore::CrashKind crash_kind = store::MemoryStore::CrashKind::kProcess;
  Millis request_timeout{1000};
  // Every node's handoff (default options when not given) and scheduled anti-entropy
  // (none when not given).
  std::optional<cluster::HandoffOptions> handoff = std::nullopt;
  std::optional<cluster::AntiEntropyOptions> anti_entropy = std::nullopt;
};

struct Workload {
  size_t clients = 6;
  size_t keys = 12;
  Millis think_max{30};  // between a client's answer and its next request, uniform
  // Of the requests, in percent: puts (the rest of writes are deletes) and writes.
  int write_percent = 55;
  int delete_percent_of_writes = 20;
  int ttl_percent_of_puts = 25;
  int64_t ttl_min_ms = 50;
  int64_t ttl_max_ms = 3000;
  int one_percent = 10;     // ONE
  int all_percent = 10;     // ALL; the rest QUORUM
  int strict_percent = 50;  // of requests, strict
  // The nodes clients send to (those of them running); empty: any running node.
  std::vector<size_t> at = {};
};

class ClusterSim {
 public:
  ClusterSim(uint64_t seed, ClusterOptions options);
  ~ClusterSim();
  ClusterSim(const ClusterSim&) = delete;
  ClusterSim& operator=(const ClusterSim&) = delete;

  Simulation& sim() { return sim_; }
  size_t size() const { return sim_.size(); }
  static std::string id(size_t i);
  // The index of a node id made by id().
  static size_t index_of(const cluster::NodeId& id);
  // The node, or nullptr while it is down.
  ReplicaNode* node(size_t i);
  const NodeDisk& disk(size_t i) const { return *disks_[i]; }
  // The table every node built at the start held (the cluster's first agreed table).
  const cluster::Placement& placement() const { return placement_; }

  // Adds a node to the running cluster and starts it: a new data directory, gossip seeded
  // with n000, an empty placement table; it joins itself once it heard the cluster's
  // table (or after `bootstrap_wait` alone). Its index.
  size_t add_node(Millis bootstrap_wait = Millis(3000));
  // Asks node `at` to remove node `target` for good (PlacementKeeper::remove, as `kvcli
  // remove` does).
  Status remove(size_t target, size_t at);
  // Asks node `at` to cancel the hand-over in progress (PlacementKeeper::abort, as `kvcli
  // remove --abort` does).
  Status abort_hand_over(size_t at);
  // Crashes the node and keeps it down: heal_and_read() does not restart it.
  void crash_for_good(size_t i);
  // Every running node holds the same table and no pending one; that table, in `*agreed`.
  bool placements_agree(cluster::Placement* agreed = nullptr);

  // Starts every node; true once every node's gossip sees every running node up.
  bool start_all(Millis limit = Millis(30000));
  // Every running node sees exactly the running nodes up.
  bool converged() const;

  void crash(size_t i);
  void restart(size_t i);
  bool is_up(size_t i) const { return sim_.is_up(i); }

  // Runs the simulation for `duration` with the workload's clients sending requests.
  // Requests still in flight at the end carry on with the simulation.
  void run_clients(Millis duration, const Workload& workload);
  // Heals the network (no partitions, no loss), restarts every crashed node, waits for
  // gossip and for every request in flight to answer, then reads every key the workload
  // used at QUORUM (repairing) and once more (the final reads). False, with the reason in
  // `*why`, when the cluster did not settle or a key could not be read.
  bool heal_and_read(const Workload& workload, std::string* why);

  const std::vector<HistoryOp>& history() const { return history_; }
  // A hash over the simulation's trace and the history.
  uint64_t digest() const;

  // Requests recorded, by outcome.
  size_t count(Outcome outcome) const;

 private:
  struct Client {
    bool busy = false;
    MonoTime next_at{};
  };

  // The table every node built at the start holds: its members joined to an empty table.
  static cluster::Placement first_table(const ClusterOptions& options);
  std::unique_ptr<SimNode> make(size_t i, uint32_t life);
  // A new node's disk (clock, store) and its slot in the simulation.
  void add_disk_and_slot(size_t i);
  // Issues the client's next request against node `at`.
  void issue(uint32_t client, size_t at, const Workload& workload);
  // Records and sends one request; returns its index in the history.
  size_t submit(HistoryOp op, size_t at);
  void complete(size_t op, Outcome outcome, const Version& version, WallTime expiry,
                std::string value);
  std::string key_name(size_t k) const { return "k" + std::to_string(k); }
  // A random running node (of `among`, when not empty); size() when none runs.
  size_t random_running(const std::vector<size_t>& among = {});

  ClusterOptions options_;
  uint64_t seed_;
  Simulation sim_;
  cluster::Placement placement_;
  Random disk_rng_;  // clocks and storage delays, apart from the network
  std::vector<std::unique_ptr<NodeDisk>> disks_;
  // Nodes added to the running cluster (they start from an empty table), with their
  // bootstrap_wait; nodes crashed for good.
  std::map<size_t, Millis> added_;
  std::set<size_t> retired_;
  std::vector<uint64_t> incarnation_;        // for each node's next start
  std::vector<std::set<size_t>> in_flight_;  // per node: history ops it coordinates
  std::vector<Client> clients_;
  std::vector<HistoryOp> history_;
  uint64_t next_position_ = 0;  // the history's real-time order
  uint64_t next_value_ = 0;
};

}  // namespace edgekv::sim
