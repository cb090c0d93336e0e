// The coordinator: runs one node's client requests against the key's replicas, as a pure
// state machine like gossip/swim.h. Any node coordinates any key.
//
// What it owns: the requests in flight and their replicas' replies, versions for the writes
// it makes (from the HybridClock it is given), per-key ordering of the operations it runs,
// read repair, and the timers of all of these. It never reads a clock other than through
// that HybridClock (for versions, and for the wall time that expiry is judged against), opens
// no socket and starts no thread: the driver (the daemon's event loop, the simulator) hands
// it the time with every call and carries out what it asks:
//
//   Coordinator c(view, hlc, options);
//   c.get(key, options, now, done);  c.put(...);  c.del(...);  c.mutate(...);
//   for each peer message:              c.on_message(from, message, now);
//   if now >= c.next_deadline():        c.tick(now);
//   for (PeerOutgoing& m : c.take_messages()) send(m);   // `to` may be this node itself
//
// Requests (docs/replication.md, "Coordinator", says what each guarantees):
//  - Writes (put, del) get a version from the HLC and go to every home replica that is up;
//    with sloppy quorum (the default) a home replica that is down is stood in for by the
//    next fallback (view.fallbacks), which keeps the write as a hint naming it. They answer
//    at W acknowledgements (hints count), UNAVAILABLE at once when fewer than W replicas
//    are reachable, TIMEOUT when fewer than W acknowledged within the request timeout.
//  - Reads go to every home replica that is up (fallbacks with their hints for the ones
//    down, when sloppy), answer with the newest reply by last-write-wins once R replied,
//    and repair every contacted replica that replied older or absent. A read at QUORUM or
//    ALL answers only once a quorum holds what it answers (monotonic quorum reads).
//  - Read-modify-writes run at the first home replica that is up (the partition's
//    leader); elsewhere they are forwarded there. The leader reads at the request's
//    consistency, decides with cluster/mutation.h and writes with a newer version.
//  - While a hand-over is in progress, the k joining nodes of a partition (view.joining:
//    home replicas in the pending table, not in the current one) are replicas like its home
//    ones for every phase above: contacted, stood in for by a fallback when down and not
//    strict, read-repaired; and every level requires k more replies (ONE: 1 + k, QUORUM and
//    LOCAL_QUORUM: n/2 + 1 + k, ALL: n + k), monotonic reads k more holders. Why that is
//    enough, with H the n current home replicas, P the pending ones, J = P \ H (k nodes)
//    and U = H + J (n + k): of W + k acknowledgements in U at most k are outside H, so at
//    least W are in H and meet any R of H (W + R > n); U \ P = H \ P has n + k - |P|
//    nodes, so at least W + |P| - n are in P, which meet any R' of P's own levels when
//    W + R' > n: always when |P| >= n (the usual case, |P| = n, or a join growing a
//    partition that had fewer than N home replicas: then H is in P and U is P); when a
//    removal shrinks it by one node (k = 0), too (W + R' is n/2 + 1 + (n-1)/2 + 1 > n);
//    by two or more at once, not. A read of R + k of U meets any W of either table alike,
//    and a monotonic read's Q + k holders include a quorum of each.
//
// Per-key ordering: the operations of one key run in arrival order in runs: consecutive
// writes are in flight together (each has a newer version; last-write-wins orders them),
// consecutive reads too, and a read-modify-write runs alone. A run starts when the one
// before it has answered. So a pipelined `SET k a; GET k` reads `a`, while a hot key's
// writes are not cut to one per round trip.
//
// Every request is answered exactly once: by its callback (or, for a MutateRequest from a
// peer, a MutateReply), possibly before the call that made it returns. Callbacks may call
// the coordinator again.
//
// Thread-safety: none. One thread owns an instance, the view and the clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluster/messages.h"
#include "cluster/view.h"
#include "common/clock.h"
#include "common/hlc.h"
#include "common/status.h"
#include "common/version.h"
#include "store/store.h"

namespace edgekv::cluster {

struct CoordinatorOptions {
  // How long a read or a write waits for its replicas (request-timeout-ms). A
  // read-modify-write, which reads and then writes, gets twice this at the node that runs
  // it, and three times this at a node that forwards it (one more for the two hops and the
  // wait behind the leader's earlier operations on the key).
  std::chrono::milliseconds request_timeout{2000};
  // Most requests held at once, queued behind their key or in flight, including reads still
  // repairing after they answered; beyond it a request answers OVERLOADED at once. Bounds
  // memory and the replicas' work one node can start.
  size_t max_requests = 65536;
  // Most bytes of keys and values the requests held keep (each request's once, however many
  // replicas it goes to); a request beyond it answers OVERLOADED at once. Replies' values are
  // counted when they arrive but never refused (they are bounded by max_requests times the
  // largest value a replica stores).
  uint64_t max_request_bytes = uint64_t{256} << 20;
};

struct CoordinatorStats {
  uint64_t reads = 0;            // get()s coordinated
  uint64_t writes = 0;           // put()s and del()s coordinated
  uint64_t mutations = 0;        // read-modify-writes run here (from clients or forwarded here)
  uint64_t forwarded = 0;        // read-modify-writes forwarded to their partition's leader
  uint64_t timeouts = 0;         // requests answered TIMEOUT
  uint64_t unavailable = 0;      // requests answered UNAVAILABLE
  uint64_t overloaded = 0;       // requests refused for max_requests or max_request_bytes
  uint64_t repairs = 0;          // read-repair writes sent
  uint64_t hints = 0;            // writes sent to a fallback standing in for a home replica
  uint64_t replies_dropped = 0;  // late, unknown, misaddressed or malformed peer messages
};

// What a write answers: the version the key got and the expiry written (0: none).
struct WriteOutcome {
  Version version;
  WallTime expiry;
};

// How many replies consistency `c` requires of `n` replicas (QUORUM: n/2 + 1); 0 for a
// value that is no Consistency.
size_t required_replies(Consistency c, size_t n);

class Coordinator {
 public:
  using ReadDone = std::function<void(Result<store::Record>)>;
  using WriteDone = std::function<void(Result<WriteOutcome>)>;
  using MutateDone = std::function<void(Result<MutationOutcome>)>;

