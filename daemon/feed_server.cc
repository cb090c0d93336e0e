#include "daemon/feed_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/assert.h"
#include "common/log.h"
#include "common/random.h"
#include "daemon/tcp_listen.h"
#include "daemon/zmtp.h"

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

// Per on_ready()/flush() call. Each bound keeps one loop turn's feed work to about a
// millisecond on a loopback socket, so no client request waits behind feed traffic; what is
// left over is taken on the next turn.
constexpr size_t kAcceptsPerTurnMax = 64;
constexpr int kEventsPerTurnMax = 256;
// Bytes read from one connection per turn (a subscriber sends little: subscriptions of at
// most max-key-bytes), and from all of them.
constexpr size_t kReadPerConnTurnMax = 64 * 1024;
constexpr size_t kReadPerTurnMax = 1024 * 1024;
// Bytes written to all subscribers per call.
constexpr size_t kWritePerTurnMax = 8 * 1024 * 1024;
// iovecs per sendmsg(): a queue of small events goes out in one system call.
constexpr size_t kIovMax = 64;
// Slack over 1 + max-key-bytes for an inbound frame: a ZMTP 3.1 SUBSCRIBE command carries
// its name (10 bytes) before the prefix, a PING at most 19 bytes. A longer frame cannot be
// a valid subscription and closes the connection before its body is read.
constexpr size_t kFrameSlackBytes = 64;
// Refused connections and subscriptions are logged at most this often (with a count of
// those not logged), so a client hammering the feed cannot flood the log.
constexpr milliseconds kLogInterval{10000};

// One encoded event (or handshake message) shared by every queue that holds it. Its bytes
// are counted in the server's queued total while any queue holds it.
class Chunk {
 public:
  Chunk(std::string data, size_t* live) : data_(std::move(data)), live_(live) {
    *live_ += data_.size();
  }
  ~Chunk() { *live_ -= data_.size(); }
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;
  const std::string& data() const { return data_; }

 private:
  std::string data_;
  size_t* live_;
};
using ChunkPtr = std::shared_ptr<const Chunk>;

// The prefix index hashes with XXH3-64 under a seed drawn from FeedOptions::hash_seed, so
// peers cannot choose colliding prefixes without knowing it. publish() feeds the key to one
// streaming state and takes a digest at each subscribed prefix length (a digest leaves the
// state as it was, and equals the one-shot hash of the bytes so far), so matching costs
// O(key length) plus one digest per subscribed length.
struct HashedPrefix {
  std::string_view text;
  uint64_t hash;
};

struct PrefixHash {
  using is_transparent = void;
  uint64_t seed;
  size_t operator()(std::string_view s) const {
    return static_cast<size_t>(XXH3_64bits_withSeed(s.data(), s.size(), seed));
  }
  size_t operator()(const std::string& s) const { return (*this)(std::string_view(s)); }
  size_t operator()(const HashedPrefix& p) const { return static_cast<size_t>(p.hash); }
};

struct PrefixEq {
  using is_transparent = void;
  static std::string_view view(std::string_view s) { return s; }
  static std::string_view view(const std::string& s) { return s; }
  static std::string_view view(const HashedPrefix& p) { return p.text; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return view(a) == view(b);
  }
};

struct Conn {
  uint64_t id = 0;
  int fd = -1;
  ZmtpDecoder decoder;
  bool ready = false;    // the handshake is done: events may be sent
  bool writing = false;  // EPOLLOUT is registered
  bool dirty = false;    // listed in dirty_
  uint64_t stamp = 0;    // the last event matched, so one event is queued once
  // The connection's subscriptions, each with how many times it was made (ZeroMQ counts
  // duplicate subscriptions, and a cancel undoes one).
  std::unordered_map<std::string, uint32_t> subs;
  size_t sub_count = 0;  // with duplicates
  std::deque<ChunkPtr> out;
  size_t out_offset = 0;  // bytes of out.front() already sent
  size_t queued = 0;      // unsent bytes in `out`

  explicit Conn(const ZmtpLimits& limits) : decoder(limits) {}
};

struct PrefixEntry {
  std::vector<Conn*> subscribers;  // each once, however often it subscribed
};

