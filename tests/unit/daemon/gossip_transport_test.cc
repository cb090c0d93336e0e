// Tests of the gossip transport on loopback: real ZeroMQ sockets on ports ZeroMQ picks,
// waiting on conditions with deadlines.
#include "daemon/gossip_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/clock.h"

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kWaitMax{10000};  // generous: a loaded CI machine

// A loopback endpoint where nothing answers: the port is bound but not listening, so
// connections are refused, and nothing else can take the port while this lives.
class DeadEndpoint {
 public:
  DeadEndpoint() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~DeadEndpoint() { ::close(fd_); }
  const std::string& endpoint() const { return endpoint_; }

 private:
  int fd_;
  std::string endpoint_;
};

// One transport and everything its inbox delivered.
struct Node {
  std::unique_ptr<GossipTransport> transport;
  std::vector<std::string> received;
};

class GossipTransportTest : public ::testing::Test {
 protected:
  Node& open(const std::string& id, GossipTransportOptions options = {}) {
    options.self_id = id;
    if (options.endpoint.empty()) options.endpoint = "tcp://127.0.0.1:*";
    auto transport = GossipTransport::open(context_, options);
    // A socket closed a moment ago may still hold its port (ZeroMQ closes in the
    // background): retry a bind to a given port until it is free.
    const MonoTime deadline = clock_.mono_now() + kWaitMax;
    while (!transport.ok() && clock_.mono_now() < deadline) {
      pump_once(milliseconds(10));
      transport = GossipTransport::open(context_, options);
    }
    EXPECT_TRUE(transport.ok()) << transport.status().to_string();
    auto node = std::make_unique<Node>();
    node->transport = std::move(transport).value();
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }

  void close(Node& node) { node.transport.reset(); }

  // Polls every open transport (as the daemon's loop does) once, for at most `wait`.
  void pump_once(milliseconds wait) {
    std::vector<zmq::pollitem_t> items;
    std::vector<std::pair<Node*, size_t>> ranges;  // node, first item
    for (auto& node : nodes_) {
      if (!node->transport) continue;
      ranges.emplace_back(node.get(), items.size());
      node->transport->append_poll_items(&items);
    }
    zmq::poll(items.data(), items.size(), wait);
    const MonoTime now = clock_.mono_now();
    for (size_t i = 0; i < ranges.size(); ++i) {
      auto [node, first] = ranges[i];
      size_t end = i + 1 < ranges.size() ? ranges[i + 1].second : items.size();
      node->transport->on_poll(std::span<const zmq::pollitem_t>(items).subspan(first, end - first),
                               now, [node](std::string_view d) { node->received.emplace_back(d); });
      node->transport->maintain(now);
    }
  }

  // Pumps until `done()` holds; fails the test after kWaitMax.
  void pump_until(const std::function<bool()>& done, const std::string& what) {
    const MonoTime deadline = clock_.mono_now() + kWaitMax;
    while (!done()) {
      ASSERT_LT(clock_.mono_now(), deadline) << "timed out waiting for " << what;
      pump_once(milliseconds(10));
    }
  }

  void send(Node& from, const std::string& to_id, const Node& to, const std::string& bytes) {
    from.transport->send(gossip::Outgoing{to_id, to.transport->endpoint(), bytes},
                         clock_.mono_now());
  }

