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

void StagedWrites::collect(uint64_t after_id, size_t max, std::vector<const StagedWrite*>* writes,
                           std::vector<bool>* write_row) const {
  std::lock_guard lock(mu_);
  auto first = std::upper_bound(writes_.begin(), writes_.end(), after_id,
                                [](uint64_t id, const StagedWrite& w) { return id < w.id; });
  for (auto it = first; it != writes_.end() && max > 0; ++it, --max) {
    writes->push_back(&*it);
    auto newest = newest_.find(it->key);
    write_row->push_back(newest != newest_.end() && newest->second == &*it);
  }
}

void StagedWrites::add(std::deque<StagedWrite>& writes) {
  uint64_t added_bytes = 0;
  {
    std::lock_guard lock(mu_);
    // Writes are applied oldest first: an id below the oldest staged one was applied.
    const uint64_t oldest = writes_.empty() ? UINT64_MAX : writes_.front().id;
    for (StagedWrite& w : writes) {
      EDGEKV_ASSERT(writes_.empty() || w.id > writes_.back().id);
      if (auto newest = newest_.find(w.key); newest != newest_.end()) {
        // The key's newest staged write is the one this one was staged on (the writer
        // alone adds): they share its row, as it stands now. An applied batch may have
        // moved it (remove_applied) since this one copied it.
        w.base = newest->second->base;
        w.base_from = 0;
      } else if (w.base_from != 0 && w.base_from < oldest) {
        // Its key's newest write was applied while this one was being staged; it wrote
        // the row (it was handed on while it was the newest), which this one now finds.
        w.base = w.base_if_applied;
        w.base_from = 0;
      }
      added_bytes += footprint(w);
      StagedWrite& kept = writes_.emplace_back(std::move(w));
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

void StagedWrites::remove_applied(size_t n, const std::vector<bool>& wrote_row) {
  // In slices, each under the lock: the writer's lookups and readers wait for a slice, not
  // for a whole batch of thousands. A write is in its table already (the batch committed),
  // so a reader that misses it here finds it there.
  constexpr size_t kSlice = 256;
  bool first = true;
  for (size_t done = 0; done < n;) {
    uint64_t removed_bytes = 0;
    size_t removed = 0;
    {
      std::lock_guard lock(mu_);
      if (first) {
        removals_.fetch_add(1);  // before anything leaves (see removals())
        first = false;
      }
      const size_t end = std::min(n, done + kSlice);
      for (; done < end && !writes_.empty(); ++done, ++removed) {
        const StagedWrite& w = writes_.front();
        removed_bytes += footprint(w);
        auto it = newest_.find(w.key);
        if (it != newest_.end() && it->second == &w) {
          newest_.erase(it);
        } else if (it != newest_.end() && done < wrote_row.size() && wrote_row[done]) {
          // The key was written again after this write was handed to the applier: the
          // newer write now stands on the row this one left.
          it->second->base = w.row_after();
        }
        // A partition's writes were staged in seq order, so its oldest is at the front.
        std::deque<const StagedWrite*>& in_slot = by_slot_[w.partition / db_files_];
        EDGEKV_ASSERT(!in_slot.empty() && in_slot.front() == &w);
        in_slot.pop_front();
        writes_.pop_front();
      }
    }
    count_.fetch_sub(removed, std::memory_order_relaxed);
    bytes_.fetch_sub(removed_bytes, std::memory_order_relaxed);
    if (removed == 0) break;  // nothing left (n was more than there is)
  }
}

bool StagedWrites::find(std::string_view key, StagedWrite* out) const {
  std::lock_guard lock(mu_);
  auto it = newest_.find(key);
  if (it == newest_.end()) return false;
  *out = *it->second;
  return true;
}

bool StagedWrites::find_state(std::string_view key, StagedWrite* out) const {
  std::lock_guard lock(mu_);
  auto it = newest_.find(key);
  if (it == newest_.end()) return false;
  const StagedWrite& w = *it->second;
  out->id = w.id;
  out->partition = w.partition;
  out->seq = w.seq;
  out->version = w.version;
  out->expiry_ms = w.expiry_ms;
  out->tombstone = w.tombstone;
  out->expire = w.expire;
  out->codec = w.codec;
  out->base = w.base;
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
    if (c.current && w.live()) {
      c.codec = w.codec;
      c.value = w.value;
    }
  }
  return out;
}

std::vector<DigestEntry> StagedWrites::digest_entries(uint32_t partition,
                                                      const std::vector<bool>* leaves) const {
  std::vector<DigestEntry> out;
  std::lock_guard lock(mu_);
  for (const StagedWrite* w : by_slot_[partition / db_files_]) {
    auto newest = newest_.find(w->key);
    if (newest == newest_.end() || newest->second != w) continue;
    if (leaves != nullptr && !(*leaves)[digest_leaf(w->key)]) continue;
    out.push_back(digest_entry(w->key, w->version, w->tombstone, w->expiry_ms));
  }
  return out;
}

std::vector<StagedWrite> StagedWrites::expired(uint32_t partition, WallTime now) const {
  std::vector<StagedWrite> out;
  std::lock_guard lock(mu_);
  for (const StagedWrite* w : by_slot_[partition / db_files_]) {
    if (!w->live() || w->expiry_ms == 0 || w->expiry_ms > now.ms) continue;
    auto newest = newest_.find(w->key);
    if (newest == newest_.end() || newest->second != w) continue;
    out.push_back(*w);
  }
  return out;
}

ExpiryAdjustment StagedWrites::expiry_adjustment(WallTime now) const {
  ExpiryAdjustment total;
  std::lock_guard lock(mu_);
  for (const auto& [key, w] : newest_) {
    ExpiryAdjustment mine = contribution(w->live(), false, w->expiry_ms, now);
    ExpiryAdjustment row = contribution(w->base.exists, w->base.tombstone, w->base.expiry_ms, now);
    total.expired += mine.expired - row.expired;
    total.expiring += mine.expiring - row.expiring;
  }
  return total;
}

}  // namespace edgekv::store