// Logs a refusal at most once per kLogInterval, counting the ones it kept quiet about.
class RateLimitedLog {
 public:
  void warn(const Clock& clock, const std::string& what) {
    MonoTime now = clock.mono_now();
    if (logged_ && now - last_ < kLogInterval) {
      ++suppressed_;
      return;
    }
    std::string more;
    if (suppressed_ > 0) more = " (and " + std::to_string(suppressed_) + " more not logged)";
    EDGEKV_LOG(kWarning) << what << more;
    logged_ = true;
    last_ = now;
    suppressed_ = 0;
  }

 private:
  bool logged_ = false;
  MonoTime last_{};
  uint64_t suppressed_ = 0;
};

class FeedServerImpl final : public FeedServer {
 public:
  FeedServerImpl(int listen_fd, int epoll_fd, std::string endpoint, std::string unix_path,
                 FeedOptions options, const Clock& clock)
      : listen_fd_(listen_fd),
        epoll_fd_(epoll_fd),
        endpoint_(std::move(endpoint)),
        unix_path_(std::move(unix_path)),
        options_(options),
        clock_(clock),
        prefixes_(0, PrefixHash{Random(options.hash_seed).next()}) {
    EDGEKV_ASSERT(key_hash_ != nullptr);
    limits_.max_frame_bytes = 1 + options_.max_key_bytes + kFrameSlackBytes;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // connection ids start at 1: 0 is the listener
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }

  ~FeedServerImpl() override {
    // Subscriptions point at connections: drop the index before the connections.
    prefixes_.clear();
    for (auto& [id, conn] : conns_) ::close(conn->fd);
    conns_.clear();
    close_listener();
    ::close(epoll_fd_);
  }

  int fd() const override { return epoll_fd_; }
  size_t connections() const override { return conns_.size(); }
  size_t subscriptions() const override { return total_subs_; }
  size_t queued_bytes() const override { return live_bytes_; }
  const FeedCounters& counters() const override { return counters_; }
  bool has_subscriptions() const override { return !prefixes_.empty(); }

  void stop_accepting() override { close_listener(); }

