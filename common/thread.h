// Starting a thread that names itself, so that top -H, perf and /proc/PID/task show what
// each of the daemon's threads is.
//
// Owns: nothing. Thread-safety: any thread.
#pragma once

#include <pthread.h>

#include <string>
#include <thread>
#include <utility>

namespace edgekv {

// Starts a thread named `name` (Linux keeps the first 15 characters) that runs `body`.
template <typename Body>
std::thread start_named_thread(std::string name, Body body) {
  return std::thread([name = std::move(name), body = std::move(body)]() mutable {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    body();
  });
}

}  // namespace edgekv
