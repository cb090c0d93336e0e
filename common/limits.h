// Default limits on keys and values, shared by the daemon, the client and the tests.
// The daemon's options max-key-bytes and max-value-bytes override them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgekv {

inline constexpr size_t kDefaultMaxKeyBytes = 1024;
inline constexpr size_t kDefaultMaxValueBytes = 4 * 1024 * 1024;
// Largest TTL accepted: 100 years. Bounds expiry arithmetic far from int64 overflow and
// keeps expiry inside the 48-bit millisecond field of a hybrid clock reading.
inline constexpr int64_t kMaxTtlMs = int64_t{100} * 365 * 24 * 3600 * 1000;

}  // namespace edgekv
