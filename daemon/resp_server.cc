#include "daemon/resp_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/limits.h"
#include "common/log.h"
#include "daemon/resp.h"
#include "daemon/tcp_listen.h"

namespace edgekv::daemon {
namespace {

using Args = std::vector<std::string>;

// Bytes read from one connection per turn: fairness between clients.
constexpr size_t kReadPerTurnMax = 256 * 1024;
// Events taken from epoll per on_ready() call.
constexpr int kEventsPerTurnMax = 256;
// At most one log line per this about connections closed for the node's bound: a flood
// of hogs must not become a flood of log lines (the count says how many).
constexpr int64_t kEvictLogIntervalMs = 10'000;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string wrong_arity(std::string_view name) {
  return "wrong number of arguments for '" + lower(name) + "' command";
}

// Redis's text for an unknown command: the name and the start of the arguments, quoted,
// with the same bounds as Redis (128 bytes of name, 128 of arguments) so that a huge
// argument cannot make a huge error reply.
std::string unknown_command(const Args& args) {
  constexpr size_t kQuotedMax = 128;
  std::string msg =
      "unknown command '" + args[0].substr(0, kQuotedMax) + "', with args beginning with: ";
  std::string quoted;
  for (size_t i = 1; i < args.size() && quoted.size() < kQuotedMax; ++i) {
    quoted += "'" + args[i].substr(0, kQuotedMax - quoted.size()) + "' ";
  }
  return msg + quoted;
}

struct Slot {
  bool ready = false;
  std::string data;
  size_t request_bytes = 0;  // the command's bytes, held until the reply fills the slot
};

struct Conn {
  uint64_t id = 0;
  int fd = -1;
  resp::Parser parser;
  Args command;
  std::deque<Slot> slots;   // replies in request order; front() is the oldest pending
  uint64_t first_slot = 0;  // the sequence number of slots.front()
  std::string out;          // encoded replies not yet sent, from out_sent
  size_t out_sent = 0;
  size_t slot_bytes = 0;       // bytes of filled slots not yet moved to `out`
  size_t request_bytes = 0;    // bytes of the commands whose slots are not filled yet
  size_t unanswered = 0;       // slots not filled yet
  uint64_t accounted = 0;      // what this connection adds to the server's total_held_
  uint64_t accounted_own = 0;  // what it adds to the server's total_own_
  bool reading = true;         // EPOLLIN is registered
  bool writing = false;        // EPOLLOUT is registered
  bool close_after_flush = false;
  bool dirty = false;           // has replies filled since the last flush (listed in dirty_)
  bool stopped = false;         // the server stopped reading requests
  bool paused = false;          // not read because of a bound (counted in paused_)
  bool waits_for_node = false;  // listed in node_waiting_
  std::string name;             // CLIENT SETNAME

  explicit Conn(const resp::ParserLimits& limits) : parser(limits) {}
  // Reply bytes held for this client: filled slots and unsent output.
  size_t unsent() const { return out.size() - out_sent; }
  size_t held() const { return unsent() + slot_bytes; }
  // The connection's own buffers, which only the client can drain (by sending the rest of
  // a command, by reading its replies): the parser's memory and the replies held.
  size_t own() const { return parser.memory_bytes() + held(); }
  // Everything held for this client: requests not answered too.
  size_t held_all() const { return own() + request_bytes; }
};

class RespServerImpl;
using Handler = void (RespServerImpl::*)(Conn&, Args&, uint64_t slot);

struct CommandSpec {
  const char* name;
  int arity;          // Redis convention: N exactly N arguments (name included), -N at least N
  const char* flags;  // for COMMAND: space-separated
  int first_key, last_key, key_step;
  Handler handler;
};

class RespServerImpl final : public RespServer {
 public:
  RespServerImpl(int listen_fd, int epoll_fd, std::string endpoint, RespOptions options)
      : listen_fd_(listen_fd),
        epoll_fd_(epoll_fd),
        endpoint_(std::move(endpoint)),
        options_(std::move(options)) {
    parser_limits_.max_bulk_bytes = options_.limits.max_value_bytes + 64 * 1024;
  }

  ~RespServerImpl() override {
    for (auto& [id, conn] : conns_) ::close(conn->fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::close(epoll_fd_);
  }

  void attach(RespKeyspace& keys, std::function<store::StoreStats()> stats,
              uint32_t partitions) override {
    path_ = &keys;
    stats_ = std::move(stats);
    options_.limits.partitions = partitions;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // connection ids start at 1: 0 is the listener
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }

  uint16_t port() const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return 0;
    }
    if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }

  int fd() const override { return epoll_fd_; }
  size_t connections() const override { return conns_.size(); }
  size_t paused_connections() const override { return paused_; }
  uint64_t held_bytes() const override { return total_held_; }
  const RespCounters& counters() const override { return counters_; }

