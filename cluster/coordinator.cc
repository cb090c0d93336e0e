#include "cluster/coordinator.h"

#include <algorithm>
#include <utility>

#include "cluster/mutation.h"

namespace edgekv::cluster {

namespace {

// A read-modify-write reads and then writes: each round may take the request timeout.
constexpr int kMutateTimeoutFactor = 2;
// A forwarded one also waits for the two hops and behind the leader's earlier operations
// on the key: one more timeout, so that the leader answers first when it can.
constexpr int kForwardTimeoutFactor = 3;

// " (with 2 joining)" after a count that includes the joining nodes; nothing without any.
std::string with_joining(size_t joining) {
  return joining == 0 ? std::string() : " (with " + std::to_string(joining) + " joining)";
}

}  // namespace

size_t required_replies(Consistency c, size_t n) {
  switch (c) {
    case Consistency::kOne: return n == 0 ? 0 : 1;
    case Consistency::kQuorum:
    case Consistency::kLocalQuorum: return n == 0 ? 0 : n / 2 + 1;
    case Consistency::kAll: return n;
  }
  return 0;
}

Coordinator::Coordinator(const ReplicaView& view, HybridClock& hlc, CoordinatorOptions options)
    : view_(view), hlc_(hlc), options_(options), origin_(origin_of(view.self())) {}

// ------------------------------------------------------------------ client operations

void Coordinator::get(std::string_view key, RequestOptions options, MonoTime now, ReadDone done) {
  ++stats_.reads;
  Op op;
  op.kind = OpKind::kRead;
  op.key = std::string(key);
  op.options = options;
  op.read_done = std::move(done);
  admit(std::move(op), now);
  run_callbacks();
}

void Coordinator::put(std::string_view key, std::string value, WallTime expiry,
                      RequestOptions options, MonoTime now, WriteDone done) {
  ++stats_.writes;
  Op op;
  op.kind = OpKind::kWrite;
  op.key = std::string(key);
  op.options = options;
  op.write_done = std::move(done);
  op.record = std::make_shared<store::Record>();
  op.record->key = op.key;
  op.record->value = std::move(value);
  op.record->expiry = expiry;
  admit(std::move(op), now);
  run_callbacks();
}

void Coordinator::del(std::string_view key, RequestOptions options, MonoTime now, WriteDone done) {
  ++stats_.writes;
  Op op;
  op.kind = OpKind::kWrite;
  op.key = std::string(key);
  op.options = options;
  op.write_done = std::move(done);
  op.record = std::make_shared<store::Record>();
  op.record->key = op.key;
  op.record->tombstone = true;
  admit(std::move(op), now);
  run_callbacks();
}

void Coordinator::mutate(std::string_view key, Mutation mutation, RequestOptions options,
                         MonoTime now, MutateDone done) {
  Op op;
  op.key = std::string(key);
  op.options = options;
  op.mutation = std::move(mutation);
  op.mutate_done = std::move(done);
  // The partition's leader: its first home replica that is up, the same node on every
  // coordinator whose view agrees.
  const uint32_t partition = view_.partition_of(key);
  std::optional<NodeId> leader;
  for (NodeId& h : view_.home(partition)) {
    if (view_.is_up(h)) {
      leader = std::move(h);
      break;
    }
  }
  if (!leader) {
    ++stats_.mutations;
    op.kind = OpKind::kMutate;
    fail_unadmitted(std::move(op), Status::unavailable("no home replica of partition " +
                                                       std::to_string(partition) + " is up"));
  } else if (*leader == view_.self()) {
    ++stats_.mutations;
    op.kind = OpKind::kMutate;
    admit(std::move(op), now);
  } else {
    ++stats_.forwarded;
    op.kind = OpKind::kForward;
    op.leader = std::move(*leader);
    admit(std::move(op), now);
  }
  run_callbacks();
}

// ------------------------------------------------------------------ peer messages

void Coordinator::on_message(const NodeId& from, PeerMessage message, MonoTime now) {
  if (auto* read = std::get_if<ReadReply>(&message)) {
    on_read_reply(from, std::move(*read), now);
  } else if (auto* write = std::get_if<WriteReply>(&message)) {
    on_write_reply(from, *write, now);
  } else if (auto* reply = std::get_if<MutateReply>(&message)) {
    on_mutate_reply(from, std::move(*reply), now);
  } else if (auto* request = std::get_if<MutateRequest>(&message)) {
    on_mutate_request(from, std::move(*request), now);
  } else {
    // Requests to replicas belong to the replica side; the driver routes them there.
    ++stats_.replies_dropped;
  }
  run_callbacks();
}

void Coordinator::on_mutate_request(const NodeId& from, MutateRequest request, MonoTime now) {
  // Run here even when this node is not the leader in its own view: views differ while
  // membership changes, and forwarding again could loop (docs/replication.md).
  ++stats_.mutations;
  Op op;
  op.kind = OpKind::kMutate;
  op.key = std::move(request.key);
  op.options = request.options;
  op.mutation = std::move(request.mutation);
  op.reply_to = from;
  op.reply_req = request.req;
  admit(std::move(op), now);
}

Coordinator::Op* Coordinator::lookup(uint64_t req, const NodeId& from, Purpose purpose,
                                     size_t* target) {
  auto it = pending_.find(req);
  if (it == pending_.end() || it->second.purpose != purpose) {
    ++stats_.replies_dropped;
    return nullptr;
  }
  Op& op = ops_.at(it->second.op);
  if (op.targets[it->second.target].node != from) {
    ++stats_.replies_dropped;  // another node answering this node's request id
    return nullptr;
  }
  *target = it->second.target;
  pending_.erase(it);
  return &op;
}

void Coordinator::on_read_reply(const NodeId& from, ReadReply reply, MonoTime now) {
  size_t t = 0;
  Op* op = lookup(reply.req, from, Purpose::kRead, &t);
  if (op == nullptr) return;
  Target& target = op->targets[t];
  target.replied = true;
  if (reply.status.ok() && reply.record && reply.record->key != op->key) {
    ++stats_.replies_dropped;
    reply.status = Status::internal("replica " + from + " answered with another key");
  }
  if (!reply.status.ok()) {
    ++op->failures;
    if (op->first_error.ok())
      op->first_error = Status(reply.status.code(), from + ": " + reply.status.message());
  } else {
    target.ok = true;
    ++op->oks;
    if (reply.record) {
      static_cast<void>(hlc_.observe(reply.record->version.hlc));
      target.holds = reply.record->version;
      if (!op->winner || reply.record->version > op->winner->version) {
        op->winner = std::move(*reply.record);
        set_bytes(*op, op->key.size() + op->winner->value.size());
      }
    }
  }
  advance_read(*op, now);
}

void Coordinator::on_write_reply(const NodeId& from, const WriteReply& reply, MonoTime now) {
  auto it = pending_.find(reply.req);
  Purpose purpose = it == pending_.end() ? Purpose::kWrite : it->second.purpose;
  if (purpose != Purpose::kWrite && purpose != Purpose::kRepair) {
    ++stats_.replies_dropped;
    return;
  }
  size_t t = 0;
  Op* op = lookup(reply.req, from, purpose, &t);
  if (op == nullptr) return;
  Target& target = op->targets[t];
  // A version of this node's own that its clock has not reached was made in an earlier life
  // under a clock that was ahead; one it has reached is a newer write made here since.
  const bool own_ahead = op->kind == OpKind::kWrite && reply.status.ok() && !reply.applied &&
                         reply.current.origin == origin_ && reply.current.hlc > hlc_.last() &&
                         reply.current > op->record->version;
  if (reply.status.ok()) static_cast<void>(hlc_.observe(reply.current.hlc));
  if (purpose == Purpose::kRepair) {
    target.repair_outstanding = false;
    if (reply.status.ok()) {
      target.holds = std::max(target.holds, reply.current);
      // A tombstone taken without being applied, with no row in its place (nothing at or
      // above it): the replica has no row of the key and the tombstone is below its purge
      // horizon, where the key's absence stands for the delete (Store::set_purge_horizon).
      // It holds what the read answers: the tombstone's holders are left alone once the
      // others purged it (a home replica that was no stream source of a hand-over's taker
      // keeps one until its own round with it), so counting only rows would fail every
      // quorum read of the key until then.
      if (!reply.applied && reply.current == Version{} && op->winner && op->winner->tombstone &&
          op->winner->version == target.repaired) {
        target.holds = std::max(target.holds, target.repaired);
      }
    }
    advance_read(*op, now);
    return;
  }
  target.replied = true;
  if (reply.status.ok()) {
    target.ok = true;
    ++op->oks;
    if (own_ahead) op->own_newer = std::max(op->own_newer, reply.current);
  } else {
    ++op->failures;
    if (op->first_error.ok())
      op->first_error = Status(reply.status.code(), from + ": " + reply.status.message());
  }
  advance_write(*op, now);
}

void Coordinator::on_mutate_reply(const NodeId& from, MutateReply reply, MonoTime now) {
  size_t t = 0;
  Op* op = lookup(reply.req, from, Purpose::kForward, &t);
  if (op == nullptr) return;
  if (!reply.status.ok()) return fail(*op, std::move(reply.status), now);
  static_cast<void>(hlc_.observe(reply.outcome.version.hlc));
  answer_mutate(*op, std::move(reply.outcome), now);
}

// ------------------------------------------------------------------ timers

void Coordinator::tick(MonoTime now) {
  while (!timers_.empty() && timers_.begin()->first <= now) {
    expire(ops_.at(timers_.begin()->second), now);
  }
  run_callbacks();
}

MonoTime Coordinator::next_deadline() const {
  return timers_.empty() ? MonoTime::max() : timers_.begin()->first;
}

std::vector<PeerOutgoing> Coordinator::take_messages() {
  std::vector<PeerOutgoing> out;
  out.swap(outbox_);
  return out;
}

void Coordinator::expire(Op& op, MonoTime now) {
  const auto timeout_ms = std::to_string(options_.request_timeout.count());
  const char* strict = op.options.strict ? " (strict)" : "";
  switch (op.phase) {
    case Phase::kAnswered: return erase(op.id);  // a read done repairing what it could
    case Phase::kQueued:
      return fail(op,
                  Status::timeout("waited behind earlier operations on the key until the "
                                  "deadline (request timeout " +
                                  timeout_ms + " ms)"),
                  now);
    case Phase::kReading:
      if (op.oks >= op.required && op.winner) {
        return fail(op,
                    Status::timeout("read " + op.winner->version.to_string() + " from " +
                                    std::to_string(op.oks) + " replicas; it is held by " +
                                    std::to_string(holders(op)) + " of " +
                                    std::to_string(op.targets.size()) + ", " +
                                    std::to_string(op.quorum) + " required before answering" +
                                    with_joining(op.joining) + " (repairs unacknowledged)"),
                    now);
      }
      return fail(op, Status::timeout(answered(op) + strict), now);
    case Phase::kWriting: return fail(op, Status::timeout(answered(op) + strict), now);
    case Phase::kForwarding:
      return fail(op,
                  Status::timeout("the partition's leader " + op.leader +
                                  " did not answer the read-modify-write in time"),
                  now);
  }
}

// ------------------------------------------------------------------ admission and ordering

void Coordinator::admit(Op op, MonoTime now) {
  uint64_t bytes =
      op.key.size() + (op.record ? op.record->value.size() : 0) + op.mutation.value.size();
  if (ops_.size() >= options_.max_requests) {
    return fail_unadmitted(std::move(op),
                           Status::overloaded("the node holds " + std::to_string(ops_.size()) +
                                              " requests, its most (coordinator max_requests)"));
  }
  if (bytes_ + bytes > options_.max_request_bytes) {
    return fail_unadmitted(
        std::move(op),
        Status::overloaded("requests in flight hold " + std::to_string(bytes_) +
                           " bytes, this one " + std::to_string(bytes) + " more, the most is " +
                           std::to_string(options_.max_request_bytes) +
                           " (max-inflight-bytes); retry later"));
  }
  op.id = next_op_++;
  int factor = op.kind == OpKind::kForward  ? kForwardTimeoutFactor
               : op.kind == OpKind::kMutate ? kMutateTimeoutFactor
                                            : 1;
  op.deadline = now + factor * options_.request_timeout;
  op.began = now;
  const uint64_t id = op.id;
  Op& held = ops_.emplace(id, std::move(op)).first->second;
  set_bytes(held, bytes);
  timers_.insert({held.deadline, id});
  begun_.insert({held.began, id});
  KeyQueue& q = keys_[held.key];
  if (!q.draining && q.waiting.empty() && can_start(q, held.kind)) {
    run(q, held, now);  // the common case: nothing to wait for, nothing queued
    return;
  }
  q.waiting.push_back(id);
}

bool Coordinator::can_start(const KeyQueue& q, OpKind kind) const {
  if (q.exclusive) return false;
  switch (kind) {
    case OpKind::kRead: return q.writes == 0;
    case OpKind::kWrite: return q.reads == 0;
    case OpKind::kMutate:
    case OpKind::kForward: return q.reads == 0 && q.writes == 0;
  }
  return false;
}

void Coordinator::drain(std::string key, MonoTime now) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  // References into an unordered_map survive inserts of other keys; this key's entry is
  // erased only here, and not while this loop runs.
  KeyQueue& q = it->second;
  if (q.draining) return;
  q.draining = true;
  while (!q.waiting.empty()) {
    Op& op = ops_.at(q.waiting.front());
    if (!can_start(q, op.kind)) break;
    q.waiting.pop_front();
    run(q, op, now);
  }
  q.draining = false;
  if (q.waiting.empty() && q.reads == 0 && q.writes == 0 && !q.exclusive) keys_.erase(key);
}

