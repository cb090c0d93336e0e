// Anti-entropy digests of a partition: what two replicas compare to find the keys on which
// they differ, and the one place the hashing behind them is defined.
//
// A partition's digest is kDigestLeaves 64-bit leaves. A key belongs to the leaf chosen by
// a hash of the key (digest_leaf: XXH3-64 with a seed of its own, so that the keys of one
// partition, which share the top bits of the partition hash, spread over every leaf). A
// leaf is the XOR of the entry hashes of the key states in it, so that a change of one key
// updates its leaf as `leaf ^= h(old) ^ h(new)`, and two stores holding the same states
// have the same leaves whatever order the writes came in.
//
// An entry is (key, version, deleted, expiry) of a stored key state, tombstones included:
// `deleted` is true only for a delete tombstone, whose expiry is 0. A live row that has
// expired but was not swept yet and the expiry tombstone the sweep leaves of it
// (store.h, Record) are the same entry, so two replicas that differ only in when their
// sweeper ran have equal digests. A purged tombstone has no entry.
//
// Stability: replicas on different builds compare these values, so the hashes are fixed
// by this file: XXH3 (whose output xxhash keeps stable from 0.8), fixed seeds and a fixed
// little-endian encoding of the fields. Changing any of them changes every digest.
//
// Owns: nothing but values. Thread-safety: pure functions; a DigestLeaves is a value.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/version.h"

namespace edgekv::store {

inline constexpr uint32_t kDigestLeaves = 1024;

// The leaf of `key` in its partition's digest, in [0, kDigestLeaves).
uint32_t digest_leaf(std::string_view key);

// One key's state as the digest sees it.
struct DigestEntry {
  std::string key;
  Version version;
  bool deleted = false;  // a delete tombstone; an expiry tombstone is not "deleted"
  WallTime expiry;       // 0 for never and for a delete tombstone

  bool operator==(const DigestEntry&) const = default;
};

// The entry of a stored state: `tombstone` as in Record, `expiry_ms` as stored. A tombstone
// without expiry is a delete; anything else keeps its expiry (an expired row and its
// expiry tombstone give the same entry).
DigestEntry digest_entry(std::string key, Version version, bool tombstone, int64_t expiry_ms);

// The hash of an entry: over the key's bytes, the version, `deleted` and the expiry.
uint64_t digest_entry_hash(std::string_view key, Version version, bool deleted, int64_t expiry_ms);
inline uint64_t digest_entry_hash(const DigestEntry& e) {
  return digest_entry_hash(e.key, e.version, e.deleted, e.expiry.ms);
}

// The leaves Store::digest_entries is asked for, sorted and without duplicates;
// INVALID_ARGUMENT naming the first one out of range.
Result<std::vector<uint32_t>> digest_leaf_set(const std::vector<uint32_t>& leaves);

// A partition's digest as Store::digest answers it.
struct PartitionDigest {
  uint32_t partition = 0;
  std::array<uint64_t, kDigestLeaves> leaves{};
  uint64_t entries = 0;  // key states in the partition, tombstones included
  // A hash of the leaves in order (digest_root): equal roots, equal leaves, but for a
  // 64-bit collision.
  uint64_t root = 0;
};

uint64_t digest_root(const std::array<uint64_t, kDigestLeaves>& leaves);

// Leaves being accumulated: entries added and removed in any order. Removing an entry that
// was added leaves the leaves as they were without it.
struct DigestLeaves {
  std::array<uint64_t, kDigestLeaves> leaves{};
  int64_t entries = 0;

  // A stored state (`tombstone` and `expiry_ms` as in the tables, normalized as
  // digest_entry does) comes into the leaves, or leaves them.
  void add(std::string_view key, Version version, bool tombstone, int64_t expiry_ms) {
    toggle(key, version, tombstone, expiry_ms);
    ++entries;
  }
  void remove(std::string_view key, Version version, bool tombstone, int64_t expiry_ms) {
    toggle(key, version, tombstone, expiry_ms);
    --entries;
  }
  // Adds what `other` holds (a scan added to the changes made while it ran).
  void merge(const DigestLeaves& other) {
    for (uint32_t i = 0; i < kDigestLeaves; ++i) leaves[i] ^= other.leaves[i];
    entries += other.entries;
  }
  PartitionDigest to_digest(uint32_t partition) const;

 private:
  void toggle(std::string_view key, Version version, bool tombstone, int64_t expiry_ms) {
    const bool deleted = tombstone && expiry_ms == 0;
    leaves[digest_leaf(key)] ^= digest_entry_hash(key, version, deleted, expiry_ms);
  }
};

}  // namespace edgekv::store
