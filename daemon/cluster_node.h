// A node's replication machinery wired to its peers: the coordinator, the replica side, the
// placement and its agreement, over the peer channel.
//
// What it owns: the PeerTransport (a ROUTER inbox at peer-endpoint and a DEALER per peer),
// the Coordinator (client requests), the Replica (this node's store as one of the replicas),
// the Handoff (this node's hints handed back to their owners, and the repair marks of hints
// it could not keep), the AntiEntropy (digest rounds with the other home replicas of the
// partitions this node is a home replica of), the HintFloors (reports of the oldest hint this
// node holds for each member, and the hold the others' reports put on this node's purge
// horizons), the PlacementKeeper and the PlacementView the
// coordinator reads placement and liveness from, and the files the placement table and the repair
// marks are kept in. The event loop drives it: the inbox is polled, flush() runs at the end of
// every turn (messages are batched per destination per turn), tick() at next_deadline(); gossip's
// member events come in through on_member(); store completions come back through the `post` hook
// the node is given.
//
// Messages a machine addresses to this node itself (a coordinator's request to its own
// replica, that replica's reply) are handed over in process, without the peer channel, as
// soon as deliver_local() runs: after every client call, and in every flush().
//
// Thread-safety: none. The network thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "cluster/anti_entropy.h"
#include "cluster/change_hook.h"
#include "cluster/clock_guard.h"
#include "cluster/coordinator.h"
#include "cluster/hand_over.h"
#include "cluster/handoff.h"
#include "cluster/hint_floors.h"
#include "cluster/peer_codec.h"
#include "cluster/placement.h"
#include "cluster/placement_keeper.h"
#include "cluster/replica.h"
#include "common/clock.h"
#include "common/hlc.h"
#include "common/status.h"
#include "daemon/peer_transport.h"
#include "gossip/swim.h"
#include "store/store.h"

namespace edgekv::daemon {

struct ClusterNodeOptions {
  std::string node_id;
  std::string cluster_name;
  uint32_t partitions = 512;        // the store's Q
  uint32_t replication_factor = 3;  // N
  // Where the placement table is kept between runs (in the data directory).
  std::filesystem::path placement_file;
  PeerTransportOptions transport;
  cluster::PeerLimits limits;
  cluster::CoordinatorOptions coordinator;
  cluster::ReplicaOptions replica;
  cluster::PlacementKeeperOptions keeper;
  cluster::HandoffOptions handoff;
  // interval 0: no scheduled rounds (this node still answers its peers' rounds, and
  // repair() still forces them).
  cluster::AntiEntropyOptions anti_entropy;
  // Where the repair marks are kept between runs (in the data directory; empty: not kept).
  std::filesystem::path marks_file;
  // Peer batches handled per loop turn: bounds a turn under a flood from peers.
  size_t batches_per_turn_max = 256;
};

struct ClusterNodeCounters {
  uint64_t batches_malformed = 0;  // batches that did not decode (wrong cluster, garbage)
  uint64_t messages_dropped = 0;   // invalid messages inside batches that decoded
  uint64_t messages_out = 0;       // handed to the transport for peers (self excluded)
  uint64_t messages_local = 0;     // handed over in process
  uint64_t reads_local = 0;        // reads answered at once (get(): sole home replica here)
  uint64_t placement_writes = 0;   // times the placement file was written
  uint64_t placement_write_failures = 0;
  uint64_t marks_writes = 0;  // times the repair marks file was written
  uint64_t marks_write_failures = 0;
  uint64_t marks_of_removed_cleared = 0;  // repair marks of removed owners cleared
  uint64_t partitions_dropped = 0;  // partitions this node stopped holding, dropped from its store
};

class ClusterNode {
 public:
  using Post = cluster::Replica::Post;

  // Binds the peer inbox and reads the placement file (a new table holding nobody when it
  // does not exist; this node joins itself when the keeper starts). UNAVAILABLE naming
  // peer-endpoint when the bind fails; FAILED_PRECONDITION naming both values when the
  // file's table has another partition count or replication factor than configured;
  // CORRUPTION naming the file when the placement or repair marks file is damaged.
  // `read_stored`: how the replica side reads its store (empty: Store::read).
  static Result<std::unique_ptr<ClusterNode>> open(zmq::context_t& context,
                                                   ClusterNodeOptions options, const Clock& clock,
                                                   HybridClock& hlc, cluster::ClockGuard& guard,
                                                   store::Store& store, Post post,
                                                   cluster::ChangeHook change_hook, uint64_t seed,
                                                   cluster::Replica::ReadStored read_stored = {});
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  void start(MonoTime now);