  void stop_reading() override {
    stopping_ = true;
    if (listen_fd_ >= 0) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
    std::vector<uint64_t> ids;
    for (auto& [id, conn] : conns_) ids.push_back(id);
    for (uint64_t id : ids) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      it->second->stopped = true;
      if (it->second->slots.empty()) {
        close_conn(id);
      } else {
        update_interest(*it->second);
      }
    }
  }

  void on_ready() override {
    std::array<epoll_event, kEventsPerTurnMax> events;
    int n = ::epoll_wait(epoll_fd_, events.data(), kEventsPerTurnMax, 0);
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[static_cast<size_t>(i)].data.u64;
      uint32_t what = events[static_cast<size_t>(i)].events;
      if (id == 0) {
        accept_all();
        continue;
      }
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;  // closed earlier in this turn
      Conn& conn = *it->second;
      if (what & EPOLLOUT) {
        if (!flush(conn)) continue;
        // Output drained: flush_dirty() resumes commands buffered while it was too full.
        if (!conn.dirty) {
          conn.dirty = true;
          dirty_.push_back(id);
        }
      }
      if (what & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_from(conn);
      // A reset (EPOLLERR) or a connection closed both ways (EPOLLHUP) is reported at every
      // epoll_wait whether or not EPOLLIN is registered, so a paused connection left open
      // would make the loop spin. Nothing more can be sent to it: close it now; writes it
      // submitted still complete, and their replies are discarded.
      if ((what & (EPOLLHUP | EPOLLERR)) != 0 && conns_.contains(id)) close_conn(id);
    }
    flush_dirty();
  }

  // ------------------------------------------------------------------ connections

 private:
  void accept_all() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          EDGEKV_LOG(kWarning) << "resp: accept on " << endpoint_ << ": " << std::strerror(errno);
        }
        return;
      }
      ++counters_.connections_received;
      if (conns_.size() >= options_.clients_max) {
        ++counters_.connections_rejected;
        static constexpr std::string_view kFull = "-ERR max number of clients reached\r\n";
        ssize_t ignored = ::send(fd, kFull.data(), kFull.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)ignored;
        ::close(fd);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto conn = std::make_unique<Conn>(parser_limits_);
      conn->id = next_conn_id_++;
      conn->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = conn->id;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      conns_.emplace(conn->id, std::move(conn));
    }
  }

  void close_conn(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second->fd, nullptr);
    ::close(it->second->fd);
    total_held_ -= it->second->accounted;
    total_own_ -= it->second->accounted_own;
    if (it->second->paused) --paused_;
    conns_.erase(it);
  }

  bool may_read(const Conn& conn) const {
    return !conn.stopped && !conn.close_after_flush && !stopping_ && within_bounds(conn);
  }

  bool within_bounds(const Conn& conn) const {
    // The partial command counts, but alone it never stops reading: one command is always
    // taken, however large (max_command_bytes bounds it), else it could never complete.
    const size_t others = conn.held_all() - conn.parser.memory_bytes();
    const bool conn_full = conn.held_all() >= options_.client_buffer_max_bytes && others > 0;
    return conn.slots.size() < options_.pipeline_max && conn.unanswered < options_.unanswered_max &&
           !conn_full && !node_full();
  }

  // Whether the node holds max-inflight-bytes for requests in flight, counting every
  // protocol's writes (the request path's bytes) and this listener's buffers.
  bool node_full() const {
    return path_->inflight_bytes() + total_held_ >= options_.inflight_max_bytes;
  }

  // Brings total_held_ up to date with what `conn` holds now.
  void account(Conn& conn) {
    total_held_ -= conn.accounted;
    conn.accounted = conn.held_all();
    total_held_ += conn.accounted;
    total_own_ -= conn.accounted_own;
    conn.accounted_own = conn.own();
    total_own_ += conn.accounted_own;
  }

  // The node's bound is split by who can drain it. Writes in flight drain by themselves,
  // so for them reading pauses (node_full()). Connections' own buffers (partial commands,
  // replies a client does not read) drain only if their clients act: while the node is
  // over max-inflight-bytes and they hold more than half of it, the connection holding the
  // most of them is closed, as Redis's maxmemory-clients does, until either is no longer
  // so. Half: a node paused with its writes drained holds only such buffers, at least the
  // whole bound, so it cannot stall; and legitimate partial commands of clients paused
  // while the store catches up stay well below it. Writes the closed connection submitted
  // still complete; their replies are discarded.
  void evict_over_bound() {
    while (node_full() && total_own_ > options_.inflight_max_bytes / 2) {
      Conn* worst = nullptr;
      for (auto& [id, conn] : conns_) {
        if (worst == nullptr || conn->accounted_own > worst->accounted_own) worst = conn.get();
      }
      if (worst == nullptr || worst->accounted_own == 0) return;
      ++counters_.clients_evicted;
      ++evicted_unlogged_;
      const uint64_t own = worst->accounted_own;
      close_conn(worst->id);
      // Wall time is what the keyspace offers; a step back just logs at once.
      const int64_t since_ms = path_->wall_now().ms - last_evict_log_.ms;
      if (since_ms >= kEvictLogIntervalMs || since_ms < 0) {
        EDGEKV_LOG(kWarning) << "resp: closed " << evicted_unlogged_
                             << " connection(s) holding the most unread replies and partial "
                                "commands (the last held "
                             << own << " bytes) to bring the node under max-inflight-bytes="
                             << options_.inflight_max_bytes;
        evicted_unlogged_ = 0;
        last_evict_log_ = path_->wall_now();
      }
    }
  }

  void update_interest(Conn& conn) {
    bool want_read = may_read(conn);
    bool paused = !want_read && !conn.stopped && !conn.close_after_flush && !stopping_;
    if (paused != conn.paused) {
      conn.paused = paused;
      if (paused) {
        ++paused_;
        ++counters_.pauses;
      } else {
        --paused_;
      }
    }
    // Nothing this connection does may end the node's pause: flush_dirty() wakes it.
    if (paused && !conn.waits_for_node && node_full()) {
      conn.waits_for_node = true;
      node_waiting_.push_back(conn.id);
    }
    bool want_write = conn.unsent() > 0;
    if (want_read == conn.reading && want_write == conn.writing) return;
    epoll_event ev{};
    ev.events = (want_read ? EPOLLIN : 0u) | (want_write ? EPOLLOUT : 0u);
    ev.data.u64 = conn.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
    conn.reading = want_read;
    conn.writing = want_write;
  }

  void read_from(Conn& conn) {
    uint64_t id = conn.id;
    char buf[64 * 1024];
    size_t total = 0;
    while (may_read(conn) && total < kReadPerTurnMax) {
      ssize_t n = ::recv(conn.fd, buf, sizeof buf, 0);
      if (n > 0) {
        total += static_cast<size_t>(n);
        conn.parser.append(std::string_view(buf, static_cast<size_t>(n)));
        account(conn);
        run_commands(conn);
        if (!conns_.contains(id)) return;
        if (static_cast<size_t>(n) < sizeof buf) break;  // drained for now
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (conn.slots.empty() && conn.unsent() == 0)) {
        close_conn(id);  // the connection failed, or the client closed with nothing owed
        return;
      }
      // The client half-closed (shutdown(SHUT_WR)) with replies owed: send them, then close.
      conn.close_after_flush = true;
      break;
    }
    if (!conn.dirty) {
      conn.dirty = true;
      dirty_.push_back(id);
    }
  }

  // Executes the commands the parser holds, while the connection may take more.
  void run_commands(Conn& conn) {
    uint64_t id = conn.id;
    while (may_read(conn)) {
      resp::ParseOutcome outcome = conn.parser.next(conn.command);
      if (outcome == resp::ParseOutcome::kNeedMore) {
        account(conn);  // the partial command's bytes count toward both bounds
        return;
      }
      if (outcome == resp::ParseOutcome::kError) {
        ++counters_.protocol_errors;
        std::string reply;
        resp::append_error(reply, conn.parser.error());
        fill(conn, reserve(conn), std::move(reply));
        conn.close_after_flush = true;
        return;
      }
      ++counters_.commands;
      dispatch(conn, conn.command);
      if (!conns_.contains(id)) return;
    }
    account(conn);
  }

  uint64_t reserve(Conn& conn) {
    conn.slots.emplace_back();
    ++conn.unanswered;
    return conn.first_slot + conn.slots.size() - 1;
  }

  void fill(Conn& conn, uint64_t slot, std::string reply) {
    // Every reply passes here, so every error reply is counted, whoever answered it.
    if (!reply.empty() && reply[0] == '-') ++counters_.error_replies;
    Slot& s = conn.slots[slot - conn.first_slot];
    if (!s.ready) --conn.unanswered;
    s.ready = true;
    conn.slot_bytes += reply.size();
    s.data = std::move(reply);
    conn.request_bytes -= s.request_bytes;
    s.request_bytes = 0;
    account(conn);
  }

  // A reply from a callback (a read answered at once, a write's commit). It is sent with
  // the others of its batch by flush_dirty(): one send() per connection per batch, not one
  // per reply, which is what makes pipelining pay.
  void fill_later(uint64_t conn_id, uint64_t slot, std::string reply) {
    auto it = conns_.find(conn_id);
    if (it == conns_.end()) {  // the client went away; an error is an error all the same
      if (!reply.empty() && reply[0] == '-') ++counters_.error_replies;
      return;
    }
    Conn& conn = *it->second;
    fill(conn, slot, std::move(reply));
    if (!conn.dirty) {
      conn.dirty = true;
      dirty_.push_back(conn_id);
    }
  }

 public:
  void flush_dirty() override {
    evict_over_bound();
    wake_node_waiting();
    // Resuming a paused connection can dirty more connections (its own, again): loop.
    while (!dirty_.empty()) {
      std::vector<uint64_t> ids;
      ids.swap(dirty_);
      for (uint64_t id : ids) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Conn& conn = *it->second;
        conn.dirty = false;
        send_ready(conn);
        if (!conns_.contains(id)) continue;
        // Room again: run the commands already buffered. No new bytes may ever arrive to
        // wake this connection (a client that sent everything and now waits for replies).
        if (may_read(conn) && conn.parser.buffered_bytes() > 0) {
          // Only commands that ran can have replies; the rest may be a partial command
          // waiting for bytes, which must not be retried here forever.
          uint64_t ran_before = counters_.commands + counters_.protocol_errors;
          run_commands(conn);
          bool ran = counters_.commands + counters_.protocol_errors != ran_before;
          if (ran && conns_.contains(id) && !conn.dirty) {
            conn.dirty = true;
            dirty_.push_back(id);
          }
        }
      }
      evict_over_bound();
      wake_node_waiting();
    }
  }

 private:
  // Once the node is below max-inflight-bytes again, the connections paused for it are
  // dirtied: flush_dirty() runs their buffered commands and reading resumes.
  void wake_node_waiting() {
    if (node_waiting_.empty() || node_full()) return;
    std::vector<uint64_t> ids;
    ids.swap(node_waiting_);
    for (uint64_t id : ids) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& conn = *it->second;
      conn.waits_for_node = false;
      if (!conn.dirty) {
        conn.dirty = true;
        dirty_.push_back(id);
      }
    }
  }

 private:
  // Moves filled slots from the front into the output buffer and sends what it can.
  void send_ready(Conn& conn) {
    while (!conn.slots.empty() && conn.slots.front().ready) {
      conn.slot_bytes -= conn.slots.front().data.size();
      if (conn.out.empty()) {
        conn.out = std::move(conn.slots.front().data);
      } else {
        conn.out += conn.slots.front().data;
      }
      conn.slots.pop_front();
      ++conn.first_slot;
    }
    flush(conn);
  }

  // Sends buffered output; closes the connection when it is done with. Returns false if the
  // connection is gone.
  bool flush(Conn& conn) {
    uint64_t id = conn.id;
    while (conn.unsent() > 0) {
      ssize_t n = ::send(conn.fd, conn.out.data() + conn.out_sent, conn.unsent(),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        conn.out_sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      close_conn(id);
      return false;
    }
    if (conn.unsent() == 0) {
      conn.out.clear();
      conn.out_sent = 0;
      if ((conn.close_after_flush || conn.stopped) && conn.slots.empty()) {
        close_conn(id);
        return false;
      }
    }
    account(conn);
    update_interest(conn);
    return true;
  }

  // ------------------------------------------------------------------ dispatch

  void dispatch(Conn& conn, Args& args) {
    uint64_t slot = reserve(conn);
    size_t bytes = 0;
    for (const std::string& arg : args) bytes += arg.size();
    conn.slots.back().request_bytes = bytes;
    conn.request_bytes += bytes;
    account(conn);
    const CommandSpec* spec = find_command(args[0]);
    if (spec == nullptr) return reply_error(conn, slot, unknown_command(args));
    int n = static_cast<int>(args.size());
    if ((spec->arity > 0 && n != spec->arity) || (spec->arity < 0 && n < -spec->arity)) {
      return reply_error(conn, slot, wrong_arity(args[0]));
    }
    (this->*(spec->handler))(conn, args, slot);
  }

  static const std::vector<CommandSpec>& commands();
  static const CommandSpec* find_command(std::string_view name) {
    for (const CommandSpec& spec : commands()) {
      if (resp::iequals(name, spec.name)) return &spec;
    }
    return nullptr;
  }

  // Reply helpers for the synchronous case.
  void reply(Conn& conn, uint64_t slot, std::string data) { fill(conn, slot, std::move(data)); }
  void reply_error(Conn& conn, uint64_t slot, std::string_view message) {
    std::string out;
    resp::append_error(out, message);
    fill(conn, slot, std::move(out));
  }
  void reply_ok(Conn& conn, uint64_t slot) { reply(conn, slot, "+OK\r\n"); }
  void reply_int(Conn& conn, uint64_t slot, int64_t v) {
    std::string out;
    resp::append_integer(out, v);
    fill(conn, slot, std::move(out));
  }
  static std::string error_text(const Status& status) {
    std::string out;
    resp::append_error(
        out, status.message().empty() ? std::string(code_name(status.code())) : status.message());
    return out;
  }

  // Checks the keys args[first], args[first + step], ... before args[end] (0: the end).
  bool keys_ok(Conn& conn, uint64_t slot, const Args& args, size_t first, size_t step,
               size_t end = 0) {
    if (end == 0) end = args.size();
    for (size_t i = first; i < end; i += step) {
      Status s = check_key(args[i], options_.limits);
      if (!s.ok()) {
        reply_error(conn, slot, s.message());
        return false;
      }
    }
    return true;
  }

  // ------------------------------------------------------------------ connection commands

  void cmd_ping(Conn& conn, Args& args, uint64_t slot) {
    if (args.size() > 2) return reply_error(conn, slot, wrong_arity(args[0]));
    if (args.size() == 1) return reply(conn, slot, "+PONG\r\n");
    std::string out;
    resp::append_bulk(out, args[1]);
    reply(conn, slot, std::move(out));
  }

  void cmd_echo(Conn& conn, Args& args, uint64_t slot) {
    std::string out;
    resp::append_bulk(out, args[1]);
    reply(conn, slot, std::move(out));
  }

  void cmd_quit(Conn& conn, Args&, uint64_t slot) {
    reply_ok(conn, slot);
    conn.close_after_flush = true;
  }

  void cmd_select(Conn& conn, Args& args, uint64_t slot) {
    auto db = resp::parse_int64(args[1]);
    if (!db) return reply_error(conn, slot, "value is not an integer or out of range");
    if (*db != 0) return reply_error(conn, slot, "DB index is out of range");
    reply_ok(conn, slot);
  }

  void cmd_hello(Conn& conn, Args& args, uint64_t slot) {
    size_t i = 1;
    if (args.size() > 1) {
      auto version = resp::parse_int64(args[1]);
      if (!version)
        return reply_error(conn, slot, "Protocol version is not an integer or out of range");
      if (*version != 2) {
        std::string out;
        resp::append_error(out, "unsupported protocol version", "NOPROTO");
        return reply(conn, slot, std::move(out));
      }
      i = 2;
    }
    for (; i < args.size(); ++i) {
      if (resp::iequals(args[i], "setname") && i + 1 < args.size()) {
        if (!valid_client_name(args[i + 1])) {
          return reply_error(conn, slot,
                             "Client names cannot contain spaces, newlines or special characters.");
        }
        conn.name = args[++i];
      } else {
        return reply_error(conn, slot, "Syntax error in HELLO option '" + args[i] + "'");
      }
    }
    std::string out;
    resp::append_array_header(out, 14);
    resp::append_bulk(out, "server");
    resp::append_bulk(out, "edgekv");
    resp::append_bulk(out, "version");
    resp::append_bulk(out, EDGEKV_VERSION);
    resp::append_bulk(out, "proto");
    resp::append_integer(out, 2);
    resp::append_bulk(out, "id");
    resp::append_integer(out, static_cast<int64_t>(conn.id));
    resp::append_bulk(out, "mode");
    resp::append_bulk(out, "standalone");
    resp::append_bulk(out, "role");
    resp::append_bulk(out, "master");
    resp::append_bulk(out, "modules");
    resp::append_array_header(out, 0);
    reply(conn, slot, std::move(out));
  }

  static bool valid_client_name(std::string_view name) {
    return std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c <= '~'; });
  }

  void cmd_client(Conn& conn, Args& args, uint64_t slot) {
    const std::string& sub = args[1];
    if (resp::iequals(sub, "setname") && args.size() == 3) {
      if (!valid_client_name(args[2])) {
        return reply_error(conn, slot,
                           "Client names cannot contain spaces, newlines or special characters.");
      }
      conn.name = args[2];
      return reply_ok(conn, slot);
    }
    if (resp::iequals(sub, "getname") && args.size() == 2) {
      if (conn.name.empty()) return reply(conn, slot, "$-1\r\n");
      std::string out;
      resp::append_bulk(out, conn.name);
      return reply(conn, slot, std::move(out));
    }
    if (resp::iequals(sub, "id") && args.size() == 2) {
      return reply_int(conn, slot, static_cast<int64_t>(conn.id));
    }
    if (resp::iequals(sub, "setname") || resp::iequals(sub, "getname") ||
        resp::iequals(sub, "id")) {
      return reply_error(conn, slot,
                         "wrong number of arguments for 'client|" + lower(sub) + "' command");
    }
    reply_error(conn, slot, "unknown subcommand '" + sub + "'. Try CLIENT HELP.");
  }

  void cmd_command(Conn& conn, Args& args, uint64_t slot) {
    std::string out;
    if (args.size() == 1) {
      resp::append_array_header(out, commands().size());
      for (const CommandSpec& spec : commands()) append_command_info(out, spec);
      return reply(conn, slot, std::move(out));
    }
    const std::string& sub = args[1];
    if (resp::iequals(sub, "count"))
      return reply_int(conn, slot, static_cast<int64_t>(commands().size()));
    if (resp::iequals(sub, "docs")) {
      resp::append_array_header(out, 0);  // no docs: clients fall back to plain input
      return reply(conn, slot, std::move(out));
    }
    if (resp::iequals(sub, "info")) {
      resp::append_array_header(out, args.size() - 2);
      for (size_t i = 2; i < args.size(); ++i) {
        const CommandSpec* spec = find_command(args[i]);
        if (spec == nullptr) {
          resp::append_null_array(out);
        } else {
          append_command_info(out, *spec);
        }
      }
      return reply(conn, slot, std::move(out));
    }
    reply_error(conn, slot, "unknown subcommand '" + sub + "'. Try COMMAND HELP.");
  }

  static void append_command_info(std::string& out, const CommandSpec& spec) {
    resp::append_array_header(out, 6);
    resp::append_bulk(out, spec.name);
    resp::append_integer(out, spec.arity);
    std::vector<std::string_view> flags;
    std::string_view all = spec.flags;
    while (!all.empty()) {
      size_t space = all.find(' ');
      flags.push_back(all.substr(0, space));
      if (space == std::string_view::npos) break;
      all.remove_prefix(space + 1);
    }
    resp::append_array_header(out, flags.size());
    for (auto f : flags) resp::append_simple_string(out, f);
    resp::append_integer(out, spec.first_key);
    resp::append_integer(out, spec.last_key);
    resp::append_integer(out, spec.key_step);
  }

  void cmd_info(Conn& conn, Args& args, uint64_t slot) {
    bool all = args.size() == 1;
    auto wants = [&](std::string_view section) {
      if (all) return true;
      for (size_t i = 1; i < args.size(); ++i) {
        if (resp::iequals(args[i], section) || resp::iequals(args[i], "all") ||
            resp::iequals(args[i], "default") || resp::iequals(args[i], "everything")) {
          return true;
        }
      }
      return false;
    };
    store::StoreStats s = stats_ ? stats_() : store::StoreStats{};
    std::string text;
    auto line = [&](std::string_view name, const std::string& value) {
      text.append(name).append(":").append(value).append("\r\n");
    };
    if (wants("server")) {
      text += "# Server\r\n";
      line("edgekv_version", EDGEKV_VERSION);
      // Client libraries gate features on redis_version; edgekv speaks RESP2 as Redis 7 does.
      line("redis_version", "7.0.0");
      line("redis_mode", "standalone");
      line("node_id", options_.node_id);
      line("process_id", std::to_string(::getpid()));
      line("tcp_endpoint", endpoint_);
      text += "\r\n";
    }
    if (wants("clients")) {
      text += "# Clients\r\n";
      line("connected_clients", std::to_string(conns_.size()));
      line("maxclients", std::to_string(options_.clients_max));
      text += "\r\n";
    }
    if (wants("stats")) {
      text += "# Stats\r\n";
      line("total_connections_received", std::to_string(counters_.connections_received));
      line("total_commands_processed", std::to_string(counters_.commands));
      line("rejected_connections", std::to_string(counters_.connections_rejected));
      line("expired_keys", std::to_string(s.expired));
      line("keyspace_hits", std::to_string(counters_.keyspace_hits));
      line("keyspace_misses", std::to_string(counters_.keyspace_misses));
      line("total_error_replies", std::to_string(counters_.error_replies));
      line("total_error_replies_protocol", std::to_string(counters_.protocol_errors));
      line("commit_groups", std::to_string(s.commit_groups));
      line("staged_writes", std::to_string(s.staged));
      line("apply_batches", std::to_string(s.apply_batches));
      line("apply_failures", std::to_string(s.apply_failures));
      line("checkpoints", std::to_string(s.checkpoints));
      line("bytes_on_disk", std::to_string(s.bytes_on_disk));
      text += "\r\n";
    }
    if (wants("keyspace")) {
      text += "# Keyspace\r\n";
      // Redis's shape (key=value pairs), which client libraries parse into a map.
      if (s.keys > 0) {
        line("db0", "keys=" + std::to_string(s.keys) +
                        ",expires=" + std::to_string(s.keys_with_expiry) +
                        ",partitions=" + std::to_string(options_.limits.partitions));
      }
      text += "\r\n";
    }
    if (text.size() >= 2) text.resize(text.size() - 2);  // no blank line after the last section
    std::string out;
    resp::append_bulk(out, text);
    reply(conn, slot, std::move(out));
  }

  // ------------------------------------------------------------------ key commands

  void cmd_get(Conn& conn, Args& args, uint64_t slot) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    path_->get(args[1], [this, id = conn.id, slot](Result<store::Record> r) {
      std::string out;
      if (r.ok()) {
        ++counters_.keyspace_hits;
        resp::append_bulk(out, r->value);
      } else if (r.status().code() == Code::kNotFound) {
        ++counters_.keyspace_misses;
        resp::append_null_bulk(out);
      } else {
        out = error_text(r.status());
      }
      fill_later(id, slot, std::move(out));
    });
  }

  // SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
  void cmd_set(Conn& conn, Args& args, uint64_t slot) {
    bool nx = false, xx = false, get = false, keep_ttl = false;
    const char* unit = nullptr;  // which expiry option was given
    int64_t expire_at_ms = 0;    // absolute; 0: none
    WallTime now = path_->wall_now();
    for (size_t i = 3; i < args.size(); ++i) {
      const std::string& opt = args[i];
      bool has_next = i + 1 < args.size();
      if (resp::iequals(opt, "nx") && !xx) {
        nx = true;
      } else if (resp::iequals(opt, "xx") && !nx) {
        xx = true;
      } else if (resp::iequals(opt, "get")) {
        get = true;
      } else if (resp::iequals(opt, "keepttl") && unit == nullptr) {
        keep_ttl = true;
        unit = "keepttl";
      } else if ((resp::iequals(opt, "ex") || resp::iequals(opt, "px") ||
                  resp::iequals(opt, "exat") || resp::iequals(opt, "pxat")) &&
                 unit == nullptr && !keep_ttl && has_next) {
        unit = opt.c_str();
        auto value = resp::parse_int64(args[++i]);
        if (!value) return reply_error(conn, slot, "value is not an integer or out of range");
        bool seconds = resp::iequals(opt, "ex") || resp::iequals(opt, "exat");
        bool absolute = resp::iequals(opt, "exat") || resp::iequals(opt, "pxat");
        int64_t ms = 0;
        if (*value <= 0 || (seconds && __builtin_mul_overflow(*value, int64_t{1000}, &ms))) {
          return reply_error(conn, slot, "invalid expire time in 'set' command");
        }
        if (!seconds) ms = *value;
        int64_t ttl_ms = absolute ? ms - now.ms : ms;
        if (!absolute && !check_ttl_ms(ttl_ms).ok()) {
          return reply_error(conn, slot, "invalid expire time in 'set' command");
        }
        if (absolute && ms > now.ms + kMaxTtlMs) {
          return reply_error(conn, slot, "invalid expire time in 'set' command");
        }
        // An absolute time already past: the write lands expired, as in Redis.
        expire_at_ms = absolute ? std::max<int64_t>(ms, 1) : now.ms + ttl_ms;
      } else {
        return reply_error(conn, slot, "syntax error");
      }
    }
    if (!keys_ok(conn, slot, args, 1, 1, 2)) return;
    Status value_ok = check_value(args[2], options_.limits);
    if (!value_ok.ok()) return reply_error(conn, slot, value_ok.message());

    uint64_t id = conn.id;
    // An absolute expiry already past (EXAT/PXAT) is written as it is: the key ends up
    // expired, as in Redis (the keyspace and cluster::decide() make it an expired tombstone).
    if (!nx && !xx && !get && !keep_ttl) {
      path_->put(args[1], std::move(args[2]), WallTime{expire_at_ms},
                 [this, id, slot](Result<cluster::WriteOutcome> r) {
                   fill_later(id, slot, r.ok() ? "+OK\r\n" : error_text(r.status()));
                 });
      return;
    }
    cluster::Mutation m;
    m.kind = cluster::Mutation::Kind::kSet;
    m.value = std::move(args[2]);
    m.expiry = WallTime{expire_at_ms};
    m.if_absent = nx;
    m.if_present = xx;
    m.keep_ttl = keep_ttl;
    m.return_old = get;
    path_->mutate(args[1], std::move(m), [this, id, slot, get](Result<cluster::MutationOutcome> r) {
      if (!r.ok()) return fill_later(id, slot, error_text(r.status()));
      std::string out;
      if (get) {
        // The old value whether or not the condition held, as Redis answers.
        if (r->old_value) {
          resp::append_bulk(out, *r->old_value);
        } else {
          resp::append_null_bulk(out);
        }
      } else if (r->applied) {
        out = "+OK\r\n";
      } else {
        resp::append_null_bulk(out);
      }
      fill_later(id, slot, std::move(out));
    });
  }

  // Counts replies for a multi-key command and answers once all are in.
  struct Gather {
    enum class Reply : uint8_t { kCount, kArray, kOk };
    Gather(uint64_t conn, uint64_t reply_slot, size_t parts_expected, Reply kind)
        : conn_id(conn), slot(reply_slot), remaining(parts_expected), reply(kind) {
      if (kind == Reply::kArray) parts.resize(parts_expected);
    }
    uint64_t conn_id;
    uint64_t slot;
    size_t remaining;
    Reply reply;
    int64_t count = 0;
    std::vector<std::string> parts;  // MGET: one encoded reply per key
    std::string error;               // the first failure, encoded
  };

  void finish_part(const std::shared_ptr<Gather>& g) {
    if (--g->remaining > 0) return;
    if (!g->error.empty()) return fill_later(g->conn_id, g->slot, g->error);
    std::string out;
    switch (g->reply) {
      case Gather::Reply::kArray:
        resp::append_array_header(out, g->parts.size());
        for (auto& p : g->parts) out += p;
        break;
      case Gather::Reply::kCount: resp::append_integer(out, g->count); break;
      case Gather::Reply::kOk: out = "+OK\r\n"; break;
    }
    fill_later(g->conn_id, g->slot, std::move(out));
  }

  void cmd_del(Conn& conn, Args& args, uint64_t slot) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    auto g = std::make_shared<Gather>(conn.id, slot, args.size() - 1, Gather::Reply::kCount);
    for (size_t i = 1; i < args.size(); ++i) {
      // A delete that reports whether the key existed: DEL counts those.
      cluster::Mutation m;
      m.kind = cluster::Mutation::Kind::kDelete;
      path_->mutate(args[i], std::move(m), [this, g](Result<cluster::MutationOutcome> r) {
        if (!r.ok()) {
          if (g->error.empty()) g->error = error_text(r.status());
        } else if (r->applied) {
          ++g->count;
        }
        finish_part(g);
      });
    }
  }

  void cmd_exists(Conn& conn, Args& args, uint64_t slot) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    auto g = std::make_shared<Gather>(conn.id, slot, args.size() - 1, Gather::Reply::kCount);
    for (size_t i = 1; i < args.size(); ++i) {
      path_->get(args[i], [this, g](Result<store::Record> r) {
        if (r.ok()) {
          ++g->count;
        } else if (r.status().code() != Code::kNotFound && g->error.empty()) {
          g->error = error_text(r.status());
        }
        finish_part(g);
      });
    }
  }

  void cmd_mget(Conn& conn, Args& args, uint64_t slot) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    auto g = std::make_shared<Gather>(conn.id, slot, args.size() - 1, Gather::Reply::kArray);
    for (size_t i = 1; i < args.size(); ++i) {
      path_->get(args[i], [this, g, i](Result<store::Record> r) {
        std::string& part = g->parts[i - 1];
        if (r.ok()) {
          ++counters_.keyspace_hits;
          resp::append_bulk(part, r->value);
        } else {
          if (r.status().code() == Code::kNotFound) ++counters_.keyspace_misses;
          // Like a missing key: MGET answers nil for anything it cannot read.
          resp::append_null_bulk(part);
        }
        finish_part(g);
      });
    }
  }

  void cmd_mset(Conn& conn, Args& args, uint64_t slot) {
    if (args.size() % 2 == 0) return reply_error(conn, slot, wrong_arity(args[0]));
    if (!keys_ok(conn, slot, args, 1, 2)) return;
    for (size_t i = 2; i < args.size(); i += 2) {
      Status s = check_value(args[i], options_.limits);
      if (!s.ok()) return reply_error(conn, slot, s.message());
    }
    // MSET answers OK once every pair committed.
    auto g = std::make_shared<Gather>(conn.id, slot, (args.size() - 1) / 2, Gather::Reply::kOk);
    for (size_t i = 1; i < args.size(); i += 2) {
      path_->put(args[i], std::move(args[i + 1]), WallTime{0},
                 [this, g](Result<cluster::WriteOutcome> r) {
                   if (!r.ok() && g->error.empty()) g->error = error_text(r.status());
                   finish_part(g);
                 });
    }
  }

  // EXPIRE key seconds [NX|XX|GT|LT] (PEXPIRE: milliseconds), Redis 7's options: NX only
  // when the key has no expiry, XX only when it has one, GT only when the new expiry is
  // later, LT only when it is earlier (a key without expiry counts as expiring never).
  void cmd_expire(Conn& conn, Args& args, uint64_t slot, bool millis) {
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < args.size(); ++i) {
      const std::string option = lower(args[i]);
      if (option == "nx") {
        nx = true;
      } else if (option == "xx") {
        xx = true;
      } else if (option == "gt") {
        gt = true;
      } else if (option == "lt") {
        lt = true;
      } else {
        return reply_error(conn, slot, "Unsupported option " + args[i]);
      }
    }
    if (nx && (xx || gt || lt)) {
      return reply_error(conn, slot,
                         "NX and XX, GT or LT options at the same time are not compatible");
    }
    if (gt && lt) {
      return reply_error(conn, slot, "GT and LT options at the same time are not compatible");
    }
    auto value = resp::parse_int64(args[2]);
    if (!value) return reply_error(conn, slot, "value is not an integer or out of range");
    int64_t ttl_ms = *value;
    if (!millis && __builtin_mul_overflow(*value, int64_t{1000}, &ttl_ms)) {
      return reply_error(conn, slot, "invalid expire time in '" + lower(args[0]) + "' command");
    }
    if (ttl_ms > kMaxTtlMs) {
      return reply_error(conn, slot, "invalid expire time in '" + lower(args[0]) + "' command");
    }
    if (!keys_ok(conn, slot, args, 1, 1, 2)) return;
    cluster::Mutation m;
    m.kind = cluster::Mutation::Kind::kExpire;
    // A TTL of zero or less deletes the key, as in Redis: any expiry at or before now does.
    // Clamped to 1 so that it never reads as "no expiry" (0) nor goes negative; every NX /
    // XX / GT / LT comparison with a live key's expiry (later than now) comes out the same.
    m.expiry = WallTime{std::max<int64_t>(path_->wall_now().ms + ttl_ms, 1)};
    m.if_no_expiry = nx;
    m.if_has_expiry = xx;
    m.if_greater = gt;
    m.if_less = lt;
    path_->mutate(args[1], std::move(m), reply_applied(conn.id, slot));
  }

  // Answers :1 when the mutation applied, :0 when the key was absent or its condition
  // refused it (EXPIRE, PEXPIRE, PERSIST).
  RespKeyspace::MutateDone reply_applied(uint64_t id, uint64_t slot) {
    return [this, id, slot](Result<cluster::MutationOutcome> r) {
      if (!r.ok()) return fill_later(id, slot, error_text(r.status()));
      fill_later(id, slot, r->applied ? ":1\r\n" : ":0\r\n");
    };
  }
  void cmd_expire_s(Conn& conn, Args& args, uint64_t slot) { cmd_expire(conn, args, slot, false); }
  void cmd_expire_ms(Conn& conn, Args& args, uint64_t slot) { cmd_expire(conn, args, slot, true); }

  void cmd_persist(Conn& conn, Args& args, uint64_t slot) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    cluster::Mutation m;
    m.kind = cluster::Mutation::Kind::kPersist;
    path_->mutate(args[1], std::move(m), reply_applied(conn.id, slot));
  }

  void cmd_ttl(Conn& conn, Args& args, uint64_t slot, bool millis) {
    if (!keys_ok(conn, slot, args, 1, 1)) return;
    path_->get(args[1], [this, id = conn.id, slot, millis](Result<store::Record> r) {
      std::string out;
      if (!r.ok()) {
        if (r.status().code() != Code::kNotFound)
          return fill_later(id, slot, error_text(r.status()));
        resp::append_integer(out, -2);
      } else if (r->expiry.ms == 0) {
        resp::append_integer(out, -1);
      } else {
        int64_t left_ms = std::max<int64_t>(r->expiry.ms - path_->wall_now().ms, 0);
        resp::append_integer(out, millis ? left_ms : (left_ms + 500) / 1000);
      }
      fill_later(id, slot, std::move(out));
    });
  }
  void cmd_ttl_s(Conn& conn, Args& args, uint64_t slot) { cmd_ttl(conn, args, slot, false); }
  void cmd_ttl_ms(Conn& conn, Args& args, uint64_t slot) { cmd_ttl(conn, args, slot, true); }

  int listen_fd_;
  int epoll_fd_;
  std::string endpoint_;
  RespOptions options_;
  resp::ParserLimits parser_limits_;
  RespKeyspace* path_ = nullptr;
  std::function<store::StoreStats()> stats_;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<uint64_t> dirty_;         // connections with replies to send (Conn::dirty)
  std::vector<uint64_t> node_waiting_;  // paused while the node is full (Conn::waits_for_node)
  uint64_t total_held_ = 0;             // the sum of every connection's Conn::accounted
  uint64_t total_own_ = 0;              // the sum of every connection's Conn::accounted_own
  uint64_t evicted_unlogged_ = 0;       // connections closed since the last log line about it
  WallTime last_evict_log_{};
  size_t paused_ = 0;  // connections with Conn::paused
  uint64_t next_conn_id_ = 1;
  bool stopping_ = false;
  RespCounters counters_;
};

