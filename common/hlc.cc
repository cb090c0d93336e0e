#include "common/hlc.h"

#include <algorithm>
#include <string>

namespace edgekv {

int64_t HybridClock::wall_ms() const { return std::max<int64_t>(clock_.wall_now().ms, 0); }

uint64_t HybridClock::now() {
  uint64_t wall = pack(wall_ms(), 0);
  // When the wall clock is behind (or equal to) the last reading, count logically. A full
  // counter carries into the millisecond field: still strictly increasing.
  last_ = std::max(wall, last_ + 1);
  return last_;
}

int64_t HybridClock::offset_ms(uint64_t reading) const { return physical_ms(reading) - wall_ms(); }

Status HybridClock::observe(uint64_t remote) {
  if (remote <= last_) return Status::ok_status();
  const int64_t offset = offset_ms(remote);
  if (offset > max_offset_ms_) {
    ++rejected_;
    return Status::failed_precondition(
        "clock " + std::to_string(offset) + " ms ahead of this node's, over the bound of " +
        std::to_string(max_offset_ms_) + " ms (max-clock-offset-ms)");
  }
  last_ = remote;
  return Status::ok_status();
}

void HybridClock::advance_past(uint64_t own) { last_ = std::max(last_, own); }

}  // namespace edgekv
