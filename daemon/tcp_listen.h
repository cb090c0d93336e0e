// Opening a listening TCP socket for one of the daemon's tcp:// endpoints (the change feed
// and the Redis-protocol listener), with the error texts operators and tests read when
// the endpoint cannot be bound.
//
// Thread-safety: free functions with no state of their own.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace edgekv::daemon {

// Connections the kernel queues before accept() (it caps the value at net.core.somaxconn):
// large enough that a burst of clients connecting at once is not refused while the network
// thread is busy with one turn of its loop.
constexpr int kListenBacklog = 511;

// "cannot bind OPTION ENDPOINT: WHAT", followed by ": strerror(err)" when err is not 0.
Status listen_error(std::string_view option, const std::string& endpoint, std::string_view what,
                    int err);

// Binds HOST:PORT (host_port: the endpoint after "tcp://"; HOST may be "*" for every
// address or a bracketed IPv6 address) and listens on it. Returns the non-blocking,
// close-on-exec listening fd, owned by the caller; errors name option and endpoint.
Result<int> listen_tcp(std::string_view option, const std::string& endpoint,
                       std::string_view host_port);

}  // namespace edgekv::daemon
