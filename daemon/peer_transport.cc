#include "daemon/peer_transport.h"

#include <iterator>
#include <utility>
#include <zmq_addon.hpp>

#include "common/log.h"

namespace edgekv::daemon {

PeerTransport::PeerTransport(zmq::context_t& context, PeerTransportOptions options)
    : context_(context), options_(std::move(options)), inbox_(context, zmq::socket_type::router) {}

PeerTransport::~PeerTransport() = default;

Result<std::unique_ptr<PeerTransport>> PeerTransport::open(zmq::context_t& context,
                                                           PeerTransportOptions options) {
  std::unique_ptr<PeerTransport> transport(new PeerTransport(context, std::move(options)));
  const PeerTransportOptions& o = transport->options_;
  zmq::socket_t& inbox = transport->inbox_;
  try {
    inbox.set(zmq::sockopt::linger, 0);
    inbox.set(zmq::sockopt::rcvhwm, o.receive_hwm);
    inbox.set(zmq::sockopt::maxmsgsize, o.max_batch_bytes);
    inbox.bind(o.endpoint);
    transport->bound_endpoint_ = inbox.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::unavailable("cannot bind peer-endpoint " + o.endpoint + ": " + e.what());
  }
  return transport;
}

void PeerTransport::connect(const std::string& node, const std::string& endpoint) {
  auto it = peers_.find(node);
  if (it != peers_.end()) {
    if (it->second.endpoint == endpoint) return;
    peers_.erase(it);
    ++counters_.peers_disconnected;
  }
  auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  try {
    socket->set(zmq::sockopt::linger, 0);
    socket->set(zmq::sockopt::sndhwm, options_.send_hwm);
    socket->set(zmq::sockopt::immediate, 1);
    // Nothing is read on a DEALER: the peer's replies come to this node's inbox.
    socket->set(zmq::sockopt::rcvhwm, 1);
    socket->set(zmq::sockopt::reconnect_ivl_max, options_.reconnect_max_ms);
    socket->connect(endpoint);
  } catch (const zmq::error_t& e) {
    // The endpoint came from gossip; it is not ours to trust.
    EDGEKV_LOG(kWarning) << "peer channel: cannot connect to " << node << " at " << endpoint << ": "
                         << e.what();
    return;
  }
  ++counters_.peers_connected;
  peers_[node] = Peer{endpoint, std::move(socket)};
}

void PeerTransport::disconnect(std::string_view node) {
  auto it = peers_.find(node);
  if (it == peers_.end()) return;
  peers_.erase(it);
  ++counters_.peers_disconnected;
}

bool PeerTransport::send(std::string_view node, std::string_view batch) {
  if (try_send(node, batch)) return true;
  ++counters_.send_failed;
  return false;
}

bool PeerTransport::try_send(std::string_view node, std::string_view batch) {
  auto it = peers_.find(node);
  if (it == peers_.end()) return false;
  zmq::send_result_t sent;
  try {
    sent = it->second.socket->send(zmq::buffer(batch), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    EDGEKV_LOG(kDebug) << "peer channel: send to " << node << " failed: " << e.what();
    sent.reset();
  }
  if (!sent) return false;
  ++counters_.batches_sent;
  counters_.bytes_sent += batch.size();
  return true;
}

bool PeerTransport::send_or_hold(std::string_view node, std::string_view batch, MonoTime now) {
  auto held = held_.find(node);
  if (held != held_.end()) {
    drain(held->first, held->second, now);
    if (held->second.batches.empty()) {
      held_.erase(held);
      held = held_.end();
    }
  }
  if (held == held_.end() && try_send(node, batch)) return true;
  const uint64_t node_bytes = held != held_.end() ? held->second.bytes : 0;
  const bool fits =
      node_bytes + batch.size() <= static_cast<uint64_t>(options_.hold_bytes) &&
      held_bytes_ + batch.size() <= static_cast<uint64_t>(options_.hold_bytes_total) &&
      (held != held_.end() || held_.size() < options_.hold_nodes_max);
  if (!fits) {
    ++counters_.send_failed;
    return false;
  }
  if (held == held_.end()) held = held_.emplace(std::string(node), HeldQueue{}).first;
  held->second.batches.push_back(Held{now, std::string(batch)});
  held->second.bytes += batch.size();
  held_bytes_ += batch.size();
  ++counters_.batches_held;
  next_retry_ = now + kHoldRetry;
  return true;
}

void PeerTransport::drain(const std::string& node, HeldQueue& queue, MonoTime now) {
  while (!queue.batches.empty()) {
    Held& front = queue.batches.front();
    if (now - front.at > options_.hold_max_age) {
      ++counters_.held_dropped;
      ++counters_.send_failed;
    } else if (try_send(node, front.batch)) {
      ++counters_.held_sent;
    } else {
      return;  // no completed connection yet: the rest wait behind it
    }
    queue.bytes -= front.batch.size();
    held_bytes_ -= front.batch.size();
    queue.batches.pop_front();
  }
}

void PeerTransport::retry_held(MonoTime now) {
  for (auto it = held_.begin(); it != held_.end();) {
    drain(it->first, it->second, now);
    it = it->second.batches.empty() ? held_.erase(it) : std::next(it);
  }
  next_retry_ = now + kHoldRetry;
}

size_t PeerTransport::receive(const Deliver& deliver, size_t receive_max) {
  std::vector<zmq::message_t> frames;
  size_t delivered = 0;
  for (size_t i = 0; i < receive_max; ++i) {
    frames.clear();
    zmq::recv_result_t got;
    try {
      got = zmq::recv_multipart(inbox_, std::back_inserter(frames), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      EDGEKV_LOG(kWarning) << "peer channel: inbox receive failed: " << e.what();
      break;
    }
    if (!got) break;
    if (frames.size() != 2) {
      ++counters_.receive_malformed;
      continue;
    }
    ++counters_.batches_received;
    counters_.bytes_received += frames[1].size();
    ++delivered;
    deliver(frames[1].to_string_view());
  }
  return delivered;
}

}  // namespace edgekv::daemon
