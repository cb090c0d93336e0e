// Handing memory back to the system after a load of large values.
//
// glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so
// after the first large values are freed, later ones come from the heap, and a heap
// fragmented by a burst of them is never given back: the daemon kept its peak resident
// set after the load ended. pin_malloc_thresholds() fixes the threshold at startup, so
// every large value has a mapping of its own that free() unmaps, and MemoryReleaser asks
// glibc to return the free pages of its heaps (malloc_trim) once the node goes idle after
// holding many bytes in flight, at most once per kReleaseInterval.
//
// Thread-safety: pin_malloc_thresholds() before any thread starts; MemoryReleaser on the
// network thread only.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace edgekv::daemon {

// Fixes glibc's mmap threshold (and with it the trim threshold) at their initial values.
void pin_malloc_thresholds();

class MemoryReleaser {
 public:
  // Called once per loop turn with the bytes the node holds for requests in flight.
  void on_turn(uint64_t inflight_bytes, MonoTime now);
  // When on_turn() must run again to release memory that waits for the rate limit; the
  // far future when nothing waits.
  MonoTime next_deadline() const;
  uint64_t releases() const { return releases_; }

 private:
  bool loaded_ = false;        // held kLoadedBytes since the last release
  bool idle_waiting_ = false;  // idle, but released less than kReleaseInterval ago
  MonoTime next_allowed_{};
  uint64_t releases_ = 0;
};

}  // namespace edgekv::daemon
