#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <utility>

#include "client/wire.h"
#include "client/zmq_io.h"
#include "proto/edgekv.pb.h"

namespace edgekv::client {

struct Client::Impl {
  struct Pending {
    RequestKind kind;
    MonoTime sent_at;
    MonoTime deadline;
  };

  explicit Impl(ClientOptions opts) : options_(std::move(opts)) {
    if (options_.timeout_ms <= 0) {
      options_status_ = Status::invalid_argument("timeout must be a positive number of ms, got " +
                                                 std::to_string(options_.timeout_ms));
      return;
    }
    // Connecting now lets the TCP handshake overlap whatever the caller does before its first
    // request. A failure here is reported by that request (ensure_socket tries again).
    (void)ensure_socket();
  }

  // ---- sending

  RequestId submit(RequestKind kind, pb::Request& request) {
    const RequestId id = next_id_++;
    request.set_id(id);
    const MonoTime now = clock_.mono_now();
    Status sent = send(request);
    if (!sent.ok()) {
      finish(Completion{id, kind, std::move(sent), std::monostate(), now, now});
      return id;
    }
    ++counters_.sent;
    in_flight_.emplace(id,
                       Pending{kind, now, now + std::chrono::milliseconds(options_.timeout_ms)});
    return id;
  }

  Status send(const pb::Request& request) {
    EDGEKV_RETURN_IF_ERROR(options_status_);
    EDGEKV_RETURN_IF_ERROR(ensure_socket());
    Result<zmq::message_t> message = internal::encode_request(request);
    if (!message.ok()) return message.status();
    return internal::try_send(*socket_, *message, options_.endpoint);
  }

  Status ensure_socket() {
    if (socket_) return Status();
    if (!context_) {
      Result<std::unique_ptr<zmq::context_t>> made = internal::make_context();
      if (!made.ok()) return made.status();
      context_ = std::move(made).value();
    }
    Result<std::unique_ptr<zmq::socket_t>> made = internal::connect_socket(
        *context_, zmq::socket_type::dealer, options_.endpoint, options_.max_reply_bytes, {});
    if (!made.ok()) return made.status();
    socket_ = std::move(made).value();
    return Status();
  }

  // ---- receiving

