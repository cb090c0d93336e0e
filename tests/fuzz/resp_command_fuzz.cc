// libFuzzer target for the RESP command layer (daemon/resp_server.h): arbitrary bytes from
// one Redis client go through the real server (parser, command table, arity checks,
// argument parsing for SET's NX/XX/GET/EX/PX/EXAT/PXAT/KEEPTTL, EXPIRE's NX/XX/GT/LT,
// reply slots and backpressure) over a loopback connection, down to the keyspace calls,
// which a map answers here in place of the coordinator and the replicas, deciding
// read-modify-writes with cluster::decide() as the coordinator does. Checked on every
// input:
//   - every command gets exactly one well-formed reply, and a protocol error one more;
//     nothing after QUIT or a protocol error runs;
//   - whatever reaches the keyspace obeys the request rules: keys and values within the
//     limits, an expiry that is 0 (none) or positive and at most kMaxTtlMs ahead (one
//     already past makes the key end up expired), mutations whose options Redis accepts
//     together;
//   - no crash, hang, leak or sanitizer report.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/coordinator.h"
#include "cluster/messages.h"
#include "cluster/mutation.h"
#include "common/assert.h"
#include "common/limits.h"
#include "daemon/request.h"
#include "daemon/resp.h"
#include "daemon/resp_server.h"

namespace {

namespace resp = edgekv::daemon::resp;
using edgekv::Result;
using edgekv::Status;
using edgekv::Version;
using edgekv::WallTime;
using edgekv::cluster::Mutation;
using edgekv::cluster::WriteOutcome;
using edgekv::daemon::RequestLimits;
using edgekv::daemon::RespKeyspace;
using edgekv::store::Record;

// A fixed clock: the same input always takes the same paths.
constexpr int64_t kNowMs = 1'700'000'000'000;

RequestLimits fuzz_limits() {
  RequestLimits limits;
  limits.max_key_bytes = 16;  // small, so inputs reach the limits
  limits.max_value_bytes = 64;
  limits.partitions = 8;
  return limits;
}

// Keys and values in a map. Reads answer at once; writes take effect at once and are
// acknowledged later, from complete_writes(), as the replicas' acknowledgements are.
// Read-modify-writes are decided by cluster::decide() on the map's record. Writes to keys
// starting with "fail" are refused, so the error paths run too.
class MapKeyspace final : public RespKeyspace {
 public:
  void get(std::string_view key, ReadDone done) override {
    check_key(key);
    auto it = records_.find(std::string(key));
    if (it == records_.end() || !edgekv::cluster::is_live(it->second, wall_now())) {
      return done(Status::not_found("no such key"));
    }
    done(it->second);
  }
  void put(std::string_view key, std::string value, WallTime expiry, WriteDone done) override {
    check_key(key);
    EDGEKV_ASSERT(edgekv::daemon::check_value(value, limits_).ok());
    check_expiry(expiry);
    write(key, std::move(value), expiry, false, std::move(done));
  }
  void del(std::string_view key, WriteDone done) override {
    check_key(key);
    write(key, "", WallTime{0}, true, std::move(done));
  }
  void mutate(std::string_view key, Mutation m, MutateDone done) override {
    check_key(key);
    check_mutation(m);
    std::optional<Record> current;
    if (auto it = records_.find(std::string(key)); it != records_.end()) current = it->second;
    edgekv::cluster::MutationDecision d = edgekv::cluster::decide(m, current, wall_now());
    if (!d.write) return done(std::move(d.outcome));
    write(key, std::move(d.write->value), d.write->expiry, d.write->tombstone,
          [outcome = std::move(d.outcome),
           done = std::move(done)](edgekv::Result<WriteOutcome> w) mutable {
            if (!w.ok()) return done(w.status());
            outcome.version = w->version;
            done(std::move(outcome));
          });
  }
  WallTime wall_now() const override { return WallTime{kNowMs}; }
  // Writes are held here, not in a request path; the node bound is not under test.
  uint64_t inflight_bytes() const override { return 0; }

