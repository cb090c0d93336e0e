// SWIM membership with the Lifeguard refinements, as a pure state machine.
//
// A Swim instance is one node's view of the cluster. It never reads a clock, sleeps, opens a
// socket or draws from an unseeded random source: the driver (the daemon's event loop over
// ZeroMQ, or the simulator in tests/sim/) hands it the current time and every message that
// arrived, calls tick() when next_deadline() has come, and carries out what it asks for:
//
//   Swim swim(self, options, seed);
//   swim.start(now);                        // begins joining through options.seeds
//   loop:
//     for each datagram:   swim.receive(bytes, now);
//     if now >= swim.next_deadline(): swim.tick(now);
//     for (Outgoing& m : swim.take_messages()) transport.send(m);
//     for (MemberEvent& e : swim.take_events()) membership_changed(e);
//
// Messages are datagrams: any may be lost, duplicated, delayed or reordered, and the protocol
// tolerates that. receive() accepts arbitrary bytes: anything that does not decode, or that
// comes from another cluster or an incompatible protocol version, is dropped and counted.
//
// Thread-safety: none. One thread owns an instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace edgekv::gossip {

using Millis = std::chrono::milliseconds;

// Where a member can be reached. Every field is a ZeroMQ endpoint (tcp://HOST:PORT); any may be
// empty when the node does not serve it.
struct Endpoints {
  std::string client;  // client API (ZeroMQ ROUTER)
  std::string peer;    // replica traffic between nodes
  std::string feed;    // change feed (ZeroMQ PUB)
  std::string gossip;  // this protocol's inbox (ZeroMQ SUB, bound)

  bool operator==(const Endpoints&) const = default;
};

// What a node says about itself. Changes propagate to every member (with a new incarnation).
struct NodeInfo {
  std::string id;          // unique in the cluster, 1..64 bytes of [A-Za-z0-9._-]
  std::string datacenter;  // 1..64 bytes of [A-Za-z0-9._-]
  Endpoints endpoints;

  bool operator==(const NodeInfo&) const = default;
};

enum class MemberState : uint8_t {
  kAlive = 1,
  kSuspect = 2,  // failed a probe; dead unless refuted before the suspicion timeout
  kDead = 3,     // declared dead; reaped after options.reap_after
  kLeft = 4,     // left gracefully; reaped after options.reap_after
};
std::string_view to_string(MemberState state);  // "alive", "suspect", "dead", "left"

struct Member {
  NodeInfo info;
  MemberState state = MemberState::kAlive;
  uint64_t incarnation = 0;
  MonoTime since{};  // local time of the last state change
};

// A change in this node's view of another member (never of itself).
struct MemberEvent {
  enum class Kind : uint8_t {
    kJoined = 1,   // first seen alive (or alive again after dead/left)
    kUpdated = 2,  // metadata changed, still alive
    kSuspect = 3,
    kAlive = 4,  // a suspect refuted
    kDead = 5,
    kLeft = 6,
    kReaped = 7,  // forgotten: no longer in members()
  };
  Kind kind;
  Member member;  // the member as it is after the change
};
std::string_view to_string(MemberEvent::Kind kind);

// A datagram to send. `to_id` is the destination's node id; it is empty when the id is not
// known yet (a join sent to a seed known only by its endpoint), in which case the transport
// sends it on the broadcast topic to `to_endpoint` only. `to_endpoint` is the destination's
// gossip endpoint; always set.
struct Outgoing {
  std::string to_id;
  std::string to_endpoint;
  std::string bytes;
};

// Every knob of the protocol; docs/gossip.md explains each, with the reasoning behind the
// preset values and the detection times measured in the simulator (tests/sim/).
//
// Presets: lan() (the defaults below), local() (loopback tests), wan(). With n members,
// log10n = max(1, log10(n)), and h the local health multiplier (1 when healthy):
//   probe interval            protocol_period * h
//   direct probe timeout      probe_timeout * h
//   suspicion timeout         from max = suspicion_max_mult * min down to
//                             min = suspicion_mult * log10n * probe_timeout, shrinking as
//                             independent confirmations arrive (suspicion_confirmations);
//                             then * h (a node losing messages may have missed a refutation)
//   retransmissions           retransmit_mult * ceil(log10(n + 1)) per update
// Detection: a crashed member declared dead by every live member, measured in the simulator
// (tests/sim/, no message loss; median / 99th percentile / worst over the trials run):
//   lan,   20 members: 3.0 s / 5.8 s / 9.2 s (200 trials; 6.7 s p99 over 1000); asserted
//                      median <= 4.5 s and p99 <= 7 s. 50 members: 3.5 s, 128: 4.3 s median.
//   local,  5 members: 1.3 s / 1.8 s / 1.9 s (300 trials); asserted: always within 2.8 s. A
//                      pause of 0.5 s (SIGSTOP) is never a death (asserted).
//   wan,   20 members: 20 s median, 41 s worst (100 trials, 20-60 ms one way).
// A pause shorter than the minimum suspicion timeout (lan, 20 members: 1.3 s) is never a
// death. Idle traffic: a ping and an ack per member per protocol period (2 messages per
// member per second with lan), plus one push-pull exchange per push_pull_interval.
// reap_after is at least 30 s in every preset, so dead and left members stay visible.
struct Options {
  std::string cluster_name = "edgekv";  // in every message; others' messages are dropped
  // The cluster's partition count Q (cluster/placement.h), in every message: it must agree
  // cluster-wide, so a message stating another Q is dropped and counted
  // (Counters::dropped_partitions, Swim::partitions_mismatch()), and a join stating one is
  // answered so that the joiner learns why it is refused. 0: this node states none and
  // accepts any (tools, tests); a message stating none (older builds) is accepted.
  uint32_t partitions = 0;
  std::vector<std::string> seeds;  // gossip endpoints to join through; may include self

