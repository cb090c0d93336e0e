// A whole edgekv node under simulation: what edgekvd runs, minus sockets and threads.
//
// ReplicaNode adapts to SimNode, at two addresses (gossip and peer):
//  - a gossip::Swim, whose view (alive or suspect) says which nodes are up;
//  - a PlacementKeeper holding the node's own placement table, agreed with the peers
//    through placement peer messages as edgekvd does (a node built with the cluster's
//    table starts from it; one built without starts from an empty table and joins itself,
//    after bootstrap_wait), and a PlacementView fed from it (the table and the joining
//    nodes of a hand-over in progress) on every change;
//  - a HandOver driven as edgekvd's ClusterNode drives it: after the node handled
//    messages and in tick(), its stream rounds' results handed to it; anti-entropy
//    compares each partition with its home replicas and its joining nodes, and a
//    partition the node stops holding for good is dropped from its store;
//  - a Coordinator and a Replica, exchanging peer messages as real bytes through
//    cluster/peer_codec (one batch per destination per drain), straight to each other when
//    a message is addressed to the node itself;
//  - an AntiEntropy when the config asks for one, comparing the partitions the node is a
//    home replica of with the other home replicas on its schedule, over the same peer
//    messages, its pulls applied through the node's own replica side;
//  - a Handoff, handing the hints its store keeps back to their owners as gossip shows them
//    up (the replica side's hint gate asks it first), answered through the same peer
//    messages, and asking the owners of its repair marks to repair those partitions; a
//    node asked so forces anti-entropy rounds (AntiEntropy::repair) and answers when they
//    finished, as edgekvd does (at most 16 asks waiting, OVERLOADED beyond);
//  - a HintFloors, reporting to every member of the table the oldest hint this node holds
//    for it each second, and keeping the others' reports: its hold caps the node's purge
//    horizons (AntiEntropy::set_purge_hold), as edgekvd does;
//  - a HybridClock over the node's own wall clock (SkewedClock: the simulation's time plus
//    an offset plus drift), which also judges expiry and drives the expiry sweep;
//  - a MemoryStore whose commits are the node's own timed events, each a seeded storage
//    delay after the write: next_deadline() covers them and tick() runs the due ones.
//
// What survives a crash lives in NodeDisk, outside the node: the store (which loses on
// crash what was not committed), the node's wall clock and its storage schedule, and the
// placement table and pending table as the daemon keeps them in files. The
// machines themselves are rebuilt by the simulation's factory.
//
// Thread-safety: none, like the simulation.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/anti_entropy.h"
#include "cluster/coordinator.h"
#include "cluster/hand_over.h"
#include "cluster/handoff.h"
#include "cluster/hint_floors.h"
#include "cluster/peer_codec.h"
#include "cluster/placement.h"
#include "cluster/placement_keeper.h"
#include "cluster/replica.h"
#include "common/hlc.h"
#include "common/random.h"
#include "gossip/swim.h"
#include "store/memory_store.h"
#include "tests/sim/sim.h"

namespace edgekv::sim {

// A node's wall clock: the simulation's wall time plus `offset_ms`, plus `drift_ppm`
// millionths of the time elapsed since the simulation began. Mono time is the simulation's.
class SkewedClock final : public Clock {
 public:
  SkewedClock(const Clock& base, int64_t offset_ms, double drift_ppm)
      : base_(base), offset_ms_(offset_ms), drift_ppm_(drift_ppm) {}
  MonoTime mono_now() const override { return base_.mono_now(); }
  WallTime wall_now() const override;
  int64_t offset_ms() const { return offset_ms_; }
  double drift_ppm() const { return drift_ppm_; }

 private:
  const Clock& base_;
  int64_t offset_ms_;
  double drift_ppm_;
};

// What outlives a node's crash: its store (its disk), its wall clock, and the commits the
// store has handed out (dropped at a crash: the store has lost their writes).
struct NodeDisk {
  NodeDisk(const Clock& sim_clock, int64_t offset_ms, double drift_ppm, uint64_t seed,
           Millis delay_max)
      : clock(sim_clock, offset_ms, drift_ppm), rng(seed), storage_delay_max(delay_max) {}

  // The MemoryStore's scheduler: the commit runs a seeded delay from now.
  void schedule(std::function<void()> commit);
  // The earliest commit's time; MonoTime::max() when none.
  MonoTime next_commit() const;
  // Runs the commits due at `now`, in time order.
  void run_due(MonoTime now);

  SkewedClock clock;
  Random rng;
  Millis storage_delay_max;
  std::unique_ptr<store::MemoryStore> store;
  // The placement files: the table the node last held and its pending table (written on
  // every change, as edgekvd writes them); nullopt: never written.
  std::optional<cluster::Placement> placement;
  std::optional<cluster::Placement> pending;
  std::map<std::pair<MonoTime, uint64_t>, std::function<void()>> commits;
  uint64_t next_commit_seq = 0;
};

struct ReplicaNodeConfig {
  cluster::NodeId id;
  std::string cluster_name = "sim";
  gossip::Options gossip;  // seeds included
  uint64_t gossip_seed = 0;
  uint64_t incarnation = 0;
  // The table the node starts from when its disk holds none: the cluster's agreed table
  // for a node built with the cluster; nullopt for a node added later, which starts from
  // an empty table and joins itself.
  std::optional<cluster::Placement> placement;
  uint32_t partitions = 16;  // Q and N of the empty table when `placement` is nullopt
  uint32_t replication_factor = 3;
  cluster::PlacementKeeperOptions keeper;
  uint64_t keeper_seed = 0;
  cluster::CoordinatorOptions coordinator;
  cluster::ReplicaOptions replica;
  cluster::PeerLimits peer_limits;
  cluster::HandoffOptions handoff;
  // Scheduled anti-entropy rounds; nullopt: none (the node still answers peers' rounds and
  // runs the rounds a repair ask forces).
  std::optional<cluster::AntiEntropyOptions> anti_entropy;
  // false: no hint floors (purge horizons not held back by other nodes' hints).
  bool hint_floors = true;
  // How often the node sweeps expired keys from its store, and how many rows per sweep.
  Millis sweep_every{500};
  size_t sweep_rows = 1000;
};

class ReplicaNode final : public SimNode {
 public:
  static std::string gossip_address(const cluster::NodeId& id) { return "sim://" + id; }
  static std::string peer_address(const cluster::NodeId& id) { return "peer://" + id; }