  // ---- client operations (answers through the callbacks, on the network thread)
  cluster::Coordinator& coordinator() { return *coordinator_; }
  // A read of `key`: through the coordinator, but for a key whose partition's only home
  // replica is this node and of which nothing is in flight here, which is read at once from
  // this node's replica (the coordinator would send that one read to it and answer with its
  // reply; this spares a single node the round through the messages). `done` runs before
  // get() returns then.
  void get(std::string_view key, cluster::RequestOptions options, MonoTime now,
           cluster::Coordinator::ReadDone done);

  // ---- inspection (kvcli replicas): each replica's stored state of a key, read from
  // every home replica and the fallbacks standing in for down ones, without repairing.
  struct ReplicaState {
    cluster::NodeId node;
    bool home = false;
    bool up = false;
    // The reply; UNAVAILABLE "no answer within ..." for a replica that did not answer.
    Status status;
    std::optional<store::Record> record;  // nullopt: no row
  };
  struct Inspection {
    uint32_t partition = 0;
    std::vector<ReplicaState> replicas;  // home replicas in preference order, then fallbacks
  };
  using InspectDone = std::function<void(Inspection)>;
  void inspect(const std::string& key, MonoTime now, InspectDone done);

  // ---- gossip: every member as gossip reports it (this node's own record is ignored)
  void on_member(const gossip::Member& member, MonoTime now);
  void on_member_forgotten(const std::string& id, MonoTime now);

  // ---- event loop
  zmq::socket_t& inbox() { return transport_->inbox(); }
  // Reads and handles a bounded number of batches from the inbox.
  void on_inbox(MonoTime now);
  // Hands the messages the machines addressed to this node itself over in process, at once
  // (a coordinator's requests to its own replica, and their replies). Call after every
  // client call: a write this node's replica takes then counts as its store write before
  // the next request is admitted, and one it refuses is answered and its value freed,
  // instead of both waiting for the end of the turn.
  void deliver_local(MonoTime now);
  // Moves this node's part in a hand-over on (cluster/hand_over.h), and applies what the
  // keeper changed. Runs in flush() and tick().
  void drive_hand_over(MonoTime now);
  // deliver_local(), then the messages for peers, batched per destination, are sent. Call
  // at the end of every loop turn.
  void flush(MonoTime now);
  void tick(MonoTime now);
  MonoTime next_deadline() const;

  const cluster::Placement& placement() const { return view_->placement(); }
  const cluster::PlacementView& view() const { return *view_; }
  const cluster::Replica& replica() const { return *replica_; }
  const cluster::Handoff& handoff() const { return *handoff_; }
  const cluster::AntiEntropy& anti_entropy() const { return *anti_entropy_; }
  const cluster::HintFloors& hint_floors() const { return *floors_; }
  // ---- kvcli repair: forces anti-entropy rounds of `partitions` (all: every partition
  // this node is a home replica of) with each other home replica that is up, and answers
  // with their results once they all finished, or at `deadline` with those that did (a
  // round still running then is reported as TIMEOUT). INVALID_ARGUMENT for a partition out
  // of range, FAILED_PRECONDITION when this node is not one of its home replicas; both at
  // once, without anything forced. OVERLOADED at once while 16 repairs wait (fallbacks'
  // repair asks run through here too and count).
  using RepairDone = std::function<void(Result<std::vector<cluster::AntiEntropy::RoundResult>>)>;
  void repair(std::optional<uint32_t> partition, MonoTime now, MonoTime deadline, RepairDone done);
  const cluster::PlacementKeeper& keeper() const { return *keeper_; }
  // ---- kvcli remove: removes nodes from the placement for good (a hand-over: their
  // partitions are streamed to their new home replicas first; docs/replication.md).
  // INVALID_ARGUMENT naming an id that is not a member; FAILED_PRECONDITION while another
  // hand-over is in progress. An id only the pending table lists (a joining node) cancels
  // that join (PlacementKeeper::remove).
  Status remove(const std::vector<cluster::NodeId>& ids, MonoTime now);
  // ---- kvcli remove --abort: cancels the hand-over in progress (PlacementKeeper::abort).
  Status abort_hand_over(MonoTime now);
  // This node's own share of a hand-over in progress: what it streams in.
  using Streaming = cluster::StreamProgress;
  std::optional<cluster::HandOverStatus> hand_over() const { return keeper_->hand_over(); }
  const Streaming& streaming() const { return hand_over_->progress(); }
  const PeerTransport& transport() const { return *transport_; }
  const ClusterNodeCounters& counters() const { return counters_; }
  const std::string& peer_endpoint() const { return transport_->endpoint(); }
  bool is_up(const std::string& id) const;

