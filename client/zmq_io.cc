#include "client/zmq_io.h"

#include <cerrno>
#include <cstring>
#include <iterator>
#include <zmq_addon.hpp>

namespace edgekv::client::internal {
namespace {

// The one mapping from ZeroMQ errors to Status. `what` says what was being done.
Status zmq_error_status(const zmq::error_t& error, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += error.what();
  switch (error.num()) {
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO: return Status::invalid_argument(std::move(message));
    case EAGAIN:
    case EHOSTUNREACH:
    case ENOTSOCK:
    case ETERM:
    case EMFILE:
    case ENOMEM: return Status::unavailable(std::move(message));
    default: return Status::internal(std::move(message));
  }
}

}  // namespace

Result<std::unique_ptr<zmq::context_t>> make_context() {
  try {
    auto context = std::make_unique<zmq::context_t>(1);
    return context;
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot create a ZeroMQ context");
  }
}

Result<std::unique_ptr<zmq::socket_t>> connect_socket(zmq::context_t& context,
                                                      zmq::socket_type type,
                                                      const std::string& endpoint,
                                                      int64_t max_message_bytes,
                                                      const std::vector<std::string>& prefixes) {
  std::unique_ptr<zmq::socket_t> socket;
  try {
    socket = std::make_unique<zmq::socket_t>(context, type);
    socket->set(zmq::sockopt::linger, 0);
    if (max_message_bytes > 0) socket->set(zmq::sockopt::maxmsgsize, max_message_bytes);
    // Subscribing before connecting means no event that arrives once connected is missed.
    if (type == zmq::socket_type::sub) {
      for (const std::string& prefix : prefixes) {
        socket->set(zmq::sockopt::subscribe, zmq::buffer(prefix));
      }
    }
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot set up a ZeroMQ socket");
  }
  try {
    socket->connect(endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot connect to '" + endpoint + "'");
  }
  return socket;
}

Result<MonitoredSocket> connect_monitored_sub(zmq::context_t& context, const std::string& endpoint,
                                              int64_t max_message_bytes, int receive_hwm,
                                              const std::vector<std::string>& prefixes,
                                              const std::string& monitor_endpoint) {
  MonitoredSocket out;
  try {
    out.socket = std::make_unique<zmq::socket_t>(context, zmq::socket_type::sub);
    out.socket->set(zmq::sockopt::linger, 0);
    if (max_message_bytes > 0) out.socket->set(zmq::sockopt::maxmsgsize, max_message_bytes);
    if (receive_hwm > 0) out.socket->set(zmq::sockopt::rcvhwm, receive_hwm);
    for (const std::string& prefix : prefixes) {
      out.socket->set(zmq::sockopt::subscribe, zmq::buffer(prefix));
    }
    if (zmq_socket_monitor(out.socket->handle(), monitor_endpoint.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0) {
      throw zmq::error_t();
    }
    out.monitor = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pair);
    out.monitor->set(zmq::sockopt::linger, 0);
    out.monitor->connect(monitor_endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot set up a watched ZeroMQ SUB socket");
  }
  try {
    out.socket->connect(endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot connect to '" + endpoint + "'");
  }
  return out;
}

Result<int> try_receive_monitor_event(zmq::socket_t& monitor) {
  Result<std::optional<Frames>> received = try_receive(monitor);
  if (!received.ok()) return received.status();
  if (!received->has_value()) return 0;
  const Frames& frames = **received;
  // First frame: a 16-bit event id and a 32-bit value, in host order; then the endpoint.
  if (frames.empty() || frames[0].size() < 2) return -1;
  uint16_t event = 0;
  std::memcpy(&event, frames[0].data(), sizeof(event));
  return static_cast<int>(event);
}

Result<bool> wait_readable(zmq::socket_t& socket, int timeout_ms) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  try {
    return zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms < 0 ? -1 : timeout_ms)) > 0;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;
    return zmq_error_status(e, "cannot wait on a ZeroMQ socket");
  }
}

Result<std::optional<Frames>> try_receive(zmq::socket_t& socket) {
  Frames frames;
  try {
    // ZeroMQ delivers the parts of a message together: once the first is here, all are.
    if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      return std::optional<Frames>();
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::optional<Frames>();
    return zmq_error_status(e, "cannot receive from a ZeroMQ socket");
  }
  return std::optional<Frames>(std::move(frames));
}

Status try_send(zmq::socket_t& socket, zmq::message_t& message, std::string_view endpoint) {
  try {
    for (;;) {
      try {
        if (socket.send(message, zmq::send_flags::dontwait)) return Status();
        break;  // EAGAIN: the queue to the node is full
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
    }
  } catch (const zmq::error_t& e) {
    return zmq_error_status(e, "cannot send to " + std::string(endpoint));
  }
  return Status::unavailable("too many requests queued for " + std::string(endpoint) +
                             " (ZeroMQ send high-water mark reached); is edgekvd running?");
}

}  // namespace edgekv::client::internal