  // Acknowledges the writes made so far, oldest first; true if there were any.
  bool complete_writes() {
    bool any = !acks_.empty();
    while (!acks_.empty()) {
      auto ack = std::move(acks_.front());
      acks_.pop_front();
      ack();
    }
    return any;
  }
  void clear() {
    EDGEKV_ASSERT(acks_.empty());
    records_.clear();
  }

 private:
  void check_key(std::string_view key) const {
    EDGEKV_ASSERT(edgekv::daemon::check_key(key, limits_).ok());
  }
  // 0 (none) or a positive time at most kMaxTtlMs ahead; one already past is allowed.
  static void check_expiry(WallTime expiry) {
    EDGEKV_ASSERT(expiry.ms >= 0);
    EDGEKV_ASSERT(expiry.ms <= kNowMs + edgekv::kMaxTtlMs);
  }
  void check_mutation(const Mutation& m) const {
    switch (m.kind) {
      case Mutation::Kind::kSet:
        EDGEKV_ASSERT(edgekv::daemon::check_value(m.value, limits_).ok());
        check_expiry(m.expiry);
        EDGEKV_ASSERT(!(m.if_absent && m.if_present));
        EDGEKV_ASSERT(!(m.keep_ttl && m.expiry.ms != 0));
        EDGEKV_ASSERT(!m.if_no_expiry && !m.if_has_expiry && !m.if_greater && !m.if_less);
        break;
      case Mutation::Kind::kExpire:
        // Never 0, which would read as "no expiry" rather than "at once".
        EDGEKV_ASSERT(m.expiry.ms > 0);
        check_expiry(m.expiry);
        EDGEKV_ASSERT(!(m.if_no_expiry && (m.if_has_expiry || m.if_greater || m.if_less)));
        EDGEKV_ASSERT(!(m.if_greater && m.if_less));
        EDGEKV_ASSERT(!m.if_absent && !m.if_present && !m.keep_ttl && !m.return_old);
        break;
      case Mutation::Kind::kDelete:
      case Mutation::Kind::kPersist:
        EDGEKV_ASSERT(m.expiry.ms == 0 && m.value.empty());
        EDGEKV_ASSERT(!m.if_absent && !m.if_present && !m.keep_ttl && !m.return_old);
        EDGEKV_ASSERT(!m.if_no_expiry && !m.if_has_expiry && !m.if_greater && !m.if_less);
        break;
    }
  }
  void write(std::string_view key, std::string value, WallTime expiry, bool tombstone,
             WriteDone done) {
    if (key.starts_with("fail")) {
      acks_.push_back([done = std::move(done)] { done(Status::overloaded("write queue full")); });
      return;
    }
    Record& record = records_[std::string(key)];
    record.key = key;
    record.value = std::move(value);
    record.version = Version{++hlc_, 1};
    record.expiry = expiry;
    record.tombstone = tombstone;
    WriteOutcome outcome{record.version, expiry};
    acks_.push_back([done = std::move(done), outcome] { done(outcome); });
  }

