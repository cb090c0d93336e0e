#include "daemon/applied.h"

#include <string>
#include <utility>

namespace edgekv::daemon {

AppliedChanges::AppliedChanges(size_t read_cache_bytes, Feed feed)
    : cache_(read_cache_bytes), feed_(std::move(feed)) {}

cluster::ChangeHook AppliedChanges::hook() {
  return
      [this](ChangeEvent event, cluster::ChangeSource source) { apply(std::move(event), source); };
}

void AppliedChanges::apply(ChangeEvent event, cluster::ChangeSource source) {
  // The source matters to the feed only: the cache treats every change alike.
  feed_(event, source);
  store::Record record;
  record.key = std::move(event.key);
  record.version = event.version;
  switch (event.op) {
    case ChangeOp::kPut:
      record.value = std::move(event.value);
      record.expiry = event.expiry;
      break;
    case ChangeOp::kDelete: record.tombstone = true; break;
    case ChangeOp::kExpire:
      record.tombstone = true;
      record.expiry = event.expiry;
      break;
  }
  cache_.update(std::move(record));
}

void AppliedChanges::forget_if_dropped(store::Store& store, std::string_view key) {
  const uint32_t partition = store.partition_of(key);
  if (drops_seen_.size() != store.partitions()) drops_seen_.assign(store.partitions(), 0);
  const uint64_t drops = store.drops(partition);
  if (drops == drops_seen_[partition]) return;
  drops_seen_[partition] = drops;
  cache_.erase_if([&](std::string_view cached) { return store.partition_of(cached) == partition; });
}

Result<store::Record> AppliedChanges::read(store::Store& store, std::string_view key,
                                           WallTime now) {
  // Before the lookup: a drop committed since the last read of the partition.
  forget_if_dropped(store, key);
  store::Record record;
  switch (cache_.get(key, now, &record)) {
    case ReadCache::Lookup::kFound:
      // The store purges tombstones silently (no change arrives): one below the purge
      // horizon may be gone, so the store says.
      if (!record.tombstone ||
          record.version.hlc >= store.purge_horizon(store.partition_of(key)).hlc_below) {
        return record;
      }
      cache_.erase(key);
      break;
    case ReadCache::Lookup::kAbsent: return Status::not_found("no record of the key");
    case ReadCache::Lookup::kMiss: break;
  }
  Result<store::Record> found = store.read(key, now);
  if (found.ok()) {
    cache_.put(*found);
  } else if (found.status().code() == Code::kNotFound) {
    // No row: cached as a tombstone without a version, which any change replaces.
    store::Record absent;
    absent.key = std::string(key);
    absent.tombstone = true;
    cache_.put(std::move(absent));
  }
  return found;
}

}  // namespace edgekv::daemon
