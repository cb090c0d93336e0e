#include "tests/sim/swim_node.h"

#include <cstdio>
#include <utility>

#include "common/assert.h"

namespace edgekv::sim {

using gossip::MemberEvent;
using gossip::MemberState;

SwimNode::SwimNode(gossip::NodeInfo info, gossip::Options options, uint64_t seed,
                   uint64_t incarnation, Observer observer)
    : swim_(std::move(info), std::move(options), seed),
      incarnation_(incarnation),
      observer_(std::move(observer)) {}

void SwimNode::start(MonoTime now) {
  last_now_ = now;
  swim_.start(now, incarnation_);
}

void SwimNode::receive(std::string_view, std::string_view bytes, MonoTime now) {
  last_now_ = now;
  swim_.receive(bytes, now);
}

void SwimNode::tick(MonoTime now) {
  last_now_ = now;
  swim_.tick(now);
}

MonoTime SwimNode::next_deadline() const { return swim_.next_deadline(); }

void SwimNode::drain(std::vector<Datagram>& out, Trace& trace) {
  for (gossip::Outgoing& m : swim_.take_messages()) {
    out.push_back(Datagram{std::move(m.to_endpoint), std::move(m.bytes)});
  }
  for (const MemberEvent& e : swim_.take_events()) {
    trace.record(swim_.self().id + " " + std::string(gossip::to_string(e.kind)) + " " +
                 e.member.info.id + " " + std::to_string(e.member.incarnation));
    if (observer_) observer_(swim_.self().id, e, last_now_);
  }
}

SwimCluster::SwimCluster(uint64_t seed, size_t size, gossip::Options options,
                         NetworkOptions network, std::vector<size_t> seeds)
    : sim_(seed, network), options_(std::move(options)), seed_(seed) {
  for (size_t s : seeds) seed_endpoints_.push_back("sim://" + id(s));
  options_.seeds = seed_endpoints_;
  incarnation_.assign(size, 0);
  views_.resize(size);
  for (size_t i = 0; i < size; ++i) {
    sim_.add_node({"sim://" + id(i)}, [this, i](uint32_t life) { return make(i, life); });
  }
}

std::string SwimCluster::id(size_t i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "n%03zu", i);
  return buf;
}

size_t SwimCluster::index_of(const std::string& node_id) const {
  return static_cast<size_t>(std::stoul(node_id.substr(1)));
}

std::unique_ptr<SimNode> SwimCluster::make(size_t i, uint32_t life) {
  gossip::NodeInfo info;
  info.id = id(i);
  info.datacenter = "dc1";
  info.endpoints.gossip = "sim://" + info.id;
  info.endpoints.client = "tcp://" + info.id + ":7000";
  views_[i].clear();
  auto observer = [this](const std::string& who, const MemberEvent& e, MonoTime now) {
    size_t at = index_of(who);
    auto& view = views_[at];
    switch (e.kind) {
      case MemberEvent::Kind::kJoined:
      case MemberEvent::Kind::kUpdated:
      case MemberEvent::Kind::kAlive: view[e.member.info.id] = MemberState::kAlive; break;
      case MemberEvent::Kind::kSuspect: view[e.member.info.id] = MemberState::kSuspect; break;
      case MemberEvent::Kind::kDead: view[e.member.info.id] = MemberState::kDead; break;
      case MemberEvent::Kind::kLeft: view[e.member.info.id] = MemberState::kLeft; break;
      case MemberEvent::Kind::kReaped: view.erase(e.member.info.id); break;
    }
    observations_.push_back({who, e.member.info.id, e.kind, now});
  };
  uint64_t node_seed = seed_ * 0x9e3779b97f4a7c15ULL + i * 1000003ULL + life;
  auto it = node_options_.find(i);
  return std::make_unique<SwimNode>(std::move(info),
                                    it == node_options_.end() ? options_ : it->second, node_seed,
                                    incarnation_[i], observer);
}

void SwimCluster::set_options(size_t i, gossip::Options options) {
  options.seeds = seed_endpoints_;
  node_options_[i] = std::move(options);
}

void SwimCluster::start_all(Millis stagger) {
  for (size_t i = 0; i < size(); ++i) {
    if (i > 0 && stagger.count() > 0) sim_.run_for(stagger);
    sim_.start(i);
  }
}

void SwimCluster::crash(size_t i) {
  sim_.crash(i, true);
  views_[i].clear();
}

void SwimCluster::restart(size_t i, uint64_t incarnation) {
  incarnation_[i] = incarnation;
  sim_.restart(i);
}

bool SwimCluster::view_state(size_t observer, size_t member, MemberState* state) const {
  auto it = views_[observer].find(id(member));
  if (it == views_[observer].end()) return false;
  *state = it->second;
  return true;
}

bool SwimCluster::all_see(size_t member, MemberState state) const {
  for (size_t i = 0; i < size(); ++i) {
    if (i == member || !sim_.is_running(i)) continue;
    MemberState s;
    if (!view_state(i, member, &s) || s != state) return false;
  }
  return true;
}

bool SwimCluster::converged() const {
  for (size_t i = 0; i < size(); ++i) {
    if (!sim_.is_running(i)) continue;
    size_t alive = 0;
    for (const auto& [member, state] : views_[i]) {
      if (state != MemberState::kAlive) continue;
      if (!sim_.is_up(index_of(member))) return false;
      ++alive;
    }
    size_t expected = 0;
    for (size_t j = 0; j < size(); ++j) expected += (j != i && sim_.is_up(j)) ? 1 : 0;
    if (alive != expected) return false;
  }
  return true;
}

size_t SwimCluster::seen_live_by(size_t member) const {
  size_t count = 0;
  for (size_t i = 0; i < size(); ++i) {
    if (i == member || !sim_.is_running(i)) continue;
    MemberState s;
    if (view_state(i, member, &s) && (s == MemberState::kAlive || s == MemberState::kSuspect)) {
      ++count;
    }
  }
  return count;
}

std::vector<Observation> SwimCluster::observed(size_t member, MemberEvent::Kind kind,
                                               MonoTime from) const {
  std::vector<Observation> found;
  std::string member_id = id(member);
  for (const Observation& o : observations_) {
    if (o.member == member_id && o.kind == kind && o.at >= from) found.push_back(o);
  }
  return found;
}

uint64_t SwimCluster::sum(uint64_t gossip::Counters::*field) const {
  uint64_t total = 0;
  for (size_t i = 0; i < size(); ++i) {
    if (!sim_.is_up(i)) continue;
    total += swim(i).counters().*field;
  }
  return total;
}

}  // namespace edgekv::sim
