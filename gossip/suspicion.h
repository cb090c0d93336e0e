// Lifeguard's dynamic suspicion: how long a suspected member has to refute before it is
// declared dead. The timeout starts at `max` and shrinks toward `min`, logarithmically in
// the number of independent confirmations (suspect claims about the member from other
// members), reaching `min` at `expected` confirmations:
//
//   timeout(c) = max - (max - min) * log(c + 1) / log(expected + 1),   never below min
//
// A member suspected by one node alone, perhaps a slow one, gets the long timeout; one that
// several members failed to reach is declared dead quickly.
//
// Thread-safety: none; plain values owned by the Swim machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "gossip/swim.h"

namespace edgekv::gossip {

// timeout(c) above; `expected` 0 means min at once. REQUIRES: min <= max.
Millis suspicion_timeout(uint32_t confirmations, uint32_t expected, Millis min, Millis max);

// The minimum timeout for a cluster of `members` live members (self included):
// suspicion_mult * max(1, log10(members)) * probe_timeout.
Millis suspicion_min_timeout(const Options& options, size_t members);

class Suspicion {
 public:
  // `accuser` raised the suspicion at `start`; its claim does not count as a confirmation.
  Suspicion(std::string accuser, uint32_t expected, Millis min, Millis max, MonoTime start);

  // Records a suspect claim from `from`. True when it is a new independent confirmation
  // (not the accuser, not seen before, fewer than `expected` so far): the caller then passes
  // the claim on so other members count it too.
  bool confirm(std::string_view from);
  uint32_t confirmations() const { return static_cast<uint32_t>(confirmed_.size()); }
  MonoTime start() const { return start_; }
  // start + timeout(confirmations) * multiplier (the local health multiplier: a node that
  // is itself losing messages may be missing the refutation, so it waits longer).
  MonoTime deadline(uint32_t multiplier = 1) const;

 private:
  std::string accuser_;
  uint32_t expected_;
  Millis min_;
  Millis max_;
  MonoTime start_;
  std::vector<std::string> confirmed_;  // at most expected_ entries
};

}  // namespace edgekv::gossip