  ReplicaNode(ReplicaNodeConfig config, NodeDisk& disk);
  ~ReplicaNode() override;

  void start(MonoTime now) override;
  void receive(std::string_view to_address, std::string_view bytes, MonoTime now) override;
  void tick(MonoTime now) override;
  MonoTime next_deadline() const override;
  void drain(std::vector<Datagram>& out, Trace& trace) override;

  const cluster::NodeId& id() const { return config_.id; }
  cluster::Coordinator& coordinator() { return coordinator_; }
  const cluster::Replica& replica() const { return replica_; }
  const cluster::Handoff& handoff() const { return *handoff_; }
  const cluster::AntiEntropy& anti_entropy() const { return *anti_entropy_; }
  const cluster::HintFloors& hint_floors() const { return *floors_; }
  const cluster::PlacementKeeper& keeper() const { return *keeper_; }
  const cluster::HandOver& hand_over() const { return *hand_over_; }
  const cluster::PlacementView& view() const { return placement_view_; }
  // Proposes the removal of nodes for good, as `kvcli remove` asks edgekvd
  // (PlacementKeeper::remove).
  Status remove(const std::vector<cluster::NodeId>& ids, MonoTime now);
  // Cancels the hand-over in progress, as `kvcli remove --abort` asks edgekvd
  // (PlacementKeeper::abort).
  Status abort_hand_over(MonoTime now);
  // Forces anti-entropy rounds of every partition this node is a home replica of with the
  // other home replicas that are up (as `kvcli repair` does); how many were queued.
  size_t repair_all(MonoTime now);
  gossip::Swim& swim() { return swim_; }
  const gossip::Swim& swim() const { return swim_; }
  store::MemoryStore& store() { return *disk_.store; }
  HybridClock& hlc() { return hlc_; }
  // Whether this node's gossip view has `node` alive or suspect (itself: always).
  bool sees_up(const cluster::NodeId& node) const;
  // Runs what the driver's calls into the coordinator asked for: messages to itself are
  // handed over at once, others wait for drain(). Call after calling the coordinator.
  void pump(MonoTime now);

  struct Counters {
    uint64_t batches_refused = 0;     // envelopes decode_batch refused
    uint64_t messages_dropped = 0;    // messages it dropped from accepted envelopes
    uint64_t changes = 0;             // changes the change hook saw
    uint64_t expired = 0;             // of those, from the expiry sweep
    uint64_t oversized = 0;           // messages encode_batches could not send
    uint64_t partitions_dropped = 0;  // partitions dropped after a hand-over
  };
  const Counters& counters() const { return counters_; }

 private:
  void deliver(const cluster::NodeId& from, cluster::PeerMessage message, MonoTime now);
  void route(std::vector<cluster::PeerOutgoing> messages, MonoTime now, bool* any);
  void maybe_sweep(MonoTime now);
  // After the keeper's table or pending table changed: the view, anti-entropy's homes, the
  // partitions lost, and the disk.
  void placement_changed(MonoTime now);
  // As edgekvd: partitions a pending table had this node hold since its table changed.
  std::set<uint32_t> pending_homes_;
  void drive_hand_over(MonoTime now);
  void answer_repair_ask(const cluster::NodeId& from, const cluster::RepairAsk& ask, MonoTime now);
  // Hands the hint floors' hold to anti-entropy.
  void update_hold(MonoTime now);
  // Hands forced rounds' results to the asks waiting for them; answers those complete (or,
  // with `now`, past their deadline).
  void settle_asks(std::optional<MonoTime> now);

  // A repair ask being run here.
  struct PendingAsk {
    cluster::NodeId from;
    uint64_t req = 0;
    uint32_t partition = 0;
    std::set<cluster::NodeId> waiting;  // peers whose forced round has not finished
    Status first_error;
    MonoTime deadline{};
  };

  // Expires with the node: completions that still arrive find nothing to do. First, as the
  // replica's post hook holds it weakly.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  ReplicaNodeConfig config_;
  NodeDisk& disk_;
  gossip::Swim swim_;
  std::map<cluster::NodeId, gossip::MemberState> view_;
  std::unique_ptr<cluster::PlacementKeeper> keeper_;
  cluster::PlacementView placement_view_;
  HybridClock hlc_;
  cluster::Coordinator coordinator_;
  std::deque<std::function<void()>> posted_;  // store completions for the replica side
  cluster::Replica replica_;
  std::unique_ptr<cluster::Handoff> handoff_;
  std::unique_ptr<cluster::AntiEntropy> anti_entropy_;
  std::unique_ptr<cluster::HintFloors> floors_;
  std::unique_ptr<cluster::HandOver> hand_over_;
  std::vector<PendingAsk> asks_;
  std::map<cluster::NodeId, std::vector<cluster::PeerMessage>> outgoing_;
  std::vector<std::string> trace_lines_;
  MonoTime next_sweep_{};
  bool sweeping_ = false;
  Counters counters_;
};

}  // namespace edgekv::sim
