// Placement: which nodes hold which partitions. The key space is split into Q partitions (a
// power of two; a key's partition is the top bits of its hash, common/hash.h), and each
// partition has N home replicas, N distinct nodes listed in preference order. The table of
// Q * N slots changes only by deterministic transitions (a join, a removal), never because a
// node is down: down home replicas are covered by fallbacks (ring_walk()).
//
// Nodes agree on the placement by gossiping (epoch, digest) and adopting the table with the
// highest pair, then re-applying any join they still see missing. Every transition is a pure
// function of the table and the change, so two nodes applying the same change to the same
// table get the same table, byte for byte. docs/replication.md, "Placement", gives the
// transitions and the bounds they keep:
//   - every node holds floor(S / n) or ceil(S / n) of the S filled slots (S = Q * min(n, N));
//   - a join moves only the slots the new node takes, a removal only the removed node's
//     slots (plus rare repairs, each one slot), so movement stays near the minimum;
//   - the replicas of a partition are distinct nodes.
//
// Thread-safety: a plain value; const methods may be called from several threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/messages.h"
#include "cluster/view.h"
#include "common/status.h"

namespace edgekv::cluster {

// Q for clusters of 3 to about 100 nodes per datacenter: at n = 100 and N = 3 each node's
// fair share is 15.36 slots, so integer slots stay within 1.1x of it (16 / 15.36 = 1.04);
// ceil(x) / x <= 1.1 needs x >= 10. Each partition costs a table pair, a change log with its
// cursor and a turn of the expiry sweep on every node holding it (docs/replication.md).
inline constexpr uint32_t kDefaultPartitions = 512;
// The store's own bound on Q (StoreOptions::partitions).
inline constexpr uint32_t kMaxPartitions = 65536;
inline constexpr uint32_t kDefaultReplicationFactor = 3;
// Replicas per partition, at most: beyond 7 copies a quorum write costs more than any
// durability it adds, and the bound keeps a decoded table's size in check.
inline constexpr uint32_t kMaxReplicationFactor = 7;
// Members of one placement, at most: gossip-max-members' default is 1024 (ten datacenters of
// 100 nodes with room to spare); four times that leaves headroom without letting a peer's
// table claim unbounded memory.
inline constexpr size_t kMaxPlacementMembers = 4096;
// An encoded placement, at most: 65536 * 7 slots of at most 2 bytes each (member indexes
// below 16384), 4096 names of up to 64 bytes, and framing, rounded up.
inline constexpr size_t kMaxPlacementBytes = 2 * 1024 * 1024;

class Placement {
 public:
  // The slot marker for "no node": a partition has N slots but only min(n, N) nodes.
  static constexpr uint32_t kEmpty = UINT32_MAX;

  // An empty placement of Q partitions and N replicas each, then `members` joined (sorted,
  // duplicates ignored). INVALID_ARGUMENT naming the problem: Q not a power of two in
  // 1..kMaxPartitions, N outside 1..kMaxReplicationFactor, a member id gossip would refuse,
  // more than kMaxPlacementMembers members. The epoch starts at 0 and counts transitions.
  static Result<Placement> create(uint32_t partitions, uint32_t replication_factor,
                                  std::span<const NodeId> members);

  // Adds the nodes that are not members yet, one at a time in id order; members already
  // present are skipped, so re-applying a join is harmless. One epoch step when anything
  // changed. On error nothing changes.
  Status join(std::span<const NodeId> ids);
  // Removes the nodes that are members, one at a time in id order; unknown ids are skipped.
  // One epoch step when anything changed.
  Status remove(std::span<const NodeId> ids);

  uint32_t partitions() const { return partitions_; }
  uint32_t replication_factor() const { return replication_factor_; }
  uint64_t epoch() const { return epoch_; }
  // XXH3-64 over the canonical bytes of (Q, N, epoch, members, slots), independent of the
  // protobuf library; equal tables at equal epochs have equal digests on every node.
  uint64_t digest() const { return digest_; }
  // Sorted, distinct.
  const std::vector<NodeId>& members() const { return members_; }
  bool is_member(std::string_view id) const;

  // The partition's home replicas in preference order: min(n, N) distinct nodes.
  std::vector<NodeId> home(uint32_t partition) const;
  bool is_home(uint32_t partition, std::string_view id) const;
  // How many slots the node holds (0 for a non-member).
  size_t slots_of(std::string_view id) const;
  // The partitions the node holds, ascending.
  std::vector<uint32_t> partitions_of(std::string_view id) const;