  Millis protocol_period{1000};     // one probe per period (x local health)
  Millis probe_timeout{500};        // direct ack wait before indirect probes (x local health)
  uint32_t indirect_probes = 3;     // k members asked to probe on our behalf
  uint32_t retransmit_mult = 4;     // each update is piggybacked mult * ceil(log10(n+1)) times
  uint32_t suspicion_mult = 2;      // min suspicion timeout = mult * log10n * probe_timeout
  uint32_t suspicion_max_mult = 4;  // max suspicion timeout = max_mult * min timeout
  // Independent confirmations (suspect claims from other members) that shrink the suspicion
  // timeout all the way from max to min; capped at n - 2.
  uint32_t suspicion_confirmations = 2;
  uint32_t awareness_max = 8;  // local health score ceiling (multiplier is score + 1)
  // Updates waiting to be disseminated are also sent, every gossip_interval, in a message of
  // their own to gossip_fanout random members; nothing is sent when no update waits, so an
  // idle cluster only probes. 0 fanout: piggybacking alone.
  Millis gossip_interval{200};
  uint32_t gossip_fanout = 3;
  Millis push_pull_interval{30000};   // full state exchange with one random member; 0 disables
  Millis gossip_to_dead{30000};       // keep gossiping to a dead member this long (it may refute)
  Millis reap_after{60000};           // forget dead and left members after this long
  Millis join_retry_min{200};         // join backoff: doubles from min to max until answered;
  Millis join_retry_max{5000};        // then, while no other member is live, every max
  Millis leave_timeout{2000};         // leave(): wait at most this long for the broadcast to go out
  uint32_t max_message_bytes = 1400;  // piggybacked updates stop before this size
  // Bound of a push-pull (full state: roughly 100 bytes + endpoints per member); members
  // beyond it are left out of that exchange, a random subset each time. Larger datagrams
  // are dropped on receipt.
  uint32_t max_push_pull_bytes = 256 * 1024;
  // Members this node keeps in its view (self included); news of more is ignored. Bounds
  // memory against a flood of made-up members.
  uint32_t max_members = 1024;

  // The defaults above.
  static Options lan();
  // Loopback tests: protocol_period 200 ms, probe_timeout 100 ms, suspicion_mult 10 (min
  // suspicion 1 s up to 10 members, max 4 s), gossip_interval 50 ms, push_pull_interval
  // 5 s, join_retry 50..1000 ms, leave_timeout 1 s; reap_after 60 s as in lan.
  static Options local();
  // Across datacenters: protocol_period 5 s, probe_timeout 3 s, suspicion_mult 3 (min
  // suspicion 9 s up to 10 members), gossip_interval 500 ms, gossip_fanout 4,
  // push_pull_interval 60 s, gossip_to_dead 60 s, reap_after 5 min, join_retry 1..30 s,
  // leave_timeout 5 s.
  static Options wan();
  // "lan", "local" or "wan"; INVALID_ARGUMENT naming the value otherwise.
  static Result<Options> preset(std::string_view name);
  // Checks ranges; INVALID_ARGUMENT naming the field.
  Status validate() const;
};

