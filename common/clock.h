// Time in edgekv, and the one seam through which it is read.
//
// Two strong types that cannot be mixed:
//  - MonoTime: a steady clock reading for timers and timeouts. Never stored or sent.
//  - WallTime: milliseconds since the Unix epoch, for TTL expiry on disk and on the wire,
//    and the physical part of hybrid logical clocks.
//
// Protocol and storage code never reads a clock: it is handed `now`, or a Clock& through
// its constructor. RealClock is the only implementation that asks the operating system;
// ManualClock is moved by tests and the simulator.
//
// Thread-safety: RealClock is safe from any thread. ManualClock is not synchronised.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>

namespace edgekv {

using MonoTime = std::chrono::steady_clock::time_point;

struct WallTime {
  int64_t ms = 0;  // milliseconds since 1970-01-01T00:00:00Z

  static constexpr WallTime from_ms(int64_t ms) { return WallTime{ms}; }
  constexpr auto operator<=>(const WallTime&) const = default;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime mono_now() const = 0;
  virtual WallTime wall_now() const = 0;
};

class RealClock final : public Clock {
 public:
  MonoTime mono_now() const override;
  WallTime wall_now() const override;
};

// A clock that moves only when told to. Starts at the given readings.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(WallTime wall = WallTime{1'700'000'000'000}, MonoTime mono = MonoTime{})
      : wall_(wall), mono_(mono) {}

  MonoTime mono_now() const override { return mono_; }
  WallTime wall_now() const override { return wall_; }

  // Moves both readings forward by `d`.
  void advance(std::chrono::milliseconds d) {
    mono_ += d;
    wall_.ms += d.count();
  }
  // Sets the wall reading alone (wall clocks may jump, even backwards).
  void set_wall(WallTime wall) { wall_ = wall; }

 private:
  WallTime wall_;
  MonoTime mono_;
};

}  // namespace edgekv
