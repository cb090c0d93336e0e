// Anti-entropy: replicas of a partition compare their digests (store/digest.h) and exchange
// only the keys on which they differ, so that what reads, writes and hints missed converges.
//
// A pure state machine like Handoff: liveness comes in through set_member(), the home
// replicas of each partition through set_homes(), peers' messages through on_message() and
// the replies to the reads and writes it sent through on_read_reply() / on_write_reply(),
// the time through tick(); messages come out of take_messages() and take_peer_messages().
// It reads its store (digest, digest_entries: reads callable from any thread) at once; what
// it pulls it applies as a repair WriteRequest to this node itself, which the driver hands
// to its own replica side (so that the clock guard, the read cache and the change feed see
// it as they see any applied change), and whose WriteReply comes back like a push's.
//
// A round (this node the initiator, `peer` the responder, one partition):
//  1. AeDigest{root, entries} ->; equal roots: the peer answers "in sync", done.
//  2. Otherwise the peer answers its 1024 leaves; the initiator finds the leaves that
//     differ from its own.
//  3. It asks for the peer's entries in those leaves, a page at a time (at most
//     page_leaves leaves, page_entries entries and page_bytes bytes of entries per
//     answer; the peer answers how many of the asked leaves it covered, whole leaves only,
//     and the initiator asks again from the first leaf not covered), and compares them
//     with its own entries of the same leaves.
//  4. Per key, last-write-wins by version decides: where the peer is newer, the record is
//     pulled (a ReadRequest to the peer, its record applied here); where this node is
//     newer, it is pushed (a WriteRequest marked `repair`, as read repair sends). Equal
//     versions are the same write: nothing moves. Tombstones of both kinds are states
//     like any other and move the same way.
//  5. The round completes when every pull was applied and every push acknowledged. A pull
//     this node's clock guard refuses (a version too far ahead of its clock) does not fail
//     the round, which it would every time: it is counted `refused`, and the round completes
//     without recording a sync point.
// So a round costs two small messages when the replicas agree, and otherwise the leaves
// (8 KiB) plus, per differing key, its leaf's entries and its record: it grows with the
// keys that differ, not with the partition's size.
//
// Never resurrect. A key present on one side only may be absent on the other because its
// tombstone was purged there (tombstone_grace_ms after the delete): copying the live
// record back would bring a deleted key back. A one-sided entry therefore moves only when
// its version's wall-clock part is within `tombstone_grace` of now (less a margin for
// clock offset): any tombstone newer than it would then be younger than the grace too,
// hence not purged, so the absence is a missed write and not a purged delete. Older
// one-sided entries are left alone (counted as `skipped`): a live one is a write both a
// delete's tombstone and its purge outran, the case Dynamo-style stores leave to the
// operator by keeping anti-entropy-interval well below the grace; an old tombstone is
// about to be purged on its side as well. Absence never counts as "older".
//
// Tombstone purge (docs/replication.md, "Tombstones"). A completed round tells each side
// that the other now holds every key state it held when the round began, or a newer one.
// So per (partition, other home replica) this node keeps a sync point: its change log's
// last seq and its wall time when the pair's last completed round began. The initiator
// records it when its round completes; the responder when it answers "in sync", or when
// the initiator's next AeDigest names the round it answered as completed (one interval
// later). A tombstone this node logged at or below the sync point of every other home
// replica is held by all of them, and may go: the partition's purge horizon is the lowest
// of those seqs, and an hlc bound of the oldest sync point's time less the clock margin,
// (horizon_margin), to which the store also holds relayed writes (Store::set_purge_horizon). A home
// replica with no sync point for longer than tombstone_grace (gone for good, or never compared
// since this node learnt of it) no longer holds purges back past that age; one not yet synced and
// not gone holds them back entirely. The horizon's hlc bound is also capped by the purge
// hold the driver sets (set_purge_hold: the hints other nodes still hold for this one,
// cluster/hint_floors.h). The horizon is handed to the store whenever a sync
// point moves and every horizon_refresh. Entries below the horizon of the side lacking
// them do not move: the store there would ignore them.
//
// Scheduling: per (partition, peer) where this node and the peer are both home replicas of
// the partition, the lower node id (bytewise) initiates, so each pair is compared once per
// interval and not twice. Pairs are spread evenly over the interval (a new pair's first
// round lands at its rank's share of it), each round is due `interval` after the last
// one started, a failed round is retried after retry_after; at most max_rounds rounds run
// at once, and a pair whose peer is down waits for it. repair(partition) forces rounds of
// that partition with each other home replica that is up, from this node whichever id is
// lower, ahead of the schedule. The results of the last rounds are kept (results()).
//
// Messages: the round's own (AeDigest, AeDigestReply, AeEntriesRequest, AeEntriesReply,
// cluster/messages.h) are peer messages like the others; pulls and pushes are ordinary
// ReadRequest / WriteRequest peer messages.
// Request ids carry kRequestBit so a driver can route replies here.
//
// Thread-safety: none; one thread owns it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "cluster/due_schedule.h"
#include "cluster/messages.h"
#include "common/clock.h"
#include "common/status.h"
#include "store/digest.h"
#include "store/store.h"

