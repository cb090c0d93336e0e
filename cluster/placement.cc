#include "cluster/placement.h"

#include <algorithm>
#include <bit>
#include <tuple>
#include <utility>

#include "common/assert.h"
#include "common/hash.h"
#include "common/random.h"
#include "gossip/swim.h"
#include "proto/placement.pb.h"

namespace edgekv::cluster {
namespace {

// The encoding's version (proto/placement.proto, `format`).
constexpr uint32_t kFormat = 1;

Status invalid(std::string message) { return Status::invalid_argument("placement: " + message); }

Status check_shape(uint64_t partitions, uint64_t replication_factor) {
  if (partitions == 0 || partitions > kMaxPartitions || !std::has_single_bit(partitions)) {
    return invalid(std::to_string(partitions) + " partitions is not a power of two between 1 and " +
                   std::to_string(kMaxPartitions));
  }
  if (replication_factor == 0 || replication_factor > kMaxReplicationFactor) {
    return invalid("replication factor " + std::to_string(replication_factor) +
                   " is not between 1 and " + std::to_string(kMaxReplicationFactor));
  }
  return Status::ok_status();
}

// The ids sorted and distinct; INVALID_ARGUMENT naming the first that gossip would refuse.
Result<std::vector<NodeId>> normalize(std::span<const NodeId> ids) {
  std::vector<NodeId> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (const NodeId& id : sorted) {
    Status status = gossip::check_name(id, "member id");
    if (!status.ok()) return invalid(status.message());
  }
  return sorted;
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Tie-break between equally loaded nodes in a transition about `changed`: a hash of both
// ids, so that which node gives up (or takes) a slot is spread over the members rather than
// always the lowest id, and is the same on every node.
uint64_t tie_rank(const NodeId& changed, const NodeId& other) {
  std::string both = changed;
  both.push_back('\0');
  both += other;
  return hash64(both);
}

}  // namespace

Placement::Placement(uint32_t partitions, uint32_t replication_factor)
    : partitions_(partitions),
      replication_factor_(replication_factor),
      slots_(size_t{partitions} * replication_factor, kEmpty) {}

Result<Placement> Placement::create(uint32_t partitions, uint32_t replication_factor,
                                    std::span<const NodeId> members) {
  EDGEKV_RETURN_IF_ERROR(check_shape(partitions, replication_factor));
  Placement placement(partitions, replication_factor);
  EDGEKV_RETURN_IF_ERROR(placement.join(members));
  // Creation is epoch 0 whatever it took to get there.
  placement.epoch_ = 0;
  placement.digest_ = placement.compute_digest();
  return placement;
}

Status Placement::join(std::span<const NodeId> ids) {
  Result<std::vector<NodeId>> sorted = normalize(ids);
  if (!sorted.ok()) return sorted.status();
  std::vector<NodeId> added;
  for (NodeId& id : *sorted) {
    if (!is_member(id)) added.push_back(std::move(id));
  }
  if (added.empty()) return Status::ok_status();
  if (members_.size() + added.size() > kMaxPlacementMembers) {
    return invalid("joining " + std::to_string(added.size()) + " nodes to " +
                   std::to_string(members_.size()) + " would pass the bound of " +
                   std::to_string(kMaxPlacementMembers) + " members");
  }
  for (const NodeId& id : added) join_one(id);
  ++epoch_;
  digest_ = compute_digest();
  return Status::ok_status();
}

Status Placement::remove(std::span<const NodeId> ids) {
  Result<std::vector<NodeId>> sorted = normalize(ids);
  if (!sorted.ok()) return sorted.status();
  bool changed = false;
  for (const NodeId& id : *sorted) {
    if (!is_member(id)) continue;
    remove_one(id);
    changed = true;
  }
  if (!changed) return Status::ok_status();
  ++epoch_;
  digest_ = compute_digest();
  return Status::ok_status();
}

// A join. While the new node x leaves room in every partition (n <= N), it enters every
// partition, at position p % n, so that first places (where read-modify-writes run) stay
// spread. Beyond that, x takes one slot at a time from the most loaded node d, in a
// partition holding d and not x, until x holds within one of the most loaded node: the
// others, balanced before, then all hold within one of each other too, so every node holds
// floor or ceil of the fair share, and only the slots x took moved. x takes d's place in the home
// list, and prefers partitions where that place is the one it holds least of.
void Placement::join_one(const NodeId& id) {
  const uint32_t x = static_cast<uint32_t>(std::lower_bound(members_.begin(), members_.end(), id) -
                                           members_.begin());
  members_.insert(members_.begin() + x, id);
  for (uint32_t& slot : slots_) {
    if (slot != kEmpty && slot >= x) ++slot;
  }
  const size_t n = members_.size();
  const uint32_t rf = replication_factor_;
  if (n <= rf) {
    for (uint32_t p = 0; p < partitions_; ++p) {
      uint32_t* r = row(p);
      const size_t at = p % n;
      // Filled: n - 1 entries; shift [at, n - 1) right by one.
      for (size_t i = n - 1; i > at; --i) r[i] = r[i - 1];
      r[at] = x;
    }
    return;
  }
  std::vector<size_t> count = counts();
  std::vector<size_t> at = place_counts();
  std::vector<uint64_t> rank(n);
  for (size_t m = 0; m < n; ++m) rank[m] = tie_rank(id, members_[m]);
  // Each search starts at a place drawn from a generator seeded by x's id: the same on every
  // node, and spreading x's partitions over the ring. (Starting each search where the last
  // one ended gave each joiner an arc of the ring, and later joins then scanned half the
  // ring for a donor's slot: 8 s to create Q = 65536 over 100 nodes.)
  Random draw(hash64(id));
  for (;;) {
    // The place x holds least of, then among the most loaded nodes the one holding that
    // place most often, so places stay spread as well as slots.
    size_t want = 0;
    for (size_t i = 1; i < rf; ++i) {
      if (at[x * rf + i] < at[x * rf + want]) want = i;
    }
    uint32_t d = kEmpty;
    for (uint32_t m = 0; m < n; ++m) {
      if (m == x) continue;
      if (d == kEmpty || std::tie(count[m], at[m * rf + want], rank[m]) >
                             std::tie(count[d], at[d * rf + want], rank[d])) {
        d = m;
      }
    }
    if (count[d] < count[x] + 2) break;
    uint32_t best_p = kEmpty;
    size_t best_i = 0;
    const uint32_t cursor = static_cast<uint32_t>(draw.uniform(partitions_));
    for (uint32_t k = 0; k < partitions_; ++k) {
      const uint32_t p = (cursor + k) & (partitions_ - 1);
      if (row_has(p, x)) continue;
      const uint32_t* r = row(p);
      size_t i = 0;
      while (i < rf && r[i] != d) ++i;
      if (i == rf) continue;
      if (best_p == kEmpty) {
        best_p = p;
        best_i = i;
      }
      if (i == want) {
        best_p = p;
        best_i = i;
        break;
      }
    }
    // d holds more partitions than x, so one of them lacks x.
    EDGEKV_ASSERT(best_p != kEmpty);
    row(best_p)[best_i] = x;
    --count[d];
    ++count[x];
    --at[d * rf + best_i];
    ++at[x * rf + best_i];
  }
}

// A removal. While the nodes left do not fill a partition (n - 1 < N), x just leaves every
// list. Otherwise each of x's slots goes, in partition order, to the least loaded node not
// already in that partition, which takes x's place in the list. When every least loaded node
// is in the partition, a node one slot above them takes it; that can leave two nodes two
// apart, and a repair then moves one slot from the most to the least loaded node (each
// repair one extra moved slot; rare, see the unit test's movement bound).
void Placement::remove_one(const NodeId& id) {
  const uint32_t x = index_of(id);
  EDGEKV_ASSERT(x != kEmpty);
  const size_t n = members_.size();
  const uint32_t rf = replication_factor_;
  if (n <= rf) {
    for (uint32_t p = 0; p < partitions_; ++p) {
      uint32_t* r = row(p);
      size_t i = 0;
      while (i < rf && r[i] != x) ++i;
      EDGEKV_ASSERT(i < rf);
      for (; i + 1 < rf; ++i) r[i] = r[i + 1];
      r[rf - 1] = kEmpty;
    }
  } else {
    std::vector<size_t> count = counts();
    std::vector<size_t> at = place_counts();
    std::vector<uint64_t> rank(n);
    for (size_t m = 0; m < n; ++m) rank[m] = tie_rank(id, members_[m]);
    for (uint32_t p = 0; p < partitions_; ++p) {
      uint32_t* r = row(p);
      size_t i = 0;
      while (i < rf && r[i] != x) ++i;
      if (i == rf) continue;
      uint32_t best = kEmpty;
      for (uint32_t m = 0; m < n; ++m) {
        if (m == x || row_has(p, m)) continue;
        if (best == kEmpty || std::tie(count[m], at[m * rf + i], rank[m]) <
                                  std::tie(count[best], at[best * rf + i], rank[best])) {
          best = m;
        }
      }
      EDGEKV_ASSERT(best != kEmpty);  // n - 1 >= N nodes besides x, at most N - 1 in the row
      r[i] = best;
      ++count[best];
      ++at[best * rf + i];
    }
    count[x] = 0;
    for (;;) {
      uint32_t hi = kEmpty, lo = kEmpty;
      for (uint32_t m = 0; m < n; ++m) {
        if (m == x) continue;
        if (hi == kEmpty || std::tie(count[m], rank[m]) > std::tie(count[hi], rank[hi])) hi = m;
        if (lo == kEmpty || std::tie(count[m], rank[m]) < std::tie(count[lo], rank[lo])) lo = m;
      }
      if (count[hi] < count[lo] + 2) break;
      uint32_t p = 0;
      for (; p < partitions_; ++p) {
        if (row_has(p, hi) && !row_has(p, lo)) break;
      }
      EDGEKV_ASSERT(p < partitions_);  // hi holds more partitions than lo
      uint32_t* r = row(p);
      for (size_t i = 0; i < rf; ++i) {
        if (r[i] == hi) r[i] = lo;
      }
      --count[hi];
      ++count[lo];
    }
  }
  members_.erase(members_.begin() + x);
  for (uint32_t& slot : slots_) {
    if (slot != kEmpty && slot > x) --slot;
  }
}

bool Placement::is_member(std::string_view id) const { return index_of(id) != kEmpty; }

uint32_t Placement::index_of(std::string_view id) const {
  auto it = std::lower_bound(members_.begin(), members_.end(), id,
                             [](const NodeId& a, std::string_view b) { return a < b; });
  if (it == members_.end() || *it != id) return kEmpty;
  return static_cast<uint32_t>(it - members_.begin());
}

bool Placement::row_has(uint32_t partition, uint32_t member) const {
  const uint32_t* r = row(partition);
  return std::find(r, r + replication_factor_, member) != r + replication_factor_;
}

std::vector<size_t> Placement::counts() const {
  std::vector<size_t> count(members_.size(), 0);
  for (uint32_t slot : slots_) {
    if (slot != kEmpty) ++count[slot];
  }
  return count;
}

std::vector<size_t> Placement::place_counts() const {
  std::vector<size_t> at(members_.size() * replication_factor_, 0);
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s] != kEmpty)
      ++at[size_t{slots_[s]} * replication_factor_ + s % replication_factor_];
  }
  return at;
}

