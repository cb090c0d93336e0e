// Hinted handoff: how a fallback hands the hints it keeps to the home replicas they were
// kept for, once gossip shows them up again; and the bounds past which a hint is not kept,
// which leave a durable repair mark instead of a silent loss.
//
// A pure state machine like the coordinator: gossip's liveness comes in through
// set_member(), write replies through on_reply(), the time through tick(); WriteRequests
// (marked `handoff`, addressed to the owners) come out of take_messages(). It reads hints
// from the store it is given (Store::read_hints_after, point reads answered at once) and
// removes each one the owner acknowledged (Store::remove_hint, completed through `post` on
// the owning thread, as the replica side's writes are).
//
// Delivery, per owner (a "target"):
//  - Starts when the owner is up and hints are held for it: at once when gossip shows it
//    coming back, and by a look every idle-check otherwise (a hint kept for an owner that
//    was up, the hints found after a restart).
//  - Pages through the owner's hints in version order with a cursor, so the next page is
//    read while the last is in flight. A hint is removed only once the owner acknowledged it
//    (applied, or already superseded there): a crash of either side at any point delivers
//    it again, which last-write-wins makes harmless.
//  - Throttled: at most `delivery_rate` bytes of keys and values per second (a token
//    bucket), at most max_inflight hints and max_inflight_bytes in flight. An owner that
//    answers OVERLOADED or not at all halves the target's rate (down to min_rate) and backs
//    off; every acknowledged hint wins some of it back (additive increase, up to the
//    configured rate). While this node is loaded (`loaded()`), no target sends.
//  - A hint the owner answers INVALID_ARGUMENT (a key or value over its limits) will never
//    be taken: it is removed and its partition marked for repair with the owner.
//
// Re-homing: hints kept for an owner that neither the committed placement nor a pending
// one lists (set_placement(): removed for good, or unknown to this node's tables after a
// restart) can never be handed to it, and may be a write's only copies (sloppy quorum:
// every home replica missed it, fallbacks took it). Its target is then "re-homed": each of
// its hints goes to every current home replica of the hint's partition (and to the
// partition's takers while a hand-over is pending), this node included when it is one (a
// write to its own replica, through the same channel), and is removed once all of them
// acknowledged it. All of them, not only the nodes that took the removed owner's slots:
// every home replica missed the write (that is why it is a hint), and the takers streamed
// from home replicas that lacked it, so the write is held by a quorum again only once all
// have it. Per hint:
//  - a home replica that gossip shows down holds the hint back (it stays, and is looked
//    at again every idle-check) until it is up again, or until it has been down longer
//    than hint_window: then the hint goes to the others, and once they all acknowledged,
//    the partition is marked for repair with that home replica (a RepairMark, asked as
//    any) and the hint removed; never before at least one home replica holds it;
//  - a hint for it the store refuses (refused()) marks the partition with each current
//    home replica but this node instead of with the owner, which no one would ask;
//  - an answer other than OK (or none within request_timeout) from any of them fails the
//    target as for an owner (slower, backed off, read again from the first hint);
//    INVALID_ARGUMENT marks the partition for repair with that home replica instead.
// Throttled like delivery to an owner (each copy counts against the target's rate and
// in-flight bounds), and resumable: the hints stay in the store until acknowledged, and
// set_placement() after a restart finds their owners again (Store::hint_owners). A new
// data directory's own table (only this node, at the first epoch) re-homes nothing.
//
// Bounds: a hint for an owner that gossip has shown down for longer than `hint_window` is
// refused (admit()), and one the store refuses at hints_max_bytes is reported (refused());
// both mark the key's partition for repair with that owner: a RepairMark, which the driver
// keeps durably (take_marks_changed(), encode_marks()) and shows (kvcli hints), and which
// anti-entropy clears once it has compared the partition with the owner.
//
// Repair asks: a fallback holding a mark is usually no home replica of the partition, so it
// runs no anti-entropy round with the owner that would clear it. Instead, while gossip shows
// the owner up (from resume_delay after it came back), it sends the owner a RepairAsk for
// the mark's partition: the owner runs rounds of the partition with every other home
// replica that is up (as kvcli repair does there) and answers once they finished. Then:
//  - OK: the owner holds what the other home replicas hold, which is what the refused
//    hints were kept for: the mark goes (unless more hints were refused for it while the
//    ask ran: it is asked again at once).
//  - FAILED_PRECONDITION: the owner is no home replica of the partition any more (the
//    placement changed); what it missed there is no longer its to hold, and the partition's
//    current home replicas converge among themselves: the mark goes too.
//  - Anything else (OVERLOADED, a round's TIMEOUT, UNAVAILABLE when no other home replica is
//    up, an error), or no answer within repair_ask_wait + request_timeout: asked again
//    after a backoff doubling from repair_ask_backoff_min to repair_ask_backoff_max.
// At most one ask per mark and max_repair_asks asks in all are in flight; an owner that
// goes down drops its asks (asked again when it is back). Marks of an owner down or never
// reported are not asked, and none when options.repair_asks is false.
//
// Thread-safety: none; one thread owns it. The store's callbacks only call `post`.
#pragma once

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
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cluster/messages.h"
#include "cluster/placement.h"
#include "common/clock.h"
#include "common/status.h"
#include "store/store.h"

