#include "tests/sim/replica_node.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <variant>

#include "common/assert.h"

namespace edgekv::sim {

using cluster::NodeId;
using cluster::PeerMessage;
using cluster::PeerOutgoing;

WallTime SkewedClock::wall_now() const {
  double elapsed_ms =
      std::chrono::duration<double, std::milli>(base_.mono_now().time_since_epoch()).count();
  auto drift_ms = static_cast<int64_t>(std::floor(elapsed_ms * drift_ppm_ / 1e6));
  return WallTime{base_.wall_now().ms + offset_ms_ + drift_ms};
}

void NodeDisk::schedule(std::function<void()> commit) {
  auto span = static_cast<uint64_t>(storage_delay_max.count());
  MonoTime at = clock.mono_now() + Millis(rng.uniform(span + 1));
  commits.emplace(std::make_pair(at, next_commit_seq++), std::move(commit));
}

MonoTime NodeDisk::next_commit() const {
  return commits.empty() ? MonoTime::max() : commits.begin()->first.first;
}

void NodeDisk::run_due(MonoTime now) {
  while (!commits.empty() && commits.begin()->first.first <= now) {
    std::function<void()> commit = std::move(commits.begin()->second);
    commits.erase(commits.begin());
    commit();
  }
}

namespace {

gossip::NodeInfo node_info(const NodeId& id) {
  gossip::NodeInfo info;
  info.id = id;
  info.datacenter = "dc1";
  info.endpoints.gossip = ReplicaNode::gossip_address(id);
  info.endpoints.peer = ReplicaNode::peer_address(id);
  return info;
}

bool is_placement(const PeerMessage& m) {
  return std::holds_alternative<cluster::PlacementDigest>(m) ||
         std::holds_alternative<cluster::PlacementFetch>(m) ||
         std::holds_alternative<cluster::PlacementTable>(m);
}

// The table a node starts from: what its disk holds, else the cluster's table it was built
// with, else an empty one (a new data directory).
cluster::Placement initial_placement(const ReplicaNodeConfig& config, const NodeDisk& disk) {
  if (disk.placement.has_value()) return *disk.placement;
  if (config.placement.has_value()) return *config.placement;
  Result<cluster::Placement> empty =
      cluster::Placement::create(config.partitions, config.replication_factor, {});
  EDGEKV_ASSERT(empty.ok());
  return std::move(empty).value();
}

bool for_replica(const PeerMessage& m) {
  return std::holds_alternative<cluster::WriteRequest>(m) ||
         std::holds_alternative<cluster::ReadRequest>(m);
}

}  // namespace

ReplicaNode::ReplicaNode(ReplicaNodeConfig config, NodeDisk& disk)
    : config_(std::move(config)),
      disk_(disk),
      swim_(node_info(config_.id), config_.gossip, config_.gossip_seed),
      keeper_(std::make_unique<cluster::PlacementKeeper>(
          config_.id, initial_placement(config_, disk), config_.keeper, config_.keeper_seed,
          disk.pending)),
      placement_view_(config_.id, keeper_->placement(),
                      [this](const NodeId& node) { return sees_up(node); }),
      hlc_(disk_.clock),
      coordinator_(placement_view_, hlc_, config_.coordinator),
      replica_(
          config_.id, *disk_.store, config_.replica,
          [this, alive = std::weak_ptr<bool>(alive_)](std::function<void()> work) {
            if (alive.lock()) posted_.push_back(std::move(work));
          },
          // Bounded as in the daemon (max-clock-offset-ms): a version from a clock too far
          // ahead is refused and its write answered with the refusal.
          [this](const Version& v, bool) { return hlc_.observe(v.hlc); },
          [this](const ChangeEvent&, cluster::ChangeSource source) {
            ++counters_.changes;
            if (source == cluster::ChangeSource::kExpiry) ++counters_.expired;
          }) {
  handoff_ = std::make_unique<cluster::Handoff>(
      config_.id, *disk_.store, disk_.clock, config_.handoff,
      [this, alive = std::weak_ptr<bool>(alive_)](std::function<void()> work) {
        if (alive.lock()) posted_.push_back(std::move(work));
      },
      [this](std::string_view key) { return placement_view_.partition_of(key); },
      // As in the daemon: a node busy with its own clients and replica writes waits.
      [this] {
        return coordinator_.requests() >= config_.coordinator.max_requests / 2 ||
               replica_.inflight_writes() >= config_.replica.max_inflight_writes / 2;
      });
  replica_.set_hint_gate(cluster::Replica::HintGate{
      [this](const NodeId& owner, std::string_view key) { return handoff_->admit(owner, key); },
      [this](const NodeId& owner, std::string_view key, const Status& why) {
        handoff_->refused(owner, key, why);
      }});
  cluster::AntiEntropyOptions no_schedule;
  no_schedule.interval = Millis(0);
  anti_entropy_ = std::make_unique<cluster::AntiEntropy>(
      config_.id, *disk_.store, disk_.clock, config_.anti_entropy.value_or(no_schedule),
      [this](const NodeId& peer, uint32_t partition) { handoff_->clear_mark(peer, partition); });
  // As edgekvd: reports each second; a hint taken after a report was stamped at most the
  // request timeout (and the clocks' offset) before it.
  const cluster::AntiEntropyOptions ae = config_.anti_entropy.value_or(no_schedule);
  cluster::HintFloorOptions floors;
  floors.margin = ae.horizon_margin + config_.coordinator.request_timeout;
  floors.tombstone_grace = ae.tombstone_grace;
  floors_ = std::make_unique<cluster::HintFloors>(
      config_.id, disk_.clock, floors,
      [this](const NodeId& owner) {
        return cluster::oldest_hint(*disk_.store, owner, handoff_->rehomed_owners(),
                                    keeper_->placement(), keeper_->pending());
      },
      [this] { return hlc_.now(); });
  placement_view_.set_joining(keeper_->joining());
  hand_over_ = std::make_unique<cluster::HandOver>(
      config_.id, *keeper_, *anti_entropy_, disk_.clock,
      [this](const NodeId& node) { return sees_up(node); },
      [this](MonoTime t) { return coordinator_.running_begun_by(t); });
}

ReplicaNode::~ReplicaNode() = default;

bool ReplicaNode::sees_up(const NodeId& node) const {
  if (node == config_.id) return true;
  auto it = view_.find(node);
  return it != view_.end() &&
         (it->second == gossip::MemberState::kAlive || it->second == gossip::MemberState::kSuspect);
}

void ReplicaNode::start(MonoTime now) {
  swim_.start(now, config_.incarnation);
  next_sweep_ = now + config_.sweep_every;
  keeper_->start(now);
  // Without a schedule too: a repair ask forces rounds.
  placement_changed(now);
  pump(now);
}

void ReplicaNode::placement_changed(MonoTime now) {
  keeper_->take_changed();
  const cluster::Placement before = placement_view_.placement();
  placement_view_.set_placement(keeper_->placement());
  placement_view_.set_joining(keeper_->joining());
  // As edgekvd: a partition's takers compare with its home replicas too (that is how they
  // stream).
  const cluster::Placement& p = keeper_->placement();
  std::vector<std::vector<NodeId>> homes(p.partitions());
  for (uint32_t partition = 0; partition < p.partitions(); ++partition) {
    homes[partition] = placement_view_.home(partition);
    for (NodeId& j : placement_view_.joining(partition)) homes[partition].push_back(std::move(j));
  }
  anti_entropy_->set_joining(keeper_->joining());
  anti_entropy_->set_homes(homes, now);
  handoff_->set_placement(p, keeper_->pending(), now);
  // The partitions this node held and holds no more, in neither table: dropped for good.
  const std::optional<cluster::Placement>& pending = keeper_->pending();
  // As edgekvd, the partitions a pending table had it hold since (a cancelled join's) too.
  if (cluster::Placement::newer(p, before) && before.partitions() == p.partitions()) {
    for (uint32_t partition = 0; partition < p.partitions(); ++partition) {
      const bool held = before.is_home(partition, config_.id) || pending_homes_.contains(partition);
      if (!held || p.is_home(partition, config_.id)) continue;
      if (pending.has_value() && pending->is_home(partition, config_.id)) continue;
      ++counters_.partitions_dropped;
      // A drop that fails leaves rows no read asks for (edgekvd logs it).
      disk_.store->drop_partition(partition, disk_.clock.wall_now(), [](Status) {});
    }
  }
  if (cluster::Placement::newer(p, before)) pending_homes_.clear();
  if (pending.has_value()) {
    for (uint32_t partition : pending->partitions_of(config_.id)) pending_homes_.insert(partition);
  }
  std::vector<NodeId> members = p.members();
  if (pending.has_value()) {
    for (const NodeId& m : pending->members()) members.push_back(m);
  }
  floors_->set_members(members, now);
  update_hold(now);
  // The placement files, as the daemon writes them on every change.
  disk_.placement = p;
  disk_.pending = pending;
}

void ReplicaNode::update_hold(MonoTime now) {
  if (config_.hint_floors) anti_entropy_->set_purge_hold(floors_->hold(now));
}

void ReplicaNode::drive_hand_over(MonoTime now) {
  hand_over_->drive(now);
  if (keeper_->take_changed()) placement_changed(now);
}

Status ReplicaNode::remove(const std::vector<NodeId>& ids, MonoTime now) {
  Status s = keeper_->remove(ids, now);
  if (keeper_->take_changed()) placement_changed(now);
  pump(now);
  return s;
}

Status ReplicaNode::abort_hand_over(MonoTime now) {
  Status s = keeper_->abort(now);
  if (keeper_->take_changed()) placement_changed(now);
  pump(now);
  return s;
}

size_t ReplicaNode::repair_all(MonoTime now) {
  size_t queued = 0;
  const cluster::Placement& p = keeper_->placement();
  for (uint32_t partition = 0; partition < p.partitions(); ++partition) {
    if (!p.is_home(partition, config_.id)) continue;
    Result<size_t> n = anti_entropy_->repair(partition);
    if (n.ok()) queued += *n;
  }
  anti_entropy_->tick(now);
  pump(now);
  return queued;
}

void ReplicaNode::receive(std::string_view to_address, std::string_view bytes, MonoTime now) {
  if (to_address == gossip_address(config_.id)) {
    swim_.receive(bytes, now);
    pump(now);
    return;
  }
  Result<cluster::PeerBatch> batch =
      cluster::decode_batch(bytes, config_.cluster_name, config_.peer_limits);
  if (!batch.ok()) {
    ++counters_.batches_refused;
    return;
  }
  counters_.messages_dropped += batch->dropped.size();
  const NodeId& from = batch->header.from;
  for (PeerMessage& reply : batch->error_replies) outgoing_[from].push_back(std::move(reply));
  for (PeerMessage& m : batch->messages) deliver(from, std::move(m), now);
  pump(now);
}

void ReplicaNode::deliver(const NodeId& from, PeerMessage message, MonoTime now) {
  if (std::optional<cluster::AeMessage> ae = cluster::take_anti_entropy_message(message)) {
    anti_entropy_->on_message(from, *ae, now);
    return;
  }
  if (const auto* ask = std::get_if<cluster::RepairAsk>(&message)) {
    answer_repair_ask(from, *ask, now);
    return;
  }
  if (const auto* report = std::get_if<cluster::HintFloorReport>(&message)) {
    floors_->on_report(from, *report, now);
    update_hold(now);
    return;
  }
  if (const auto* reply = std::get_if<cluster::RepairAskReply>(&message)) {
    handoff_->on_repair_reply(from, *reply, now);
    return;
  }
  if (const auto* read = std::get_if<cluster::ReadReply>(&message);
      read != nullptr && anti_entropy_->on_read_reply(from, *read, now)) {
    return;
  }
  if (const auto* write = std::get_if<cluster::WriteReply>(&message);
      write != nullptr && anti_entropy_->on_write_reply(from, *write, now)) {
    return;
  }
  if (is_placement(message)) {
    keeper_->on_message(from, message, now);
    if (keeper_->take_changed()) placement_changed(now);
  } else if (for_replica(message)) {
    replica_.on_message(from, std::move(message), disk_.clock.wall_now());
  } else if (const auto* reply = std::get_if<cluster::WriteReply>(&message);
             reply != nullptr && handoff_->on_reply(from, *reply, now)) {
    // A handed-off hint's answer.
  } else {
    coordinator_.on_message(from, std::move(message), now);
  }
}

void ReplicaNode::answer_repair_ask(const NodeId& from, const cluster::RepairAsk& ask,
                                    MonoTime now) {
  auto answer = [&](Status status) {
    outgoing_[from].push_back(cluster::RepairAskReply{ask.req, std::move(status)});
  };
  constexpr size_t kMaxPendingAsks = 16;  // edgekvd's bound on repairs waiting
  if (asks_.size() >= kMaxPendingAsks) return answer(Status::overloaded("repairs are running"));
  Result<size_t> queued = anti_entropy_->repair(ask.partition);
  if (!queued.ok()) return answer(queued.status());
  const std::vector<NodeId> homes = placement_view_.home(ask.partition);
  PendingAsk pending{
      from, ask.req, ask.partition, {}, Status::ok_status(), now + Millis(ask.wait_ms)};
  for (const NodeId& peer : homes) {
    if (peer != config_.id && sees_up(peer)) pending.waiting.insert(peer);
  }
  if (pending.waiting.empty()) {
    const bool alone = std::all_of(homes.begin(), homes.end(),
                                   [this](const NodeId& h) { return h == config_.id; });
    return answer(alone ? Status::ok_status() : Status::unavailable("no other home replica is up"));
  }
  asks_.push_back(std::move(pending));
}

void ReplicaNode::settle_asks(std::optional<MonoTime> now) {
  for (const cluster::AntiEntropy::RoundResult& r : anti_entropy_->take_forced_results()) {
    if (r.stream) {  // a hand-over's, as edgekvd routes them
      hand_over_->on_result(r, now.value_or(disk_.clock.mono_now()));
      continue;
    }
    for (PendingAsk& a : asks_) {
      if (a.partition != r.partition || a.waiting.erase(r.peer) == 0) continue;
      if (a.first_error.ok() && !r.status.ok()) a.first_error = r.status;
    }
  }
  std::erase_if(asks_, [&](PendingAsk& a) {
    const bool late = now.has_value() && *now >= a.deadline;
    if (!a.waiting.empty() && !late) return false;
    Status status = std::move(a.first_error);
    if (status.ok() && !a.waiting.empty()) status = Status::timeout("a round is still running");
    outgoing_[a.from].push_back(cluster::RepairAskReply{a.req, std::move(status)});
    return true;
  });
}

void ReplicaNode::route(std::vector<PeerOutgoing> messages, MonoTime now, bool* any) {
  for (PeerOutgoing& m : messages) {
    *any = true;
    if (m.to == config_.id) {
      deliver(config_.id, std::move(m.message), now);
    } else {
      outgoing_[m.to].push_back(std::move(m.message));
    }
  }
}

void ReplicaNode::pump(MonoTime now) {
  for (;;) {
    bool any = false;
    for (const gossip::MemberEvent& e : swim_.take_events()) {
      any = true;
      trace_lines_.push_back(config_.id + " " + std::string(gossip::to_string(e.kind)) + " " +
                             e.member.info.id);
      const NodeId& member = e.member.info.id;
      if (e.kind == gossip::MemberEvent::Kind::kReaped) {
        view_.erase(member);
      } else {
        view_[member] = e.member.state;
      }
      // Reaped is not removed: the node is still in the placement, its hints wait.
      handoff_->set_member(member, sees_up(member), now);
      anti_entropy_->set_member(member, sees_up(member));
      floors_->set_member(member, sees_up(member), now);
      keeper_->set_member_up(member, sees_up(member), now);
      if (keeper_->take_changed()) placement_changed(now);
    }
    while (!posted_.empty()) {
      any = true;
      std::function<void()> work = std::move(posted_.front());
      posted_.pop_front();
      work();
    }
    route(coordinator_.take_messages(), now, &any);
    route(replica_.take_messages(), now, &any);
    route(handoff_->take_messages(), now, &any);
    route(floors_->take_messages(), now, &any);
    std::vector<PeerOutgoing> ae;
    for (cluster::AeOutgoing& m : anti_entropy_->take_messages()) {
      ae.push_back(PeerOutgoing{std::move(m.to), cluster::to_peer_message(std::move(m.message))});
    }
    route(std::move(ae), now, &any);
    route(anti_entropy_->take_peer_messages(), now, &any);
    settle_asks(std::nullopt);
    // As edgekvd after each turn: declare seen, start and retry streams.
    drive_hand_over(now);
    route(keeper_->take_messages(), now, &any);
    if (!any) return;
  }
}

void ReplicaNode::maybe_sweep(MonoTime now) {
  if (sweeping_ || now < next_sweep_) return;
  next_sweep_ = now + config_.sweep_every;
  sweeping_ = true;
  std::weak_ptr<bool> alive = alive_;
  disk_.store->sweep(disk_.clock.wall_now(), config_.sweep_rows,
                     [this, alive](Result<std::vector<ChangeEvent>> events) {
                       if (!alive.lock()) return;
                       sweeping_ = false;
                       if (!events.ok()) return;
                       counters_.changes += events->size();
                       counters_.expired += events->size();
                     });
}

void ReplicaNode::tick(MonoTime now) {
  disk_.run_due(now);
  pump(now);
  swim_.tick(now);
  coordinator_.tick(now);
  keeper_->tick(now);
  if (keeper_->take_changed()) placement_changed(now);
  handoff_->tick(now);
  floors_->tick(now);
  update_hold(now);
  anti_entropy_->tick(now);
  settle_asks(now);
  drive_hand_over(now);
  maybe_sweep(now);
  pump(now);
}

MonoTime ReplicaNode::next_deadline() const {
  MonoTime due =
      std::min({swim_.next_deadline(), coordinator_.next_deadline(), handoff_->next_deadline(),
                anti_entropy_->next_deadline(), disk_.next_commit(), next_sweep_,
                keeper_->next_deadline(), hand_over_->next_deadline(), floors_->next_deadline()});
  for (const PendingAsk& a : asks_) due = std::min(due, a.deadline);
  return due;
}

void ReplicaNode::drain(std::vector<Datagram>& out, Trace& trace) {
  for (gossip::Outgoing& m : swim_.take_messages()) {
    out.push_back(Datagram{std::move(m.to_endpoint), std::move(m.bytes)});
  }
  for (const std::string& line : trace_lines_) trace.record(line);
  trace_lines_.clear();
  if (outgoing_.empty()) return;
  cluster::PeerHeader header{config_.cluster_name, config_.id, disk_.clock.wall_now()};
  for (auto& [to, messages] : outgoing_) {
    size_t oversized = 0;
    for (std::string& bytes :
         cluster::encode_batches(header, messages, config_.peer_limits, &oversized)) {
      out.push_back(Datagram{peer_address(to), std::move(bytes)});
    }
    counters_.oversized += oversized;
  }
  outgoing_.clear();
}

}  // namespace edgekv::sim