  // `view` and `hlc` must outlive the coordinator. Versions made here carry
  // origin_of(view.self()).
  Coordinator(const ReplicaView& view, HybridClock& hlc, CoordinatorOptions options);
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The live record of `key`: NOT_FOUND when absent, deleted or expired.
  void get(std::string_view key, RequestOptions options, MonoTime now, ReadDone done);
  // Writes `value` with an absolute expiry (0: none; already past: the key ends up expired).
  void put(std::string_view key, std::string value, WallTime expiry, RequestOptions options,
           MonoTime now, WriteDone done);
  // Writes a tombstone.
  void del(std::string_view key, RequestOptions options, MonoTime now, WriteDone done);
  // A read-modify-write, atomic per key while membership is stable.
  void mutate(std::string_view key, Mutation mutation, RequestOptions options, MonoTime now,
              MutateDone done);

  // A message from peer `from` (this node itself for replies of its own replica side):
  // replies to requests made here, and MutateRequests forwarded here. Anything else, and
  // replies nothing here waits for, are dropped and counted.
  void on_message(const NodeId& from, PeerMessage message, MonoTime now);
  void tick(MonoTime now);
  // When tick() must next be called; time_point::max() when nothing is scheduled.
  MonoTime next_deadline() const;
  std::vector<PeerOutgoing> take_messages();

  const CoordinatorStats& stats() const { return stats_; }
  size_t requests() const { return ops_.size(); }
  // Whether a request of `key` is in flight or queued here.
  bool busy(std::string_view key) const { return keys_.find(key) != keys_.end(); }
  uint64_t request_bytes() const { return bytes_; }
  // Whether a request this coordinator took in at or before `t` is still held: queued,
  // running, or answered and still repairing. A node that adopts a pending table at `t`
  // tells the others it has seen it once this is false, when nothing it began under the old
  // table can still write or repair by it. Inclusive, so that a request taken in at the
  // same instant as the adoption (in the same turn, just before it) counts. O(1).
  bool running_begun_by(MonoTime t) const { return !begun_.empty() && begun_.begin()->first <= t; }

 private:
  enum class OpKind : uint8_t { kRead, kWrite, kMutate, kForward };
  enum class Phase : uint8_t { kQueued, kReading, kWriting, kForwarding, kAnswered };
  enum class Purpose : uint8_t { kRead, kWrite, kRepair, kForward };

  // One replica a phase of a request contacts.
  struct Target {
    NodeId node;
    NodeId hint_for;       // a fallback standing in for this replica; empty for the replica itself
    bool joining = false;  // a joining node, or a fallback standing in for one
    bool replied = false;
    bool ok = false;
    // Reads: the newest version the replica is known to hold (a repair it acknowledged
    // raises it).
    Version holds;
    Version repaired;  // the newest version sent to it as a repair
    bool repair_outstanding = false;
  };

  struct Op {
    uint64_t id = 0;
    OpKind kind = OpKind::kRead;
    Phase phase = Phase::kQueued;
    std::string key;
    RequestOptions options;
    MonoTime deadline{};
    ReadDone read_done;
    WriteDone write_done;
    MutateDone mutate_done;
    // A MutateRequest from a peer: answered with a MutateReply to it.
    NodeId reply_to;
    uint64_t reply_req = 0;
    // The record to write, kept until answered and shared by the messages that carry it
    // (WriteRequest); the mutation (kMutate, kForward).
    std::shared_ptr<store::Record> record;
    Mutation mutation;
    // The phase in flight.
    std::vector<Target> targets;
    size_t required = 0;  // R or W
    size_t oks = 0;
    size_t failures = 0;
    Status first_error;
    std::vector<uint64_t> reqs;  // peer request ids issued, to forget with the op
    size_t quorum = 0;           // QUORUM of the key's home replicas
    bool running = false;        // holds its key (started, not answered)
    NodeId leader;               // kForward: where it went
    MutationOutcome outcome;     // kMutate: decided, answered once written
    // Reads: the newest state any replica replied with (nullopt: none yet, or absent).
    std::optional<store::Record> winner;
    uint64_t bytes = 0;  // what the op counts in bytes_
    // Writes: the newest version a replica kept over this write that this node made itself
    // (with a clock that was ahead, before a restart); the write is made again once, past
    // it, instead of answering with a version that lost.
    Version own_newer;
    bool restamped = false;
    MonoTime began{};    // when it was taken in (admit)
    size_t joining = 0;  // the partition's joining nodes in the phase in flight (k)
  };

