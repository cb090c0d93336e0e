// The SWIM + Lifeguard state machine. docs/gossip.md describes the protocol; the comments
// here say why the code does what it does.
#include "gossip/swim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "common/assert.h"
#include "common/random.h"
#include "gossip/awareness.h"
#include "gossip/broadcast.h"
#include "gossip/codec.h"
#include "gossip/suspicion.h"
#include "proto/gossip.pb.h"

namespace edgekv::gossip {
namespace {

constexpr MonoTime kNever = MonoTime::max();

// Indirect probes relayed for others at once; more ping-reqs are ignored (a requester just
// sees no answer from this helper).
constexpr size_t kMaxRelays = 1024;
// Suspects queued to be probed next (Lifeguard's confirmations come from such probes).
constexpr size_t kMaxPriorityProbes = 64;
// Members sent the leave announcement directly, besides piggybacking.
constexpr size_t kLeaveFanout = 5;

MemberState state_from_proto(pb::State s) {
  switch (s) {
    case pb::SUSPECT: return MemberState::kSuspect;
    case pb::DEAD: return MemberState::kDead;
    case pb::LEFT: return MemberState::kLeft;
    default: return MemberState::kAlive;
  }
}

bool is_live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

// a + b, or kIncarnationMax if that is less: incarnations never wrap.
uint64_t incarnation_add(uint64_t a, uint64_t b) {
  return a >= kIncarnationMax || b >= kIncarnationMax - a ? kIncarnationMax : a + b;
}

}  // namespace

struct Swim::Impl {
  struct Record {
    Member member;
    std::optional<Suspicion> suspicion;  // while kSuspect
  };
  struct Probe {
    bool active = false;
    std::string target;
    uint32_t seq = 0;
    MonoTime timeout_at = kNever;  // direct probe's deadline: then ask helpers
    MonoTime period_end = kNever;  // no ack by then: suspect
    bool acked = false;
    bool indirect_sent = false;
    uint32_t nacks_expected = 0;
    uint32_t nacks = 0;
  };
  // A probe this node runs on behalf of a ping-req.
  struct Relay {
    std::string requester_id;
    std::string requester_endpoint;
    uint32_t requester_seq = 0;
    MonoTime nack_at = kNever;
    bool want_nack = false;
  };

  Impl(NodeInfo self_info, Options opts, uint64_t seed)
      : self(std::move(self_info)),
        options(std::move(opts)),
        rng(seed),
        awareness(options.awareness_max) {}

  NodeInfo self;
  Options options;
  Random rng;
  Awareness awareness;
  BroadcastQueue queue;
  Counters counters;

  std::map<std::string, Record, std::less<>> members;  // every member, self included
  size_t live = 0;                                     // members alive or suspect, self included
  uint64_t incarnation = 0;
  std::set<std::string, std::less<>> timed;  // others that are suspect, dead or left

  bool started = false;
  bool joined = false;
  bool leaving = false;
  bool left = false;
  bool leave_sent = false;  // the direct leave messages are in `out`
  MonoTime leave_deadline = kNever;

  std::vector<std::string> seeds;  // options.seeds without self
  std::optional<PartitionsMismatch> partitions_mismatch;
  MonoTime next_mismatch_answer_at{};  // joins stating another Q are answered this rarely
  MonoTime next_join_at = kNever;
  Millis join_backoff{0};

  Probe probe;
  MonoTime next_probe_at = kNever;
  std::vector<std::string> probe_order;
  size_t probe_pos = 0;
  std::deque<std::string> priority_probes;
  std::map<uint32_t, Relay> relays;  // by the seq of our ping to the target
  uint32_t next_seq = 1;

  MonoTime next_gossip_at = kNever;
  MonoTime next_push_pull_at = kNever;

  std::vector<Outgoing> out;
  std::vector<MemberEvent> events;

  // ------------------------------------------------------------------ helpers

  Record& self_record() {
    auto it = members.find(self.id);
    EDGEKV_ASSERT(it != members.end());
    return it->second;
  }

  // Local health stretches suspicion timeouts too: a node losing messages may be the one
  // that missed the refutation.
  uint32_t suspicion_multiplier() const { return awareness.multiplier(); }

  uint32_t retransmit_limit() const {
    double scale = std::ceil(std::log10(static_cast<double>(live) + 1.0));
    return options.retransmit_mult * static_cast<uint32_t>(std::max(1.0, scale));
  }

  void emit(MemberEvent::Kind kind, const Member& m) { events.push_back({kind, m}); }