  // Receives and expires until `satisfied()` holds, nothing is in flight, or `until` passes.
  template <typename Pred>
  void pump(MonoTime until, Pred satisfied) {
    for (;;) {
      drain();
      MonoTime now = clock_.mono_now();
      expire(now);
      if (satisfied() || in_flight_.empty() || now >= until) return;
      // Invariant: requests are in flight only on a live socket (reset fails them all).
      const MonoTime wake = std::min(until, in_flight_.begin()->second.deadline);
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
      Result<bool> readable = internal::wait_readable(
          *socket_, static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 60'000)));
      if (!readable.ok()) reset(readable.status());
    }
  }

  // Reads every reply already waiting.
  void drain() {
    while (socket_) {
      Result<std::optional<internal::Frames>> received = internal::try_receive(*socket_);
      if (!received.ok()) {
        reset(received.status());
        return;
      }
      if (!received->has_value()) return;
      on_reply(**received);
    }
  }

  void on_reply(const internal::Frames& frames) {
    Result<pb::Response> response = internal::decode_response(frames, options_.endpoint);
    if (!response.ok()) {
      // The reply cannot be tied to a request, and a peer that sends one is not speaking
      // the protocol: fail everything in flight now rather than let each time out.
      reset(response.status());
      return;
    }
    auto it = in_flight_.find(response->id());
    if (it == in_flight_.end()) {
      // A late answer to a request already failed (or an id this client never sent).
      ++counters_.unknown_replies_dropped;
      return;
    }
    Completion completion{it->first,        it->second.kind,    Status(),
                          std::monostate(), it->second.sent_at, clock_.mono_now()};
    in_flight_.erase(it);
    internal::complete_from_response(*response, options_.endpoint, &completion);
    finish(std::move(completion));
  }

  // Fails every request whose deadline has passed, and with them the connection.
  void expire(MonoTime now) {
    if (in_flight_.empty() || in_flight_.begin()->second.deadline > now) return;
    const std::string timeout_text = "no answer from " + options_.endpoint + " within " +
                                     std::to_string(options_.timeout_ms) + " ms";
    const RequestId first_expired = in_flight_.begin()->first;
    std::map<RequestId, Pending> failed;
    failed.swap(in_flight_);
    close_socket();
    for (auto& [id, pending] : failed) {
      Status status = pending.deadline <= now
                          ? Status::timeout(timeout_text + "; is edgekvd running?")
                          : Status::timeout("abandoned: the connection to " + options_.endpoint +
                                            " was reset because request " +
                                            std::to_string(first_expired) + " got " + timeout_text);
      finish(
          Completion{id, pending.kind, std::move(status), std::monostate(), pending.sent_at, now});
    }
  }

  // Fails everything in flight with `why` and replaces the socket.
  void reset(const Status& why) {
    std::map<RequestId, Pending> failed;
    failed.swap(in_flight_);
    close_socket();
    const MonoTime now = clock_.mono_now();
    for (auto& [id, pending] : failed) {
      finish(Completion{id, pending.kind, why, std::monostate(), pending.sent_at, now});
    }
  }

  // Linger is 0, so closing drops requests still queued for the node: they must not be
  // delivered after the caller was told they failed. A new socket also gets a new routing
  // id, so the node's answers to the old one go nowhere.
  void close_socket() {
    if (!socket_) return;
    socket_.reset();
    ++counters_.reconnects;
    (void)ensure_socket();
  }

  void finish(Completion completion) {
    ++counters_.completed;
    if (completion.status.code() == Code::kTimeout) ++counters_.timeouts;
    done_.push_back(std::move(completion));
  }

  // ---- synchronous calls

  Completion wait_for(RequestId id) {
    auto find = [&] {
      return std::find_if(done_.rbegin(), done_.rend(),
                          [id](const Completion& c) { return c.id == id; });
    };
    // The request's own deadline bounds the wait.
    pump(MonoTime::max(), [&] { return find() != done_.rend(); });
    auto it = find();
    if (it == done_.rend()) {
      return Completion{id,
                        RequestKind::kPut,
                        Status::internal("the client lost track of request " + std::to_string(id)),
                        std::monostate(),
                        clock_.mono_now(),
                        clock_.mono_now()};
    }
    Completion completion = std::move(*it);
    done_.erase(std::next(it).base());
    return completion;
  }

  template <typename T>
  Result<T> call(RequestKind kind, pb::Request& request) {
    Completion completion = wait_for(submit(kind, request));
    if (!completion.status.ok()) return completion.status;
    T* reply = std::get_if<T>(&completion.reply);
    if (reply == nullptr) return Status::internal("reply of the wrong type");
    return std::move(*reply);
  }

  ClientOptions options_;
  Status options_status_;  // not OK: every request fails with it
  RealClock clock_;
  // Declared before the socket so that the socket is closed first.
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> socket_;  // null only when (re)connecting failed
  RequestId next_id_ = 1;
  // Ordered by id, hence by deadline (every request gets the same timeout).
  std::map<RequestId, Pending> in_flight_;
  std::deque<Completion> done_;  // completions not yet handed out
  ClientCounters counters_;
};

namespace {

// Values equal by design (proto/edgekv.proto's Consistency, client/types.h).
static_assert(static_cast<int>(Consistency::kLocalQuorum) == pb::LOCAL_QUORUM);
static_assert(static_cast<int>(Consistency::kQuorum) == pb::QUORUM);

void set_options(const RequestOptions& options, pb::Request* request) {
  request->set_consistency(static_cast<pb::Consistency>(options.consistency));
  request->set_strict(options.strict);
}

pb::Request put_request(std::string_view key, std::string_view value, int64_t ttl_ms,
                        const RequestOptions& options) {
  pb::Request request;
  set_options(options, &request);
  pb::PutRequest* put = request.mutable_put();
  put->mutable_key()->assign(key.data(), key.size());
  put->mutable_value()->assign(value.data(), value.size());
  put->set_ttl_ms(ttl_ms);
  return request;
}

pb::Request get_request(std::string_view key, const RequestOptions& options) {
  pb::Request request;
  set_options(options, &request);
  request.mutable_get()->mutable_key()->assign(key.data(), key.size());
  return request;
}

pb::Request del_request(std::string_view key, const RequestOptions& options) {
  pb::Request request;
  set_options(options, &request);
  request.mutable_del()->mutable_key()->assign(key.data(), key.size());
  return request;
}

}  // namespace

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Result<PutReply> Client::put(std::string_view key, std::string_view value, int64_t ttl_ms,
                             const RequestOptions& options) {
  pb::Request request = put_request(key, value, ttl_ms, options);
  return impl_->call<PutReply>(RequestKind::kPut, request);
}

Result<GetReply> Client::get(std::string_view key, const RequestOptions& options) {
  pb::Request request = get_request(key, options);
  return impl_->call<GetReply>(RequestKind::kGet, request);
}

Result<DeleteReply> Client::del(std::string_view key, const RequestOptions& options) {
  pb::Request request = del_request(key, options);
  return impl_->call<DeleteReply>(RequestKind::kDelete, request);
}

Result<NodeStatus> Client::status() {
  pb::Request request;
  request.mutable_status();
  return impl_->call<NodeStatus>(RequestKind::kStatus, request);
}

Result<std::vector<Stat>> Client::stats() {
  pb::Request request;
  request.mutable_stats();
  return impl_->call<std::vector<Stat>>(RequestKind::kStats, request);
}

Result<Changes> Client::changes(uint32_t partition, uint64_t from_seq, uint32_t max_events) {
  pb::Request request;
  pb::ChangesRequest* changes = request.mutable_changes();
  changes->set_partition(partition);
  changes->set_from_seq(from_seq);
  changes->set_max_events(max_events);
  return impl_->call<Changes>(RequestKind::kChanges, request);
}

Result<ChangesSince> Client::changes_since(
    const std::vector<std::pair<uint32_t, uint64_t>>& from_seq,
    const std::vector<std::string>& prefixes, uint32_t max_events) {
  pb::Request request;
  pb::ChangesSinceRequest* since = request.mutable_changes_since();
  for (const auto& [partition, seq] : from_seq) (*since->mutable_from_seq())[partition] = seq;
  for (const std::string& prefix : prefixes) since->add_prefixes(prefix);
  since->set_max_events(max_events);
  return impl_->call<ChangesSince>(RequestKind::kChangesSince, request);
}

Result<Members> Client::members() {
  pb::Request request;
  request.mutable_members();
  return impl_->call<Members>(RequestKind::kMembers, request);
}

Result<Ring> Client::ring() {
  pb::Request request;
  request.mutable_ring();
  return impl_->call<Ring>(RequestKind::kRing, request);
}

Result<Hints> Client::hints() {
  pb::Request request;
  request.mutable_hints();
  return impl_->call<Hints>(RequestKind::kHints, request);
}

Result<Repair> Client::repair(std::optional<uint32_t> partition, std::chrono::milliseconds wait) {
  pb::Request request;
  pb::RepairRequest* r = request.mutable_repair();
  r->set_all(!partition.has_value());
  r->set_partition(partition.value_or(0));
  r->set_timeout_ms(static_cast<uint64_t>(wait.count()));
  return impl_->call<Repair>(RequestKind::kRepair, request);
}

Result<RemoveReply> Client::remove(const std::vector<std::string>& node_ids) {
  pb::Request request;
  pb::RemoveRequest* r = request.mutable_remove();
  for (const std::string& id : node_ids) r->add_node_ids(id);
  return impl_->call<RemoveReply>(RequestKind::kRemove, request);
}

Result<RemoveReply> Client::abort_hand_over() {
  pb::Request request;
  request.mutable_remove()->set_abort(true);
  return impl_->call<RemoveReply>(RequestKind::kRemove, request);
}

Result<Replicas> Client::replicas(std::string_view key) {
  pb::Request request;
  request.mutable_replicas()->mutable_key()->assign(key.data(), key.size());
  return impl_->call<Replicas>(RequestKind::kReplicas, request);
}

RequestId Client::put_async(std::string_view key, std::string_view value, int64_t ttl_ms,
                            const RequestOptions& options) {
  pb::Request request = put_request(key, value, ttl_ms, options);
  return impl_->submit(RequestKind::kPut, request);
}

RequestId Client::get_async(std::string_view key, const RequestOptions& options) {
  pb::Request request = get_request(key, options);
  return impl_->submit(RequestKind::kGet, request);
}

RequestId Client::del_async(std::string_view key, const RequestOptions& options) {
  pb::Request request = del_request(key, options);
  return impl_->submit(RequestKind::kDelete, request);
}

std::vector<Completion> Client::poll(int timeout_ms) {
  Impl& impl = *impl_;
  if (impl.done_.empty()) {
    const MonoTime until = timeout_ms < 0
                               ? MonoTime::max()
                               : impl.clock_.mono_now() + std::chrono::milliseconds(timeout_ms);
    impl.pump(until, [&] { return !impl.done_.empty(); });
  } else {
    impl.drain();  // hand out whatever else is already here too
    impl.expire(impl.clock_.mono_now());
  }
  std::vector<Completion> out(std::make_move_iterator(impl.done_.begin()),
                              std::make_move_iterator(impl.done_.end()));
  impl.done_.clear();
  return out;
}

size_t Client::in_flight() const { return impl_->in_flight_.size(); }
ClientCounters Client::counters() const { return impl_->counters_; }
const ClientOptions& Client::options() const { return impl_->options_; }

}  // namespace edgekv::client