  RealClock clock_;
  zmq::context_t context_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST(GossipTopicTest, TopicsAreTerminatedSoNoneIsAPrefixOfAnother) {
  EXPECT_EQ(gossip_topic("n1"), std::string("n1\0", 3));
  EXPECT_EQ(gossip_topic(""), std::string("*\0", 2));
  EXPECT_FALSE(gossip_topic("n10").starts_with(gossip_topic("n1")));
  EXPECT_FALSE(gossip_topic("n1").starts_with(gossip_topic("n10")));
}

TEST_F(GossipTransportTest, TheFirstMessageOnANewConnectionArrives) {
  Node& a = open("a");
  Node& b = open("b");
  send(a, "b", b, "hello");  // sent before the connection exists: waits for it
  pump_until([&] { return !b.received.empty(); }, "b to receive");
  EXPECT_EQ(b.received, std::vector<std::string>{"hello"});
  EXPECT_TRUE(a.received.empty());
  EXPECT_EQ(a.transport->counters().sent, 1u);
  EXPECT_EQ(a.transport->counters().send_dropped, 0u);
  EXPECT_EQ(b.transport->counters().received, 1u);
  EXPECT_EQ(a.transport->peers(), 1u);
  EXPECT_EQ(a.transport->pending(), 0u);
}

TEST_F(GossipTransportTest, AMessageReachesOnlyTheNodeItIsAddressedTo) {
  Node& sender = open("s");
  Node& n1 = open("n1");
  Node& n10 = open("n10");
  // Addressed to the wrong node at each endpoint, in both prefix directions: neither
  // node may see them. Then one message each to the right node.
  send(sender, "n1", n10, "n1-at-n10");
  send(sender, "n10", n1, "n10-at-n1");
  send(sender, "n10", n10, "for-n10");
  send(sender, "n1", n1, "for-n1");
  pump_until([&] { return !n1.received.empty() && !n10.received.empty(); }, "both to receive");
  // Messages on one connection arrive in order: what was sent before has arrived already.
  send(sender, "n1", n1, "again-n1");
  send(sender, "n10", n10, "again-n10");
  pump_until([&] { return n1.received.size() >= 2 && n10.received.size() >= 2; }, "the second");
  EXPECT_EQ(n1.received, (std::vector<std::string>{"for-n1", "again-n1"}));
  EXPECT_EQ(n10.received, (std::vector<std::string>{"for-n10", "again-n10"}));
  EXPECT_EQ(sender.transport->pending(), 2u);  // the misaddressed ones, until they age out
}

TEST_F(GossipTransportTest, ABroadcastGoesToTheOneEndpointItIsSentTo) {
  Node& sender = open("s");
  Node& seed = open("seed");
  Node& other = open("other");
  send(sender, "other", other, "one");
  pump_until([&] { return other.received.size() == 1; }, "the first message");
  send(sender, "", seed, "join");  // a join to a seed known by its endpoint only
  pump_until([&] { return seed.received.size() == 1; }, "the join");
  send(sender, "other", other, "two");
  pump_until([&] { return other.received.size() == 2; }, "the second message");
  EXPECT_EQ(seed.received, std::vector<std::string>{"join"});
  EXPECT_EQ(other.received, (std::vector<std::string>{"one", "two"}));
}

TEST_F(GossipTransportTest, MalformedInboxMessagesAreCountedAndDropped) {
  Node& n = open("n");
  zmq::socket_t raw(context_, zmq::socket_type::xpub);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(n.transport->endpoint());
  // Wait for the inbox's subscriptions, so nothing below is lost to the slow joiner.
  int subscriptions = 0;
  const MonoTime deadline = clock_.mono_now() + kWaitMax;
  while (subscriptions < 2) {
    ASSERT_LT(clock_.mono_now(), deadline) << "no subscription from the inbox";
    zmq::message_t sub;
    if (raw.recv(sub, zmq::recv_flags::dontwait)) {
      ++subscriptions;
    } else {
      pump_once(milliseconds(10));
    }
  }
  const std::string topic = gossip_topic("n");
  std::vector<zmq::const_buffer> three = {zmq::buffer(topic), zmq::buffer("a", 1),
                                          zmq::buffer("b", 1)};
  zmq::send_multipart(raw, three);
  raw.send(zmq::buffer(topic));  // one frame only
  std::vector<zmq::const_buffer> good = {zmq::buffer(topic), zmq::buffer("ok", 2)};
  zmq::send_multipart(raw, good);
  pump_until([&] { return !n.received.empty(); }, "the good message");
  EXPECT_EQ(n.received, std::vector<std::string>{"ok"});
  EXPECT_EQ(n.transport->counters().receive_malformed, 2u);
}

TEST_F(GossipTransportTest, MessagesToAnUnreachablePeerAreBoundedAndAgeOut) {
  GossipTransportOptions options;
  options.pending_max = 8;
  options.pending_max_age = milliseconds(50);
  Node& a = open("a", options);
  DeadEndpoint dead;
  const std::string endpoint = dead.endpoint();
  const MonoTime start = clock_.mono_now();
  for (int i = 0; i < 1000; ++i) {
    a.transport->send(gossip::Outgoing{"b", endpoint, "probe"}, start);
  }
  EXPECT_EQ(a.transport->pending(), 8u);
  EXPECT_EQ(a.transport->counters().send_dropped, 992u);
  EXPECT_EQ(a.transport->counters().sent, 0u);
  a.transport->maintain(start + milliseconds(51));
  EXPECT_EQ(a.transport->pending(), 0u);
  EXPECT_EQ(a.transport->counters().send_dropped, 1000u);
}

TEST_F(GossipTransportTest, ARestartedPeerIsReachedAgain) {
  Node& a = open("a");
  Node& b = open("b");
  const std::string endpoint = b.transport->endpoint();
  send(a, "b", b, "before");
  pump_until([&] { return b.received.size() == 1; }, "the first message");
  close(b);
  GossipTransportOptions again;
  again.endpoint = endpoint;
  Node& b2 = open("b", again);
  // Until a notices the old connection is gone, what it sends is lost (as datagrams may
  // be); SWIM sends again, and so does this loop.
  const MonoTime deadline = clock_.mono_now() + kWaitMax;
  while (b2.received.empty()) {
    ASSERT_LT(clock_.mono_now(), deadline) << "the restarted peer never received";
    a.transport->send(gossip::Outgoing{"b", endpoint, "after"}, clock_.mono_now());
    pump_once(milliseconds(20));
  }
  EXPECT_EQ(b2.received.front(), "after");
  EXPECT_EQ(a.transport->peers(), 1u);
}

TEST_F(GossipTransportTest, PeerSocketsAreBoundedForgottenAndClosedWhenIdle) {
  GossipTransportOptions options;
  options.peers_max = 2;
  options.idle_close = milliseconds(1000);
  Node& a = open("a", options);
  const MonoTime t0 = clock_.mono_now();
  a.transport->send(gossip::Outgoing{"x", "tcp://127.0.0.1:1", "m"}, t0);
  a.transport->send(gossip::Outgoing{"y", "tcp://127.0.0.1:2", "m"}, t0 + milliseconds(1));
  a.transport->send(gossip::Outgoing{"z", "tcp://127.0.0.1:3", "m"}, t0 + milliseconds(2));
  EXPECT_EQ(a.transport->peers(), 2u);  // the least recently used (x) made room
  EXPECT_EQ(a.transport->counters().peers_closed, 1u);
  a.transport->forget("tcp://127.0.0.1:3");
  EXPECT_EQ(a.transport->peers(), 1u);
  a.transport->forget("tcp://127.0.0.1:9");  // unknown: nothing happens
  EXPECT_EQ(a.transport->peers(), 1u);
  a.transport->maintain(t0 + milliseconds(500));
  EXPECT_EQ(a.transport->peers(), 1u);
  a.transport->maintain(t0 + milliseconds(1500));
  EXPECT_EQ(a.transport->peers(), 0u);
}

// New peer sockets open at a bounded rate: the burst, then peers_open_per_s. A message
// whose new peer is over the rate is dropped and counted; known peers are not affected.
TEST_F(GossipTransportTest, NewPeerSocketsOpenAtABoundedRate) {
  GossipTransportOptions options;
  options.peers_open_burst = 3;
  options.peers_open_per_s = 2;
  Node& a = open("a", options);
  const MonoTime t0 = clock_.mono_now();
  auto to = [&](int port, MonoTime at) {
    a.transport->send(gossip::Outgoing{"x", "tcp://127.0.0.1:" + std::to_string(port), "m"}, at);
  };
  for (int port = 1; port <= 10; ++port) to(port, t0);
  EXPECT_EQ(a.transport->peers(), 3u);
  EXPECT_EQ(a.transport->counters().peers_opened, 3u);
  EXPECT_EQ(a.transport->counters().peers_deferred, 7u);
  to(1, t0);  // an open peer takes messages regardless
  EXPECT_EQ(a.transport->counters().peers_deferred, 7u);
  // Half a second later one more may open (2 per second), a second later two more.
  for (int port = 4; port <= 10; ++port) to(port, t0 + milliseconds(500));
  EXPECT_EQ(a.transport->peers(), 4u);
  for (int port = 5; port <= 10; ++port) to(port, t0 + milliseconds(1500));
  EXPECT_EQ(a.transport->peers(), 6u);
}

TEST_F(GossipTransportTest, AnEndpointThatDoesNotParseIsDroppedNotFatal) {
  Node& a = open("a");
  a.transport->send(gossip::Outgoing{"x", "not an endpoint", "m"}, clock_.mono_now());
  EXPECT_EQ(a.transport->peers(), 0u);
  EXPECT_EQ(a.transport->counters().send_dropped, 1u);
}

TEST_F(GossipTransportTest, BindingATakenEndpointFailsNamingTheOption) {
  Node& a = open("a");
  GossipTransportOptions options;
  options.self_id = "b";
  options.endpoint = a.transport->endpoint();
  auto second = GossipTransport::open(context_, options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find("gossip-endpoint " + options.endpoint),
            std::string::npos)
      << second.status().message();
}

}  // namespace
}  // namespace edgekv::daemon
