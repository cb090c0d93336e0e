// A small seeded PRNG (xoshiro256**, seeded through splitmix64). Protocol code takes one by
// reference so that the simulator replays a seed exactly; the standard library's
// distributions differ between implementations, so we draw ranges ourselves.
//
// Thread-safety: none; one instance per owner.
#pragma once

#include <cstdint>

namespace edgekv {

class Random {
 public:
  explicit Random(uint64_t seed);

  uint64_t next();
  // Uniform in [0, bound); bound > 0. Modulo with rejection, so every result is equally likely.
  uint64_t uniform(uint64_t bound);
  // True with probability p in [0, 1].
  bool chance(double p);

 private:
  uint64_t s_[4];
};

}  // namespace edgekv
