#include "daemon/read_cache.h"

#include <utility>

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
  return report(*it->second, now, out);
}

ReadCache::Lookup ReadCache::peek(std::string_view key, WallTime now, store::Record* out) const {
  auto it = index_.find(key);
  return it == index_.end() ? Lookup::kMiss : report(*it->second, now, out);
}

ReadCache::Lookup ReadCache::report(const store::Record& cached, WallTime now, store::Record* out) {
  // Only a read that found no row caches a tombstone without a version.
  if (cached.tombstone && cached.version == Version{}) return Lookup::kAbsent;
  out->key = cached.key;
  out->version = cached.version;
  out->expiry = cached.expiry;
  out->tombstone = cached.tombstone || (cached.expiry.ms != 0 && cached.expiry <= now);
  if (out->tombstone) {
    out->value.clear();
  } else {
    out->value = cached.value;
  }
  return Lookup::kFound;
}

void ReadCache::put(store::Record record) {
  if (capacity_bytes_ == 0) return;
  if (record.tombstone) record.value.clear();
  const size_t cost = charge(record);
  auto it = index_.find(record.key);
  if (cost > capacity_bytes_ / 8) {  // one huge value must not flush the whole cache
    if (it != index_.end()) erase(it);
    return;
  }
  if (it != index_.end()) {
    // In place: the node's key stays (the index views it), everything else is replaced.
    store::Record& cached = *it->second;
    bytes_ -= charge(cached);
    cached.value = std::move(record.value);
    cached.version = record.version;
    cached.expiry = record.expiry;
    cached.tombstone = record.tombstone;
    lru_.splice(lru_.begin(), lru_, it->second);
  } else {
    lru_.push_front(std::move(record));
    index_.emplace(lru_.front().key, lru_.begin());
  }
  bytes_ += cost;
  evict_to(capacity_bytes_);
}

void ReadCache::update(store::Record record) {
  auto it = index_.find(record.key);
  if (it == index_.end()) return;
  const store::Record& cached = *it->second;
  if (cached.version > record.version) return;
  if (cached.version == record.version && cached.tombstone && !record.tombstone) return;
  put(std::move(record));
}

void ReadCache::erase(std::string_view key) {
  auto it = index_.find(key);
  if (it != index_.end()) erase(it);
}

size_t ReadCache::erase_if(const std::function<bool(std::string_view key)>& pred) {
  size_t erased = 0;
  for (auto node = lru_.begin(); node != lru_.end();) {
    const auto next = std::next(node);
    if (pred(node->key)) {
      erase(index_.find(node->key));
      ++erased;
    }
    node = next;
  }
  return erased;
}

void ReadCache::erase(Index::iterator it) {
  Lru::iterator node = it->second;
  index_.erase(it);  // before the node: the index key views the node's string
  bytes_ -= charge(*node);
  lru_.erase(node);
}

void ReadCache::evict_to(size_t limit) {
  while (bytes_ > limit && !lru_.empty()) erase(index_.find(lru_.back().key));
}

}  // namespace edgekv::daemon
