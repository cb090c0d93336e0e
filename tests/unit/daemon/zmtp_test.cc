#include "daemon/zmtp.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/clock.h"
#include "daemon/feed_server.h"

namespace edgekv::daemon {
namespace {

using namespace std::string_literals;  // "\x01"s keeps the NUL
using Kind = ZmtpEvent::Kind;

// A peer's greeting: like ours but with the version and mechanism given.
std::string peer_greeting(uint8_t major = 3, uint8_t minor = 1, std::string mechanism = "NULL") {
  std::string g = zmtp_greeting();
  g[10] = static_cast<char>(major);
  g[11] = static_cast<char>(minor);
  std::string mech(20, '\0');
  mech.replace(0, mechanism.size(), mechanism);
  g.replace(12, 20, mech);
  return g;
}

std::string frame(std::string_view body, bool more = false) {
  std::string out;
  zmtp_append_frame(&out, body, more);
  return out;
}

std::string sub_handshake() { return peer_greeting() + zmtp_ready("SUB"); }

struct Decoded {
  std::vector<ZmtpEvent> events;
  ZmtpParse final = ZmtpParse::kNeedMore;
  std::string error;
};

Decoded decode(std::string_view bytes, ZmtpLimits limits = {}, size_t step = 0) {
  ZmtpDecoder decoder(limits);
  Decoded out;
  if (step == 0) step = bytes.size() + 1;
  for (size_t at = 0; at < bytes.size() || at == 0; at += step) {
    decoder.append(bytes.substr(at, step));
    for (;;) {
      ZmtpEvent event;
      out.final = decoder.next(&event);
      if (out.final == ZmtpParse::kEvent) {
        out.events.push_back(event);
        continue;
      }
      break;
    }
    if (out.final == ZmtpParse::kError) break;
    if (bytes.empty()) break;
  }
  out.error = decoder.error();
  return out;
}

TEST(ZmtpTest, GreetingAnnouncesZmtp30WithTheNullMechanism) {
  std::string g = zmtp_greeting();
  ASSERT_EQ(g.size(), kZmtpGreetingBytes);
  EXPECT_EQ(static_cast<uint8_t>(g[0]), 0xFF);
  EXPECT_EQ(g[9], 0x7F);
  EXPECT_EQ(g[10], 3);
  EXPECT_EQ(g[11], 0);
  EXPECT_EQ(g.substr(12, 20), "NULL"s + std::string(16, '\0'));
  EXPECT_EQ(g[32], 0);  // as-server
}

TEST(ZmtpTest, ReadyCarriesTheSocketType) {
  EXPECT_EQ(zmtp_ready("PUB"), "\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB"s);
}

TEST(ZmtpTest, DecodesHandshakeSubscriptionsCancelsAndPing) {
  std::string bytes = sub_handshake() +
                      frame(
                          "\x01"
                          "a/"s) +
                      frame(
                          "\x00"
                          "a/"s) +
                      zmtp_command("SUBSCRIBE", "b/") + zmtp_command("CANCEL", "b/") +
                      zmtp_command("PING",
                                   "\x00\x0a"
                                   "ctx"s) +
                      frame("\x01"s);
  for (size_t step : {size_t{0}, size_t{1}, size_t{7}}) {
    Decoded d = decode(bytes, {}, step);
    ASSERT_EQ(d.final, ZmtpParse::kNeedMore) << d.error;
    ASSERT_EQ(d.events.size(), 8u) << "step " << step;
    EXPECT_EQ(d.events[0].kind, Kind::kGreeting);
    EXPECT_EQ(d.events[0].minor, 1);
    EXPECT_EQ(d.events[1].kind, Kind::kReady);
    EXPECT_EQ(d.events[1].data, "SUB");
    EXPECT_EQ(d.events[2].kind, Kind::kSubscribe);
    EXPECT_EQ(d.events[2].data, "a/");
    EXPECT_EQ(d.events[3].kind, Kind::kCancel);
    EXPECT_EQ(d.events[3].data, "a/");
    EXPECT_EQ(d.events[4].kind, Kind::kSubscribe);
    EXPECT_EQ(d.events[4].data, "b/");
    EXPECT_EQ(d.events[5].kind, Kind::kCancel);
    EXPECT_EQ(d.events[6].kind, Kind::kPing);
    EXPECT_EQ(d.events[6].data, "ctx");
    EXPECT_EQ(d.events[7].kind, Kind::kSubscribe);  // to everything
    EXPECT_EQ(d.events[7].data, "");
  }
}

TEST(ZmtpTest, AcceptsXsubAndLongFrames) {
  std::string prefix(300, 'k');
  ZmtpLimits limits;
  limits.max_frame_bytes = 400;
  Decoded d = decode(peer_greeting(3, 0) + zmtp_ready("XSUB") + frame("\x01" + prefix), limits);
  ASSERT_EQ(d.events.size(), 3u) << d.error;
  EXPECT_EQ(d.events[2].kind, Kind::kSubscribe);
  EXPECT_EQ(d.events[2].data, prefix);
}

TEST(ZmtpTest, FramesOfMultipartMessagesAreNotSubscriptions) {
  Decoded d = decode(sub_handshake() +
                     frame("\x01"
                           "a"s,
                           true) +
                     frame("\x01"
                           "b"s) +
                     frame("hello"));
  ASSERT_EQ(d.events.size(), 5u) << d.error;
  EXPECT_EQ(d.events[2].kind, Kind::kOther);
  EXPECT_EQ(d.events[3].kind, Kind::kOther);
  EXPECT_EQ(d.events[4].kind, Kind::kOther);
}

TEST(ZmtpTest, RefusesJunkOnItsFirstByte) {
  Decoded d = decode("G");
  EXPECT_EQ(d.final, ZmtpParse::kError);
  EXPECT_NE(d.error.find("not a ZMTP peer"), std::string::npos) << d.error;
}

TEST(ZmtpTest, RefusesOlderVersionsAndOtherMechanisms) {
  Decoded v2 = decode(peer_greeting(2, 0).substr(0, 11));
  EXPECT_EQ(v2.final, ZmtpParse::kError);
  EXPECT_NE(v2.error.find("version 2"), std::string::npos) << v2.error;
  Decoded plain = decode(peer_greeting(3, 0, "PLAIN"));
  EXPECT_EQ(plain.final, ZmtpParse::kError);
  EXPECT_NE(plain.error.find("PLAIN"), std::string::npos) << plain.error;
}

TEST(ZmtpTest, RefusesPeersThatCannotSubscribe) {
  for (const char* type : {"PUB", "REQ", "DEALER", "XPUB"}) {
    Decoded d = decode(peer_greeting() + zmtp_ready(type));
    EXPECT_EQ(d.final, ZmtpParse::kError) << type;
    EXPECT_NE(d.error.find(type), std::string::npos) << d.error;
  }
  Decoded none = decode(peer_greeting() + zmtp_command("READY", ""));
  EXPECT_EQ(none.final, ZmtpParse::kError);
  Decoded data_first = decode(peer_greeting() + frame("\x01"s));
  EXPECT_EQ(data_first.final, ZmtpParse::kError);
}

TEST(ZmtpTest, RefusesAnOversizedFrameFromItsHeaderAlone) {
  // A 16 MiB subscription: only its 9-byte header and first byte are given.
  std::string header = "\x02"s + "\x00\x00\x00\x00\x01\x00\x00\x01"s + "\x01";
  Decoded d = decode(sub_handshake() + header);
  EXPECT_EQ(d.final, ZmtpParse::kError);
  EXPECT_NE(d.error.find("16777217 bytes is over the limit"), std::string::npos) << d.error;
}

TEST(ZmtpTest, RefusesMalformedFramesAndCommands) {
  EXPECT_EQ(decode(sub_handshake() + "\x80\x00"s).final, ZmtpParse::kError);      // reserved bit
  EXPECT_EQ(decode(sub_handshake() + "\x05\x01\x00"s).final, ZmtpParse::kError);  // MORE cmd
  EXPECT_EQ(decode(sub_handshake() + zmtp_command("PING", "")).final, ZmtpParse::kError);
  EXPECT_EQ(decode(sub_handshake() + "\x04\x03\x09"
                                     "ab"s)
                .final,
            ZmtpParse::kError);
}

// ---------------------------------------------------------------------------------------
// The feed server against real subscribers over a Unix socket.

class FeedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("edgekv-feed-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    endpoint_ = "ipc://" + (dir_ / "feed.ipc").string();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start(FeedOptions options = {}) {
    auto server = FeedServer::listen(endpoint_, options, clock_);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    server_ = std::move(server).value();
  }

