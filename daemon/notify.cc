#include "daemon/notify.h"

#include <systemd/sd-daemon.h>

#include <string>

namespace edgekv::daemon {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    // Half the timeout: one missed tick (a slow commit, a busy machine) is not fatal.
    watchdog_interval_ = std::chrono::milliseconds(std::max<uint64_t>(usec / 2000, 1));
  }
}

void ServiceNotifier::ready(std::string_view status) {
  std::string msg = "READY=1\nSTATUS=" + std::string(status);
  sd_notify(0, msg.c_str());
}

void ServiceNotifier::status(std::string_view status) {
  std::string msg = "STATUS=" + std::string(status);
  sd_notify(0, msg.c_str());
}

void ServiceNotifier::stopping(std::string_view status) {
  std::string msg = "STOPPING=1\nSTATUS=" + std::string(status);
  sd_notify(0, msg.c_str());
}

void ServiceNotifier::watchdog() { sd_notify(0, "WATCHDOG=1"); }

}  // namespace edgekv::daemon
