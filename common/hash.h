// Stable hashing: the same bytes hash to the same value on every node, build and release,
// because partition placement and node origins depend on it. XXH3-64 (xxhash >= 0.8 keeps
// its output stable) with seed 0.
#pragma once

#include <cstdint>
#include <string_view>

namespace edgekv {

uint64_t hash64(std::string_view bytes);

// The partition of a key among `partitions` (a power of two): the hash's top bits, so that
// doubling the partition count would split each partition in two.
uint32_t partition_of(std::string_view key, uint32_t partitions);

}  // namespace edgekv
