#include "store/staging.h"

#include <algorithm>

#include "common/status.h"

namespace edgekv::store {
namespace {

// A row's share of the expiry counts at `now` (tombstones and absent rows have none).
ExpiryAdjustment contribution(bool exists, bool tombstone, int64_t expiry_ms, WallTime now) {
  ExpiryAdjustment c;
  if (!exists || tombstone || expiry_ms == 0) return c;
  if (expiry_ms <= now.ms) {
    c.expired = 1;
  } else {
    c.expiring = 1;
  }
  return c;
}

}  // namespace

uint64_t StagedWrites::footprint(const StagedWrite& w) {
  // The element, its key and value, and an index entry in each of the two indexes.
  return sizeof(StagedWrite) + w.key.size() + w.value.size() + 64;
}

const StagedWrite* StagedWrites::newest(std::string_view key) const {
  auto it = newest_.find(key);
  return it == newest_.end() ? nullptr : it->second;
}

void StagedWrites::add(std::deque<StagedWrite>& writes) {
  uint64_t added_bytes = 0;
  {
    std::lock_guard lock(mu_);
    for (StagedWrite& w : writes) {
      EDGEKV_ASSERT(writes_.empty() || w.id > writes_.back().id);
      added_bytes += footprint(w);
      const StagedWrite& kept = writes_.emplace_back(std::move(w));
      // The index's key must view the newest write's own key: the older write, and the
      // string its view points into, go away first.
      if (auto it = newest_.find(kept.key); it != newest_.end()) {
        auto node = newest_.extract(it);
        node.key() = kept.key;
        node.mapped() = &kept;
        newest_.insert(std::move(node));
      } else {
        newest_.emplace(kept.key, &kept);
      }
      by_slot_[kept.partition / db_files_].push_back(&kept);
    }
  }
  count_.fetch_add(writes.size(), std::memory_order_relaxed);
  bytes_.fetch_add(added_bytes, std::memory_order_relaxed);
  writes.clear();
}

void StagedWrites::remove_oldest(size_t n) {
  n = std::min(n, writes_.size());
  uint64_t removed_bytes = 0;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < n; ++i) {
      const StagedWrite& w = writes_.front();
      removed_bytes += footprint(w);
      auto it = newest_.find(w.key);
      if (it != newest_.end() && it->second == &w) newest_.erase(it);
      // A partition's writes were staged in seq order, so its oldest is at the front.
      std::deque<const StagedWrite*>& in_slot = by_slot_[w.partition / db_files_];
      EDGEKV_ASSERT(!in_slot.empty() && in_slot.front() == &w);
      in_slot.pop_front();
      writes_.pop_front();
    }
  }
  count_.fetch_sub(n, std::memory_order_relaxed);
  bytes_.fetch_sub(removed_bytes, std::memory_order_relaxed);
}

bool StagedWrites::find(std::string_view key, StagedWrite* out) const {
  std::lock_guard lock(mu_);
  auto it = newest_.find(key);
  if (it == newest_.end()) return false;
  *out = *it->second;
  return true;
}

StagedChanges StagedWrites::changes(uint32_t partition, uint64_t from_seq, size_t max) const {
  StagedChanges out;
  std::lock_guard lock(mu_);
  const std::deque<const StagedWrite*>& in_slot = by_slot_[partition / db_files_];
  for (const StagedWrite* w : in_slot) out.newest_seq[w->key] = w->seq;  // in seq order
  auto first = std::lower_bound(in_slot.begin(), in_slot.end(), from_seq,
                                [](const StagedWrite* w, uint64_t seq) { return w->seq < seq; });
  for (auto it = first; it != in_slot.end() && out.entries.size() < max; ++it) {
    const StagedWrite& w = **it;
    StagedChange& c = out.entries.emplace_back();
    c.seq = w.seq;
    c.op = w.op();
    c.version = w.version;
    c.expiry_ms = w.expiry_ms;
    c.key = w.key;
    auto newest = newest_.find(w.key);
    c.current = newest != newest_.end() && newest->second == &w;
    if (c.current && !w.tombstone) {
      c.codec = w.codec;
      c.value = w.value;
    }
  }
  return out;
}

ExpiryAdjustment StagedWrites::expiry_adjustment(WallTime now) const {
  ExpiryAdjustment total;
  std::lock_guard lock(mu_);
  for (const auto& [key, w] : newest_) {
    ExpiryAdjustment mine = contribution(true, w->tombstone, w->expiry_ms, now);
    ExpiryAdjustment row = contribution(w->base.exists, w->base.tombstone, w->base.expiry_ms, now);
    total.expired += mine.expired - row.expired;
    total.expiring += mine.expiring - row.expiring;
  }
  return total;
}

}  // namespace edgekv::store
