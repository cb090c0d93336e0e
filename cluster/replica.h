// The replica side of replication: what a node does with the WriteRequests and
// ReadRequests coordinators send it (cluster/messages.h), against its own store.
//
// A pure component like the coordinator: requests and `now` come in through on_message(),
// replies go out through take_messages() (each addressed back to the request's sender).
// Store writes are issued through store::Store and complete on the store's threads; the
// completion is handed to the injected `post` hook, which must run it later on the thread
// that owns the Replica (the daemon pushes it through its CompletionQueue, the simulator
// schedules it as an event). Reads (Store::read, Store::read_hint) are point lookups
// answered at once, as the daemon's reads are.
//
// What it guarantees:
//  - Every request gets exactly one reply, errors included: a version the clock refuses
//    (observe_version), a full in-flight bound (OVERLOADED, at once), a store error.
//  - Every version received is handed to observe_version before anything is applied; a
//    refused write applies nothing and answers the refusal.
//  - Every change applied to the store goes through the change hook, with its source:
//    kRepair for a write marked as a repair, kCoordinated for one this node coordinated
//    (sent by itself), kReplica otherwise. A write with `hint_for` naming another node is
//    kept as a hint (Store::apply_hint) and reaches no hook: a hint is not applied data
//    until it is handed off. A hint naming this node itself is an ordinary write. A write
//    marked `handoff` (a fallback handing a hint over) is applied as kHint.
//  - A hint past its bounds is refused, never dropped unseen: the hint gate (hint-window)
//    or the store (hints_max_bytes) refuses it, the write is answered with the refusal and
//    the gate marks the partition for repair.
//  - Store writes in flight are bounded in count and in bytes (ReplicaOptions); beyond
//    either bound a write is answered OVERLOADED at once.
//
// Thread-safety: every member function is called on the owning thread; the store's
// callbacks only call `post`. A completion posted after the Replica was destroyed does
// nothing; the store must outlive the Replica's writes or run their callbacks with an
// error when closed (store::Store::close does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "cluster/change_hook.h"
#include "cluster/messages.h"
#include "common/clock.h"
#include "common/status.h"
#include "store/store.h"

namespace edgekv::cluster {

// Store writes one node's replica side keeps in flight at most, by default: four of the
// store's largest commit groups (group-commit-max), so the writers always have the next
// group waiting while a burst from the coordinators is refused quickly instead of queueing
// for seconds behind the store's own bound (write-queue-max, 65536).
inline constexpr size_t kDefaultReplicaMaxInflightWrites = 4096;
// Bytes of those writes (keys, values and kReplicaWriteOverheadBytes each): sixteen of the
// largest values (max-value-bytes, 4 MiB), a quarter of what client work may hold
// (max-inflight-bytes), since every write a client makes is also a replica write on N
// nodes.
inline constexpr uint64_t kDefaultReplicaMaxInflightBytes = 64 * 1024 * 1024;
// What a write in flight costs beside its key and value: the record, the store's queue
// entry and the completion's closure, rounded up.
inline constexpr uint64_t kReplicaWriteOverheadBytes = 256;

struct ReplicaOptions {
  size_t max_inflight_writes = kDefaultReplicaMaxInflightWrites;  // replica-max-inflight-writes
  uint64_t max_inflight_bytes = kDefaultReplicaMaxInflightBytes;  // replica-max-inflight-bytes
};

class Replica {
 public:
  // Runs `work` later on the owning thread. Called from the store's threads.
  using Post = std::function<void(std::function<void()> work)>;
  // Folds a received version into the node's clock, or refuses it (a peer's clock too far
  // ahead): a non-OK Status is the reply to the write carrying it. `relayed` is true for a
  // version that was not stamped just before it was sent (a read repair's, which may be
  // old), so it tells nothing of its origin's clock; a coordinator's write, hint or not,
  // carries a version it has just made.
  using ObserveVersion = std::function<Status(const Version& version, bool relayed)>;
  // Reads a key's stored state as Store::read does; the daemon answers from its read cache
  // where it can (daemon/applied.h). Empty: the store's own read.
  using ReadStored = std::function<Result<store::Record>(std::string_view key, WallTime now)>;

  struct Counters {
    uint64_t writes = 0;            // WriteRequests received
    uint64_t writes_applied = 0;    // that changed the store (partitions or hints)
    uint64_t hints_written = 0;     // of the writes, those kept as hints (applied or not)
    uint64_t hints_refused = 0;     // hints the gate or the store's hint bound refused
    uint64_t reads = 0;             // ReadRequests received
    uint64_t refused_versions = 0;  // writes observe_version refused
    uint64_t overloaded = 0;        // writes refused at the in-flight bounds
    uint64_t store_errors = 0;      // writes and reads the store failed
    uint64_t ignored = 0;           // messages that are not requests for a replica
  };

  Replica(NodeId self, store::Store& store, ReplicaOptions options, Post post,
          ObserveVersion observe_version, ChangeHook change_hook, ReadStored read_stored = {});
  ~Replica();
  Replica(const Replica&) = delete;

  // Where hints meet their bounds (cluster/handoff.h): `admit` is asked before a hint is
  // kept and a non-OK Status refuses it (the reply to the write); `refused` is told of a
  // hint the store refused at its hint bound (hints_max_bytes). Either leaves the partition
  // marked for repair with the owner. Unset: every hint is offered to the store.
  struct HintGate {
    std::function<Status(const NodeId& owner, std::string_view key)> admit;
    std::function<void(const NodeId& owner, std::string_view key, const Status& why)> refused;
  };
  void set_hint_gate(HintGate gate);
  Replica& operator=(const Replica&) = delete;

  // A message from `from` (this node itself for requests it coordinated). Returns false,
  // and does nothing but count it, for a message that is not a WriteRequest or
  // ReadRequest: those are the coordinator's.
  bool on_message(const NodeId& from, PeerMessage message, WallTime now);

  // Replies produced since the last call, in the order they were produced.
  std::vector<PeerOutgoing> take_messages();

  size_t inflight_writes() const;
  uint64_t inflight_bytes() const;
  const Counters& counters() const;
  // The key's stored state, read as a ReadRequest from this node would read it (hints
  // aside), at once: for a read whose only replica is this node.
  Result<store::Record> read_stored(std::string_view key, WallTime now);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace edgekv::cluster
