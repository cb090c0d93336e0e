#include "daemon/cluster_node.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

#include "cluster/mutation.h"
#include "common/log.h"

namespace edgekv::daemon {
namespace {

// Messages handed over in process per flush, at most: self-addressed messages can beget
// more (a request to the own replica, its reply), but never without end; the bound turns a
// bug into a log line instead of a wedged loop.
constexpr int kLocalRoundsMax = 64;
// Marks the read requests of inspections (kvcli replicas); the low bits are the
// inspection's id times kInspectFanoutMax plus the replica's index.
constexpr uint64_t kInspectBit = uint64_t{1} << 63;
constexpr uint64_t kInspectFanoutMax = 64;

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::io_error("cannot read " + path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) return Status::io_error("cannot read " + path.string());
  return bytes.str();
}

// Writes `bytes` to `path` atomically: a temporary file, fsync'd, renamed over it, and the
// directory fsync'd, so a crash leaves the old table or the new one, never a torn file.
Status write_file_atomically(const std::filesystem::path& path, const std::string& bytes) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Status::io_error("cannot write " + tmp.string() + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::io_error("cannot sync " + tmp.string() + ": " + std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::io_error("cannot rename " + tmp.string() + ": " + std::strerror(errno));
  }
  int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

// Where a hand-over's pending table is kept, next to the placement file.
std::filesystem::path pending_file_of(const std::filesystem::path& placement_file) {
  return placement_file.string() + ".pending";
}

bool is_replica_request(const cluster::PeerMessage& m) {
  return std::holds_alternative<cluster::WriteRequest>(m) ||
         std::holds_alternative<cluster::ReadRequest>(m);
}

bool is_placement(const cluster::PeerMessage& m) {
  return std::holds_alternative<cluster::PlacementDigest>(m) ||
         std::holds_alternative<cluster::PlacementFetch>(m) ||
         std::holds_alternative<cluster::PlacementTable>(m);
}

}  // namespace

ClusterNode::ClusterNode(ClusterNodeOptions options, const Clock& clock, HybridClock& hlc)
    : options_(std::move(options)), clock_(clock), hlc_(hlc) {}

ClusterNode::~ClusterNode() = default;

Result<std::unique_ptr<ClusterNode>> ClusterNode::open(
    zmq::context_t& context, ClusterNodeOptions options, const Clock& clock, HybridClock& hlc,
    cluster::ClockGuard& guard, store::Store& store, Post post, cluster::ChangeHook change_hook,
    uint64_t seed, cluster::Replica::ReadStored read_stored) {
  EDGEKV_RETURN_IF_ERROR(options.limits.check());
  std::unique_ptr<ClusterNode> node(new ClusterNode(std::move(options), clock, hlc));
  const ClusterNodeOptions& o = node->options_;

  auto transport = PeerTransport::open(context, o.transport);
  if (!transport.ok()) return transport.status();
  node->transport_ = std::move(transport).value();

  std::optional<cluster::Placement> placement;
  std::error_code ec;
  if (!o.placement_file.empty() && std::filesystem::exists(o.placement_file, ec)) {
    auto bytes = read_file(o.placement_file);
    if (!bytes.ok()) return bytes.status();
    auto decoded = cluster::Placement::decode(*bytes);
    if (!decoded.ok()) {
      return Status::corruption("placement file " + o.placement_file.string() +
                                " is damaged: " + decoded.status().message() +
                                "; move it away to start from an empty table");
    }
    if (decoded->partitions() != o.partitions ||
        decoded->replication_factor() != o.replication_factor) {
      return Status::failed_precondition(
          "placement file " + o.placement_file.string() + " holds " +
          std::to_string(decoded->partitions()) + " partitions and replication factor " +
          std::to_string(decoded->replication_factor()) +
          ", but partitions=" + std::to_string(o.partitions) +
          " and replication-factor=" + std::to_string(o.replication_factor) + " are configured");
    }
    placement = std::move(decoded).value();
  } else {
    auto fresh = cluster::Placement::create(o.partitions, o.replication_factor, {});
    if (!fresh.ok()) return fresh.status();
    placement = std::move(fresh).value();
  }
  // The pending table of a hand-over in progress when the node stopped, if any.
  std::optional<cluster::Placement> pending;
  const std::filesystem::path pending_file = pending_file_of(o.placement_file);
  if (!o.placement_file.empty() && std::filesystem::exists(pending_file, ec)) {
    auto bytes = read_file(pending_file);
    if (!bytes.ok()) return bytes.status();
    auto decoded = cluster::Placement::decode(*bytes);
    // A damaged or stale one is no loss: the peers hold the hand-over too.
    if (decoded.ok()) pending = std::move(decoded).value();
  }

  ClusterNode* self = node.get();
  node->view_ = std::make_unique<cluster::PlacementView>(
      o.node_id, *placement, [self](const cluster::NodeId& id) { return self->is_up(id); });
  node->keeper_ = std::make_unique<cluster::PlacementKeeper>(o.node_id, std::move(*placement),
                                                             o.keeper, seed, std::move(pending));
  node->view_->set_joining(node->keeper_->joining());
  node->note_pending_homes();
  node->store_ = &store;
  std::vector<cluster::RepairMark> marks;
  if (!o.marks_file.empty() && std::filesystem::exists(o.marks_file, ec)) {
    auto bytes = read_file(o.marks_file);
    if (!bytes.ok()) return bytes.status();
    auto decoded = cluster::decode_marks(*bytes);
    if (!decoded.ok()) {
      return Status::corruption("repair marks file " + o.marks_file.string() +
                                " is damaged: " + decoded.status().message() +
                                "; move it away to start without marks (anti-entropy compares "
                                "every partition anyway)");
    }
    marks = std::move(decoded).value();
  }

  node->coordinator_ = std::make_unique<cluster::Coordinator>(*node->view_, hlc, o.coordinator);
  node->handoff_ = std::make_unique<cluster::Handoff>(
      o.node_id, store, clock, o.handoff, post,
      [self](std::string_view key) { return self->view_->partition_of(key); },
      // Its own clients and the replica writes of others come first.
      [self] {
        const ClusterNodeOptions& opts = self->options_;
        return self->coordinator_->requests() >= opts.coordinator.max_requests / 2 ||
               self->replica_->inflight_writes() >= opts.replica.max_inflight_writes / 2;
      });
  node->handoff_->load_marks(std::move(marks));
  node->anti_entropy_ = std::make_unique<cluster::AntiEntropy>(
      o.node_id, store, clock, o.anti_entropy,
      // A round compared the partition with the peer: a mark of hints it could not keep
      // for that peer there is settled.
      [self](const cluster::NodeId& peer, uint32_t partition) {
        self->handoff_->clear_mark(peer, partition);
      });
  // Reports each second (cluster/hint_floors.h says why); a hint taken after a report was
  // stamped at most the request timeout and the clocks' offset before it.
  cluster::HintFloorOptions floors;
  floors.margin = o.anti_entropy.horizon_margin + o.coordinator.request_timeout;
  floors.tombstone_grace = o.anti_entropy.tombstone_grace;
  node->floors_ = std::make_unique<cluster::HintFloors>(
      o.node_id, clock, floors,
      [self](const cluster::NodeId& owner) { return self->oldest_hint_for(owner); },
      [&hlc] { return hlc.now(); });
  node->hand_over_ = std::make_unique<cluster::HandOver>(
      o.node_id, *node->keeper_, *node->anti_entropy_, clock,
      [self](const cluster::NodeId& id) { return self->is_up(id); },
      [self](MonoTime t) { return self->coordinator_->running_begun_by(t); });
  node->replica_ = std::make_unique<cluster::Replica>(
      o.node_id, store, o.replica, std::move(post),
      [&guard](const Version& version, bool relayed) {
        return guard.observe(version, relayed ? cluster::ClockGuard::Stamp::kRelayed
                                              : cluster::ClockGuard::Stamp::kFresh);
      },
      std::move(change_hook), std::move(read_stored));
  node->replica_->set_hint_gate(cluster::Replica::HintGate{
      [self](const cluster::NodeId& owner, std::string_view key) {
        return self->handoff_->admit(owner, key);
      },
      [self](const cluster::NodeId& owner, std::string_view key, const Status& why) {
        self->handoff_->refused(owner, key, why);
      }});
  return node;
}

void ClusterNode::get(std::string_view key, cluster::RequestOptions options, MonoTime now,
                      cluster::Coordinator::ReadDone done) {
  // A partition has min(members, N) home replicas: with more than one, nothing to look up.
  const cluster::Placement& p = view_->placement();
  const uint32_t partition = view_->partition_of(key);
  const bool sole_home = std::min<size_t>(p.members().size(), p.replication_factor()) == 1 &&
                         p.is_home(partition, options_.node_id) &&
                         view_->joining(partition).empty();
  if (!sole_home || coordinator_->busy(key)) {
    coordinator_->get(key, options, now, std::move(done));
    return;
  }
  ++counters_.reads_local;
  const WallTime wall = clock_.wall_now();
  Result<store::Record> stored = replica_->read_stored(key, wall);
  // As the coordinator answers: a tombstone, or a value expired by now, is no key.
  if (stored.ok() && !cluster::is_live(*stored, wall)) {
    stored = Status::not_found("key not found");
  }
  done(std::move(stored));
}

void ClusterNode::start(MonoTime now) {
  keeper_->start(now);
  if (keeper_->take_changed()) persist_placement();
  // Hints kept for owners no table lists (removed while this node was down, or before it
  // re-homed them) go to their partitions' home replicas.
  handoff_->set_placement(keeper_->placement(), keeper_->pending(), now);
  route(keeper_->take_messages());
  update_homes(now);
}

void ClusterNode::update_homes(MonoTime now) {
  // During a hand-over the partitions' takers compare with their home replicas too: that
  // is how they stream, and their tombstone horizons hold purges back until they synced.
  const cluster::Placement& p = view_->placement();
  std::vector<std::vector<cluster::NodeId>> homes(p.partitions());
  for (uint32_t partition = 0; partition < p.partitions(); ++partition) {
    homes[partition] = view_->home(partition);
    for (cluster::NodeId& j : view_->joining(partition)) homes[partition].push_back(std::move(j));
  }
  anti_entropy_->set_joining(keeper_->joining());
  anti_entropy_->set_homes(homes, now);
  std::vector<cluster::NodeId> members = p.members();
  if (keeper_->pending().has_value()) {
    for (const cluster::NodeId& m : keeper_->pending()->members()) members.push_back(m);
  }
  floors_->set_members(members, now);
  update_hold(now);
  route_anti_entropy();
}

Result<Version> ClusterNode::oldest_hint_for(const cluster::NodeId& owner) {
  return cluster::oldest_hint(*store_, owner, handoff_->rehomed_owners(), keeper_->placement(),
                              keeper_->pending());
}

void ClusterNode::update_hold(MonoTime now) { anti_entropy_->set_purge_hold(floors_->hold(now)); }

void ClusterNode::repair(std::optional<uint32_t> partition, MonoTime now, MonoTime deadline,
                         RepairDone done) {
  // Each one holds its pairs until they finished: a bound on what clients can pile up.
  constexpr size_t kMaxPendingRepairs = 16;
  if (repairs_.size() >= kMaxPendingRepairs) {
    return done(Status::overloaded(std::to_string(repairs_.size()) +
                                   " repairs are running on this node; try again when they "
                                   "finished"));
  }
  const cluster::Placement& p = view_->placement();
  std::vector<uint32_t> partitions;
  if (partition.has_value()) {
    if (*partition >= p.partitions()) {
      return done(Status::invalid_argument("partition " + std::to_string(*partition) +
                                           " is out of range (the ring has " +
                                           std::to_string(p.partitions()) + ")"));
    }
    if (!p.is_home(*partition, options_.node_id)) {
      return done(Status::failed_precondition(
          options_.node_id + " is not a home replica of partition " + std::to_string(*partition) +
          "; ask one of its home replicas (kvcli ring)"));
    }
    partitions.push_back(*partition);
  } else {
    for (uint32_t q = 0; q < p.partitions(); ++q) {
      if (p.is_home(q, options_.node_id)) partitions.push_back(q);
    }
  }
  PendingRepair pending;
  pending.deadline = deadline;
  pending.done = std::move(done);
  for (uint32_t q : partitions) {
    Result<size_t> queued = anti_entropy_->repair(q);
    if (!queued.ok()) continue;  // checked above; placement cannot change in between
    for (const cluster::NodeId& peer : view_->home(q)) {
      if (peer != options_.node_id && is_up(peer)) pending.waiting.emplace(q, peer);
    }
  }
  const uint64_t id = next_repair_++;
  repairs_.emplace(id, std::move(pending));
  anti_entropy_->tick(now);
  route_anti_entropy();
  settle_repairs(std::nullopt);
}

void ClusterNode::answer_repair_ask(const cluster::NodeId& from, const cluster::RepairAsk& ask,
                                    MonoTime now) {
  auto answer = [this, from, req = ask.req](Status status) {
    queue({from, cluster::RepairAskReply{req, std::move(status)}});
  };
  const uint32_t partition = ask.partition;
  const cluster::Placement& p = view_->placement();
  if (!p.is_member(from)) {
    // A table that does not hold the asker is not the cluster's yet (this node's data
    // directory was new): its homes say nothing, whatever they say.
    return answer(Status::unavailable("the placement of " + options_.node_id + " does not hold " +
                                      from + " yet"));
  }
  if (partition < p.partitions() && p.is_home(partition, options_.node_id)) {
    const std::vector<cluster::NodeId> homes = view_->home(partition);
    if (std::all_of(homes.begin(), homes.end(),
                    [this](const cluster::NodeId& h) { return h == options_.node_id; })) {
      // No other replica to compare with: nothing any round could bring.
      return answer(Status::ok_status());
    }
  }
  repair(partition, now, now + std::chrono::milliseconds(ask.wait_ms),
         [answer, partition,
          self = options_.node_id](Result<std::vector<cluster::AntiEntropy::RoundResult>> results) {
           if (!results.ok()) return answer(results.status());
           if (results->empty()) {
             return answer(Status::unavailable("no other home replica of partition " +
                                               std::to_string(partition) + " is up as " + self +
                                               " sees it"));
           }
           for (const cluster::AntiEntropy::RoundResult& r : *results) {
             if (!r.status.ok()) {
               return answer(Status(r.status.code(), "the round of partition " +
                                                         std::to_string(partition) + " with " +
                                                         r.peer + ": " + r.status.message()));
             }
           }
           answer(Status::ok_status());
         });
}

void ClusterNode::settle_repairs(std::optional<MonoTime> now) {
  for (cluster::AntiEntropy::RoundResult& r : anti_entropy_->take_forced_results()) {
    if (r.stream) {
      hand_over_->on_result(r, now.value_or(clock_.mono_now()));
      continue;
    }
    for (auto& [id, pending] : repairs_) {
      if (pending.waiting.erase({r.partition, r.peer}) > 0) pending.results.push_back(r);
    }
  }
  for (auto it = repairs_.begin(); it != repairs_.end();) {
    PendingRepair& pending = it->second;
    const bool late = now.has_value() && *now >= pending.deadline;
    if (!pending.waiting.empty() && !late) {
      ++it;
      continue;
    }
    for (const auto& [partition, peer] : pending.waiting) {
      cluster::AntiEntropy::RoundResult r;
      r.partition = partition;
      r.peer = peer;
      r.forced = true;
      r.status = Status::timeout("the round did not finish in time; it goes on");
      pending.results.push_back(std::move(r));
    }
    std::sort(pending.results.begin(), pending.results.end(), [](const auto& a, const auto& b) {
      return std::tie(a.partition, a.peer) < std::tie(b.partition, b.peer);
    });
    RepairDone done = std::move(pending.done);
    std::vector<cluster::AntiEntropy::RoundResult> results = std::move(pending.results);
    it = repairs_.erase(it);
    done(std::move(results));
  }
}

void ClusterNode::route_anti_entropy() {
  for (cluster::AeOutgoing& m : anti_entropy_->take_messages()) {
    queue({std::move(m.to), cluster::to_peer_message(std::move(m.message))});
  }
  route(anti_entropy_->take_peer_messages());
  settle_repairs(std::nullopt);  // forced and stream rounds that finished
}

bool ClusterNode::is_up(const std::string& id) const {
  return id == options_.node_id || up_.contains(id);
}

void ClusterNode::on_member(const gossip::Member& member, MonoTime now) {
  const std::string& id = member.info.id;
  if (id == options_.node_id) return;
  const bool up =
      member.state == gossip::MemberState::kAlive || member.state == gossip::MemberState::kSuspect;
  if (up) {
    // Back from down: a fresh connection at once, rather than the old socket's next
    // reconnect attempt (up to reconnect_max_ms away), so requests and handed-off hints
    // sent now are not dropped for want of a connection.
    if (up_.insert(id).second) transport_->disconnect(id);
    if (!member.info.endpoints.peer.empty()) transport_->connect(id, member.info.endpoints.peer);
  } else {
    up_.erase(id);
  }
  keeper_->set_member_up(id, up, now);
  route(keeper_->take_messages());
  handoff_->set_member(id, up, now);
  route(handoff_->take_messages());
  anti_entropy_->set_member(id, up);
  floors_->set_member(id, up, now);
}

void ClusterNode::on_member_forgotten(const std::string& id, MonoTime now) {
  up_.erase(id);
  transport_->disconnect(id);
  keeper_->set_member_up(id, false, now);
  // Still in the placement: its hints wait for it (within hint-window).
  handoff_->set_member(id, false, now);
  anti_entropy_->set_member(id, false);
  floors_->set_member(id, false, now);
}

void ClusterNode::on_inbox(MonoTime now) {
  transport_->receive(
      [&](std::string_view bytes) {
        auto batch = cluster::decode_batch(bytes, options_.cluster_name, options_.limits);
        if (!batch.ok()) {
          ++counters_.batches_malformed;
          EDGEKV_LOG(kDebug) << "peer channel: batch dropped: " << batch.status().message();
          return;
        }
        counters_.messages_dropped += batch->dropped.size();
        const cluster::NodeId& from = batch->header.from;
        for (cluster::PeerMessage& reply : batch->error_replies) {
          queue({from, std::move(reply)});
        }
        for (cluster::PeerMessage& message : batch->messages) handle(from, std::move(message), now);
      },
      options_.batches_per_turn_max);
}

void ClusterNode::inspect(const std::string& key, MonoTime now, InspectDone done) {
  const uint64_t id = next_inspection_++;
  PendingInspection& p = inspections_[id];
  p.done = std::move(done);
  p.deadline = now + options_.coordinator.request_timeout;
  p.result.partition = view_->partition_of(key);
  size_t down = 0;
  for (const cluster::NodeId& node : view_->home(p.result.partition)) {
    const bool up = is_up(node);
    down += up ? 0 : 1;
    p.result.replicas.push_back({node, true, up, Status::ok_status(), std::nullopt});
  }
  for (const cluster::NodeId& node : view_->fallbacks(p.result.partition, down)) {
    p.result.replicas.push_back({node, false, true, Status::ok_status(), std::nullopt});
  }
  const size_t count = std::min<size_t>(p.result.replicas.size(), kInspectFanoutMax);
  p.result.replicas.resize(count);
  for (size_t i = 0; i < count; ++i) {
    ReplicaState& r = p.result.replicas[i];
    if (!r.up) {
      r.status = Status::unavailable(r.node + " is down as gossip sees it from " +
                                     options_.node_id + "; not asked");
      continue;
    }
    cluster::ReadRequest read;
    read.req = kInspectBit | (id * kInspectFanoutMax + i);
    read.key = key;
    read.include_hints = !r.home;
    ++p.waiting;
    queue({r.node, std::move(read)});
  }
  if (p.waiting == 0) finish_inspection(id);
}

bool ClusterNode::handle_inspection_reply(const cluster::NodeId& from, cluster::ReadReply& reply) {
  if ((reply.req & kInspectBit) == 0) return false;
  const uint64_t low = reply.req & ~kInspectBit;
  auto it = inspections_.find(low / kInspectFanoutMax);
  if (it == inspections_.end()) return true;  // late: the inspection already answered
  PendingInspection& p = it->second;
  const size_t index = low % kInspectFanoutMax;
  if (index >= p.result.replicas.size() || p.result.replicas[index].node != from) return true;
  ReplicaState& r = p.result.replicas[index];
  if (!r.status.ok() || r.record.has_value()) return true;  // a duplicate
  r.status = reply.status;
  r.record = std::move(reply.record);
  if (--p.waiting == 0) finish_inspection(it->first);
  return true;
}

void ClusterNode::finish_inspection(uint64_t id) {
  auto it = inspections_.find(id);
  if (it == inspections_.end()) return;
  PendingInspection p = std::move(it->second);
  inspections_.erase(it);
  p.done(std::move(p.result));
}

void ClusterNode::handle(const cluster::NodeId& from, cluster::PeerMessage message, MonoTime now) {
  if (auto* read = std::get_if<cluster::ReadReply>(&message)) {
    if (handle_inspection_reply(from, *read)) return;
    if (anti_entropy_->on_read_reply(from, *read, now)) {
      route_anti_entropy();
      return;
    }
  }
  if (std::optional<cluster::AeMessage> ae = cluster::take_anti_entropy_message(message)) {
    anti_entropy_->on_message(from, *ae, now);
    route_anti_entropy();
    return;
  }
  if (const auto* ask = std::get_if<cluster::RepairAsk>(&message)) {
    answer_repair_ask(from, *ask, now);
    return;
  }
  if (const auto* reply = std::get_if<cluster::RepairAskReply>(&message)) {
    handoff_->on_repair_reply(from, *reply, now);
    route(handoff_->take_messages());
    return;
  }
  if (const auto* report = std::get_if<cluster::HintFloorReport>(&message)) {
    floors_->on_report(from, *report, now);
    update_hold(now);
    return;
  }
  if (auto* write = std::get_if<cluster::WriteReply>(&message)) {
    if (anti_entropy_->on_write_reply(from, *write, now)) {
      route_anti_entropy();
      return;
    }
    if (handoff_->on_reply(from, *write, now)) {
      route(handoff_->take_messages());
      return;
    }
  }
  if (is_replica_request(message)) {
    replica_->on_message(from, std::move(message), clock_.wall_now());
    route(replica_->take_messages());
  } else if (is_placement(message)) {
    keeper_->on_message(from, message, now);
    if (keeper_->take_changed()) persist_placement();
    route(keeper_->take_messages());
  } else {
    coordinator_->on_message(from, std::move(message), now);
    route(coordinator_->take_messages());
  }
}

void ClusterNode::queue(cluster::PeerOutgoing m) {
  (m.to == options_.node_id ? local_ : pending_).push_back(std::move(m));
}

void ClusterNode::route(std::vector<cluster::PeerOutgoing> out) {
  for (cluster::PeerOutgoing& m : out) queue(std::move(m));
}

void ClusterNode::deliver_local(MonoTime now) {
  // A callback of a message handed over here may make a client call, which delivers again:
  // the loop below takes what it queues.
  if (delivering_) return;
  delivering_ = true;
  route(coordinator_->take_messages());
  route(replica_->take_messages());
  route(keeper_->take_messages());
  route(handoff_->take_messages());
  route_anti_entropy();
  // What the messages beget joins the queues.
  for (int round = 0; round < kLocalRoundsMax && !local_.empty(); ++round) {
    std::vector<cluster::PeerOutgoing> local = std::exchange(local_, {});
    counters_.messages_local += local.size();
    for (cluster::PeerOutgoing& m : local) handle(options_.node_id, std::move(m.message), now);
    route(coordinator_->take_messages());
    route(replica_->take_messages());
  }
  local_.clear();  // beyond kLocalRoundsMax: dropped, the requests time out
  delivering_ = false;
}

void ClusterNode::flush(MonoTime now) {
  drive_hand_over(now);
  deliver_local(now);
  persist_marks();
  if (pending_.empty()) return;
  std::map<cluster::NodeId, std::vector<cluster::PeerMessage>> by_peer;
  for (cluster::PeerOutgoing& m : pending_) by_peer[m.to].push_back(std::move(m.message));
  pending_.clear();
  cluster::PeerHeader header{options_.cluster_name, options_.node_id, clock_.wall_now()};
  for (auto& [to, messages] : by_peer) {
    counters_.messages_out += messages.size();
    // A batch for a peer with no completed connection yet waits for one, briefly; one the
    // transport cannot take is lost like one lost on the way: the requests in it time out,
    // and the transport counts it.
    for (const std::string& batch : cluster::encode_batches(header, messages, options_.limits)) {
      transport_->send_or_hold(to, batch, now);
    }
  }
}

void ClusterNode::tick(MonoTime now) {
  if (now >= transport_->held_retry_at()) transport_->retry_held(now);
  std::vector<uint64_t> expired;
  for (auto& [id, p] : inspections_) {
    if (now < p.deadline) continue;
    for (ReplicaState& r : p.result.replicas) {
      if (r.up && r.status.ok() && !r.record.has_value()) {
        r.status = Status::timeout("no answer within request-timeout-ms");
      }
    }
    expired.push_back(id);
  }
  for (uint64_t id : expired) finish_inspection(id);
  coordinator_->tick(now);
  keeper_->tick(now);
  route(keeper_->take_messages());
  handoff_->tick(now);
  route(handoff_->take_messages());
  floors_->tick(now);
  route(floors_->take_messages());
  update_hold(now);
  anti_entropy_->tick(now);
  route_anti_entropy();
  settle_repairs(now);
  drive_hand_over(now);
  persist_marks();
}

MonoTime ClusterNode::next_deadline() const {
  MonoTime deadline =
      std::min({coordinator_->next_deadline(), keeper_->next_deadline(), handoff_->next_deadline(),
                anti_entropy_->next_deadline(), floors_->next_deadline()});
  for (const auto& [id, p] : inspections_) deadline = std::min(deadline, p.deadline);
  for (const auto& [id, r] : repairs_) deadline = std::min(deadline, r.deadline);
  deadline = std::min(deadline, hand_over_->next_deadline());
  deadline = std::min(deadline, transport_->held_retry_at());
  return deadline;
}

Status ClusterNode::remove(const std::vector<cluster::NodeId>& ids, MonoTime now) {
  const cluster::Placement& p = keeper_->placement();
  const std::optional<cluster::Placement>& pending = keeper_->pending();
  for (const cluster::NodeId& id : ids) {
    // A node only the pending table lists is joining: removing it cancels its join.
    if (!p.is_member(id) && !(pending.has_value() && pending->is_member(id))) {
      return Status::invalid_argument(id + " is not a member of the placement (kvcli ring)");
    }
  }
  Status s = keeper_->remove(ids, now);
  if (keeper_->take_changed()) persist_placement();
  route(keeper_->take_messages());
  return s;
}

Status ClusterNode::abort_hand_over(MonoTime now) {
  Status s = keeper_->abort(now);
  if (keeper_->take_changed()) persist_placement();
  route(keeper_->take_messages());
  return s;
}

void ClusterNode::drive_hand_over(MonoTime now) {
  hand_over_->drive(now);
  const cluster::StreamProgress& progress = hand_over_->progress();
  if (progress.started != MonoTime{} && progress.started != streaming_logged_) {
    streaming_logged_ = progress.started;
    EDGEKV_LOG(kInfo) << "hand-over to epoch " << keeper_->placement().epoch() + 1 << ": streaming "
                      << progress.partitions << " partitions in";
  }
  if (progress.rounds_failed > failures_logged_) {
    failures_logged_ = progress.rounds_failed;
    EDGEKV_LOG(kDebug) << "hand-over: a stream round failed (" << progress.last_failure
                       << "); tried again";
  }
  // (Streams it queued start on anti-entropy's next tick; their messages go out then.)
  if (keeper_->take_changed()) persist_placement();
  route(keeper_->take_messages());
}

void ClusterNode::drop_lost(const cluster::Placement& before, const cluster::Placement& after) {
  if (store_ == nullptr || before.partitions() != after.partitions()) return;
  const std::optional<cluster::Placement>& pending = keeper_->pending();
  const cluster::NodeId& self = options_.node_id;
  for (uint32_t p = 0; p < before.partitions(); ++p) {
    // Also the partitions a pending table since `before` had it take over (a cancelled
    // join's): it may have streamed them.
    const bool held = before.is_home(p, self) || pending_homes_.contains(p);
    if (!held || after.is_home(p, self)) continue;
    if (pending.has_value() && pending->is_home(p, self)) continue;
    ++counters_.partitions_dropped;
    store_->drop_partition(p, clock_.wall_now(), [p](Status s) {
      if (!s.ok()) {
        EDGEKV_LOG(kWarning) << "placement: dropping partition " << p
                             << " this node no longer holds failed: " << s.message();
      }
    });
  }
}

void ClusterNode::note_pending_homes() {
  const std::optional<cluster::Placement>& pending = keeper_->pending();
  if (!pending.has_value()) return;
  for (uint32_t p : pending->partitions_of(options_.node_id)) pending_homes_.insert(p);
}

void ClusterNode::clear_marks_of_removed(const cluster::Placement& before) {
  const cluster::Placement& current = keeper_->placement();
  const std::optional<cluster::Placement>& pending = keeper_->pending();
  // A mark says its owner missed writes of the partition; an owner removed for good holds
  // nothing any more, and whoever took its slots streamed them from the home replicas. (An
  // owner the tables never listed is left alone: a new node's first table lists only it.)
  for (const cluster::RepairMark& m : handoff_->marks()) {
    if (!before.is_member(m.owner) || current.is_member(m.owner)) continue;
    if (pending.has_value() && pending->is_member(m.owner)) continue;
    handoff_->clear_mark(m.owner, m.partition);
    ++counters_.marks_of_removed_cleared;
  }
}

void ClusterNode::persist_placement() {
  const cluster::Placement before = view_->placement();
  view_->set_placement(keeper_->placement());
  view_->set_joining(keeper_->joining());
  update_homes(clock_.mono_now());
  handoff_->set_placement(keeper_->placement(), keeper_->pending(), clock_.mono_now());
  if (cluster::Placement::newer(keeper_->placement(), before)) {
    drop_lost(before, keeper_->placement());
    clear_marks_of_removed(before);
    pending_homes_.clear();
  }
  note_pending_homes();
  if (options_.placement_file.empty()) return;
  Status written = write_file_atomically(options_.placement_file, keeper_->placement().encode());
  const std::filesystem::path pending_file = pending_file_of(options_.placement_file);
  if (written.ok()) {
    if (keeper_->pending().has_value()) {
      written = write_file_atomically(pending_file, keeper_->pending()->encode());
    } else {
      std::error_code ec;
      std::filesystem::remove(pending_file, ec);
    }
  }
  if (written.ok()) {
    ++counters_.placement_writes;
  } else {
    ++counters_.placement_write_failures;
    EDGEKV_LOG(kWarning) << "placement: " << written.message()
                         << "; the table is kept in memory and written again on its next change";
  }
}

void ClusterNode::persist_marks() {
  if (handoff_->take_marks_changed()) marks_dirty_ = true;
  if (!marks_dirty_ || options_.marks_file.empty()) return;
  const MonoTime now = clock_.mono_now();
  if (now < marks_retry_at_) return;
  Status written =
      write_file_atomically(options_.marks_file, cluster::encode_marks(handoff_->marks()));
  if (written.ok()) {
    ++counters_.marks_writes;
    marks_dirty_ = false;
  } else {
    ++counters_.marks_write_failures;
    marks_retry_at_ = now + std::chrono::seconds(1);
    EDGEKV_LOG(kWarning) << "repair marks: " << written.message()
                         << "; kept in memory and written again within a second";
  }
}

}  // namespace edgekv::daemon
