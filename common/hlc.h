// Hybrid logical clock (Kulkarni et al.): timestamps that follow wall-clock time when it
// moves forward, never go backwards, and order causally related events across nodes.
//
// Layout of a reading: the upper 48 bits are milliseconds since the Unix epoch (good until
// year 10889), the lower 16 bits a logical counter that breaks ties within a millisecond
// and absorbs a wall clock that stepped back.
//
// Thread-safety: none; owned by the network thread.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace edgekv {

class HybridClock {
 public:
  static constexpr int kLogicalBits = 16;
  static constexpr uint64_t kLogicalMask = (uint64_t{1} << kLogicalBits) - 1;

  explicit HybridClock(const Clock& clock) : clock_(clock) {}

  static constexpr uint64_t pack(int64_t physical_ms, uint64_t logical) {
    return (static_cast<uint64_t>(physical_ms) << kLogicalBits) | (logical & kLogicalMask);
  }
  static constexpr int64_t physical_ms(uint64_t hlc) {
    return static_cast<int64_t>(hlc >> kLogicalBits);
  }
  static constexpr uint64_t logical(uint64_t hlc) { return hlc & kLogicalMask; }

  // A reading for a local event (a write this node coordinates): greater than every
  // reading returned or observed before.
  uint64_t now();
  // Folds in a reading received from another node, so that later local readings are
  // greater than it.
  void observe(uint64_t remote);
  uint64_t last() const { return last_; }

 private:
  const Clock& clock_;
  uint64_t last_ = 0;
};

}  // namespace edgekv