  void set_state(Record& r, MemberState s, MonoTime now) {
    bool was_live = is_live(r.member.state);
    r.member.state = s;
    r.member.since = now;
    if (was_live != is_live(s)) {
      if (is_live(s)) {
        ++live;
      } else {
        --live;
      }
    }
    if (s != MemberState::kSuspect) r.suspicion.reset();
    if (r.member.info.id != self.id) {
      if (s == MemberState::kAlive) {
        timed.erase(r.member.info.id);
      } else {
        timed.insert(r.member.info.id);
      }
    }
  }

  pb::Update make_update(const Member& m, MemberState s, const std::string& from) const {
    pb::Update u;
    switch (s) {
      case MemberState::kAlive: u.set_state(pb::ALIVE); break;
      case MemberState::kSuspect: u.set_state(pb::SUSPECT); break;
      case MemberState::kDead: u.set_state(pb::DEAD); break;
      case MemberState::kLeft: u.set_state(pb::LEFT); break;
    }
    u.set_id(m.info.id);
    u.set_incarnation(m.incarnation);
    if (s == MemberState::kAlive) to_proto(m.info, u.mutable_node());
    if (!from.empty()) u.set_from(from);
    return u;
  }

  void broadcast(const pb::Update& u) { queue.push(u); }

  // At most `k` random members other than self and `exclude`: alive ones, or with
  // `include_recent_dead` also suspects and members dead for less than gossip_to_dead.
  std::vector<const Record*> random_members(size_t k, std::string_view exclude,
                                            bool include_recent_dead, MonoTime now) {
    std::vector<const Record*> candidates;
    for (const auto& [id, r] : members) {
      if (id == self.id || id == exclude) continue;
      bool ok = r.member.state == MemberState::kAlive;
      if (include_recent_dead) {
        ok = is_live(r.member.state) || (r.member.state == MemberState::kDead &&
                                         now - r.member.since < options.gossip_to_dead);
      }
      if (ok) candidates.push_back(&r);
    }
    size_t take = std::min(k, candidates.size());
    for (size_t i = 0; i < take; ++i) {
      size_t j = i + rng.uniform(candidates.size() - i);
      std::swap(candidates[i], candidates[j]);
    }
    candidates.resize(take);
    return candidates;
  }

  void stamp(pb::Envelope& env) const {
    env.set_cluster(options.cluster_name);
    env.set_version(kProtocolVersion);
    env.set_from_id(self.id);
    env.set_from_endpoint(self.endpoints.gossip);
    env.set_partitions(options.partitions);
  }

  // A message stating another partition count: dropped, and remembered for the driver's
  // log. A join is answered with an empty message stating ours (at most one per protocol
  // period, whoever asks), so the joiner drops it in turn and its driver logs both counts
  // too. No updates ride on the answer: the joiner would drop them.
  void refuse_partitions(const pb::Envelope& env, MonoTime now) {
    ++counters.messages_dropped;
    ++counters.dropped_partitions;
    partitions_mismatch = PartitionsMismatch{env.from_id(), env.from_endpoint(), env.partitions()};
    const bool join = env.has_push_pull() && env.push_pull().join() && !env.push_pull().reply();
    if (!join || !started || left || now < next_mismatch_answer_at) return;
    next_mismatch_answer_at = now + options.protocol_period;
    pb::Envelope answer;
    answer.mutable_gossip();
    stamp(answer);
    out.push_back({env.from_id(), env.from_endpoint(), answer.SerializeAsString()});
    ++counters.messages_out;
  }

  // Sends `env` with as many waiting updates piggybacked as fit in max_message_bytes.
  void send(const std::string& to_id, const std::string& to_endpoint, pb::Envelope& env) {
    stamp(env);
    size_t base = env.ByteSizeLong();
    if (base < options.max_message_bytes && !queue.empty()) {
      queue.fill(env.mutable_updates(), options.max_message_bytes - base, retransmit_limit());
    }
    out.push_back({to_id, to_endpoint, env.SerializeAsString()});
    ++counters.messages_out;
  }

  // ------------------------------------------------------------------ membership rules

  // Claims reaching here are below kIncarnationMax (plausible() saw to it), so the
  // refutation is always above the claim.
  void refute(uint64_t claimed, MonoTime now) {
    incarnation = incarnation_add(std::max(incarnation, claimed), 1);
    Record& me = self_record();
    me.member.incarnation = incarnation;
    me.member.since = now;
    broadcast(make_update(me.member, MemberState::kAlive, ""));
  }