void Coordinator::run(KeyQueue& q, Op& op, MonoTime now) {
  if (op.kind == OpKind::kRead) {
    ++q.reads;
  } else if (op.kind == OpKind::kWrite) {
    ++q.writes;
  } else {
    q.exclusive = true;
  }
  op.running = true;
  start(op, now);  // may answer at once, releasing the key (and forgetting its entry)
}

void Coordinator::release(Op& op, MonoTime now) {
  auto it = keys_.find(op.key);
  if (it == keys_.end()) return;
  KeyQueue& q = it->second;
  if (op.phase == Phase::kQueued) {
    q.waiting.erase(std::find(q.waiting.begin(), q.waiting.end(), op.id));
  } else if (op.running) {
    if (op.kind == OpKind::kRead) {
      --q.reads;
    } else if (op.kind == OpKind::kWrite) {
      --q.writes;
    } else {
      q.exclusive = false;
    }
    op.running = false;
  }
  drain(op.key, now);
}

void Coordinator::start(Op& op, MonoTime now) {
  switch (op.kind) {
    case OpKind::kRead:
    case OpKind::kMutate:
      op.phase = Phase::kReading;
      fan_out(op, Purpose::kRead, now);
      return;
    case OpKind::kWrite:
      op.record->version = Version{hlc_.now(), origin_};  // not sent yet: no message shares it
      op.phase = Phase::kWriting;
      fan_out(op, Purpose::kWrite, now);
      return;
    case OpKind::kForward: {
      op.phase = Phase::kForwarding;
      op.targets.assign(1, Target{});
      op.targets[0].node = op.leader;
      const uint64_t req = track(op, 0, Purpose::kForward);
      // The value travels in the message; the op still counts it until answered, as the
      // message holds it until it is sent at the end of the loop's turn.
      outbox_.push_back(
          {op.leader, MutateRequest{req, op.key, std::move(op.mutation), op.options}});
      return;
    }
  }
}