std::vector<NodeId> Placement::home(uint32_t partition) const {
  EDGEKV_ASSERT(partition < partitions_);
  std::vector<NodeId> out;
  const uint32_t* r = row(partition);
  for (size_t i = 0; i < replication_factor_ && r[i] != kEmpty; ++i) out.push_back(members_[r[i]]);
  return out;
}

bool Placement::is_home(uint32_t partition, std::string_view id) const {
  EDGEKV_ASSERT(partition < partitions_);
  uint32_t m = index_of(id);
  return m != kEmpty && row_has(partition, m);
}

size_t Placement::slots_of(std::string_view id) const {
  uint32_t m = index_of(id);
  if (m == kEmpty) return 0;
  return static_cast<size_t>(std::count(slots_.begin(), slots_.end(), m));
}

std::vector<uint32_t> Placement::partitions_of(std::string_view id) const {
  std::vector<uint32_t> out;
  uint32_t m = index_of(id);
  if (m == kEmpty) return out;
  for (uint32_t p = 0; p < partitions_; ++p) {
    if (row_has(p, m)) out.push_back(p);
  }
  return out;
}

void Placement::walk_ring(uint32_t partition,
                          const std::function<bool(const NodeId&)>& visit) const {
  EDGEKV_ASSERT(partition < partitions_);
  const size_t n = members_.size();
  std::vector<bool> seen(n, false);
  size_t left = n;
  const uint32_t* home_row = row(partition);
  for (size_t i = 0; i < replication_factor_ && home_row[i] != kEmpty; ++i) {
    seen[home_row[i]] = true;
    --left;
  }
  for (uint32_t k = 1; k < partitions_ && left > 0; ++k) {
    const uint32_t* r = row((partition + k) & (partitions_ - 1));
    for (size_t i = 0; i < replication_factor_ && r[i] != kEmpty; ++i) {
      if (seen[r[i]]) continue;
      seen[r[i]] = true;
      --left;
      if (!visit(members_[r[i]])) return;
    }
  }
  // Members holding no slot at all (more members than slots): last, in id order.
  for (size_t m = 0; m < n && left > 0; ++m) {
    if (seen[m]) continue;
    --left;
    if (!visit(members_[m])) return;
  }
}