 private:
  ClusterNode(ClusterNodeOptions options, const Clock& clock, HybridClock& hlc);

  // Drops what this node held of the partitions `before` had it hold and `after` (and the
  // pending table) do not: when it holds one again it streams it afresh, and stale rows
  // could bring purged deletes back.
  void drop_lost(const cluster::Placement& before, const cluster::Placement& after);
  // Clears the repair marks of owners `before` listed and neither table lists now (removed).
  void clear_marks_of_removed(const cluster::Placement& before);
  // Adds the partitions the pending table has this node hold to pending_homes_.
  void note_pending_homes();
  // Partitions a pending table had this node hold since the current table changed: what
  // it may have streamed, dropped with the rest once the table it commits does not.
  std::set<uint32_t> pending_homes_;
  store::Store* store_ = nullptr;
  std::unique_ptr<cluster::HandOver> hand_over_;
  MonoTime streaming_logged_{};
  uint64_t failures_logged_ = 0;

  struct PendingInspection {
    Inspection result;
    std::vector<uint64_t> reqs;  // per replica, the request id
    size_t waiting = 0;
    MonoTime deadline;
    InspectDone done;
  };

  struct PendingRepair {
    std::set<std::pair<uint32_t, cluster::NodeId>> waiting;  // (partition, peer)
    std::vector<cluster::AntiEntropy::RoundResult> results;
    MonoTime deadline;
    RepairDone done;
  };
  // Hands forced rounds' results to the repairs waiting for them; answers those complete
  // (or, with `now`, past their deadline).
  void settle_repairs(std::optional<MonoTime> now);

  void handle(const cluster::NodeId& from, cluster::PeerMessage message, MonoTime now);
  // A fallback's repair ask (cluster/handoff.h): forced rounds as repair() runs them, within
  // the ask's wait, answered with OK when every round completed, else the first error.
  void answer_repair_ask(const cluster::NodeId& from, const cluster::RepairAsk& ask, MonoTime now);
  bool handle_inspection_reply(const cluster::NodeId& from, cluster::ReadReply& reply);
  void finish_inspection(uint64_t id);
  // Queues a message: for this node itself in local_, for a peer in pending_.
  void queue(cluster::PeerOutgoing m);
  void route(std::vector<cluster::PeerOutgoing> out);
  // Queues what anti-entropy has to send.
  void route_anti_entropy();
  // Hands anti-entropy the home replicas of every partition, and the hint floors the
  // members (at start and when the placement changes).
  void update_homes(MonoTime now);
  // Hands the hint floors' hold to anti-entropy.
  void update_hold(MonoTime now);
  // HintFloors' lookup (cluster::oldest_hint).
  Result<Version> oldest_hint_for(const cluster::NodeId& owner);
  void persist_placement();
  // Writes the repair marks when they changed (after a failure, again a second later).
  void persist_marks();

  ClusterNodeOptions options_;
  const Clock& clock_;
  HybridClock& hlc_;
  std::unique_ptr<PeerTransport> transport_;
  std::set<std::string, std::less<>> up_;
  std::unique_ptr<cluster::PlacementView> view_;
  std::unique_ptr<cluster::PlacementKeeper> keeper_;
  std::unique_ptr<cluster::Coordinator> coordinator_;
  std::unique_ptr<cluster::Replica> replica_;
  std::unique_ptr<cluster::Handoff> handoff_;
  std::unique_ptr<cluster::AntiEntropy> anti_entropy_;
  std::unique_ptr<cluster::HintFloors> floors_;
  std::map<uint64_t, PendingRepair> repairs_;
  uint64_t next_repair_ = 1;
  bool marks_dirty_ = false;
  MonoTime marks_retry_at_{};
  // Messages for this node itself, waiting for deliver_local().
  std::vector<cluster::PeerOutgoing> local_;
  bool delivering_ = false;  // deliver_local() is running
  // Messages for peers, waiting for the end of the turn.
  std::vector<cluster::PeerOutgoing> pending_;
  // Inspections by id; their read requests carry ids with kInspectBit set, which the
  // coordinator's (counted from 1) never reach, so their replies are told apart.
  std::map<uint64_t, PendingInspection> inspections_;
  uint64_t next_inspection_ = 1;
  ClusterNodeCounters counters_;
};

}  // namespace edgekv::daemon
