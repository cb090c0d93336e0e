// Versions: what last-write-wins compares.
//
// A version is a 64-bit hybrid logical clock reading (48 bits of wall-clock milliseconds,
// 16 bits of logical counter) and the id of the node that made the write. Versions order
// by (hlc, origin); the greater one wins. Version{} (all zero) is older than any write.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgekv {

// Numeric node identity carried in versions: a stable 64-bit hash of the node id string.
using NodeOrigin = uint64_t;
NodeOrigin origin_of(std::string_view node_id);

struct Version {
  uint64_t hlc = 0;
  NodeOrigin origin = 0;

  constexpr auto operator<=>(const Version&) const = default;
  bool is_zero() const { return hlc == 0 && origin == 0; }
  // "1700000000000.3@9f2c..." for logs and kvcli.
  std::string to_string() const;
};

}  // namespace edgekv
