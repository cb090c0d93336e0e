// Hybrid logical clock (Kulkarni et al.): timestamps that follow wall-clock time when it
// moves forward, never go backwards, and order causally related events across nodes.
//
// Layout of a reading: the upper 48 bits are milliseconds since the Unix epoch (good until
// year 10889), the lower 16 bits a logical counter that breaks ties within a millisecond
// and absorbs a wall clock that stepped back.
//
// Bounded drag: a reading received from another node is folded in only if its physical
// part is at most `max_offset_ms` ahead of this node's wall clock (max-clock-offset-ms), so
// a peer whose clock runs far ahead cannot carry this node's clock, and with it every
// version this node stamps, into the future. A refused reading leaves the clock as it was
// and is counted; the caller decides what happens to the write that carried it
// (docs/architecture.md, "Versions and time"). Readings this node made itself (a stored
// version from before a restart) are moved past without a bound: advance_past().
//
// Thread-safety: none; owned by the network thread.
#pragma once

#include <cstdint>

#include "common/clock.h"
#include "common/status.h"

namespace edgekv {

class HybridClock {
 public:
  static constexpr int kLogicalBits = 16;
  static constexpr uint64_t kLogicalMask = (uint64_t{1} << kLogicalBits) - 1;
  // The default of max-clock-offset-ms: NTP keeps hosts within tens of milliseconds of
  // each other, so 500 ms refuses only a clock that is really wrong, and bounds to half a
  // second how far a fast peer can move this node's versions ahead (CockroachDB uses the
  // same default for the same trade-off).
  static constexpr int64_t kDefaultMaxOffsetMs = 500;

  explicit HybridClock(const Clock& clock, int64_t max_offset_ms = kDefaultMaxOffsetMs)
      : clock_(clock), max_offset_ms_(max_offset_ms) {}

  static constexpr uint64_t pack(int64_t physical_ms, uint64_t logical) {
    return (static_cast<uint64_t>(physical_ms) << kLogicalBits) | (logical & kLogicalMask);
  }
  static constexpr int64_t physical_ms(uint64_t hlc) {
    return static_cast<int64_t>(hlc >> kLogicalBits);
  }
  static constexpr uint64_t logical(uint64_t hlc) { return hlc & kLogicalMask; }

  // A reading for a local event (a write this node coordinates): greater than every
  // reading returned, observed or advanced past before.
  uint64_t now();
  // Folds in a reading received from another node, so that later local readings are
  // greater than it. A reading at or below the clock's last one moves nothing and is
  // always accepted (after the wall clock stepped back, the clock may itself be ahead of
  // the wall). Otherwise, FAILED_PRECONDITION when its physical part is more than
  // max_offset_ms() ahead of the wall clock: the message names the offset and the bound,
  // the clock is unchanged and rejected() counts it.
  Status observe(uint64_t remote);
  // Moves the clock past a reading this node made itself, however far ahead.
  void advance_past(uint64_t own);
  // How far `reading`'s physical part is ahead of the wall clock now, in ms (negative:
  // behind).
  int64_t offset_ms(uint64_t reading) const;

  uint64_t last() const { return last_; }
  int64_t max_offset_ms() const { return max_offset_ms_; }
  uint64_t rejected() const { return rejected_; }

 private:
  int64_t wall_ms() const;

  const Clock& clock_;
  const int64_t max_offset_ms_;
  uint64_t last_ = 0;
  uint64_t rejected_ = 0;
};

}  // namespace edgekv
