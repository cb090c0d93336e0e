// Internal to libedgekv: the thin layer between the client library and cppzmq.
//
// What it owns: nothing; it wraps calls on sockets its callers own. It is the one place
// ZeroMQ errors (cppzmq's zmq::error_t exceptions) become Status, so nothing above it
// needs a try block, and EINTR is absorbed here (a signal is not an error).
//
// Thread-safety: as ZeroMQ's: a socket is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"

namespace edgekv::client::internal {

using Frames = std::vector<zmq::message_t>;

// A context for one Client or Subscription: one I/O thread is plenty for one socket.
Result<std::unique_ptr<zmq::context_t>> make_context();

// A socket of `type` with ZMQ_LINGER 0 (closing it discards anything unsent), the given
// cap on incoming message size (<= 0: none), connected to `endpoint`, and subscribed to
// each of `prefixes` when it is a SUB socket.
Result<std::unique_ptr<zmq::socket_t>> connect_socket(zmq::context_t& context,
                                                      zmq::socket_type type,
                                                      const std::string& endpoint,
                                                      int64_t max_message_bytes,
                                                      const std::vector<std::string>& prefixes);

// A SUB socket as connect_socket makes one, watched: before it connects, a PAIR socket is
// connected to its monitor (at `monitor_endpoint`, an inproc address unique in the
// context), which reports each completed handshake and each disconnection, so a
// subscriber knows when events may have been missed. receive_hwm bounds the messages
// queued for the caller (0: ZeroMQ's default).
struct MonitoredSocket {
  std::unique_ptr<zmq::socket_t> monitor;  // declared first: closed after the socket
  std::unique_ptr<zmq::socket_t> socket;
};
Result<MonitoredSocket> connect_monitored_sub(zmq::context_t& context, const std::string& endpoint,
                                              int64_t max_message_bytes, int receive_hwm,
                                              const std::vector<std::string>& prefixes,
                                              const std::string& monitor_endpoint);

// What a monitor reported: the ZMQ_EVENT_* value, 0 when nothing is waiting, negative for
// a message that is not an event.
Result<int> try_receive_monitor_event(zmq::socket_t& monitor);

// Waits up to timeout_ms (negative: forever) for a message to read. false on timeout or
// when a signal interrupted the wait (callers loop on their own deadline).
Result<bool> wait_readable(zmq::socket_t& socket, int timeout_ms);

// Reads one whole multipart message without blocking; nullopt when none is waiting.
Result<std::optional<Frames>> try_receive(zmq::socket_t& socket);

// Sends one single-frame message without blocking; kUnavailable when the socket's send
// queue is full (the peer is not taking messages).
Status try_send(zmq::socket_t& socket, zmq::message_t& message, std::string_view endpoint);

inline std::string_view frame_view(const zmq::message_t& frame) {
  return {static_cast<const char*>(frame.data()), frame.size()};
}

}  // namespace edgekv::client::internal
