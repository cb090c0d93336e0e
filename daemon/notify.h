// The daemon's side of the systemd service protocol (sd_notify): READY=1, STATUS=,
// STOPPING=1 and WATCHDOG=1. Without NOTIFY_SOCKET (not run by systemd) every call is a
// no-op, so the same binary runs in a terminal.
//
// Thread-safety: call from the network thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace edgekv::daemon {

class ServiceNotifier {
 public:
  ServiceNotifier();

  void ready(std::string_view status);
  void status(std::string_view status);
  void stopping(std::string_view status);
  void watchdog();
  // How often to call watchdog(): half of WatchdogSec, or nullopt when systemd does not
  // expect keep-alives.
  std::optional<std::chrono::milliseconds> watchdog_interval() const { return watchdog_interval_; }

 private:
  std::optional<std::chrono::milliseconds> watchdog_interval_;
};

}  // namespace edgekv::daemon