  // An alive claim: `info` at `inc`. `rebroadcast` is false for what a join's full state
  // taught us (the cluster knows it already).
  void on_alive(const NodeInfo& info, uint64_t inc, bool rebroadcast, MonoTime now) {
    if (info.id == self.id) {
      if (leaving) return;
      // Our own claim coming back is not news; a newer one, or other metadata at ours, is
      // an older life of this node still remembered: overrule it.
      if (inc > incarnation || (inc == incarnation && !(info == self))) {
        ++counters.refutations;
        refute(inc, now);
      }
      return;
    }
    auto it = members.find(info.id);
    if (it == members.end()) {
      if (members.size() >= options.max_members) {
        ++counters.members_refused;
        return;
      }
      Record r;
      r.member.info = info;
      r.member.incarnation = inc;
      r.member.state = MemberState::kDead;  // set_state counts it live below
      it = members.emplace(info.id, std::move(r)).first;
      set_state(it->second, MemberState::kAlive, now);
      add_to_probe_order(info.id);
      emit(MemberEvent::Kind::kJoined, it->second.member);
      if (rebroadcast) broadcast(make_update(it->second.member, MemberState::kAlive, ""));
      return;
    }
    Record& r = it->second;
    if (inc <= r.member.incarnation) return;
    MemberState before = r.member.state;
    bool changed = !(r.member.info == info);
    r.member.info = info;
    r.member.incarnation = inc;
    if (before == MemberState::kAlive) {
      if (changed) emit(MemberEvent::Kind::kUpdated, r.member);
    } else {
      set_state(r, MemberState::kAlive, now);
      if (before == MemberState::kSuspect) {
        ++counters.false_alarms;
        emit(MemberEvent::Kind::kAlive, r.member);
      } else {
        add_to_probe_order(info.id);
        emit(MemberEvent::Kind::kJoined, r.member);
      }
    }
    if (rebroadcast) broadcast(make_update(r.member, MemberState::kAlive, ""));
  }

  // Someone claims this node is suspect or dead at incarnation `inc`: refute it unless the
  // claim is stale or this node is leaving anyway.
  void refute_claim_about_self(uint64_t inc, MonoTime now) {
    if (leaving || inc < incarnation) return;
    ++counters.refutations;
    awareness.apply(1);  // Lifeguard: having to refute hints that we are the slow one
    refute(inc, now);
  }

  void on_suspect(const std::string& id, uint64_t inc, const std::string& from, MonoTime now) {
    if (id == self.id) {
      refute_claim_about_self(inc, now);
      return;
    }
    auto it = members.find(id);
    if (it == members.end()) return;
    Record& r = it->second;
    if (inc < r.member.incarnation || !is_live(r.member.state)) return;
    if (r.member.state == MemberState::kSuspect && inc == r.member.incarnation) {
      EDGEKV_ASSERT(r.suspicion.has_value());
      // Another member's independent claim: it shortens the timeout; pass it on so others
      // count it too.
      if (r.suspicion->confirm(from)) {
        broadcast(make_update(r.member, MemberState::kSuspect, from));
      }
      return;
    }
    r.member.incarnation = inc;
    bool was_suspect = r.member.state == MemberState::kSuspect;
    set_state(r, MemberState::kSuspect, now);
    Millis min = suspicion_min_timeout(options, live);
    uint32_t expected = std::min<uint32_t>(options.suspicion_confirmations,
                                           live >= 2 ? static_cast<uint32_t>(live - 2) : 0);
    r.suspicion.emplace(from, expected, min, min * options.suspicion_max_mult, now);
    if (from != self.id) {
      // Our own probe of it confirms or clears the claim soon; probe it next.
      if (priority_probes.size() < kMaxPriorityProbes &&
          std::find(priority_probes.begin(), priority_probes.end(), id) == priority_probes.end()) {
        priority_probes.push_back(id);
      }
    }
    if (!was_suspect) emit(MemberEvent::Kind::kSuspect, r.member);
    broadcast(make_update(r.member, MemberState::kSuspect, from));
  }

  void on_dead(const std::string& id, uint64_t inc, const std::string& from, bool graceful,
               MonoTime now) {
    if (id == self.id) {
      refute_claim_about_self(inc, now);
      return;
    }
    auto it = members.find(id);
    if (it == members.end()) return;
    Record& r = it->second;
    if (inc < r.member.incarnation || !is_live(r.member.state)) return;
    r.member.incarnation = inc;
    MemberState s = graceful ? MemberState::kLeft : MemberState::kDead;
    set_state(r, s, now);
    if (from == self.id) ++counters.dead_declared;
    emit(graceful ? MemberEvent::Kind::kLeft : MemberEvent::Kind::kDead, r.member);
    broadcast(make_update(r.member, s, from));
  }