// ------------------------------------------------------------------ fan-out

uint64_t Coordinator::track(Op& op, size_t target, Purpose purpose) {
  const uint64_t req = next_req_++;
  pending_[req] = Pending{op.id, target, purpose};
  op.reqs.push_back(req);
  return req;
}

void Coordinator::forget_requests(Op& op) {
  for (uint64_t req : op.reqs) pending_.erase(req);
  op.reqs.clear();
}

std::string Coordinator::answered(const Op& op) {
  std::string out =
      std::to_string(op.oks) + " of " + std::to_string(op.targets.size()) + " replicas answered";
  if (op.joining != 0) {
    size_t joining_oks = 0;
    size_t joining_targets = 0;
    for (const Target& t : op.targets) {
      if (!t.joining) continue;
      ++joining_targets;
      if (t.ok) ++joining_oks;
    }
    out += " (" + std::to_string(op.oks - joining_oks) + " of " +
           std::to_string(op.targets.size() - joining_targets) + " for home replicas, " +
           std::to_string(joining_oks) + " of " + std::to_string(joining_targets) +
           " for joining ones)";
  }
  return out + ", " + std::to_string(op.required) + " required";
}

void Coordinator::fan_out(Op& op, Purpose purpose, MonoTime now) {
  forget_requests(op);
  const uint32_t partition = view_.partition_of(op.key);
  std::vector<NodeId> home = view_.home(partition);
  // The view promises joining nodes are no home replicas; one that is (or is named twice)
  // would count twice toward the replies required, so it is dropped.
  std::vector<NodeId> joining;
  for (NodeId& j : view_.joining(partition)) {
    if (std::find(home.begin(), home.end(), j) == home.end() &&
        std::find(joining.begin(), joining.end(), j) == joining.end()) {
      joining.push_back(std::move(j));
    }
  }
  const size_t n = home.size();
  const size_t k = joining.size();
  // k more than the level asks of the home replicas, whatever the level (coordinator.h says
  // why that makes quorums meet those of the current and of the pending table).
  op.required = required_replies(op.options.consistency, n);
  if (op.required != 0) op.required += k;
  op.quorum = required_replies(Consistency::kQuorum, n) + (n == 0 ? 0 : k);
  op.joining = k;
  op.targets.clear();
  op.oks = 0;
  op.failures = 0;
  op.first_error = Status();
  if (n == 0) {
    return fail(op,
                Status::unavailable("partition " + std::to_string(partition) +
                                    " has no home replicas: this node has not learnt the "
                                    "cluster's placement yet (kvcli ring)"),
                now);
  }
  if (op.required == 0) {
    return fail(op,
                Status::invalid_argument("unknown consistency level " +
                                         std::to_string(static_cast<int>(op.options.consistency))),
                now);
  }
  struct Down {
    NodeId node;
    bool joining;
  };
  std::vector<Down> down;
  size_t up_homes = 0;
  size_t up_joining = 0;
  auto add = [&](NodeId& node, bool is_joining) {
    if (!view_.is_up(node)) {
      down.push_back({std::move(node), is_joining});
      return;
    }
    ++(is_joining ? up_joining : up_homes);
    Target target;
    target.node = std::move(node);
    target.joining = is_joining;
    op.targets.push_back(std::move(target));
  };
  for (NodeId& h : home) add(h, false);
  for (NodeId& j : joining) add(j, true);
  if (!op.options.strict && !down.empty()) {
    // Each replica that is down is stood in for by the next fallback not used yet. A
    // joining node is no home replica, so it may be among the fallbacks: ask for as many
    // more as there are joining nodes up, and skip them.
    size_t next = 0;
    for (NodeId& f : view_.fallbacks(partition, down.size() + up_joining)) {
      if (next == down.size()) break;
      bool used = std::any_of(op.targets.begin(), op.targets.end(),
                              [&](const Target& t) { return t.node == f; });
      if (used) continue;
      Target target;
      target.node = std::move(f);
      target.hint_for = down[next].node;
      target.joining = down[next].joining;
      ++next;
      op.targets.push_back(std::move(target));
    }
  }
  if (op.targets.size() < op.required) {
    const std::string homes =
        std::to_string(up_homes) + " of " + std::to_string(n) + " home replicas" +
        (k == 0 ? std::string()
                : " and " + std::to_string(up_joining) + " of " + std::to_string(k) + " joining");
    const size_t fallbacks = op.targets.size() - up_homes - up_joining;
    std::string why =
        op.options.strict
            ? "reached " + homes + ", " + std::to_string(op.required) + " required (strict)"
            : "reached " + std::to_string(op.targets.size()) + " replicas (" + homes + " up, " +
                  std::to_string(fallbacks) + " fallbacks), " + std::to_string(op.required) +
                  " required";
    return fail(op, Status::unavailable(std::move(why)), now);
  }
  for (size_t t = 0; t < op.targets.size(); ++t) {
    const Target& target = op.targets[t];
    const uint64_t req = track(op, t, purpose);
    if (purpose == Purpose::kRead) {
      outbox_.push_back({target.node, ReadRequest{req, op.key, !target.hint_for.empty()}});
      continue;
    }
    if (!target.hint_for.empty()) ++stats_.hints;
    // Every message shares the op's record, which the op keeps (and counts) until answered:
    // a plain write may have to be made again (own_newer).
    outbox_.push_back({target.node, WriteRequest{req, op.record, target.hint_for}});
  }
}

