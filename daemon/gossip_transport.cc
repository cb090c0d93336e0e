#include "daemon/gossip_transport.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <zmq_addon.hpp>

#include "common/log.h"

namespace edgekv::daemon {
namespace {

// Ends every topic. Node ids never contain it, so no topic is a prefix of another.
constexpr char kTopicEnd = '\0';
// The broadcast topic's name: not a valid node id.
constexpr std::string_view kBroadcastName = "*";
// How often maintain() looks for aged messages and idle sockets.
constexpr std::chrono::milliseconds kMaintenanceInterval{250};
// Subscription messages are one byte of kind and a topic: a node id (64 bytes) at most.
constexpr int64_t kSubscriptionBytesMax = 256;

}  // namespace

std::string gossip_topic(std::string_view node_id) {
  std::string topic(node_id.empty() ? kBroadcastName : node_id);
  topic += kTopicEnd;
  return topic;
}

GossipTransport::GossipTransport(zmq::context_t& context, GossipTransportOptions options)
    : context_(context), options_(std::move(options)), inbox_(context, zmq::socket_type::sub) {}

GossipTransport::~GossipTransport() = default;

Result<std::unique_ptr<GossipTransport>> GossipTransport::open(zmq::context_t& context,
                                                               GossipTransportOptions options) {
  std::unique_ptr<GossipTransport> transport(new GossipTransport(context, std::move(options)));
  const GossipTransportOptions& o = transport->options_;
  zmq::socket_t& inbox = transport->inbox_;
  try {
    inbox.set(zmq::sockopt::linger, 0);
    inbox.set(zmq::sockopt::rcvhwm, o.receive_hwm);
    inbox.set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
    inbox.set(zmq::sockopt::subscribe, gossip_topic(o.self_id));
    inbox.set(zmq::sockopt::subscribe, gossip_topic(""));
    inbox.bind(o.endpoint);
    transport->bound_endpoint_ = inbox.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::unavailable("cannot bind gossip-endpoint " + o.endpoint + ": " + e.what());
  }
  return transport;
}

void GossipTransport::send(const gossip::Outgoing& message, MonoTime now) {
  Peer* peer = peer_for(message.to_endpoint, now);
  if (peer == nullptr) {
    ++counters_.send_dropped;
    return;
  }
  peer->last_used = now;
  read_subscriptions(*peer);
  flush(*peer, now);
  std::string topic = gossip_topic(message.to_id);
  if (peer->pending.empty() && peer->subscribed.contains(topic)) {
    send_now(*peer, topic, message.bytes);
    return;
  }
  if (peer->pending.size() >= options_.pending_max) {
    peer->pending.pop_front();
    ++counters_.send_dropped;
  }
  peer->pending.push_back(Pending{std::move(topic), message.bytes, now});
}

GossipTransport::Peer* GossipTransport::peer_for(const std::string& endpoint, MonoTime now) {
  if (auto it = peers_.find(endpoint); it != peers_.end()) return &it->second;
  if (!open_tokens_started_) {
    open_tokens_started_ = true;
    open_tokens_ = options_.peers_open_burst;
    open_tokens_at_ = now;
  } else if (now > open_tokens_at_) {
    double elapsed_s = std::chrono::duration<double>(now - open_tokens_at_).count();
    open_tokens_ =
        std::min(options_.peers_open_burst, open_tokens_ + elapsed_s * options_.peers_open_per_s);
    open_tokens_at_ = now;
  }
  if (open_tokens_ < 1) {
    ++counters_.peers_deferred;  // SWIM tolerates the loss; it sends again later
    return nullptr;
  }
  open_tokens_ -= 1;
  if (peers_.size() >= options_.peers_max) {
    auto oldest = std::min_element(peers_.begin(), peers_.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    close_peer(oldest);
  }
  auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::xpub);
  try {
    socket->set(zmq::sockopt::linger, 0);
    socket->set(zmq::sockopt::sndhwm, options_.send_hwm);
    socket->set(zmq::sockopt::maxmsgsize, kSubscriptionBytesMax);
    socket->set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(options_.reconnect_max.count()));
    socket->connect(endpoint);
  } catch (const zmq::error_t& e) {
    // The endpoint came from a peer's gossip or from the seeds; it is not ours to trust.
    EDGEKV_LOG(kDebug) << "gossip: cannot connect to " << endpoint << ": " << e.what();
    return nullptr;
  }
  ++counters_.peers_opened;
  Peer& peer = peers_[endpoint];
  peer.socket = std::move(socket);
  peer.last_used = now;
  return &peer;
}

