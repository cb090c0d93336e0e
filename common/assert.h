// Always-on assertions for broken invariants (never for bad input: that gets a Status).
#pragma once

namespace edgekv::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line);
}  // namespace edgekv::detail

#define EDGEKV_ASSERT(cond) \
  ((cond) ? (void)0 : ::edgekv::detail::assert_fail(#cond, __FILE__, __LINE__))
