#include "cluster/placement_keeper.h"

#include <algorithm>
#include <iterator>
#include <tuple>
#include <utility>

#include "common/hash.h"
#include "gossip/swim.h"

namespace edgekv::cluster {
namespace {

// Pending tables of one current table remembered after a higher one replaced them: two or
// three joins proposed at once are the common case, more is a storm of proposals that the
// bound keeps from growing the coordinator's fan-out without end.
constexpr size_t kSupersededMax = 8;

// (epoch, digest) of an optional table, none lowest.
std::pair<uint64_t, uint64_t> rank(const std::optional<Placement>& p) {
  if (!p.has_value()) return {0, 0};
  return {p->epoch(), p->digest()};
}

// A restore (PlacementKeeper::abort): `pending` holds `current`'s slots two epochs on.
bool restores(const Placement& current, const Placement& pending) {
  return pending.epoch() == current.epoch() + 2 && pending.same_assignments(current);
}

// Whether `pending` may be pending over `current`: a transition of it (the next epoch) or a
// restore of it.
bool follows(const Placement& current, const Placement& pending) {
  return pending.partitions() == current.partitions() &&
         pending.replication_factor() == current.replication_factor() &&
         (pending.epoch() == current.epoch() + 1 || restores(current, pending));
}

}  // namespace

PlacementKeeper::PlacementKeeper(NodeId self, Placement placement, PlacementKeeperOptions options,
                                 uint64_t seed, std::optional<Placement> pending)
    : self_(std::move(self)), placement_(std::move(placement)), options_(options), random_(seed) {
  if (pending.has_value() && follows(placement_, *pending)) {
    pending_ = std::move(pending);
    // Held across a restart: nothing this run began predates it.
    seen_.insert(self_);
  }
  recompute();
}

void PlacementKeeper::start(MonoTime now) {
  started_ = true;
  next_exchange_ = now + options_.exchange_interval;
  if (placement_.members().empty() && options_.bootstrap_wait.count() > 0) {
    bootstrap_at_ = now + options_.bootstrap_wait;
  }
  propose(now);
  maybe_commit(now);
  if (changed_) changed(now);
}

void PlacementKeeper::propose(MonoTime now) {
  if (pending_.has_value()) return;
  if (restore_.has_value() && restore_->epoch() == placement_.epoch() + 1) {
    // The cancelled table committed before every member saw the restore: hand back.
    ++counters_.hand_overs_proposed;
    set_pending(*restore_, now);
    return;
  }
  if (!placement_.is_member(self_)) {
    if (left_) return;
    const NodeId ids[] = {self_};
    if (placement_.members().empty()) {
      if (now < bootstrap_at_ && bootstrap_at_ != MonoTime::max()) return;  // a peer may answer
      bootstrap_at_ = MonoTime::max();
      // The first node: nobody holds anything to hand over.
      if (placement_.join(ids).ok()) {
        ++counters_.self_joins;
        changed_ = true;
        recompute();
      }
      return;
    }
    Placement next = placement_;
    // The id passed gossip's validation at start, so the join cannot fail.
    if (next.join(ids).ok()) {
      ++counters_.self_joins;
      ++counters_.hand_overs_proposed;
      set_pending(std::move(next), now);
    }
    return;
  }
  std::vector<NodeId> again;
  for (auto it = removed_.begin(); it != removed_.end();) {
    if (now >= it->second) {
      it = removed_.erase(it);
      continue;
    }
    if (placement_.is_member(it->first)) again.push_back(it->first);
    ++it;
  }
  if (again.empty() || placement_.members().size() < 2) return;
  // One node per hand-over: a step that shrinks a partition's home replicas by two could
  // leave no replica common to a write quorum of one table and a read quorum of the other.
  again.resize(1);
  Placement next = placement_;
  if (next.remove(again).ok()) {  // members of a decoded table: valid ids
    ++counters_.hand_overs_proposed;
    set_pending(std::move(next), now);
  }
}

void PlacementKeeper::set_pending(std::optional<Placement> pending, MonoTime now) {
  // This run took part in a pending table that would have added this node.
  const bool was_joining = pending_.has_value() && adopted_at_.has_value() &&
                           pending_->is_member(self_) && !placement_.is_member(self_);
  pending_ = std::move(pending);
  seen_.clear();
  streamed_.clear();
  adopted_at_.reset();
  if (pending_.has_value()) {
    adopted_at_ = now;
    if (placement_.is_member(self_) && !pending_->is_member(self_)) {
      // This node is being removed: once that commits it stays out.
      left_ = true;
    } else if (pending_->is_member(self_)) {
      // Listed again (its removal cancelled, or handed back): it may serve.
      left_ = false;
    }
    const bool restore = restores(placement_, *pending_);
    // A cancel of this node's own join while it ran: it stays out until it restarts.
    if (restore && was_joining) left_ = true;
    // Removals asked here that a cancel undoes, or that a table adding the node back
    // overrides, are not proposed again.
    for (const NodeId& id : pending_->members()) {
      if (restore || !placement_.is_member(id)) removed_.erase(id);
    }
  }
  changed_ = true;
  recompute();
}

bool PlacementKeeper::restoring() const {
  return pending_.has_value() && restores(placement_, *pending_);
}

void PlacementKeeper::took_table(const Placement& before) {
  const bool restored =
      restores(before, placement_) ||
      (restore_.has_value() && placement_ == *restore_ && placement_.epoch() == before.epoch() + 1);
  if (restored) {
    ++counters_.hand_overs_cancelled;
    for (const NodeId& id : placement_.members()) removed_.erase(id);
    // Its own join, which this run took part in, cancelled: it stays out until it restarts.
    if (pending_.has_value() && adopted_at_.has_value() && pending_->is_member(self_) &&
        !placement_.is_member(self_)) {
      left_ = true;
    }
  }
  if (restore_.has_value() && placement_.epoch() >= restore_->epoch()) restore_.reset();
}

void PlacementKeeper::recompute() {
  joining_.clear();
  taking_over_.clear();
  taken_.clear();
  if (!pending_.has_value() && superseded_.empty()) return;
  joining_.resize(placement_.partitions());
  auto add = [&](const Placement& next) {
    for (uint32_t p = 0; p < placement_.partitions(); ++p) {
      std::vector<NodeId>& j = joining_[p];
      for (NodeId& id : next.home(p)) {
        if (placement_.is_home(p, id)) continue;
        if (std::find(j.begin(), j.end(), id) == j.end()) j.push_back(std::move(id));
      }
    }
  };
  if (pending_.has_value()) add(*pending_);
  for (const Placement& old : superseded_) add(old);
  if (pending_.has_value()) {
    for (const NodeId& id : takers(placement_, *pending_)) {
      taken_[id] = static_cast<uint32_t>(taken_over(placement_, *pending_, id).size());
    }
    taking_over_ = taken_over(placement_, *pending_, self_);
  }
}

std::optional<MonoTime> PlacementKeeper::awaiting_seen() const {
  if (!pending_.has_value() || seen_.contains(self_)) return std::nullopt;
  return adopted_at_;
}

void PlacementKeeper::mark_seen(MonoTime now) {
  if (!pending_.has_value() || !seen_.insert(self_).second) return;
  changed(now);
  maybe_commit(now);
}

std::vector<NodeId> PlacementKeeper::must_see() const {
  std::vector<NodeId> out;
  if (!pending_.has_value()) return out;
  std::set_union(placement_.members().begin(), placement_.members().end(),
                 pending_->members().begin(), pending_->members().end(), std::back_inserter(out));
  const bool restore = restoring();
  std::erase_if(out, [&](const NodeId& id) {
    if (id == self_ || up_.contains(id)) return false;
    if (!pending_->is_member(id)) return true;  // leaving
    // A restore does not wait for a down node the table it cancels would have removed: it
    // cannot have committed that table (only members of both tables commit).
    return restore && std::any_of(superseded_.begin(), superseded_.end(),
                                  [&](const Placement& p) { return !p.is_member(id); });
  });
  return out;
}

bool PlacementKeeper::streaming_may_begin() const {
  if (!pending_.has_value()) return false;
  for (const NodeId& id : must_see()) {
    if (!seen_.contains(id)) return false;
  }
  return true;
}

void PlacementKeeper::set_streamed(uint32_t count, MonoTime now) {
  if (!pending_.has_value()) return;
  auto t = taken_.find(self_);
  if (t == taken_.end()) return;
  count = std::min(count, t->second);
  uint32_t& mine = streamed_[self_];
  if (count <= mine) return;
  mine = count;
  // Progress spreads with the periodic exchanges; being done, at once.
  if (count == t->second) {
    changed(now);
    // A taker that may not commit itself tells members that may.
    if (!placement_.is_member(self_) || !pending_->is_member(self_)) tell_committers();
  }
  maybe_commit(now);
}

void PlacementKeeper::tell_committers() {
  std::vector<NodeId> may;
  for (const NodeId& id : up_) {
    if (placement_.is_member(id) && pending_->is_member(id)) may.push_back(id);
  }
  for (uint32_t i = 0; i < options_.change_fanout && !may.empty(); ++i) {
    const size_t at = random_.uniform(may.size());
    send_digest(may[at]);
    may.erase(may.begin() + static_cast<std::ptrdiff_t>(at));
  }
}

void PlacementKeeper::maybe_commit(MonoTime now) {
  // Only a member of both tables commits; a joining or leaving node hears of the commit. A
  // member that has seen a restore no longer holds the table it cancels, so a cancelled
  // table and its restore never both commit (see the top of placement_keeper.h).
  if (!streaming_may_begin() || !placement_.is_member(self_) || !pending_->is_member(self_)) {
    return;
  }
  for (const auto& [id, count] : taken_) {
    auto s = streamed_.find(id);
    if (s == streamed_.end() || s->second < count) return;
  }
  const Placement before = std::move(placement_);
  placement_ = std::move(*pending_);
  pending_.reset();
  seen_.clear();
  streamed_.clear();
  superseded_.clear();
  adopted_at_.reset();
  ++counters_.hand_overs_committed;
  took_table(before);
  changed_ = true;
  recompute();
  propose(now);
  changed(now);
}

std::optional<HandOverStatus> PlacementKeeper::hand_over() const {
  if (!pending_.has_value()) return std::nullopt;
  HandOverStatus out;
  out.from_epoch = placement_.epoch();
  out.to_epoch = pending_->epoch();
  out.to_digest = pending_->digest();
  for (const NodeId& id : pending_->members()) {
    if (!placement_.is_member(id)) out.joining.push_back(id);
  }
  for (const NodeId& id : placement_.members()) {
    if (!pending_->is_member(id)) out.leaving.push_back(id);
  }
  for (const NodeId& id : must_see()) {
    if (!seen_.contains(id)) out.not_seen.push_back(id);
  }
  for (const auto& [id, count] : taken_) {
    HandOverProgress p;
    p.node = id;
    p.partitions = count;
    auto s = streamed_.find(id);
    p.streamed = s == streamed_.end() ? 0 : s->second;
    p.ready = p.streamed >= count;
    out.moved_slots += count;
    out.takers.push_back(std::move(p));
  }
  if (restoring()) {
    out.cancels = true;
    out.cancelled_epoch = placement_.epoch() + 1;
  } else if (restore_.has_value() && *pending_ == *restore_) {
    out.cancels = true;  // handing back from the cancelled table, which committed
    out.cancelled_epoch = placement_.epoch();
  }
  return out;
}

uint64_t PlacementKeeper::state_hash() const {
  if (!pending_.has_value()) return 0;
  std::string bytes;
  for (const NodeId& id : seen_) {
    bytes += id;
    bytes.push_back('\0');
  }
  bytes.push_back('\1');
  for (const auto& [id, count] : streamed_) {
    bytes += id;
    bytes.push_back('\0');
    bytes += std::to_string(count);
    bytes.push_back('\0');
  }
  return hash64(bytes);
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
    // A leaving member going down no longer has to see the pending table.
    if (up_.erase(id) > 0 && started_) maybe_commit(now);
  }
}