struct Counters {
  uint64_t probes_sent = 0;           // direct probes
  uint64_t indirect_probes_sent = 0;  // ping-req to helpers
  uint64_t acks_received = 0;
  uint64_t nacks_received = 0;
  uint64_t suspicions = 0;     // members this node marked suspect (its own probe failed)
  uint64_t refutations = 0;    // times this node refuted a suspicion of itself
  uint64_t false_alarms = 0;   // members suspected, then seen alive at a higher incarnation
  uint64_t dead_declared = 0;  // members this node declared dead
  uint64_t messages_in = 0;    // datagrams that decoded (the rest: messages_dropped)
  uint64_t messages_out = 0;
  uint64_t messages_dropped = 0;  // undecodable, wrong cluster, wrong version, other Q
  uint64_t push_pulls = 0;        // full-state exchanges this node started (joins included)
  // messages_dropped, by cause.
  uint64_t dropped_malformed = 0;   // does not decode, or fails validation, or too large
  uint64_t dropped_cluster = 0;     // another cluster's
  uint64_t dropped_version = 0;     // a protocol version this node does not speak
  uint64_t dropped_partitions = 0;  // another partition count (Options::partitions)
  // Claims ignored for their incarnation: above kIncarnationMax, or more than
  // kMaxIncarnationLead above what this node holds of the member (docs/gossip.md).
  uint64_t claims_rejected = 0;
  // Alive claims about members this node has never seen, ignored because the view already
  // holds options.max_members.
  uint64_t members_refused = 0;
};

// The last message dropped for stating another partition count: its sender (valid id and
// endpoint, as every decoded message has) and the count it stated.
struct PartitionsMismatch {
  std::string id;
  std::string endpoint;
  uint32_t partitions = 0;
};

// Incarnation bounds. Messages are not authenticated yet, so any sender can claim anything
// about any member; these bounds keep a made-up incarnation from wrapping a counter or from
// keeping a live member dead.
//
// The highest incarnation a node holds or announces. Starting incarnations are the wall
// clock in milliseconds (about 2^41 today), so 2^62 is some 146 million years away: only a
// forged claim gets there. A suspect, dead or left claim must stay below it, so that the
// member it names can always refute it with a higher one; an alive claim may reach it.
// Arithmetic on incarnations saturates at it and never wraps.
inline constexpr uint64_t kIncarnationMax = uint64_t{1} << 62;
// How far above what this node holds of a member (or of itself) a claim may be. Claims
// about a member carry an incarnation that member announced, and a node misses at most a
// few of its refutations, so a legitimate claim is close above; a restart announces the
// wall clock, at most the previous life's uptime above its old incarnation (2^32 ms is
// 49 days). A node restarted after a longer uptime, while the others still remember it,
// keeps its old record there until that is declared dead and forgotten (docs/gossip.md,
// "Incarnation bounds"). Each forged claim within the lead moves a member's incarnation up
// by at most this much: some 2^30 of them stand between today's incarnations and
// kIncarnationMax.
inline constexpr uint64_t kMaxIncarnationLead = uint64_t{1} << 32;

class Swim {
 public:
  // `self` must pass NodeInfo validation (id, datacenter, endpoints.gossip non-empty);
  // `seed` seeds the member shuffles and helper choices.
  Swim(NodeInfo self, Options options, uint64_t seed);
  ~Swim();
  Swim(const Swim&) = delete;
  Swim& operator=(const Swim&) = delete;

  // Starts the protocol: join through options.seeds (a node with no seeds, or whose only
  // seed is itself, starts a cluster of one). `incarnation` lets a restarted node rejoin
  // above what the cluster remembers of it; the machine also raises it on its own when it
  // hears of an older self.
  void start(MonoTime now, uint64_t incarnation = 0);
  // Handles one datagram. Never fails: bad input is dropped and counted.
  void receive(std::string_view bytes, MonoTime now);
  // Runs every timer due at `now`.
  void tick(MonoTime now);
  // When tick() must next be called; time_point::max() when nothing is scheduled.
  MonoTime next_deadline() const;

  // Announces this node's departure to the cluster. Keep driving the machine until
  // left() is true (the broadcast went out, or options.leave_timeout passed).
  void leave(MonoTime now);
  bool left() const;
  // Changes this node's metadata (id excepted); propagates with a higher incarnation.
  void update_self(NodeInfo info, MonoTime now);

  std::vector<Outgoing> take_messages();
  std::vector<MemberEvent> take_events();

  // The view: every known member, this node included, sorted by id.
  std::vector<Member> members() const;
  const NodeInfo& self() const;
  uint64_t incarnation() const;
  // True once this node has heard from at least one other member (or has no seeds).
  bool joined() const;
  // Lifeguard local health score, 0 (healthy) .. options.awareness_max.
  uint32_t health_score() const;
  const Counters& counters() const;
  const Options& options() const;
  // The last message dropped for another partition count (nullptr: none yet), so the driver
  // can log one line naming both counts; counters().dropped_partitions says whether it is new.
  const PartitionsMismatch* partitions_mismatch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Validates a node id or datacenter name: 1..64 bytes of [A-Za-z0-9._-]. INVALID_ARGUMENT
// naming `what` otherwise.
Status check_name(std::string_view name, std::string_view what);

}  // namespace edgekv::gossip
