#include "gossip/broadcast.h"

#include <vector>

#include "common/assert.h"

namespace edgekv::gossip {

size_t repeated_field_bytes(size_t payload_bytes) {
  size_t varint = 1;
  for (size_t v = payload_bytes; v >= 0x80; v >>= 7) ++varint;
  return 1 + varint + payload_bytes;
}

void BroadcastQueue::push(const pb::Update& update) {
  erase(update.id());
  Entry entry{update, repeated_field_bytes(update.ByteSizeLong()), 0, next_sequence_++};
  order_.insert(key_of(entry));
  by_id_.emplace(update.id(), std::move(entry));
}

size_t BroadcastQueue::fill(google::protobuf::RepeatedPtrField<pb::Update>* out,
                            size_t budget_bytes, uint32_t limit) {
  std::vector<Key> taken;
  size_t used = 0;
  for (const Key& key : order_) {
    if (budget_bytes - used < 16) break;  // nothing useful fits any more
    const Entry& entry = by_id_.at(std::get<2>(key));
    if (entry.bytes > budget_bytes - used) continue;
    used += entry.bytes;
    *out->Add() = entry.update;
    taken.push_back(key);
  }
  for (const Key& key : taken) {
    order_.erase(key);
    auto it = by_id_.find(std::get<2>(key));
    EDGEKV_ASSERT(it != by_id_.end());
    if (++it->second.transmits >= limit) {
      by_id_.erase(it);
    } else {
      order_.insert(key_of(it->second));
    }
  }
  return taken.size();
}

void BroadcastQueue::erase(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  order_.erase(key_of(it->second));
  by_id_.erase(it);
}

void BroadcastQueue::clear() {
  by_id_.clear();
  order_.clear();
}

int64_t BroadcastQueue::transmits(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : static_cast<int64_t>(it->second.transmits);
}

}  // namespace edgekv::gossip
