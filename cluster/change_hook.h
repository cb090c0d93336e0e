// The one place every applied change lands, whatever its source: a write this node
// coordinated, a replica write from a peer, a read repair, and later a hint handed off, a
// partition handed over or a change shipped from another datacenter, and the expiry sweep.
// The daemon's implementation keeps the read cache exact and feeds the change feed, so no
// source can leave a stale cached copy or skip the feed.
//
// Thread-safety: called on the thread that owns the protocol state.
#pragma once

#include <functional>

#include "common/change.h"

namespace edgekv::cluster {

// Why a change was applied here; the hook may treat sources differently (the feed, for
// one, is documented per source in docs/protocol.md), the cache never does.
enum class ChangeSource : uint8_t {
  kCoordinated = 1,  // a write this node coordinated, applied to its own replica
  kReplica = 2,      // a replica write another coordinator sent
  kRepair = 3,       // a read repair
  kHint = 4,         // a hint handed off by a fallback (self-healing)
  kHandover = 5,     // a partition handed over on join or removal (self-healing)
  kExpiry = 6,       // the expiry sweep
};

// The event is the hook's: it may keep the value (the read cache does) without a copy.
using ChangeHook = std::function<void(ChangeEvent event, ChangeSource source)>;

}  // namespace edgekv::cluster