  // Whether a claim at `inc` about member `id` (alive, or suspect/dead/left) is believable:
  // not above kIncarnationMax (an alive claim) or not at or above it (any other, so that
  // the member can refute it), and not more than kMaxIncarnationLead above what this node
  // holds of the member. The member itself is held to the same lead about claims of it: a
  // forged claim far above its own incarnation is ignored, not refuted, and whatever the
  // others accept lies within the lead of what it announced. A member never seen has no
  // record to compare with; only the ceiling applies.
  bool plausible(const std::string& id, uint64_t inc, bool alive) const {
    if (inc > (alive ? kIncarnationMax : kIncarnationMax - 1)) return false;
    uint64_t known = 0;
    if (id == self.id) {
      known = incarnation;
    } else if (auto it = members.find(id); it != members.end()) {
      known = it->second.member.incarnation;
    } else {
      return true;
    }
    return inc <= incarnation_add(known, kMaxIncarnationLead);
  }

  // One update, piggybacked (trusted as stated) or from a full state (`push_pull`: a dead
  // claim there is only a suspicion until verified here, as the sender may be behind).
  void apply(const pb::Update& u, const std::string& sender, bool push_pull, bool rebroadcast,
             MonoTime now) {
    const std::string& from = u.from().empty() ? sender : u.from();
    const bool alive = state_from_proto(u.state()) == MemberState::kAlive;
    if (!plausible(u.id(), u.incarnation(), alive)) {
      ++counters.claims_rejected;
      return;
    }
    switch (state_from_proto(u.state())) {
      case MemberState::kAlive:
        on_alive(from_proto(u.node()), u.incarnation(), rebroadcast, now);
        break;
      case MemberState::kSuspect:
        on_suspect(u.id(), u.incarnation(), push_pull ? sender : from, now);
        break;
      case MemberState::kDead:
        if (push_pull) {
          on_suspect(u.id(), u.incarnation(), sender, now);
        } else {
          on_dead(u.id(), u.incarnation(), from, false, now);
        }
        break;
      case MemberState::kLeft: on_dead(u.id(), u.incarnation(), u.id(), true, now); break;
    }
  }

  // ------------------------------------------------------------------ probing

  void add_to_probe_order(const std::string& id) {
    // A new member goes to a random place in the rest of this pass, so it is probed soon
    // without disturbing the round-robin order of the others.
    size_t lo = std::min(probe_pos, probe_order.size());
    size_t at = lo + rng.uniform(probe_order.size() - lo + 1);
    probe_order.insert(probe_order.begin() + static_cast<std::ptrdiff_t>(at), id);
  }

  const Record* probe_candidate(const std::string& id) const {
    auto it = members.find(id);
    if (it == members.end() || id == self.id || !is_live(it->second.member.state)) return nullptr;
    return &it->second;
  }

  const Record* next_probe_target() {
    while (!priority_probes.empty()) {
      std::string id = std::move(priority_probes.front());
      priority_probes.pop_front();
      const Record* r = probe_candidate(id);
      if (r != nullptr && r->member.state == MemberState::kSuspect) return r;
    }
    for (int pass = 0; pass < 2; ++pass) {
      while (probe_pos < probe_order.size()) {
        const Record* r = probe_candidate(probe_order[probe_pos++]);
        if (r != nullptr) return r;
      }
      // End of a pass: a fresh random order of the live members.
      probe_order.clear();
      for (const auto& [id, r] : members) {
        if (id != self.id && is_live(r.member.state)) probe_order.push_back(id);
      }
      for (size_t i = probe_order.size(); i > 1; --i) {
        std::swap(probe_order[i - 1], probe_order[rng.uniform(i)]);
      }
      probe_pos = 0;
    }
    return nullptr;
  }

  void start_probe(MonoTime now) {
    Millis period = awareness.scale(options.protocol_period);
    next_probe_at = now + period;
    probe = Probe{};
    const Record* target = next_probe_target();
    if (target == nullptr) return;
    probe.active = true;
    probe.target = target->member.info.id;
    probe.seq = next_seq++;
    probe.timeout_at = now + awareness.scale(options.probe_timeout);
    probe.period_end = next_probe_at;
    pb::Envelope env;
    env.mutable_ping()->set_seq(probe.seq);
    env.mutable_ping()->set_target_id(probe.target);
    if (target->member.state == MemberState::kSuspect) {
      // Tell the suspect directly: it refutes in its ack even if the gossip of its
      // refutation has died out before reaching us.
      *env.add_updates() = make_update(target->member, MemberState::kSuspect, self.id);
    }
    ++counters.probes_sent;
    send(probe.target, target->member.info.endpoints.gossip, env);
  }