namespace edgekv::cluster {

struct HandoffOptions {
  // Bytes of keys and values handed to one owner per second at most (hint-delivery-rate).
  uint64_t delivery_rate = 16 * 1024 * 1024;
  // The floor an owner's overload halves the rate to.
  uint64_t min_rate = 64 * 1024;
  // How long an owner may be down before hints for it are no longer kept (hint-window).
  std::chrono::milliseconds hint_window = std::chrono::hours(3);
  // How long a handed-off hint waits for the owner's answer (request-timeout-ms).
  std::chrono::milliseconds request_timeout{2000};
  // Hints read from the store at a time, in count and bytes.
  size_t page_hints = 256;
  uint64_t page_bytes = 1024 * 1024;
  // Hints in flight per owner, in count and bytes (one larger hint always goes alone).
  size_t max_inflight = 256;
  uint64_t max_inflight_bytes = 8 * 1024 * 1024;
  // How often an up owner with no hints known is looked at again.
  std::chrono::milliseconds idle_check{1000};
  // Backoff after an owner refused or did not answer: doubles from min to max.
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  // How long delivery waits after gossip shows an owner back before it sends (the peer
  // channel reconnecting; a batch sent before is lost and waits out request_timeout).
  std::chrono::milliseconds resume_delay{0};
  // How long delivery waits while this node is loaded before it looks again.
  std::chrono::milliseconds loaded_wait{50};
  // Repair asks: how long the owner may take to run a mark's rounds (sent in the ask; it
  // answers TIMEOUT for a round still running then). The ask waits that plus
  // request_timeout for the answer.
  std::chrono::milliseconds repair_ask_wait{30000};
  // Backoff after a failed ask, per mark: doubles from min to max.
  std::chrono::milliseconds repair_ask_backoff_min{1000};
  std::chrono::milliseconds repair_ask_backoff_max{60000};
  // Asks in flight at once (each for a different mark).
  size_t max_repair_asks = 4;
  // false: no asks (marks stay until anti-entropy clears them or the file is removed).
  bool repair_asks = true;
};

// A partition that missed writes for `owner` which no hint holds: anti-entropy with the
// owner repairs it.
struct RepairMark {
  NodeId owner;
  uint32_t partition = 0;
  WallTime since;      // the first refusal
  uint64_t hints = 0;  // hints refused since
  std::string reason;  // the first refusal's
};

// The marks' file format: a header line, one line per mark, and a closing line with their
// count, each ending in a newline. decode_marks() refuses anything else, a file cut short
// anywhere included, with INVALID_ARGUMENT naming the line.
std::string encode_marks(const std::vector<RepairMark>& marks);
Result<std::vector<RepairMark>> decode_marks(std::string_view bytes);

class Handoff {
 public:
  using Post = std::function<void(std::function<void()> work)>;
  using PartitionOf = std::function<uint32_t(std::string_view key)>;
  // Whether this node is too busy to hand off now (its own clients and replica writes come
  // first).
  using Loaded = std::function<bool()>;

  // Handed-off hints carry request ids with this bit set; the coordinator's never do.
  static constexpr uint64_t kRequestBit = uint64_t{1} << 62;
  static bool is_handoff_reply(uint64_t req) { return (req & kRequestBit) != 0; }

  struct Counters {
    uint64_t sent = 0;       // hints handed to owners (retries included)
    uint64_t delivered = 0;  // acknowledged by their owners
    uint64_t delivered_bytes = 0;
    uint64_t refused = 0;  // answered with an error (OVERLOADED, ...): sent again later
    // Answered INVALID_ARGUMENT (over the owner's limits): removed, the partition marked.
    uint64_t rejected = 0;
    uint64_t timeouts = 0;  // not answered within request_timeout
    uint64_t removed = 0;   // removed from the store once delivered
    uint64_t remove_failures = 0;
    uint64_t read_failures = 0;    // pages the store could not read
    uint64_t window_refusals = 0;  // hints refused past hint_window
    uint64_t store_refusals = 0;   // hints the store refused at hints_max_bytes
    uint64_t repair_asks_sent = 0;
    uint64_t repair_asks_cleared = 0;  // answered OK or FAILED_PRECONDITION: the mark went
    uint64_t repair_asks_failed = 0;   // answered otherwise, or not within the wait: retried
    // Re-homing: copies of hints of removed owners sent to current home replicas (retries
    // included), and hints removed once every one of them acknowledged.
    uint64_t rehome_sent = 0;
    uint64_t rehomed = 0;
    // Re-homed hints held back because a home replica was down (within hint_window).
    uint64_t rehome_held = 0;
  };

