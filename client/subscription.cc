#include "client/subscription.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "client/client.h"
#include "client/wire.h"
#include "client/zmq_io.h"
#include "common/clock.h"

namespace edgekv::client {

namespace {

// After a handshake, the node takes the subscription a moment later, on the same
// connection, while the read-back goes over another one: an event published in between is
// in neither. A second read-back this long after the handshake covers it (the node takes a
// subscription within one loop turn; the periodic read-back covers anything slower).
constexpr int kSettleMs = 500;

// A node that could not be reached for a read-back is asked again after this long, not on
// every call, so one node down does not stall the others' events behind request timeouts.
constexpr int kRetryMs = 1000;

// Keys of the de-duplicator a saved cursor carries, newest first (FeedCursor::set_marks):
// the changes delivered last, whose copies from other replicas may still be unread when
// the cursor is saved. Bounded so a cursor stays small (at most ~2 MiB of 1 KiB keys).
constexpr size_t kCursorMarks = 1000;

}  // namespace

// One node of the cluster mode: its feed socket and monitor, and its read-back state.
struct NodeFeed {
  std::string node_id;
  std::string client_endpoint;
  std::string feed_endpoint;
  std::unique_ptr<Client> client;
  internal::MonitoredSocket sub;
  bool connected = false;
  bool read_back_wanted = false;  // read past the cursor before taking live events again
  MonoTime read_back_not_before;
  std::optional<MonoTime> settle_at;
  // The read-back page being handed out, then its positions.
  std::deque<ChangeEvent> page;
  std::vector<PartitionPosition> page_positions;
  bool page_active = false;
  bool page_more = false;
};

struct Subscription::Impl {
  explicit Impl(SubscriptionOptions opts) : options_(std::move(opts)) {
    // No prefixes means everything: the empty prefix matches every key.
    sub_prefixes_ = options_.prefixes;
    if (sub_prefixes_.empty()) sub_prefixes_.emplace_back();
    Result<std::unique_ptr<zmq::context_t>> made_context = internal::make_context();
    if (!made_context.ok()) {
      setup_status_ = made_context.status();
      return;
    }
    context_ = std::move(made_context).value();
    if (!options_.client_endpoint.empty()) {
      setup_cluster();
      return;
    }
    Result<std::unique_ptr<zmq::socket_t>> made_socket =
        internal::connect_socket(*context_, zmq::socket_type::sub, options_.feed_endpoint,
                                 options_.max_message_bytes, sub_prefixes_);
    if (!made_socket.ok()) {
      setup_status_ = made_socket.status();
      return;
    }
    socket_ = std::move(made_socket).value();
  }

  ~Impl() {
    nodes_.clear();  // sockets before the context
  }

  Result<ChangeEvent> next(int timeout_ms) {
    EDGEKV_RETURN_IF_ERROR(setup_status_);
    if (!options_.client_endpoint.empty()) return next_cluster(timeout_ms);
    const bool forever = timeout_ms < 0;
    const MonoTime deadline =
        clock_.mono_now() + std::chrono::milliseconds(forever ? 0 : timeout_ms);
    for (;;) {
      Result<std::optional<internal::Frames>> received = internal::try_receive(*socket_);
      if (!received.ok()) return received.status();
      if (received->has_value()) return internal::decode_feed_message(**received);
      int wait_ms = -1;
      if (!forever) {
        const MonoTime now = clock_.mono_now();
        if (now >= deadline) break;
        wait_ms =
            static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
      }
      Result<bool> readable = internal::wait_readable(*socket_, wait_ms);
      if (!readable.ok()) return readable.status();
    }
    return Status::timeout("no change event from " + options_.feed_endpoint + " within " +
                           std::to_string(timeout_ms) + " ms");
  }

  // ---------------------------------------------------------------- the cluster mode

