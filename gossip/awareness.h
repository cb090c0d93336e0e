// Lifeguard's local health: a score from 0 (healthy) to a ceiling that rises when this node
// shows signs of being slow itself (probes that failed although helpers did not report the
// target unreachable, having to refute a suspicion of itself) and falls with each
// successful probe. Probe intervals and timeouts are multiplied by score + 1, so a node
// that cannot keep up probes less often and waits longer, instead of accusing healthy
// members.
//
// Thread-safety: none; a plain value owned by the Swim machine.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gossip/swim.h"

namespace edgekv::gossip {

class Awareness {
 public:
  explicit Awareness(uint32_t max) : max_(max) {}

  // Moves the score by `delta`, clamped to 0..max.
  void apply(int64_t delta) {
    int64_t next = static_cast<int64_t>(score_) + delta;
    score_ = static_cast<uint32_t>(std::clamp<int64_t>(next, 0, max_));
  }
  uint32_t score() const { return score_; }
  uint32_t multiplier() const { return score_ + 1; }
  Millis scale(Millis d) const { return d * multiplier(); }

 private:
  uint32_t max_;
  uint32_t score_ = 0;
};

}  // namespace edgekv::gossip
