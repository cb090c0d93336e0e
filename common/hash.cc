#include "common/hash.h"

#include <xxhash.h>

#include <bit>

#include "common/assert.h"
#include "common/version.h"

namespace edgekv {

uint64_t hash64(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

uint32_t partition_of(std::string_view key, uint32_t partitions) {
  EDGEKV_ASSERT(std::has_single_bit(partitions));
  if (partitions == 1) return 0;
  int bits = std::countr_zero(partitions);
  return static_cast<uint32_t>(hash64(key) >> (64 - bits));
}

NodeOrigin origin_of(std::string_view node_id) { return hash64(node_id); }

}  // namespace edgekv
