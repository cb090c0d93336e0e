// Keeps this node's placement table (cluster/placement.h) and agrees on it with the peers.
//
// Agreement: every exchange_interval the node sends the (epoch, digest) of its table to one
// random member that gossip says is up, and to a few at once whenever its table changed.
// A node that hears of a newer table (Placement::newer: higher epoch, then higher digest)
// fetches it from the one that has it; a node that hears of an older one sends its own.
// So the newest table spreads like a rumour, and every node ends at the same one.
//
// Transitions: a node joins only itself. When the table it holds (its own at start, or one
// adopted from a peer) does not list it, it applies Placement::join(self), one epoch step.
// Two nodes joining at once make two tables of the same epoch; the one with the higher
// digest wins everywhere, and the node missing from it joins again on top of it. A node is
// never added by others, so a member gossip still shows as alive but that runs with another
// partition count, or an old version, never enters the table, and a dead member is never
// dropped: it stays until it is removed (remove(), the operator's decision), its partitions
// covered by fallbacks meanwhile. A removal made here is re-applied on top of any table
// adopted within removal_memory that still lists the removed node, so that a join made
// concurrently elsewhere does not bring it back.
//
// A table from a peer whose partition count or replication factor differs from this node's
// is refused and counted: the cluster must agree on both (gossip refuses a node whose Q
// differs; replication-factor is checked here).
//
// Pure: no sockets, no clock reads; time comes in with every call and the random peer
// choice from a seed. Thread-safety: none; one thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cluster/messages.h"
#include "cluster/placement.h"
#include "common/clock.h"
#include "common/random.h"

namespace edgekv::cluster {

struct PlacementKeeperOptions {
  // How often the table's digest goes to a random up member. One small message per node
  // per second; a cluster of 100 agrees on a change in a few seconds.
  std::chrono::milliseconds exchange_interval{1000};
  // Members told at once when this node's table changed.
  uint32_t change_fanout = 3;
  // How long a removal made here is re-applied to tables adopted from peers that still
  // list the removed node (made concurrently, before they heard of the removal). After it,
  // a removed node that comes back and joins itself is a member again.
  std::chrono::milliseconds removal_memory{60000};
};

struct PlacementKeeperCounters {
  uint64_t exchanges = 0;       // digests sent
  uint64_t adopted = 0;         // newer tables taken from peers
  uint64_t self_joins = 0;      // times this node joined itself into the table
  uint64_t tables_refused = 0;  // tables that did not decode or did not match Q or N
  uint64_t tables_sent = 0;
};

// A hand-over in progress: the pending table this node knows of, next to its current one
// (docs/replication.md, "Hand-over").
struct HandOverProgress {
  NodeId node;              // a node taking over slots
  uint32_t partitions = 0;  // partitions it takes over
  uint32_t streamed = 0;    // of those, the ones it holds everything of (as last heard)
  bool ready = false;       // all of them: it declared itself ready
};

struct HandOverStatus {
  uint64_t from_epoch = 0;  // the current table's
  uint64_t to_epoch = 0;    // the pending table's
  uint64_t to_digest = 0;
  std::vector<NodeId> joining;  // members of the pending table only
  std::vector<NodeId> leaving;  // members of the current table only
  // Members that must still adopt the pending table before streaming begins.
  std::vector<NodeId> not_seen;
  std::vector<HandOverProgress> takers;  // by node id
  uint64_t moved_slots = 0;              // slots whose node changes
};

class PlacementKeeper {
 public:
  // `placement`: the table this node held when it stopped (read back from its data
  // directory), or a new one holding only this node.
  PlacementKeeper(NodeId self, Placement placement, PlacementKeeperOptions options, uint64_t seed);

  // Starts the exchanges and joins this node into its table if it is not in it.
  void start(MonoTime now);
  // Gossip's view of a member (this node excepted): up (alive or suspect) or not.
  void set_member_up(const NodeId& id, bool up, MonoTime now);
  // A placement message from a peer; other messages are ignored.
  void on_message(const NodeId& from, const PeerMessage& message, MonoTime now);
  void tick(MonoTime now);
  MonoTime next_deadline() const { return next_exchange_; }
  std::vector<PeerOutgoing> take_messages();

  // True once after each change of placement(): the driver persists the new table and
  // hands it to its view.
  bool take_changed();
  const Placement& placement() const { return placement_; }
  // Removes nodes from the table (one epoch step), e.g. a node gone for good.
  Status remove(const std::vector<NodeId>& ids, MonoTime now);
  // The hand-over in progress, if any.
  std::optional<HandOverStatus> hand_over() const { return std::nullopt; }
  const PlacementKeeperCounters& counters() const { return counters_; }
  // Why the last refused table was refused, for the log; empty when none was.
  const std::string& last_refusal() const { return last_refusal_; }

 private:
  void join_self_if_missing();
  void changed(MonoTime now);
  void send_digest(const NodeId& to);
  const NodeId* random_up_member();

  NodeId self_;
  Placement placement_;
  PlacementKeeperOptions options_;
  Random random_;
  std::set<NodeId> up_;
  std::map<NodeId, MonoTime> removed_;  // removals made here, until when they are re-applied
  MonoTime next_exchange_ = MonoTime::max();
  bool started_ = false;
  bool changed_ = false;
  std::vector<PeerOutgoing> out_;
  PlacementKeeperCounters counters_;
  std::string last_refusal_;
};

}  // namespace edgekv::cluster
