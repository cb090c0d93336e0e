#include "daemon/peer_transport.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace edgekv::daemon {
namespace {

using Clock = std::chrono::steady_clock;

// A transport with `options` on a free loopback port.
std::unique_ptr<PeerTransport> open_with(zmq::context_t& context, PeerTransportOptions options) {
  options.endpoint = "tcp://127.0.0.1:*";
  auto transport = PeerTransport::open(context, options);
  EXPECT_TRUE(transport.ok()) << transport.status().to_string();
  return std::move(transport).value();
}

std::unique_ptr<PeerTransport> open_on_free_port(zmq::context_t& context,
                                                 int64_t max_batch_bytes = 1 << 20) {
  PeerTransportOptions options;
  options.max_batch_bytes = max_batch_bytes;
  return open_with(context, options);
}

// Waits up to `deadline_ms` for the inbox to deliver a batch, polling it (no sleeps).
std::vector<std::string> receive_within(PeerTransport& to, int deadline_ms, size_t want = 1) {
  std::vector<std::string> got;
  const auto deadline = Clock::now() + std::chrono::milliseconds(deadline_ms);
  while (got.size() < want && Clock::now() < deadline) {
    zmq::pollitem_t item{to.inbox().handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(50));
    to.receive([&](std::string_view batch) { got.emplace_back(batch); }, 16);
  }
  return got;
}

// Sends `batch` until it arrives: a send over no completed connection fails at once, and
// one taken by a connection that is being torn down is lost, as on any network. Between
// attempts it waits on the receiver's inbox (no sleeps). Returns everything that arrived
// until `batch` did, copies and earlier batches included.
std::vector<std::string> deliver(PeerTransport& from, PeerTransport& to, const std::string& node,
                                 const std::string& batch) {
  std::vector<std::string> got;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    from.send(node, batch);
    for (std::string& arrived : receive_within(to, 100)) got.push_back(std::move(arrived));
    for (const std::string& arrived : got) {
      if (arrived == batch) return got;
    }
  }
  return got;
}

TEST(PeerTransport, BatchTravelsFromDealerToTheInbox) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  auto b = open_on_free_port(context);
  a->connect("b", b->endpoint());
  EXPECT_TRUE(a->connected("b"));
  std::string batch(100000, 'x');
  batch[0] = 'y';
  auto got = deliver(*a, *b, "b", batch);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), batch);
  EXPECT_EQ(b->counters().batches_received, got.size());
  EXPECT_EQ(b->counters().bytes_received, batch.size() * got.size());
  EXPECT_GE(a->counters().batches_sent, 1u);
}

TEST(PeerTransport, SendingToAnUnknownNodeFailsAndIsCounted) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  EXPECT_FALSE(a->send("nobody", "batch"));
  EXPECT_EQ(a->counters().send_failed, 1u);
}

TEST(PeerTransport, SendingToAPeerThatIsDownFailsAtOnce) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  std::string endpoint;
  {
    // A context of its own: closing a socket hands it to the context's I/O thread, which
    // stops listening a moment later; terminating the context waits until it has, so a
    // connect below cannot reach a listener still closing.
    zmq::context_t b_context(1);
    auto b = open_on_free_port(b_context);
    endpoint = b->endpoint();
    b.reset();
  }  // b is gone: nothing listens on its port
  a->connect("b", endpoint);
  EXPECT_FALSE(a->send("b", "request"));
  EXPECT_EQ(a->counters().send_failed, 1u);
  EXPECT_EQ(a->counters().batches_sent, 0u);
}

TEST(PeerTransport, OversizedBatchIsRefusedAndLaterOnesStillArrive) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  auto b = open_on_free_port(context, /*max_batch_bytes=*/4096);
  a->connect("b", b->endpoint());
  ASSERT_FALSE(deliver(*a, *b, "b", "small").empty());
  ASSERT_TRUE(a->send("b", std::string(8192, 'z')));
  // The oversized batch costs its connection; ZeroMQ reconnects, and a later batch gets
  // through. Whatever arrives is never the oversized one.
  auto later = deliver(*a, *b, "b", "after");
  ASSERT_FALSE(later.empty());
  EXPECT_EQ(later.back(), "after");
  for (const std::string& batch : later) EXPECT_NE(batch.size(), 8192u);
}

