// Checks the versions peers send before this node's hybrid logical clock folds them in, and
// keeps what it learns about each origin's clock.
//
// Every version received from a peer goes through observe(). A version whose physical part
// is more than max-clock-offset-ms ahead of this node's wall clock is refused
// (FAILED_PRECONDITION naming the version's origin, the offset and the bound) and the
// clock is left as it was (common/hlc.h): the caller refuses the write that carried it, so
// its coordinator's client gets that error instead of the write being applied under a
// version from the future or silently dropped (docs/architecture.md, "Versions and
// time"). Refusals are counted in total (stats: clock_offset_rejected) and per origin;
// for versions stamped just before they were sent, the offset they show is remembered per
// origin (`kvcli members` shows it). Origins are the xxh3 of node ids (common/version.h):
// the daemon maps members to them with origin_of().
//
// Memory: at most max_origins origins are remembered (a peer can put any origin in a
// version); versions from further origins are still checked and counted in total only.
//
// Thread-safety: none; called on the thread that owns the clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include "common/hlc.h"
#include "common/status.h"
#include "common/version.h"

namespace edgekv::cluster {

// What this node last saw of one origin's clock.
struct OriginClock {
  // The physical part of the last version stamped just before it was sent, minus this
  // node's wall clock when it arrived: the origin's clock offset less the message's delay
  // (negative: behind). 0 until such a version was seen.
  int64_t offset_ms = 0;
  // A freshly stamped version was seen, so offset_ms holds: an origin known only from
  // relayed versions has no offset to show, and a true 0 is not "never seen".
  bool offset_known = false;
  uint64_t observed = 0;  // versions of this origin checked
  uint64_t rejected = 0;  // of those, refused for being beyond the bound
};

struct ClockGuardCounters {
  uint64_t observed = 0;               // versions checked
  uint64_t clock_offset_rejected = 0;  // versions refused for being beyond the bound
  uint64_t untracked = 0;              // versions of origins beyond max_origins
};

class ClockGuard {
 public:
  // gossip-max-members' default: one entry for every member the view can hold.
  static constexpr size_t kDefaultMaxOrigins = 1024;

  // Whether a version was stamped just before it was sent (a replica write, a coordinator's
  // reply), so its physical part tells the origin's clock, or is an older version relayed
  // (a read repair, a hint, a hand-over), which is checked alike but tells nothing of it.
  enum class Stamp : uint8_t { kFresh, kRelayed };

  explicit ClockGuard(HybridClock& hlc, size_t max_origins = kDefaultMaxOrigins)
      : hlc_(hlc), max_origins_(max_origins) {}

  // Checks `version` and folds it into the clock; the error when it is beyond the bound.
  Status observe(const Version& version, Stamp stamp);
  // Drops what is remembered of `origin` (a member removed from the cluster).
  void forget(NodeOrigin origin) { origins_.erase(origin); }

  const std::map<NodeOrigin, OriginClock>& origins() const { return origins_; }
  const ClockGuardCounters& counters() const { return counters_; }
  const HybridClock& clock() const { return hlc_; }

 private:
  HybridClock& hlc_;
  const size_t max_origins_;
  std::map<NodeOrigin, OriginClock> origins_;
  ClockGuardCounters counters_;
};

}  // namespace edgekv::cluster