// ------------------------------------------------------------------ reads

size_t Coordinator::holders(const Op& op) const {
  if (!op.winner) return op.oks;
  return static_cast<size_t>(
      std::count_if(op.targets.begin(), op.targets.end(),
                    [&](const Target& t) { return t.ok && t.holds >= op.winner->version; }));
}

void Coordinator::advance_read(Op& op, MonoTime now) {
  // Repair every replica that replied with less than the newest state seen so far, once per
  // newer state (tombstones included: a missed delete or expiry must not come back).
  if (op.winner) {
    std::shared_ptr<store::Record> repair;  // one copy for every repair sent now
    for (size_t t = 0; t < op.targets.size(); ++t) {
      Target& target = op.targets[t];
      if (!target.ok || target.holds >= op.winner->version) continue;
      if (target.repaired >= op.winner->version) continue;
      target.repaired = op.winner->version;
      target.repair_outstanding = true;
      ++stats_.repairs;
      const uint64_t req = track(op, t, Purpose::kRepair);
      if (!repair) repair = std::make_shared<store::Record>(*op.winner);
      outbox_.push_back({target.node, WriteRequest{req, repair, target.hint_for, /*repair=*/true}});
    }
  }
  if (op.phase == Phase::kReading) {
    const size_t unanswered = op.targets.size() - op.oks - op.failures;
    if (op.oks >= op.required) {
      // Monotonic quorum reads: what a read at QUORUM or ALL returns must be on a quorum
      // before it answers, so that any later quorum read meets it.
      const bool monotonic = op.options.consistency != Consistency::kOne;
      if (!monotonic || holders(op) >= op.quorum) return read_complete(op, now);
      const bool repairing = std::any_of(op.targets.begin(), op.targets.end(),
                                         [](const Target& t) { return t.repair_outstanding; });
      if (unanswered == 0 && !repairing) {
        return fail(op,
                    Status::unavailable(
                        "read " + op.winner->version.to_string() + ", held by " +
                        std::to_string(holders(op)) + " of " + std::to_string(op.targets.size()) +
                        " replicas after repairs failed, " + std::to_string(op.quorum) +
                        " required" + with_joining(op.joining)),
                    now);
      }
    } else if (op.oks + unanswered < op.required) {
      return fail(op, Status(op.first_error.code(), answered(op) + "; " + op.first_error.message()),
                  now);
    }
    return;
  }
  if (op.phase == Phase::kAnswered) {
    const bool outstanding = std::any_of(op.targets.begin(), op.targets.end(), [](const Target& t) {
      return !t.replied || t.repair_outstanding;
    });
    if (!outstanding) erase(op.id);
  }
}