  void send_indirect_probes(MonoTime now) {
    probe.indirect_sent = true;
    auto it = members.find(probe.target);
    if (it == members.end() || !is_live(it->second.member.state)) return;
    const std::string target_endpoint = it->second.member.info.endpoints.gossip;
    // Helpers nack a little before our period ends, so the nack is here in time to count.
    int64_t window = std::chrono::duration_cast<Millis>(probe.period_end - now).count();
    uint32_t nack_after = static_cast<uint32_t>(std::max<int64_t>(1, window * 8 / 10));
    for (const Record* helper : random_members(options.indirect_probes, probe.target, false, now)) {
      pb::Envelope env;
      pb::PingReq* req = env.mutable_ping_req();
      req->set_seq(probe.seq);
      req->set_target_id(probe.target);
      req->set_target_endpoint(target_endpoint);
      req->set_want_nack(true);
      req->set_nack_after_ms(nack_after);
      ++probe.nacks_expected;
      ++counters.indirect_probes_sent;
      send(helper->member.info.id, helper->member.info.endpoints.gossip, env);
    }
  }

  void finish_probe(MonoTime now) {
    Probe done = std::move(probe);
    probe = Probe{};
    if (done.acked) return;
    // Lifeguard: helpers that answered with a nack could not reach the target either, so
    // the failure is probably the target's; each helper that stayed silent hints that this
    // node's own messages are late or lost. With no helpers, any failure counts.
    if (done.nacks_expected > 0) {
      if (done.nacks < done.nacks_expected) awareness.apply(done.nacks_expected - done.nacks);
    } else {
      awareness.apply(1);
    }
    auto it = members.find(done.target);
    if (it == members.end() || !is_live(it->second.member.state)) return;
    if (it->second.member.state == MemberState::kAlive) ++counters.suspicions;
    on_suspect(done.target, it->second.member.incarnation, self.id, now);
  }

  // ------------------------------------------------------------------ timers

  void run_timers(MonoTime now) {
    if (leaving && !left && now >= leave_deadline) left = true;

    // Probe: direct timeout -> helpers; end of period -> verdict; then the next probe.
    if (probe.active && !probe.acked && !probe.indirect_sent && now >= probe.timeout_at) {
      send_indirect_probes(now);
    }
    if (probe.active && now >= probe.period_end) finish_probe(now);
    if (!leaving && now >= next_probe_at) start_probe(now);

    // Relayed probes whose target did not answer in time.
    for (auto it = relays.begin(); it != relays.end();) {
      if (now < it->second.nack_at) {
        ++it;
        continue;
      }
      if (it->second.want_nack) {
        pb::Envelope env;
        env.mutable_nack()->set_seq(it->second.requester_seq);
        send(it->second.requester_id, it->second.requester_endpoint, env);
      }
      it = relays.erase(it);
    }

    // Suspicions that ran out, and dead or left members to forget.
    std::vector<std::string> expired;
    for (const std::string& id : timed) {
      const Record& r = members.at(id);
      if (r.member.state == MemberState::kSuspect) {
        if (now >= r.suspicion->deadline(suspicion_multiplier())) expired.push_back(id);
      } else if (now >= r.member.since + options.reap_after) {
        expired.push_back(id);
      }
    }
    for (const std::string& id : expired) {
      auto it = members.find(id);
      Record& r = it->second;
      if (r.member.state == MemberState::kSuspect) {
        on_dead(id, r.member.incarnation, self.id, false, now);
      } else {
        Member gone = r.member;
        timed.erase(id);
        queue.erase(id);
        members.erase(it);
        emit(MemberEvent::Kind::kReaped, gone);
      }
    }

    // Joining: retry the seeds with backoff until one answers; later, contact them again
    // whenever no other member is live (the cluster went away, or we were partitioned off
    // before anyone knew us).
    if (!leaving && !seeds.empty() && now >= next_join_at) {
      if (!joined || live <= 1) send_join();
      if (!joined) {
        next_join_at = now + join_backoff;
        join_backoff = std::min(join_backoff * 2, options.join_retry_max);
      } else {
        next_join_at = now + options.join_retry_max;
      }
    }

    // Dissemination in messages of its own, only while updates wait.
    if (now >= next_gossip_at) {
      if (!queue.empty() && options.gossip_fanout > 0) {
        for (const Record* r : random_members(options.gossip_fanout, "", true, now)) {
          if (queue.empty()) break;
          pb::Envelope env;
          env.mutable_gossip();
          send(r->member.info.id, r->member.info.endpoints.gossip, env);
        }
      }
      next_gossip_at = now + options.gossip_interval;
    }

    if (!leaving && options.push_pull_interval.count() > 0 && now >= next_push_pull_at) {
      next_push_pull_at = now + options.push_pull_interval;
      if (const Record* partner = push_pull_partner()) {
        ++counters.push_pulls;
        send_push_pull(partner->member.info.id, partner->member.info.endpoints.gossip, false,
                       false);
      }
    }
  }