  RequestLimits limits_ = fuzz_limits();
  std::map<std::string, Record> records_;
  std::deque<std::function<void()>> acks_;
  uint64_t hlc_ = 0;
};

// Consumes one RESP2 reply from the front of `in`; false if `in` does not start with a
// complete, well-formed one.
bool take_reply(std::string_view& in, int depth = 0) {
  if (depth > 8 || in.empty()) return false;
  size_t eol = in.find("\r\n");
  if (eol == std::string_view::npos) return false;
  const char type = in[0];
  std::string_view line = in.substr(1, eol - 1);
  in.remove_prefix(eol + 2);
  if (line.find_first_of("\r\n") != std::string_view::npos) return false;
  switch (type) {
    case '+':
    case '-': return true;
    case ':': return resp::parse_int64(line).has_value();
    case '$': {
      auto length = resp::parse_int64(line);
      if (!length || *length < -1) return false;
      if (*length == -1) return true;
      const size_t n = static_cast<size_t>(*length);
      if (in.size() < n + 2 || in.substr(n, 2) != "\r\n") return false;
      in.remove_prefix(n + 2);
      return true;
    }
    case '*': {
      auto count = resp::parse_int64(line);
      if (!count || *count < -1) return false;
      for (int64_t i = 0; i < *count; ++i) {
        if (!take_reply(in, depth + 1)) return false;
      }
      return true;
    }
    default: return false;
  }
}

// How many replies the server owes for `input`: one per command up to and including QUIT,
// and one for a protocol error, after which nothing runs. The server's parser limits.
size_t replies_owed(std::string_view input, const RequestLimits& limits) {
  resp::ParserLimits parser_limits;
  parser_limits.max_bulk_bytes = limits.max_value_bytes + 64 * 1024;
  resp::Parser parser(parser_limits);
  parser.append(input);
  size_t owed = 0;
  std::vector<std::string> command;
  for (;;) {
    switch (parser.next(command)) {
      case resp::ParseOutcome::kCommand:
        ++owed;
        if (resp::iequals(command[0], "quit")) return owed;
        break;
      case resp::ParseOutcome::kNeedMore: return owed;
      case resp::ParseOutcome::kError: return owed + 1;
    }
  }
}

struct Harness {
  Harness() {
    edgekv::daemon::RespOptions options;
    options.limits = fuzz_limits();
    options.node_id = "fuzz";
    // Shallow, so that pipelines in one input pause and resume reading.
    options.pipeline_max = 4;
    options.client_buffer_max_bytes = 256;
    auto listening = edgekv::daemon::RespServer::listen("tcp://127.0.0.1:0", options);
    EDGEKV_ASSERT(listening.ok());
    server = std::move(listening).value();
    server->attach(keys, nullptr, options.limits.partitions);
  }

  // Sends `input` on a new connection, half-closes it and returns everything the server
  // sent until it closed the connection.
  std::string session(std::string_view input) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Each session comes from the next of 65536 loopback addresses: the client closes first,
    // so its end of each connection stays in TIME_WAIT for a minute, and one address's
    // ephemeral ports would run out after some 28000 sessions. An address whose ports are
    // busy all the same (a loaded machine) is skipped for the next.
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      EDGEKV_ASSERT(fd >= 0);
      sockaddr_in local{};
      local.sin_family = AF_INET;
      local.sin_addr.s_addr = htonl(0x7f010000u | (sessions++ & 0xffffu));  // 127.1.x.y
      if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0 &&
          ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        break;
      }
      const int err = errno;
      ::close(fd);
      fd = -1;
      if (attempt == 16) {
        std::fprintf(stderr, "resp_command_fuzz: cannot connect: %s\n", std::strerror(err));
        std::abort();
      }
    }
    std::string replies;
    size_t sent = 0;
    bool shut = false;
    for (;;) {
      if (sent < input.size()) {
        ssize_t n =
            ::send(fd, input.data() + sent, input.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          sent = input.size();  // the server closed (after a protocol error or QUIT)
        }
      } else if (!shut) {
        ::shutdown(fd, SHUT_WR);
        shut = true;
      }
      server->on_ready();
      while (keys.complete_writes()) server->flush_dirty();
      server->flush_dirty();
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        replies.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        break;  // the server closed the connection
      }
    }
    ::close(fd);
    // The server notices the close and forgets the connection.
    server->on_ready();
    EDGEKV_ASSERT(server->connections() == 0);
    return replies;
  }

  MapKeyspace keys;
  std::unique_ptr<edgekv::daemon::RespServer> server;
  uint32_t sessions = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness harness;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  harness.keys.clear();
  std::string replies = harness.session(input);

  std::string_view rest = replies;
  size_t got = 0;
  while (!rest.empty()) {
    EDGEKV_ASSERT(take_reply(rest));
    ++got;
  }
  EDGEKV_ASSERT(got == replies_owed(input, fuzz_limits()));
  return 0;
}
