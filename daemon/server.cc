#include "daemon/server.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/log.h"
#include "common/version.h"
#include "daemon/completion_queue.h"
#include "daemon/notify.h"
#include "daemon/request.h"
#include "daemon/request_path.h"
#include "daemon/resp_server.h"
#include "proto/edgekv.pb.h"
#include "store/store.h"

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

// Requests taken from the ROUTER per loop turn before completions and timers get a look
// in: keeps acknowledgement latency bounded under a flood of reads.
constexpr int kRequestsPerTurnMax = 512;
// Change events the feed socket buffers per subscriber before dropping (ZeroMQ's PUB
// semantics): a subscriber that far behind has a gap it detects by sequence number.
constexpr int kFeedSendHwm = 100'000;
// Slack above the largest valid request: a request this much over max-value-bytes is cut
// off by ZeroMQ (connection dropped) instead of being read into memory; anything smaller
// is read and answered INVALID_ARGUMENT.
constexpr int64_t kMessageSlackBytes = 1 << 20;
// How often STATUS= is refreshed for systemctl status.
constexpr milliseconds kStatusInterval{5000};

pb::Code to_pb(Code code) { return static_cast<pb::Code>(code); }

void set_version(pb::Version* out, const Version& v) {
  out->set_hlc(v.hlc);
  out->set_origin(v.origin);
}

pb::ChangeOp to_pb(store::ChangeOp op) {
  switch (op) {
    case store::ChangeOp::kPut: return pb::PUT;
    case store::ChangeOp::kDelete: return pb::DELETE;
    case store::ChangeOp::kExpire: return pb::EXPIRE;
  }
  return pb::CHANGE_OP_UNSPECIFIED;
}

void fill_event(pb::ChangeEvent* out, const store::ChangeEvent& e) {
  out->set_op(to_pb(e.op));
  out->set_key(e.key);
  if (e.op == store::ChangeOp::kPut) out->set_value(e.value);
  set_version(out->mutable_version(), e.version);
  out->set_expiry_ms(e.expiry.ms);
  out->set_partition(e.partition);
  out->set_seq(e.seq);
}

const char* sync_name(store::SyncMode mode) {
  return mode == store::SyncMode::kFull ? "full" : "normal";
}

// Where a reply goes: the ROUTER routing identity, and whether the client used a REQ
// socket (which wants an empty delimiter frame before the body).
struct ReplyTo {
  std::string identity;
  bool req_envelope = false;
};