void Coordinator::read_complete(Op& op, MonoTime now) {
  if (op.kind == OpKind::kRead) {
    // A tombstone (a delete, or a key that expired) or a value expired by now is no key.
    const store::Record* w = op.winner ? &*op.winner : nullptr;
    bool live = w != nullptr && !w->tombstone && (w->expiry.ms == 0 || is_live(*w, wall_now()));
    Result<store::Record> result = live ? Result<store::Record>(*w)
                                        : Result<store::Record>(Status::not_found("key not found"));
    queue_read_done(op, std::move(result));
    op.phase = Phase::kAnswered;
    release(op, now);
    advance_read(op, now);  // forgets the read once nothing more is expected
    return;
  }
  // A read-modify-write: decide on what was read, and write with a newer version.
  const Version read = op.winner ? op.winner->version : Version{};
  uint64_t hlc = hlc_.now();
  MutationDecision d = decide(op.mutation, op.winner, WallTime{HybridClock::physical_ms(hlc)});
  if (!d.write) return answer_mutate(op, std::move(d.outcome), now);
  if (hlc <= read.hlc) {
    // The clock did not fold the version in when the replies came: one this node made
    // (before a restart) it moves past; one from a clock beyond max-clock-offset-ms it
    // refuses, and so does the write, rather than stamp a version from the future or one
    // that last-write-wins would drop.
    if (read.origin == origin_) {
      hlc_.advance_past(read.hlc);
    } else if (Status s = hlc_.observe(read.hlc); !s.ok()) {
      return answer_mutate(op,
                           Status(s.code(), "cannot write after the key's version " +
                                                read.to_string() + ": " + s.message()),
                           now);
    }
    hlc = hlc_.now();
  }
  op.outcome = std::move(d.outcome);
  op.record = std::make_shared<store::Record>(store::Record{.key = op.key,
                                                            .value = std::move(d.write->value),
                                                            .version = Version{hlc, origin_},
                                                            .expiry = d.write->expiry,
                                                            .tombstone = d.write->tombstone});
  op.winner.reset();
  op.mutation.value = std::string();
  set_bytes(op, op.key.size() + op.record->value.size());
  op.phase = Phase::kWriting;
  fan_out(op, Purpose::kWrite, now);
}

