#include "cluster/membership.h"

#include <utility>

namespace edgekv::cluster {

Membership::Membership(std::string cluster_name, std::string self_id)
    : cluster_name_(std::move(cluster_name)), self_id_(std::move(self_id)) {}

void Membership::reset(const std::vector<gossip::Member>& members) {
  members_.clear();
  for (const gossip::Member& member : members) members_[member.info.id] = member;
}

void Membership::apply(const gossip::MemberEvent& event) {
  const std::string& id = event.member.info.id;
  if (event.kind == gossip::MemberEvent::Kind::kReaped) {
    members_.erase(id);
  } else {
    members_[id] = event.member;
  }
  // Observers may add or remove observers: iterate over a copy of the ids.
  std::vector<ObserverId> ids;
  ids.reserve(observers_.size());
  for (const auto& [observer_id, observer] : observers_) ids.push_back(observer_id);
  for (ObserverId observer_id : ids) {
    auto it = observers_.find(observer_id);
    if (it != observers_.end()) it->second(event);
  }
}

void Membership::set_self(const gossip::Member& self) { members_[self.info.id] = self; }

const gossip::Member* Membership::find(std::string_view id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

std::vector<gossip::Member> Membership::members() const {
  std::vector<gossip::Member> out;
  out.reserve(members_.size());
  for (const auto& [id, member] : members_) out.push_back(member);
  return out;
}

MembershipCounts Membership::counts() const {
  MembershipCounts counts;
  for (const auto& [id, member] : members_) {
    switch (member.state) {
      case gossip::MemberState::kAlive: ++counts.alive; break;
      case gossip::MemberState::kSuspect: ++counts.suspect; break;
      case gossip::MemberState::kDead: ++counts.dead; break;
      case gossip::MemberState::kLeft: ++counts.left; break;
    }
  }
  counts.known = members_.size();
  return counts;
}

Membership::ObserverId Membership::add_observer(Observer observer) {
  ObserverId id = next_observer_++;
  observers_.emplace(id, std::move(observer));
  return id;
}

void Membership::remove_observer(ObserverId id) { observers_.erase(id); }

LogBudget::LogBudget(size_t per_window, std::chrono::milliseconds window)
    : per_window_(per_window), window_(window) {}

bool LogBudget::allow(MonoTime now) {
  if (now >= window_end_ && suppressed_ == 0) {
    window_end_ = now + window_;
    used_ = 0;
  }
  if (used_ < per_window_) {
    ++used_;
    return true;
  }
  ++suppressed_;
  ++suppressed_total_;
  return false;
}

uint64_t LogBudget::take_suppressed(MonoTime now) {
  if (now < window_end_ || suppressed_ == 0) return 0;
  uint64_t n = suppressed_;
  suppressed_ = 0;
  window_end_ = now + window_;
  used_ = 0;
  return n;
}

}  // namespace edgekv::cluster