// Counters for STATS, in the order they are reported.
struct Counters {
  uint64_t requests = 0;
  uint64_t puts = 0;
  uint64_t gets = 0;
  uint64_t deletes = 0;
  uint64_t get_hits = 0;
  uint64_t get_misses = 0;
  uint64_t invalid_requests = 0;
  uint64_t errors = 0;
  uint64_t feed_events = 0;
  uint64_t expired_events = 0;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const Config& config, const Clock& clock, int stop_fd)
      : config_(config),
        clock_(clock),
        stop_fd_(stop_fd),
        context_(1),
        router_(context_, zmq::socket_type::router),
        feed_(context_, zmq::socket_type::pub),
        started_(clock.mono_now()) {
    limits_.max_key_bytes = config.max_key_bytes;
    limits_.max_value_bytes = config.max_value_bytes;
  }

  // After bind(): a node whose endpoints are taken fails before it creates or touches
  // its data directory.
  Status open_store() {
    auto store = store::Store::open(config_.store_options());
    if (!store.ok()) return store.status();
    store_ = std::move(store).value();
    limits_.partitions = store_->partitions();
    path_ = std::make_unique<RequestPath>(
        clock_, origin_of(config_.node_id), *store_, completions_,
        [this](const store::ChangeEvent& event) { publish(event); }, config_.read_cache_bytes);
    if (resp_) {
      resp_->attach(*path_, [this] { return store_->stats(clock_.wall_now()); },
                    store_->partitions());
    }
    return {};
  }

  Status bind() {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::maxmsgsize,
                static_cast<int64_t>(config_.max_value_bytes + config_.max_key_bytes) +
                    kMessageSlackBytes);
    feed_.set(zmq::sockopt::linger, 0);
    feed_.set(zmq::sockopt::sndhwm, kFeedSendHwm);
    EDGEKV_RETURN_IF_ERROR(bind_one(router_, "client-endpoint", config_.client_endpoint));
    EDGEKV_RETURN_IF_ERROR(bind_one(feed_, "feed-endpoint", config_.feed_endpoint));
    if (!config_.resp_endpoint.empty()) {
      RespOptions options;
      options.limits = limits_;
      options.node_id = config_.node_id;
      auto resp = RespServer::listen(config_.resp_endpoint, std::move(options));
      if (!resp.ok()) return resp.status();
      resp_ = std::move(resp).value();
    }
    return {};
  }

  Status run() override {
    EDGEKV_LOG(kNotice) << "edgekvd " << EDGEKV_VERSION << " node " << config_.node_id
                        << " serving clients on " << config_.client_endpoint
                        << ", change feed on " << config_.feed_endpoint
                        << (resp_ ? ", Redis protocol on " + config_.resp_endpoint : std::string())
                        << ", "
                        << store_->partitions() << " partitions in " << config_.data_dir.string()
                        << " (sync=" << sync_name(config_.sync) << ")";
    notifier_.ready(status_line());
    MonoTime now = clock_.mono_now();
    next_sweep_ = now + milliseconds(config_.ttl_sweep_interval_ms);
    next_status_ = now + kStatusInterval;
    if (auto wd = notifier_.watchdog_interval()) next_watchdog_ = now + *wd;

    while (!stopping_ || path_->writes_in_flight() > 0 || sweep_in_flight_) {
      poll_once();
    }
    notifier_.stopping("closing the store");
    store_->close();
    // Completions that raced with close() (none are expected: no write is in flight).
    handle_completions();
    EDGEKV_LOG(kNotice) << "edgekvd stopped cleanly after " << counters_.requests
                        << " requests";
    return {};
  }

 private:
  static Status bind_one(zmq::socket_t& socket, const char* option, const std::string& endpoint) {
    try {
      socket.bind(endpoint);
    } catch (const zmq::error_t& e) {
      return Status::unavailable(std::string("cannot bind ") + option + " " + endpoint + ": " +
                                 e.what());
    }
    return {};
  }

  void poll_once() {
    // Once stopping, only completions and the RESP replies still to send are waited for.
    std::array<zmq::pollitem_t, 4> items{{
        {nullptr, completions_.fd(), ZMQ_POLLIN, 0},
        {nullptr, resp_ ? resp_->fd() : -1, static_cast<short>(resp_ ? ZMQ_POLLIN : 0), 0},
        {router_.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, stop_fd_, ZMQ_POLLIN, 0},
    }};
    size_t count = stopping_ ? 2 : items.size();
    MonoTime now = clock_.mono_now();
    MonoTime deadline = std::min(next_sweep_, next_status_);
    if (next_watchdog_) deadline = std::min(deadline, *next_watchdog_);
    auto wait = std::chrono::duration_cast<milliseconds>(deadline - now);
    wait = std::clamp(wait, milliseconds(0), milliseconds(1000));
    try {
      zmq::poll(items.data(), count, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      handle_completions();
      if (resp_) resp_->flush_dirty();
    }
    if (items[1].revents & ZMQ_POLLIN) resp_->on_ready();
    if (!stopping_ && (items[2].revents & ZMQ_POLLIN)) read_requests();
    if (!stopping_ && (items[3].revents & ZMQ_POLLIN)) begin_stop();
    run_timers(clock_.mono_now());
  }

  void begin_stop() {
    stopping_ = true;
    EDGEKV_LOG(kNotice) << "stopping: finishing " << path_->writes_in_flight()
                        << " requests in flight, then closing the store";
    notifier_.stopping("finishing requests in flight");
    if (resp_) resp_->stop_reading();
    // The client socket stays open to answer the requests in flight, but is read no more:
    // requests queued behind them are not taken and their clients time out.
  }

  // ------------------------------------------------------------------ requests

  void read_requests() {
    std::vector<zmq::message_t> frames;
    std::vector<std::string_view> body;
    for (int i = 0; i < kRequestsPerTurnMax && !stopping_; ++i) {
      frames.clear();
      zmq::recv_result_t got;
      try {
        got = zmq::recv_multipart(router_, std::back_inserter(frames), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t& e) {
        EDGEKV_LOG(kWarning) << "client socket receive failed: " << e.what();
        return;
      }
      if (!got) return;
      if (frames.empty()) continue;
      body.clear();
      for (size_t f = 1; f < frames.size(); ++f) body.push_back(frames[f].to_string_view());
      ReplyTo to{frames[0].to_string(), false};
      handle_request(std::move(to), body);
    }
  }

  void handle_request(ReplyTo to, std::span<const std::string_view> frames) {
    ++counters_.requests;
    DecodedRequest decoded = decode_request(frames, limits_);
    to.req_envelope = decoded.req_envelope;
    if (!decoded.status.ok()) {
      ++counters_.invalid_requests;
      EDGEKV_LOG(kDebug) << "invalid request " << decoded.id << ": " << decoded.status.message();
      reply_error(to, decoded.id, decoded.status);
      return;
    }
    const pb::Request& req = decoded.request;
    switch (req.op_case()) {
      case pb::Request::kPut: return handle_put(std::move(to), req);
      case pb::Request::kGet: return handle_get(std::move(to), req);
      case pb::Request::kDel: return handle_del(std::move(to), req);
      case pb::Request::kStatus: return handle_status(to, req);
      case pb::Request::kStats: return handle_stats(to, req);
      case pb::Request::kChanges: return handle_changes(to, req);
      case pb::Request::OP_NOT_SET: break;  // validate_request rejected it
    }
  }

  void handle_put(ReplyTo to, const pb::Request& req) {
    ++counters_.puts;
    const auto& put = req.put();
    WallTime expiry{put.ttl_ms() > 0 ? path_->wall_now().ms + put.ttl_ms() : 0};
    path_->put(put.key(), put.value(), expiry,
               [this, to = std::move(to), id = req.id()](Result<WriteOutcome> outcome) {
                 if (!outcome.ok()) return reply_error(to, id, outcome.status());
                 pb::Response resp;
                 resp.set_id(id);
                 set_version(resp.mutable_put()->mutable_version(), outcome->version);
                 resp.mutable_put()->set_expiry_ms(outcome->expiry.ms);
                 send_reply(to, resp);
               });
  }

  void handle_del(ReplyTo to, const pb::Request& req) {
    ++counters_.deletes;
    path_->del(req.del().key(),
               [this, to = std::move(to), id = req.id()](Result<WriteOutcome> outcome) {
                 if (!outcome.ok()) return reply_error(to, id, outcome.status());
                 pb::Response resp;
                 resp.set_id(id);
                 set_version(resp.mutable_del()->mutable_version(), outcome->version);
                 send_reply(to, resp);
               });
  }

  void handle_get(ReplyTo to, const pb::Request& req) {
    ++counters_.gets;
    path_->get(req.get().key(), [this, to = std::move(to),
                                 id = req.id()](Result<store::Record> record) {
      if (!record.ok()) {
        if (record.status().code() == Code::kNotFound) ++counters_.get_misses;
        return reply_error(to, id, record.status());
      }
      ++counters_.get_hits;
      pb::Response resp;
      resp.set_id(id);
      auto* body = resp.mutable_get();
      body->set_value(std::move(record->value));
      set_version(body->mutable_version(), record->version);
      body->set_expiry_ms(record->expiry.ms);
      send_reply(to, resp);
    });
  }

  void handle_status(const ReplyTo& to, const pb::Request& req) {
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_status();
    body->set_node_id(config_.node_id);
    body->set_server_version(EDGEKV_VERSION);
    body->set_uptime_ms(static_cast<uint64_t>(
        std::chrono::duration_cast<milliseconds>(clock_.mono_now() - started_).count()));
    body->set_partitions(store_->partitions());
    body->set_data_dir(config_.data_dir.string());
    body->set_client_endpoint(config_.client_endpoint);
    body->set_feed_endpoint(config_.feed_endpoint);
    body->set_sync(sync_name(config_.sync));
    body->set_keys(store_->stats(clock_.wall_now()).keys);
    send_reply(to, resp);
  }

  void handle_stats(const ReplyTo& to, const pb::Request& req) {
    store::StoreStats s = store_->stats(clock_.wall_now());
    const std::pair<const char*, uint64_t> rows[] = {
        {"requests", counters_.requests},
        {"puts", counters_.puts},
        {"gets", counters_.gets},
        {"deletes", counters_.deletes},
        {"get_hits", counters_.get_hits},
        {"get_misses", counters_.get_misses},
        {"invalid_requests", counters_.invalid_requests},
        {"errors", counters_.errors},
        {"writes_in_flight", path_->writes_in_flight()},
        {"feed_events", counters_.feed_events},
        {"expired_events", counters_.expired_events},
        {"resp_connections", resp_ ? resp_->connections() : 0},
        {"resp_connections_received", resp_ ? resp_->counters().connections_received : 0},
        {"resp_commands", resp_ ? resp_->counters().commands : 0},
        {"resp_protocol_errors", resp_ ? resp_->counters().protocol_errors : 0},
        {"keys", s.keys},
        {"read_cache_bytes", path_->cache().bytes()},
        {"read_cache_entries", path_->cache().entries()},
        {"read_cache_hits", path_->cache().hits()},
        {"read_cache_misses", path_->cache().misses()},
        {"store_puts_applied", s.puts_applied},
        {"store_deletes_applied", s.deletes_applied},
        {"store_writes_ignored", s.writes_ignored},
        {"store_expired", s.expired},
        {"store_tombstones_purged", s.tombstones_purged},
        {"store_commit_groups", s.commit_groups},
        {"store_group_writes", s.group_writes},
        {"store_bytes_on_disk", s.bytes_on_disk},
    };
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_stats();
    for (const auto& [name, value] : rows) {
      auto* stat = body->add_stats();
      stat->set_name(name);
      stat->set_value(value);
    }
    send_reply(to, resp);
  }

  void handle_changes(const ReplyTo& to, const pb::Request& req) {
    const auto& changes = req.changes();
    size_t max = changes.max_events() == 0 ? 1000 : changes.max_events();
    auto events = store_->read_changes(changes.partition(), changes.from_seq(), max);
    if (!events.ok()) {
      reply_error(to, req.id(), events.status());
      return;
    }
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_changes();
    for (const auto& e : *events) fill_event(body->add_events(), e);
    body->set_last_seq(store_->last_seq(changes.partition()));
    send_reply(to, resp);
  }

  void reply_error(const ReplyTo& to, uint64_t id, const Status& status) {
    if (status.code() != Code::kNotFound && status.code() != Code::kInvalidArgument) {
      ++counters_.errors;
      EDGEKV_LOG(kWarning) << "request " << id << " failed: " << status.to_string();
    }
    pb::Response resp;
    resp.set_id(id);
    resp.set_code(to_pb(status.code()));
    resp.set_message(status.message());
    send_reply(to, resp);
  }

  void send_reply(const ReplyTo& to, const pb::Response& resp) {
    std::string body = resp.SerializeAsString();
    try {
      router_.send(zmq::buffer(to.identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (to.req_envelope) {
        router_.send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      }
      router_.send(zmq::message_t(body.data(), body.size()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      EDGEKV_LOG(kWarning) << "cannot send reply " << resp.id() << ": " << e.what();
    }
  }

  // ------------------------------------------------------------------ feed

  void publish(const store::ChangeEvent& event) {
    pb::ChangeEvent msg;
    fill_event(&msg, event);
    std::string body = msg.SerializeAsString();
    try {
      feed_.send(zmq::buffer(event.key), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      feed_.send(zmq::message_t(body.data(), body.size()), zmq::send_flags::dontwait);
      ++counters_.feed_events;
    } catch (const zmq::error_t& e) {
      EDGEKV_LOG(kWarning) << "cannot publish change event: " << e.what();
    }
  }

  // ------------------------------------------------------------------ completions, timers

  void handle_completions() {
    for (Completion& c : completions_.drain()) {
      if (auto* w = std::get_if<StoreWriteDone>(&c)) {
        path_->on_write_done(std::move(*w));
      } else {
        on_sweep_done(std::move(std::get<StoreSweepDone>(c)));
      }
    }
  }

  void on_sweep_done(StoreSweepDone done) {
    sweep_in_flight_ = false;
    if (!done.result.ok()) {
      EDGEKV_LOG(kWarning) << "expiry sweep failed: " << done.result.status().to_string();
      return;
    }
    for (const auto& event : *done.result) {
      ++counters_.expired_events;
      path_->on_expired(event.key);
      publish(event);
    }
    // A full batch means more rows are due: sweep again on the next turn instead of
    // waiting a whole interval (bounded work per turn, no unbounded backlog).
    if (done.result->size() >= config_.ttl_sweep_batch_max) next_sweep_ = clock_.mono_now();
  }

  void run_timers(MonoTime now) {
    if (now >= next_sweep_ && !sweep_in_flight_ && !stopping_) {
      next_sweep_ = now + milliseconds(config_.ttl_sweep_interval_ms);
      sweep_in_flight_ = true;
      store_->sweep(clock_.wall_now(), config_.ttl_sweep_batch_max,
                    [queue = &completions_](auto result) {
                      queue->push(StoreSweepDone{std::move(result)});
                    });
    }
    if (next_watchdog_ && now >= *next_watchdog_) {
      notifier_.watchdog();
      next_watchdog_ = now + *notifier_.watchdog_interval();
    }
    if (now >= next_status_) {
      next_status_ = now + kStatusInterval;
      if (!stopping_) notifier_.status(status_line());
    }
  }

  std::string status_line() const {
    return "serving " + config_.client_endpoint + "; " + std::to_string(counters_.requests) +
           " requests, " + std::to_string(path_ ? path_->writes_in_flight() : 0) +
           " writes in flight";
  }

  Config config_;
  const Clock& clock_;
  int stop_fd_;
  // Before store_: the store's writer threads push into it until the store is closed.
  CompletionQueue completions_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<RequestPath> path_;  // after store_: it refers to it
  std::unique_ptr<RespServer> resp_;   // after path_: it refers to it; null when disabled
  RequestLimits limits_;
  zmq::context_t context_;
  zmq::socket_t router_;
  zmq::socket_t feed_;
  ServiceNotifier notifier_;
  MonoTime started_;
  MonoTime next_sweep_{};
  MonoTime next_status_{};
  std::optional<MonoTime> next_watchdog_;
  bool stopping_ = false;
  bool sweep_in_flight_ = false;
  Counters counters_;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::start(const Config& config, const Clock& clock,
                                              int stop_fd) {
  auto server = std::make_unique<ServerImpl>(config, clock, stop_fd);
  EDGEKV_RETURN_IF_ERROR(server->bind());
  EDGEKV_RETURN_IF_ERROR(server->open_store());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace edgekv::daemon
