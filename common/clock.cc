#include "common/clock.h"

namespace edgekv {

MonoTime RealClock::mono_now() const { return std::chrono::steady_clock::now(); }

WallTime RealClock::wall_now() const {
  auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return WallTime{std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count()};
}

}  // namespace edgekv
