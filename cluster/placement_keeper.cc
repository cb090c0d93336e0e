#include "cluster/placement_keeper.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace edgekv::cluster {

PlacementKeeper::PlacementKeeper(NodeId self, Placement placement, PlacementKeeperOptions options,
                                 uint64_t seed)
    : self_(std::move(self)), placement_(std::move(placement)), options_(options), random_(seed) {}

void PlacementKeeper::start(MonoTime now) {
  started_ = true;
  next_exchange_ = now + options_.exchange_interval;
  join_self_if_missing();
  if (changed_) changed(now);
}

void PlacementKeeper::join_self_if_missing() {
  if (placement_.is_member(self_)) return;
  const NodeId ids[] = {self_};
  // The id passed gossip's validation at start, so the join cannot fail.
  if (placement_.join(ids).ok()) {
    ++counters_.self_joins;
    changed_ = true;
  }
}

void PlacementKeeper::changed(MonoTime now) {
  changed_ = true;
  // Tell a few members at once instead of waiting for the next exchange.
  std::vector<NodeId> told;
  for (uint32_t i = 0; i < options_.change_fanout && told.size() < up_.size(); ++i) {
    const NodeId* to = random_up_member();
    if (to == nullptr) break;
    if (std::find(told.begin(), told.end(), *to) != told.end()) continue;
    told.push_back(*to);
    send_digest(*to);
  }
  (void)now;
}

void PlacementKeeper::set_member_up(const NodeId& id, bool up, MonoTime now) {
  if (id == self_) return;
  if (up) {
    // A member seen for the first time hears of this node's table at once: a joining node
    // then learns the cluster's table within a round trip.
    if (up_.insert(id).second && started_) send_digest(id);
  } else {
    up_.erase(id);
  }
  (void)now;
}

const NodeId* PlacementKeeper::random_up_member() {
  if (up_.empty()) return nullptr;
  auto it = up_.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(random_.uniform(up_.size())));
  return &*it;
}

void PlacementKeeper::send_digest(const NodeId& to) {
  ++counters_.exchanges;
  out_.push_back({to, PlacementDigest{placement_.epoch(), placement_.digest()}});
}

void PlacementKeeper::on_message(const NodeId& from, const PeerMessage& message, MonoTime now) {
  if (const auto* digest = std::get_if<PlacementDigest>(&message)) {
    const bool theirs_newer =
        digest->epoch > placement_.epoch() ||
        (digest->epoch == placement_.epoch() && digest->digest > placement_.digest());
    const bool same = digest->epoch == placement_.epoch() && digest->digest == placement_.digest();
    if (same) return;
    if (theirs_newer) {
      out_.push_back({from, PlacementFetch{}});
    } else {
      ++counters_.tables_sent;
      out_.push_back({from, PlacementTable{placement_.encode()}});
    }
    return;
  }
  if (std::holds_alternative<PlacementFetch>(message)) {
    ++counters_.tables_sent;
    out_.push_back({from, PlacementTable{placement_.encode()}});
    return;
  }
  const auto* table = std::get_if<PlacementTable>(&message);
  if (table == nullptr) return;
  Result<Placement> decoded = Placement::decode(table->encoded);
  if (!decoded.ok()) {
    ++counters_.tables_refused;
    last_refusal_ = "placement table from " + from + " refused: " + decoded.status().message();
    return;
  }
  if (decoded->partitions() != placement_.partitions() ||
      decoded->replication_factor() != placement_.replication_factor()) {
    ++counters_.tables_refused;
    last_refusal_ = "placement table from " + from + " refused: it has " +
                    std::to_string(decoded->partitions()) + " partitions and replication factor " +
                    std::to_string(decoded->replication_factor()) + ", this node " +
                    std::to_string(placement_.partitions()) + " and " +
                    std::to_string(placement_.replication_factor());
    return;
  }
  if (!Placement::newer(*decoded, placement_)) return;
  placement_ = std::move(decoded).value();
  ++counters_.adopted;
  changed_ = true;
  std::vector<NodeId> again;
  for (auto it = removed_.begin(); it != removed_.end();) {
    if (now >= it->second) {
      it = removed_.erase(it);
      continue;
    }
    if (placement_.is_member(it->first)) again.push_back(it->first);
    ++it;
  }
  if (!again.empty()) (void)placement_.remove(again);  // members of a decoded table: valid ids
  join_self_if_missing();
  changed(now);
}

void PlacementKeeper::tick(MonoTime now) {
  if (!started_ || now < next_exchange_) return;
  next_exchange_ = now + options_.exchange_interval;
  if (const NodeId* to = random_up_member()) send_digest(*to);
}

std::vector<PeerOutgoing> PlacementKeeper::take_messages() { return std::exchange(out_, {}); }

bool PlacementKeeper::take_changed() { return std::exchange(changed_, false); }

Status PlacementKeeper::remove(const std::vector<NodeId>& ids, MonoTime now) {
  const uint64_t before = placement_.epoch();
  if (Status s = placement_.remove(ids); !s.ok()) return s;
  for (const NodeId& id : ids) {
    if (id != self_) removed_[id] = now + options_.removal_memory;
  }
  if (placement_.epoch() != before) changed(now);
  return {};
}

}  // namespace edgekv::cluster
