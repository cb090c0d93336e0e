// The RESP listener's command layer against a keyspace of the test's own (RespKeyspace):
// what each command asks of the request path, over a real loopback connection.
#include "daemon/resp_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <vector>

namespace edgekv::daemon {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;

// Records each call; every key is absent; writes are acknowledged from complete_writes().
class RecordingKeyspace final : public RespKeyspace {
 public:
  void get(std::string_view key, RequestPath::ReadDone done) override {
    calls.push_back("get " + std::string(key));
    done(Status::not_found("absent"));
  }
  void put(std::string_view key, std::string value, WallTime expiry,
           RequestPath::WriteDone done) override {
    calls.push_back("put " + std::string(key) + "=" + value + " expiry " +
                    std::to_string(expiry.ms));
    acks_.push_back([done = std::move(done), expiry] {
      done(WriteOutcome{Version{1, 1}, expiry});
    });
  }
  void del(std::string_view key, RequestPath::WriteDone done) override {
    calls.push_back("del " + std::string(key));
    acks_.push_back([done = std::move(done)] { done(WriteOutcome{Version{1, 1}, WallTime{0}}); });
  }
  void read_modify_write(std::string_view key, RequestPath::ReadDone fn) override {
    calls.push_back("rmw " + std::string(key));
    fn(Status::not_found("absent"));
  }
  WallTime wall_now() const override { return WallTime{kNowMs}; }
  // Writes are held here, not in a request path; the node bound is not under test.
  uint64_t inflight_bytes() const override { return 0; }

  void complete_writes() {
    while (!acks_.empty()) {
      auto ack = std::move(acks_.front());
      acks_.pop_front();
      ack();
    }
  }

  std::vector<std::string> calls;

 private:
  std::deque<std::function<void()>> acks_;
};

// Sends `request` to a server attached to `keys` and returns its replies once `expected`
// bytes of them arrived (or what arrived by the deadline).
std::string exchange(RecordingKeyspace& keys, const std::string& request, size_t expected) {
  auto listening = RespServer::listen("tcp://127.0.0.1:0", RespOptions{});
  EXPECT_TRUE(listening.ok()) << listening.status().to_string();
  if (!listening.ok()) return "";
  std::unique_ptr<RespServer> server = std::move(listening).value();
  server->attach(keys, nullptr, 8);

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string replies;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (replies.size() < expected && std::chrono::steady_clock::now() < deadline) {
    pollfd fds[2] = {{server->fd(), POLLIN, 0}, {fd, POLLIN, 0}};
    ::poll(fds, 2, 100);
    server->on_ready();
    keys.complete_writes();
    server->flush_dirty();
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) replies.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return replies;
}

std::string command(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

TEST(RespServerTest, SetOptionsReachTheKeyspaceAsAbsoluteExpiriesOrDeletes) {
  RecordingKeyspace keys;
  const std::string past_ms = std::to_string(kNowMs - 1);
  std::string replies =
      exchange(keys,
               command({"SET", "a", "1", "EX", "10"}) + command({"set", "b", "2", "px", "250"}) +
                   command({"SET", "c", "3", "PXAT", past_ms}) + command({"SET", "d", "4"}),
               4 * 5);
  EXPECT_EQ(replies, "+OK\r\n+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_EQ(keys.calls, (std::vector<std::string>{
                            "put a=1 expiry " + std::to_string(kNowMs + 10'000),
                            "put b=2 expiry " + std::to_string(kNowMs + 250),
                            "del c",  // already expired: the key ends up absent
                            "put d=4 expiry 0",
                        }));
}

TEST(RespServerTest, RefusedArgumentsNeverReachTheKeyspace) {
  RecordingKeyspace keys;
  const std::string want =
      "-ERR invalid expire time in 'set' command\r\n"
      "-ERR syntax error\r\n"
      "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
      "-ERR wrong number of arguments for 'get' command\r\n"
      ":0\r\n";  // the one valid command: EXPIRE of an absent key
  std::string replies =
      exchange(keys,
               command({"SET", "a", "1", "EX", "0"}) + command({"SET", "a", "1", "NX", "XX"}) +
                   command({"EXPIRE", "a", "10", "NX", "XX"}) + command({"GET"}) +
                   command({"EXPIRE", "a", "10"}),
               want.size());
  EXPECT_EQ(replies, want);
  EXPECT_EQ(keys.calls, (std::vector<std::string>{"rmw a"}));
}

}  // namespace
}  // namespace edgekv::daemon
