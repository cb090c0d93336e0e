// Keeps this node's placement table (cluster/placement.h) and agrees on it with the peers,
// and moves the cluster from one table to the next by hand-overs.
//
// Agreement: every exchange_interval the node sends a digest of what it holds to one random
// member that gossip says is up, and to a few at once whenever that changed. A node that
// hears of a newer state fetches it from the one that has it; a node that hears of an older
// one sends its own. So the newest state spreads like a rumour, and every node ends at the
// same one. A state is the current table, and during a hand-over a pending table (epoch + 1)
// with what the nodes know of the hand-over: who has seen the pending table, and how far each
// node taking over slots has streamed them. States order by the current table's (epoch,
// digest) (Placement::newer), then by the pending table's (none lowest); equal tables merge
// what they know of the hand-over (a union of `seen`, the highest `streamed` per node).
//
// Hand-over (docs/replication.md, "Hand-over"). A transition never takes effect at once: a
// join or a removal makes a pending table next to the current one, and while it is pending:
//  1. every member adopts it and, once nothing it began under the current table alone is
//     still running (the driver's call: mark_seen()), adds itself to `seen`: from then on
//     its reads and writes of a partition also go to the nodes taking over slots of it
//     (joining(): the coordinator asks one more answer per such node);
//  2. once every member has seen it (a leaving member gossip shows down excepted),
//     streaming may begin (streaming_may_begin()): each node taking over slots (a taker)
//     copies the partitions it takes over from their current home replicas (the driver's
//     work, reported through set_streamed());
//  3. when every taker streamed all it takes over, the member of both tables that sees it
//     first commits:
//     the pending table becomes the current one, a deterministic step every node takes
//     the same way. The commit spreads like any newer table.
// One hand-over at a time: a removal asked while one is pending is refused, a join waits.
// Two pending tables made at once elsewhere (two joins) order like tables: every node ends
// at the higher; a node that adopted the lower first keeps sending to its takers as well
// (superseded), so the lower one, if it commits, still has its quorums.
//
// Cancelling (abort(), kvcli remove --abort): the pending table is replaced by a *restore*:
// the current table's members and slots at the current epoch + 2, so above every pending
// table of the current one (epoch + 1), which it supersedes everywhere it spreads. Relative
// to the current table it moves nothing, so it has no takers and commits once every member
// has seen it; a joining node is no member of it, so a dead one is never waited for, nor is
// a leaving member of the cancelled table that gossip shows down. Two rules keep a
// cancelled table that commits concurrently from losing writes: only a member of both the
// current and the pending table commits (a joining or leaving node waits to hear it), and
// a member that has seen the restore no longer holds the cancelled table, so it cannot
// commit it; a member that committed it first never sees the restore, which then cannot
// commit. Its commit spreads instead, and the node that cancelled proposes the same
// restored table on top of it (epoch + 1 of it): a hand-over back, streamed like any.
// Removals asked before the cancel are forgotten (a restore, or a pending table listing a
// node again, clears them), a removed node that took part in its removal may serve again,
// and a joining node whose join it cancelled while it ran stays out until it restarts.
//
// Transitions: a node joins only itself. When the table it holds does not list it and no
// hand-over is pending, it proposes Placement::join(self) as the pending table; a node whose
// table holds nobody (the first node) joins at once, or after bootstrap_wait when it expects
// to find a cluster. A node is never added by others, so a
// member gossip still shows as alive but that runs with another partition count, or an old
// version, never enters the table, and a dead member is never dropped: it stays until it is
// removed (remove(), the operator's decision), its partitions covered by fallbacks meanwhile.
// A removed node does not join itself again while it runs (left()); restarted, it joins like
// a new node.
// A removal asked here is proposed again, within removal_memory, on top of any table adopted
// that still lists the removed node, so that a join made concurrently elsewhere does not
// bring it back.
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
  // A node whose table holds nobody (a new data directory) that expects a cluster (it was
  // given seeds) waits this long for a peer's table before it starts a cluster of its own,
  // so that joining an existing cluster never makes a rival table; hearing one ends the
  // wait. 0: it starts one at once.
  std::chrono::milliseconds bootstrap_wait{0};
};

struct PlacementKeeperCounters {
  uint64_t exchanges = 0;       // digests sent
  uint64_t adopted = 0;         // newer tables taken from peers
  uint64_t self_joins = 0;      // times this node joined itself into the table
  uint64_t tables_refused = 0;  // tables that did not decode or did not match Q or N
  uint64_t tables_sent = 0;
  uint64_t hand_overs_proposed = 0;   // pending tables made here
  uint64_t hand_overs_committed = 0;  // pending tables committed here
  uint64_t pendings_superseded = 0;   // pending tables replaced by a higher one
  uint64_t hand_overs_cancelled = 0;  // cancelled hand-overs whose restore took effect here
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
  // The pending table cancels the hand-over to `cancelled_epoch` (PlacementKeeper::abort):
  // a restore of the current table's slots, or, on the node that cancelled, the hand-over
  // back from a cancelled table that committed.
  bool cancels = false;
  uint64_t cancelled_epoch = 0;
};

class PlacementKeeper {
 public:
  // `placement`: the table this node held when it stopped (read back from its data
  // directory), or a new one holding only this node; `pending`: the pending table it held
  // then, if any (ignored unless its epoch follows the table's), which this node has seen.
  PlacementKeeper(NodeId self, Placement placement, PlacementKeeperOptions options, uint64_t seed,
                  std::optional<Placement> pending = std::nullopt);