  void on_ready() override {
    std::array<epoll_event, kEventsPerTurnMax> events;
    int n = ::epoll_wait(epoll_fd_, events.data(), kEventsPerTurnMax, 0);
    size_t read_budget = kReadPerTurnMax;
    size_t write_budget = kWritePerTurnMax;
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[static_cast<size_t>(i)].data.u64;
      uint32_t what = events[static_cast<size_t>(i)].events;
      if (id == 0) {
        accept_some();
        continue;
      }
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;  // closed earlier in this turn
      Conn& conn = *it->second;
      if ((what & EPOLLOUT) && !write_some(conn, write_budget)) continue;
      if ((what & (EPOLLIN | EPOLLHUP | EPOLLERR)) && read_budget > 0) read_some(conn, read_budget);
    }
    flush();
  }

  void publish(std::string_view key, std::string_view body) override {
    if (prefixes_.empty()) return;
    ++stamp_;
    matched_.clear();
    XXH3_64bits_reset_withSeed(key_hash_.get(), prefixes_.hash_function().seed);
    size_t hashed = 0;
    for (const auto& [length, count] : lengths_) {
      if (length > key.size()) break;
      XXH3_64bits_update(key_hash_.get(), key.data() + hashed, length - hashed);
      hashed = length;
      const uint64_t h = XXH3_64bits_digest(key_hash_.get());
      auto it = prefixes_.find(HashedPrefix{key.substr(0, length), h});
      if (it == prefixes_.end()) continue;
      for (Conn* conn : it->second.subscribers) {
        if (conn->stamp == stamp_) continue;
        conn->stamp = stamp_;
        matched_.push_back(conn);
      }
    }
    if (matched_.empty()) return;
    std::string data;
    data.reserve(zmtp_frame_header_bytes(key.size()) + key.size() +
                 zmtp_frame_header_bytes(body.size()) + body.size());
    zmtp_append_frame(&data, key, true);
    zmtp_append_frame(&data, body, false);
    auto chunk = std::make_shared<const Chunk>(std::move(data), &live_bytes_);
    std::vector<uint64_t> over;
    for (Conn* conn : matched_) {
      enqueue(*conn, chunk);
      ++counters_.events_sent;
      // One event may always be in flight, whatever its size (max-value-bytes bounds it);
      // the bound is on what piles up behind it.
      if (conn->queued > options_.subscriber_buffer_bytes && conn->out.size() > 1) {
        over.push_back(conn->id);
      }
    }
    matched_.clear();
    chunk.reset();
    for (uint64_t id : over) {
      drop_slow(id, "its queued output is over feed-subscriber-buffer-bytes (" +
                        std::to_string(options_.subscriber_buffer_bytes) + ")");
    }
    enforce_node_bound();
  }

  void flush() override {
    size_t budget = kWritePerTurnMax;
    std::vector<uint64_t> ids;
    ids.swap(dirty_);
    for (uint64_t id : ids) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& conn = *it->second;
      conn.dirty = false;
      if (budget > 0) {
        if (!write_some(conn, budget)) continue;
      } else {
        update_interest(conn);  // EPOLLOUT takes it up on a later turn
      }
    }
  }

  void maintain(MonoTime now) override {
    while (!handshakes_.empty() && handshakes_.front().first <= now) {
      uint64_t id = handshakes_.front().second;
      handshakes_.pop_front();
      auto it = conns_.find(id);
      if (it == conns_.end() || it->second->ready) continue;
      ++counters_.connections_refused;
      refused_log_.warn(clock_,
                        "feed: closed a connection that did not complete the ZMTP "
                        "handshake within " +
                            std::to_string(options_.handshake_timeout.count()) + " ms");
      close_conn(id);
    }
  }

 private:
  void close_listener() {
    if (listen_fd_ < 0) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    ::close(listen_fd_);
    listen_fd_ = -1;
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }

  void accept_some() {
    for (size_t i = 0; i < kAcceptsPerTurnMax && listen_fd_ >= 0; ++i) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          EDGEKV_LOG(kWarning) << "feed: accept on " << endpoint_ << ": " << std::strerror(errno);
        }
        return;
      }
      ++counters_.connections_received;
      if (conns_.size() >= options_.max_connections) {
        ++counters_.connections_refused;
        ::close(fd);
        refused_log_.warn(clock_, "feed: refused a connection: feed-max-connections (" +
                                      std::to_string(options_.max_connections) + ") reached");
        continue;
      }
      if (unix_path_.empty()) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      auto conn = std::make_unique<Conn>(limits_);
      conn->id = next_conn_id_++;
      conn->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = conn->id;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      handshakes_.emplace_back(clock_.mono_now() + options_.handshake_timeout, conn->id);
      Conn& c = *conn;
      conns_.emplace(conn->id, std::move(conn));
      enqueue(c, greeting_);
    }
  }

  void close_conn(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& conn = *it->second;
    for (const auto& [prefix, count] : conn.subs) unindex(prefix, &conn);
    total_subs_ -= conn.sub_count;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.fd, nullptr);
    ::close(conn.fd);
    conns_.erase(it);
  }

  void drop_slow(uint64_t id, const std::string& why) {
    if (!conns_.contains(id)) return;
    ++counters_.subscribers_dropped;
    dropped_log_.warn(clock_, "feed: dropped a slow subscriber: " + why);
    close_conn(id);
  }

  // Over buffer_bytes_max, the subscribers with the most queued go first: they are the
  // furthest behind, and dropping them frees the most.
  void enforce_node_bound() {
    while (live_bytes_ > options_.buffer_bytes_max) {
      Conn* worst = nullptr;
      for (auto& [id, conn] : conns_) {
        if (conn->queued > 0 && (worst == nullptr || conn->queued > worst->queued)) {
          worst = conn.get();
        }
      }
      if (worst == nullptr) return;
      drop_slow(worst->id, "all queued feed output is over feed-buffer-bytes-max (" +
                               std::to_string(options_.buffer_bytes_max) + ")");
    }
  }

  void enqueue(Conn& conn, ChunkPtr chunk) {
    conn.queued += chunk->data().size();
    conn.out.push_back(std::move(chunk));
    if (!conn.dirty) {
      conn.dirty = true;
      dirty_.push_back(conn.id);
    }
  }

  void enqueue(Conn& conn, std::string bytes) {
    enqueue(conn, std::make_shared<const Chunk>(std::move(bytes), &live_bytes_));
  }

  void update_interest(Conn& conn) {
    bool want_write = !conn.out.empty();
    if (want_write == conn.writing) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
    ev.data.u64 = conn.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
    conn.writing = want_write;
  }

  // Sends queued output within `budget`. Returns false if the connection is gone.
  bool write_some(Conn& conn, size_t& budget) {
    std::array<iovec, kIovMax> iov;
    while (!conn.out.empty() && budget > 0) {
      size_t n = 0;
      size_t total = 0;
      for (size_t i = 0; i < conn.out.size() && n < kIovMax && total < budget; ++i) {
        const std::string& data = conn.out[i]->data();
        size_t skip = i == 0 ? conn.out_offset : 0;
        size_t len = std::min(data.size() - skip, budget - total);
        iov[n++] = {const_cast<char*>(data.data() + skip), len};
        total += len;
      }
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = n;
      ssize_t sent = ::sendmsg(conn.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (sent <= 0) {
        close_conn(conn.id);  // the subscriber went away
        return false;
      }
      auto left = static_cast<size_t>(sent);
      budget -= std::min(budget, left);
      conn.queued -= left;
      while (left > 0) {
        size_t front_left = conn.out.front()->data().size() - conn.out_offset;
        if (left < front_left) {
          conn.out_offset += left;
          break;
        }
        left -= front_left;
        conn.out.pop_front();
        conn.out_offset = 0;
      }
      if (static_cast<size_t>(sent) < total) break;  // the socket buffer is full
    }
    update_interest(conn);
    return true;
  }

  void read_some(Conn& conn, size_t& budget) {
    const uint64_t id = conn.id;
    std::array<char, 16 * 1024> buf;
    size_t taken = 0;
    while (taken < kReadPerConnTurnMax && budget > 0) {
      size_t want = std::min({buf.size(), kReadPerConnTurnMax - taken, budget});
      ssize_t n = ::recv(conn.fd, buf.data(), want, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        close_conn(id);  // the subscriber left (or the connection failed)
        return;
      }
      auto got = static_cast<size_t>(n);
      taken += got;
      budget -= std::min(budget, got);
      conn.decoder.append(std::string_view(buf.data(), got));
      if (!handle_input(conn)) return;
      if (got < want) return;  // drained for now
    }
  }

  // Acts on what the decoder holds. Returns false if the connection was closed.
  bool handle_input(Conn& conn) {
    ZmtpEvent event;
    for (;;) {
      ZmtpParse parsed = conn.decoder.next(&event);
      if (parsed == ZmtpParse::kNeedMore) return true;
      if (parsed == ZmtpParse::kError) {
        if (conn.ready) {
          ++counters_.bad_subscriptions;
          bad_log_.warn(clock_, "feed: closed a subscriber: " + conn.decoder.error());
        } else {
          ++counters_.connections_refused;
          refused_log_.warn(clock_, "feed: refused a connection: " + conn.decoder.error());
        }
        close_conn(conn.id);
        return false;
      }
      switch (event.kind) {
        case ZmtpEvent::Kind::kGreeting: enqueue(conn, zmtp_ready("PUB")); break;
        case ZmtpEvent::Kind::kReady: conn.ready = true; break;
        case ZmtpEvent::Kind::kSubscribe:
          if (!subscribe(conn, std::move(event.data))) return false;
          break;
        case ZmtpEvent::Kind::kCancel: cancel(conn, event.data); break;
        case ZmtpEvent::Kind::kPing: enqueue(conn, zmtp_pong(event.data)); break;
        case ZmtpEvent::Kind::kOther: break;
      }
    }
  }

  bool refuse_subscription(Conn& conn, const std::string& why) {
    ++counters_.bad_subscriptions;
    bad_log_.warn(clock_, "feed: closed a subscriber: " + why);
    close_conn(conn.id);
    return false;
  }

  bool subscribe(Conn& conn, std::string prefix) {
    if (prefix.size() > options_.max_key_bytes) {
      return refuse_subscription(conn, "subscription of " + std::to_string(prefix.size()) +
                                           " bytes is longer than max-key-bytes (" +
                                           std::to_string(options_.max_key_bytes) + ")");
    }
    if (conn.sub_count >= options_.max_subscriptions_per_connection) {
      return refuse_subscription(
          conn, "over feed-max-subscriptions-per-connection (" +
                    std::to_string(options_.max_subscriptions_per_connection) + ")");
    }
    if (total_subs_ >= options_.max_subscriptions) {
      return refuse_subscription(
          conn, "over feed-max-subscriptions (" + std::to_string(options_.max_subscriptions) + ")");
    }
    ++conn.sub_count;
    ++total_subs_;
    auto [it, added] = conn.subs.try_emplace(std::move(prefix), 0);
    if (++it->second == 1) index(it->first, &conn);
    return true;
  }

  void cancel(Conn& conn, const std::string& prefix) {
    auto it = conn.subs.find(prefix);
    if (it == conn.subs.end()) return;  // ZeroMQ ignores a cancel of nothing too
    --conn.sub_count;
    --total_subs_;
    if (--it->second > 0) return;
    unindex(it->first, &conn);
    conn.subs.erase(it);
  }

  void index(const std::string& prefix, Conn* conn) {
    auto [it, added] = prefixes_.try_emplace(prefix);
    if (added) ++lengths_[prefix.size()];
    it->second.subscribers.push_back(conn);
  }

  void unindex(const std::string& prefix, Conn* conn) {
    auto it = prefixes_.find(prefix);
    if (it == prefixes_.end()) return;
    std::vector<Conn*>& subs = it->second.subscribers;
    auto at = std::find(subs.begin(), subs.end(), conn);
    if (at != subs.end()) {
      *at = subs.back();
      subs.pop_back();
    }
    if (!subs.empty()) return;
    prefixes_.erase(it);
    auto len = lengths_.find(prefix.size());
    if (len != lengths_.end() && --len->second == 0) lengths_.erase(len);
  }

  int listen_fd_;
  int epoll_fd_;
  std::string endpoint_;
  std::string unix_path_;  // ipc:// endpoints: the socket file, removed on close
  FeedOptions options_;
  const Clock& clock_;
  ZmtpLimits limits_;
  // Before the connections and the index: chunks they hold decrement it when freed.
  size_t live_bytes_ = 0;
  std::string greeting_ = zmtp_greeting();
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::unordered_map<std::string, PrefixEntry, PrefixHash, PrefixEq> prefixes_;
  // Distinct subscribed prefix length -> how many distinct prefixes have it.
  std::map<size_t, size_t> lengths_;
  // publish()'s streaming hash of the key, kept to avoid an allocation per event.
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> key_hash_{XXH3_createState(),
                                                                            &XXH3_freeState};
  size_t total_subs_ = 0;
  // Connections in accept order with their handshake deadlines (all the same timeout, so
  // the deadlines are in order too).
  std::deque<std::pair<MonoTime, uint64_t>> handshakes_;
  std::vector<uint64_t> dirty_;
  std::vector<Conn*> matched_;
  uint64_t stamp_ = 0;
  uint64_t next_conn_id_ = 1;
  FeedCounters counters_;
  RateLimitedLog refused_log_;
  RateLimitedLog bad_log_;
  RateLimitedLog dropped_log_;
};

