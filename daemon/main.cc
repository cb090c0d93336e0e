// edgekvd: the edgekv node daemon. Parses the configuration, blocks the stop signals
// (they are read through a signalfd by the event loop), and runs the server.
//
// Exit status: 0 after a clean stop (or --help/--version), 1 when the configuration or a
// resource (data directory, endpoint) is unusable, with one line on stderr naming it.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/config.h"
#include "daemon/server.h"

namespace {

int fail(const edgekv::Status& status) {
  std::fprintf(stderr, "edgekvd: %s\n", status.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = edgekv::daemon::parse_args(argc, argv, std::cout);
  if (!parsed.ok()) return fail(parsed.status());
  if (parsed->action != edgekv::daemon::ParsedArgs::Action::kRun) return 0;
  const edgekv::daemon::Config& config = parsed->config;
  edgekv::set_log_level(config.log_level);

  // Block the stop signals before any thread starts (the store's writers, ZeroMQ's I/O
  // threads inherit the mask), so they are delivered only through the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // no reload yet: treated as a stop, not ignored silently
  if (pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    return fail(edgekv::Status::internal("cannot block signals"));
  }
  signal(SIGPIPE, SIG_IGN);
  int stop_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (stop_fd < 0) return fail(edgekv::Status::internal("cannot create a signalfd"));

  edgekv::RealClock clock;
  auto server = edgekv::daemon::Server::start(config, clock, stop_fd);
  if (!server.ok()) return fail(server.status());
  edgekv::Status status = (*server)->run();
  server->reset();
  close(stop_fd);
  if (!status.ok()) return fail(status);
  return 0;
}