WallTime Coordinator::wall_now() { return WallTime{HybridClock::physical_ms(hlc_.now())}; }

// ------------------------------------------------------------------ writes

void Coordinator::advance_write(Op& op, MonoTime now) {
  if (op.phase != Phase::kWriting) return;
  const size_t unanswered = op.targets.size() - op.oks - op.failures;
  if (op.oks >= op.required) {
    if (op.kind == OpKind::kWrite && !op.own_newer.is_zero() && !op.restamped) {
      // A version this node made with a clock that was ahead (before a restart) won: move
      // the clock past it and write again, once. A newer version from another node is a
      // newer write, and this one rightly lost to it.
      hlc_.advance_past(op.own_newer.hlc);
      op.restamped = true;
      // A new record: the first round's messages may still refer to the old one.
      op.record = std::make_shared<store::Record>(*op.record);
      op.record->version = Version{hlc_.now(), origin_};
      return fan_out(op, Purpose::kWrite, now);
    }
    if (op.kind == OpKind::kWrite) {
      return answer_write(op, WriteOutcome{op.record->version, op.record->expiry}, now);
    }
    MutationOutcome outcome = std::move(op.outcome);
    outcome.version = op.record->version;
    return answer_mutate(op, std::move(outcome), now);
  }
  if (op.oks + unanswered < op.required) {
    fail(op, Status(op.first_error.code(), answered(op) + "; " + op.first_error.message()), now);
  }
}

