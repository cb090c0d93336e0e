// Handing memory back to the system after a load of large values.
//
// Freed blocks go back to glibc's heaps, not to the system: a heap grown by a burst of
// large values (and fragmented by them) kept the daemon at its peak resident set after the
// load ended. MemoryReleaser asks glibc to return the free pages of every heap
// (malloc_trim, which also releases whole free pages in the middle of a heap) once the
// node goes idle after holding many bytes in flight, and again at most once per
// kReleaseInterval while idle until a release returns nothing, five times at most.
// Pinning glibc's mmap threshold instead, so that every large value is unmapped when
// freed, was measured: it returned no more, and made pipelined 1 MiB SETs 3 times
// slower (a mapping and its page faults per copy of each value).
//
// Thread-safety: network thread only.
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace edgekv::daemon {

class MemoryReleaser {
 public:
  // Called once per loop turn with the bytes the node holds for requests in flight.
  void on_turn(uint64_t inflight_bytes, MonoTime now);
  // When on_turn() must run again to release memory that waits for the rate limit; the
  // far future when nothing waits.
  MonoTime next_deadline() const;
  uint64_t releases() const { return releases_; }

 private:
  bool loaded_ = false;        // held kLoadedBytes, and freed memory may be left to release
  bool idle_waiting_ = false;  // idle, but released less than kReleaseInterval ago
  int releases_left_ = 0;      // of this load's
  MonoTime next_allowed_{};
  uint64_t releases_ = 0;
};

}  // namespace edgekv::daemon
