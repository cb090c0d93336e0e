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
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cluster/mutation.h"

namespace edgekv::daemon {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;

std::string describe(const cluster::Mutation& m) {
  std::string out;
  switch (m.kind) {
    case cluster::Mutation::Kind::kSet: out = "set=" + m.value; break;
    case cluster::Mutation::Kind::kDelete: out = "delete"; break;
    case cluster::Mutation::Kind::kExpire: out = "expire"; break;
    case cluster::Mutation::Kind::kPersist: out = "persist"; break;
  }
  out += " expiry " + std::to_string(m.expiry.ms);
  if (m.if_absent) out += " nx";
  if (m.if_present) out += " xx";
  if (m.keep_ttl) out += " keepttl";
  if (m.return_old) out += " get";
  if (m.if_no_expiry) out += " if-no-expiry";
  if (m.if_has_expiry) out += " if-has-expiry";
  if (m.if_greater) out += " gt";
  if (m.if_less) out += " lt";
  return out;
}

// Records each call over a map of records, at a fixed time. Writes take effect at once and
// are acknowledged from complete_writes(); read-modify-writes are decided by cluster::decide()
// as the coordinator does. Every request for a key starting with "fail" answers an error.
class RecordingKeyspace final : public RespKeyspace {
 public:
  void get(std::string_view key, ReadDone done) override {
    calls.push_back("get " + std::string(key));
    if (key.starts_with("fail")) return done(kFailure);
    std::optional<store::Record> current = lookup(key);
    if (!current || !cluster::is_live(*current, wall_now())) {
      return done(Status::not_found("absent"));
    }
    done(*current);
  }
  void put(std::string_view key, std::string value, WallTime expiry, WriteDone done) override {
    calls.push_back("put " + std::string(key) + "=" + value + " expiry " +
                    std::to_string(expiry.ms));
    write(key, false, std::move(value), expiry, std::move(done));
  }
  void del(std::string_view key, WriteDone done) override {
    calls.push_back("del " + std::string(key));
    write(key, true, "", WallTime{0}, std::move(done));
  }
  void mutate(std::string_view key, cluster::Mutation m, MutateDone done) override {
    calls.push_back("mutate " + std::string(key) + " " + describe(m));
    if (key.starts_with("fail")) return done(kFailure);
    cluster::MutationDecision d = cluster::decide(m, lookup(key), wall_now());
    if (!d.write) return done(std::move(d.outcome));
    write(key, d.write->tombstone, std::move(d.write->value), d.write->expiry,
          [outcome = std::move(d.outcome),
           done = std::move(done)](Result<cluster::WriteOutcome> w) mutable {
            if (!w.ok()) return done(w.status());
            outcome.version = w->version;
            done(std::move(outcome));
          });
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

  std::optional<store::Record> lookup(std::string_view key) const {
    auto it = records.find(std::string(key));
    if (it == records.end()) return std::nullopt;
    return it->second;
  }

  static inline const Status kFailure = Status::unavailable("replicas unreachable");
  std::vector<std::string> calls;
  std::map<std::string, store::Record> records;

 private:
  void write(std::string_view key, bool tombstone, std::string value, WallTime expiry,
             WriteDone done) {
    if (key.starts_with("fail")) {
      acks_.push_back([done = std::move(done)] { done(kFailure); });
      return;
    }
    store::Record& r = records[std::string(key)];
    r.key = key;
    r.tombstone = tombstone;
    r.value = std::move(value);
    r.expiry = expiry;
    r.version = Version{++hlc_, 1};
    acks_.push_back([done = std::move(done), outcome = cluster::WriteOutcome{r.version, expiry}] {
      done(outcome);
    });
  }

  std::deque<std::function<void()>> acks_;
  uint64_t hlc_ = 0;
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

TEST(RespServerTest, SetOptionsReachTheKeyspaceAsAbsoluteExpiries) {
  RecordingKeyspace keys;
  const std::string past_ms = std::to_string(kNowMs - 1);
  std::string replies =
      exchange(keys,
               command({"SET", "a", "1", "EX", "10"}) + command({"set", "b", "2", "px", "250"}) +
                   command({"SET", "c", "3", "PXAT", past_ms}) + command({"SET", "d", "4"}) +
                   command({"GET", "c"}),
               4 * 5 + 5);
  EXPECT_EQ(replies, "+OK\r\n+OK\r\n+OK\r\n+OK\r\n$-1\r\n");
  EXPECT_EQ(keys.calls, (std::vector<std::string>{
                            "put a=1 expiry " + std::to_string(kNowMs + 10'000),
                            "put b=2 expiry " + std::to_string(kNowMs + 250),
                            // Already expired: written so, and the key ends up absent.
                            "put c=3 expiry " + past_ms,
                            "put d=4 expiry 0",
                            "get c",
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
  EXPECT_EQ(keys.calls, (std::vector<std::string>{"mutate a expire expiry " +
                                                  std::to_string(kNowMs + 10'000)}));
}

store::Record live(std::string key, std::string value, int64_t expiry_ms) {
  store::Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.expiry = WallTime{expiry_ms};
  r.version = Version{1, 1};
  return r;
}

TEST(RespServerTest, ConditionalSetsTravelAsMutationsAndAnswerAsRedis) {
  RecordingKeyspace keys;
  const std::string in_5s = std::to_string(kNowMs + 5'000);
  const std::string past_ms = std::to_string(kNowMs - 1);
  const std::string want =
      "+OK\r\n"       // NX on an absent key: written
      "$-1\r\n"       // NX on a live key: refused
      "$2\r\nv1\r\n"  // XX GET: written, the old value
      "$-1\r\n"       // XX on an absent key: refused
      "$-1\r\n"       // XX GET on an absent key: refused, no old value
      "$2\r\nv3\r\n"  // KEEPTTL GET: written, the old value
      "$2\r\nv4\r\n"  // NX GET on a live key: refused, the old value all the same
      "$-1\r\n"       // GET with an expiry already past, on an absent key
      "$-1\r\n";      // ... which ends up absent
  std::string replies = exchange(
      keys,
      command({"SET", "k", "v1", "NX"}) + command({"SET", "k", "v2", "nx"}) +
          command({"SET", "k", "v3", "XX", "GET", "PX", "5000"}) +
          command({"SET", "m", "x", "XX"}) + command({"SET", "m", "x", "XX", "GET"}) +
          command({"SET", "k", "v4", "KEEPTTL", "GET"}) + command({"SET", "k", "v5", "NX", "GET"}) +
          command({"SET", "p", "x", "GET", "PXAT", past_ms}) + command({"GET", "p"}),
      want.size());
  EXPECT_EQ(replies, want);
  EXPECT_EQ(keys.calls, (std::vector<std::string>{
                            "mutate k set=v1 expiry 0 nx",
                            "mutate k set=v2 expiry 0 nx",
                            "mutate k set=v3 expiry " + in_5s + " xx get",
                            "mutate m set=x expiry 0 xx",
                            "mutate m set=x expiry 0 xx get",
                            "mutate k set=v4 expiry 0 keepttl get",
                            "mutate k set=v5 expiry 0 nx get",
                            "mutate p set=x expiry " + past_ms + " get",
                            "get p",
                        }));
  // KEEPTTL kept the expiry SET ... PX 5000 gave.
  ASSERT_TRUE(keys.lookup("k").has_value());
  EXPECT_EQ(keys.lookup("k")->value, "v4");
  EXPECT_EQ(keys.lookup("k")->expiry.ms, kNowMs + 5'000);
  EXPECT_FALSE(keys.lookup("m").has_value());
}

TEST(RespServerTest, DelCountsTheKeysItsMutationsFoundLive) {
  RecordingKeyspace keys;
  keys.records["a"] = live("a", "1", 0);
  keys.records["b"] = live("b", "2", kNowMs - 1);  // expired: does not count
  keys.records["c"] = live("c", "3", kNowMs + 1'000);
  std::string replies =
      exchange(keys, command({"DEL", "a", "b", "a", "nope"}) + command({"UNLINK", "c"}), 4 + 4);
  EXPECT_EQ(replies, ":1\r\n:1\r\n");
  EXPECT_EQ(keys.calls, (std::vector<std::string>{
                            "mutate a delete expiry 0",
                            "mutate b delete expiry 0",
                            "mutate a delete expiry 0",
                            "mutate nope delete expiry 0",
                            "mutate c delete expiry 0",
                        }));
  EXPECT_TRUE(keys.lookup("a")->tombstone);
  EXPECT_TRUE(keys.lookup("c")->tombstone);
}

TEST(RespServerTest, ExpireAndPersistTravelAsMutationsAndAnswerOneOrZero) {
  RecordingKeyspace keys;
  keys.records["e"] = live("e", "v", 0);
  keys.records["z"] = live("z", "v", 0);
  const auto at = [](int64_t ms) { return std::to_string(kNowMs + ms); };
  const std::string want =
      ":0\r\n"  // XX, no expiry yet
      ":1\r\n"  // NX
      ":0\r\n"  // GT, earlier
      ":1\r\n"  // LT, earlier
      ":0\r\n"  // an absent key
      ":1\r\n"  // PERSIST of a key with an expiry
      ":0\r\n"  // PERSIST of a key without
      ":0\r\n"  // PERSIST of an absent key
      ":1\r\n"  // a TTL below zero deletes
      "$-1\r\n";
  std::string replies =
      exchange(keys,
               command({"EXPIRE", "e", "10", "XX"}) + command({"EXPIRE", "e", "10", "NX"}) +
                   command({"EXPIRE", "e", "5", "gt"}) + command({"PEXPIRE", "e", "5000", "LT"}) +
                   command({"EXPIRE", "nope", "10"}) + command({"PERSIST", "e"}) +
                   command({"PERSIST", "e"}) + command({"PERSIST", "nope"}) +
                   command({"PEXPIRE", "z", "-9223372036854775808"}) + command({"GET", "z"}),
               want.size());
  EXPECT_EQ(replies, want);
  EXPECT_EQ(keys.calls, (std::vector<std::string>{
                            "mutate e expire expiry " + at(10'000) + " if-has-expiry",
                            "mutate e expire expiry " + at(10'000) + " if-no-expiry",
                            "mutate e expire expiry " + at(5'000) + " gt",
                            "mutate e expire expiry " + at(5'000) + " lt",
                            "mutate nope expire expiry " + at(10'000),
                            "mutate e persist expiry 0",
                            "mutate e persist expiry 0",
                            "mutate nope persist expiry 0",
                            // Past, and never 0 (no expiry) nor below it.
                            "mutate z expire expiry 1",
                            "get z",
                        }));
  EXPECT_EQ(keys.lookup("e")->expiry.ms, 0);
  EXPECT_TRUE(keys.lookup("z")->tombstone);
}

TEST(RespServerTest, KeyspaceErrorsAnswerAsErrors) {
  RecordingKeyspace keys;
  const std::string error = "-ERR replicas unreachable\r\n";
  std::string replies =
      exchange(keys,
               command({"SET", "fail", "1", "NX"}) + command({"SET", "fail", "1"}) +
                   command({"DEL", "a", "fail"}) + command({"EXPIRE", "fail", "1"}) +
                   command({"PERSIST", "fail"}) + command({"GET", "fail"}),
               6 * error.size());
  EXPECT_EQ(replies, error + error + error + error + error + error);
}

}  // namespace
}  // namespace edgekv::daemon
