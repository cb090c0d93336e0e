// edgekvd's change feed publisher: a ZMTP 3.0 PUB endpoint over plain TCP or a Unix socket
// (feed-endpoint), wire-compatible with every ZeroMQ SUB or XSUB client. Each change event
// goes out as two frames, [key][ChangeEvent], to the subscribers with a subscription that
// is a prefix of the key.
//
// What it owns: the listening socket, the subscriber connections (each with its ZMTP
// decoder, its subscriptions and its queue of output), the matcher from prefixes to
// subscribers, and an epoll instance over all of them.
//
// Why not libzmq's PUB: it keeps every subscription byte in a trie (tens of bytes of memory
// per byte subscribed, never returned) walked whole whenever any peer connects or leaves,
// gives no per-connection identity to bound subscriptions by, cannot drop one peer, and
// bounds queues in messages rather than bytes. Here every cost is bounded:
//   - a subscription is at most max-key-bytes long, and a frame longer than that (plus a
//     little slack) closes the connection before it is buffered;
//   - subscriptions per connection and in total are bounded (the connection going over
//     either is closed), and so are connections; a connection that has not finished the
//     handshake within kHandshakeTimeout is closed;
//   - matching an event costs a hash lookup per distinct subscribed prefix length up to the
//     key's length, plus the matching subscribers: not the number of subscriptions; a
//     connection's arrival or departure costs its own subscriptions only;
//   - each event is encoded once and shared by every subscriber's queue; a subscriber whose
//     queue is over subscriber_buffer_bytes is dropped, and when all queued output is over
//     buffer_bytes_max the subscribers with the most queued are dropped first;
//   - every on_ready() / flush() call does a bounded amount of reading, writing and
//     accepting, so the event loop stays responsive (epoll is level-triggered: what is
//     left over makes fd() readable again at once).
//
// Event loop integration: the server's loop polls fd() (the epoll fd) and calls on_ready()
// when it is readable, publish() for each committed change, flush() once per turn and
// maintain() on its timers. Everything runs on the network thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"

namespace edgekv::daemon {

struct FeedCounters {
  uint64_t connections_received = 0;
  // Connections closed without being served: over max_connections, a bad greeting or
  // socket type, or no handshake within kHandshakeTimeout.
  uint64_t connections_refused = 0;
  // Subscriptions refused (each closing its connection): longer than max_key_bytes, an
  // oversized frame, over max_subscriptions_per_connection or max_subscriptions.
  uint64_t bad_subscriptions = 0;
  // Subscribers dropped because their queued output went over a bound.
  uint64_t subscribers_dropped = 0;
  uint64_t events_sent = 0;  // event deliveries, one per subscriber per event
};

struct FeedOptions {
  size_t max_key_bytes = 1024;
  size_t max_connections = 1024;
  size_t max_subscriptions_per_connection = 64;
  size_t max_subscriptions = 65536;
  size_t subscriber_buffer_bytes = 64 * 1024 * 1024;
  size_t buffer_bytes_max = 256 * 1024 * 1024;
  // A connection that has not completed the ZMTP handshake by then is closed: a junk or
  // idle TCP connection holds a slot for no longer. libzmq peers finish in one round trip.
  std::chrono::milliseconds handshake_timeout{3000};
  // Seeds the prefix index's hash, so that peers cannot choose prefixes that collide; the
  // daemon draws it from the node id and the start time.
  uint64_t hash_seed = 0;
};

class FeedServer {
 public:
  // Binds and listens on `endpoint` (tcp://HOST:PORT, HOST may be *, or ipc://PATH). The
  // error names the option and the endpoint.
  static Result<std::unique_ptr<FeedServer>> listen(const std::string& endpoint,
                                                    FeedOptions options, const Clock& clock);
  virtual ~FeedServer() = default;

  // The epoll descriptor to poll for readability.
  virtual int fd() const = 0;
  // Accepts, reads and writes what is ready, a bounded amount per call, without blocking.
  virtual void on_ready() = 0;
  // Queues one event for every subscriber with a prefix of `key`. Nothing is encoded when
  // no one subscribed to it.
  virtual void publish(std::string_view key, std::string_view body) = 0;
  // Whether any connection has subscribed at all (publish() would match nothing otherwise).
  virtual bool has_subscriptions() const = 0;
  // Sends what publish() queued since the last call, a bounded amount.
  virtual void flush() = 0;
  // Closes connections whose handshake is overdue.
  virtual void maintain(MonoTime now) = 0;
  // Stops accepting connections; the subscribers stay until the server is destroyed.
  virtual void stop_accepting() = 0;

  virtual size_t connections() const = 0;
  virtual size_t subscriptions() const = 0;
  // Bytes of output queued for all subscribers, each shared event counted once (the
  // memory it takes).
  virtual size_t queued_bytes() const = 0;
  virtual const FeedCounters& counters() const = 0;
};

}  // namespace edgekv::daemon
