// libedgekv's change-feed subscriber.
//
// Two modes:
//  - One node (SubscriptionOptions::client_endpoint empty): one SUB socket connected to a
//    node's feed endpoint (NodeStatus::feed_endpoint), subscribed to a set of key
//    prefixes. The node publishes each committed change as [key][ChangeEvent]; ZeroMQ
//    filters on the key frame, so a prefix subscription is a key-prefix filter. No
//    prefixes means every key. This mode promises what ZeroMQ PUB/SUB does: events from
//    the first moments after construction, or published while the node was unreachable or
//    the subscriber too slow, may be missed; seq is gapless per partition, so an unfiltered
//    subscriber that sees a gap can catch up with Client::changes().
//  - The cluster (client_endpoint set): the subscription asks that node for the members,
//    connects a SUB socket to every live member's feed, follows joins and departures
//    (members re-read every members_refresh_ms), and merges the feeds into one stream in
//    which each change comes once, in version order per key, whichever replicas published
//    it (feed_merge.h). It keeps a cursor (per node and partition, the highest change-log
//    seq accounted for): after each (re)connection to a node (a socket monitor reports
//    them) and every members_refresh_ms, it reads what the node logged past the cursor
//    (Client::changes_since) before taking that node's live events again. It starts at
//    the nodes' positions at construction (nothing written after is missed), or at a saved
//    cursor (options.cursor). docs/protocol.md, "Change feed", states the guarantee.
//
// Errors from next(): kTimeout when nothing arrived in time; kCorruption for a message
// that is not a well-formed [key][ChangeEvent] (the subscription stays usable: call next()
// again); kFailedPrecondition, in the cluster mode, when changes were lost before they
// could be read back (trimmed from a node's change log; the message names the node,
// partition and seqs) or a node's log is behind the cursor (call next() again);
// kInvalidArgument for an endpoint that is not a ZeroMQ address or a cursor that does not
// parse, and in the cluster mode the error of the first members request when no node
// answers it (every call).
//
// Bounded: per node at most receive_hwm live messages are queued (then the node drops a
// subscriber that does not read, which is a disconnection, recovered by reading back), one
// page of read-back events (the node bounds its replies), and the de-duplicator's
// DedupOptions::max_bytes.
//
// Thread-safety: none; one thread at a time, as Client.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/feed_merge.h"
#include "client/types.h"
#include "common/status.h"

namespace edgekv::client {

inline constexpr std::string_view kDefaultFeedEndpoint = "tcp://127.0.0.1:7403";

struct SubscriptionOptions {
  std::string feed_endpoint = std::string(kDefaultFeedEndpoint);
  std::vector<std::string> prefixes;  // binary-safe; empty: everything
  // Largest feed message accepted; see ClientOptions::max_reply_bytes.
  int64_t max_message_bytes = 64 * 1024 * 1024;

  // ---- the cluster mode
  // A node's client endpoint: when set, the subscription covers the whole cluster it
  // belongs to, and feed_endpoint is not used.
  std::string client_endpoint;
  // How often the members are re-read (joins, departures), and each connected node's log
  // read past the cursor as a safety net. Must be positive.
  int members_refresh_ms = 5000;
  // Timeout of each request to a node (members, read-back).
  int request_timeout_ms = 2000;
  // Live messages queued per node before ZeroMQ stops reading its connection.
  int receive_hwm = 10000;
  // Events per read-back request (0: the node's default, 1000).
  uint32_t read_back_max_events = 0;
  DedupOptions dedup;
  // A cursor saved with Subscription::cursor(), to resume from; empty: start now.
  std::string cursor;
};

struct SubscriptionCounters {
  uint64_t live_events = 0;       // events taken from the nodes' feeds
  uint64_t read_back_events = 0;  // events taken from read-back requests
  uint64_t read_backs = 0;        // read-back requests answered
  uint64_t connects = 0;          // handshakes completed with a node's feed
  uint64_t disconnects = 0;
  uint64_t already_accounted = 0;  // events at or below the cursor
  DedupCounters dedup;
};

class Subscription {
 public:
  explicit Subscription(SubscriptionOptions options);
  ~Subscription();
  Subscription(Subscription&&) noexcept;
  Subscription& operator=(Subscription&&) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The next event, waiting up to timeout_ms for it (0: don't wait; negative: forever).
  Result<ChangeEvent> next(int timeout_ms);

  const SubscriptionOptions& options() const;

  // The cluster mode's cursor as text, for SubscriptionOptions::cursor: it accounts for
  // every event next() returned (and every one it skipped) so far. Empty in the one-node
  // mode. It carries the de-duplicator's 1000 newest keys, so resuming from it does not
  // deliver again a change whose copies from other replicas were not read yet when it was
  // taken, unless over 1000 newer changes were delivered after that one.
  std::string cursor() const;
  SubscriptionCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Makes a feed endpoint that a node reported connectable from here: a node bound to every
// interface reports "tcp://*:7403" or "tcp://0.0.0.0:7403" (or "[::]"), which names no host
// to connect to, so the host is taken from the endpoint used to reach the node. Anything
// else is returned as it is.
std::string connectable_feed_endpoint(std::string_view feed_endpoint,
                                      std::string_view client_endpoint);

}  // namespace edgekv::client