  void setup_cluster() {
    if (options_.members_refresh_ms <= 0 || options_.request_timeout_ms <= 0) {
      setup_status_ =
          Status::invalid_argument("members_refresh_ms and request_timeout_ms must be positive");
      return;
    }
    if (!options_.cursor.empty()) {
      Result<FeedCursor> parsed = FeedCursor::parse(options_.cursor);
      if (!parsed.ok()) {
        setup_status_ = parsed.status();
        return;
      }
      cursor_ = std::move(parsed).value();
    }
    dedup_ = FeedDeduplicator(options_.dedup);
    for (const auto& [key, mark] : cursor_.marks()) dedup_.remember(key, mark);
    cursor_.set_marks({});
    seed_ = make_client(options_.client_endpoint);
    Status refreshed = refresh_members();
    if (!refreshed.ok()) {
      // Unavailable rather than a timeout: next() answers it on every call, so a caller
      // that waits through timeouts must not wait on it.
      setup_status_ = Status::unavailable("cannot read the cluster's members through " +
                                          options_.client_endpoint + ": " + refreshed.message());
    }
  }

  std::unique_ptr<Client> make_client(const std::string& endpoint) {
    ClientOptions client_options;
    client_options.endpoint = endpoint;
    client_options.timeout_ms = options_.request_timeout_ms;
    client_options.max_reply_bytes = options_.max_message_bytes;
    return std::make_unique<Client>(client_options);
  }

  // Re-reads the members from the first node that answers (the one given, then the
  // others known) and follows them: a live member with no feed yet is connected, a dead or
  // departed one closed (its cursor is kept for its return).
  Status refresh_members() {
    next_refresh_ = clock_.mono_now() + std::chrono::milliseconds(options_.members_refresh_ms);
    // The node that answered last is asked first, so a node down costs one timeout, not
    // one every refresh.
    Result<Members> members = Status::unavailable("no node known");
    auto answered_last = nodes_.find(members_from_);
    if (answered_last != nodes_.end()) members = answered_last->second.client->members();
    if (!members.ok()) {
      members = seed_->members();
      members_from_.clear();
    }
    for (auto it = nodes_.begin(); !members.ok() && it != nodes_.end(); ++it) {
      if (it == answered_last || !it->second.connected) continue;
      members = it->second.client->members();
      if (members.ok()) members_from_ = it->first;
    }
    if (!members.ok()) return members.status();
    std::set<std::string> live;
    for (const MemberInfo& m : members->members) {
      if (m.state != MemberState::kAlive && m.state != MemberState::kSuspect) continue;
      if (m.client_endpoint.empty() || m.feed_endpoint.empty()) continue;
      const std::string client_endpoint =
          connectable_feed_endpoint(m.client_endpoint, options_.client_endpoint);
      const std::string feed_endpoint = connectable_feed_endpoint(m.feed_endpoint, client_endpoint);
      live.insert(m.node_id);
      auto it = nodes_.find(m.node_id);
      if (it != nodes_.end() && it->second.feed_endpoint == feed_endpoint) continue;
      if (it != nodes_.end()) nodes_.erase(it);
      add_node(m.node_id, client_endpoint, feed_endpoint);
    }
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      it = live.contains(it->first) ? std::next(it) : nodes_.erase(it);
    }
    // The safety net: every connected node is read past its cursor now and then.
    for (auto& [id, node] : nodes_) {
      if (node.connected) node.read_back_wanted = true;
    }
    return Status();
  }

  void add_node(const std::string& node_id, const std::string& client_endpoint,
                const std::string& feed_endpoint) {
    NodeFeed node;
    node.node_id = node_id;
    node.client_endpoint = client_endpoint;
    node.feed_endpoint = feed_endpoint;
    node.client = make_client(client_endpoint);
    // A node met for the first time is followed from its current positions, taken before
    // connecting: the read-back after the handshake then covers the connection's start.
    if (!cursor_.knows(node_id)) {
      Result<ChangesSince> positions = node.client->changes_since({}, options_.prefixes, 1);
      if (positions.ok()) cursor_.take_positions(node_id, positions->positions);
    }
    Result<internal::MonitoredSocket> sub = internal::connect_monitored_sub(
        *context_, feed_endpoint, options_.max_message_bytes, options_.receive_hwm, sub_prefixes_,
        "inproc://edgekv-feed-monitor-" + std::to_string(++monitors_));
    if (!sub.ok()) {
      pending_errors_.push_back(
          Status(sub.status().code(), "node " + node_id + ": " + sub.status().message()));
      return;
    }
    node.sub = std::move(sub).value();
    nodes_.emplace(node_id, std::move(node));
  }