  // The fallback order of a partition: every member that is not one of its home replicas,
  // once each, in the order they appear in the home lists of partitions partition + 1,
  // partition + 2, ... (wrapping). Where sloppy quorum sends writes of a down home replica.
  std::vector<NodeId> ring_walk(uint32_t partition) const;
  // The same order, stopping as soon as `visit` returns false.
  void walk_ring(uint32_t partition, const std::function<bool(const NodeId&)>& visit) const;

  // The protobuf encoding (proto/placement.proto), at most kMaxPlacementBytes.
  std::string encode() const;
  // Parses and validates bytes from a peer or a file: every bound above, member ids valid
  // and strictly ascending, every partition holding min(n, N) distinct members first and
  // empty markers after, the digest matching. INVALID_ARGUMENT naming the problem.
  static Result<Placement> decode(std::string_view bytes);

  // True when (epoch, digest) of `a` is above that of `b`: the table nodes adopt.
  static bool newer(const Placement& a, const Placement& b);

  // The same members and slots at another epoch (digest recomputed): how a cancelled
  // hand-over's table is restored above the epochs it cancels (PlacementKeeper::abort).
  Placement restamped(uint64_t epoch) const;
  // Same Q, N, members and slots, whatever the epochs.
  bool same_assignments(const Placement& other) const;

  bool operator==(const Placement& other) const;

 private:
  Placement(uint32_t partitions, uint32_t replication_factor);

  void join_one(const NodeId& id);
  void remove_one(const NodeId& id);
  uint32_t index_of(std::string_view id) const;  // kEmpty for a non-member
  uint32_t* row(uint32_t partition) { return &slots_[size_t{partition} * replication_factor_]; }
  const uint32_t* row(uint32_t partition) const {
    return &slots_[size_t{partition} * replication_factor_];
  }
  bool row_has(uint32_t partition, uint32_t member) const;
  std::vector<size_t> counts() const;
  // [member * N + i]: how many partitions list the member at place i.
  std::vector<size_t> place_counts() const;
  uint64_t compute_digest() const;

  uint32_t partitions_ = 0;
  uint32_t replication_factor_ = 0;
  uint64_t epoch_ = 0;
  uint64_t digest_ = 0;
  std::vector<NodeId> members_;
  // partitions_ * replication_factor_ member indexes, partition-major; in each partition the
  // filled slots come first, then kEmpty.
  std::vector<uint32_t> slots_;
};

// The partitions `id` is a home replica of in `to` but not in `from`: what it takes over in
// a hand-over from `from` to `to` (same Q). Ascending.
std::vector<uint32_t> taken_over(const Placement& from, const Placement& to, std::string_view id);
// The nodes that take over at least one partition from `from` to `to`, sorted.
std::vector<NodeId> takers(const Placement& from, const Placement& to);

// cluster::ReplicaView over a placement and gossip's liveness (the predicate), for the
// coordinator.
class PlacementView final : public ReplicaView {
 public:
  using IsUp = std::function<bool(const NodeId&)>;

  PlacementView(NodeId self, Placement placement, IsUp is_up);

  // A newer table (adopted from a peer, or after a transition).
  void set_placement(Placement placement) { placement_ = std::move(placement); }
  // The joining nodes per partition while a hand-over is pending (PlacementKeeper::
  // joining()); empty: none.
  void set_joining(std::vector<std::vector<NodeId>> joining) { joining_ = std::move(joining); }
  const Placement& placement() const { return placement_; }

  const NodeId& self() const override { return self_; }
  uint32_t replication_factor() const override { return placement_.replication_factor(); }
  uint32_t partition_of(std::string_view key) const override;
  std::vector<NodeId> home(uint32_t partition) const override;
  bool is_up(const NodeId& node) const override;
  std::vector<NodeId> fallbacks(uint32_t partition, size_t count) const override;
  std::vector<NodeId> joining(uint32_t partition) const override {
    return partition < joining_.size() ? joining_[partition] : std::vector<NodeId>{};
  }

 private:
  NodeId self_;
  Placement placement_;
  std::vector<std::vector<NodeId>> joining_;
  IsUp is_up_;
};

}  // namespace edgekv::cluster