  // ------------------------------------------------------------------ push-pull and join

  // A random member, alive or dead (not left): members declared dead during a partition
  // are how the two sides find each other again once it heals. A truly dead one costs one
  // lost message.
  const Record* push_pull_partner() {
    std::vector<const Record*> candidates;
    for (const auto& [id, r] : members) {
      if (id != self.id && r.member.state != MemberState::kLeft) candidates.push_back(&r);
    }
    if (candidates.empty()) return nullptr;
    return candidates[rng.uniform(candidates.size())];
  }

  void send_push_pull(const std::string& to_id, const std::string& to_endpoint, bool join,
                      bool reply) {
    pb::Envelope env;
    stamp(env);
    pb::PushPull* pp = env.mutable_push_pull();
    pp->set_join(join);
    pp->set_reply(reply);
    // Self first, then the others in random order: when the bound leaves some out, a
    // different subset goes out next time.
    std::vector<const Record*> order;
    order.reserve(members.size());
    for (const auto& [id, r] : members) {
      if (id != self.id) order.push_back(&r);
    }
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.uniform(i)]);
    order.insert(order.begin(), &self_record());
    size_t size = env.ByteSizeLong() + 8;  // + the push_pull field's own tag and length
    for (const Record* r : order) {
      pb::Update u = make_update(r->member, r->member.state, "");
      if (!u.has_node()) to_proto(r->member.info, u.mutable_node());
      size_t bytes = repeated_field_bytes(u.ByteSizeLong());
      if (size + bytes > options.max_push_pull_bytes) continue;
      size += bytes;
      *pp->add_states() = std::move(u);
    }
    out.push_back({to_id, to_endpoint, env.SerializeAsString()});
    ++counters.messages_out;
  }

  // The join: our own state, to every seed, by endpoint (their ids are not known yet).
  void send_join() {
    for (const std::string& seed : seeds) {
      ++counters.push_pulls;
      send_push_pull("", seed, true, false);
    }
  }

  // ------------------------------------------------------------------ receiving

  void handle(const pb::Envelope& env, MonoTime now) {
    const std::string& from = env.from_id();
    const std::string& from_endpoint = env.from_endpoint();
    if (from == self.id) return;  // our own message (a seed list naming us under another name)
    if (!joined) {
      joined = true;
      next_join_at = now + options.join_retry_max;
      // The seed's state may predate members joining at the same time as us, and their
      // news may die out before it reaches us: a first full exchange with a random member
      // soon after joining fills such gaps.
      if (options.push_pull_interval.count() > 0) {
        Millis soon = std::min(options.push_pull_interval, options.protocol_period * 5);
        next_push_pull_at = std::min(
            next_push_pull_at, now + Millis(1 + rng.uniform(static_cast<uint64_t>(soon.count()))));
      }
    }

    bool join_reply = env.has_push_pull() && env.push_pull().join() && env.push_pull().reply();
    // A claim that we are suspect or dead, older than our refutation: the sender missed the
    // refutation, so our answer carries it.
    bool sender_behind = false;
    for (const pb::Update& u : env.updates()) {
      if (u.id() == self.id && u.state() != pb::ALIVE && u.incarnation() < incarnation) {
        sender_behind = true;
      }
      apply(u, from, false, true, now);
    }

    switch (env.body_case()) {
      case pb::Envelope::kPing: {
        if (!env.ping().target_id().empty() && env.ping().target_id() != self.id) return;
        pb::Envelope ack;
        ack.mutable_ack()->set_seq(env.ping().seq());
        if (sender_behind && !leaving) {
          *ack.add_updates() = make_update(self_record().member, MemberState::kAlive, "");
        }
        send(from, from_endpoint, ack);
        break;
      }
      case pb::Envelope::kAck: {
        uint32_t seq = env.ack().seq();
        if (probe.active && seq == probe.seq) {
          ++counters.acks_received;
          if (!probe.acked) {
            probe.acked = true;
            awareness.apply(-1);
          }
        } else if (auto it = relays.find(seq); it != relays.end()) {
          ++counters.acks_received;
          pb::Envelope fwd;
          fwd.mutable_ack()->set_seq(it->second.requester_seq);
          Relay relay = std::move(it->second);
          relays.erase(it);
          send(relay.requester_id, relay.requester_endpoint, fwd);
        }
        break;
      }
      case pb::Envelope::kNack:
        if (probe.active && env.nack().seq() == probe.seq && !probe.acked) {
          ++counters.nacks_received;
          ++probe.nacks;
        }
        break;
      case pb::Envelope::kPingReq: {
        const pb::PingReq& req = env.ping_req();
        if (relays.size() >= kMaxRelays || req.target_id() == self.id) break;
        uint32_t seq = next_seq++;
        Millis wait = awareness.scale(options.probe_timeout);
        if (req.nack_after_ms() > 0) {
          wait = std::min(Millis(req.nack_after_ms()), options.protocol_period * 10);
        }
        relays[seq] = Relay{from, from_endpoint, req.seq(), now + wait, req.want_nack()};
        pb::Envelope ping;
        ping.mutable_ping()->set_seq(seq);
        ping.mutable_ping()->set_target_id(req.target_id());
        send(req.target_id(), req.target_endpoint(), ping);
        break;
      }
      case pb::Envelope::kPushPull: {
        const pb::PushPull& pp = env.push_pull();
        uint64_t incarnation_before = incarnation;
        for (const pb::Update& u : pp.states()) apply(u, from, true, !join_reply, now);
        if (!pp.reply()) {
          send_push_pull(from, from_endpoint, pp.join(), true);  // carries our refutation
        } else if (incarnation != incarnation_before && !leaving) {
          // The partner holds us suspect or dead (typically across a healed partition, where
          // nothing else flows between the sides yet): tell it our refutation directly.
          pb::Envelope env_out;
          env_out.mutable_gossip();
          send(from, from_endpoint, env_out);
        }
        break;
      }
      case pb::Envelope::kGossip:
      default: break;
    }
  }
};

