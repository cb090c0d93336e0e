#include "daemon/server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "cluster/clock_guard.h"
#include "cluster/membership.h"
#include "cluster/mutation.h"
#include "common/hlc.h"
#include "common/log.h"
#include "common/version.h"
#include "daemon/applied.h"
#include "daemon/cluster_node.h"
#include "daemon/completion_queue.h"
#include "daemon/event_loop.h"
#include "daemon/feed_server.h"
#include "daemon/gossip_transport.h"
#include "daemon/memory_release.h"
#include "daemon/notify.h"
#include "daemon/request.h"
#include "daemon/resp_server.h"
#include "gossip/swim.h"
#include "proto/edgekv.pb.h"
#include "store/store.h"

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

// Requests taken from the ROUTER per loop turn before completions and timers get a look
// in: keeps acknowledgement latency bounded under a flood of reads.
constexpr int kRequestsPerTurnMax = 512;
// Slack above the largest valid request: a request this much over max-value-bytes is cut
// off by ZeroMQ (connection dropped) instead of being read into memory; anything smaller
// is read and answered INVALID_ARGUMENT.
constexpr int64_t kMessageSlackBytes = 1 << 20;
// libzmq queues each client's requests on its I/O thread, ahead of the node reading them,
// bounded by a count (ZMQ_RCVHWM), not bytes. The count is what max-inflight-bytes holds
// of the largest requests, so one client's queue holds about that much at most, but never
// fewer than kClientReceiveHwmMin (a pipelining client of small requests must not wait on
// the I/O thread) nor more than libzmq's default of 1000.
constexpr int64_t kClientReceiveHwmMin = 64;
constexpr int64_t kClientReceiveHwmMax = 1000;
// How often STATUS= is refreshed for systemctl status.
constexpr milliseconds kStatusInterval{5000};
// Gossip datagrams handed to the membership machine per loop turn: bounds the turn under a
// flood while staying far above what SWIM sends (a few messages per member and period).
constexpr size_t kGossipPerTurnMax = 256;
// At shutdown, how long the sockets to peers may take to deliver the leave announcement.
constexpr milliseconds kGossipShutdownLingerMax{1000};
// Idle peer sockets are closed after the reap time, but never sooner than this: reopening
// one costs a connection and a subscription round trip.
constexpr milliseconds kGossipIdleCloseMin{60000};
// Joins logged by name per window; more are summed up in one line per window (members come
// from unauthenticated gossip). A cluster's first 20 joins per 10 s are still named.
constexpr size_t kJoinLogsPerWindow = 20;
// A change in the number of live members is told to the service manager (STATUS=) at most
// this often; the periodic status line carries it in any case.
constexpr milliseconds kMemberStatusMinInterval{1000};
constexpr milliseconds kJoinLogWindow{10000};
// The placement table (cluster/placement.h) in the data directory, written atomically.
constexpr const char* kPlacementFile = "placement";
// The partitions marked for repair with an owner whose hints this node could not keep.
constexpr const char* kRepairMarksFile = "repair-marks";
// Gossip from nodes with another partition count is logged at most this often (one line
// naming both counts and how many messages were dropped since): a misconfigured node
// retries its join for as long as it runs.
constexpr milliseconds kPartitionsMismatchLogInterval{10000};

pb::MemberState to_pb(gossip::MemberState state) {
  switch (state) {
    case gossip::MemberState::kAlive: return pb::MEMBER_ALIVE;
    case gossip::MemberState::kSuspect: return pb::MEMBER_SUSPECT;
    case gossip::MemberState::kDead: return pb::MEMBER_DEAD;
    case gossip::MemberState::kLeft: return pb::MEMBER_LEFT;
  }
  return pb::MEMBER_STATE_UNSPECIFIED;
}

