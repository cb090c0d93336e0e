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
// Bounds: a batch received larger than max_batch_bytes is refused by ZeroMQ before it is
// read (the connection is dropped); each DEALER queues at most send_hwm batches and each
// inbound connection receive_hwm. What those queues hold belongs to requests in flight,
// which the coordinator bounds in bytes (max-inflight-bytes). Nothing here blocks.
//
// Thread-safety: none. The network thread owns the transport and its sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

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
};

struct PeerTransportCounters {
  uint64_t batches_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t batches_received = 0;
  uint64_t bytes_received = 0;
  uint64_t send_failed = 0;         // no connection to the peer, or its queue was full
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

  // Hands at most `receive_max` batches from the inbox to `deliver`; returns how many.
  size_t receive(const Deliver& deliver, size_t receive_max);

  size_t peers() const { return peers_.size(); }
  const PeerTransportCounters& counters() const { return counters_; }

 private:
  struct Peer {
    std::string endpoint;
    std::unique_ptr<zmq::socket_t> socket;
  };

  PeerTransport(zmq::context_t& context, PeerTransportOptions options);

  zmq::context_t& context_;
  PeerTransportOptions options_;
  zmq::socket_t inbox_;
  std::string bound_endpoint_;
  std::map<std::string, Peer, std::less<>> peers_;  // by node id
  PeerTransportCounters counters_;
};

}  // namespace edgekv::daemon