  // What kvcli hints shows of one owner's delivery.
  struct TargetStatus {
    NodeId owner;
    bool up = false;
    bool delivering = false;  // hints known and being handed over
    bool rehomed = false;     // no table lists the owner: its hints go to the new homes
    size_t inflight = 0;
    uint64_t rate = 0;  // bytes/s allowed now
    uint64_t delivered = 0;
    uint64_t failures = 0;
    std::string last_error;
    MonoTime down_since{};  // when !up
  };

  // `store` and `clock` must outlive the Handoff. The clock dates repair marks and times
  // admit() and refused(), which the replica side calls without a time.
  Handoff(NodeId self, store::Store& store, const Clock& clock, HandoffOptions options, Post post,
          PartitionOf partition_of, Loaded loaded);
  ~Handoff();
  Handoff(const Handoff&) = delete;
  Handoff& operator=(const Handoff&) = delete;

  // A member as gossip sees it: up (alive or suspect) or down. Members never reported are
  // not delivered to.
  void set_member(const NodeId& id, bool up, MonoTime now);
  void forget_member(const NodeId& id);

  // The committed placement and the pending one, if any (at start and on every change).
  // Owners of hints held that neither lists are re-homed (the store's hint owners are read
  // when the tables' members changed, and at the first call).
  void set_placement(const Placement& current, const std::optional<Placement>& pending,
                     MonoTime now);

  // The replica side's hint gate (Replica::HintGate): OK to keep a hint for `owner`, or
  // UNAVAILABLE (naming the bound) when the owner is down past hint_window, which marks the
  // key's partition.
  Status admit(const NodeId& owner, std::string_view key);
  // A hint the store refused (hints_max_bytes): marks the key's partition (for an owner no
  // table lists, with each of the partition's current home replicas but this node).
  void refused(const NodeId& owner, std::string_view key, const Status& why);

  // A WriteReply: true when it answers a hint handed off here (is_handoff_reply), which is
  // then consumed; false for anything else.
  bool on_reply(const NodeId& from, const WriteReply& reply, MonoTime now);
  // A RepairAskReply: true when it answers a repair ask sent here (consumed, whether still
  // awaited or late); false for anything else.
  bool on_repair_reply(const NodeId& from, const RepairAskReply& reply, MonoTime now);
  void tick(MonoTime now);
  MonoTime next_deadline() const;
  std::vector<PeerOutgoing> take_messages();

  // ---- repair marks
  std::vector<RepairMark> marks() const;
  // Replaces the marks (from the driver's file, at start).
  void load_marks(std::vector<RepairMark> marks);
  // Anti-entropy compared the partition with the owner: the mark goes (an ask in flight
  // for it is forgotten; its answer is then ignored).
  void clear_mark(const NodeId& owner, uint32_t partition);
  // Whether a mark was added or removed since the last call (the driver then writes them).
  // A mark's hint count going up alone does not count: it reaches the file with the next
  // addition or removal, so a long outage past the window does not rewrite the file for
  // every write it refuses.
  bool take_marks_changed();

  std::vector<TargetStatus> targets() const;
  // The owners whose hints are re-homed (no table lists them), in id order.
  std::vector<NodeId> rehomed_owners() const;
  const Counters& counters() const { return counters_; }
  size_t inflight() const { return inflight_.size(); }
  size_t repair_asks_inflight() const { return ask_reqs_.size(); }

 private:
  struct Target {
    bool up = false;
    // Re-homed (no table lists the owner): `up` says nothing; the homes' liveness counts.
    bool rehomed = false;
    MonoTime rehomed_since{};
    MonoTime down_since{};
    Version cursor;                    // the last version read from the store
    bool exhausted = false;            // the last page read came back empty
    bool rescan = false;               // after a failure: read again from the first hint
    std::deque<store::Record> queued;  // read, not yet sent
    size_t inflight = 0;
    uint64_t inflight_bytes = 0;
    // Keys sent or being removed: a page read meanwhile skips them.
    std::unordered_set<std::string> busy_keys;
    double rate = 0;
    double tokens = 0;
    MonoTime refilled{};
    // Nothing is sent before this (a backoff, an empty bucket, the idle look, this node's
    // load); `wake` is when tick() must look next (max: a reply will).
    MonoTime not_before{};
    MonoTime wake{};
    std::chrono::milliseconds backoff{0};
    // Repair asks wait for this after the owner came back (resume_delay).
    MonoTime asks_after{};
    uint64_t delivered = 0;
    uint64_t failures = 0;
    std::string last_error;
  };
  struct Sent {
    NodeId owner;        // the target
    NodeId to;           // the owner, or a home replica the owner's hint was re-homed to
    uint64_t group = 0;  // a re-homed hint's copies share one (0: a hint to its owner)
    std::string key;
    Version version;
    uint64_t bytes = 0;
    MonoTime deadline{};
  };