  // Runs the server's side until `done` holds; false if it did not within 10 s.
  bool pump_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd p{server_->fd(), POLLIN, 0};
      ::poll(&p, 1, 10);
      if (p.revents & POLLIN) server_->on_ready();
      server_->flush();
    }
    return true;
  }

  // A hand-made subscriber on a blocking Unix socket: greeting and READY sent.
  int raw_subscriber() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = (dir_ / "feed.ipc").string();
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    send_all(fd, sub_handshake());
    return fd;
  }

  static void send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Whether the server closed `fd` (reads what it sent until EOF or an error).
  bool closed_by_server(int fd) {
    return pump_until([&] {
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    });
  }

  ManualClock clock_;
  std::filesystem::path dir_;
  std::string endpoint_;
  std::unique_ptr<FeedServer> server_;
};

TEST_F(FeedServerTest, LibzmqSubscriberGetsTheEventsItsPrefixesMatchOnce) {
  start();
  zmq::context_t context(1);
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::rcvtimeo, 5000);
  sub.set(zmq::sockopt::subscribe, "a/");
  sub.set(zmq::sockopt::subscribe, "a/1");
  sub.connect(endpoint_);
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 2; }));
  EXPECT_EQ(server_->connections(), 1u);
  server_->publish("b/1", "not wanted");
  server_->publish("a/1", "first");
  server_->publish("a", "too short");
  server_->publish("a/2", std::string(100000, 'v'));
  server_->flush();
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_TRUE(pump_until([&] {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(sub, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      return false;
    }
    EXPECT_EQ(frames.size(), 2u);
    got.emplace_back(frames[0].to_string(), frames[1].to_string());
    return got.size() == 2;
  }));
  EXPECT_EQ(got[0], std::make_pair("a/1"s, "first"s));
  EXPECT_EQ(got[1], std::make_pair("a/2"s, std::string(100000, 'v')));
  // Nothing else was queued: "a/1" matched both prefixes but went out once.
  zmq::message_t extra;
  EXPECT_FALSE(sub.recv(extra, zmq::recv_flags::dontwait).has_value());
  EXPECT_EQ(server_->counters().events_sent, 2u);

  sub.set(zmq::sockopt::unsubscribe, "a/");
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 1; }));
  sub.close();
  ASSERT_TRUE(pump_until([&] { return server_->connections() == 0; }));
  EXPECT_EQ(server_->subscriptions(), 0u);
  EXPECT_FALSE(server_->has_subscriptions());
}