namespace edgekv::cluster {

struct AntiEntropyOptions {
  // How often each (partition, peer) pair is compared at least (anti-entropy-interval);
  // 0: never on a schedule, only repair() starts rounds.
  // Ten minutes: a replica that missed a write without a hint (a refused hint, a lost
  // message) converges within that, well inside both the 3 h hint window and the 24 h
  // tombstone grace (a missed delete is repaired ~140 times before its tombstone may be
  // purged); and a round between replicas that agree costs two small messages and one
  // copy of an 8 KiB digest: at Q = 512, N = 3 on five nodes, one round every ~2 s.
  std::chrono::milliseconds interval = std::chrono::minutes(10);
  // Rounds in flight at once (this node initiating).
  size_t max_rounds = 2;
  // stream() rounds in flight at once, besides max_rounds: a hand-over compares every
  // partition a taker takes over, most of them agreeing or small.
  size_t max_stream_rounds = 16;
  // How long one message of a round waits for its answer before the round fails.
  std::chrono::milliseconds request_timeout{5000};
  // A failed round's pair is tried again after this.
  std::chrono::milliseconds retry_after = std::chrono::seconds(30);
  // The store's tombstone_grace_ms: one-sided entries older than it do not move.
  std::chrono::milliseconds tombstone_grace = std::chrono::hours(24);
  // Slack for the peers' clocks in that rule (max-clock-offset-ms and then some).
  std::chrono::milliseconds clock_margin = std::chrono::minutes(1);
  // An entries answer: at most this many leaves asked, entries and bytes of entries
  // answered (one leaf holding more goes alone, up to kLeafEntriesMax).
  size_t page_leaves = 64;
  size_t page_entries = 1024;
  uint64_t page_bytes = 256 * 1024;
  // Pulls and pushes of one round in flight at once.
  size_t max_transfers = 64;
  // Bytes per second the rounds this node starts exchange, both ways, at most
  // (anti-entropy-rate; 0: no limit): a token bucket holding a second's worth. A round
  // out of tokens waits before its next entries request or transfer, so a node far out of
  // sync is brought back at this pace rather than at the network's.
  uint64_t rate_bytes = 0;
  // Results kept for kvcli repair.
  size_t results_kept = 256;
  // What the purge horizon's hlc bound stays below a sync point's time: the peers' clock
  // offsets (twice max-clock-offset-ms). The seq bound is what makes a purge safe; this only
  // keeps versions stamped by clocks ahead of this node's out of it.
  std::chrono::milliseconds horizon_margin{1000};
  // How often every partition's purge horizon is computed again (besides whenever a sync
  // point moves): what moves it then is time alone (a replica passing tombstone_grace).
  std::chrono::milliseconds horizon_refresh = std::chrono::minutes(1);
};

using AeMessage = std::variant<AeDigest, AeDigestReply, AeEntriesRequest, AeEntriesReply>;

struct AeOutgoing {
  NodeId to;
  AeMessage message;
};

// The peer message of a round's message, and back: the message of a round if `m` is one
// (moved out of it), nullopt otherwise. For drivers, which route both kinds.
PeerMessage to_peer_message(AeMessage message);
std::optional<AeMessage> take_anti_entropy_message(PeerMessage& m);

// Bytes a message takes on the wire, roughly (fields and payload, no framing): what rounds
// count as exchanged.
uint64_t wire_bytes(const AeMessage& message);

class AntiEntropy {
 public:
  // A round completed between this node and `peer` for `partition` (Handoff::clear_mark).
  using Synced = std::function<void(const NodeId& peer, uint32_t partition)>;

  static constexpr uint64_t kRequestBit = uint64_t{1} << 61;
  static bool is_anti_entropy_reply(uint64_t req) { return (req & kRequestBit) != 0; }
  // The most entries one leaf's answer holds: a leaf holding more cannot be compared (the
  // round fails naming it). 1024 leaves x this is far beyond a partition's keys.
  static constexpr size_t kLeafEntriesMax = 65536;