  // Hands out the next event of `node`'s read-back page, if one is due.
  std::optional<ChangeEvent> from_page(NodeFeed& node) {
    while (!node.page.empty()) {
      ChangeEvent event = std::move(node.page.front());
      node.page.pop_front();
      if (std::optional<ChangeEvent> out = offer(node, std::move(event))) return out;
    }
    // The page is handed out: its positions account for what it did not carry.
    cursor_.advance_positions(node.node_id, node.page_positions);
    node.page_positions.clear();
    node.page_active = false;
    if (node.page_more) node.read_back_wanted = true;
    return std::nullopt;
  }

  std::optional<ChangeEvent> offer(NodeFeed& node, ChangeEvent event) {
    if (!cursor_.take(node.node_id, event)) {
      ++counters_.already_accounted;
      return std::nullopt;
    }
    if (!dedup_.admit(event)) return std::nullopt;
    return event;
  }

  // One read-back request to `node`, from its cursor; its answer becomes the page.
  void read_back(NodeFeed& node, MonoTime now) {
    Result<ChangesSince> since = node.client->changes_since(
        cursor_.from_seqs(node.node_id), options_.prefixes, options_.read_back_max_events);
    if (!since.ok()) {
      // Asked again later; its live events wait meanwhile, so none jumps the gap.
      node.read_back_not_before = clock_.mono_now() + std::chrono::milliseconds(kRetryMs);
      return;
    }
    ++counters_.read_backs;
    node.read_back_wanted = false;
    node.page_active = true;
    node.page_more = since->more;
    counters_.read_back_events += since->events.size();
    node.page.assign(std::make_move_iterator(since->events.begin()),
                     std::make_move_iterator(since->events.end()));
    node.page_positions = std::move(since->positions);
    // Losses come before the page's events, as they came before them in the log.
    for (const FeedGap& gap : cursor_.check_positions(node.node_id, node.page_positions)) {
      pending_errors_.push_back(Status::failed_precondition("changes lost: " + gap.describe()));
    }
    (void)now;
  }