// ------------------------------------------------------------------ answers

void Coordinator::count(const Status& status) {
  switch (status.code()) {
    case Code::kTimeout: ++stats_.timeouts; break;
    case Code::kUnavailable: ++stats_.unavailable; break;
    case Code::kOverloaded: ++stats_.overloaded; break;
    default: break;
  }
}

void Coordinator::queue_read_done(Op& op, Result<store::Record> result) {
  if (!result.ok()) count(result.status());
  callbacks_.push_back(
      [done = std::move(op.read_done), r = std::move(result)]() mutable { done(std::move(r)); });
}

void Coordinator::answer_write(Op& op, Result<WriteOutcome> result, MonoTime now) {
  if (!result.ok()) count(result.status());
  callbacks_.push_back(
      [done = std::move(op.write_done), r = std::move(result)]() mutable { done(std::move(r)); });
  release(op, now);
  erase(op.id);
}

void Coordinator::answer_mutate(Op& op, Result<MutationOutcome> result, MonoTime now) {
  if (!result.ok()) count(result.status());
  if (!op.reply_to.empty()) {
    MutateReply reply;
    reply.req = op.reply_req;
    if (result.ok()) {
      reply.outcome = std::move(result).value();
    } else {
      reply.status = result.status();
    }
    outbox_.push_back({op.reply_to, std::move(reply)});
  } else {
    callbacks_.push_back([done = std::move(op.mutate_done), r = std::move(result)]() mutable {
      done(std::move(r));
    });
  }
  release(op, now);
  erase(op.id);
}

