#include "cluster/hint_floors.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/hlc.h"

namespace edgekv::cluster {

Result<Version> oldest_hint(store::Store& store, const NodeId& owner,
                            const std::vector<NodeId>& rehomed, const Placement& current,
                            const std::optional<Placement>& pending) {
  std::vector<NodeId> owners{owner};
  owners.insert(owners.end(), rehomed.begin(), rehomed.end());
  if (pending.has_value()) {
    for (const NodeId& m : current.members()) {
      if (!pending->is_member(m)) owners.push_back(m);
    }
  }
  Version oldest{};
  for (const NodeId& o : owners) {
    Result<std::vector<store::Record>> first = store.read_hints_after(o, Version{}, 1, 1);
    if (!first.ok()) return first.status();
    if (!first->empty() && (oldest == Version{} || first->front().version < oldest)) {
      oldest = first->front().version;
    }
  }
  return oldest;
}

HintFloors::HintFloors(NodeId self, const Clock& clock, HintFloorOptions options, Oldest oldest,
                       HlcNow hlc_now)
    : self_(std::move(self)),
      clock_(clock),
      options_(options),
      oldest_(std::move(oldest)),
      hlc_now_(std::move(hlc_now)) {}

void HintFloors::set_members(const std::vector<NodeId>& members, MonoTime now) {
  std::map<NodeId, Member, std::less<>> next;
  for (const NodeId& id : members) {
    if (id == self_ || next.contains(id)) continue;
    auto it = members_.find(id);
    if (it != members_.end()) {
      next.emplace(id, std::move(it->second));
      continue;
    }
    Member m;
    m.up = up_.contains(id);
    m.down_since = now;  // never up since listed: gone only a grace from now
    next.emplace(id, std::move(m));
  }
  members_ = std::move(next);
}

void HintFloors::set_member(const NodeId& id, bool up, MonoTime now) {
  if (up) {
    up_.insert(id);
  } else {
    up_.erase(id);
  }
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (m.up && !up) m.down_since = now;
  m.up = up;
}

void HintFloors::on_report(const NodeId& from, const HintFloorReport& report, MonoTime) {
  ++counters_.reports_received;
  auto it = members_.find(from);
  if (it == members_.end() || report.as_of == 0) {
    ++counters_.reports_ignored;
    return;
  }
  // A report reordered behind a later one says less: keep the latest.
  std::optional<HintFloorReport>& kept = it->second.report;
  if (kept.has_value() && kept->as_of >= report.as_of) {
    ++counters_.reports_ignored;
    return;
  }
  kept = report;
}

void HintFloors::tick(MonoTime now) {
  if (now < next_report_) return;
  next_report_ = now + options_.interval;
  for (const auto& [id, m] : members_) {
    // The clock is read before the lookup: a hint taken in between has a version at least
    // as_of - margin, as any hint taken after the report.
    const uint64_t as_of = hlc_now_();
    Result<Version> oldest = oldest_(id);
    if (!oldest.ok()) {
      ++counters_.lookup_failures;  // no report: the member keeps the last one
      continue;
    }
    outbox_.push_back({id, HintFloorReport{as_of, oldest->hlc}});
    ++counters_.reports_sent;
  }
}

std::vector<PeerOutgoing> HintFloors::take_messages() { return std::exchange(outbox_, {}); }

uint64_t HintFloors::hold(MonoTime now) const {
  const int64_t margin = options_.margin.count();
  const int64_t gone_before = clock_.wall_now().ms - options_.tombstone_grace.count();
  uint64_t hold = std::numeric_limits<uint64_t>::max();
  for (const auto& [id, m] : members_) {
    if (!m.up && now - m.down_since > options_.tombstone_grace) {
      // Gone for good: the grace is the limit, as anti-entropy has it for home replicas.
      hold = std::min(hold, gone_before > 0 ? HybridClock::pack(gone_before, 0) : 0);
      continue;
    }
    if (!m.report.has_value()) return 0;
    const int64_t as_of_ms = HybridClock::physical_ms(m.report->as_of) - margin;
    hold = std::min(hold, as_of_ms > 0 ? HybridClock::pack(as_of_ms, 0) : 0);
    if (m.report->oldest != 0) hold = std::min(hold, m.report->oldest);
  }
  return hold;
}

}  // namespace edgekv::cluster