const NodeId* PlacementKeeper::random_up_member() {
  if (up_.empty()) return nullptr;
  auto it = up_.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(random_.uniform(up_.size())));
  return &*it;
}

void PlacementKeeper::send_digest(const NodeId& to) {
  ++counters_.exchanges;
  const auto [pending_epoch, pending_digest] = rank(pending_);
  out_.push_back({to, PlacementDigest{placement_.epoch(), placement_.digest(), pending_epoch,
                                      pending_digest, state_hash()}});
}

void PlacementKeeper::send_table(const NodeId& to) {
  ++counters_.tables_sent;
  PlacementTable t;
  t.encoded = placement_.encode();
  if (pending_.has_value()) {
    t.pending = pending_->encode();
    t.seen.assign(seen_.begin(), seen_.end());
    t.streamed.assign(streamed_.begin(), streamed_.end());
  }
  out_.push_back({to, std::move(t)});
}

void PlacementKeeper::on_message(const NodeId& from, const PeerMessage& message, MonoTime now) {
  if (const auto* d = std::get_if<PlacementDigest>(&message)) {
    const auto mine = std::make_tuple(placement_.epoch(), placement_.digest());
    const auto theirs = std::make_tuple(d->epoch, d->digest);
    if (theirs != mine) {
      if (theirs > mine) {
        out_.push_back({from, PlacementFetch{}});
      } else {
        send_table(from);
      }
      return;
    }
    const auto my_pending = rank(pending_);
    const auto their_pending = std::make_pair(d->pending_epoch, d->pending_digest);
    if (their_pending > my_pending) {
      out_.push_back({from, PlacementFetch{}});
    } else if (their_pending < my_pending) {
      send_table(from);
    } else if (d->hand_over_state != state_hash()) {
      // The same hand-over, known differently: each side merges the other's.
      send_table(from);
      out_.push_back({from, PlacementFetch{}});
    }
    return;
  }
  if (std::holds_alternative<PlacementFetch>(message)) {
    send_table(from);
    return;
  }
  if (const auto* table = std::get_if<PlacementTable>(&message)) on_table(from, *table, now);
}