  // A re-homed hint's copies in flight.
  struct Group {
    size_t waiting = 0;  // copies not answered yet
    bool failed = false;
    // Home replicas down past hint_window: marked once the others all acknowledged.
    std::vector<NodeId> lapsed;
  };
  // Where a re-homed hint of `partition` goes now.
  struct Homes {
    std::vector<NodeId> send;    // up (this node included)
    std::vector<NodeId> lapsed;  // down past hint_window
    bool hold = false;           // one is down within hint_window
  };
  Homes homes_of(uint32_t partition, const Target& t, MonoTime now) const;
  // Whether no table lists `owner` (and the tables are the cluster's, not a new one's).
  bool unlisted(const NodeId& owner) const;
  void rehome(const NodeId& owner, MonoTime now);
  // Reads the store's hint owners and re-homes those no table lists.
  void find_unlisted(MonoTime now);
  // Sends a re-homed hint to its homes, within the target's bounds; false when it does not
  // fit now (left queued).
  bool send_rehomed(const NodeId& owner, Target& t, MonoTime now);
  // A copy of a re-homed hint answered (`status`) or timed out (nullopt).
  void on_copy(Target& t, Sent sent, const NodeId& from, std::optional<Status> status,
               MonoTime now);

  // Sends what the target's bounds allow; schedules its next look.
  void pump(const NodeId& owner, Target& t, MonoTime now);
  // Reads the next page into t.queued; false when the store failed.
  bool read_page(const NodeId& owner, Target& t, MonoTime now);
  // A hint the owner refused or did not answer: slows the target down and schedules a
  // fresh pass over its hints.
  void fail(Target& t, const Sent& sent, std::string why, MonoTime now);
  // A hint `t`'s owner (or every home it was re-homed to) acknowledged: counted, and the
  // target wins back some rate (additive increase) and loses its backoff.
  void acknowledged(Target& t, const Sent& sent);
  // Removes the hint sent once it did its work (that version only).
  void remove(const Sent& sent);
  void on_removed(const NodeId& owner, const std::string& key, Result<store::ApplyResult> result);
  void mark(const NodeId& owner, std::string_view key, const std::string& reason);

  using MarkKey = std::pair<NodeId, uint32_t>;  // (owner, partition)
  // A mark's repair asks.
  struct Ask {
    MonoTime not_before{};
    std::chrono::milliseconds backoff{0};
    uint64_t req = 0;  // the ask in flight (0: none)
    MonoTime deadline{};
    uint64_t hints = 0;  // the mark's hint count when it was asked
  };
  // Sends the asks due, within max_repair_asks; sets ask_wake_.
  void ask_repairs(MonoTime now);
  // Forgets the ask in flight for the mark, if any.
  void drop_ask(Ask& a);
  void fail_ask(Ask& a, MonoTime now);

  const NodeId self_;
  store::Store& store_;
  const Clock& clock_;
  const HandoffOptions options_;
  const Post post_;
  const PartitionOf partition_of_;
  const Loaded loaded_;
  // Completions posted after the Handoff is gone find it expired.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  std::map<NodeId, Target, std::less<>> targets_;
  std::unordered_map<uint64_t, Sent> inflight_;
  std::unordered_map<uint64_t, Group> groups_;
  uint64_t next_group_ = 1;
  std::optional<Placement> current_;
  std::optional<Placement> pending_;
  // When the store's hint owners must be read again (max: not until the tables change).
  MonoTime owners_look_{MonoTime::max()};
  std::set<std::pair<MonoTime, uint64_t>> timers_;
  uint64_t next_req_ = 1;
  std::vector<PeerOutgoing> outbox_;
  std::map<MarkKey, RepairMark> marks_;
  bool marks_changed_ = false;
  std::map<MarkKey, Ask> asks_;  // of marks only; made when a mark is first looked at
  std::unordered_map<uint64_t, MarkKey> ask_reqs_;
  std::set<std::pair<MonoTime, uint64_t>> ask_timers_;
  // When ask_repairs() must look next: MonoTime{} (now) after anything that can make an
  // ask due, max when nothing can until an answer.
  MonoTime ask_wake_{};
  Counters counters_;
};

}  // namespace edgekv::cluster
