#include "client/subscription.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/unit/client/fake_server.h"

namespace edgekv::client {
namespace {

using testing::FakeFeed;
using testing::FakeServer;
using namespace std::string_literals;

SubscriptionOptions options_for(const std::string& endpoint, std::vector<std::string> prefixes) {
  SubscriptionOptions options;
  options.feed_endpoint = endpoint;
  options.prefixes = std::move(prefixes);
  return options;
}

// The slow joiner: a subscription sees only what is published after it connected, so
// publish a warm-up event until one arrives (or the deadline passes).
bool wait_until_joined(FakeFeed& feed, Subscription& subscription, const std::string& warm_key) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    feed.publish(FakeFeed::event(pb::PUT, warm_key, "warm"));
    Result<ChangeEvent> event = subscription.next(20);
    if (event.ok() && event->key == warm_key) return true;
  }
  return false;
}

// The next event that is not a leftover warm-up event.
Result<ChangeEvent> next_real(Subscription& subscription, const std::string& warm_key,
                              int timeout_ms = 5000) {
  for (;;) {
    Result<ChangeEvent> event = subscription.next(timeout_ms);
    if (!event.ok() || event->key != warm_key) return event;
  }
}

TEST(SubscriptionTest, PrefixesFilterKeysAndFieldsDecode) {
  FakeFeed feed;
  const std::string binary_prefix = "c\0x"s;
  Subscription subscription(options_for(feed.endpoint(), {"a/", binary_prefix}));
  ASSERT_TRUE(wait_until_joined(feed, subscription, "a/warm"));

  feed.publish(FakeFeed::event(pb::PUT, "b/1", "no", 1));
  feed.publish(FakeFeed::event(pb::PUT, "a/1", "v\0v"s, 2));
  feed.publish(FakeFeed::event(pb::DELETE, "c\0y"s, "", 3));
  feed.publish(FakeFeed::event(pb::DELETE, "c\0x1"s, "", 4));
  feed.publish(FakeFeed::event(pb::EXPIRE, "a/2", "", 5));

  Result<ChangeEvent> first = next_real(subscription, "a/warm");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->op, ChangeOp::kPut);
  EXPECT_EQ(first->key, "a/1");
  EXPECT_EQ(first->value, "v\0v"s);
  EXPECT_EQ(first->version, (Version{uint64_t{1'700'000'000'000} << 16 | 3, 0xabc}));
  EXPECT_EQ(first->expiry.ms, 1'700'000'100'000);
  EXPECT_EQ(first->partition, 5u);
  EXPECT_EQ(first->seq, 2u);

  Result<ChangeEvent> second = next_real(subscription, "a/warm");
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(second->op, ChangeOp::kDelete);
  EXPECT_EQ(second->key, "c\0x1"s);
  EXPECT_EQ(second->seq, 4u);

  Result<ChangeEvent> third = next_real(subscription, "a/warm");
  ASSERT_TRUE(third.ok()) << third.status().to_string();
  EXPECT_EQ(third->op, ChangeOp::kExpire);
  EXPECT_EQ(third->key, "a/2");

  Result<ChangeEvent> none = subscription.next(50);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kTimeout);
  EXPECT_NE(none.status().message().find(feed.endpoint()), std::string::npos);
}

TEST(SubscriptionTest, NoPrefixMeansEveryKey) {
  FakeFeed feed;
  Subscription subscription(options_for(feed.endpoint(), {}));
  ASSERT_TRUE(wait_until_joined(feed, subscription, "warm"));
  feed.publish(FakeFeed::event(pb::PUT, "zzz", "1"));
  Result<ChangeEvent> event = next_real(subscription, "warm");
  ASSERT_TRUE(event.ok()) << event.status().to_string();
  EXPECT_EQ(event->key, "zzz");
}

