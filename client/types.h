// The values libedgekv hands back: replies to requests and change-feed events.
//
// Plain structs with no ZeroMQ or protobuf in sight, so callers of the client library need
// neither. Keys and values are std::string holding arbitrary bytes (NULs included).
//
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/change.h"
#include "common/clock.h"
#include "common/version.h"

namespace edgekv::client {

// Chosen by the client, unique for the life of a Client (never reused, even across
// reconnections), so a late reply can never be taken for the answer to a newer request.
using RequestId = uint64_t;

// What a request asked for; a Completion says which kind it answers.
enum class RequestKind : uint8_t {
  kPut,
  kGet,
  kDelete,
  kStatus,
  kStats,
  kChanges,
  kMembers,
  kChangesSince,
  kRing,
  kReplicas,
  kHints,
  kRepair,
  kRemove,
};
std::string_view request_kind_name(RequestKind kind);  // "put", "get", "delete", ...

// How many replicas must answer a get, put or del (docs/replication.md). kDefault leaves
// the choice to the node (its read-consistency or write-consistency).
enum class Consistency : uint8_t {
  kDefault = 0,
  kOne = 1,
  kQuorum = 2,
  kAll = 3,
  kLocalQuorum = 4
};
std::string_view consistency_name(Consistency level);  // "default", "one", "local_quorum", ...

// Per-request choices for get, put and del; the defaults leave everything to the node.
struct RequestOptions {
  Consistency consistency = Consistency::kDefault;
  // Count home replicas alone towards the quorum: a put or del leaves no hints with
  // fallbacks, a get does not read them (at QUORUM it sees every acknowledged strict
  // QUORUM write, or fails with kUnavailable); false takes the node's strict-quorum.
  bool strict = false;
};

struct PutReply {
  Version version;  // the version the node gave the write
  WallTime expiry;  // absolute; 0 ms: never expires
};

struct GetReply {
  std::string value;
  Version version;
  WallTime expiry;  // absolute; 0 ms: never expires
};

struct DeleteReply {
  Version version;  // the tombstone's version
};

// What `status` reports about the node the client talks to.
struct NodeStatus {
  std::string node_id;
  std::string server_version;
  uint64_t uptime_ms = 0;
  uint32_t partitions = 0;
  std::string data_dir;
  std::string client_endpoint;
  std::string feed_endpoint;  // where the node publishes its change feed (may be a bind address)
  std::string sync;
  uint64_t keys = 0;
  // Membership, as the node sees it.
  std::string cluster_name;
  std::string datacenter;
  uint32_t members_alive = 0;    // in state alive, the node itself included
  uint32_t members_suspect = 0;  // suspected of having failed, not yet declared dead
  uint32_t members_known = 0;    // every member the node knows of, dead and left included
  std::string gossip_endpoint;
  std::string peer_endpoint;
  uint64_t incarnation = 0;
  // The membership protocol's effective timing: the preset with the gossip-* overrides.
  std::string gossip_preset;
  uint64_t gossip_protocol_period_ms = 0;
  uint64_t gossip_probe_timeout_ms = 0;
  uint32_t gossip_suspicion_mult = 0;
  uint32_t gossip_suspicion_max_mult = 0;
  uint64_t gossip_reap_after_ms = 0;
};

// A member's state as the node sees it (gossip/swim.h).
enum class MemberState : uint8_t { kUnknown = 0, kAlive = 1, kSuspect = 2, kDead = 3, kLeft = 4 };
std::string_view member_state_name(MemberState state);  // "alive", "suspect", ...

struct MemberInfo {
  std::string node_id;
  std::string datacenter;
  MemberState state = MemberState::kUnknown;
  uint64_t incarnation = 0;
  std::string client_endpoint;
  std::string peer_endpoint;
  std::string feed_endpoint;
  std::string gossip_endpoint;
  uint64_t state_age_ms = 0;  // how long ago the node saw the member enter its state
  bool self = false;          // the member is the node that answered
  // The member's clock as the node sees it: the physical part of the last version the
  // member stamped just before sending it, minus the node's wall clock when it arrived,
  // so its clock offset less the message's delay (negative: behind). Holds only when
  // clock_known, false for a member none of whose writes reached the node (and from nodes
  // older than these fields).
  bool clock_known = false;
  int64_t clock_offset_ms = 0;
  uint64_t clock_versions_checked = 0;  // the member's versions the node checked
  uint64_t clock_versions_refused = 0;  // of those, beyond the node's max-clock-offset-ms
};

// What `members` reports: the node's view of the cluster, itself included.
struct Members {
  std::string cluster_name;
  std::vector<MemberInfo> members;  // sorted by node id
};

// One counter from `stats`; the node sends them in a stable order with snake_case names.
struct Stat {
  std::string name;
  uint64_t value = 0;
};

// One committed change, from the feed (Subscription) or a change-log read (Client::changes).
using edgekv::change_op_name;
using edgekv::ChangeEvent;
using edgekv::ChangeOp;

// A slice of one partition's change log.
struct Changes {
  std::vector<ChangeEvent> events;
  uint64_t last_seq = 0;  // the partition's newest sequence number when the node answered
};

// Where a changes_since read left one partition of the node.
struct PartitionPosition {
  uint32_t partition = 0;
  uint64_t through_seq = 0;  // every entry up to here is accounted for by the reply
  uint64_t last_seq = 0;     // the partition's newest sequence number when the node answered
  uint64_t lost_to = 0;      // entries from the asked from_seq up to here were trimmed; 0: none
};

// What a node's change logs hold after a cursor, for the keys under some prefixes.
struct ChangesSince {
  std::vector<ChangeEvent> events;           // by partition, then seq
  std::vector<PartitionPosition> positions;  // one per partition of the node
  bool more = false;  // a bound was reached: ask again from each through_seq + 1
};

// One partition of the placement table and its home replicas, in preference order.
struct RingPartition {
  uint32_t partition = 0;
  std::vector<std::string> home;
};

// A node taking over slots in a hand-over.
struct HandOverTaker {
  std::string node_id;
  uint32_t partitions = 0;  // partitions it takes over
  uint32_t streamed = 0;    // of those, the ones it holds everything of (as last heard)
  bool ready = false;       // all of them: it declared itself ready
};

// The answering node's own share of a hand-over: what it streams in.
struct HandOverStreaming {
  uint32_t partitions = 0;  // partitions it takes over; 0: none
  uint32_t streamed = 0;    // of those, streamed
  uint64_t keys = 0;        // keys pulled so far
  uint64_t bytes = 0;       // bytes exchanged so far
  bool started = false;     // streaming began (every member saw the pending table)
  uint64_t elapsed_ms = 0;  // since it began
};

// A hand-over in progress: the pending table the node knows of, next to the one it holds
// (Ring::epoch and digest).
struct HandOver {
  uint64_t from_epoch = 0;  // the current table's
  uint64_t to_epoch = 0;    // the pending table's
  uint64_t to_digest = 0;
  std::vector<std::string> joining;   // members of the pending table only
  std::vector<std::string> leaving;   // members of the current table only
  std::vector<std::string> not_seen;  // members that must still adopt the pending table
  std::vector<HandOverTaker> takers;  // by node id
  uint64_t moved_slots = 0;           // slots whose node changes
  HandOverStreaming streaming;
  // The pending table cancels the hand-over to cancelled_epoch (Client::abort_hand_over).
  bool cancels = false;
  uint64_t cancelled_epoch = 0;
};

// What `ring` reports: the placement table the node holds.
struct Ring {
  uint32_t partitions = 0;          // Q
  uint32_t replication_factor = 0;  // N
  uint64_t epoch = 0;
  uint64_t digest = 0;                // equal on nodes that agree on the table
  std::vector<std::string> members;   // the table's members, sorted
  std::vector<RingPartition> table;   // as the node sent it: every partition, ascending
  std::optional<HandOver> hand_over;  // nullopt: none in progress
};

// What `remove` reports.
struct RemoveReply {
  // The epoch of the table without the nodes: the pending table's while the hand-over runs
  // (handing_over), else the one the node holds now (the removal took effect at once).
  uint64_t epoch = 0;
  bool handing_over = false;
  // The hand-over running cancels the one to cancelled_epoch (abort_hand_over).
  bool cancelling = false;
  uint64_t cancelled_epoch = 0;
};

// A replica's stored state of one key. kUnknown: a state this client does not know (from a
// newer node); shown, not fatal.
enum class ReplicaKeyState : uint8_t {
  kUnknown = 0,
  kAbsent = 1,       // no row
  kLive = 2,         // a live value
  kDeleted = 3,      // a delete's tombstone
  kExpired = 4,      // an expired key's tombstone, or a live row past its expiry
  kUnreachable = 5,  // no answer in time, or an error (ReplicaOfKey::error says which)
};
std::string_view replica_key_state_name(ReplicaKeyState state);  // "absent", "live", ...

struct ReplicaOfKey {
  std::string node_id;
  bool home = false;  // a home replica; false: a fallback that may hold a hint for the key
  bool up = false;    // up as gossip sees it from the answering node
  ReplicaKeyState state = ReplicaKeyState::kUnknown;
  Version version;
  WallTime expiry;  // absolute; 0 ms: never expires
  uint64_t value_bytes = 0;
  bool hinted = false;  // the state is a hint the fallback holds
  std::string error;    // why it is unreachable
};

// What `replicas` reports: each replica's state of one key, read without repairing.
struct Replicas {
  std::string key;
  uint32_t partition = 0;
  std::vector<ReplicaOfKey> replicas;  // home replicas in preference order, then fallbacks
};

// The hints a node keeps for one other node (their owner), and their handing back.
struct HintTarget {
  std::string node_id;
  bool up = false;          // up as gossip sees it from the answering node
  uint64_t hints = 0;       // hints kept for it now
  uint64_t bytes = 0;       // their bytes, as hints-max-bytes counts them
  WallTime oldest;          // the oldest hint's version's wall-clock ms; 0 ms: no hints
  bool delivering = false;  // hints known and being handed over
  uint64_t rate = 0;        // bytes/s the handoff allows now
  uint64_t delivered = 0;   // handed over since the node started
  uint64_t failures = 0;    // failed hand-overs since the node started
  std::string last_error;
  // No placement table lists it any more (removed): its hints go to the current home
  // replicas of their partitions, `delivered` counting those all of them acknowledged.
  bool rehomed = false;
};

// A partition marked for repair with a node whose hints were refused.
struct RepairMarkInfo {
  uint32_t partition = 0;
  std::string node_id;
  WallTime since;      // the first refusal
  uint64_t hints = 0;  // hints refused since
  std::string reason;  // the first refusal's
};

// What `hints` reports: the hints the node keeps for others and the partitions marked for
// repair.
struct Hints {
  std::vector<HintTarget> targets;    // sorted by node id
  std::vector<RepairMarkInfo> marks;  // by partition, then node id
};

// One anti-entropy round a repair forced: the answering node compared `partition` with
// `node_id`.
struct RepairRound {
  uint32_t partition = 0;
  std::string node_id;
  std::string error;  // empty: the round completed
  bool in_sync = false;
  uint32_t leaves_differing = 0;
  uint64_t pulled = 0;   // keys the other node had newer, applied on the answering node
  uint64_t pushed = 0;   // keys the answering node had newer, written to the other
  uint64_t skipped = 0;  // one-sided keys older than the tombstone grace, left alone
  // Keys the other node had newer that the answering node's clock guard refused (versions
  // too far ahead of its clock): not applied.
  uint64_t refused = 0;
  uint64_t bytes = 0;
  std::chrono::milliseconds duration{0};
};

// What `repair` reports: its rounds, by partition then node id.
struct Repair {
  std::vector<RepairRound> rounds;
};

}  // namespace edgekv::client