std::vector<NodeId> Placement::ring_walk(uint32_t partition) const {
  std::vector<NodeId> out;
  walk_ring(partition, [&](const NodeId& id) {
    out.push_back(id);
    return true;
  });
  return out;
}

// The canonical bytes: a tag, Q, N, the epoch, the members (length-prefixed) and the slots,
// little-endian. Defined here rather than as the protobuf encoding so that the digest does
// not depend on the protobuf library's choices.
uint64_t Placement::compute_digest() const {
  std::string bytes = "edgekv.placement.1";
  put_u32(bytes, partitions_);
  put_u32(bytes, replication_factor_);
  put_u64(bytes, epoch_);
  put_u32(bytes, static_cast<uint32_t>(members_.size()));
  for (const NodeId& m : members_) {
    put_u32(bytes, static_cast<uint32_t>(m.size()));
    bytes += m;
  }
  for (uint32_t slot : slots_) put_u32(bytes, slot);
  return hash64(bytes);
}

std::string Placement::encode() const {
  pb::Placement msg;
  msg.set_format(kFormat);
  msg.set_partitions(partitions_);
  msg.set_replication_factor(replication_factor_);
  msg.set_epoch(epoch_);
  for (const NodeId& m : members_) msg.add_members(m);
  msg.mutable_slots()->Reserve(static_cast<int>(slots_.size()));
  for (uint32_t slot : slots_) msg.add_slots(slot == kEmpty ? 0 : slot + 1);
  msg.set_digest(digest_);
  return msg.SerializeAsString();
}

