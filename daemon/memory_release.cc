#include "daemon/memory_release.h"

#include <malloc.h>

#include <chrono>

namespace edgekv::daemon {
namespace {

// glibc's initial mmap threshold: blocks this large or larger (a value of 128 KiB and up,
// a big reply) get a mapping of their own, so freeing one returns its pages at once.
// Smaller blocks are too many for a system call each.
constexpr int kMmapThresholdBytes = 128 * 1024;
// Bytes in flight after which a release is due once the node is idle again: below this the
// heap cannot have grown enough to be worth a walk of it.
constexpr uint64_t kLoadedBytes = 8 << 20;
// In flight at most this much, the node counts as idle: a trickle of small requests must
// not keep the memory of a finished burst.
constexpr uint64_t kIdleBytes = 1 << 20;
// Least time between two releases: malloc_trim walks every arena and takes milliseconds
// on a large heap, so once a second costs well under 1% of the network thread.
constexpr std::chrono::milliseconds kReleaseInterval{1000};

}  // namespace

void pin_malloc_thresholds() {
  // Setting either threshold turns off glibc's dynamic adjustment of both.
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
}

void MemoryReleaser::on_turn(uint64_t inflight_bytes, MonoTime now) {
  if (inflight_bytes >= kLoadedBytes) loaded_ = true;
  idle_waiting_ = false;
  if (!loaded_ || inflight_bytes > kIdleBytes) return;
  if (now < next_allowed_) {
    idle_waiting_ = true;
    return;
  }
  malloc_trim(0);
  loaded_ = false;
  next_allowed_ = now + kReleaseInterval;
  ++releases_;
}

MonoTime MemoryReleaser::next_deadline() const {
  return idle_waiting_ ? next_allowed_ : MonoTime::max();
}

}  // namespace edgekv::daemon
