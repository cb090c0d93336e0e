#include "common/hlc.h"

#include <algorithm>

namespace edgekv {

uint64_t HybridClock::now() {
  uint64_t wall = pack(std::max<int64_t>(clock_.wall_now().ms, 0), 0);
  // When the wall clock is behind (or equal to) the last reading, count logically. A full
  // counter carries into the millisecond field: still strictly increasing.
  last_ = std::max(wall, last_ + 1);
  return last_;
}

void HybridClock::observe(uint64_t remote) { last_ = std::max(last_, remote); }

}  // namespace edgekv