Result<Placement> Placement::decode(std::string_view bytes) {
  if (bytes.size() > kMaxPlacementBytes) {
    return invalid("encoded table is " + std::to_string(bytes.size()) +
                   " bytes, over the bound of " + std::to_string(kMaxPlacementBytes));
  }
  pb::Placement msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid("encoded table does not parse");
  }
  if (msg.format() != kFormat) {
    return invalid("encoding format " + std::to_string(msg.format()) + " is not " +
                   std::to_string(kFormat));
  }
  EDGEKV_RETURN_IF_ERROR(check_shape(msg.partitions(), msg.replication_factor()));
  const size_t n = static_cast<size_t>(msg.members_size());
  if (n > kMaxPlacementMembers) {
    return invalid(std::to_string(n) + " members, over the bound of " +
                   std::to_string(kMaxPlacementMembers));
  }
  Placement placement(msg.partitions(), msg.replication_factor());
  placement.epoch_ = msg.epoch();
  placement.members_.reserve(n);
  for (const std::string& id : msg.members()) {
    Status status = gossip::check_name(id, "member id");
    if (!status.ok()) return invalid(status.message());
    if (!placement.members_.empty() && placement.members_.back() >= id) {
      return invalid("member " + id + " is not in ascending order, or repeated");
    }
    placement.members_.push_back(id);
  }
  const uint32_t rf = placement.replication_factor_;
  if (static_cast<size_t>(msg.slots_size()) != placement.slots_.size()) {
    return invalid(std::to_string(msg.slots_size()) + " slots, expected " +
                   std::to_string(placement.slots_.size()) + " (partitions x replication factor)");
  }
  const size_t filled = std::min<size_t>(n, rf);
  for (uint32_t p = 0; p < placement.partitions_; ++p) {
    uint32_t* r = placement.row(p);
    for (size_t i = 0; i < rf; ++i) {
      const uint32_t raw = msg.slots(static_cast<int>(size_t{p} * rf + i));
      const std::string where = "partition " + std::to_string(p) + " slot " + std::to_string(i);
      if (i >= filled) {
        if (raw != 0)
          return invalid(where + " must be empty with " + std::to_string(n) + " members");
        continue;
      }
      if (raw == 0 || raw > n) {
        return invalid(where + " names member " + std::to_string(raw) + ", not one of 1.." +
                       std::to_string(n));
      }
      r[i] = raw - 1;
      if (std::find(r, r + i, r[i]) != r + i) {
        return invalid(where + " repeats member " + placement.members_[r[i]]);
      }
    }
  }
  placement.digest_ = placement.compute_digest();
  if (placement.digest_ != msg.digest()) return invalid("digest does not match the table");
  return placement;
}

