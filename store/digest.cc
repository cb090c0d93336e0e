#include "store/digest.h"

#include <xxhash.h>

#include <algorithm>
#include <string>

namespace edgekv::store {
namespace {

// Seeds of the digest's hashes; the partition hash (common/hash.h) uses seed 0.
constexpr uint64_t kLeafSeed = 0x6c656166'64696773;   // "leafdigs"
constexpr uint64_t kEntrySeed = 0x656e7472'79646967;  // "entrydig"
constexpr uint64_t kRootSeed = 0x726f6f74'64696773;   // "rootdigs"
constexpr int kLeafBits = 10;                         // kDigestLeaves = 2^10
static_assert(kDigestLeaves == (1u << kLeafBits));

void put_le64(unsigned char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

}  // namespace

uint32_t digest_leaf(std::string_view key) {
  return static_cast<uint32_t>(XXH3_64bits_withSeed(key.data(), key.size(), kLeafSeed) >>
                               (64 - kLeafBits));
}

DigestEntry digest_entry(std::string key, Version version, bool tombstone, int64_t expiry_ms) {
  DigestEntry e;
  e.key = std::move(key);
  e.version = version;
  e.deleted = tombstone && expiry_ms == 0;
  e.expiry = WallTime{e.deleted ? 0 : expiry_ms};
  return e;
}

uint64_t digest_entry_hash(std::string_view key, Version version, bool deleted, int64_t expiry_ms) {
  // The key's 128-bit hash, then the fixed-width fields, little-endian: two short hashes
  // instead of a streaming state, and a key of any length counts whole.
  const XXH128_hash_t k = XXH3_128bits_withSeed(key.data(), key.size(), kEntrySeed);
  unsigned char buf[41];
  put_le64(buf, k.low64);
  put_le64(buf + 8, k.high64);
  put_le64(buf + 16, version.hlc);
  put_le64(buf + 24, version.origin);
  put_le64(buf + 32, static_cast<uint64_t>(deleted ? 0 : expiry_ms));
  buf[40] = deleted ? 1 : 0;
  return XXH3_64bits_withSeed(buf, sizeof buf, kEntrySeed);
}

Result<std::vector<uint32_t>> digest_leaf_set(const std::vector<uint32_t>& leaves) {
  for (uint32_t leaf : leaves) {
    if (leaf >= kDigestLeaves) {
      return Status::invalid_argument("digest leaf " + std::to_string(leaf) +
                                      " is out of range (a digest has " +
                                      std::to_string(kDigestLeaves) + " leaves)");
    }
  }
  std::vector<uint32_t> out = leaves;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

uint64_t digest_root(const std::array<uint64_t, kDigestLeaves>& leaves) {
  unsigned char buf[kDigestLeaves * 8];
  for (uint32_t i = 0; i < kDigestLeaves; ++i) put_le64(buf + 8 * i, leaves[i]);
  return XXH3_64bits_withSeed(buf, sizeof buf, kRootSeed);
}

PartitionDigest DigestLeaves::to_digest(uint32_t partition) const {
  PartitionDigest d;
  d.partition = partition;
  d.leaves = leaves;
  d.entries = entries > 0 ? static_cast<uint64_t>(entries) : 0;
  d.root = digest_root(leaves);
  return d;
}

}  // namespace edgekv::store
