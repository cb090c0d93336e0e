// The one place where "a change was applied to this node's store" lands, whatever its
// source: a write coordinated here, the expiry sweep, and the replica side's writes, read
// repairs and (later) hints and hand-overs, which reach it through the cluster::ChangeHook
// that hook() returns (cluster/change_hook.h). For each change it keeps the read cache
// exact and hands the event to the change feed, once.
//
// What it owns: the ReadCache in front of the store. The request path reads through it
// (lookup, on_read) and nothing else writes to it, so no source can leave a stale copy.
//
// Exactness, given how changes arrive: the store applies a change only when its version is
// newer than the stored one, and one writer thread per database file reports its commits in
// order, so the changes of one key arrive in version order, but for two things:
//  - the expiry sweep reports when its whole sweep is done, so an expiry may arrive after
//    a later write of its key;
//  - a read of the store can see a commit before that commit's change arrives here.
// So the cache never takes a change older than the copy it holds (at equal versions an
// expiry's tombstone beats the live record it ended); an expiry only marks a cached key
// absent, never adds one; and a change from another source than the request path only
// updates a key already cached, never adds one, since a newer copy of that key may have
// been read, cached and evicted before the change arrived. A write coordinated here adds
// its key: the request path keeps the key busy from submit to commit, so no read of it
// comes in between.
//
// Thread-safety: none; the network thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

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

  // The cached state of `key` (ReadCache::get).
  ReadCache::Lookup lookup(std::string_view key, WallTime now, store::Record* out) {
    return cache_.get(key, now, out);
  }
  // What a read of the store at a cache miss found: the record, or NOT_FOUND (cached as
  // absent); other errors cache nothing.
  void on_read(std::string_view key, const Result<store::Record>& found);
  // The key's stored state is not known here (a write failed, or lost to a newer one
  // whose change has not arrived): drop the cached copy.
  void forget(std::string_view key) { cache_.erase(key); }

  const ReadCache& cache() const { return cache_; }

 private:
  ReadCache cache_;
  Feed feed_;
};

}  // namespace edgekv::daemon
