// libedgekv's change-feed subscriber.
//
// What it owns: a ZeroMQ context and one SUB socket connected to a node's feed endpoint
// (NodeStatus::feed_endpoint), subscribed to a set of key prefixes. The node publishes each
// committed change as [key][ChangeEvent]; ZeroMQ filters on the key frame, so a prefix
// subscription is a key-prefix filter. No prefixes means every key.
//
// What it does not promise, because ZeroMQ PUB/SUB does not:
//  - The slow joiner: connecting takes a moment, and a subscription only sees events
//    published after its connection (and subscription) reached the node. Events from the
//    first few milliseconds after construction may be missed; so may events published
//    while the node was unreachable.
//  - A subscriber that falls behind loses events once ZeroMQ's queue (high-water mark)
//    fills. seq is gapless per partition, so an unfiltered subscriber that sees a gap can
//    catch up with Client::changes().
//
// Errors from next(): kTimeout when nothing arrived in time; kCorruption for a message
// that is not a well-formed [key][ChangeEvent] (the subscription stays usable: call next()
// again); kInvalidArgument for a feed endpoint that is not a ZeroMQ address (every call).
//
// Thread-safety: none; one thread at a time, as Client.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/types.h"
#include "common/status.h"

namespace edgekv::client {

inline constexpr std::string_view kDefaultFeedEndpoint = "tcp://127.0.0.1:7403";

struct SubscriptionOptions {
  std::string feed_endpoint = std::string(kDefaultFeedEndpoint);
  std::vector<std::string> prefixes;  // binary-safe; empty: everything
  // Largest feed message accepted; see ClientOptions::max_reply_bytes.
  int64_t max_message_bytes = 64 * 1024 * 1024;
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
