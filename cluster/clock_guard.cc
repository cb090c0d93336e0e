#include "cluster/clock_guard.h"

#include <string>

namespace edgekv::cluster {

Status ClockGuard::observe(const Version& version, Stamp stamp) {
  ++counters_.observed;
  OriginClock* origin = nullptr;
  if (auto it = origins_.find(version.origin); it != origins_.end()) {
    origin = &it->second;
  } else if (origins_.size() < max_origins_) {
    origin = &origins_[version.origin];
  } else {
    ++counters_.untracked;
  }
  if (origin != nullptr) {
    ++origin->observed;
    if (stamp == Stamp::kFresh) {
      origin->offset_ms = hlc_.offset_ms(version.hlc);
      origin->offset_known = true;
    }
  }
  Status folded = hlc_.observe(version.hlc);
  if (folded.ok()) return folded;
  ++counters_.clock_offset_rejected;
  if (origin != nullptr) ++origin->rejected;
  return Status::failed_precondition("version " + version.to_string() + ": the writer's " +
                                     folded.message());
}

}  // namespace edgekv::cluster
