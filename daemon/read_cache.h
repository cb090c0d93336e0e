// A bounded in-memory cache of records in front of the store, so that reads of hot keys
// cost a hash lookup instead of a SQLite read transaction.
//
// What it owns: up to capacity_bytes of records (key, value, version, expiry, or a
// tombstone marking a key known to be absent), evicted least recently used first.
//
// Exactness: it is filled from store reads at a miss and from applied changes, through
// AppliedChanges (daemon/applied.h), which says why an entry is always the key's committed
// state. Expiry is checked on every hit against the caller's
// `now`, exactly as the store does.
//
// Thread-safety: none; owned by the network thread.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "store/store.h"

namespace edgekv::daemon {

class ReadCache {
 public:
  explicit ReadCache(size_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  enum class Lookup { kMiss, kFound, kAbsent };
  // The key's stored state as Store::read reports it: kFound fills `out` with the live
  // record, or the tombstone (a delete's, or the one an expiry at `now` leaves: value
  // empty, version and expiry kept); kAbsent: the store is known to hold no row of it.
  Lookup get(std::string_view key, WallTime now, store::Record* out);
  // get() without counting or touching the recency order, for inspection.
  Lookup peek(std::string_view key, WallTime now, store::Record* out) const;
  // Remembers `record` (a tombstone remembers the key as absent). Taken by value: a caller
  // done with its record moves it in, and a key already cached is updated in place, so a
  // write of a hot key costs one lookup and no allocation.
  void put(store::Record record);
  // Replaces the cached copy of `record`'s key, unless that copy is newer: a greater
  // version, or the same version as a tombstone where `record` is live (an expiry keeps the
  // version of the record it ended). A key not cached stays out.
  void update(store::Record record);
  void erase(std::string_view key);
  // Erases every key for which `pred(key)` holds; returns how many. A walk of the cache:
  // for rare events (a partition dropped), not for every request.
  size_t erase_if(const std::function<bool(std::string_view key)>& pred);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return index_.size(); }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  using Lru = std::list<store::Record>;  // front: most recently used
  using Index = std::unordered_map<std::string_view, Lru::iterator>;
  static size_t charge(const store::Record& r);
  static Lookup report(const store::Record& cached, WallTime now, store::Record* out);
  void erase(Index::iterator it);
  void evict_to(size_t limit);

  size_t capacity_bytes_;
  size_t bytes_ = 0;
  Lru lru_;
  Index index_;  // views into lru_ keys
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace edgekv::daemon