bool Placement::newer(const Placement& a, const Placement& b) {
  return std::tie(a.epoch_, a.digest_) > std::tie(b.epoch_, b.digest_);
}

Placement Placement::restamped(uint64_t epoch) const {
  Placement out = *this;
  out.epoch_ = epoch;
  out.digest_ = out.compute_digest();
  return out;
}

bool Placement::same_assignments(const Placement& other) const {
  return partitions_ == other.partitions_ && replication_factor_ == other.replication_factor_ &&
         members_ == other.members_ && slots_ == other.slots_;
}

std::vector<uint32_t> taken_over(const Placement& from, const Placement& to, std::string_view id) {
  std::vector<uint32_t> out;
  if (!to.is_member(id) || from.partitions() != to.partitions()) return out;
  for (uint32_t p = 0; p < to.partitions(); ++p) {
    if (to.is_home(p, id) && !from.is_home(p, id)) out.push_back(p);
  }
  return out;
}

std::vector<NodeId> takers(const Placement& from, const Placement& to) {
  std::vector<NodeId> out;
  for (const NodeId& id : to.members()) {
    if (!taken_over(from, to, id).empty()) out.push_back(id);
  }
  return out;
}

bool Placement::operator==(const Placement& other) const {
  return partitions_ == other.partitions_ && replication_factor_ == other.replication_factor_ &&
         epoch_ == other.epoch_ && members_ == other.members_ && slots_ == other.slots_;
}

PlacementView::PlacementView(NodeId self, Placement placement, IsUp is_up)
    : self_(std::move(self)), placement_(std::move(placement)), is_up_(std::move(is_up)) {}

uint32_t PlacementView::partition_of(std::string_view key) const {
  return edgekv::partition_of(key, placement_.partitions());
}

std::vector<NodeId> PlacementView::home(uint32_t partition) const {
  return placement_.home(partition);
}

bool PlacementView::is_up(const NodeId& node) const { return is_up_(node); }

std::vector<NodeId> PlacementView::fallbacks(uint32_t partition, size_t count) const {
  std::vector<NodeId> out;
  if (count == 0) return out;
  placement_.walk_ring(partition, [&](const NodeId& id) {
    if (is_up_(id)) out.push_back(id);
    return out.size() < count;
  });
  return out;
}

}  // namespace edgekv::cluster
