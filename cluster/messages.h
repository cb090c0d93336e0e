// What replication's protocol machines exchange: the consistency levels a request asks
// for, read-modify-write operations as data, and the messages between a coordinator and the
// replicas (peer messages). Plain values: the coordinator (cluster/coordinator.h) and the
// replica side (cluster/replica.h) produce and consume them; cluster/peer_codec.h turns them
// into the protobuf bodies of the peer channel (proto/peer.proto) and back, validating
// whatever a peer sent.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/version.h"
#include "store/digest.h"
#include "store/store.h"

namespace edgekv::cluster {

// A node's id as gossip knows it (gossip::NodeInfo::id).
using NodeId = std::string;

// How many replicas must answer before the coordinator does. Values are wire-stable (they
// equal proto Consistency).
enum class Consistency : uint8_t {
  kOne = 1,          // one replica
  kQuorum = 2,       // floor(N/2) + 1 replicas
  kAll = 3,          // all N replicas
  kLocalQuorum = 4,  // a quorum in the coordinator's datacenter; equal to kQuorum until
                     // datacenters replicate to each other
};

struct RequestOptions {
  Consistency consistency = Consistency::kQuorum;
  // Counts home replicas only: a write that cannot reach enough of them answers
  // UNAVAILABLE instead of leaving hints with fallbacks (sloppy quorum, the default), and
  // so does a read instead of asking fallbacks for the hints they hold.
  bool strict = false;
};

// A read-modify-write as data, so that it can be forwarded to the node that runs every
// read-modify-write of its partition (which makes them atomic per key across the cluster
// while membership is stable). cluster/mutation.h decides what one does given the key's
// current state.
struct Mutation {
  enum class Kind : uint8_t {
    kSet = 1,      // SET with NX / XX / GET / KEEPTTL
    kDelete = 2,   // DEL that reports whether the key existed
    kExpire = 3,   // EXPIRE / PEXPIRE with NX / XX / GT / LT; ttl <= 0 deletes
    kPersist = 4,  // PERSIST
  };
  Kind kind = Kind::kSet;
  std::string value;  // kSet
  // kSet: the absolute expiry to write (0: none; already past: the key ends up expired).
  // kExpire: the new absolute expiry; at or before the time of the write, the key is deleted.
  WallTime expiry;
  bool if_absent = false;      // kSet NX
  bool if_present = false;     // kSet XX
  bool keep_ttl = false;       // kSet KEEPTTL
  bool return_old = false;     // kSet GET: the outcome carries the old value
  bool if_no_expiry = false;   // kExpire NX
  bool if_has_expiry = false;  // kExpire XX
  bool if_greater = false;     // kExpire GT
  bool if_less = false;        // kExpire LT
};

struct MutationOutcome {
  bool applied = false;                  // the mutation wrote (its condition held)
  bool existed = false;                  // the key was live before it
  std::optional<std::string> old_value;  // kSet with return_old, when the key was live
  Version version;  // of the write when applied, else of the live record (zero: none)
  WallTime expiry;  // the key's expiry after the mutation
};

// ------------------------------------------------------------------ peer messages
// `req` is chosen by the sender of a request and echoed in its reply; ids are per sender.

// Store `record` as a replica of its key. With `hint_for` set, the receiver is a fallback
// standing in for that home replica, which was down: it keeps the record as a durable hint
// naming the owner (store::Store::apply_hint) instead of in its partitions.
//
// The record is shared, not copied: a coordinator keeps a write's record until the write is
// answered, and every message it sends for it (one per replica) refers to that one, so a value
// is held once on a coordinator however many replicas it goes to, and what the coordinator
// counts for the write is all its messages hold. A record is never changed once sent.
struct WriteRequest {
  uint64_t req = 0;
  std::shared_ptr<store::Record> record;  // never null
  NodeId hint_for;
  // Sent by a read repair: the replica reports the change as ChangeSource::kRepair.
  bool repair = false;
  // A hint handed off by the fallback that kept it (cluster/handoff.h) to the home replica
  // it was kept for: the replica reports the change as ChangeSource::kHint. Like a repair's,
  // its version may be old.
  bool handoff = false;
};

// The record of `request` for a replica's store, which keeps a record of its own: moved out
// when the request holds the only reference (a message decoded from a peer), copied when
// another holder remains (this node's coordinator, until the write is answered).
inline store::Record take_record(WriteRequest& request) {
  if (request.record.use_count() == 1) return std::move(*request.record);
  return *request.record;
}

struct WriteReply {
  uint64_t req = 0;
  Status status;  // OK: committed (applied or already superseded)
  bool applied = false;
  Version current;  // the replica's version of the key after the write
};

// The replica's stored state of `key`: tombstones (deletes and expired keys) included, so
// the coordinator can tell "absent" from "deleted at version v" and repair by LWW.
struct ReadRequest {
  uint64_t req = 0;
  std::string key;
  bool include_hints = false;  // a fallback answers from the hints it holds for the key too
};

struct ReadReply {
  uint64_t req = 0;
  Status status;  // OK with or without a record; an error when the replica could not read
  std::optional<store::Record> record;  // nullopt: no row (never written, or purged)
};

// A read-modify-write forwarded to the node that runs those of the key's partition.
struct MutateRequest {
  uint64_t req = 0;
  std::string key;
  Mutation mutation;
  RequestOptions options;
};

struct MutateReply {
  uint64_t req = 0;
  Status status;
  MutationOutcome outcome;
};

// Placement agreement (cluster/placement_keeper.h): a node tells a peer which table it
// holds; whichever of the two holds the older one fetches the newer.
// While a hand-over is in progress the node also names its pending table and a hash of what
// it knows of the hand-over (who has seen it, who streamed what), so that those differ too.
struct PlacementDigest {
  uint64_t epoch = 0;
  uint64_t digest = 0;
  uint64_t pending_epoch = 0;  // 0: no hand-over in progress
  uint64_t pending_digest = 0;
  uint64_t hand_over_state = 0;  // PlacementKeeper's hash of `seen` and `streamed`
};

struct PlacementFetch {};

struct PlacementTable {
  std::string encoded;       // Placement::encode(); the receiver decodes and validates it
  std::string pending = {};  // the pending table, encoded the same way; empty: none
  // Members that adopted the pending table (and finished what they began before it).
  std::vector<NodeId> seen = {};
  // Per node taking over slots: how many of the partitions it takes over it streamed.
  std::vector<std::pair<NodeId, uint32_t>> streamed = {};
};

// Anti-entropy (cluster/anti_entropy.h): an initiator sends its digest of a partition; the
// responder answers whether it is in sync, or its kDigestLeaves leaves; the initiator asks
// for the entries of the leaves that differ, a page at a time.
struct AeDigest {
  uint64_t req = 0;
  uint32_t partition = 0;
  uint64_t root = 0;
  uint64_t entries = 0;
  uint64_t completed = 0;  // req of the pair's last completed round (0: none)
  uint64_t horizon = 0;    // the sender's purge horizon hlc (0: none)
};
struct AeDigestReply {
  uint64_t req = 0;
  Status status;
  bool in_sync = false;
  std::vector<uint64_t> leaves;  // kDigestLeaves of them unless in_sync or an error
  uint64_t horizon = 0;          // the responder's purge horizon hlc (0: none)
};
struct AeEntriesRequest {
  uint64_t req = 0;
  uint32_t partition = 0;
  std::vector<uint32_t> leaves;  // ascending, at most page_leaves
};
struct AeEntriesReply {
  uint64_t req = 0;
  Status status;
  size_t covered = 0;  // the first `covered` asked leaves are answered whole
  std::vector<store::DigestEntry> entries;
};

// A repair ask (cluster/handoff.h): a fallback holding a repair mark for (the receiver,
// `partition`) asks the receiver to run anti-entropy rounds of the partition with every other
// home replica that is up, and to answer once they finished, within `wait_ms`.
struct RepairAsk {
  uint64_t req = 0;
  uint32_t partition = 0;
  uint32_t wait_ms = 0;  // 1..kMaxRepairAskWaitMs
};
// OK: every round completed (at least one ran, or the receiver is the partition's only home
// replica); FAILED_PRECONDITION: the receiver is not a home replica of the partition;
// OVERLOADED: too many repairs running there, ask later; else the first round's error.
struct RepairAskReply {
  uint64_t req = 0;
  Status status;
};
// How long an asker may let the owner take over a repair ask: ten minutes.
inline constexpr uint32_t kMaxRepairAskWaitMs = 10 * 60 * 1000;

// A hint floor report (cluster/hint_floors.h): the sender's hybrid clock when it sent it,
// and the hlc of the oldest hint it holds for the receiver (0: none). The receiver's
// tombstone purges stay below both (less a margin for as_of).
struct HintFloorReport {
  uint64_t as_of = 0;   // an hlc; never 0
  uint64_t oldest = 0;  // an hlc; 0: no hint held
};

using PeerMessage =
    std::variant<WriteRequest, WriteReply, ReadRequest, ReadReply, MutateRequest, MutateReply,
                 PlacementDigest, PlacementFetch, PlacementTable, AeDigest, AeDigestReply,
                 AeEntriesRequest, AeEntriesReply, RepairAsk, RepairAskReply, HintFloorReport>;

// A message to send. `to` may be the sending node itself: the driver then hands it to the
// node's own replica side without a network hop.
struct PeerOutgoing {
  NodeId to;
  PeerMessage message;
};

}  // namespace edgekv::cluster