TEST(SubscriptionTest, MalformedMessagesAreCorruptionAndTheSubscriptionGoesOn) {
  FakeFeed feed;
  Subscription subscription(options_for(feed.endpoint(), {"k"}));
  ASSERT_TRUE(wait_until_joined(feed, subscription, "kwarm"));

  pb::ChangeEvent other_key = FakeFeed::event(pb::PUT, "k-other");
  pb::ChangeEvent no_op = FakeFeed::event(pb::PUT, "k1");
  no_op.set_op(pb::CHANGE_OP_UNSPECIFIED);
  pb::ChangeEvent future_op = FakeFeed::event(pb::PUT, "k1");
  future_op.set_op(static_cast<pb::ChangeOp>(77));
  feed.publish_frames({"k1"});                                      // one frame
  feed.publish_frames({"k1", testing::serialize(no_op), "extra"});  // three frames
  feed.publish_frames({"k1", "\xff\xff\xff garbage"});              // does not decode
  feed.publish_frames({"k1", testing::serialize(other_key)});       // key frame lies
  feed.publish_frames({"k1", testing::serialize(no_op)});           // no op
  feed.publish_frames({"k1", testing::serialize(future_op)});       // op unknown here
  feed.publish(FakeFeed::event(pb::PUT, "k-good", "v"));

  for (int i = 0; i < 6; ++i) {
    Result<ChangeEvent> event = next_real(subscription, "kwarm");
    ASSERT_FALSE(event.ok()) << "message " << i << " was accepted";
    EXPECT_EQ(event.status().code(), Code::kCorruption) << event.status().to_string();
  }
  Result<ChangeEvent> good = next_real(subscription, "kwarm");
  ASSERT_TRUE(good.ok()) << good.status().to_string();
  EXPECT_EQ(good->key, "k-good");
}

TEST(SubscriptionTest, BadEndpointFailsEveryCall) {
  Subscription subscription(options_for("nowhere", {}));
  for (int i = 0; i < 2; ++i) {
    Result<ChangeEvent> event = subscription.next(0);
    ASSERT_FALSE(event.ok());
    EXPECT_EQ(event.status().code(), Code::kInvalidArgument);
  }
}

TEST(SubscriptionTest, ClusterModeRefusesACursorItCannotParse) {
  SubscriptionOptions options;
  options.client_endpoint = "tcp://127.0.0.1:1";  // never asked: the cursor fails first
  options.cursor = "edgekv-feed-cursor 1\nnode-a zero 5\n";
  Subscription subscription(options);
  for (int i = 0; i < 2; ++i) {
    Result<ChangeEvent> event = subscription.next(0);
    ASSERT_FALSE(event.ok());
    EXPECT_EQ(event.status().code(), Code::kInvalidArgument);
    EXPECT_NE(event.status().message().find("line 2"), std::string::npos)
        << event.status().message();
  }
}

TEST(SubscriptionTest, ClusterModeWithNoNodeAnsweringIsUnavailableNotATimeout) {
  FakeServer silent([](FakeServer&, const FakeServer::Incoming&) {});
  SubscriptionOptions options;
  options.client_endpoint = silent.endpoint();
  options.request_timeout_ms = 100;
  Subscription subscription(options);
  Result<ChangeEvent> event = subscription.next(0);
  ASSERT_FALSE(event.ok());
  // A caller that waits through timeouts (kvcli watch) must not wait on this.
  EXPECT_EQ(event.status().code(), Code::kUnavailable) << event.status().to_string();
  EXPECT_NE(event.status().message().find(silent.endpoint()), std::string::npos);
}

TEST(SubscriptionTest, MovedSubscriptionKeepsWorking) {
  FakeFeed feed;
  Subscription first(options_for(feed.endpoint(), {}));
  Subscription second = std::move(first);
  ASSERT_TRUE(wait_until_joined(feed, second, "warm"));
}

TEST(ConnectableFeedEndpointTest, WildcardHostsTakeTheClientsHost) {
  EXPECT_EQ(connectable_feed_endpoint("tcp://*:7403", "tcp://10.1.2.3:7400"),
            "tcp://10.1.2.3:7403");
  EXPECT_EQ(connectable_feed_endpoint("tcp://0.0.0.0:7403", "tcp://db.example:7400"),
            "tcp://db.example:7403");
  EXPECT_EQ(connectable_feed_endpoint("tcp://[::]:7403", "tcp://[::1]:7400"), "tcp://[::1]:7403");
  EXPECT_EQ(connectable_feed_endpoint("tcp://*:7403", "tcp://192.168.1.9:1;10.0.0.1:7400"),
            "tcp://10.0.0.1:7403");
  EXPECT_EQ(connectable_feed_endpoint("tcp://*:7403", "ipc:///run/edgekv.sock"),
            "tcp://127.0.0.1:7403");
  // Anything else is used as reported.
  EXPECT_EQ(connectable_feed_endpoint("tcp://10.9.9.9:7403", "tcp://10.1.2.3:7400"),
            "tcp://10.9.9.9:7403");
  EXPECT_EQ(connectable_feed_endpoint("ipc:///run/feed", "tcp://10.1.2.3:7400"), "ipc:///run/feed");
  EXPECT_EQ(connectable_feed_endpoint("", "tcp://10.1.2.3:7400"), "");
}

}  // namespace
}  // namespace edgekv::client
