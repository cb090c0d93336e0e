#include "common/version.h"

#include <cstdio>

#include "common/hlc.h"

namespace edgekv {

std::string Version::to_string() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%llu@%016llx",
                static_cast<long long>(HybridClock::physical_ms(hlc)),
                static_cast<unsigned long long>(HybridClock::logical(hlc)),
                static_cast<unsigned long long>(origin));
  return buf;
}

}  // namespace edgekv