  struct Pending {
    uint64_t op = 0;
    size_t target = 0;
    Purpose purpose = Purpose::kRead;
  };

  struct KeyQueue {
    size_t reads = 0;  // running
    size_t writes = 0;
    bool exclusive = false;  // a read-modify-write or a forwarded one is running
    bool draining = false;
    // Op ids in arrival order. A list, because most keys never queue anything and an empty
    // list, unlike a deque, allocates nothing.
    std::list<uint64_t> waiting;
  };
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  using KeyMap = std::unordered_map<std::string, KeyQueue, KeyHash, std::equal_to<>>;

  // Takes an op in: refuses it when over a bound, else queues it behind its key.
  void admit(Op op, MonoTime now);
  bool can_start(const KeyQueue& q, OpKind kind) const;
  // Starts the operations waiting on `key` that may run now, in order.
  void drain(std::string key, MonoTime now);
  // Counts the op as running on its key and starts it.
  void run(KeyQueue& q, Op& op, MonoTime now);
  // Begins the op's first phase (or answers it at once: UNAVAILABLE, ...).
  void start(Op& op, MonoTime now);
  // Releases the op's hold on its key (when it answers) and starts what waited behind it.
  void release(Op& op, MonoTime now);

  // Sends the phase's requests to the key's replicas: up home replicas and joining nodes,
  // and fallbacks for the ones down unless strict. Answers the op UNAVAILABLE when fewer
  // than required are reachable.
  void fan_out(Op& op, Purpose purpose, MonoTime now);
  // "2 of 4 replicas answered (2 of 3 for home replicas, 0 of 1 for joining ones), 3
  // required": how far the phase in flight got, for its errors.
  static std::string answered(const Op& op);
  // A new peer request id for `target` of the op.
  uint64_t track(Op& op, size_t target, Purpose purpose);
  void forget_requests(Op& op);

  void on_read_reply(const NodeId& from, ReadReply reply, MonoTime now);
  void on_write_reply(const NodeId& from, const WriteReply& reply, MonoTime now);
  void on_mutate_reply(const NodeId& from, MutateReply reply, MonoTime now);
  void on_mutate_request(const NodeId& from, MutateRequest request, MonoTime now);
  // The op and target a reply answers; nullptr (counted) when nothing here waits for it
  // from `from`.
  Op* lookup(uint64_t req, const NodeId& from, Purpose purpose, size_t* target);

  // Reads: sends repairs where needed, answers once the read may, forgets the op when
  // nothing more is expected.
  void advance_read(Op& op, MonoTime now);
  // Replicas that replied and hold the newest state seen (or a newer one).
  size_t holders(const Op& op) const;
  // The read phase has its answer: answers a read, decides a read-modify-write.
  void read_complete(Op& op, MonoTime now);
  void advance_write(Op& op, MonoTime now);
  void expire(Op& op, MonoTime now);

  // Answers queue the callbacks (run_callbacks runs them), release the key and forget the
  // op; a read that answered stays until its repairs are done.
  void queue_read_done(Op& op, Result<store::Record> result);
  void answer_write(Op& op, Result<WriteOutcome> result, MonoTime now);
  void answer_mutate(Op& op, Result<MutationOutcome> result, MonoTime now);
  void fail(Op& op, Status status, MonoTime now);
  // Answers an op that was never admitted.
  void fail_unadmitted(Op op, Status status);
  // Counts an error answer in the stats.
  void count(const Status& status);
  void set_bytes(Op& op, uint64_t bytes);
  // Forgets the op: its timer, its requests, its bytes.
  void erase(uint64_t id);
  // The wall time expiry is judged against: the physical part of a fresh HLC reading.
  WallTime wall_now();
  // Runs the callbacks queued by answers, unless already doing so further up the stack.
  void run_callbacks();

  const ReplicaView& view_;
  HybridClock& hlc_;
  const CoordinatorOptions options_;
  const NodeOrigin origin_;
  CoordinatorStats stats_;
  uint64_t next_op_ = 1;
  uint64_t next_req_ = 1;
  uint64_t bytes_ = 0;
  std::unordered_map<uint64_t, Op> ops_;
  std::unordered_map<uint64_t, Pending> pending_;  // peer request id -> who waits for it
  std::set<std::pair<MonoTime, uint64_t>> timers_;
  std::set<std::pair<MonoTime, uint64_t>> begun_;  // (Op::began, id) of every op held
  KeyMap keys_;
  std::vector<PeerOutgoing> outbox_;
  std::deque<std::function<void()>> callbacks_;
  bool running_callbacks_ = false;
};

}  // namespace edgekv::cluster
