// edgekvd's event loop: the network thread that moves bytes between ZeroMQ sockets and the
// request path, and owns every piece of protocol state (no locks around it).
//
// Sockets: a ROUTER for the client API (client-endpoint), a PUB for the change feed
// (feed-endpoint). Storage work runs on the store's writer threads and comes back through
// the CompletionQueue; the network thread never waits on a commit or an fsync. Reads are
// point lookups served on the network thread through the store's read connection, which
// in WAL mode never waits for the writer.
//
// Life cycle: start() opens the store and binds the sockets (errors name the option or
// resource); run() serves until the stop fd becomes readable (a signalfd for SIGTERM and
// SIGINT in edgekvd), then stops reading requests, finishes those in flight, publishes
// their changes, closes the store and returns.
//
// Thread-safety: start() and run() from one thread; nothing else is public.
#pragma once

#include <memory>

#include "common/clock.h"
#include "common/status.h"
#include "daemon/config.h"

namespace edgekv::daemon {

class Server {
 public:
  // `stop_fd`: a descriptor that becomes readable when the server should stop.
  static Result<std::unique_ptr<Server>> start(const Config& config, const Clock& clock,
                                               int stop_fd);
  virtual ~Server() = default;
  // Serves until stopped; OK on a clean stop.
  virtual Status run() = 0;
};

}  // namespace edgekv::daemon