void PlacementKeeper::on_table(const NodeId& from, const PlacementTable& table, MonoTime now) {
  auto refuse = [&](const std::string& why) {
    ++counters_.tables_refused;
    last_refusal_ = "placement table from " + from + " refused: " + why;
  };
  auto check_shape = [&](const Placement& p) {
    if (p.partitions() == placement_.partitions() &&
        p.replication_factor() == placement_.replication_factor()) {
      return true;
    }
    refuse("it has " + std::to_string(p.partitions()) + " partitions and replication factor " +
           std::to_string(p.replication_factor()) + ", this node " +
           std::to_string(placement_.partitions()) + " and " +
           std::to_string(placement_.replication_factor()));
    return false;
  };
  Result<Placement> decoded = Placement::decode(table.encoded);
  if (!decoded.ok()) return refuse(decoded.status().message());
  if (!check_shape(*decoded)) return;
  std::optional<Placement> pending;
  if (!table.pending.empty()) {
    Result<Placement> p = Placement::decode(table.pending);
    if (!p.ok()) return refuse("its pending table: " + p.status().message());
    if (!check_shape(*p)) return;
    if (!follows(*decoded, *p)) {
      return refuse("its pending table's epoch " + std::to_string(p->epoch()) +
                    " does not follow its table's " + std::to_string(decoded->epoch()) +
                    " (next, or two on with the same slots: a cancel)");
    }
    pending = std::move(p).value();
  }
  // What the sender knows of its hand-over, kept to the nodes it concerns.
  // Whether what it learnt matters at once (someone saw the table, a taker finished), so
  // that it is told on rather than left to the periodic exchanges.
  enum class Grew { kNothing, kProgress, kNews };
  auto merge_known = [&]() {
    Grew grew = Grew::kNothing;
    for (const NodeId& id : table.seen) {
      if ((placement_.is_member(id) || pending_->is_member(id)) && seen_.insert(id).second) {
        grew = Grew::kNews;
      }
    }
    for (const auto& [id, count] : table.streamed) {
      auto t = taken_.find(id);
      if (t == taken_.end()) continue;
      uint32_t& known = streamed_[id];
      const uint32_t c = std::min(count, t->second);
      if (c > known) {
        known = c;
        if (grew == Grew::kNothing) grew = Grew::kProgress;
        if (c == t->second) grew = Grew::kNews;
      }
    }
    return grew;
  };

  if (Placement::newer(*decoded, placement_)) {
    const Placement before = std::move(placement_);
    placement_ = std::move(decoded).value();
    bootstrap_at_ = MonoTime::max();
    superseded_.clear();
    ++counters_.adopted;
    took_table(before);
    set_pending(std::move(pending), now);
    if (pending_.has_value()) merge_known();
    propose(now);
    maybe_commit(now);
    changed(now);
    return;
  }
  if (!(*decoded == placement_) || !pending.has_value()) return;
  if (rank(pending) > rank(pending_)) {
    if (pending_.has_value()) {
      ++counters_.pendings_superseded;
      superseded_.push_back(*pending_);  // copied: set_pending() looks at the one it replaces
      if (superseded_.size() > kSupersededMax) superseded_.erase(superseded_.begin());
    }
    ++counters_.adopted;
    set_pending(std::move(pending), now);
    merge_known();
    // Seen by this node only once it says so (mark_seen), whatever the sender believed.
    if (adopted_at_.has_value()) seen_.erase(self_);
    maybe_commit(now);
    changed(now);
    return;
  }
  if (rank(pending) == rank(pending_)) {
    const Grew grew = merge_known();
    if (grew == Grew::kNothing) return;
    maybe_commit(now);
    if (grew == Grew::kNews) changed(now);
  }
}