TEST_F(FeedServerTest, SubscriptionLongerThanAKeyClosesTheConnection) {
  FeedOptions options;
  options.max_key_bytes = 16;
  start(options);
  int ok_fd = raw_subscriber();
  send_all(ok_fd, frame("\x01" + std::string(16, 'k')));
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 1; }));

  int long_fd = raw_subscriber();
  send_all(long_fd, frame("\x01" + std::string(17, 'k')));
  EXPECT_TRUE(closed_by_server(long_fd));
  int huge_fd = raw_subscriber();
  send_all(huge_fd, "\x02"s + "\x00\x00\x00\x00\x01\x00\x00\x01"s + "\x01");
  EXPECT_TRUE(closed_by_server(huge_fd));
  EXPECT_EQ(server_->counters().bad_subscriptions, 2u);
  EXPECT_EQ(server_->subscriptions(), 1u);
  EXPECT_EQ(server_->connections(), 1u);
  for (int fd : {ok_fd, long_fd, huge_fd}) ::close(fd);
}

TEST_F(FeedServerTest, SubscriptionsOverTheBoundsCloseTheConnection) {
  FeedOptions options;
  options.max_subscriptions_per_connection = 3;
  options.max_subscriptions = 5;
  start(options);
  int a = raw_subscriber();
  send_all(a, frame("\x01"
                    "1"s) +
                  frame("\x01"
                        "2"s) +
                  frame("\x01"
                        "2"s));
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 3; }));
  send_all(a, frame("\x01"
                    "4"s));
  EXPECT_TRUE(closed_by_server(a));
  EXPECT_EQ(server_->subscriptions(), 0u);

  int b = raw_subscriber();
  int c = raw_subscriber();
  send_all(b, frame("\x01"
                    "1"s) +
                  frame("\x01"
                        "2"s) +
                  frame("\x01"
                        "3"s));
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 3; }));
  send_all(c, frame("\x01"
                    "1"s) +
                  frame("\x01"
                        "2"s) +
                  frame("\x01"
                        "3"s));
  EXPECT_TRUE(closed_by_server(c));
  EXPECT_EQ(server_->subscriptions(), 3u);
  EXPECT_EQ(server_->counters().bad_subscriptions, 2u);
  for (int fd : {a, b, c}) ::close(fd);
}