// -------------------------------------------------------------------- Swim

Swim::Swim(NodeInfo self, Options options, uint64_t seed) {
  EDGEKV_ASSERT(check_node_info(self).ok());
  EDGEKV_ASSERT(options.validate().ok());
  impl_ = std::make_unique<Impl>(std::move(self), std::move(options), seed);
  Impl& d = *impl_;
  Impl::Record me;
  me.member.info = d.self;
  me.member.state = MemberState::kAlive;
  d.members.emplace(d.self.id, std::move(me));
  d.live = 1;
  for (const std::string& seed_endpoint : d.options.seeds) {
    if (seed_endpoint == d.self.endpoints.gossip) continue;
    if (std::find(d.seeds.begin(), d.seeds.end(), seed_endpoint) == d.seeds.end()) {
      d.seeds.push_back(seed_endpoint);
    }
  }
}

Swim::~Swim() = default;

void Swim::start(MonoTime now, uint64_t incarnation) {
  Impl& d = *impl_;
  if (d.started) return;
  d.started = true;
  d.incarnation = std::min(std::max(d.incarnation, incarnation), kIncarnationMax);
  Impl::Record& me = d.self_record();
  me.member.incarnation = d.incarnation;
  me.member.since = now;
  // Timers start at random phases so that nodes started together do not act in step.
  d.next_probe_at =
      now + Millis(d.rng.uniform(static_cast<uint64_t>(d.options.protocol_period.count()) + 1));
  d.next_gossip_at = now;
  // Our own alive claim rides on everything we send, so whoever hears from us learns of us.
  d.broadcast(d.make_update(me.member, MemberState::kAlive, ""));
  if (d.options.push_pull_interval.count() > 0) {
    d.next_push_pull_at =
        now +
        Millis(1 + d.rng.uniform(static_cast<uint64_t>(d.options.push_pull_interval.count())));
  }
  if (d.seeds.empty()) {
    d.joined = true;
  } else {
    d.join_backoff = d.options.join_retry_min;
    d.next_join_at = now;  // the join goes out on the first tick, i.e. right away
    d.run_timers(now);
  }
}

void Swim::receive(std::string_view bytes, MonoTime now) {
  Impl& d = *impl_;
  pb::Envelope env;
  size_t max_bytes = std::max<size_t>(d.options.max_push_pull_bytes, d.options.max_message_bytes);
  switch (decode(bytes, d.options.cluster_name, max_bytes, &env)) {
    case DecodeResult::kOk: break;
    case DecodeResult::kMalformed:
      ++d.counters.messages_dropped;
      ++d.counters.dropped_malformed;
      return;
    case DecodeResult::kWrongCluster:
      ++d.counters.messages_dropped;
      ++d.counters.dropped_cluster;
      return;
    case DecodeResult::kWrongVersion:
      ++d.counters.messages_dropped;
      ++d.counters.dropped_version;
      return;
  }
  if (d.options.partitions != 0 && env.partitions() != 0 &&
      env.partitions() != d.options.partitions) {
    d.refuse_partitions(env, now);
    return;
  }
  ++d.counters.messages_in;  // every datagram that decodes, whether it changes anything or not
  if (!d.started || d.left) return;
  d.handle(env, now);
}

