// The gossip transport: carries the SWIM machine's datagrams (gossip/swim.h) over ZeroMQ
// PUB/SUB between edgekvd processes.
//
// Inbox: each node binds one SUB socket at its gossip endpoint, subscribed to two topics:
// its own node id and the broadcast topic. Outbox: one XPUB socket per peer gossip
// endpoint, connected on the first message to that endpoint. A message is two frames,
//
//   [topic][datagram]      topic = NODE_ID "\0"  (or "*\0", the broadcast topic)
//
// The NUL terminator keeps ZeroMQ's prefix matching exact: node ids are [A-Za-z0-9._-],
// so "n1\0" is never a prefix of "n10\0", and "*\0" is nobody's id. A message to a node id
// is dropped by the publisher unless the SUB at the other end subscribed to that id, so it
// never reaches another node that took over the endpoint. A message on the broadcast topic
// (a join to a seed known only by its endpoint) goes out on that endpoint's socket only,
// so it too reaches just the one node bound there.
//
// The slow joiner: a PUB socket drops what it is given before the subscriber's
// subscription has arrived. The peer sockets are XPUBs so that the transport sees the
// subscriptions arrive: until the topic a message needs is subscribed, the message waits
// in a small per-peer queue (pending_max messages, pending_max_age old at most), and goes
// out when the subscription arrives. When the peer goes away its subscriptions are
// withdrawn (XPUB reports that too) and messages wait again until it is back. SWIM
// tolerates loss, so what overflows or ages out of the queue is dropped and counted.
//
// Bounds: every socket has a send high-water mark and no linger (closing one drops what it
// still holds); at most peers_max peer sockets are open (the least recently used is closed
// to make room), and new ones open at most peers_open_per_s (after a burst); a peer socket
// unused for idle_close is closed; the inbox refuses frames
// over max_message_bytes (ZeroMQ drops the connection) and holds at most receive_hwm
// messages per sender. Nothing here blocks: every send and receive is non-blocking.
//
// Thread-safety: none. The network thread owns the transport and its sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "gossip/swim.h"

namespace edgekv::daemon {

struct GossipTransportOptions {
  std::string self_id;   // this node's id: the inbox subscribes to it
  std::string endpoint;  // where the inbox binds; tcp://HOST:* picks a free port
  // Messages a peer socket queues in ZeroMQ before dropping. A healthy peer reads far
  // faster than gossip sends; the bound only matters for one that stopped reading.
  int send_hwm = 256;
  // Messages the inbox queues per sender before dropping; SWIM sends a few per period.
  int receive_hwm = 4096;
  // Largest datagram accepted. A full-state push-pull of a few hundred members fits; a
  // larger frame is refused by ZeroMQ before it is read into memory.
  int64_t max_message_bytes = 1 << 20;
  // Peer sockets open at once. A cluster of a few hundred members needs one per member.
  size_t peers_max = 1024;
  // New peer sockets opened per second, after a burst of peers_open_burst: each is a
  // connection attempt to an endpoint some (unauthenticated) gossip named, so a flood of
  // made-up members must not turn into as many connections at once. A joining node meets
  // its members at a few per protocol period; a 128-node view fits in the burst.
  double peers_open_per_s = 64;
  double peers_open_burst = 256;
  // Messages waiting per peer for its subscription (the slow joiner), and how long one
  // may wait. A probe older than that is useless to SWIM anyway.
  size_t pending_max = 64;
  std::chrono::milliseconds pending_max_age{2000};
  // A peer socket nobody sent on for this long is closed.
  std::chrono::milliseconds idle_close{60000};
  // How soon a lost connection to a peer is retried, at most (ZeroMQ backs off up to it).
  std::chrono::milliseconds reconnect_max{1000};
};

struct GossipTransportCounters {
  uint64_t sent = 0;               // messages handed to a peer socket
  uint64_t received = 0;           // datagrams delivered from the inbox
  uint64_t send_dropped = 0;       // overflowed or aged out of a pending queue, or unsendable
  uint64_t receive_malformed = 0;  // inbox messages that were not [topic][datagram]
  uint64_t peers_opened = 0;
  uint64_t peers_closed = 0;
  uint64_t peers_deferred = 0;  // messages dropped as their new peer socket was over the rate
};

// The frame topic for `node_id` ("" for the broadcast topic).
std::string gossip_topic(std::string_view node_id);

class GossipTransport {
 public:
  using Deliver = std::function<void(std::string_view datagram)>;

