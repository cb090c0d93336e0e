#include "cluster/anti_entropy.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "common/hlc.h"

namespace edgekv::cluster {
namespace {

// What one entry takes on the wire: its key, the version (16), `deleted` (1), expiry (8).
uint64_t entry_bytes(const store::DigestEntry& e) { return e.key.size() + 25; }
uint64_t record_bytes(const store::Record& r) { return r.key.size() + r.value.size() + 25; }

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

uint64_t wire_bytes(const AeMessage& message) {
  return std::visit(
      Overloaded{
          [](const AeDigest&) -> uint64_t { return 28; },
          [](const AeDigestReply& r) -> uint64_t {
            return 9 + r.status.message().size() + 8 * r.leaves.size();
          },
          [](const AeEntriesRequest& q) -> uint64_t { return 12 + 4 * q.leaves.size(); },
          [](const AeEntriesReply& r) -> uint64_t {
            uint64_t n = 16 + r.status.message().size();
            for (const store::DigestEntry& e : r.entries) n += entry_bytes(e);
            return n;
          },
      },
      message);
}

PeerMessage to_peer_message(AeMessage message) {
  return std::visit([](auto& body) { return PeerMessage(std::move(body)); }, message);
}

std::optional<AeMessage> take_anti_entropy_message(PeerMessage& m) {
  if (auto* d = std::get_if<AeDigest>(&m)) return AeMessage(std::move(*d));
  if (auto* r = std::get_if<AeDigestReply>(&m)) return AeMessage(std::move(*r));
  if (auto* q = std::get_if<AeEntriesRequest>(&m)) return AeMessage(std::move(*q));
  if (auto* e = std::get_if<AeEntriesReply>(&m)) return AeMessage(std::move(*e));
  return std::nullopt;
}

AntiEntropy::AntiEntropy(NodeId self, store::Store& store, const Clock& clock,
                         AntiEntropyOptions options, Synced synced)
    : self_(std::move(self)),
      store_(store),
      clock_(clock),
      options_(options),
      synced_(std::move(synced)),
      tokens_(static_cast<double>(options.rate_bytes)) {}

AntiEntropy::~AntiEntropy() = default;

bool AntiEntropy::is_up(const NodeId& id) const { return up_.contains(id); }

void AntiEntropy::set_member(const NodeId& id, bool up) {
  if (up) {
    up_.insert(id);
  } else {
    up_.erase(id);
  }
}

void AntiEntropy::set_homes(const std::vector<std::vector<NodeId>>& homes, MonoTime now) {
  homes_ = homes;
  std::vector<Pair> pairs;
  std::map<Pair, WallTime> known;
  const WallTime wall = clock_.wall_now();
  for (uint32_t p = 0; p < homes_.size(); ++p) {
    const auto& h = homes_[p];
    if (std::find(h.begin(), h.end(), self_) == h.end()) continue;
    for (const NodeId& peer : h) {
      if (self_ < peer) pairs.emplace_back(p, peer);
      if (peer == self_) continue;
      auto it = known_since_.find(Pair{p, peer});
      known.emplace(Pair{p, peer}, it != known_since_.end() ? it->second : wall);
    }
  }
  known_since_ = std::move(known);
  // Streams of pairs no longer home replicas together end here.
  std::erase_if(streams_, [&](const Pair& pair) {
    if (known_since_.contains(pair)) return false;
    RoundResult result;
    result.partition = pair.first;
    result.peer = pair.second;
    result.forced = result.stream = true;
    result.started = wall;
    result.status = Status::failed_precondition("stream: " + self_ + " and " + pair.second +
                                                " are no longer home replicas of partition " +
                                                std::to_string(pair.first) + " together");
    keep(std::move(result));
    return true;
  });
  // Sync points of pairs no longer homed together go with them.
  std::erase_if(sync_points_, [this](const auto& e) { return !known_since_.contains(e.first); });
  std::erase_if(answered_, [this](const auto& e) { return !known_since_.contains(e.first); });
  std::erase_if(completed_req_, [this](const auto& e) { return !known_since_.contains(e.first); });
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  if (options_.interval.count() == 0) {  // no schedule: repair() alone starts rounds
    due_.clear();
    return;
  }
  // Pairs kept keep their due time; new ones spread over one interval by rank.
  due_.retain(
      [&](const Pair& pair) { return std::binary_search(pairs.begin(), pairs.end(), pair); });
  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    if (due_.find(pairs[rank])) continue;
    due_.set(pairs[rank], now + options_.interval * static_cast<int64_t>(rank) /
                                    static_cast<int64_t>(pairs.size()));
  }
}

Result<size_t> AntiEntropy::repair(uint32_t partition) {
  if (partition >= homes_.size()) {
    return Status::invalid_argument("repair: partition " + std::to_string(partition) +
                                    " is out of range (the ring has " +
                                    std::to_string(homes_.size()) + ")");
  }
  const auto& h = homes_[partition];
  if (std::find(h.begin(), h.end(), self_) == h.end()) {
    return Status::failed_precondition("repair: " + self_ + " is not a home replica of partition " +
                                       std::to_string(partition));
  }
  size_t queued = 0;
  for (const NodeId& peer : h) {
    if (peer == self_ || !is_up(peer)) continue;
    const Pair pair{partition, peer};
    ++queued;
    // A round of the pair running now answers the repair.
    auto running = std::find_if(rounds_.begin(), rounds_.end(),
                                [&pair](const auto& entry) { return entry.second.pair == pair; });
    if (running != rounds_.end()) {
      running->second.forced = running->second.result.forced = true;
      continue;
    }
    if (std::find(forced_.begin(), forced_.end(), pair) == forced_.end()) forced_.push_back(pair);
  }
  return queued;
}

void AntiEntropy::set_joining(const std::vector<std::vector<NodeId>>& joining) {
  joining_ = joining;
}

bool AntiEntropy::is_joining(uint32_t partition, const NodeId& id) const {
  if (partition >= joining_.size()) return false;
  const auto& j = joining_[partition];
  return std::find(j.begin(), j.end(), id) != j.end();
}

Result<size_t> AntiEntropy::stream(uint32_t partition, const std::vector<NodeId>& peers) {
  if (partition >= homes_.size()) {
    return Status::invalid_argument("stream: partition " + std::to_string(partition) +
                                    " is out of range (the ring has " +
                                    std::to_string(homes_.size()) + ")");
  }
  const auto& h = homes_[partition];
  if (std::find(h.begin(), h.end(), self_) == h.end()) {
    return Status::failed_precondition("stream: " + self_ + " is not a home replica of partition " +
                                       std::to_string(partition));
  }
  for (const NodeId& peer : peers) {
    if (peer == self_ || std::find(h.begin(), h.end(), peer) == h.end()) {
      return Status::invalid_argument("stream: " + peer + " is not another home replica of " +
                                      "partition " + std::to_string(partition));
    }
  }
  for (const NodeId& peer : peers) streams_.emplace_back(partition, peer);
  return peers.size();
}

uint64_t AntiEntropy::send(Round& round, uint64_t id, AeMessage message, MonoTime now) {
  const uint64_t req = next_id_++ | kRequestBit;
  std::visit([req](auto& m) { m.req = req; }, message);
  pending_[req] = Pending{id, now + options_.request_timeout, {}};
  round.awaiting = req;
  charge(round, wire_bytes(message));
  outbox_.push_back(AeOutgoing{round.pair.second, std::move(message)});
  return req;
}

void AntiEntropy::start(const Pair& pair, bool forced, MonoTime now, bool stream) {
  const uint64_t id = next_id_++;
  Round& r = rounds_[id];
  r.pair = pair;
  r.forced = forced;
  r.stream = r.result.stream = stream;
  if (stream) ++stream_rounds_;
  r.started_mono = now;
  r.result.partition = pair.first;
  r.result.peer = pair.second;
  r.result.forced = forced;
  r.result.started = clock_.wall_now();
  ++counters_.rounds_started;
  // Taken before the digest: every change logged up to this seq is in it.
  r.start_point = SyncPoint{store_.last_seq(pair.first), r.result.started};
  Result<store::PartitionDigest> mine = store_.digest(pair.first);
  if (!mine.ok()) {
    finish(id, mine.status(), now);
    return;
  }
  auto completed = completed_req_.find(pair);
  AeDigest d{0,
             pair.first,
             mine->root,
             mine->entries,
             completed != completed_req_.end() ? completed->second : 0,
             store_.purge_horizon(pair.first).hlc_below};
  r.digest_req = send(r, id, std::move(d), now);
}

void AntiEntropy::record_sync(const Pair& pair, SyncPoint point) {
  if (!known_since_.contains(pair)) return;  // not home replicas of it together (any more)
  SyncPoint& sp = sync_points_[pair];
  if (point.seq < sp.seq) return;
  sp.seq = point.seq;
  sp.at = std::max(sp.at, point.at);
  update_horizon(pair.first);
}

std::optional<store::PurgeHorizon> AntiEntropy::purge_horizon(uint32_t partition,
                                                              WallTime now) const {
  if (partition >= homes_.size()) return std::nullopt;
  const auto& h = homes_[partition];
  if (std::find(h.begin(), h.end(), self_) == h.end()) return std::nullopt;
  const int64_t margin = options_.horizon_margin.count();
  const int64_t gone_before = now.ms - options_.tombstone_grace.count();
  int64_t hlc_ms = now.ms - margin;
  uint64_t seq = std::numeric_limits<uint64_t>::max();
  for (const NodeId& peer : h) {
    if (peer == self_) continue;
    const Pair pair{partition, peer};
    auto sp = sync_points_.find(pair);
    if (sp != sync_points_.end() && sp->second.at.ms > gone_before) {
      hlc_ms = std::min(hlc_ms, sp->second.at.ms - margin);
      seq = std::min(seq, sp->second.seq);
      continue;
    }
    auto known = known_since_.find(pair);
    if (known == known_since_.end() || known->second.ms > gone_before) return std::nullopt;
    hlc_ms = std::min(hlc_ms, gone_before);  // gone for good: the grace is the limit
  }
  if (hlc_ms <= 0) return std::nullopt;
  uint64_t hlc = HybridClock::pack(hlc_ms, 0);
  if (hold_.has_value()) {
    if (*hold_ == 0) return std::nullopt;  // a member's hints hold every purge back
    hlc = std::min(hlc, *hold_);
  }
  return store::PurgeHorizon{hlc, seq};
}

void AntiEntropy::update_horizon(uint32_t partition) {
  if (auto h = purge_horizon(partition, clock_.wall_now())) {
    store_.set_purge_horizon(partition, *h);
  }
}

void AntiEntropy::keep(RoundResult result) {
  if (result.forced) forced_results_.push_back(result);
  results_.push_back(std::move(result));
  if (results_.size() > options_.results_kept) results_.pop_front();
}

std::vector<AntiEntropy::RoundResult> AntiEntropy::take_forced_results() {
  return std::exchange(forced_results_, {});
}

void AntiEntropy::start_due(MonoTime now) {
  auto running = [this](const Pair& pair) -> Round* {
    for (auto& [id, r] : rounds_) {
      if (r.pair == pair) return &r;
    }
    return nullptr;
  };
  while (rounds_.size() - stream_rounds_ < options_.max_rounds && !forced_.empty()) {
    const Pair pair = forced_.front();
    forced_.pop_front();
    if (Round* r = running(pair)) {  // the scheduled round running now answers the repair
      r->forced = r->result.forced = true;
      continue;
    }
    if (!is_up(pair.second)) {
      RoundResult result;
      result.partition = pair.first;
      result.peer = pair.second;
      result.forced = true;
      result.started = clock_.wall_now();
      result.status = Status::unavailable("repair: " + pair.second + " is down");
      keep(std::move(result));
      continue;
    }
    start(pair, true, now);
  }
  // Streams wait for a round of their pair running now to end, then start their own.
  for (size_t n = streams_.size(); n > 0 && stream_rounds_ < options_.max_stream_rounds; --n) {
    const Pair pair = streams_.front();
    streams_.pop_front();
    if (running(pair) != nullptr) {
      streams_.push_back(pair);
      continue;
    }
    if (!is_up(pair.second)) {
      RoundResult result;
      result.partition = pair.first;
      result.peer = pair.second;
      result.forced = result.stream = true;
      result.started = clock_.wall_now();
      result.status = Status::unavailable("stream: " + pair.second + " is down");
      keep(std::move(result));
      continue;
    }
    start(pair, true, now, true);
  }
  while (rounds_.size() - stream_rounds_ < options_.max_rounds) {
    const std::optional<DueSchedule::Due> best =
        due_.earliest([this](const NodeId& peer) { return is_up(peer); },
                      [&](const Pair& pair) { return running(pair) != nullptr; });
    if (!best || best->at > now) return;
    const Pair pair = best->pair;
    // Due again an interval after this start whatever happens; finish() moves it sooner
    // for a failure.
    due_.set(pair, now + options_.interval);
    start(pair, false, now);
  }
}

AeDigestReply AntiEntropy::answer_digest(const NodeId& from, const AeDigest& d) {
  AeDigestReply reply;
  reply.req = d.req;
  const Pair pair{d.partition, from};
  // The round this node answered last for the pair completed: what it held then is held
  // by the initiator now.
  auto answered = answered_.find(pair);
  if (answered != answered_.end() && d.completed != 0 && answered->second.req == d.completed) {
    const SyncPoint point = answered->second.point;
    answered_.erase(answered);
    record_sync(pair, point);
  }
  const SyncPoint point{store_.last_seq(d.partition), clock_.wall_now()};  // before the digest
  Result<store::PartitionDigest> mine = store_.digest(d.partition);
  if (!mine.ok()) {
    reply.status = mine.status();
    return reply;
  }
  reply.horizon = store_.purge_horizon(d.partition).hlc_below;
  if (mine->root == d.root && mine->entries == d.entries) {
    reply.in_sync = true;
    record_sync(pair, point);
    return reply;
  }
  if (known_since_.contains(pair)) answered_[pair] = Answered{d.req, point};
  reply.leaves.assign(mine->leaves.begin(), mine->leaves.end());
  return reply;
}

AeEntriesReply AntiEntropy::answer_entries(const AeEntriesRequest& q) {
  AeEntriesReply reply;
  reply.req = q.req;
  if (q.leaves.empty() || q.leaves.size() > store::kDigestLeaves ||
      !std::is_sorted(q.leaves.begin(), q.leaves.end(), std::less_equal<>())) {
    // less_equal as the order: is_sorted then also refuses duplicates.
    reply.status = Status::invalid_argument(
        "anti-entropy: an entries request must name 1 to 1024 leaves in ascending order, "
        "without duplicates (got " +
        std::to_string(q.leaves.size()) + ")");
    return reply;
  }
  auto raw = store_.digest_entries(q.partition, q.leaves, options_.page_entries + 1);
  if (!raw.ok()) {
    reply.status = raw.status();
    return reply;
  }
  size_t leaf_start = 0;
  uint32_t leaf = 0;
  uint64_t bytes = 0;
  std::optional<uint32_t> cut;
  for (size_t i = 0; i < raw->size(); ++i) {
    const uint32_t l = store::digest_leaf((*raw)[i].key);
    if (i == 0 || l != leaf) {
      leaf = l;
      leaf_start = i;
    }
    bytes += entry_bytes((*raw)[i]);
    if (i + 1 > options_.page_entries || bytes > options_.page_bytes) {
      cut = l;
      break;
    }
  }
  if (!cut) {
    reply.covered = q.leaves.size();
    reply.entries = std::move(*raw);
    return reply;
  }
  if (*cut != q.leaves.front()) {
    raw->resize(leaf_start);
    reply.covered = static_cast<size_t>(std::lower_bound(q.leaves.begin(), q.leaves.end(), *cut) -
                                        q.leaves.begin());
    reply.entries = std::move(*raw);
    return reply;
  }
  // The first leaf alone is over the page: it goes whole, up to kLeafEntriesMax.
  auto alone = store_.digest_entries(q.partition, {*cut}, kLeafEntriesMax + 1);
  if (!alone.ok()) {
    reply.status = alone.status();
    return reply;
  }
  if (alone->size() > kLeafEntriesMax) {
    reply.status = Status::failed_precondition("anti-entropy: leaf " + std::to_string(*cut) +
                                               " of partition " + std::to_string(q.partition) +
                                               " holds more than " +
                                               std::to_string(kLeafEntriesMax) + " entries");
    return reply;
  }
  reply.covered = 1;
  reply.entries = std::move(*alone);
  return reply;
}

void AntiEntropy::on_message(const NodeId& from, const AeMessage& message, MonoTime now) {
  last_now_ = now;
  if (const auto* d = std::get_if<AeDigest>(&message)) {
    ++counters_.answered;
    outbox_.push_back(AeOutgoing{from, answer_digest(from, *d)});
    return;
  }
  if (const auto* q = std::get_if<AeEntriesRequest>(&message)) {
    ++counters_.answered;
    outbox_.push_back(AeOutgoing{from, answer_entries(*q)});
    return;
  }
  const uint64_t req = std::visit([](const auto& m) { return m.req; }, message);
  auto p = pending_.find(req);
  if (p == pending_.end()) return;  // late: its round is over
  const uint64_t id = p->second.round;
  auto it = rounds_.find(id);
  if (it == rounds_.end() || it->second.pair.second != from || it->second.awaiting != req) return;
  Round& r = it->second;
  pending_.erase(p);
  r.awaiting = 0;
  charge(r, wire_bytes(message));
  if (const auto* d = std::get_if<AeDigestReply>(&message)) {
    if (!d->status.ok()) {
      finish(id, d->status, now);
      return;
    }
    on_digest_reply(id, r, *d, now);
    return;
  }
  const auto& e = std::get<AeEntriesReply>(message);
  auto asked = asked_.find(id);
  if (asked == asked_.end()) return;
  const AeEntriesRequest q = std::move(asked->second);
  asked_.erase(asked);
  if (!e.status.ok()) {
    finish(id, e.status, now);
    return;
  }
  on_entries_reply(id, r, q, e, now);
}

void AntiEntropy::on_digest_reply(uint64_t id, Round& r, const AeDigestReply& reply, MonoTime now) {
  r.peer_horizon = reply.horizon;
  if (reply.in_sync) {
    r.result.in_sync = true;
    finish(id, Status::ok_status(), now);
    return;
  }
  if (reply.leaves.size() != store::kDigestLeaves) {
    finish(id,
           Status::invalid_argument("anti-entropy: " + r.pair.second + " answered " +
                                    std::to_string(reply.leaves.size()) + " leaves, not 1024"),
           now);
    return;
  }
  Result<store::PartitionDigest> mine = store_.digest(r.pair.first);
  if (!mine.ok()) {
    finish(id, mine.status(), now);
    return;
  }
  for (uint32_t i = 0; i < store::kDigestLeaves; ++i) {
    if (mine->leaves[i] != reply.leaves[i]) r.leaves.push_back(i);
  }
  r.result.leaves_differing = r.leaves.size();
  advance(id, r, now);
}

bool AntiEntropy::one_sided_moves(const Version& v) const {
  const int64_t floor =
      clock_.wall_now().ms - options_.tombstone_grace.count() + options_.clock_margin.count();
  return HybridClock::physical_ms(v.hlc) >= floor;
}

void AntiEntropy::on_entries_reply(uint64_t id, Round& r, const AeEntriesRequest& asked,
                                   const AeEntriesReply& reply, MonoTime now) {
  if (reply.covered == 0 || reply.covered > asked.leaves.size()) {
    finish(id,
           Status::invalid_argument("anti-entropy: " + r.pair.second + " covered " +
                                    std::to_string(reply.covered) + " of " +
                                    std::to_string(asked.leaves.size()) + " leaves asked"),
           now);
    return;
  }
  const std::vector<uint32_t> covered(asked.leaves.begin(),
                                      asked.leaves.begin() + static_cast<ptrdiff_t>(reply.covered));
  // The leaves not covered are asked again first.
  for (size_t i = asked.leaves.size(); i > reply.covered; --i) {
    r.leaves.push_front(asked.leaves[i - 1]);
  }
  std::map<std::string, const store::DigestEntry*, std::less<>> theirs;
  for (const store::DigestEntry& e : reply.entries) {
    if (!std::binary_search(covered.begin(), covered.end(), store::digest_leaf(e.key))) {
      finish(id,
             Status::invalid_argument("anti-entropy: " + r.pair.second +
                                      " answered an entry outside the leaves it covered"),
             now);
      return;
    }
    theirs[e.key] = &e;
  }
  auto mine = store_.digest_entries(r.pair.first, covered, kLeafEntriesMax);
  if (!mine.ok()) {
    finish(id, mine.status(), now);
    return;
  }
  if (mine->size() >= kLeafEntriesMax) {
    finish(id, Status::failed_precondition("anti-entropy: too many entries in one page"), now);
    return;
  }
  // A tombstone below the purge horizon of the side that lacks it does not move: that side
  // purged it (or never had the key, which is as good: it holds relayed writes below the
  // horizon out, and home replicas hold nothing such a tombstone superseded).
  const uint64_t my_horizon = store_.purge_horizon(r.pair.first).hlc_below;
  const WallTime wall = clock_.wall_now();
  auto decide_one_sided = [&](const store::DigestEntry& e, bool push) {
    const bool tombstone = e.deleted || (e.expiry.ms != 0 && e.expiry <= wall);
    // A taker of the partition lacks what it never held: it moves to it whatever its age.
    const bool to_taker = is_joining(r.pair.first, push ? r.pair.second : self_);
    if (tombstone && e.version.hlc < (push ? r.peer_horizon : my_horizon)) {
      ++r.result.skipped;
    } else if (to_taker || one_sided_moves(e.version)) {
      r.transfers.push_back(Transfer{e.key, push});
    } else {
      ++r.result.skipped;
    }
  };
  for (const store::DigestEntry& e : *mine) {
    auto t = theirs.find(e.key);
    if (t == theirs.end()) {
      decide_one_sided(e, true);
      continue;
    }
    const Version& v = t->second->version;
    if (v > e.version) {
      r.transfers.push_back(Transfer{e.key, false});
    } else if (e.version > v) {
      r.transfers.push_back(Transfer{e.key, true});
    }
    // Equal versions: the same write (an expired row and its tombstone are one entry).
    theirs.erase(t);
  }
  for (const auto& [key, e] : theirs) decide_one_sided(*e, false);
  advance(id, r, now);
}

void AntiEntropy::charge(Round& r, uint64_t bytes) {
  r.result.bytes += bytes;
  if (options_.rate_bytes > 0) tokens_ -= static_cast<double>(bytes);
}

bool AntiEntropy::tokens_left(MonoTime now) {
  if (options_.rate_bytes == 0) return true;
  const auto rate = static_cast<double>(options_.rate_bytes);
  if (now > tokens_at_) {
    const double seconds = std::chrono::duration<double>(now - tokens_at_).count();
    tokens_ = std::min(rate, tokens_ + rate * seconds);  // a second's worth at most
  }
  tokens_at_ = std::max(tokens_at_, now);
  return tokens_ > 0;
}

void AntiEntropy::advance(uint64_t id, Round& r, MonoTime now) {
  while (r.transfers_inflight < options_.max_transfers && !r.transfers.empty()) {
    if (!tokens_left(now)) {  // tick() goes on once the bucket has refilled
      throttled_.insert(id);
      return;
    }
    Transfer t = std::move(r.transfers.front());
    r.transfers.pop_front();
    const uint64_t req = next_id_++ | kRequestBit;
    if (t.push) {
      Result<store::Record> rec = store_.read(t.key, clock_.wall_now());
      if (rec.status().code() == Code::kNotFound) continue;  // purged meanwhile
      if (!rec.ok()) {
        finish(id, rec.status(), now);
        return;
      }
      charge(r, 8 + record_bytes(*rec));
      WriteRequest w;
      w.req = req;
      w.record = std::make_shared<store::Record>(std::move(*rec));
      w.repair = true;
      peer_outbox_.push_back(PeerOutgoing{r.pair.second, std::move(w)});
    } else {
      charge(r, 8 + t.key.size());
      peer_outbox_.push_back(PeerOutgoing{r.pair.second, ReadRequest{req, t.key, false}});
    }
    pending_[req] = Pending{id, now + options_.request_timeout, std::move(t.key)};
    ++r.transfers_inflight;
  }
  if (r.transfers_inflight > 0 || !r.transfers.empty() || r.awaiting != 0) return;
  if (r.leaves.empty()) {
    finish(id, Status::ok_status(), now);
    return;
  }
  if (!tokens_left(now)) {
    throttled_.insert(id);
    return;
  }
  AeEntriesRequest q;
  q.partition = r.pair.first;
  while (!r.leaves.empty() && q.leaves.size() < options_.page_leaves) {
    q.leaves.push_back(r.leaves.front());
    r.leaves.pop_front();
  }
  asked_[id] = q;
  send(r, id, std::move(q), now);
}

bool AntiEntropy::on_read_reply(const NodeId& from, const ReadReply& reply, MonoTime now) {
  if (!is_anti_entropy_reply(reply.req)) return false;
  last_now_ = now;
  auto p = pending_.find(reply.req);
  if (p == pending_.end() || p->second.applying) return true;  // late, or a duplicate
  const uint64_t id = p->second.round;
  auto it = rounds_.find(id);
  if (it == rounds_.end() || it->second.pair.second != from) return true;
  Round& r = it->second;
  charge(r, 8 + (reply.record ? record_bytes(*reply.record) : 0));
  if (!reply.status.ok()) {
    finish(id, reply.status, now);
    return true;
  }
  if (!reply.record) {  // purged there meanwhile: nothing to take
    pending_.erase(p);
    --r.transfers_inflight;
    advance(id, r, now);
    return true;
  }
  if (reply.record->key != p->second.key) {
    finish(id, Status::invalid_argument("anti-entropy: " + from + " answered another key"), now);
    return true;
  }
  // The pulled record is applied through this node's own replica side, as a repair write
  // to itself, so that it goes where every applied change goes (the clock guard, the read
  // cache, the change feed). The pull stays pending under the same timeout while it is
  // applied, so that a store that never completes fails the round instead of holding its
  // slot.
  p->second.applying = true;
  p->second.deadline = now + options_.request_timeout;
  WriteRequest w;
  w.req = reply.req;
  w.record = std::make_shared<store::Record>(*reply.record);
  w.repair = true;
  peer_outbox_.push_back(PeerOutgoing{self_, std::move(w)});
  return true;
}

bool AntiEntropy::on_write_reply(const NodeId& from, const WriteReply& reply, MonoTime now) {
  if (!is_anti_entropy_reply(reply.req)) return false;
  last_now_ = now;
  auto p = pending_.find(reply.req);
  if (p == pending_.end()) return true;
  const uint64_t id = p->second.round;
  auto it = rounds_.find(id);
  if (it == rounds_.end()) return true;
  const bool pulled = p->second.applying;
  // A push is answered by the peer, a pull's apply by this node's own replica side.
  if (from != (pulled ? self_ : it->second.pair.second)) return true;
  pending_.erase(p);
  Round& r = it->second;
  if (!pulled) charge(r, 25);
  --r.transfers_inflight;
  if (pulled && reply.status.code() == Code::kFailedPrecondition) {
    // This node's clock guard refused the record's version (too far ahead of its clock):
    // it never takes it, so retrying cannot help. The round goes on, and completes without
    // a sync point (this node does not hold what the peer held).
    ++r.result.refused;
    advance(id, r, now);
    return true;
  }
  if (!reply.status.ok()) {
    finish(id, reply.status, now);
    return true;
  }
  ++(pulled ? r.result.pulled : r.result.pushed);
  advance(id, r, now);
  return true;
}

void AntiEntropy::finish(uint64_t id, Status status, MonoTime now) {
  auto it = rounds_.find(id);
  if (it == rounds_.end()) return;
  Round& r = it->second;
  RoundResult result = std::move(r.result);
  result.status = std::move(status);
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(now - r.started_mono);
  for (auto p = pending_.begin(); p != pending_.end();) {
    p = p->second.round == id ? pending_.erase(p) : std::next(p);
  }
  asked_.erase(id);
  counters_.bytes += result.bytes;
  const Pair pair = r.pair;
  const SyncPoint start_point = r.start_point;
  const uint64_t digest_req = r.digest_req;
  if (r.stream) --stream_rounds_;
  rounds_.erase(it);
  if (result.status.ok()) {
    counters_.pushed += result.pushed;
    counters_.pulled += result.pulled;
    counters_.skipped += result.skipped;
    if (result.in_sync) {
      ++counters_.rounds_in_sync;
    } else {
      ++counters_.rounds_repaired;
    }
    if (result.refused == 0) {
      completed_req_[pair] = digest_req;
      record_sync(pair, start_point);
      if (synced_) synced_(pair.second, pair.first);
    }
  } else {
    ++counters_.rounds_failed;
    if (const std::optional<MonoTime> due = due_.find(pair)) {
      due_.set(pair, std::min(*due, now + options_.retry_after));
    }
  }
  keep(std::move(result));
}

void AntiEntropy::tick(MonoTime now) {
  last_now_ = now;
  if (!throttled_.empty() && tokens_left(now)) {
    for (uint64_t id : std::exchange(throttled_, {})) {
      auto it = rounds_.find(id);
      if (it != rounds_.end()) advance(id, it->second, now);
    }
  }
  if (now >= next_refresh_) {
    next_refresh_ = now + options_.horizon_refresh;
    for (uint32_t p = 0; p < homes_.size(); ++p) update_horizon(p);
  }
  while (!pending_.empty()) {
    auto late = std::min_element(
        pending_.begin(), pending_.end(),
        [](const auto& a, const auto& b) { return a.second.deadline < b.second.deadline; });
    if (late->second.deadline > now) break;
    const uint64_t req = late->first;
    const uint64_t id = late->second.round;
    auto it = rounds_.find(id);
    const NodeId peer = it != rounds_.end() ? it->second.pair.second : NodeId{};
    finish(id,
           Status::timeout("anti-entropy: " + peer + " did not answer within " +
                           std::to_string(options_.request_timeout.count()) + " ms"),
           now);
    pending_.erase(req);  // a round already gone left it behind
  }
  start_due(now);
}

MonoTime AntiEntropy::next_deadline() const {
  MonoTime next = next_refresh_;
  if (!throttled_.empty()) {
    // When the bucket is above zero again.
    const double wait_s =
        tokens_ > 0 ? 0.0 : (1.0 - tokens_) / static_cast<double>(options_.rate_bytes);
    next = std::min(next, tokens_at_ + std::chrono::duration_cast<MonoTime::duration>(
                                           std::chrono::duration<double>(wait_s)));
  }
  for (const auto& [req, p] : pending_) next = std::min(next, p.deadline);
  auto running = [this](const Pair& pair) {
    for (const auto& [id, r] : rounds_) {
      if (r.pair == pair) return true;
    }
    return false;
  };
  if (stream_rounds_ < options_.max_stream_rounds) {
    for (const Pair& pair : streams_) {
      if (running(pair)) continue;
      next = std::min(next, last_now_);
      break;
    }
  }
  if (rounds_.size() - stream_rounds_ < options_.max_rounds) {
    if (!forced_.empty()) next = std::min(next, last_now_);
    const std::optional<DueSchedule::Due> due =
        due_.earliest([this](const NodeId& peer) { return is_up(peer); }, running);
    if (due) next = std::min(next, due->at);
  }
  return next;
}

std::vector<AeOutgoing> AntiEntropy::take_messages() { return std::exchange(outbox_, {}); }
std::vector<PeerOutgoing> AntiEntropy::take_peer_messages() {
  return std::exchange(peer_outbox_, {});
}

}  // namespace edgekv::cluster
