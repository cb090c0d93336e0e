// The peer channel's transport: carries replication traffic (batches of peer messages,
// cluster/peer_codec.h) between edgekvd processes over ZeroMQ.
//
// Each node binds one ROUTER socket at its peer endpoint (its inbox) and keeps one DEALER
// socket per peer it talks to, connected to that peer's inbox. Every message, request or
// reply, travels from the sender's DEALER to the receiver's ROUTER as one frame (a batch);
// the ROUTER is never written to. A reply is just a message back to the requester's inbox
// through the replier's own DEALER, so each direction is one socket pair and neither side
// depends on the other's routing identities. Who sent a batch is in the batch itself, not
// in the socket identity.
//
// Peers are connected as soon as membership names them (connect()), so that the TCP
// connection is up before the first request; a DEALER sends only over a completed
// connection (ZMQ_IMMEDIATE), so a request to a peer that is down fails at once and is
// counted instead of queueing for a peer that may return minutes later with stale requests.
//
// Held batches (send_or_hold): a node that just started answers requests from peers its
// membership has not named yet, and a connection opened when a peer came back up takes a
// moment to complete; a batch sent then would be lost and its requests would wait for
// their timeout. Such a batch waits instead, in order, for at most hold_max_age, and is
// retried every few milliseconds (retry_held, at held_retry_at()) until the node has a
// completed connection. What waits is bounded in bytes, per node and in all, and in nodes;
// past a bound, or too old, a batch is dropped and counted as before.
//
// Bounds: a batch received larger than max_batch_bytes is refused by ZeroMQ before it is
// read (the connection is dropped); each DEALER queues at most send_hwm batches and each
// inbound connection receive_hwm. What those queues hold belongs to requests in flight,
// which the coordinator bounds in bytes (max-inflight-bytes). Nothing here blocks.
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
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/status.h"

namespace edgekv::daemon {

struct PeerTransportOptions {
  std::string endpoint;  // where the inbox binds (peer-endpoint); tcp://HOST:* picks a port
  // Largest batch accepted: the largest message (a value of max-value-bytes with its key)
  // plus what the sender may add around it.
  int64_t max_batch_bytes = 8 << 20;
  // Batches a DEALER queues for its peer before sends fail. Each batch holds one loop
  // turn's messages to that peer; a healthy peer drains them far faster than they come.
  int send_hwm = 64;
  // Batches the inbox queues per sender before ZeroMQ stops reading that connection.
  int receive_hwm = 256;
  // How soon a lost connection is retried, at most.
  int reconnect_max_ms = 1000;
  // Held batches (see the top of this file): how long one waits at most (well inside
  // request-timeout-ms), and how many bytes wait per node and in all, for how many nodes.
  std::chrono::milliseconds hold_max_age{500};
  int64_t hold_bytes = 4 << 20;
  int64_t hold_bytes_total = 16 << 20;
  size_t hold_nodes_max = 64;
};

struct PeerTransportCounters {
  uint64_t batches_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t batches_received = 0;
  uint64_t bytes_received = 0;
  uint64_t send_failed = 0;         // no connection to the peer, or its queue was full
  uint64_t batches_held = 0;        // send_or_hold: waited for a connection
  uint64_t held_sent = 0;           // of those, sent once it was up
  uint64_t held_dropped = 0;        // of those, dropped: too old (also counted in send_failed)
  uint64_t receive_malformed = 0;   // inbox messages that were not [identity][batch]
  uint64_t peers_connected = 0;     // DEALER sockets opened
  uint64_t peers_disconnected = 0;  // closed
};

class PeerTransport {
 public:
  using Deliver = std::function<void(std::string_view batch)>;

  // Binds the inbox. UNAVAILABLE naming peer-endpoint when the bind fails.
  static Result<std::unique_ptr<PeerTransport>> open(zmq::context_t& context,
                                                     PeerTransportOptions options);
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // The endpoint the inbox is bound to (with the port ZeroMQ chose, if it chose one).
  const std::string& endpoint() const { return bound_endpoint_; }
  // The inbox socket, for the event loop to poll.
  zmq::socket_t& inbox() { return inbox_; }

  // Opens (or re-points) the DEALER to `node`'s inbox at `endpoint`. Idempotent for the
  // same endpoint; a new endpoint replaces the socket.
  void connect(const std::string& node, const std::string& endpoint);
  // Closes the socket to `node`, dropping what it still queues.
  void disconnect(std::string_view node);
  bool connected(std::string_view node) const { return peers_.contains(node); }

  // Sends one batch to `node`. False (and counted) when there is no socket for the node,
  // no completed connection, or its queue is full: the batch is dropped and the requests
  // in it time out, as if it had been lost on the way.
  bool send(std::string_view node, std::string_view batch);
  // Sends one batch to `node` now, or holds it until the node has a completed connection
  // (behind any batch already held for it). False (and counted in send_failed) only when
  // it could not be held either: past a bound, it is dropped as send() drops it.
  bool send_or_hold(std::string_view node, std::string_view batch, MonoTime now);
  // Sends what is held to nodes whose connection is up now, in order, and drops what is
  // older than hold_max_age.
  void retry_held(MonoTime now);
  // When retry_held should run next (MonoTime::max() when nothing is held).
  MonoTime held_retry_at() const { return held_.empty() ? MonoTime::max() : next_retry_; }
  uint64_t held_bytes() const { return held_bytes_; }

  // Hands at most `receive_max` batches from the inbox to `deliver`; returns how many.
  size_t receive(const Deliver& deliver, size_t receive_max);

  size_t peers() const { return peers_.size(); }
  const PeerTransportCounters& counters() const { return counters_; }

 private:
  struct Peer {
    std::string endpoint;
    std::unique_ptr<zmq::socket_t> socket;
  };

  struct Held {
    MonoTime at;
    std::string batch;
  };
  struct HeldQueue {
    std::deque<Held> batches;  // oldest first
    uint64_t bytes = 0;
  };
  // How often held batches are tried again.
  static constexpr std::chrono::milliseconds kHoldRetry{5};

  PeerTransport(zmq::context_t& context, PeerTransportOptions options);
  // Sends without counting a failure.
  bool try_send(std::string_view node, std::string_view batch);
  // Sends what `queue` holds for `node` until a send fails; drops what is too old.
  void drain(const std::string& node, HeldQueue& queue, MonoTime now);

  zmq::context_t& context_;
  PeerTransportOptions options_;
  zmq::socket_t inbox_;
  std::string bound_endpoint_;
  std::map<std::string, Peer, std::less<>> peers_;      // by node id
  std::map<std::string, HeldQueue, std::less<>> held_;  // by node id
  uint64_t held_bytes_ = 0;
  MonoTime next_retry_{};
  PeerTransportCounters counters_;
};

}  // namespace edgekv::daemon