void Coordinator::fail(Op& op, Status status, MonoTime now) {
  switch (op.kind) {
    case OpKind::kRead:
      queue_read_done(op, std::move(status));
      release(op, now);
      return erase(op.id);
    case OpKind::kWrite: return answer_write(op, std::move(status), now);
    case OpKind::kMutate:
    case OpKind::kForward: return answer_mutate(op, std::move(status), now);
  }
}

void Coordinator::fail_unadmitted(Op op, Status status) {
  op.id = 0;
  count(status);
  switch (op.kind) {
    case OpKind::kRead:
      callbacks_.push_back([done = std::move(op.read_done), status]() { done(status); });
      return;
    case OpKind::kWrite:
      callbacks_.push_back([done = std::move(op.write_done), status]() { done(status); });
      return;
    case OpKind::kMutate:
    case OpKind::kForward:
      if (!op.reply_to.empty()) {
        MutateReply reply;
        reply.req = op.reply_req;
        reply.status = std::move(status);
        outbox_.push_back({op.reply_to, std::move(reply)});
      } else {
        callbacks_.push_back([done = std::move(op.mutate_done), status]() { done(status); });
      }
      return;
  }
}

void Coordinator::set_bytes(Op& op, uint64_t bytes) {
  bytes_ = bytes_ - op.bytes + bytes;
  op.bytes = bytes;
}

void Coordinator::erase(uint64_t id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;
  Op& op = it->second;
  timers_.erase({op.deadline, id});
  begun_.erase({op.began, id});
  forget_requests(op);
  bytes_ -= op.bytes;
  ops_.erase(it);
}

void Coordinator::run_callbacks() {
  if (running_callbacks_) return;
  running_callbacks_ = true;
  while (!callbacks_.empty()) {
    std::function<void()> fn = std::move(callbacks_.front());
    callbacks_.pop_front();
    fn();
  }
  running_callbacks_ = false;
}

}  // namespace edgekv::cluster
