#include "common/random.h"

#include "common/assert.h"

namespace edgekv {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Random::Random(uint64_t seed) {
  for (auto& word : s_) word = splitmix64(seed);
}

uint64_t Random::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t Random::uniform(uint64_t bound) {
  EDGEKV_ASSERT(bound > 0);
  // Rejection sampling: without it, draws below `threshold` would make small results likelier.
  uint64_t threshold = -bound % bound;
  for (;;) {
    uint64_t x = next();
    if (x >= threshold) return x % bound;
  }
}

bool Random::chance(double p) {
  // 53 random bits as a double in [0, 1).
  return static_cast<double>(next() >> 11) * 0x1.0p-53 < p;
}

}  // namespace edgekv
