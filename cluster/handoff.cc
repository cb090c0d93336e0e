#include "cluster/handoff.h"

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "common/assert.h"
#include "common/text.h"

namespace edgekv::cluster {
namespace {

constexpr std::string_view kMarksHeader = "edgekv-repair-marks 1";
// What one mark's owner and reason may take in the file: a node id's bound and a line of
// explanation.
constexpr size_t kMarkOwnerMax = 256;
constexpr size_t kMarkReasonMax = 1024;
constexpr size_t kMarksMax = 1 << 20;

std::string seconds_text(std::chrono::milliseconds d) {
  return std::to_string(d.count() / 1000) + " s";
}

}  // namespace

std::string encode_marks(const std::vector<RepairMark>& marks) {
  std::string out(kMarksHeader);
  out.push_back('\n');
  for (const RepairMark& m : marks) {
    out += std::to_string(m.partition) + ' ' + std::to_string(m.since.ms) + ' ' +
           std::to_string(m.hints) + ' ' + to_hex(m.owner) + ' ' + to_hex(m.reason) + '\n';
  }
  out += "end " + std::to_string(marks.size()) + '\n';
  return out;
}

Result<std::vector<RepairMark>> decode_marks(std::string_view bytes) {
  std::vector<std::string_view> lines;
  for (size_t start = 0;;) {
    const size_t at = bytes.find('\n', start);
    lines.push_back(bytes.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  if (lines.empty() || lines[0] != kMarksHeader) {
    return Status::invalid_argument("repair marks: the first line is not \"" +
                                    std::string(kMarksHeader) + "\"");
  }
  // A file cut short anywhere is refused: within a line, that line lacks its newline;
  // between lines, the closing line is missing or counts other marks.
  if (!lines.back().empty()) {
    return Status::invalid_argument("repair marks: line " + std::to_string(lines.size()) +
                                    ": does not end with a newline; the file is cut short");
  }
  lines.pop_back();  // what follows the last newline
  const size_t marks = lines.size() >= 2 ? lines.size() - 2 : 0;
  uint64_t closing = 0;
  if (lines.size() < 2 || !lines.back().starts_with("end ") ||
      !parse_u64(lines.back().substr(4), &closing) || closing != marks) {
    return Status::invalid_argument(
        "repair marks: line " + std::to_string(std::max<size_t>(lines.size(), 2)) +
        ": is not \"end " + std::to_string(marks) + "\", closing the marks above it; the file " +
        "is cut short or damaged");
  }
  lines.pop_back();
  if (lines.size() - 1 > kMarksMax) {
    return Status::invalid_argument("repair marks: more than " + std::to_string(kMarksMax) +
                                    " marks");
  }
  std::vector<RepairMark> out;
  std::set<std::pair<std::string, uint32_t>> seen;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string where = "repair marks: line " + std::to_string(i + 1) + ": ";
    std::vector<std::string_view> f = fields(lines[i]);
    if (f.size() != 5) {
      return Status::invalid_argument(where + "has " + std::to_string(f.size()) +
                                      " fields, not 5 (partition, since, hints, owner, reason)");
    }
    RepairMark m;
    uint64_t number = 0;
    if (!parse_u64(f[0], &number) || number > UINT32_MAX) {
      return Status::invalid_argument(where + "partition is not a number");
    }
    m.partition = static_cast<uint32_t>(number);
    if (!parse_u64(f[1], &number) || number > static_cast<uint64_t>(INT64_MAX)) {
      return Status::invalid_argument(where + "time is not a non-negative number");
    }
    m.since.ms = static_cast<int64_t>(number);
    if (!parse_u64(f[2], &m.hints)) {
      return Status::invalid_argument(where + "hint count is not a number");
    }
    if (f[3].size() > 2 * kMarkOwnerMax || !from_hex(f[3], &m.owner) || m.owner.empty()) {
      return Status::invalid_argument(where + "owner is not a node id in hex");
    }
    if (f[4].size() > 2 * kMarkReasonMax || !from_hex(f[4], &m.reason)) {
      return Status::invalid_argument(where + "reason is not text in hex");
    }
    if (!seen.emplace(m.owner, m.partition).second) {
      return Status::invalid_argument(where + "marks partition " + std::to_string(m.partition) +
                                      " for " + m.owner + " a second time");
    }
    out.push_back(std::move(m));
  }
  return out;
}

Handoff::Handoff(NodeId self, store::Store& store, const Clock& clock, HandoffOptions options,
                 Post post, PartitionOf partition_of, Loaded loaded)
    : self_(std::move(self)),
      store_(store),
      clock_(clock),
      options_(options),
      post_(std::move(post)),
      partition_of_(std::move(partition_of)),
      loaded_(std::move(loaded)) {
  EDGEKV_ASSERT(post_ && partition_of_);
}

Handoff::~Handoff() = default;

void Handoff::set_member(const NodeId& id, bool up, MonoTime now) {
  if (id == self_) return;
  auto [it, added] = targets_.try_emplace(id);
  Target& t = it->second;
  if (added) {
    t.rate = static_cast<double>(options_.delivery_rate);
    t.refilled = now;
    // First seen down: the window counts from now (this node cannot know more).
    t.down_since = now;
  }
  if (t.up == up && !added) return;
  t.up = up;
  // The owner's marks: asked again from resume_delay after it is back, not while it is down.
  for (auto a = asks_.lower_bound({id, 0}); a != asks_.end() && a->first.first == id; ++a) {
    drop_ask(a->second);
    a->second.backoff = std::chrono::milliseconds(0);
    a->second.not_before = MonoTime{};
  }
  t.asks_after = added ? now : now + options_.resume_delay;
  ask_wake_ = MonoTime{};
  if (!up) t.down_since = now;
  // A re-homed owner's hints go to the partitions' home replicas, whatever its liveness.
  if (t.rehomed) return;
  if (!up) {
    // What was read but not sent waits for the owner's return; what is in flight times out.
    t.queued.clear();
    t.cursor = Version{};
    t.exhausted = false;
    return;
  }
  // Back: deliver from the first hint, at the full rate, once the peer channel had
  // resume_delay to connect again.
  t.cursor = Version{};
  t.exhausted = false;
  t.rescan = false;
  t.rate = static_cast<double>(options_.delivery_rate);
  t.backoff = std::chrono::milliseconds(0);
  t.not_before = t.wake = added ? now : now + options_.resume_delay;
}

void Handoff::forget_member(const NodeId& id) {
  auto it = targets_.find(id);
  if (it == targets_.end()) return;
  if (it->second.rehomed) {
    // Its hints still go to the homes, whatever gossip knows of it.
    it->second.up = false;
    return;
  }
  targets_.erase(it);
  for (auto a = asks_.lower_bound({id, 0}); a != asks_.end() && a->first.first == id; ++a) {
    drop_ask(a->second);
  }
  // Its hints in flight go with it: their replies, if they come, find no request and are
  // dropped, and their timeouts are not counted against a target of the same id reported
  // again later.
  for (auto s = inflight_.begin(); s != inflight_.end();) {
    if (s->second.owner == id) {
      timers_.erase({s->second.deadline, s->first});
      if (s->second.group != 0) groups_.erase(s->second.group);
      s = inflight_.erase(s);
    } else {
      ++s;
    }
  }
}

void Handoff::set_placement(const Placement& current, const std::optional<Placement>& pending,
                            MonoTime now) {
  auto members = [this] {
    std::set<NodeId> out;
    if (current_.has_value()) out.insert(current_->members().begin(), current_->members().end());
    if (pending_.has_value()) out.insert(pending_->members().begin(), pending_->members().end());
    return out;
  };
  const bool first = !current_.has_value();
  const std::set<NodeId> before = members();
  current_ = current;
  pending_ = pending;
  const bool changed = first || members() != before;
  for (auto& [owner, t] : targets_) {
    if (!t.rehomed || unlisted(owner)) continue;
    // Listed again (it joined anew): its hints go to it, as an owner's.
    t.rehomed = false;
    t.queued.clear();
    t.cursor = Version{};
    t.exhausted = false;
    t.rescan = t.inflight > 0;
    t.not_before = t.wake = now;
  }
  if (changed) find_unlisted(now);
}

bool Handoff::unlisted(const NodeId& owner) const {
  if (!current_.has_value() || owner == self_) return false;
  if (current_->is_member(owner) || (pending_.has_value() && pending_->is_member(owner))) {
    return false;
  }
  // A new data directory's own table knows no cluster yet: it says nothing of the owners.
  const std::vector<NodeId>& m = current_->members();
  return !(current_->epoch() <= 1 &&
           std::all_of(m.begin(), m.end(), [this](const NodeId& id) { return id == self_; }));
}

void Handoff::find_unlisted(MonoTime now) {
  owners_look_ = MonoTime::max();
  Result<std::vector<store::HintOwnerSummary>> owners = store_.hint_owners();
  if (!owners.ok()) {
    if (owners.status().code() == Code::kFailedPrecondition) return;  // a store keeping none
    ++counters_.read_failures;
    owners_look_ = now + options_.idle_check;
    return;
  }
  for (const store::HintOwnerSummary& o : *owners) {
    if (o.hints > 0 && unlisted(o.owner)) rehome(o.owner, now);
  }
}

void Handoff::rehome(const NodeId& owner, MonoTime now) {
  auto [it, added] = targets_.try_emplace(owner);
  Target& t = it->second;
  if (added) {
    t.refilled = now;
    t.down_since = now;
  }
  if (t.rehomed) return;
  t.rehomed = true;
  t.rehomed_since = now;
  t.queued.clear();
  t.cursor = Version{};
  t.exhausted = false;
  // Hints in flight to the owner itself are answered (or time out) first.
  t.rescan = t.inflight > 0;
  t.rate = static_cast<double>(options_.delivery_rate);
  t.backoff = std::chrono::milliseconds(0);
  t.not_before = t.wake = now;
}

Handoff::Homes Handoff::homes_of(uint32_t partition, const Target& t, MonoTime now) const {
  Homes out;
  if (!current_.has_value() || partition >= current_->partitions()) {
    out.hold = true;
    return out;
  }
  std::vector<NodeId> homes = current_->home(partition);
  if (pending_.has_value() && partition < pending_->partitions()) {
    for (NodeId& taker : pending_->home(partition)) {
      if (std::find(homes.begin(), homes.end(), taker) == homes.end()) {
        homes.push_back(std::move(taker));
      }
    }
  }
  for (NodeId& home : homes) {
    auto it = targets_.find(home);
    if (home == self_ || (it != targets_.end() && it->second.up)) {
      out.send.push_back(std::move(home));
      continue;
    }
    // Never reported by gossip: down, as far as this node knows, since the re-homing began.
    const MonoTime since = it != targets_.end() ? it->second.down_since : t.rehomed_since;
    if (now - since > options_.hint_window) {
      out.lapsed.push_back(std::move(home));
    } else {
      out.hold = true;
    }
  }
  if (out.send.empty()) out.hold = true;  // nobody would hold it yet
  return out;
}

bool Handoff::send_rehomed(const NodeId& owner, Target& t, MonoTime now) {
  const store::Record& front = t.queued.front();
  const uint64_t bytes = front.key.size() + front.value.size();
  Homes homes = homes_of(partition_of_(front.key), t, now);
  if (homes.hold) {
    // Stays in the store, looked at again by the next pass. Looking costs what sending
    // would, so that passes over many held hints stay within the rate.
    ++counters_.rehome_held;
    t.tokens -= static_cast<double>(bytes);
    t.queued.pop_front();
    return true;
  }
  const size_t copies = homes.send.size();
  if (t.inflight > 0 && (t.inflight + copies > options_.max_inflight ||
                         t.inflight_bytes + bytes * copies > options_.max_inflight_bytes)) {
    return false;
  }
  auto record = std::make_shared<store::Record>(std::move(t.queued.front()));
  t.queued.pop_front();
  const uint64_t group = next_group_++;
  groups_.emplace(group, Group{copies, false, std::move(homes.lapsed)});
  t.busy_keys.insert(record->key);
  for (NodeId& to : homes.send) {
    const uint64_t req = kRequestBit | next_req_++;
    Sent sent{
        owner, to, group, record->key, record->version, bytes, now + options_.request_timeout};
    ++t.inflight;
    t.inflight_bytes += bytes;
    timers_.emplace(sent.deadline, req);
    inflight_.emplace(req, std::move(sent));
    ++counters_.rehome_sent;
    WriteRequest w;
    w.req = req;
    w.record = record;
    w.handoff = true;
    outbox_.push_back(PeerOutgoing{std::move(to), std::move(w)});
  }
  t.tokens -= static_cast<double>(bytes * copies);
  return true;
}

Status Handoff::admit(const NodeId& owner, std::string_view key) {
  if (unlisted(owner)) {
    // A coordinator on an older table still writes for it: the hint goes to the homes.
    rehome(owner, clock_.mono_now());
    return Status::ok_status();
  }
  auto it = targets_.find(owner);
  if (it == targets_.end() || it->second.up) return Status::ok_status();
  const auto down = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.mono_now() -
                                                                          it->second.down_since);
  if (down <= options_.hint_window) return Status::ok_status();
  ++counters_.window_refusals;
  const uint32_t partition = partition_of_(key);
  std::string why = "not keeping a hint for " + owner + ": down for " + seconds_text(down) +
                    ", past hint-window (" + seconds_text(options_.hint_window) + "); partition " +
                    std::to_string(partition) + " is marked for repair";
  mark(owner, key, why);
  return Status::unavailable(std::move(why));
}

void Handoff::refused(const NodeId& owner, std::string_view key, const Status& why) {
  ++counters_.store_refusals;
  if (!unlisted(owner)) {
    mark(owner, key, why.message());
    return;
  }
  // A removed owner is never asked: the partition's current home replicas are, each
  // comparing it with the others.
  const uint32_t partition = partition_of_(key);
  if (partition >= current_->partitions()) return;
  for (const NodeId& home : current_->home(partition)) {
    if (home != self_) mark(home, key, why.message() + " (a hint for " + owner + ", removed)");
  }
}

void Handoff::mark(const NodeId& owner, std::string_view key, const std::string& reason) {
  const uint32_t partition = partition_of_(key);
  auto [it, added] = marks_.try_emplace({owner, partition});
  RepairMark& m = it->second;
  if (added) {
    m.owner = owner;
    m.partition = partition;
    m.since = clock_.wall_now();
    m.reason = reason.substr(0, kMarkReasonMax);
    marks_changed_ = true;
    ask_wake_ = MonoTime{};
  }
  ++m.hints;
}

std::vector<RepairMark> Handoff::marks() const {
  std::vector<RepairMark> out;
  out.reserve(marks_.size());
  for (const auto& [id, m] : marks_) out.push_back(m);
  return out;
}

void Handoff::load_marks(std::vector<RepairMark> marks) {
  marks_.clear();
  asks_.clear();
  ask_reqs_.clear();
  ask_timers_.clear();
  ask_wake_ = MonoTime{};
  for (RepairMark& m : marks) {
    auto key = std::make_pair(m.owner, m.partition);
    marks_[key] = std::move(m);
  }
}

void Handoff::clear_mark(const NodeId& owner, uint32_t partition) {
  if (marks_.erase({owner, partition}) > 0) marks_changed_ = true;
  auto a = asks_.find({owner, partition});
  if (a != asks_.end()) {
    drop_ask(a->second);
    asks_.erase(a);
    ask_wake_ = MonoTime{};  // room for another ask
  }
}

void Handoff::drop_ask(Ask& a) {
  if (a.req == 0) return;
  ask_reqs_.erase(a.req);
  ask_timers_.erase({a.deadline, a.req});
  a.req = 0;
}

void Handoff::fail_ask(Ask& a, MonoTime now) {
  ++counters_.repair_asks_failed;
  a.backoff =
      std::clamp(a.backoff * 2, options_.repair_ask_backoff_min, options_.repair_ask_backoff_max);
  a.not_before = now + a.backoff;
}

void Handoff::ask_repairs(MonoTime now) {
  ask_wake_ = MonoTime::max();
  if (!options_.repair_asks) return;
  const auto wait = std::clamp<int64_t>(options_.repair_ask_wait.count(), 1, kMaxRepairAskWaitMs);
  for (const auto& [key, m] : marks_) {
    auto t = targets_.find(key.first);
    if (t == targets_.end() || !t->second.up) continue;  // looked at again when it is
    Ask& a = asks_[key];
    if (a.req != 0) continue;
    const MonoTime due = std::max(a.not_before, t->second.asks_after);
    if (now < due) {
      ask_wake_ = std::min(ask_wake_, due);
      continue;
    }
    if (ask_reqs_.size() >= options_.max_repair_asks) {
      ask_wake_ = MonoTime::max();  // an answer or a timeout frees room and looks again
      break;
    }
    a.req = kRequestBit | next_req_++;
    a.deadline = now + std::chrono::milliseconds(wait) + options_.request_timeout;
    a.hints = m.hints;
    ask_reqs_.emplace(a.req, key);
    ask_timers_.emplace(a.deadline, a.req);
    ++counters_.repair_asks_sent;
    outbox_.push_back(
        PeerOutgoing{key.first, RepairAsk{a.req, key.second, static_cast<uint32_t>(wait)}});
  }
}

bool Handoff::on_repair_reply(const NodeId& from, const RepairAskReply& reply, MonoTime now) {
  if (!is_handoff_reply(reply.req)) return false;
  auto it = ask_reqs_.find(reply.req);
  if (it == ask_reqs_.end() || it->second.first != from) return true;  // late or misaddressed
  const MarkKey key = it->second;
  Ask& a = asks_[key];
  drop_ask(a);
  auto m = marks_.find(key);
  const Code code = reply.status.code();
  if (m != marks_.end() && code == Code::kOk && m->second.hints != a.hints) {
    // Refused more hints while the owner repaired: those may have come after its rounds.
    a.not_before = now;
  } else if (code == Code::kOk || code == Code::kFailedPrecondition) {
    ++counters_.repair_asks_cleared;
    clear_mark(key.first, key.second);
  } else {
    fail_ask(a, now);
  }
  ask_repairs(now);
  return true;
}

bool Handoff::take_marks_changed() { return std::exchange(marks_changed_, false); }

bool Handoff::read_page(const NodeId& owner, Target& t, MonoTime now) {
  Result<std::vector<store::Record>> page =
      store_.read_hints_after(owner, t.cursor, options_.page_hints, options_.page_bytes);
  if (!page.ok()) {
    ++counters_.read_failures;
    t.last_error = "reading hints: " + page.status().message();
    t.backoff = std::clamp(t.backoff * 2, options_.backoff_min, options_.backoff_max);
    t.not_before = t.wake = now + t.backoff;
    return false;
  }
  if (page->empty()) {
    t.exhausted = true;
    return true;
  }
  for (store::Record& r : *page) {
    t.cursor = r.version;
    if (t.busy_keys.contains(r.key)) continue;  // in flight: a later look takes a newer one
    t.queued.push_back(std::move(r));
  }
  return true;
}

void Handoff::pump(const NodeId& owner, Target& t, MonoTime now) {
  if (!t.up && !t.rehomed) return;
  if (now < t.not_before) {
    // Waiting out a backoff or an empty bucket. The wake may have been left at max for a
    // reply to end (a failure while others were in flight): that reply came, so the look
    // at not_before is due again.
    t.wake = t.not_before;
    return;
  }
  if (loaded_ && loaded_()) {
    t.not_before = t.wake = now + options_.loaded_wait;
    return;
  }
  if (t.rescan) {
    // After a failure, once what was in flight is answered: everything not yet
    // acknowledged is read again from the first hint.
    if (t.inflight > 0) {
      t.wake = MonoTime::max();
      return;
    }
    t.rescan = false;
    t.cursor = Version{};
    t.exhausted = false;
    t.queued.clear();
  }
  const double burst = std::max(t.rate / 10, static_cast<double>(options_.page_bytes));
  t.tokens =
      std::min(burst, t.tokens + t.rate * std::chrono::duration<double>(now - t.refilled).count());
  t.refilled = now;
  auto room = [&] { return t.inflight < options_.max_inflight; };
  // (A re-homed hint's copies may take it past max_inflight by N - 1: they go together.)
  while (t.tokens > 0 && room()) {
    if (t.queued.empty()) {
      if (t.exhausted) break;
      if (!read_page(owner, t, now)) return;
      continue;
    }
    if (t.rehomed) {
      if (!send_rehomed(owner, t, now)) break;
      continue;
    }
    const uint64_t bytes = t.queued.front().key.size() + t.queued.front().value.size();
    // Within max_inflight_bytes with what is in flight, or alone.
    if (t.inflight > 0 && t.inflight_bytes + bytes > options_.max_inflight_bytes) break;
    store::Record record = std::move(t.queued.front());
    t.queued.pop_front();
    const uint64_t req = kRequestBit | next_req_++;
    Sent sent{owner, owner, 0, record.key, record.version, bytes, now + options_.request_timeout};
    t.busy_keys.insert(record.key);
    ++t.inflight;
    t.inflight_bytes += bytes;
    t.tokens -= static_cast<double>(bytes);
    timers_.emplace(sent.deadline, req);
    inflight_.emplace(req, std::move(sent));
    ++counters_.sent;
    WriteRequest w;
    w.req = req;
    w.record = std::make_shared<store::Record>(std::move(record));
    w.handoff = true;
    outbox_.push_back(PeerOutgoing{owner, std::move(w)});
  }
  if (t.tokens <= 0) {
    // Out of budget: the bucket holds enough for the next hint again at this time.
    t.not_before = t.wake = now +
                            std::chrono::duration_cast<MonoTime::duration>(
                                std::chrono::duration<double>((1 - t.tokens) / t.rate)) +
                            MonoTime::duration(1);
  } else if (!room()) {
    t.wake = MonoTime::max();  // a reply frees room
  } else if (t.inflight > 0) {
    // All read is sent, or the next hint's bytes do not fit: the replies decide what comes
    // next.
    t.wake = MonoTime::max();
  } else {
    // Nothing more known: look again later, from the first hint.
    t.exhausted = false;
    t.cursor = Version{};
    t.not_before = t.wake = now + options_.idle_check;
  }
}

void Handoff::acknowledged(Target& t, const Sent& sent) {
  counters_.delivered_bytes += sent.bytes;
  ++t.delivered;
  t.rate = std::min(t.rate + static_cast<double>(options_.delivery_rate) / 32,
                    static_cast<double>(options_.delivery_rate));
  t.backoff = std::chrono::milliseconds(0);
}

void Handoff::fail(Target& t, const Sent& sent, std::string why, MonoTime now) {
  ++t.failures;
  t.last_error = std::move(why);
  t.busy_keys.erase(sent.key);
  // Multiplicative decrease and a backoff, once per round: the hints in flight with this
  // one were sent under the same conditions, and a lost batch times out all at once (it
  // would otherwise take the backoff to its maximum and the rate to its floor in one go).
  // The cursor is past the hint, so the next round starts again from the first one, once
  // what is in flight is answered.
  if (!t.rescan) {
    t.rate = std::max(t.rate / 2, static_cast<double>(options_.min_rate));
    t.backoff = std::clamp(t.backoff * 2, options_.backoff_min, options_.backoff_max);
    t.not_before = now + t.backoff;
  }
  t.wake = t.inflight > 0 ? MonoTime::max() : t.not_before;
  t.rescan = true;
}

bool Handoff::on_reply(const NodeId& from, const WriteReply& reply, MonoTime now) {
  if (!is_handoff_reply(reply.req)) return false;
  auto it = inflight_.find(reply.req);
  if (it == inflight_.end() || it->second.to != from) return true;  // late or misaddressed
  Sent sent = std::move(it->second);
  inflight_.erase(it);
  timers_.erase({sent.deadline, reply.req});
  auto target = targets_.find(sent.owner);
  if (target == targets_.end()) return true;
  Target& t = target->second;
  --t.inflight;
  t.inflight_bytes -= sent.bytes;
  if (sent.group != 0) {
    on_copy(t, std::move(sent), from, reply.status, now);
    pump(target->first, t, now);
    return true;
  }
  if (!reply.status.ok() && reply.status.code() != Code::kInvalidArgument) {
    ++counters_.refused;
    fail(t, sent, from + " refused a hint: " + reply.status.to_string(), now);
    return true;
  }
  if (reply.status.ok()) {
    // The owner holds this version or a newer one: the hint has done its work.
    ++counters_.delivered;
    acknowledged(t, sent);
  } else {
    // The owner will never take it (a key or value over its limits): sending it again
    // would only keep the owner's rate down. The hint goes, and its partition is marked
    // for repair with the owner, which compares what each side holds.
    ++counters_.rejected;
    ++t.failures;
    t.last_error = from + " rejected a hint: " + reply.status.to_string();
    mark(sent.owner, sent.key, t.last_error);
  }
  remove(sent);
  pump(sent.owner, t, now);
  return true;
}

void Handoff::remove(const Sent& sent) {
  std::weak_ptr<bool> alive = alive_;
  store_.remove_hint(sent.owner, sent.key, sent.version,
                     [this, alive, post = post_, owner = sent.owner,
                      key = sent.key](Result<store::ApplyResult> result) mutable {
                       post([this, alive, owner = std::move(owner), key = std::move(key),
                             result = std::move(result)]() mutable {
                         if (alive.lock()) on_removed(owner, key, std::move(result));
                       });
                     });
}

void Handoff::on_copy(Target& t, Sent sent, const NodeId& from, std::optional<Status> status,
                      MonoTime now) {
  auto g = groups_.find(sent.group);
  if (g == groups_.end()) return;
  Group& group = g->second;
  --group.waiting;
  if (!status.has_value()) {
    group.failed = true;
    fail(t, sent,
         from + " did not acknowledge a re-homed hint of " + sent.owner + " within " +
             std::to_string(options_.request_timeout.count()) + " ms",
         now);
  } else if (status->code() == Code::kInvalidArgument) {
    // That home replica will never take it: it compares the partition with the others.
    ++counters_.rejected;
    ++t.failures;
    t.last_error = from + " rejected a re-homed hint: " + status->to_string();
    mark(from, sent.key, t.last_error);
  } else if (!status->ok()) {
    ++counters_.refused;
    group.failed = true;
    fail(t, sent, from + " refused a re-homed hint of " + sent.owner + ": " + status->to_string(),
         now);
  }
  if (group.waiting > 0) return;
  const Group done = std::move(group);
  groups_.erase(g);
  // Failed: kept, and sent to every home again by the next pass (last-write-wins makes the
  // copies already taken harmless).
  if (done.failed) return;
  for (const NodeId& lapsed : done.lapsed) {
    mark(lapsed, sent.key,
         "a hint kept for " + sent.owner + " (no longer a member) went to partition " +
             std::to_string(partition_of_(sent.key)) + "'s other home replicas; " + lapsed +
             " was down past hint-window (" + seconds_text(options_.hint_window) + ")");
  }
  ++counters_.rehomed;
  acknowledged(t, sent);
  remove(sent);
}

void Handoff::on_removed(const NodeId& owner, const std::string& key,
                         Result<store::ApplyResult> result) {
  if (result.ok()) {
    ++counters_.removed;
  } else {
    // Kept: delivered again by a later round, which the owner answers as already held.
    ++counters_.remove_failures;
  }
  auto it = targets_.find(owner);
  if (it != targets_.end()) it->second.busy_keys.erase(key);
}

void Handoff::tick(MonoTime now) {
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const uint64_t req = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto it = inflight_.find(req);
    if (it == inflight_.end()) continue;
    Sent sent = std::move(it->second);
    inflight_.erase(it);
    ++counters_.timeouts;
    auto target = targets_.find(sent.owner);
    if (target == targets_.end()) continue;
    Target& t = target->second;
    --t.inflight;
    t.inflight_bytes -= sent.bytes;
    if (sent.group != 0) {
      const NodeId to = sent.to;
      on_copy(t, std::move(sent), to, std::nullopt, now);
      continue;
    }
    fail(t, sent,
         sent.owner + " did not acknowledge a hint within " +
             std::to_string(options_.request_timeout.count()) + " ms",
         now);
  }
  if (now >= owners_look_) find_unlisted(now);
  for (auto& [owner, t] : targets_) pump(owner, t, now);
  while (!ask_timers_.empty() && ask_timers_.begin()->first <= now) {
    const uint64_t req = ask_timers_.begin()->second;
    auto it = ask_reqs_.find(req);
    if (it == ask_reqs_.end()) {
      ask_timers_.erase(ask_timers_.begin());
      continue;
    }
    Ask& a = asks_[it->second];
    drop_ask(a);
    fail_ask(a, now);
    ask_wake_ = MonoTime{};
  }
  if (now >= ask_wake_) ask_repairs(now);
}