  // Starts the exchanges and joins this node into its table if it is not in it.
  void start(MonoTime now);
  // Gossip's view of a member (this node excepted): up (alive or suspect) or not.
  void set_member_up(const NodeId& id, bool up, MonoTime now);
  // A placement message from a peer; other messages are ignored.
  void on_message(const NodeId& from, const PeerMessage& message, MonoTime now);
  void tick(MonoTime now);
  MonoTime next_deadline() const { return std::min(next_exchange_, bootstrap_at_); }
  std::vector<PeerOutgoing> take_messages();

  // True once after each change of placement() or pending(): the driver persists them and
  // hands them to its view.
  bool take_changed();
  const Placement& placement() const { return placement_; }
  const std::optional<Placement>& pending() const { return pending_; }
  // Per partition, the nodes a coordinator also reads from and writes to while a hand-over
  // is pending (the pending tables' home replicas that are not current ones); empty
  // vectors, or an empty vector, when none is.
  const std::vector<std::vector<NodeId>>& joining() const { return joining_; }

  // Proposes the removal of nodes for good (a hand-over to a table without them).
  // INVALID_ARGUMENT for an invalid id or for removing every member; FAILED_PRECONDITION
  // while another hand-over is pending. Ids that are not members are skipped; nothing to
  // remove changes nothing. Removing a node that only a pending join lists (a new node
  // that died mid-join) cancels that join (abort()); FAILED_PRECONDITION when members are
  // given with it.
  Status remove(const std::vector<NodeId>& ids, MonoTime now);
  // Cancels the hand-over in progress (see the top of this file). FAILED_PRECONDITION "no
  // hand-over is pending" when none is; asking again while the cancel runs changes nothing.
  Status abort(MonoTime now);

  // When this node adopted the pending table it has not yet declared seen: the driver
  // calls mark_seen() once nothing it began before that time is running. nullopt: nothing
  // to declare.
  std::optional<MonoTime> awaiting_seen() const;
  void mark_seen(MonoTime now);
  // Every member has seen the pending table: takers may stream.
  bool streaming_may_begin() const;
  // The partitions this node takes over in the pending hand-over (ascending; empty: none).
  const std::vector<uint32_t>& taking_over() const { return taking_over_; }
  // This node streamed `count` of them (counts only grow within one pending table).
  void set_streamed(uint32_t count, MonoTime now);

  // The hand-over in progress, if any.
  std::optional<HandOverStatus> hand_over() const;
  // This node took part in its own removal (it adopted a pending table without it): once
  // removed it stays out until it restarts. A node that was down meanwhile and learns of
  // the table without it later joins itself again, as any node does.
  bool left() const { return left_; }
  const PlacementKeeperCounters& counters() const { return counters_; }
  // Why the last refused table was refused, for the log; empty when none was.
  const std::string& last_refusal() const { return last_refusal_; }

 private:
  // Proposes what this node wants while no hand-over is pending: its own join, removals
  // asked here.
  void propose(MonoTime now);
  void set_pending(std::optional<Placement> pending, MonoTime now);
  // After placement_ changed from `before`: counts a cancel that took effect, forgets what
  // it undid.
  void took_table(const Placement& before);
  // The pending table restores the current one's slots (a cancel).
  bool restoring() const;
  // Commits the pending table when every taker streamed all it takes over.
  void maybe_commit(MonoTime now);
  // Sends this node's digest to a few up members of both tables (those that commit).
  void tell_committers();
  // Members that must see the pending table (leaving members gossip shows down excepted).
  std::vector<NodeId> must_see() const;
  void recompute();
  uint64_t state_hash() const;
  void changed(MonoTime now);
  void send_digest(const NodeId& to);
  void send_table(const NodeId& to);
  const NodeId* random_up_member();
  void on_table(const NodeId& from, const PlacementTable& table, MonoTime now);

  NodeId self_;
  Placement placement_;
  std::optional<Placement> pending_;
  std::set<NodeId> seen_;
  std::map<NodeId, uint32_t> streamed_;
  // Pending tables of the current one this node adopted before a higher one replaced them.
  std::vector<Placement> superseded_;
  std::optional<MonoTime> adopted_at_;
  // Derived from the above (recompute()).
  std::vector<std::vector<NodeId>> joining_;
  std::vector<uint32_t> taking_over_;
  std::map<NodeId, uint32_t> taken_;  // per taker, how many partitions it takes over
  PlacementKeeperOptions options_;
  Random random_;
  std::set<NodeId> up_;
  std::map<NodeId, MonoTime> removed_;  // removals asked here, until when they are re-proposed
  // A cancel asked here, until the cluster holds a table at or above the restore's epoch:
  // should a cancelled table commit, the restore is proposed on top of it.
  std::optional<Placement> restore_;
  MonoTime next_exchange_ = MonoTime::max();
  MonoTime bootstrap_at_ = MonoTime::max();  // while waiting to start a cluster alone
  // This node adopted a pending table that removes it: it does not join itself again until
  // it restarts.
  bool left_ = false;
  bool started_ = false;
  bool changed_ = false;
  std::vector<PeerOutgoing> out_;
  PlacementKeeperCounters counters_;
  std::string last_refusal_;
};

}  // namespace edgekv::cluster
