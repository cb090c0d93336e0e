// What the coordinator needs to know about placement and liveness, as an interface: the
// daemon implements it over the placement table (cluster/placement.h) and gossip's
// membership; the simulator and unit tests over their own state.
//
// Thread-safety: called on the thread that owns the coordinator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "cluster/messages.h"

namespace edgekv::cluster {

class ReplicaView {
 public:
  virtual ~ReplicaView() = default;
  virtual const NodeId& self() const = 0;
  // N in the placement (replication-factor).
  virtual uint32_t replication_factor() const = 0;
  virtual uint32_t partition_of(std::string_view key) const = 0;
  // The partition's home replicas in preference order: N distinct nodes (fewer only while
  // the placement has fewer members), down ones included. Changes only when a node joins
  // or is removed, never because one is down.
  virtual std::vector<NodeId> home(uint32_t partition) const = 0;
  // Whether gossip considers the node up (alive, or suspect: a suspect still answers, or
  // times out like any slow node).
  virtual bool is_up(const NodeId& node) const = 0;
  // Up to `count` up nodes that are not home replicas of the partition, in ring order
  // from it: where sloppy quorum sends the writes of home replicas that are down.
  virtual std::vector<NodeId> fallbacks(uint32_t partition, size_t count) const = 0;
  // While a hand-over is in progress: the nodes that are home replicas of the partition in
  // the pending table but not in the current one, down ones included; never among
  // home(partition). Empty when no table is pending (the default). The coordinator sends
  // every read and write of the partition to them as well as to the home replicas and
  // requires k more replies, k the number of joining nodes, so that its quorums meet those
  // of both tables (cluster/coordinator.h).
  virtual std::vector<NodeId> joining(uint32_t partition) const {
    static_cast<void>(partition);
    return {};
  }
};

}  // namespace edgekv::cluster