Status bind_error(const std::string& endpoint, const std::string& what, int err) {
  return listen_error("feed-endpoint", endpoint, what, err);
}

struct Listening {
  int fd = -1;
  std::string unix_path;
};

Result<Listening> listen_unix(const std::string& endpoint, std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return bind_error(
        endpoint,
        "the socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) + " bytes", 0);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  std::string file(path);
  // A socket file left by an earlier run would make bind() fail; ZeroMQ replaces it too.
  struct stat st {};
  if (::lstat(file.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(file.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return bind_error(endpoint, "socket", errno);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, kListenBacklog) != 0) {
    int err = errno;
    ::close(fd);
    return bind_error(endpoint, std::strerror(err), 0);
  }
  return Listening{fd, std::move(file)};
}

}  // namespace

Result<std::unique_ptr<FeedServer>> FeedServer::listen(const std::string& endpoint,
                                                       FeedOptions options, const Clock& clock) {
  // tcp://HOST:PORT or ipc://PATH, already validated by the configuration.
  std::string_view rest(endpoint);
  Result<Listening> listening = Status::invalid_argument("unset");
  if (rest.starts_with("tcp://")) {
    Result<int> fd = listen_tcp("feed-endpoint", endpoint, rest.substr(6));
    if (!fd.ok()) return fd.status();
    listening = Listening{fd.value(), {}};
  } else if (rest.starts_with("ipc://")) {
    listening = listen_unix(endpoint, rest.substr(6));
  } else {
    return bind_error(endpoint, "not a tcp:// or ipc:// endpoint", 0);
  }
  if (!listening.ok()) return listening.status();
  Listening l = std::move(listening).value();
  int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    int err = errno;
    ::close(l.fd);
    if (!l.unix_path.empty()) ::unlink(l.unix_path.c_str());
    return bind_error(endpoint, "epoll_create1", err);
  }
  return std::unique_ptr<FeedServer>(std::make_unique<FeedServerImpl>(
      l.fd, epoll_fd, endpoint, std::move(l.unix_path), options, clock));
}

}  // namespace edgekv::daemon