// The incarnation a starting node announces itself with. A node restarted under the same
// id must rejoin above whatever incarnation the cluster remembers of its previous run
// (alive, suspect or dead): the wall clock in milliseconds is above it unless the clock
// went back by more than the node was down plus the refutations it made, and it needs no
// state on disk, so it holds for a node whose data directory was wiped too. Should the
// clock be behind, the machine still refutes the older record when it hears of it, one
// round trip later.
uint64_t starting_incarnation(const Clock& clock) {
  int64_t ms = clock.wall_now().ms;
  return ms > 0 ? static_cast<uint64_t>(ms) : 1;
}

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
  // ZeroMQ API requests answered with an error other than NOT_FOUND (reply_error); STATS
  // reports `errors` as these plus the RESP listener's error replies.
  uint64_t api_errors = 0;
  uint64_t feed_events = 0;
  uint64_t expired_events = 0;
  uint64_t members_requests = 0;
  uint64_t requests_shed = 0;  // writes answered OVERLOADED for max-inflight-bytes
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const Config& config, const Clock& clock, int stop_fd)
      : config_(config),
        clock_(clock),
        stop_fd_(stop_fd),
        hlc_(clock, config.max_clock_offset_ms),
        clock_guard_(hlc_),
        context_(1),
        router_(context_, zmq::socket_type::router),
        started_(clock.mono_now()) {
    // parse_args validated the gossip settings; this cannot fail for a parsed Config.
    Result<gossip::Options> options = config_.gossip_options();
    EDGEKV_ASSERT(options.ok());
    gossip_options_ = std::move(options).value();
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
    applied_ = std::make_unique<AppliedChanges>(
        config_.read_cache_bytes,
        [this](const store::ChangeEvent& event, cluster::ChangeSource) { publish(event); });
    ClusterNodeOptions options;
    options.node_id = config_.node_id;
    options.cluster_name = config_.cluster_name;
    options.partitions = store_->partitions();
    options.replication_factor = config_.replication_factor;
    options.placement_file = config_.data_dir / kPlacementFile;
    options.transport.endpoint = config_.peer_endpoint;
    options.limits.max_key_bytes = config_.max_key_bytes;
    options.limits.max_value_bytes = config_.max_value_bytes;
    // A batch holds at least one message of the largest key and value.
    options.limits.max_batch_bytes = std::max<size_t>(
        options.limits.max_batch_bytes, config_.max_key_bytes + config_.max_value_bytes +
                                            cluster::kPeerMessageOverheadBytes +
                                            cluster::kPeerEnvelopeOverheadBytes);
    options.transport.max_batch_bytes = static_cast<int64_t>(options.limits.max_batch_bytes);
    options.coordinator = config_.coordinator_options();
    options.replica = config_.replica_options();
    options.handoff = config_.handoff_options();
    options.anti_entropy = config_.anti_entropy_options();
    // A node given seeds expects a cluster: it waits a few gossip rounds for the cluster's
    // table rather than start a rival one (cluster/placement_keeper.h).
    if (!config_.seeds.empty()) options.keeper.bootstrap_wait = std::chrono::seconds(5);
    options.marks_file = config_.data_dir / kRepairMarksFile;
    const uint64_t seed =
        origin_of(config_.node_id) ^ static_cast<uint64_t>(clock_.wall_now().ms) ^ 0x9e3779b9;
    auto node = ClusterNode::open(
        context_, std::move(options), clock_, hlc_, clock_guard_, *store_,
        [queue = &completions_](std::function<void()> work) {
          queue->push(PostedWork{std::move(work)});
        },
        applied_->hook(), seed,
        [this](std::string_view key, WallTime now) { return applied_->read(*store_, key, now); });
    if (!node.ok()) return node.status();
    cluster_ = std::move(node).value();
    keyspace_ = std::make_unique<CoordinatorKeyspace>(*this);
    if (resp_) {
      resp_->attach(
          *keyspace_, [this] { return store_->stats(clock_.wall_now()); }, store_->partitions());
    }
    return {};
  }

  // The defaults of the node, or what the request asked for. strict-quorum (or
  // Request.strict) applies to reads as to writes: a strict read counts home replicas only,
  // so at QUORUM it sees every acknowledged strict QUORUM write, whatever fallbacks hold.
  cluster::RequestOptions read_options(const pb::Request* req = nullptr) const {
    cluster::RequestOptions o;
    o.consistency = config_.read_consistency;
    o.strict = config_.strict_quorum;
    if (req && req->consistency() != pb::CONSISTENCY_DEFAULT) {
      o.consistency = static_cast<cluster::Consistency>(req->consistency());
    }
    if (req && req->strict()) o.strict = true;
    return o;
  }
  cluster::RequestOptions write_options(const pb::Request* req = nullptr) const {
    cluster::RequestOptions o;
    o.consistency = config_.write_consistency;
    o.strict = config_.strict_quorum;
    if (req && req->consistency() != pb::CONSISTENCY_DEFAULT) {
      o.consistency = static_cast<cluster::Consistency>(req->consistency());
    }
    if (req && req->strict()) o.strict = true;
    return o;
  }

  // Client requests in flight, for the shutdown to wait on: the coordinator's and the
  // replica side's store writes.
  size_t requests_in_flight() const {
    return cluster_->coordinator().requests() + cluster_->replica().inflight_writes();
  }

  Status bind() {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(
        zmq::sockopt::maxmsgsize,
        static_cast<int64_t>(config_.max_value_bytes + config_.max_key_bytes) + kMessageSlackBytes);
    const auto request_max_bytes =
        static_cast<int64_t>(config_.max_value_bytes + config_.max_key_bytes) + kMessageSlackBytes;
    router_.set(zmq::sockopt::rcvhwm,
                static_cast<int>(
                    std::clamp(static_cast<int64_t>(config_.max_inflight_bytes) / request_max_bytes,
                               kClientReceiveHwmMin, kClientReceiveHwmMax)));
    EDGEKV_RETURN_IF_ERROR(bind_one(router_, "client-endpoint", config_.client_endpoint));
    EDGEKV_RETURN_IF_ERROR(bind_feed());
    EDGEKV_RETURN_IF_ERROR(bind_gossip());
    if (!config_.resp_endpoint.empty()) {
      RespOptions options;
      options.limits = limits_;
      options.node_id = config_.node_id;
      options.client_buffer_max_bytes = config_.resp_client_buffer_bytes;
      options.inflight_max_bytes = config_.max_inflight_bytes;
      auto resp = RespServer::listen(config_.resp_endpoint, std::move(options));
      if (!resp.ok()) return resp.status();
      resp_ = std::move(resp).value();
    }
    return {};
  }

  Status run() override {
    EDGEKV_LOG(kNotice) << "edgekvd " << EDGEKV_VERSION << " node " << config_.node_id
                        << " serving clients on " << config_.client_endpoint << ", change feed on "
                        << config_.feed_endpoint
                        << (resp_ ? ", Redis protocol on " + config_.resp_endpoint : std::string())
                        << ", " << store_->partitions() << " partitions in "
                        << config_.data_dir.string() << " (sync=" << sync_name(config_.sync) << ")";
    MonoTime now = clock_.mono_now();
    start_gossip(now);
    // Ready before the join completes: the node serves its own data meanwhile, and a seed
    // that is down must not hold up the start (the join keeps retrying).
    notifier_.ready(status_line());
    next_sweep_ = now + milliseconds(config_.ttl_sweep_interval_ms);
    next_status_ = now + kStatusInterval;
    if (auto wd = notifier_.watchdog_interval()) next_watchdog_ = now + *wd;
    register_with_loop();

    while (!stopping_ || requests_in_flight() > 0 || sweep_in_flight_ || !gossip_done()) {
      loop_.run_once();
    }
    if (!swim_->left()) {
      EDGEKV_LOG(kWarning) << "gossip: the leave announcement did not go out within "
                           << gossip_options_.leave_timeout.count() << " ms; stopping anyway";
    }
    // The leave announcement may still sit in the peer sockets: give them a moment to
    // deliver it when they are closed, instead of dropping it.
    gossip_transport_->set_linger_for_shutdown(
        std::min(gossip_options_.leave_timeout, kGossipShutdownLingerMax));
    notifier_.stopping("closing the store");
    store_->close();
    // Completions that raced with close() (none are expected: no write is in flight).
    handle_completions();
    feed_->flush();
    EDGEKV_LOG(kNotice) << "edgekvd stopped cleanly after " << counters_.requests << " requests";
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

  // The loop's turn (daemon/event_loop.h), in registration order: the store's WakeBatch
  // opens; completions are answered, then the RESP and feed listeners served; client
  // requests are read (at most kRequestsPerTurnMax), then gossip datagrams (at most
  // kGossipPerTurnMax); a stop signal begins the shutdown; the timers that are due run; then
  // the gossip machine's timers and messages, the memory releaser, the feed's upkeep and its
  // events of the turn, and the WakeBatch closes, waking the store's writers once.
  void register_with_loop() {
    // The writes of this turn wake the store's writers together when it ends.
    loop_.add_turn_hooks([this] { wake_batch_.emplace(); },
                         [this](MonoTime) { wake_batch_.reset(); });
    loop_.add_turn_hooks({}, [this](MonoTime now) {
      feed_->maintain(now);
      // The events this turn published go out together, a bounded amount per turn.
      feed_->flush();
    });
    loop_.add_turn_hooks({}, [this](MonoTime now) { releaser_.on_turn(inflight_bytes(), now); });
    loop_.add_turn_hooks({}, [this](MonoTime now) { drive_gossip(now); });
    // Registered last, so it runs first at the end of a turn: the peer messages of the turn
    // go out, one batch per peer, and the replica writes they start join the WakeBatch.
    loop_.add_turn_hooks({}, [this](MonoTime now) {
      cluster_->flush(now);
      // Requests answered by this node's own replica within the flush (self-addressed
      // messages are handed over in process) fill RESP replies: send them this turn.
      if (resp_) resp_->flush_dirty();
    });
    loop_.add_zmq(cluster_->inbox().handle(), ZMQ_POLLIN,
                  [this](int) { cluster_->on_inbox(clock_.mono_now()); });
    loop_.add_deadline([this] { return cluster_->next_deadline(); },
                       [this](MonoTime now) { cluster_->tick(now); });

    loop_.add_fd(completions_.fd(), POLLIN, [this](short) {
      handle_completions();
      if (resp_) resp_->flush_dirty();
    });
    if (resp_) loop_.add_fd(resp_->fd(), POLLIN, [this](short) { resp_->on_ready(); });
    loop_.add_fd(feed_->fd(), POLLIN, [this](short) { feed_->on_ready(); });
    client_registration_ =
        loop_.add_zmq(router_.handle(), ZMQ_POLLIN, [this](int) { read_requests(); });
    loop_.add_zmq_set(
        [this](std::vector<zmq::pollitem_t>* items) {
          gossip_transport_->append_poll_items(items);
        },
        [this](std::span<const zmq::pollitem_t> items) {
          const MonoTime now = clock_.mono_now();
          gossip_transport_->on_poll(
              items, now, [this, now](std::string_view datagram) { swim_->receive(datagram, now); },
              kGossipPerTurnMax);
        });
    stop_registration_ = loop_.add_fd(stop_fd_, POLLIN, [this](short) { begin_stop(); });

    // While stopping no sweep starts, so its (past) time must not end the wait.
    loop_.add_deadline([this] { return stopping_ ? MonoTime::max() : next_sweep_; },
                       [this](MonoTime now) { start_sweep(now); });
    loop_.add_deadline([this] { return next_watchdog_.value_or(MonoTime::max()); },
                       [this](MonoTime now) {
                         notifier_.watchdog();
                         next_watchdog_ = now + *notifier_.watchdog_interval();
                       });
    loop_.add_deadline([this] { return next_status_; },
                       [this](MonoTime now) {
                         next_status_ = now + kStatusInterval;
                         if (!stopping_) notifier_.status(status_line());
                       });
    // drive_gossip() runs every turn; these are when it has something to do on its own.
    loop_.add_deadline(
        [this] {
          MonoTime deadline = swim_->next_deadline();
          if (status_stale_) deadline = std::min(deadline, next_member_status_);
          if (stopping_) deadline = std::min(deadline, leave_deadline_);
          return deadline;
        },
        {});
    loop_.add_deadline([this] { return releaser_.next_deadline(); }, {});
  }

  void begin_stop() {
    stopping_ = true;
    EDGEKV_LOG(kNotice) << "stopping: leaving the cluster, finishing " << requests_in_flight()
                        << " requests in flight, then closing the store";
    notifier_.stopping("leaving the cluster, finishing requests in flight");
    MonoTime now = clock_.mono_now();
    leave_deadline_ = now + gossip_options_.leave_timeout;
    swim_->leave(now);
    drive_gossip(now);
    if (resp_) resp_->stop_reading();
    feed_->stop_accepting();
    // Only completions, the RESP replies still to send and gossip (the leave) are waited for.
    loop_.set_enabled(client_registration_, false);
    loop_.set_enabled(stop_registration_, false);
    // The client socket stays open to answer the requests in flight, but is read no more:
    // requests queued behind them are not taken and their clients time out.
  }

  // ------------------------------------------------------------------ requests

  void read_requests() {
    loop_.touch();
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
      deliver_local();
    }
  }

  // After every client call: what it sent this node's own replica is handed over at once
  // (ClusterNode::deliver_local), so that the next request is admitted against bytes that
  // include the replica's, and a write the replica refuses is answered and freed now.
  void deliver_local() { cluster_->deliver_local(clock_.mono_now()); }

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
    pb::Request& req = decoded.request;
    switch (req.op_case()) {
      case pb::Request::kPut: return handle_put(std::move(to), req);
      case pb::Request::kGet: return handle_get(std::move(to), req);
      case pb::Request::kDel: return handle_del(std::move(to), req);
      case pb::Request::kStatus: return handle_status(to, req);
      case pb::Request::kStats: return handle_stats(to, req);
      case pb::Request::kChanges: return handle_changes(to, req);
      case pb::Request::kMembers: return handle_members(to, req);
      case pb::Request::kChangesSince: return handle_changes_since(to, req);
      case pb::Request::kRing: return handle_ring(to, req);
      case pb::Request::kReplicas: return handle_replicas(std::move(to), req);
      case pb::Request::kHints: return handle_hints(to, req);
      case pb::Request::kRepair: return handle_repair(std::move(to), req);
      case pb::Request::kRemove: return handle_remove(to, req);
      case pb::Request::OP_NOT_SET: break;  // validate_request rejected it
    }
  }

  // Bytes the node holds for client requests in flight: what max-inflight-bytes bounds.
  uint64_t inflight_bytes() const {
    return keyspace_->inflight_bytes() + (resp_ ? resp_->held_bytes() : 0);
  }

  // A write arriving while the node holds max-inflight-bytes is answered OVERLOADED at once
  // instead of held: libzmq's queues then stay short too, as the request is read either way.
  bool shed_write(const ReplyTo& to, uint64_t id) {
    if (inflight_bytes() < config_.max_inflight_bytes) return false;
    ++counters_.requests_shed;
    pb::Response resp;
    resp.set_id(id);
    resp.set_code(pb::OVERLOADED);
    resp.set_message("node overloaded: " + std::to_string(inflight_bytes()) +
                     " bytes of requests in flight, max-inflight-bytes=" +
                     std::to_string(config_.max_inflight_bytes) + "; retry later");
    send_reply(to, resp);
    return true;
  }

  void handle_put(ReplyTo to, pb::Request& req) {
    ++counters_.puts;
    if (shed_write(to, req.id())) return;
    auto& put = *req.mutable_put();
    WallTime expiry{put.ttl_ms() > 0 ? clock_.wall_now().ms + put.ttl_ms() : 0};
    // The value is moved, not copied, out of the decoded request.
    cluster_->coordinator().put(
        put.key(), std::move(*put.mutable_value()), expiry, write_options(&req), clock_.mono_now(),
        [this, to = std::move(to), id = req.id()](Result<cluster::WriteOutcome> outcome) {
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
    if (shed_write(to, req.id())) return;
    cluster_->coordinator().del(
        req.del().key(), write_options(&req), clock_.mono_now(),
        [this, to = std::move(to), id = req.id()](Result<cluster::WriteOutcome> outcome) {
          if (!outcome.ok()) return reply_error(to, id, outcome.status());
          pb::Response resp;
          resp.set_id(id);
          set_version(resp.mutable_del()->mutable_version(), outcome->version);
          send_reply(to, resp);
        });
  }

  void handle_get(ReplyTo to, const pb::Request& req) {
    ++counters_.gets;
    cluster_->get(req.get().key(), read_options(&req), clock_.mono_now(),
                  [this, to = std::move(to), id = req.id()](Result<store::Record> record) {
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

  void handle_ring(const ReplyTo& to, const pb::Request& req) {
    const cluster::Placement& p = cluster_->placement();
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_ring();
    body->set_partitions(p.partitions());
    body->set_replication_factor(p.replication_factor());
    body->set_epoch(p.epoch());
    body->set_digest(p.digest());
    for (const cluster::NodeId& member : p.members()) body->add_members(member);
    for (uint32_t partition = 0; partition < p.partitions(); ++partition) {
      auto* row = body->add_table();
      row->set_partition(partition);
      for (const cluster::NodeId& node : p.home(partition)) row->add_home(node);
    }
    if (std::optional<cluster::HandOverStatus> h = cluster_->hand_over()) {
      fill_hand_over(*h, cluster_->streaming(), body->mutable_hand_over());
    }
    send_reply(to, resp);
  }

  void fill_hand_over(const cluster::HandOverStatus& h, const ClusterNode::Streaming& mine,
                      pb::HandOver* out) const {
    out->set_from_epoch(h.from_epoch);
    out->set_to_epoch(h.to_epoch);
    out->set_to_digest(h.to_digest);
    for (const cluster::NodeId& id : h.joining) out->add_joining(id);
    for (const cluster::NodeId& id : h.leaving) out->add_leaving(id);
    for (const cluster::NodeId& id : h.not_seen) out->add_not_seen(id);
    for (const cluster::HandOverProgress& t : h.takers) {
      pb::HandOverTaker* taker = out->add_takers();
      taker->set_node_id(t.node);
      taker->set_partitions(t.partitions);
      taker->set_streamed(t.streamed);
      taker->set_ready(t.ready);
    }
    out->set_moved_slots(h.moved_slots);
    out->set_cancels(h.cancels);
    out->set_cancelled_epoch(h.cancelled_epoch);
    pb::HandOverStreaming* streaming = out->mutable_streaming();
    streaming->set_partitions(mine.partitions);
    streaming->set_streamed(mine.streamed);
    streaming->set_keys(mine.keys);
    streaming->set_bytes(mine.bytes);
    if (mine.started != MonoTime{}) {
      streaming->set_started(true);
      const MonoTime now = clock_.mono_now();
      streaming->set_elapsed_ms(
          now > mine.started
              ? static_cast<uint64_t>(
                    std::chrono::duration_cast<milliseconds>(now - mine.started).count())
              : 0);
    }
  }

  // Removes nodes from the placement for good: at once today, through a hand-over once it
  // exists (ClusterNode::remove). Answers with the epoch of the table without them.
  void handle_remove(const ReplyTo& to, const pb::Request& req) {
    const auto& given = req.remove().node_ids();
    std::vector<cluster::NodeId> ids(given.begin(), given.end());
    const bool abort = req.remove().abort();
    if (Status s = abort ? cluster_->abort_hand_over(clock_.mono_now())
                         : cluster_->remove(ids, clock_.mono_now());
        !s.ok()) {
      return reply_error(to, req.id(), s);
    }
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_remove();
    if (std::optional<cluster::HandOverStatus> h = cluster_->hand_over()) {
      body->set_epoch(h->to_epoch);
      body->set_handing_over(true);
      body->set_cancelling(h->cancels);
      body->set_cancelled_epoch(h->cancelled_epoch);
    } else {
      body->set_epoch(cluster_->placement().epoch());
    }
    EDGEKV_LOG(kNotice) << "remove " << (abort ? std::string("--abort") : joined_ids(ids)) << ": "
                        << (body->handing_over() ? "hand-over to epoch " : "placement epoch ")
                        << body->epoch()
                        << (body->cancelling()
                                ? ", cancelling epoch " + std::to_string(body->cancelled_epoch())
                                : std::string());
    send_reply(to, resp);
  }

  static std::string joined_ids(const std::vector<cluster::NodeId>& ids) {
    std::string out;
    for (const cluster::NodeId& id : ids) out += (out.empty() ? "" : " ") + id;
    return out;
  }

  // The store's summary of the hints kept (an index read on this thread, as handle_stats
  // reads the store's stats), joined with the handoff's targets by owner: owners with hints
  // and no target (not a member now) are listed, and so are targets with no hints left
  // that have handed some over or failed to.
  void handle_hints(const ReplyTo& to, const pb::Request& req) {
    Result<std::vector<store::HintOwnerSummary>> owners = store_->hint_owners();
    if (!owners.ok()) return reply_error(to, req.id(), owners.status());
    std::map<std::string, pb::HintTarget> rows;
    for (const store::HintOwnerSummary& o : *owners) {
      pb::HintTarget& row = rows[o.owner];
      row.set_node_id(o.owner);
      row.set_up(cluster_->is_up(o.owner));
      row.set_hints(o.hints);
      row.set_bytes(o.bytes);
      if (o.hints > 0) row.set_oldest_ms(HybridClock::physical_ms(o.oldest.hlc));
    }
    for (const cluster::Handoff::TargetStatus& t : cluster_->handoff().targets()) {
      auto it = rows.find(t.owner);
      if (it == rows.end()) {
        if (t.delivered == 0 && t.failures == 0 && !t.delivering) continue;
        it = rows.emplace(t.owner, pb::HintTarget{}).first;
        it->second.set_node_id(t.owner);
      }
      pb::HintTarget& row = it->second;
      row.set_up(t.up);
      row.set_rehomed(t.rehomed);
      row.set_delivering(t.delivering);
      row.set_rate(t.rate);
      row.set_delivered(t.delivered);
      row.set_failures(t.failures);
      row.set_last_error(t.last_error);
    }
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_hints();
    for (auto& [owner, row] : rows) *body->add_targets() = std::move(row);
    std::vector<cluster::RepairMark> marks = cluster_->handoff().marks();
    std::sort(marks.begin(), marks.end(), [](const auto& a, const auto& b) {
      return std::tie(a.partition, a.owner) < std::tie(b.partition, b.owner);
    });
    for (const cluster::RepairMark& m : marks) {
      auto* out = body->add_marks();
      out->set_partition(m.partition);
      out->set_node_id(m.owner);
      out->set_since_ms(m.since.ms);
      out->set_hints(m.hints);
      out->set_reason(m.reason);
    }
    send_reply(to, resp);
  }

  static pb::ReplicaKeyState key_state(const ClusterNode::ReplicaState& r, WallTime now) {
    if (!r.status.ok()) return pb::REPLICA_UNREACHABLE;
    if (!r.record) return pb::REPLICA_ABSENT;
    if (r.record->tombstone) {
      return r.record->expired_tombstone() ? pb::REPLICA_EXPIRED : pb::REPLICA_DELETED;
    }
    if (r.record->expiry.ms != 0 && r.record->expiry.ms <= now.ms) return pb::REPLICA_EXPIRED;
    return pb::REPLICA_LIVE;
  }

  // Forces anti-entropy rounds and answers with their results once they finished (or at
  // the request's timeout with those that did).
  void handle_repair(ReplyTo to, const pb::Request& req) {
    const pb::RepairRequest& r = req.repair();
    const milliseconds timeout(r.timeout_ms() == 0 ? 60000 : r.timeout_ms());
    const MonoTime now = clock_.mono_now();
    std::optional<uint32_t> partition;
    if (!r.all()) partition = r.partition();
    cluster_->repair(partition, now, now + timeout,
                     [this, to = std::move(to), id = req.id()](
                         Result<std::vector<cluster::AntiEntropy::RoundResult>> results) {
                       if (!results.ok()) return reply_error(to, id, results.status());
                       pb::Response resp;
                       resp.set_id(id);
                       auto* body = resp.mutable_repair();
                       for (const cluster::AntiEntropy::RoundResult& round : *results) {
                         auto* out = body->add_rounds();
                         out->set_partition(round.partition);
                         out->set_node_id(round.peer);
                         if (!round.status.ok()) out->set_error(round.status.to_string());
                         out->set_in_sync(round.in_sync);
                         out->set_leaves_differing(static_cast<uint32_t>(round.leaves_differing));
                         out->set_pulled(round.pulled);
                         out->set_pushed(round.pushed);
                         out->set_skipped(round.skipped);
                         out->set_refused(round.refused);
                         out->set_bytes(round.bytes);
                         out->set_duration_ms(static_cast<uint64_t>(round.duration.count()));
                       }
                       send_reply(to, resp);
                     });
  }

  void handle_replicas(ReplyTo to, const pb::Request& req) {
    cluster_->inspect(req.replicas().key(), clock_.mono_now(),
                      [this, to = std::move(to), id = req.id(),
                       key = req.replicas().key()](ClusterNode::Inspection inspection) {
                        pb::Response resp;
                        resp.set_id(id);
                        auto* body = resp.mutable_replicas();
                        body->set_key(key);
                        body->set_partition(inspection.partition);
                        const WallTime now = clock_.wall_now();
                        for (const ClusterNode::ReplicaState& r : inspection.replicas) {
                          auto* out = body->add_replicas();
                          out->set_node_id(r.node);
                          out->set_home(r.home);
                          out->set_up(r.up);
                          out->set_state(key_state(r, now));
                          if (r.record) {
                            set_version(out->mutable_version(), r.record->version);
                            out->set_expiry_ms(r.record->expiry.ms);
                            out->set_value_bytes(r.record->value.size());
                            out->set_hinted(!r.home);
                          }
                          if (!r.status.ok()) out->set_error(r.status.to_string());
                        }
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
    cluster::MembershipCounts counts = membership_->counts();
    body->set_cluster_name(config_.cluster_name);
    body->set_datacenter(config_.datacenter);
    body->set_members_alive(static_cast<uint32_t>(counts.alive));
    body->set_members_suspect(static_cast<uint32_t>(counts.suspect));
    body->set_members_known(static_cast<uint32_t>(counts.known));
    body->set_gossip_endpoint(config_.gossip_endpoint);
    body->set_peer_endpoint(config_.peer_endpoint);
    body->set_incarnation(swim_->incarnation());
    const gossip::Options& o = gossip_options_;
    pb::GossipSettings* g = body->mutable_gossip();
    g->set_preset(config_.gossip_preset);
    g->set_protocol_period_ms(static_cast<uint64_t>(o.protocol_period.count()));
    g->set_probe_timeout_ms(static_cast<uint64_t>(o.probe_timeout.count()));
    g->set_indirect_probes(o.indirect_probes);
    g->set_retransmit_mult(o.retransmit_mult);
    g->set_suspicion_mult(o.suspicion_mult);
    g->set_suspicion_max_mult(o.suspicion_max_mult);
    g->set_awareness_max(o.awareness_max);
    g->set_push_pull_interval_ms(static_cast<uint64_t>(o.push_pull_interval.count()));
    g->set_gossip_to_dead_ms(static_cast<uint64_t>(o.gossip_to_dead.count()));
    g->set_reap_after_ms(static_cast<uint64_t>(o.reap_after.count()));
    g->set_join_retry_min_ms(static_cast<uint64_t>(o.join_retry_min.count()));
    g->set_join_retry_max_ms(static_cast<uint64_t>(o.join_retry_max.count()));
    g->set_leave_timeout_ms(static_cast<uint64_t>(o.leave_timeout.count()));
    g->set_max_message_bytes(o.max_message_bytes);
    g->set_gossip_interval_ms(static_cast<uint64_t>(o.gossip_interval.count()));
    g->set_gossip_fanout(o.gossip_fanout);
    send_reply(to, resp);
  }

  void handle_members(const ReplyTo& to, const pb::Request& req) {
    ++counters_.members_requests;
    const MonoTime now = clock_.mono_now();
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_members();
    body->set_cluster_name(config_.cluster_name);
    for (const gossip::Member& member : membership_->members()) {
      pb::Member* out = body->add_members();
      out->set_node_id(member.info.id);
      out->set_datacenter(member.info.datacenter);
      out->set_state(to_pb(member.state));
      out->set_incarnation(member.incarnation);
      out->set_client_endpoint(member.info.endpoints.client);
      out->set_peer_endpoint(member.info.endpoints.peer);
      out->set_feed_endpoint(member.info.endpoints.feed);
      out->set_gossip_endpoint(member.info.endpoints.gossip);
      auto age = std::chrono::duration_cast<milliseconds>(now - member.since).count();
      out->set_state_age_ms(age > 0 ? static_cast<uint64_t>(age) : 0);
      out->set_self(member.info.id == config_.node_id);
      // Versions carry the xxh3 of their writer's node id, so that is where the guard
      // filed what it saw of this member's clock.
      const auto& origins = clock_guard_.origins();
      if (auto seen = origins.find(origin_of(member.info.id)); seen != origins.end()) {
        out->set_clock_known(seen->second.offset_known);
        out->set_clock_offset_ms(seen->second.offset_ms);
        out->set_clock_versions_checked(seen->second.observed);
        out->set_clock_versions_refused(seen->second.rejected);
      }
    }
    send_reply(to, resp);
  }

  void handle_stats(const ReplyTo& to, const pb::Request& req) {
    store::StoreStats s = store_->stats(clock_.wall_now());
    const cluster::MembershipCounts members = membership_->counts();
    const gossip::Counters& g = swim_->counters();
    const GossipTransportCounters& t = gossip_transport_->counters();
    const cluster::CoordinatorStats& co = cluster_->coordinator().stats();
    const cluster::Replica::Counters& rc = cluster_->replica().counters();
    const cluster::Handoff::Counters& ho = cluster_->handoff().counters();
    const cluster::AntiEntropy::Counters& ae = cluster_->anti_entropy().counters();
    const cluster::HintFloors::Counters& hf = cluster_->hint_floors().counters();
    const PeerTransportCounters& pt = cluster_->transport().counters();
    const ClusterNodeCounters& cn = cluster_->counters();
    const cluster::PlacementKeeperCounters& pk = cluster_->keeper().counters();
    const std::pair<const char*, uint64_t> rows[] = {
        {"requests", counters_.requests},
        {"puts", counters_.puts},
        {"gets", counters_.gets},
        {"deletes", counters_.deletes},
        {"get_hits", counters_.get_hits},
        {"get_misses", counters_.get_misses},
        {"invalid_requests", counters_.invalid_requests},
        {"errors", counters_.api_errors + (resp_ ? resp_->counters().error_replies : 0)},
        {"api_errors", counters_.api_errors},
        {"resp_errors", resp_ ? resp_->counters().error_replies : 0},
        {"writes_in_flight", requests_in_flight()},
        {"clock_offset_rejected", clock_guard_.counters().clock_offset_rejected},
        {"feed_events", counters_.feed_events},
        {"expired_events", counters_.expired_events},
        {"members_requests", counters_.members_requests},
        {"resp_connections", resp_ ? resp_->connections() : 0},
        {"resp_connections_received", resp_ ? resp_->counters().connections_received : 0},
        {"resp_commands", resp_ ? resp_->counters().commands : 0},
        {"resp_protocol_errors", resp_ ? resp_->counters().protocol_errors : 0},
        {"resp_connections_paused", resp_ ? resp_->paused_connections() : 0},
        {"resp_pauses", resp_ ? resp_->counters().pauses : 0},
        {"resp_clients_evicted", resp_ ? resp_->counters().clients_evicted : 0},
        {"resp_held_bytes", resp_ ? resp_->held_bytes() : 0},
        {"inflight_bytes", inflight_bytes()},
        // Refused at the door for max-inflight-bytes, or by the coordinator for its bounds.
        {"requests_shed", counters_.requests_shed + co.overloaded},
        {"memory_releases", releaser_.releases()},
        {"feed_connections", feed_->connections()},
        {"feed_subscriptions", feed_->subscriptions()},
        {"feed_subscribers_dropped", feed_->counters().subscribers_dropped},
        {"feed_connections_refused", feed_->counters().connections_refused},
        {"feed_bad_subscriptions", feed_->counters().bad_subscriptions},
        {"feed_queued_bytes", feed_->queued_bytes()},
        {"keys", s.keys},
        {"read_cache_bytes", applied_->cache().bytes()},
        {"read_cache_entries", applied_->cache().entries()},
        {"read_cache_hits", applied_->cache().hits()},
        {"read_cache_misses", applied_->cache().misses()},
        {"coordinator_reads", co.reads},
        {"coordinator_writes", co.writes},
        {"coordinator_mutations", co.mutations},
        {"coordinator_forwarded", co.forwarded},
        {"coordinator_timeouts", co.timeouts},
        {"coordinator_unavailable", co.unavailable},
        {"coordinator_overloaded", co.overloaded},
        {"coordinator_repairs", co.repairs},
        {"coordinator_hints", co.hints},
        {"coordinator_replies_dropped", co.replies_dropped},
        {"replica_writes", rc.writes},
        {"replica_writes_applied", rc.writes_applied},
        {"replica_hints_written", rc.hints_written},
        {"replica_reads", rc.reads},
        {"replica_refused_versions", rc.refused_versions},
        {"replica_overloaded", rc.overloaded},
        {"replica_store_errors", rc.store_errors},
        {"replica_hints_refused", rc.hints_refused},
        {"handoff_sent", ho.sent},
        {"handoff_delivered", ho.delivered},
        {"handoff_delivered_bytes", ho.delivered_bytes},
        {"handoff_refused", ho.refused},
        {"handoff_rejected", ho.rejected},
        {"handoff_timeouts", ho.timeouts},
        {"handoff_removed", ho.removed},
        {"handoff_remove_failures", ho.remove_failures},
        {"handoff_read_failures", ho.read_failures},
        {"hints_past_window", ho.window_refusals},
        {"hints_past_max_bytes", ho.store_refusals},
        {"repair_marks", cluster_->handoff().marks().size()},
        {"repair_asks_sent", ho.repair_asks_sent},
        {"repair_asks_cleared", ho.repair_asks_cleared},
        {"repair_asks_failed", ho.repair_asks_failed},
        {"hints_rehomed", ho.rehomed},
        {"hints_rehome_sent", ho.rehome_sent},
        {"hints_rehome_held", ho.rehome_held},
        {"anti_entropy_rounds", ae.rounds_started},
        {"anti_entropy_rounds_in_sync", ae.rounds_in_sync},
        {"anti_entropy_rounds_repaired", ae.rounds_repaired},
        {"anti_entropy_rounds_failed", ae.rounds_failed},
        {"anti_entropy_pulled", ae.pulled},
        {"anti_entropy_pushed", ae.pushed},
        {"anti_entropy_skipped", ae.skipped},
        {"anti_entropy_bytes", ae.bytes},
        {"anti_entropy_answered", ae.answered},
        {"hint_floor_reports_sent", hf.reports_sent},
        {"hint_floor_reports_received", hf.reports_received},
        // 1 while a member that never reported since this node started holds every purge back.
        {"purges_held", cluster_->hint_floors().hold(clock_.mono_now()) == 0 ? 1u : 0u},
        {"repair_marks_write_failures", cluster_->counters().marks_write_failures},
        {"peer_batches_sent", pt.batches_sent},
        {"peer_bytes_sent", pt.bytes_sent},
        {"peer_batches_received", pt.batches_received},
        {"peer_bytes_received", pt.bytes_received},
        {"peer_send_failed", pt.send_failed},
        {"peer_batches_held", pt.batches_held},
        {"peer_held_sent", pt.held_sent},
        {"peer_held_dropped", pt.held_dropped},
        {"peer_batches_malformed", cn.batches_malformed},
        {"peer_messages_dropped", cn.messages_dropped},
        {"peer_messages_local", cn.messages_local},
        {"reads_local", cn.reads_local},
        {"placement_epoch", cluster_->placement().epoch()},
        {"placement_members", cluster_->placement().members().size()},
        {"placement_adopted", pk.adopted},
        {"placement_tables_refused", pk.tables_refused},
        {"hand_overs_proposed", pk.hand_overs_proposed},
        {"hand_overs_committed", pk.hand_overs_committed},
        {"hand_overs_cancelled", pk.hand_overs_cancelled},
        {"hand_over_pending", cluster_->keeper().pending().has_value() ? 1u : 0u},
        {"partitions_dropped", cn.partitions_dropped},
        {"store_puts_applied", s.puts_applied},
        {"store_deletes_applied", s.deletes_applied},
        {"store_writes_ignored", s.writes_ignored},
        {"store_expired", s.expired},
        {"store_tombstones_purged", s.tombstones_purged},
        {"store_writes_below_horizon", s.writes_below_horizon},
        {"store_commit_groups", s.commit_groups},
        {"store_group_writes", s.group_writes},
        {"store_staged_writes", s.staged},
        {"store_apply_batches", s.apply_batches},
        {"store_apply_failures", s.apply_failures},
        {"store_checkpoints", s.checkpoints},
        {"store_bytes_on_disk", s.bytes_on_disk},
        {"store_disk_full", s.disk_full ? 1u : 0u},
        {"store_disk_full_events", s.disk_full_events},
        {"store_disk_reserve_bytes", s.disk_reserve_bytes},
        {"store_hints", s.hints},
        {"store_hint_bytes", s.hint_bytes},
        {"gossip_members_alive", members.alive},
        {"gossip_members_suspect", members.suspect},
        {"gossip_members_dead", members.dead},
        {"gossip_members_left", members.left},
        {"gossip_members_known", members.known},
        {"gossip_incarnation", swim_->incarnation()},
        {"gossip_health_score", swim_->health_score()},
        {"gossip_probes", g.probes_sent},
        {"gossip_indirect_probes", g.indirect_probes_sent},
        {"gossip_acks", g.acks_received},
        {"gossip_nacks", g.nacks_received},
        {"gossip_suspicions", g.suspicions},
        {"gossip_refutations", g.refutations},
        {"gossip_false_alarms", g.false_alarms},
        {"gossip_dead_declared", g.dead_declared},
        {"gossip_push_pulls", g.push_pulls},
        {"gossip_messages_in", g.messages_in},
        {"gossip_messages_out", g.messages_out},
        {"gossip_messages_dropped", g.messages_dropped},
        {"gossip_send_dropped", t.send_dropped},
        {"gossip_receive_malformed", t.receive_malformed},
        {"gossip_peer_sockets", gossip_transport_->peers()},
        {"gossip_peer_sockets_opened", t.peers_opened},
        {"gossip_peer_opens_deferred", t.peers_deferred},
        {"gossip_claims_rejected", g.claims_rejected},
        {"gossip_members_refused", g.members_refused},
        {"gossip_dropped_partitions", g.dropped_partitions},
        {"gossip_joins_not_logged", join_log_.suppressed_total()},
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

  // What a feed subscriber missed since its cursor, across partitions, prefix-filtered
  // (docs/protocol.md, "Change feed"). Bounded per request: entries read, events and bytes
  // sent; past a bound the reply says `more` and where each partition was left.
  void handle_changes_since(const ReplyTo& to, const pb::Request& req) {
    // Entries read per request, sent or not: bounds the loop-thread time one request of a
    // subscriber with narrow prefixes costs (20 000 entries took 45 ms, 5 000 take 6 ms);
    // a subscriber further behind pages.
    constexpr size_t kScanMax = 5'000;
    // Reply bytes, past which no further event is added (the first always is): far under
    // the client's default reply bound (64 MiB), large enough for whole pages of events.
    constexpr size_t kReplyBytesMax = 8 * 1024 * 1024;
    // Point reads telling an overwritten put from an empty value (superseded()): about 9 us
    // each on the loop thread, so fewer than the entries read (1 000: 9 ms).
    constexpr size_t kSupersededChecksMax = 1'000;
    const auto& since = req.changes_since();
    const size_t max_events = since.max_events() == 0 ? 1000 : since.max_events();
    const WallTime now = clock_.wall_now();
    auto wanted = [&](std::string_view key) {
      if (since.prefixes().empty()) return true;
      for (const std::string& prefix : since.prefixes()) {
        if (key.starts_with(prefix)) return true;
      }
      return false;
    };
    pb::Response resp;
    resp.set_id(req.id());
    auto* body = resp.mutable_changes_since();
    size_t scanned = 0;
    size_t checks = 0;
    size_t bytes = 0;
    bool full = false;
    for (uint32_t p = 0; p < store_->partitions(); ++p) {
      const uint64_t last = store_->last_seq(p);
      pb::PartitionPosition* position = body->add_positions();
      position->set_partition(p);
      position->set_last_seq(last);
      auto from_it = since.from_seq().find(p);
      if (from_it == since.from_seq().end()) {  // not asked for: from now
        position->set_through_seq(last);
        continue;
      }
      const uint64_t from = std::max<uint64_t>(from_it->second, 1);
      uint64_t through = from - 1;
      bool first_read = true;
      while (!full && through < last) {
        const size_t page = std::min<size_t>(1000, kScanMax - scanned);
        auto events = store_->read_changes(p, through + 1, page);
        if (!events.ok()) {
          reply_error(to, req.id(), events.status());
          return;
        }
        if (events->empty()) break;
        if (first_read && events->front().seq > through + 1) {
          position->set_lost_to(events->front().seq - 1);  // trimmed by changelog-keep
        }
        first_read = false;
        for (const store::ChangeEvent& e : *events) {
          const bool check = e.op == ChangeOp::kPut && e.value.empty() && wanted(e.key);
          if (check && ++checks > kSupersededChecksMax) {
            full = true;
            break;
          }
          if (wanted(e.key) && !superseded(e, now)) {
            if (body->events_size() >= static_cast<int>(max_events) ||
                (body->events_size() > 0 &&
                 bytes + e.key.size() + e.value.size() > kReplyBytesMax)) {
              full = true;
              break;
            }
            bytes += e.key.size() + e.value.size() + 64;
            fill_event(body->add_events(), e);
          }
          through = e.seq;
          if (++scanned >= kScanMax) full = true;
          if (full) break;
        }
      }
      position->set_through_seq(through);
      if (through < last) body->set_more(true);
    }
    send_reply(to, resp);
  }

  // A logged put that a later entry of the log overwrote comes back from read_changes
  // without its value, which an empty value cannot be told from: such a put is current only
  // if the stored record still has its version. Superseded ones are not sent (the later
  // entry is).
  bool superseded(const store::ChangeEvent& e, WallTime now) {
    if (e.op != ChangeOp::kPut || !e.value.empty()) return false;
    Result<store::Record> stored = store_->get(e.key, now);
    return !stored.ok() || stored->version != e.version;
  }

  void reply_error(const ReplyTo& to, uint64_t id, const Status& status) {
    if (status.code() != Code::kNotFound) ++counters_.api_errors;
    if (status.code() != Code::kNotFound && status.code() != Code::kInvalidArgument) {
      EDGEKV_LOG(kWarning) << "request " << id << " failed: " << status.to_string();
    }
    pb::Response resp;
    resp.set_id(id);
    resp.set_code(to_pb(status.code()));
    resp.set_message(status.message());
    send_reply(to, resp);
  }

  void send_reply(const ReplyTo& to, const pb::Response& resp) {
    loop_.touch();
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
    ++counters_.feed_events;
    if (!feed_->has_subscriptions()) return;  // no one to encode it for
    pb::ChangeEvent msg;
    fill_event(&msg, event);
    feed_->publish(event.key, msg.SerializeAsString());
  }

  Status bind_feed() {
    FeedOptions options;
    options.max_key_bytes = config_.max_key_bytes;
    options.max_connections = config_.feed_max_connections;
    options.max_subscriptions_per_connection = config_.feed_max_subscriptions_per_connection;
    options.max_subscriptions = config_.feed_max_subscriptions;
    options.subscriber_buffer_bytes = config_.feed_subscriber_buffer_bytes;
    options.buffer_bytes_max = config_.feed_buffer_bytes_max;
    options.hash_seed = origin_of(config_.node_id) ^ static_cast<uint64_t>(clock_.wall_now().ms);
    auto feed = FeedServer::listen(config_.feed_endpoint, options, clock_);
    if (!feed.ok()) return feed.status();
    feed_ = std::move(feed).value();
    return {};
  }

  // ------------------------------------------------------------------ completions, timers

  void handle_completions() {
    for (Completion& c : completions_.drain()) {
      if (auto* posted = std::get_if<PostedWork>(&c)) {
        posted->work();
      } else if (auto* sweep = std::get_if<StoreSweepDone>(&c)) {
        on_sweep_done(std::move(*sweep));
      }
    }
  }

  void on_sweep_done(StoreSweepDone done) {
    sweep_in_flight_ = false;
    if (!done.result.ok()) {
      EDGEKV_LOG(kWarning) << "expiry sweep failed: " << done.result.status().to_string();
      return;
    }
    for (auto& event : *done.result) {
      ++counters_.expired_events;
      applied_->apply(std::move(event), cluster::ChangeSource::kExpiry);
    }
    // A full batch means more rows are due: sweep again on the next turn instead of
    // waiting a whole interval (bounded work per turn, no unbounded backlog).
    if (done.result->size() >= config_.ttl_sweep_batch_max) next_sweep_ = clock_.mono_now();
  }

  void start_sweep(MonoTime now) {
    if (sweep_in_flight_ || stopping_) return;
    next_sweep_ = now + milliseconds(config_.ttl_sweep_interval_ms);
    sweep_in_flight_ = true;
    store_->sweep(
        clock_.wall_now(), config_.ttl_sweep_batch_max,
        [queue = &completions_](auto result) { queue->push(StoreSweepDone{std::move(result)}); });
  }

  std::string status_line() const {
    std::string members;
    if (membership_) {
      cluster::MembershipCounts counts = membership_->counts();
      members = "cluster " + config_.cluster_name + ": " + std::to_string(counts.alive) + " of " +
                std::to_string(counts.known) + " members alive" +
                (swim_->joined() ? "" : " (joining)") + "; ";
    }
    return "serving " + config_.client_endpoint + "; " + members +
           std::to_string(counters_.requests) + " requests, " +
           std::to_string(cluster_ ? requests_in_flight() : 0) + " requests in flight";
  }

  // ------------------------------------------------------------------ gossip

  Status bind_gossip() {
    GossipTransportOptions options;
    options.self_id = config_.node_id;
    options.endpoint = config_.gossip_endpoint;
    options.idle_close = std::max(milliseconds(gossip_options_.reap_after), kGossipIdleCloseMin);
    // The largest datagram the machine sends is a full-state push-pull.
    options.max_message_bytes = int64_t{gossip_options_.max_push_pull_bytes} + 64 * 1024;
    auto transport = GossipTransport::open(context_, std::move(options));
    if (!transport.ok()) return transport.status();
    gossip_transport_ = std::move(transport).value();
    gossip::NodeInfo self;
    self.id = config_.node_id;
    self.datacenter = config_.datacenter;
    self.endpoints.client = config_.client_endpoint;
    self.endpoints.peer = config_.peer_endpoint;
    self.endpoints.feed = config_.feed_endpoint;
    self.endpoints.gossip = config_.gossip_endpoint;
    // Only the member shuffles and helper choices depend on the seed; no two nodes, and
    // no two runs of one node, should shuffle alike.
    const uint64_t seed = origin_of(config_.node_id) ^ static_cast<uint64_t>(clock_.wall_now().ms);
    swim_ = std::make_unique<gossip::Swim>(std::move(self), gossip_options_, seed);
    membership_ = std::make_unique<cluster::Membership>(config_.cluster_name, config_.node_id);
    return {};
  }

  void start_gossip(MonoTime now) {
    swim_->start(now, starting_incarnation(clock_));
    membership_->reset(swim_->members());
    cluster_->start(now);
    self_incarnation_ = swim_->incarnation();
    if (config_.seeds.empty()) {
      EDGEKV_LOG(kNotice) << "gossip: starting cluster " << config_.cluster_name << " as "
                          << config_.node_id << " (datacenter " << config_.datacenter << ") on "
                          << config_.gossip_endpoint << ", incarnation " << swim_->incarnation();
    } else {
      std::string seeds;
      for (const std::string& seed : config_.seeds) seeds += (seeds.empty() ? "" : ",") + seed;
      EDGEKV_LOG(kNotice) << "gossip: joining cluster " << config_.cluster_name << " through "
                          << seeds << " as " << config_.node_id << " (datacenter "
                          << config_.datacenter << ") on " << config_.gossip_endpoint
                          << ", incarnation " << swim_->incarnation();
    }
    drive_gossip(now);
  }

  // Runs the machine's timers when due and carries out what it asks for.
  void drive_gossip(MonoTime now) {
    if (now >= swim_->next_deadline()) swim_->tick(now);
    for (const gossip::Outgoing& message : swim_->take_messages()) {
      gossip_transport_->send(message, now);
      loop_.touch();
    }
    std::vector<gossip::MemberEvent> events = swim_->take_events();
    if (!events.empty()) {
      const size_t alive_before = membership_->counts().alive;
      for (const gossip::MemberEvent& event : events) on_member_event(event);
      if (!stopping_ && membership_->counts().alive != alive_before) status_stale_ = true;
    }
    // sd_notify blocks when the service manager does not read: members joining and dying
    // by the thousand (made-up ones) must not turn into as many notifications.
    if (status_stale_ && now >= next_member_status_) {
      status_stale_ = false;
      next_member_status_ = now + kMemberStatusMinInterval;
      notifier_.status(status_line());
    }
    if (swim_->incarnation() != self_incarnation_) {
      self_incarnation_ = swim_->incarnation();
      for (const gossip::Member& member : swim_->members()) {
        if (member.info.id == config_.node_id) membership_->set_self(member);
      }
    }
    if (!joined_logged_ && swim_->joined()) {
      joined_logged_ = true;
      cluster::MembershipCounts counts = membership_->counts();
      EDGEKV_LOG(kNotice) << "gossip: member of cluster " << config_.cluster_name << ", "
                          << counts.alive << " of " << counts.known << " members alive";
    }
    if (uint64_t more = join_log_.take_suppressed(now); more > 0) {
      EDGEKV_LOG(kNotice) << "gossip: " << more << " more members joined (not logged by name)";
    }
    log_partitions_mismatch(now);
    gossip_transport_->maintain(now);
  }

  void log_partitions_mismatch(MonoTime now) {
    const uint64_t dropped = swim_->counters().dropped_partitions;
    const gossip::PartitionsMismatch* last = swim_->partitions_mismatch();
    if (dropped == partitions_mismatch_logged_ || last == nullptr ||
        now < next_partitions_mismatch_log_) {
      return;
    }
    EDGEKV_LOG(kError) << "gossip: refusing node " << last->id << " (" << last->endpoint
                       << "): it has " << last->partitions << " partitions, this node "
                       << config_.partitions << "; partitions must agree cluster-wide ("
                       << dropped - partitions_mismatch_logged_ << " messages dropped)";
    partitions_mismatch_logged_ = dropped;
    next_partitions_mismatch_log_ = now + kPartitionsMismatchLogInterval;
  }

  void on_member_event(const gossip::MemberEvent& event) {
    const gossip::Member& m = event.member;
    switch (event.kind) {
      case gossip::MemberEvent::Kind::kJoined:
        if (!join_log_.allow(clock_.mono_now())) break;
        EDGEKV_LOG(kNotice) << "gossip: member " << m.info.id << " joined (datacenter "
                            << m.info.datacenter << ", gossip " << m.info.endpoints.gossip
                            << ", incarnation " << m.incarnation << ")";
        break;
      case gossip::MemberEvent::Kind::kUpdated:
        EDGEKV_LOG(kInfo) << "gossip: member " << m.info.id << " updated its metadata"
                          << " (incarnation " << m.incarnation << ")";
        break;
      case gossip::MemberEvent::Kind::kSuspect:
        EDGEKV_LOG(kWarning) << "gossip: member " << m.info.id
                             << " is suspected of having failed (incarnation " << m.incarnation
                             << ")";
        break;
      case gossip::MemberEvent::Kind::kAlive:
        EDGEKV_LOG(kNotice) << "gossip: member " << m.info.id
                            << " refuted the suspicion and is alive (incarnation " << m.incarnation
                            << ")";
        break;
      case gossip::MemberEvent::Kind::kDead:
        EDGEKV_LOG(kWarning) << "gossip: member " << m.info.id << " declared dead (incarnation "
                             << m.incarnation << ")";
        break;
      case gossip::MemberEvent::Kind::kLeft:
        EDGEKV_LOG(kNotice) << "gossip: member " << m.info.id << " left the cluster";
        break;
      case gossip::MemberEvent::Kind::kReaped:
        EDGEKV_LOG(kInfo) << "gossip: member " << m.info.id << " forgotten";
        gossip_transport_->forget(m.info.endpoints.gossip);
        break;
    }
    membership_->apply(event);
    // Replication follows gossip's view: who is up (fallbacks cover the rest), where each
    // member's peer endpoint is, and who should hear of this node's placement table.
    if (event.kind == gossip::MemberEvent::Kind::kReaped) {
      cluster_->on_member_forgotten(m.info.id, clock_.mono_now());
    } else {
      cluster_->on_member(m, clock_.mono_now());
    }
  }

  // The Redis listener's keyspace: the coordinator, with the node's default consistency
  // and strict-quorum, for reads as for writes (RESP has no way to ask for others).
  class CoordinatorKeyspace final : public RespKeyspace {
   public:
    explicit CoordinatorKeyspace(ServerImpl& server) : server_(server) {}
    void get(std::string_view key, ReadDone done) override {
      server_.cluster_->get(key, server_.read_options(), server_.clock_.mono_now(),
                            std::move(done));
      server_.deliver_local();
    }
    void put(std::string_view key, std::string value, WallTime expiry, WriteDone done) override {
      server_.cluster_->coordinator().put(key, std::move(value), expiry, server_.write_options(),
                                          server_.clock_.mono_now(), std::move(done));
      server_.deliver_local();
    }
    void del(std::string_view key, WriteDone done) override {
      server_.cluster_->coordinator().del(key, server_.write_options(), server_.clock_.mono_now(),
                                          std::move(done));
      server_.deliver_local();
    }
    void mutate(std::string_view key, cluster::Mutation m, MutateDone done) override {
      server_.cluster_->coordinator().mutate(key, std::move(m), server_.write_options(),
                                             server_.clock_.mono_now(), std::move(done));
      server_.deliver_local();
    }
    WallTime wall_now() const override { return server_.clock_.wall_now(); }
    // The coordinator's requests (the messages to the replicas share their records), and the
    // replica side's writes twice: the store's copy of each, which the replica makes when it
    // takes the write, and the copy the store stages of a value it does not compress.
    uint64_t inflight_bytes() const override {
      return server_.cluster_->coordinator().request_bytes() +
             2 * server_.cluster_->replica().inflight_bytes();
    }

   private:
    ServerImpl& server_;
  };

  // Whether the leave is done: announced, or given up on at the leave timeout.
  bool gossip_done() const { return swim_->left() || clock_.mono_now() >= leave_deadline_; }

  Config config_;
  const Clock& clock_;
  int stop_fd_;
  // The node's clock, and the check every version a peer sends passes before it folds in.
  HybridClock hlc_;
  cluster::ClockGuard clock_guard_;
  // Before store_: the store's writer threads push into it until the store is closed.
  CompletionQueue completions_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<AppliedChanges> applied_;
  std::unique_ptr<RespKeyspace> keyspace_;  // the Redis listener's view of cluster_
  std::unique_ptr<RespServer> resp_;        // after keyspace_: it refers to it; may be null
  RequestLimits limits_;
  zmq::context_t context_;
  zmq::socket_t router_;
  std::unique_ptr<FeedServer> feed_;
  // After context_: the transport's sockets must be closed before the context is.
  std::unique_ptr<GossipTransport> gossip_transport_;
  // After store_, applied_ and context_: it refers to the first two, and its sockets must
  // be closed before the context is.
  std::unique_ptr<ClusterNode> cluster_;
  gossip::Options gossip_options_;
  std::unique_ptr<gossip::Swim> swim_;
  std::unique_ptr<cluster::Membership> membership_;
  uint64_t self_incarnation_ = 0;
  bool joined_logged_ = false;
  cluster::LogBudget join_log_{kJoinLogsPerWindow, kJoinLogWindow};
  uint64_t partitions_mismatch_logged_ = 0;  // dropped_partitions when last logged
  MonoTime next_partitions_mismatch_log_{};
  bool status_stale_ = false;  // the live member count changed since the last STATUS=
  MonoTime next_member_status_{};
  MonoTime leave_deadline_ = MonoTime::max();
  EventLoop loop_{clock_};
  EventLoop::Id client_registration_ = 0;  // disabled once stopping, like the stop signal's
  EventLoop::Id stop_registration_ = 0;
  std::optional<store::WakeBatch> wake_batch_;  // open for the length of each loop turn
  ServiceNotifier notifier_;
  MonoTime started_;
  MonoTime next_sweep_{};
  MonoTime next_status_{};
  std::optional<MonoTime> next_watchdog_;
  MemoryReleaser releaser_;
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