void GossipTransport::read_subscriptions(Peer& peer) {
  for (;;) {
    zmq::message_t message;
    zmq::recv_result_t got;
    try {
      got = peer.socket->recv(message, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      return;
    }
    if (!got) return;
    std::string_view bytes = message.to_string_view();
    if (bytes.empty()) continue;
    std::string topic(bytes.substr(1));
    if (bytes.front() == 1) {
      peer.subscribed.insert(std::move(topic));
    } else if (bytes.front() == 0) {
      peer.subscribed.erase(topic);
    }
  }
}

void GossipTransport::flush(Peer& peer, MonoTime now) {
  if (peer.pending.empty()) return;
  std::deque<Pending> kept;
  for (Pending& message : peer.pending) {
    if (now - message.queued_at > options_.pending_max_age) {
      ++counters_.send_dropped;
    } else if (peer.subscribed.contains(message.topic)) {
      send_now(peer, message.topic, message.datagram);
    } else {
      kept.push_back(std::move(message));
    }
  }
  peer.pending.swap(kept);
}

bool GossipTransport::send_now(Peer& peer, std::string_view topic, std::string_view datagram) {
  try {
    // A PUB-family socket never blocks: over its high-water mark it drops the message.
    peer.socket->send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    peer.socket->send(zmq::buffer(datagram), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    EDGEKV_LOG(kDebug) << "gossip: send failed: " << e.what();
    ++counters_.send_dropped;
    return false;
  }
  ++counters_.sent;
  return true;
}

void GossipTransport::append_poll_items(std::vector<zmq::pollitem_t>* items) {
  items->push_back({inbox_.handle(), 0, ZMQ_POLLIN, 0});
  polled_.clear();
  for (auto& [endpoint, peer] : peers_) {
    if (peer.pending.empty()) continue;
    items->push_back({peer.socket->handle(), 0, ZMQ_POLLIN, 0});
    polled_.push_back(endpoint);
  }
}

void GossipTransport::on_poll(std::span<const zmq::pollitem_t> items, MonoTime now,
                              const Deliver& deliver, size_t receive_max) {
  for (size_t i = 1; i < items.size() && i - 1 < polled_.size(); ++i) {
    if (!(items[i].revents & ZMQ_POLLIN)) continue;
    auto it = peers_.find(polled_[i - 1]);
    if (it == peers_.end()) continue;
    read_subscriptions(it->second);
    flush(it->second, now);
  }
  polled_.clear();
  if (!items.empty() && (items[0].revents & ZMQ_POLLIN)) receive(deliver, receive_max);
}

size_t GossipTransport::receive(const Deliver& deliver, size_t receive_max) {
  const std::string own_topic = gossip_topic(options_.self_id);
  const std::string broadcast_topic = gossip_topic("");
  std::vector<zmq::message_t> frames;
  size_t delivered = 0;
  for (size_t i = 0; i < receive_max; ++i) {
    frames.clear();
    zmq::recv_result_t got;
    try {
      got = zmq::recv_multipart(inbox_, std::back_inserter(frames), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      EDGEKV_LOG(kWarning) << "gossip: inbox receive failed: " << e.what();
      break;
    }
    if (!got) break;
    if (frames.size() != 2 || (frames[0].to_string_view() != own_topic &&
                               frames[0].to_string_view() != broadcast_topic)) {
      ++counters_.receive_malformed;
      continue;
    }
    ++counters_.received;
    ++delivered;
    deliver(frames[1].to_string_view());
  }
  return delivered;
}

void GossipTransport::maintain(MonoTime now) {
  if (now < next_maintenance_) return;
  next_maintenance_ = now + kMaintenanceInterval;
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& peer = it->second;
    if (now - peer.last_used > options_.idle_close) {
      counters_.send_dropped += peer.pending.size();
      close_peer(it++);
      continue;
    }
    if (!peer.pending.empty()) {
      read_subscriptions(peer);
      flush(peer, now);
    }
    ++it;
  }
}

void GossipTransport::forget(std::string_view endpoint) {
  auto it = peers_.find(endpoint);
  if (it == peers_.end()) return;
  counters_.send_dropped += it->second.pending.size();
  close_peer(it);
}

void GossipTransport::close_peer(std::map<std::string, Peer, std::less<>>::iterator it) {
  ++counters_.peers_closed;
  peers_.erase(it);  // linger 0: whatever the socket still holds is dropped
}

void GossipTransport::set_linger_for_shutdown(std::chrono::milliseconds linger) {
  for (auto& [endpoint, peer] : peers_) {
    try {
      peer.socket->set(zmq::sockopt::linger, static_cast<int>(linger.count()));
    } catch (const zmq::error_t&) {
    }
  }
}

size_t GossipTransport::pending() const {
  size_t total = 0;
  for (const auto& [endpoint, peer] : peers_) total += peer.pending.size();
  return total;
}

}  // namespace edgekv::daemon