  // Binds the inbox. UNAVAILABLE naming gossip-endpoint when the bind fails.
  static Result<std::unique_ptr<GossipTransport>> open(zmq::context_t& context,
                                                       GossipTransportOptions options);
  ~GossipTransport();
  GossipTransport(const GossipTransport&) = delete;
  GossipTransport& operator=(const GossipTransport&) = delete;

  // The endpoint the inbox is bound to (the port filled in when it was chosen by ZeroMQ).
  const std::string& endpoint() const { return bound_endpoint_; }

  // Sends one datagram to `message.to_endpoint`, addressed to `message.to_id` (the broadcast
  // topic when empty). Never blocks; a message that cannot go out is dropped and counted.
  void send(const gossip::Outgoing& message, MonoTime now);

  // Appends what the event loop must poll for the transport: the inbox, and the peer
  // sockets waiting for a subscription. Pass the same items back to on_poll().
  void append_poll_items(std::vector<zmq::pollitem_t>* items);
  // After zmq::poll(): `items` are exactly the ones append_poll_items() added. Flushes the
  // queues of peers whose subscription arrived, and hands at most `receive_max` datagrams
  // from the inbox to `deliver`.
  void on_poll(std::span<const zmq::pollitem_t> items, MonoTime now, const Deliver& deliver,
               size_t receive_max = 256);
  // Reads the inbox without polling first: at most `receive_max` datagrams.
  size_t receive(const Deliver& deliver, size_t receive_max = 256);

  // Drops queued messages past their age and closes idle peer sockets. Cheap; call every
  // loop turn.
  void maintain(MonoTime now);
  // Closes the socket to `endpoint`, if any (its member was forgotten).
  void forget(std::string_view endpoint);
  // Before shutdown: gives every peer socket `linger` to deliver what it holds (the leave
  // announcement) when it is closed, instead of dropping it.
  void set_linger_for_shutdown(std::chrono::milliseconds linger);

  size_t peers() const { return peers_.size(); }
  size_t pending() const;  // messages waiting for a subscription, all peers
  const GossipTransportCounters& counters() const { return counters_; }

 private:
  struct Pending {
    std::string topic;
    std::string datagram;
    MonoTime queued_at;
  };
  struct Peer {
    std::unique_ptr<zmq::socket_t> socket;
    std::set<std::string, std::less<>> subscribed;  // topics the subscriber asked for
    std::deque<Pending> pending;
    MonoTime last_used;
  };

  GossipTransport(zmq::context_t& context, GossipTransportOptions options);

  Peer* peer_for(const std::string& endpoint, MonoTime now);
  // Reads the subscription messages an XPUB socket reports.
  void read_subscriptions(Peer& peer);
  // Sends what is queued for `peer` and now subscribed; drops what is too old.
  void flush(Peer& peer, MonoTime now);
  bool send_now(Peer& peer, std::string_view topic, std::string_view datagram);
  void close_peer(std::map<std::string, Peer, std::less<>>::iterator it);

  zmq::context_t& context_;
  GossipTransportOptions options_;
  zmq::socket_t inbox_;
  std::string bound_endpoint_;
  std::map<std::string, Peer, std::less<>> peers_;  // by gossip endpoint
  std::vector<std::string> polled_;  // endpoints whose sockets follow the inbox in the poll set
  MonoTime next_maintenance_{};
  // Token bucket of peer sockets that may be opened (peers_open_per_s, peers_open_burst).
  double open_tokens_ = 0;
  MonoTime open_tokens_at_{};
  bool open_tokens_started_ = false;
  GossipTransportCounters counters_;
};

}  // namespace edgekv::daemon