  struct RoundResult {
    uint32_t partition = 0;
    NodeId peer;
    bool forced = false;
    bool stream = false;  // one of stream()'s
    Status status;        // OK: completed
    bool in_sync = false;
    size_t leaves_differing = 0;
    uint64_t pushed = 0;   // keys this node was newer on, written to the peer
    uint64_t pulled = 0;   // keys the peer was newer on, applied here
    uint64_t skipped = 0;  // one-sided entries older than the grace, left alone
    // Pulled records this node's clock guard refused (versions too far ahead of its clock):
    // the round completes without them, and without a sync point.
    uint64_t refused = 0;
    uint64_t bytes = 0;  // sent and received by this node for the round
    WallTime started;
    std::chrono::milliseconds duration{0};
  };

  struct Counters {
    uint64_t rounds_started = 0;
    uint64_t rounds_in_sync = 0;
    uint64_t rounds_repaired = 0;  // completed with something moved or differing
    uint64_t rounds_failed = 0;
    uint64_t pushed = 0;
    uint64_t pulled = 0;
    uint64_t skipped = 0;
    uint64_t bytes = 0;
    uint64_t answered = 0;  // AeDigest and AeEntriesRequest answered as responder
  };

  // `store` and `clock` must outlive the AntiEntropy.
  AntiEntropy(NodeId self, store::Store& store, const Clock& clock, AntiEntropyOptions options,
              Synced synced);
  ~AntiEntropy();
  AntiEntropy(const AntiEntropy&) = delete;
  AntiEntropy& operator=(const AntiEntropy&) = delete;

  // The home replicas of every partition this node compares (index: partition; placement
  // changes call it again). Pairs that remain keep their schedule.
  void set_homes(const std::vector<std::vector<NodeId>>& homes, MonoTime now);
  // Per partition, the nodes taking it over in a hand-over in progress (cluster/
  // placement_keeper.h), who are among set_homes()'s too: a taker never held the partition
  // (what it held of it before was dropped when it lost it), so its absences are missed
  // writes, never purged deletes, and one-sided entries move to it whatever their age.
  // Empty: none.
  void set_joining(const std::vector<std::vector<NodeId>>& joining);
  // A member as gossip sees it: up (alive or suspect) or down; never reported: down.
  void set_member(const NodeId& id, bool up);

  // Forces rounds of `partition` with each other home replica that is up, ahead of the
  // schedule (a round of the pair running now, or one already forced, counts as the forced
  // one); answers how many rounds will report to take_forced_results(). INVALID_ARGUMENT
  // for a partition out of range,
  // FAILED_PRECONDITION when this node is not one of its home replicas.
  Result<size_t> repair(uint32_t partition);

  // A hand-over's streaming: rounds of `partition` with each of `peers` that start after
  // this call (a round of the pair running now does not count: it may have begun before
  // writes reached this node), whose results come out of take_forced_results() marked
  // `stream`. Errors as repair(); INVALID_ARGUMENT for a peer that is not a home replica.
  Result<size_t> stream(uint32_t partition, const std::vector<NodeId>& peers);

  // A message of a round from `from`: requests are answered (take_messages), replies move
  // this node's rounds on.
  void on_message(const NodeId& from, const AeMessage& message, MonoTime now);
  // Replies to the pulls and pushes (is_anti_entropy_reply): true when consumed.
  bool on_read_reply(const NodeId& from, const ReadReply& reply, MonoTime now);
  bool on_write_reply(const NodeId& from, const WriteReply& reply, MonoTime now);

  void tick(MonoTime now);
  MonoTime next_deadline() const;
  std::vector<AeOutgoing> take_messages();
  // The pulls (ReadRequest) and pushes (WriteRequest) to send.
  std::vector<PeerOutgoing> take_peer_messages();

  // The purge horizon of `partition` as of `now` (see the top of this file): nullopt when
  // this node is not a home replica of it, or another home replica was neither compared
  // with nor gone long enough, or the purge hold is 0.
  std::optional<store::PurgeHorizon> purge_horizon(uint32_t partition, WallTime now) const;
  // Caps every partition's purge horizon hlc at `hlc` from now on (cluster/hint_floors.h:
  // below every hint another node holds for this one, so that the store never refuses one
  // as below the horizon); 0: no purge at all. Never called: no cap. The cap reaches the
  // store with the next horizon handed to it (a sync point moving, horizon_refresh).
  void set_purge_hold(uint64_t hlc) { hold_ = hlc; }

  std::vector<RoundResult> results() const { return {results_.begin(), results_.end()}; }
  // The results of forced rounds (repair()) finished since the last call, for the driver
  // to answer the repairs it was asked for. A forced pair whose scheduled round was running
  // is answered by that round.
  std::vector<RoundResult> take_forced_results();
  const Counters& counters() const { return counters_; }
  size_t rounds_running() const { return rounds_.size(); }

