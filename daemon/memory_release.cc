#include "daemon/memory_release.h"

#include <malloc.h>

#include <chrono>

namespace edgekv::daemon {
namespace {

// Bytes in flight after which a release is due once the node is idle again: below this the
// heap cannot have grown enough to be worth a walk of it.
constexpr uint64_t kLoadedBytes = 8 << 20;
// In flight at most this much, the node counts as idle: a trickle of small requests must
// not keep the memory of a finished burst.
constexpr uint64_t kIdleBytes = 1 << 20;
// Least time between two releases: malloc_trim walks every arena and takes milliseconds
// on a large heap, so once a second costs well under 1% of the network thread.
constexpr std::chrono::milliseconds kReleaseInterval{1000};
// Releases after one load at most: malloc_trim reports a release whenever a heap has free
// pages, also ones it gave back before, so "until a release finds nothing" never ended on
// some heaps and an idle node trimmed every second. Five seconds cover the store's threads
// freeing the last values of a load.
constexpr int kReleasesPerLoad = 5;

}  // namespace

void MemoryReleaser::on_turn(uint64_t inflight_bytes, MonoTime now) {
  if (inflight_bytes >= kLoadedBytes) {
    loaded_ = true;
    releases_left_ = kReleasesPerLoad;
  }
  idle_waiting_ = false;
  if (!loaded_ || inflight_bytes > kIdleBytes) return;
  if (now < next_allowed_) {
    idle_waiting_ = true;
    return;
  }
  // The store's threads free values after their writes were acknowledged (the applier,
  // once a staged batch is applied): release again a second later until a release finds
  // nothing to return.
  loaded_ = malloc_trim(0) != 0 && --releases_left_ > 0;
  next_allowed_ = now + kReleaseInterval;
  ++releases_;
}

MonoTime MemoryReleaser::next_deadline() const {
  return idle_waiting_ ? next_allowed_ : MonoTime::max();
}

}  // namespace edgekv::daemon
