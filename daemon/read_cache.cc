#include "daemon/read_cache.h"

namespace edgekv::daemon {

// Bytes an entry costs: key and value, plus the list node, index slot and Record fields.
size_t ReadCache::charge(const store::Record& r) { return r.key.size() + r.value.size() + 128; }

ReadCache::Lookup ReadCache::get(std::string_view key, WallTime now, store::Record* out) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return Lookup::kMiss;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  const store::Record& r = *it->second;
  if (r.tombstone || (r.expiry.ms != 0 && r.expiry <= now)) return Lookup::kAbsent;
  *out = r;
  return Lookup::kFound;
}

void ReadCache::put(const store::Record& record) {
  if (capacity_bytes_ == 0) return;
  erase(record.key);
  size_t cost = charge(record);
  if (cost > capacity_bytes_ / 8) return;  // one huge value must not flush the whole cache
  lru_.push_front(record);
  if (lru_.front().tombstone) lru_.front().value.clear();
  index_.emplace(lru_.front().key, lru_.begin());
  bytes_ += cost;
  evict_to(capacity_bytes_);
}

void ReadCache::erase(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  Lru::iterator node = it->second;
  index_.erase(it);  // before the node: the index key views the node's string
  bytes_ -= charge(*node);
  lru_.erase(node);
}

void ReadCache::evict_to(size_t limit) {
  while (bytes_ > limit && !lru_.empty()) erase(lru_.back().key);
}

}  // namespace edgekv::daemon
