// The one place where "a change was applied to this node's store" lands, whatever its
// source: a write coordinated here, the expiry sweep, and the replica side's writes, read
// repairs and (later) hints and hand-overs, which reach it through the cluster::ChangeHook
// that hook() returns (cluster/change_hook.h). For each change it keeps the read cache
// exact and hands the event to the change feed, once.
//
// What it owns: the ReadCache in front of the store. Every read of this node's own data
// (the replica side's, for the coordinators, this node's included) goes through read(),
// which fills the cache at a miss; the changes keep it exact; nothing else writes to it.
//
// Exactness, given how changes arrive: the store applies a change only when its version is
// newer than the stored one, and one writer thread per database file reports its commits in
// order, so the changes of one key arrive in version order, but for two things:
//  - the expiry sweep reports when its whole sweep is done, so an expiry may arrive after
//    a later write of its key;
//  - a read of the store can see a commit before that commit's change arrives here.
// So the cache never takes a change older than the copy it holds (at equal versions an
// expiry's tombstone beats the live record it ended), and a change only updates a key
// already cached, never adds one: a newer copy of that key may have been read, cached and
// evicted before the change arrived, and a coordinator may have several writes of one key
// in flight. Keys enter the cache through reads only. The store purges tombstones without
// a change (store.h, set_purge_horizon), so a cached tombstone below its partition's purge
// horizon is read from the store again. It drops whole partitions without a change too
// (Store::drop_partition, on hand-over), so a read first compares the count of drops of its
// key's partition (Store::drops) with the one it last saw, and when it moved forgets every
// cached key of the partition: a copy cached before the drop could otherwise be answered,
// or keep a later, older-versioned change out, after the store let go of the key.
//
// Thread-safety: none; the network thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>
#include <vector>

#include "cluster/change_hook.h"
#include "common/change.h"
#include "common/clock.h"
#include "common/status.h"
#include "daemon/read_cache.h"
#include "store/store.h"

namespace edgekv::daemon {

class AppliedChanges {
 public:
  // Publishes one applied change on the feed.
  using Feed = std::function<void(const ChangeEvent& event, cluster::ChangeSource source)>;

  // `read_cache_bytes`: memory for the ReadCache (0: every read goes to the store).
  AppliedChanges(size_t read_cache_bytes, Feed feed);

  // A change the store applied (ApplyResult::event of an applied write, or a sweep's
  // kExpire event): updates the cache, then feeds it. Called once per change.
  void apply(ChangeEvent event, cluster::ChangeSource source);
  // apply(), as a ChangeHook for the replica side. `this` must outlive it.
  cluster::ChangeHook hook();

  // store.read(key, now) (Store::read: the stored state, tombstones included) answered
  // from the cache where it holds the key; a miss reads the store and caches what it found
  // (a record, a tombstone, or no row); a store error caches nothing.
  Result<store::Record> read(store::Store& store, std::string_view key, WallTime now);
  // The key's stored state is not known here (a write failed, or lost to a newer one
  // whose change has not arrived): drop the cached copy.
  void forget(std::string_view key) { cache_.erase(key); }

  const ReadCache& cache() const { return cache_; }

 private:
  // Forgets the cached keys of `key`'s partition if the store dropped it since last seen.
  void forget_if_dropped(store::Store& store, std::string_view key);

  ReadCache cache_;
  Feed feed_;
  std::vector<uint64_t> drops_seen_;  // Store::drops by partition, as last seen by a read
};

}  // namespace edgekv::daemon