  Result<ChangeEvent> next_cluster(int timeout_ms) {
    const bool forever = timeout_ms < 0;
    const MonoTime deadline =
        clock_.mono_now() + std::chrono::milliseconds(forever ? 0 : timeout_ms);
    for (;;) {
      if (!pending_errors_.empty()) {
        Status error = std::move(pending_errors_.front());
        pending_errors_.pop_front();
        return error;
      }
      MonoTime now = clock_.mono_now();
      if (now >= next_refresh_) (void)refresh_members();  // a failure keeps the nodes known
      // Monitors first: a node that reconnected is read back before its live events.
      for (auto& [id, node] : nodes_) drain_monitor(node, now);
      bool progressed = false;
      for (auto& [id, node] : nodes_) {
        if (node.page_active) {
          if (std::optional<ChangeEvent> event = from_page(node)) return std::move(*event);
          progressed = true;
        }
        if (node.settle_at && now >= *node.settle_at) {
          node.settle_at.reset();
          node.read_back_wanted = true;
        }
        if (!node.page_active && node.read_back_wanted && node.connected &&
            now >= node.read_back_not_before) {
          read_back(node, now);
          progressed = progressed || node.page_active;
        }
      }
      if (progressed) continue;
      for (auto& [id, node] : nodes_) {
        if (node.page_active || node.read_back_wanted) continue;  // live events wait
        for (;;) {
          Result<std::optional<internal::Frames>> received =
              internal::try_receive(*node.sub.socket);
          if (!received.ok() || !received->has_value()) break;
          Result<ChangeEvent> event = internal::decode_feed_message(**received);
          if (!event.ok()) return event.status();
          ++counters_.live_events;
          if (std::optional<ChangeEvent> out = offer(node, std::move(event).value())) {
            return std::move(*out);
          }
        }
      }
      // Nothing to hand out: wait for a socket, a monitor, or the next timer.
      now = clock_.mono_now();
      MonoTime wake = next_refresh_;
      if (!forever) {
        if (now >= deadline) break;
        wake = std::min(wake, deadline);
      }
      std::vector<zmq::pollitem_t> items;
      for (auto& [id, node] : nodes_) {
        items.push_back({node.sub.monitor->handle(), 0, ZMQ_POLLIN, 0});
        if (!node.read_back_wanted) items.push_back({node.sub.socket->handle(), 0, ZMQ_POLLIN, 0});
        if (node.settle_at) wake = std::min(wake, *node.settle_at);
        if (node.read_back_wanted && node.connected)
          wake = std::min(wake, std::max(now, node.read_back_not_before));
      }
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
      try {
        zmq::poll(items.data(), items.size(),
                  std::chrono::milliseconds(std::clamp<int64_t>(wait.count(), 0, 60'000)));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR)
          return Status::internal(std::string("cannot wait on the feeds: ") + e.what());
      }
    }
    return Status::timeout("no change event from the cluster of " + options_.client_endpoint +
                           " within " + std::to_string(timeout_ms) + " ms");
  }

  void drain_monitor(NodeFeed& node, MonoTime now) {
    for (;;) {
      Result<int> event = internal::try_receive_monitor_event(*node.sub.monitor);
      if (!event.ok() || *event == 0) return;
      if (*event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        ++counters_.connects;
        node.connected = true;
        node.read_back_wanted = true;
        node.read_back_not_before = now;
        node.settle_at = now + std::chrono::milliseconds(kSettleMs);
      } else if (*event == ZMQ_EVENT_DISCONNECTED) {
        ++counters_.disconnects;
        node.connected = false;
      }
    }
  }

  SubscriptionOptions options_;
  std::vector<std::string> sub_prefixes_;
  Status setup_status_;  // not OK: every next() fails with it
  RealClock clock_;
  std::unique_ptr<zmq::context_t> context_;  // declared first: destroyed after the sockets
  std::unique_ptr<zmq::socket_t> socket_;    // the one-node mode's
  // The cluster mode's.
  std::unique_ptr<Client> seed_;
  std::map<std::string, NodeFeed> nodes_;
  FeedCursor cursor_;
  FeedDeduplicator dedup_;
  std::deque<Status> pending_errors_;
  MonoTime next_refresh_;
  std::string members_from_;  // the node whose members answered last; empty: the seed
  uint64_t monitors_ = 0;
  SubscriptionCounters counters_;
};

Subscription::Subscription(SubscriptionOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Subscription::~Subscription() = default;
Subscription::Subscription(Subscription&&) noexcept = default;
Subscription& Subscription::operator=(Subscription&&) noexcept = default;

Result<ChangeEvent> Subscription::next(int timeout_ms) { return impl_->next(timeout_ms); }

const SubscriptionOptions& Subscription::options() const { return impl_->options_; }

std::string Subscription::cursor() const {
  if (impl_->options_.client_endpoint.empty()) return {};
  FeedCursor saved = impl_->cursor_;
  saved.set_marks(impl_->dedup_.newest(kCursorMarks));
  return saved.serialize();
}

SubscriptionCounters Subscription::counters() const {
  SubscriptionCounters out = impl_->counters_;
  out.dedup = impl_->dedup_.counters();
  return out;
}

std::string connectable_feed_endpoint(std::string_view feed_endpoint,
                                      std::string_view client_endpoint) {
  constexpr std::string_view kTcp = "tcp://";
  // The host of a "tcp://HOST:PORT" endpoint; empty when it is not one.
  auto host_of = [&](std::string_view endpoint) -> std::string_view {
    if (!endpoint.starts_with(kTcp)) return {};
    std::string_view rest = endpoint.substr(kTcp.size());
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return {};
    return rest.substr(0, colon);
  };
  std::string_view feed_host = host_of(feed_endpoint);
  if (feed_host != "*" && feed_host != "0.0.0.0" && feed_host != "[::]" && feed_host != "::") {
    return std::string(feed_endpoint);
  }
  std::string_view client_host = host_of(client_endpoint);
  if (client_host.empty() || client_host == "*") client_host = "127.0.0.1";
  // A client endpoint may carry a source address ("tcp://src;host:port"): keep only the host.
  if (size_t semi = client_host.find(';'); semi != std::string_view::npos) {
    client_host = client_host.substr(semi + 1);
  }
  std::string out(kTcp);
  out += client_host;
  out += feed_endpoint.substr(kTcp.size() + feed_host.size());
  return out;
}

}  // namespace edgekv::client