MonoTime Handoff::next_deadline() const {
  MonoTime next = MonoTime::max();
  if (!timers_.empty()) next = timers_.begin()->first;
  if (!ask_timers_.empty()) next = std::min(next, ask_timers_.begin()->first);
  if (!marks_.empty()) next = std::min(next, ask_wake_);
  next = std::min(next, owners_look_);
  for (const auto& [owner, t] : targets_) {
    if (t.up || t.rehomed) next = std::min(next, t.wake);
  }
  return next;
}

std::vector<PeerOutgoing> Handoff::take_messages() { return std::exchange(outbox_, {}); }

std::vector<NodeId> Handoff::rehomed_owners() const {
  std::vector<NodeId> owners;
  for (const auto& [owner, t] : targets_) {
    if (t.rehomed) owners.push_back(owner);
  }
  return owners;
}

std::vector<Handoff::TargetStatus> Handoff::targets() const {
  std::vector<TargetStatus> out;
  for (const auto& [owner, t] : targets_) {
    TargetStatus s;
    s.owner = owner;
    s.up = t.up;
    s.rehomed = t.rehomed;
    s.delivering = (t.up || t.rehomed) && (t.inflight > 0 || !t.queued.empty() || t.rescan);
    s.inflight = t.inflight;
    s.rate = static_cast<uint64_t>(t.rate);
    s.delivered = t.delivered;
    s.failures = t.failures;
    s.last_error = t.last_error;
    s.down_since = t.down_since;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace edgekv::cluster