void Swim::tick(MonoTime now) {
  Impl& d = *impl_;
  if (!d.started || d.left) return;
  d.run_timers(now);
}

MonoTime Swim::next_deadline() const {
  const Impl& d = *impl_;
  if (!d.started || d.left) return kNever;
  MonoTime t = kNever;
  if (d.leaving) t = std::min(t, d.leave_deadline);
  if (!d.leaving) t = std::min(t, d.next_probe_at);
  if (d.probe.active) {
    t = std::min(t, d.probe.period_end);
    if (!d.probe.acked && !d.probe.indirect_sent) t = std::min(t, d.probe.timeout_at);
  }
  for (const auto& [seq, relay] : d.relays) t = std::min(t, relay.nack_at);
  for (const std::string& id : d.timed) {
    const Impl::Record& r = d.members.at(id);
    t = std::min(t, r.member.state == MemberState::kSuspect
                        ? r.suspicion->deadline(d.suspicion_multiplier())
                        : r.member.since + d.options.reap_after);
  }
  if (!d.queue.empty() && d.options.gossip_fanout > 0) t = std::min(t, d.next_gossip_at);
  if (!d.leaving) {
    if (d.options.push_pull_interval.count() > 0) t = std::min(t, d.next_push_pull_at);
    if (!d.seeds.empty() && (!d.joined || d.live <= 1)) t = std::min(t, d.next_join_at);
  }
  return t;
}

void Swim::leave(MonoTime now) {
  Impl& d = *impl_;
  if (!d.started || d.leaving) return;
  d.leaving = true;
  d.leave_deadline = now + d.options.leave_timeout;
  d.probe = Impl::Probe{};
  d.priority_probes.clear();
  Impl::Record& me = d.self_record();
  d.set_state(me, MemberState::kLeft, now);
  pb::Update update = d.make_update(me.member, MemberState::kLeft, d.self.id);
  d.broadcast(update);
  auto targets = d.random_members(kLeaveFanout, "", false, now);
  if (targets.empty()) {
    d.left = true;
    return;
  }
  for (const Impl::Record* r : targets) {
    pb::Envelope env;
    env.mutable_gossip();
    *env.add_updates() = update;
    d.send(r->member.info.id, r->member.info.endpoints.gossip, env);
  }
  d.leave_sent = true;
}

bool Swim::left() const { return impl_->left; }

void Swim::update_self(NodeInfo info, MonoTime now) {
  Impl& d = *impl_;
  info.id = d.self.id;  // the id never changes
  EDGEKV_ASSERT(check_node_info(info).ok());
  if (info == d.self) return;
  d.self = std::move(info);
  // At kIncarnationMax the change stays local: nothing can outrank the record others hold.
  d.incarnation = incarnation_add(d.incarnation, 1);
  Impl::Record& me = d.self_record();
  me.member.info = d.self;
  me.member.incarnation = d.incarnation;
  if (d.leaving) return;
  me.member.since = now;
  d.broadcast(d.make_update(me.member, MemberState::kAlive, ""));
}

std::vector<Outgoing> Swim::take_messages() {
  Impl& d = *impl_;
  if (d.leave_sent) d.left = true;  // the driver sends these now
  std::vector<Outgoing> taken;
  taken.swap(d.out);
  return taken;
}

std::vector<MemberEvent> Swim::take_events() {
  std::vector<MemberEvent> taken;
  taken.swap(impl_->events);
  return taken;
}

std::vector<Member> Swim::members() const {
  std::vector<Member> view;
  view.reserve(impl_->members.size());
  for (const auto& [id, r] : impl_->members) view.push_back(r.member);
  return view;
}

const NodeInfo& Swim::self() const { return impl_->self; }
uint64_t Swim::incarnation() const { return impl_->incarnation; }
bool Swim::joined() const { return impl_->joined; }
uint32_t Swim::health_score() const { return impl_->awareness.score(); }
const Counters& Swim::counters() const { return impl_->counters; }
const PartitionsMismatch* Swim::partitions_mismatch() const {
  return impl_->partitions_mismatch ? &*impl_->partitions_mismatch : nullptr;
}
const Options& Swim::options() const { return impl_->options; }

}  // namespace edgekv::gossip