TEST_F(FeedServerTest, ConnectionsOverTheBoundAndSlowHandshakesAreClosed) {
  FeedOptions options;
  options.max_connections = 2;
  start(options);
  int a = raw_subscriber();
  send_all(a, frame("\x01"s));
  // Its subscription taken: its handshake is complete.
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 1; }));
  // Connected but silent: no greeting.
  int b = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  (dir_ / "feed.ipc").string().copy(addr.sun_path, sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(b, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_TRUE(pump_until([&] { return server_->connections() == 2; }));
  int c = raw_subscriber();
  EXPECT_TRUE(closed_by_server(c));
  EXPECT_EQ(server_->counters().connections_refused, 1u);

  clock_.advance(options.handshake_timeout);
  server_->maintain(clock_.mono_now());
  EXPECT_TRUE(closed_by_server(b));
  EXPECT_EQ(server_->counters().connections_refused, 2u);
  EXPECT_EQ(server_->connections(), 1u);  // `a` completed its handshake
  for (int fd : {a, b, c}) ::close(fd);
}

TEST_F(FeedServerTest, SubscriberThatDoesNotReadIsDroppedAndItsQueueFreed) {
  FeedOptions options;
  options.subscriber_buffer_bytes = 1024 * 1024;
  start(options);
  int slow = raw_subscriber();
  send_all(slow, frame("\x01"s));
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 1; }));
  const std::string value(256 * 1024, 'v');
  // The socket buffers take some; the queue fills behind them.
  for (int i = 0; i < 1000 && server_->connections() == 1; ++i) {
    server_->publish("k" + std::to_string(i), value);
    server_->flush();
    EXPECT_LE(server_->queued_bytes(), options.subscriber_buffer_bytes + 2 * value.size());
  }
  EXPECT_EQ(server_->connections(), 0u);
  EXPECT_EQ(server_->counters().subscribers_dropped, 1u);
  EXPECT_EQ(server_->queued_bytes(), 0u);
  ::close(slow);
}

TEST_F(FeedServerTest, OverTheNodeBoundTheFurthestBehindGoesFirst) {
  FeedOptions options;
  options.subscriber_buffer_bytes = 64 * 1024 * 1024;
  options.buffer_bytes_max = 2 * 1024 * 1024;
  start(options);
  int everything = raw_subscriber();
  send_all(everything, frame("\x01"s));
  int some = raw_subscriber();
  send_all(some, frame("\x01"
                       "b"s));
  ASSERT_TRUE(pump_until([&] { return server_->subscriptions() == 2; }));
  const std::string value(128 * 1024, 'v');
  for (int i = 0; i < 1000 && server_->counters().subscribers_dropped == 0; ++i) {
    server_->publish("a" + std::to_string(i), value);
    server_->flush();
  }
  EXPECT_EQ(server_->counters().subscribers_dropped, 1u);
  EXPECT_LE(server_->queued_bytes(), options.buffer_bytes_max);
  EXPECT_EQ(server_->connections(), 1u);
  EXPECT_TRUE(closed_by_server(everything));
  EXPECT_EQ(server_->subscriptions(), 1u);  // `some` stays
  for (int fd : {everything, some}) ::close(fd);
}

TEST_F(FeedServerTest, AnswersPingWithPong) {
  start();
  int fd = raw_subscriber();
  send_all(fd, zmtp_command("PING",
                            "\x00\x0a"
                            "hb"s));
  std::string got;
  std::string want = zmtp_greeting() + zmtp_ready("PUB") + zmtp_pong("hb");
  ASSERT_TRUE(pump_until([&] {
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.size() >= want.size();
  }));
  EXPECT_EQ(got, want);
  ::close(fd);
}

}  // namespace
}  // namespace edgekv::daemon