TEST(PeerTransport, ReconnectingToAnotherEndpointReplacesTheSocket) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  auto b1 = open_on_free_port(context);
  auto b2 = open_on_free_port(context);
  a->connect("b", b1->endpoint());
  ASSERT_FALSE(deliver(*a, *b1, "b", "one").empty());
  a->connect("b", b2->endpoint());
  EXPECT_EQ(a->counters().peers_connected, 2u);
  EXPECT_EQ(a->counters().peers_disconnected, 1u);
  auto got = deliver(*a, *b2, "b", "two");
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), "two");
  a->disconnect("b");
  EXPECT_FALSE(a->connected("b"));
  EXPECT_EQ(a->peers(), 0u);
}

// Retries what `from` holds until `want` batches reached `to` or the deadline passed,
// waiting on the receiver's inbox between tries (no sleeps).
std::vector<std::string> held_arrive(PeerTransport& from, PeerTransport& to, size_t want) {
  std::vector<std::string> got;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (got.size() < want && Clock::now() < deadline) {
    from.retry_held(Clock::now());
    for (std::string& arrived : receive_within(to, 20, want - got.size())) {
      got.push_back(std::move(arrived));
    }
  }
  return got;
}

TEST(PeerTransport, ABatchForANodeNotConnectedYetWaitsAndGoesInOrderOnceItIs) {
  // A node that just started answers a peer its membership has not named yet: the answers
  // wait, in order, until the peer is connected, instead of being lost.
  zmq::context_t context(1);
  PeerTransportOptions options;
  options.hold_max_age = std::chrono::seconds(30);  // however slow the machine
  auto a = open_with(context, options);
  auto b = open_on_free_port(context);
  const auto now = Clock::now();
  EXPECT_EQ(a->held_retry_at(), MonoTime::max());
  ASSERT_TRUE(a->send_or_hold("b", "first", now));
  ASSERT_TRUE(a->send_or_hold("b", "second", now));
  EXPECT_EQ(a->counters().batches_held, 2u);
  EXPECT_EQ(a->counters().send_failed, 0u);
  EXPECT_EQ(a->held_bytes(), 11u);
  EXPECT_LE(a->held_retry_at(), now + std::chrono::milliseconds(50));
  a->connect("b", b->endpoint());
  // A batch sent meanwhile goes behind the held ones (held too, unless the connection is up
  // already and they went first).
  ASSERT_TRUE(a->send_or_hold("b", "third", Clock::now()));
  auto got = held_arrive(*a, *b, 3);
  ASSERT_EQ(got, (std::vector<std::string>{"first", "second", "third"}));
  EXPECT_GE(a->counters().batches_held, 2u);
  EXPECT_EQ(a->counters().held_sent, a->counters().batches_held);
  EXPECT_EQ(a->counters().held_dropped, 0u);
  EXPECT_EQ(a->counters().send_failed, 0u);
  EXPECT_EQ(a->held_bytes(), 0u);
  EXPECT_EQ(a->held_retry_at(), MonoTime::max());
}

TEST(PeerTransport, HeldBatchesAreBoundedInBytesAndAge) {
  zmq::context_t context(1);
  PeerTransportOptions options;
  options.hold_bytes = 10;
  options.hold_bytes_total = 15;
  options.hold_nodes_max = 2;
  options.hold_max_age = std::chrono::milliseconds(100);
  auto a = open_with(context, options);
  const auto now = Clock::now();
  EXPECT_TRUE(a->send_or_hold("b", "12345678", now));
  EXPECT_FALSE(a->send_or_hold("b", "123", now));  // over the node's 10 bytes
  EXPECT_TRUE(a->send_or_hold("c", "1234567", now));
  EXPECT_FALSE(a->send_or_hold("c", "1", now));  // over 15 in all
  EXPECT_FALSE(a->send_or_hold("d", "", now));   // a third node
  EXPECT_EQ(a->counters().batches_held, 2u);
  EXPECT_EQ(a->counters().send_failed, 3u);
  EXPECT_EQ(a->held_bytes(), 15u);
  // Too old: dropped, and counted as failed sends.
  a->retry_held(now + std::chrono::milliseconds(101));
  EXPECT_EQ(a->counters().held_dropped, 2u);
  EXPECT_EQ(a->counters().send_failed, 5u);
  EXPECT_EQ(a->held_bytes(), 0u);
  EXPECT_EQ(a->held_retry_at(), MonoTime::max());
}

TEST(PeerTransport, BindFailureNamesTheOption) {
  zmq::context_t context(1);
  auto a = open_on_free_port(context);
  PeerTransportOptions options;
  options.endpoint = a->endpoint();
  auto b = PeerTransport::open(context, options);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("peer-endpoint"), std::string::npos);
}

}  // namespace
}  // namespace edgekv::daemon