// The command table: dispatch, arity, and what COMMAND reports.
const std::vector<CommandSpec>& RespServerImpl::commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"ping", -1, "fast stale", 0, 0, 0, &RespServerImpl::cmd_ping},
      {"echo", 2, "fast stale", 0, 0, 0, &RespServerImpl::cmd_echo},
      {"quit", -1, "fast stale", 0, 0, 0, &RespServerImpl::cmd_quit},
      {"select", 2, "fast stale loading", 0, 0, 0, &RespServerImpl::cmd_select},
      {"hello", -1, "fast stale noscript", 0, 0, 0, &RespServerImpl::cmd_hello},
      {"client", -2, "stale noscript", 0, 0, 0, &RespServerImpl::cmd_client},
      {"command", -1, "stale loading", 0, 0, 0, &RespServerImpl::cmd_command},
      {"info", -1, "stale loading", 0, 0, 0, &RespServerImpl::cmd_info},
      {"get", 2, "readonly fast", 1, 1, 1, &RespServerImpl::cmd_get},
      {"set", -3, "write denyoom", 1, 1, 1, &RespServerImpl::cmd_set},
      {"del", -2, "write", 1, -1, 1, &RespServerImpl::cmd_del},
      {"unlink", -2, "write fast", 1, -1, 1, &RespServerImpl::cmd_del},
      {"exists", -2, "readonly fast", 1, -1, 1, &RespServerImpl::cmd_exists},
      {"expire", -3, "write fast", 1, 1, 1, &RespServerImpl::cmd_expire_s},
      {"pexpire", -3, "write fast", 1, 1, 1, &RespServerImpl::cmd_expire_ms},
      {"persist", 2, "write fast", 1, 1, 1, &RespServerImpl::cmd_persist},
      {"ttl", 2, "readonly fast", 1, 1, 1, &RespServerImpl::cmd_ttl_s},
      {"pttl", 2, "readonly fast", 1, 1, 1, &RespServerImpl::cmd_ttl_ms},
      {"mget", -2, "readonly fast", 1, -1, 1, &RespServerImpl::cmd_mget},
      {"mset", -3, "write denyoom", 1, -1, 2, &RespServerImpl::cmd_mset},
  };
  return kCommands;
}

Status bind_error(const std::string& endpoint, const char* what, int err) {
  return listen_error("resp-endpoint", endpoint, what, err);
}

}  // namespace

Result<std::unique_ptr<RespServer>> RespServer::listen(const std::string& endpoint,
                                                       RespOptions options) {
  // tcp://HOST:PORT, already validated by the configuration.
  std::string_view rest(endpoint);
  if (!rest.starts_with("tcp://")) return bind_error(endpoint, "not a tcp:// endpoint", 0);
  rest.remove_prefix(6);
  Result<int> listened = listen_tcp("resp-endpoint", endpoint, rest);
  if (!listened.ok()) return listened.status();
  int fd = listened.value();
  int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    int err = errno;
    ::close(fd);
    return bind_error(endpoint, "epoll_create1", err);
  }
  return std::unique_ptr<RespServer>(
      std::make_unique<RespServerImpl>(fd, epoll_fd, endpoint, std::move(options)));
}

}  // namespace edgekv::daemon