 private:
  using Pair = std::pair<uint32_t, NodeId>;  // (partition, peer)
  struct Transfer {
    std::string key;
    bool push = false;
  };
  // This node's change log and clock when a round began (see the top of this file).
  struct SyncPoint {
    uint64_t seq = 0;
    WallTime at;
  };
  struct Answered {  // the responder's side of a pair's last round not known complete
    uint64_t req = 0;
    SyncPoint point;
  };
  struct Round {
    Pair pair;
    bool forced = false;
    bool stream = false;
    SyncPoint start_point;
    uint64_t digest_req = 0;    // the AeDigest's req: the round's name for the peer
    uint64_t peer_horizon = 0;  // the peer's purge horizon hlc
    MonoTime started_mono{};
    RoundResult result;
    uint64_t awaiting = 0;           // the AE request in flight (0: none)
    std::deque<uint32_t> leaves;     // differing leaves not yet asked for
    std::deque<Transfer> transfers;  // decided, not yet sent
    size_t transfers_inflight = 0;   // sent (or applying), not yet finished
  };
  struct Pending {
    uint64_t round = 0;  // the round's id
    MonoTime deadline{};
    std::string key;        // pulls and pushes
    bool applying = false;  // a pull being applied to the store
  };

  uint64_t send(Round& round, uint64_t id, AeMessage message, MonoTime now);
  void start_due(MonoTime now);
  void start(const Pair& pair, bool forced, MonoTime now, bool stream = false);
  bool is_joining(uint32_t partition, const NodeId& id) const;
  void on_digest_reply(uint64_t id, Round& r, const AeDigestReply& reply, MonoTime now);
  void on_entries_reply(uint64_t id, Round& r, const AeEntriesRequest& asked,
                        const AeEntriesReply& reply, MonoTime now);
  // Asks for the next page, sends transfers, or completes the round.
  void advance(uint64_t id, Round& r, MonoTime now);
  // Counts bytes of a round (its result, and the token bucket).
  void charge(Round& r, uint64_t bytes);
  // Refills the bucket to `now`; whether a round may send.
  bool tokens_left(MonoTime now);
  void finish(uint64_t id, Status status, MonoTime now);
  AeDigestReply answer_digest(const NodeId& from, const AeDigest& d);
  // A pair's round that began at `point` completed: the sync point moves (only forward)
  // and the partition's horizon goes to the store.
  void record_sync(const Pair& pair, SyncPoint point);
  void update_horizon(uint32_t partition);
  AeEntriesReply answer_entries(const AeEntriesRequest& q);
  bool one_sided_moves(const Version& v) const;
  // Keeps a finished round's result (and a forced one's for take_forced_results).
  void keep(RoundResult result);
  bool is_up(const NodeId& id) const;

  const NodeId self_;
  store::Store& store_;
  const Clock& clock_;
  const AntiEntropyOptions options_;
  const Synced synced_;

  std::set<NodeId, std::less<>> up_;
  std::vector<std::vector<NodeId>> homes_;
  // Every (partition, other home replica) of the partitions this node is a home replica
  // of, with when this node first knew the pair: the purge horizon's inputs.
  std::map<Pair, WallTime> known_since_;
  std::map<Pair, SyncPoint> sync_points_;
  std::map<Pair, Answered> answered_;
  std::map<Pair, uint64_t> completed_req_;  // the digest req of the pair's last completed round
  std::optional<uint64_t> hold_;            // set_purge_hold's cap (nullopt: none)
  MonoTime next_refresh_{};
  // The rate limit's bucket (rate_bytes), and the rounds waiting for it.
  double tokens_ = 0;
  MonoTime tokens_at_{};
  std::set<uint64_t> throttled_;
  std::vector<RoundResult> forced_results_;  // not yet taken
  DueSchedule due_;                          // the pairs this node initiates, and when next
  std::deque<Pair> forced_;
  std::deque<Pair> streams_;  // stream() rounds not started yet
  size_t stream_rounds_ = 0;  // of rounds_, the stream() ones
  std::vector<std::vector<NodeId>> joining_;
  std::map<uint64_t, Round> rounds_;     // by round id
  std::map<uint64_t, Pending> pending_;  // by request id
  // The entries request in flight per round, to know what it asked.
  std::map<uint64_t, AeEntriesRequest> asked_;
  MonoTime last_now_{};
  uint64_t next_id_ = 1;
  std::vector<AeOutgoing> outbox_;
  std::vector<PeerOutgoing> peer_outbox_;
  std::deque<RoundResult> results_;
  Counters counters_;
};

}  // namespace edgekv::cluster