void PlacementKeeper::tick(MonoTime now) {
  if (!started_) return;
  if (now >= bootstrap_at_) {
    propose(now);
    if (changed_) changed(now);
  }
  if (now < next_exchange_) return;
  next_exchange_ = now + options_.exchange_interval;
  // A removal asked here and lost to a concurrent proposal is proposed again.
  propose(now);
  if (const NodeId* to = random_up_member()) send_digest(*to);
}

std::vector<PeerOutgoing> PlacementKeeper::take_messages() { return std::exchange(out_, {}); }

bool PlacementKeeper::take_changed() { return std::exchange(changed_, false); }

Status PlacementKeeper::remove(const std::vector<NodeId>& ids, MonoTime now) {
  std::vector<NodeId> members;
  for (const NodeId& id : ids) {
    if (placement_.is_member(id)) members.push_back(id);
  }
  // A node only a pending join lists (a new node that died mid-join): its join is cancelled.
  auto joining = [&](const NodeId& id) {
    if (placement_.is_member(id)) return false;
    if (pending_.has_value() && pending_->is_member(id)) return true;
    return std::any_of(superseded_.begin(), superseded_.end(),
                       [&](const Placement& p) { return p.is_member(id); });
  };
  if (std::any_of(ids.begin(), ids.end(), joining)) {
    if (!members.empty()) {
      return Status::failed_precondition(
          "give members to remove, or a joining node alone (which cancels its join), not both");
    }
    return abort(now);
  }
  if (members.empty()) return {};
  if (pending_.has_value()) {
    if (std::none_of(members.begin(), members.end(),
                     [&](const NodeId& id) { return pending_->is_member(id); })) {
      return {};  // the pending table already leaves them out
    }
    return Status::failed_precondition(
        "a hand-over from epoch " + std::to_string(placement_.epoch()) + " to " +
        std::to_string(pending_->epoch()) +
        " is in progress; remove again once it completed (kvcli ring)");
  }
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  if (members.size() >= placement_.members().size()) {
    return Status::invalid_argument("removing " + std::to_string(members.size()) + " of " +
                                    std::to_string(placement_.members().size()) +
                                    " members would leave nobody to hold the data");
  }
  for (const NodeId& id : members) {
    if (Status s = gossip::check_name(id, "member id"); !s.ok()) return s;
  }
  // One node per hand-over (see propose()): the others follow, each once the one before
  // committed, remembered like a removal lost to a concurrent proposal.
  for (const NodeId& id : members) removed_[id] = now + options_.removal_memory;
  propose(now);
  maybe_commit(now);
  changed(now);
  return {};
}

Status PlacementKeeper::abort(MonoTime now) {
  if (!pending_.has_value()) {
    return Status::failed_precondition("no hand-over is pending (placement epoch " +
                                       std::to_string(placement_.epoch()) + ")");
  }
  if (restoring() || (restore_.has_value() && *pending_ == *restore_)) return {};  // under way
  // Above every pending table of the current one, so it supersedes them all.
  Placement restore = placement_.restamped(placement_.epoch() + 2);
  removed_.clear();
  restore_ = restore;
  ++counters_.hand_overs_proposed;
  ++counters_.pendings_superseded;
  superseded_.push_back(*pending_);
  if (superseded_.size() > kSupersededMax) superseded_.erase(superseded_.begin());
  set_pending(std::move(restore), now);
  maybe_commit(now);
  changed(now);
  return {};
}

}  // namespace edgekv::cluster
