#include "gossip/suspicion.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/assert.h"

namespace edgekv::gossip {

Millis suspicion_timeout(uint32_t confirmations, uint32_t expected, Millis min, Millis max) {
  EDGEKV_ASSERT(min <= max);
  if (expected == 0 || confirmations >= expected) return min;
  double fraction = std::log(static_cast<double>(confirmations) + 1.0) /
                    std::log(static_cast<double>(expected) + 1.0);
  double span = static_cast<double>((max - min).count());
  auto timeout = max - Millis(static_cast<int64_t>(std::floor(fraction * span)));
  return std::max(timeout, min);
}

Millis suspicion_min_timeout(const Options& options, size_t members) {
  double scale = std::max(1.0, std::log10(static_cast<double>(std::max<size_t>(members, 1))));
  double ms = static_cast<double>(options.suspicion_mult) * scale *
              static_cast<double>(options.probe_timeout.count());
  return Millis(static_cast<int64_t>(std::ceil(ms)));
}

Suspicion::Suspicion(std::string accuser, uint32_t expected, Millis min, Millis max, MonoTime start)
    : accuser_(std::move(accuser)), expected_(expected), min_(min), max_(max), start_(start) {
  EDGEKV_ASSERT(min_ <= max_);
}

bool Suspicion::confirm(std::string_view from) {
  if (confirmed_.size() >= expected_) return false;
  if (from == accuser_) return false;
  if (std::find(confirmed_.begin(), confirmed_.end(), from) != confirmed_.end()) return false;
  confirmed_.emplace_back(from);
  return true;
}

MonoTime Suspicion::deadline(uint32_t multiplier) const {
  return start_ + suspicion_timeout(confirmations(), expected_, min_, max_) * multiplier;
}

}  // namespace edgekv::gossip
