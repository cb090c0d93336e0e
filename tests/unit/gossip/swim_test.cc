// The SWIM state machine, driven by hand: a few machines whose datagrams the test carries
// (or drops) itself, at times it chooses. Each test checks state and what went out.
#include "gossip/swim.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/random.h"
#include "gossip/codec.h"
#include "gossip/suspicion.h"
#include "proto/gossip.pb.h"

namespace edgekv::gossip {
namespace {

using Kind = MemberEvent::Kind;

NodeInfo info(const std::string& id) {
  NodeInfo n;
  n.id = id;
  n.datacenter = "dc1";
  n.endpoints.gossip = "tcp://" + id + ":7946";
  n.endpoints.client = "tcp://" + id + ":7000";
  return n;
}

// A few machines and a hand-driven network: messages are delivered when the test says so,
// through `drop` (true: lost).
class Net {
 public:
  explicit Net(Options options) : options_(std::move(options)) {}

  Swim& add(const std::string& id, std::vector<std::string> seeds = {}, uint64_t incarnation = 0) {
    Options o = options_;
    o.seeds = std::move(seeds);
    if (auto it = partitions.find(id); it != partitions.end()) o.partitions = it->second;
    nodes_[id] = std::make_unique<Swim>(info(id), o, 1000 + nodes_.size());
    endpoints_[info(id).endpoints.gossip] = id;
    nodes_[id]->start(now, incarnation);
    return *nodes_[id];
  }
  void remove(const std::string& id) { nodes_.erase(id); }
  Swim& operator[](const std::string& id) { return *nodes_.at(id); }
  bool has(const std::string& id) const { return nodes_.count(id) > 0; }

  // Delivers every pending message (and what they cause) until quiet.
  void flush() {
    for (int round = 0; round < 100; ++round) {
      std::vector<std::pair<std::string, Outgoing>> batch;
      for (auto& [id, swim] : nodes_) {
        for (Outgoing& m : swim->take_messages()) batch.push_back({id, std::move(m)});
        for (MemberEvent& e : swim->take_events()) events[id].push_back(e);
      }
      if (batch.empty()) return;
      for (auto& [from, m] : batch) {
        sent.push_back(m);
        auto it = endpoints_.find(m.to_endpoint);
        if (it == endpoints_.end() || !has(it->second)) continue;
        if (!m.to_id.empty() && m.to_id != it->second) continue;
        if (drop && drop(from, it->second, m)) continue;
        nodes_[it->second]->receive(m.bytes, now);
      }
    }
  }
  // Moves time forward in `step`s, ticking every machine that is due, delivering at once.
  void run_for(Millis d, Millis step = Millis(10)) {
    MonoTime end = now + d;
    while (now < end) {
      now += step;
      for (auto& [id, swim] : nodes_) {
        if (swim->next_deadline() <= now) swim->tick(now);
      }
      flush();
    }
  }
  MemberState state_of(const std::string& observer, const std::string& member) {
    for (const Member& m : nodes_.at(observer)->members()) {
      if (m.info.id == member) return m.state;
    }
    return static_cast<MemberState>(0);
  }
  bool knows(const std::string& observer, const std::string& member) {
    return state_of(observer, member) != static_cast<MemberState>(0);
  }
  size_t count_events(const std::string& observer, Kind kind, const std::string& member) {
    size_t n = 0;
    for (const MemberEvent& e : events[observer])
      n += (e.kind == kind && e.member.info.id == member);
    return n;
  }

  MonoTime now{};
  // Options::partitions of a node added later, where it differs from the others'.
  std::map<std::string, uint32_t> partitions;
  std::function<bool(const std::string& from, const std::string& to, const Outgoing&)> drop;
  std::map<std::string, std::vector<MemberEvent>> events;
  std::vector<Outgoing> sent;

 private:
  Options options_;
  std::map<std::string, std::unique_ptr<Swim>> nodes_;
  std::map<std::string, std::string> endpoints_;
};

pb::Envelope decode_ok(const std::string& bytes) {
  pb::Envelope env;
  EXPECT_EQ(decode(bytes, "edgekv", 1 << 20, &env), DecodeResult::kOk);
  return env;
}

// A hand-made datagram from `from` to the machine under test.
std::string datagram(const std::string& from, const std::function<void(pb::Envelope&)>& fill,
                     const std::string& cluster = "edgekv", uint32_t version = kProtocolVersion) {
  pb::Envelope env;
  env.set_cluster(cluster);
  env.set_version(version);
  env.set_from_id(from);
  env.set_from_endpoint(info(from).endpoints.gossip);
  fill(env);
  return env.SerializeAsString();
}

void add_claim(pb::Envelope& env, pb::State state, const std::string& id, uint64_t inc,
               const std::string& from = "") {
  pb::Update* u = env.add_updates();
  u->set_state(state);
  u->set_id(id);
  u->set_incarnation(inc);
  if (state == pb::ALIVE) to_proto(info(id), u->mutable_node());
  if (!from.empty()) u->set_from(from);
}

Options test_options() {
  Options o = Options::lan();
  o.push_pull_interval = Millis(0);  // only what a test does explicitly
  return o;
}

TEST(SwimJoin, SeedThatIsSelfIsIgnoredAndFirstMessageCarriesNodeInfo) {
  Net net(test_options());
  Swim& a = net.add("a", {info("a").endpoints.gossip});  // its own endpoint only
  EXPECT_TRUE(a.joined());
  EXPECT_TRUE(a.take_messages().empty());

  Swim& b = net.add("b", {info("a").endpoints.gossip, info("b").endpoints.gossip});
  EXPECT_FALSE(b.joined());
  std::vector<Outgoing> first = b.take_messages();
  ASSERT_EQ(first.size(), 1u);    // to a only, not to itself
  EXPECT_EQ(first[0].to_id, "");  // a's id is not known yet
  EXPECT_EQ(first[0].to_endpoint, info("a").endpoints.gossip);
  pb::Envelope env = decode_ok(first[0].bytes);
  ASSERT_TRUE(env.has_push_pull());
  EXPECT_TRUE(env.push_pull().join());
  ASSERT_GE(env.push_pull().states_size(), 1);
  EXPECT_EQ(from_proto(env.push_pull().states(0).node()), info("b"));

  a.receive(first[0].bytes, net.now);
  net.flush();
  EXPECT_TRUE(b.joined());
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net.state_of("b", "a"), MemberState::kAlive);
  EXPECT_EQ(net.count_events("a", Kind::kJoined, "b"), 1u);
  EXPECT_EQ(net.count_events("b", Kind::kJoined, "a"), 1u);
  // members(): every member, self included, sorted by id.
  std::vector<Member> view = b.members();
  ASSERT_EQ(view.size(), 2u);
  EXPECT_EQ(view[0].info.id, "a");
  EXPECT_EQ(view[1].info.id, "b");
}

TEST(SwimJoin, RetriesWithBackoffUntilASeedAnswers) {
  Net net(test_options());
  Swim& b = net.add("b", {info("a").endpoints.gossip});
  std::vector<MonoTime> attempts;
  if (!b.take_messages().empty()) attempts.push_back(net.now);  // at start
  for (int i = 0; i < 2000; ++i) {
    net.now += Millis(10);
    if (b.next_deadline() <= net.now) b.tick(net.now);
    for (const Outgoing& m : b.take_messages()) {
      if (decode_ok(m.bytes).has_push_pull()) attempts.push_back(net.now);
    }
  }
  ASSERT_GE(attempts.size(), 5u);
  // Doubling from join_retry_min (200 ms) up to join_retry_max (5 s).
  EXPECT_EQ(attempts[1] - attempts[0], Millis(200));
  EXPECT_EQ(attempts[2] - attempts[1], Millis(400));
  EXPECT_EQ(attempts[3] - attempts[2], Millis(800));
  EXPECT_EQ(attempts.back() - attempts[attempts.size() - 2], Millis(5000));
  // The seed comes up: the next attempt gets through.
  Swim& a = net.add("a");
  (void)a;
  net.run_for(Millis(6000));
  EXPECT_TRUE(b.joined());
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
}

// Three members a, b, c, all alive in every view.
Net three(Options o = test_options()) {
  Net net(o);
  net.add("a");
  net.add("b", {info("a").endpoints.gossip});
  net.add("c", {info("a").endpoints.gossip});
  net.flush();
  net.run_for(Millis(3000));
  return net;
}

TEST(SwimProbe, PingIsAnsweredWithAck) {
  Net net = three();
  Swim& a = net["a"];
  uint64_t acks = a.counters().acks_received;
  net.run_for(Millis(3000));
  EXPECT_GT(a.counters().probes_sent, 0u);
  EXPECT_GT(a.counters().acks_received, acks);
  EXPECT_EQ(a.counters().suspicions, 0u);
  EXPECT_EQ(a.health_score(), 0u);
}

TEST(SwimProbe, UnreachableMemberIsSuspectedThenDeclaredDead) {
  Net net = three();
  // c stops answering: every message to it is lost.
  net.drop = [](const std::string&, const std::string& to, const Outgoing&) { return to == "c"; };
  ASSERT_TRUE(net.has("c"));
  uint64_t ping_reqs = net["a"].counters().indirect_probes_sent;
  net.run_for(Millis(4000));
  // a (or b) probed c, asked the other to try, got a nack (the helper is fine), suspected c.
  EXPECT_GT(net["a"].counters().indirect_probes_sent + net["b"].counters().indirect_probes_sent,
            ping_reqs);
  EXPECT_GT(net["a"].counters().nacks_received + net["b"].counters().nacks_received, 0u);
  EXPECT_EQ(net.count_events("a", Kind::kSuspect, "c"), 1u);
  // The helpers' nacks say the target is the problem, not us: no loss of local health.
  EXPECT_EQ(net["a"].health_score(), 0u);
  net.run_for(Millis(Options::lan().suspicion_max_mult * 2000));
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kDead);
  EXPECT_EQ(net.state_of("b", "c"), MemberState::kDead);
  EXPECT_EQ(net.count_events("a", Kind::kDead, "c"), 1u);
  EXPECT_GE(net["a"].counters().dead_declared + net["b"].counters().dead_declared, 1u);
}

TEST(SwimProbe, MissingNacksRaiseLocalHealthAndStretchTheInterval) {
  Net net = three();
  // a's own network is bad: everything to a is lost.
  net.drop = [](const std::string&, const std::string& to, const Outgoing&) { return to == "a"; };
  net.run_for(Millis(8000));
  Swim& a = net["a"];
  EXPECT_GT(a.health_score(), 1u);
  // The probe interval grows with the score: fewer probes per second now.
  uint64_t before = a.counters().probes_sent;
  uint32_t multiplier = a.health_score() + 1;
  net.run_for(Millis(10000));
  EXPECT_LE(a.counters().probes_sent - before, 10u / std::min<uint32_t>(multiplier, 10) + 2);
  // Back to health: successful probes lower the score.
  net.drop = nullptr;
  net.run_for(Millis(120000));
  EXPECT_EQ(a.health_score(), 0u);
}

TEST(SwimRefute, SuspicionOfSelfIsRefutedWithHigherIncarnation) {
  Net net(test_options());
  Swim& a = net.add("a");
  EXPECT_EQ(a.incarnation(), 0u);
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::ALIVE, "b", 0);
                       add_claim(e, pb::SUSPECT, "a", 0, "b");
                     }),
            net.now);
  EXPECT_EQ(a.incarnation(), 1u);
  EXPECT_EQ(a.counters().refutations, 1u);
  EXPECT_EQ(a.health_score(), 1u);  // having to refute hints at our own slowness
  // The refutation goes out piggybacked on the next message.
  net.run_for(Millis(300));
  bool refuted = false;
  for (const Outgoing& m : net.sent) {
    pb::Envelope env = decode_ok(m.bytes);
    for (const pb::Update& u : env.updates()) {
      refuted |= u.id() == "a" && u.state() == pb::ALIVE && u.incarnation() == 1;
    }
  }
  EXPECT_TRUE(refuted);
  // A stale claim (older incarnation) changes nothing.
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::DEAD, "a", 0, "b");
                     }),
            net.now);
  EXPECT_EQ(a.incarnation(), 1u);
  // A dead claim at our incarnation is refuted too.
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::DEAD, "a", 1, "b");
                     }),
            net.now);
  EXPECT_EQ(a.incarnation(), 2u);
  // So is an alive claim from an older life of ours with a higher incarnation.
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::ALIVE, "a", 9);
                     }),
            net.now);
  EXPECT_EQ(a.incarnation(), 10u);
}

TEST(SwimRefute, IncarnationRulesForOthers) {
  Net net(test_options());
  Swim& a = net.add("a");
  auto feed = [&](pb::State s, uint64_t inc) {
    a.receive(datagram("z",
                       [&](pb::Envelope& e) {
                         e.mutable_gossip();
                         add_claim(e, s, "b", inc, "z");
                       }),
              net.now);
  };
  feed(pb::ALIVE, 5);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  feed(pb::SUSPECT, 4);  // older: ignored
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  feed(pb::SUSPECT, 5);  // same incarnation: suspect wins over alive
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kSuspect);
  feed(pb::ALIVE, 5);  // same incarnation: alive does not clear a suspicion
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kSuspect);
  feed(pb::ALIVE, 6);  // the refutation
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  EXPECT_EQ(a.counters().false_alarms, 1u);
  feed(pb::DEAD, 6);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kDead);
  feed(pb::SUSPECT, 7);  // dead is not undone by a suspicion
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kDead);
  feed(pb::ALIVE, 6);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kDead);
  feed(pb::ALIVE, 7);  // back with a higher incarnation: joins again
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  a.take_messages();
  std::vector<MemberEvent> events = a.take_events();
  std::vector<Kind> kinds;
  for (const MemberEvent& e : events) {
    if (e.member.info.id == "b") kinds.push_back(e.kind);
  }
  EXPECT_EQ(kinds, (std::vector<Kind>{Kind::kJoined, Kind::kSuspect, Kind::kAlive, Kind::kDead,
                                      Kind::kJoined}));
}

// A forged dead claim at the largest incarnation a uint64 holds, sent to a bystander and to
// the member it names: both ignore it and count it. Neither the victim's incarnation (which
// refuting would have wrapped to 0) nor anyone's view changes, then or after a few periods.
TEST(SwimIncarnation, DeadClaimAtTheTopOfTheRangeIsIgnoredEverywhere) {
  Net net = three();
  const uint64_t victim_before = net["b"].incarnation();
  const std::string forged = datagram("x", [](pb::Envelope& e) {
    e.mutable_gossip();
    add_claim(e, pb::DEAD, "b", UINT64_MAX, "x");
  });
  for (int repeat = 0; repeat < 3; ++repeat) {
    net["a"].receive(forged, net.now);
    net["b"].receive(forged, net.now);
    net.run_for(Millis(2000));
  }
  EXPECT_EQ(net["a"].counters().claims_rejected, 3u);
  EXPECT_EQ(net["b"].counters().claims_rejected, 3u);
  EXPECT_EQ(net["b"].incarnation(), victim_before);
  EXPECT_EQ(net["b"].counters().refutations, 0u);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net.state_of("c", "b"), MemberState::kAlive);
  EXPECT_EQ(net.count_events("a", Kind::kDead, "b"), 0u);
  EXPECT_EQ(net.count_events("c", Kind::kDead, "b"), 0u);
}

// The lead: a claim more than kMaxIncarnationLead above what a node holds is ignored (about
// another member and about itself); one just within it is believed, and the member refutes
// it above the claim, so everyone sees it alive again.
TEST(SwimIncarnation, ClaimsFarAboveWhatWasAnnouncedAreIgnoredCloseOnesRefuted) {
  Net net = three();
  const uint64_t b0 = net["b"].incarnation();
  auto claim = [&](const std::string& to, pb::State state, uint64_t inc) {
    net[to].receive(datagram("x",
                             [&](pb::Envelope& e) {
                               e.mutable_gossip();
                               add_claim(e, state, "b", inc, "x");
                             }),
                    net.now);
  };
  claim("a", pb::SUSPECT, b0 + kMaxIncarnationLead + 1);
  claim("a", pb::ALIVE, b0 + kMaxIncarnationLead + 1);
  claim("b", pb::DEAD, b0 + kMaxIncarnationLead + 1);
  claim("b", pb::ALIVE, b0 + kMaxIncarnationLead + 1);
  EXPECT_EQ(net["a"].counters().claims_rejected, 2u);
  EXPECT_EQ(net["b"].counters().claims_rejected, 2u);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net["b"].incarnation(), b0);
  EXPECT_EQ(net["a"].members()[1].incarnation, b0);

  // Within the lead: a believes it, b refutes above it, and a takes b back.
  claim("a", pb::DEAD, b0 + kMaxIncarnationLead);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kDead);
  net.run_for(Millis(3000));
  EXPECT_EQ(net["b"].incarnation(), b0 + kMaxIncarnationLead + 1);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net.state_of("c", "b"), MemberState::kAlive);
  EXPECT_EQ(net["a"].counters().claims_rejected, 2u);
}

// Saturation at kIncarnationMax: a start above it is held at it; a suspicion just below it
// is refuted to it; claims at or above it are ignored, so the incarnation stays there and
// never wraps; others still see the member alive.
TEST(SwimIncarnation, SaturatesAtTheCeilingAndNeverWraps) {
  Net net(test_options());
  Swim& a = net.add("a", {}, UINT64_MAX - 1);
  EXPECT_EQ(a.incarnation(), kIncarnationMax);
  net.remove("a");
  Swim& b = net.add("b", {}, kIncarnationMax - 5);
  Swim& c = net.add("c", {info("b").endpoints.gossip});
  net.run_for(Millis(3000));
  ASSERT_EQ(net.state_of("c", "b"), MemberState::kAlive);
  auto claim = [&](Swim& to, pb::State state, uint64_t inc) {
    to.receive(datagram("x",
                        [&](pb::Envelope& e) {
                          e.mutable_gossip();
                          add_claim(e, state, "b", inc, "x");
                        }),
               net.now);
  };
  claim(b, pb::SUSPECT, kIncarnationMax - 1);
  EXPECT_EQ(b.incarnation(), kIncarnationMax);
  for (uint64_t inc : {kIncarnationMax, kIncarnationMax + 1, UINT64_MAX}) {
    claim(b, pb::DEAD, inc);
    claim(c, pb::DEAD, inc);
  }
  EXPECT_EQ(b.counters().claims_rejected, 3u);
  EXPECT_EQ(c.counters().claims_rejected, 3u);
  EXPECT_EQ(b.incarnation(), kIncarnationMax);
  net.run_for(Millis(3000));
  EXPECT_EQ(b.incarnation(), kIncarnationMax);
  EXPECT_EQ(net.state_of("c", "b"), MemberState::kAlive);
  // A metadata change at the ceiling stays at it too.
  NodeInfo moved = info("b");
  moved.endpoints.client = "tcp://b:7001";
  b.update_self(moved, net.now);
  EXPECT_EQ(b.incarnation(), kIncarnationMax);
}

// A restart announces an incarnation far above the old one (the wall clock, the previous
// life's uptime above it): within the lead, the members that remember the old life take
// the new one, relayed or not.
TEST(SwimIncarnation, RestartFarAboveTheOldIncarnationIsAccepted) {
  Net net = three();
  net.remove("c");
  const uint64_t restarted = kMaxIncarnationLead - 1;  // 49 days of uptime, in ms
  net.add("c", {info("a").endpoints.gossip}, restarted);
  net.run_for(Millis(3000));
  EXPECT_EQ(net["c"].incarnation(), restarted);
  for (const std::string observer : {"a", "b"}) {
    EXPECT_EQ(net.state_of(observer, "c"), MemberState::kAlive) << observer;
    EXPECT_EQ(net[observer].members()[2].incarnation, restarted) << observer;
    EXPECT_EQ(net[observer].counters().claims_rejected, 0u) << observer;
  }
}

// The view holds at most max_members (self included): alive claims about more members are
// ignored and counted; known members still change state.
TEST(SwimMembers, TheViewIsBoundedAndNewsOfMoreIsCounted) {
  Options o = test_options();
  o.max_members = 4;
  Net net(o);
  Swim& a = net.add("a");
  a.receive(datagram("x",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       for (int i = 0; i < 10; ++i)
                         add_claim(e, pb::ALIVE, "m" + std::to_string(i), 1);
                     }),
            net.now);
  EXPECT_EQ(a.members().size(), 4u);
  EXPECT_EQ(a.counters().members_refused, 7u);
  a.receive(datagram("x",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::ALIVE, "m0", 2);  // known: updated as usual
                       add_claim(e, pb::ALIVE, "m9", 2);  // still no room
                     }),
            net.now);
  EXPECT_EQ(a.members()[1].incarnation, 2u);
  EXPECT_EQ(a.members().size(), 4u);
  EXPECT_EQ(a.counters().members_refused, 8u);
}

TEST(SwimRefute, SuspicionTimeoutShrinksWithConfirmations) {
  Options o = test_options();
  Net net(o);
  Swim& a = net.add("a");
  for (const char* id : {"b", "c", "d", "e", "f"}) {
    a.receive(datagram(id,
                       [&](pb::Envelope& e) {
                         e.mutable_gossip();
                         add_claim(e, pb::ALIVE, id, 0);
                       }),
              net.now);
  }
  a.receive(datagram("c",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::SUSPECT, "b", 0, "c");
                     }),
            net.now);
  Millis min = suspicion_min_timeout(o, 6);
  Millis max = min * o.suspicion_max_mult;
  EXPECT_LE(a.next_deadline(), net.now + max);
  // Two more members independently suspect b: the timeout drops to the minimum.
  for (const char* id : {"d", "e"}) {
    a.receive(datagram(id,
                       [&](pb::Envelope& e) {
                         e.mutable_gossip();
                         add_claim(e, pb::SUSPECT, "b", 0, id);
                       }),
              net.now);
  }
  MonoTime dead_at = net.now + min;
  a.tick(dead_at - Millis(1));
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kSuspect);
  a.tick(dead_at);
  EXPECT_EQ(net.state_of("a", "b"), MemberState::kDead);
  EXPECT_EQ(a.counters().dead_declared, 1u);
}

TEST(SwimLeave, LeftIsAnnouncedAndReapedLater) {
  Options o = test_options();
  o.reap_after = Millis(30000);
  Net net = three(o);
  Swim& c = net["c"];
  c.leave(net.now);
  EXPECT_FALSE(c.left());
  net.flush();  // the announcement is handed to the transport
  EXPECT_TRUE(c.left());
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kLeft);
  EXPECT_EQ(net.state_of("b", "c"), MemberState::kLeft);
  EXPECT_EQ(net.count_events("a", Kind::kLeft, "c"), 1u);
  net.remove("c");
  net.run_for(Millis(20000), Millis(100));
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kLeft);  // still visible for a while
  net.run_for(Millis(11000), Millis(100));
  EXPECT_FALSE(net.knows("a", "c"));
  EXPECT_EQ(net.count_events("a", Kind::kReaped, "c"), 1u);
  // A reaped member that shows up again joins again.
  net.add("c", {info("a").endpoints.gossip});
  net.run_for(Millis(3000));
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kAlive);
  EXPECT_EQ(net.count_events("a", Kind::kJoined, "c"), 2u);
}

TEST(SwimLeave, LeaveWithNobodyToTellIsImmediateAndTimesOutOtherwise) {
  Net net(test_options());
  Swim& a = net.add("a");
  a.leave(net.now);
  EXPECT_TRUE(a.left());
  Net net2 = three();
  Swim& b = net2["b"];
  b.leave(net2.now);
  // The driver never takes the messages (its socket is wedged): leave_timeout ends it.
  b.tick(net2.now + Options::lan().leave_timeout);
  EXPECT_TRUE(b.left());
}

TEST(SwimRestart, SameIdRejoinsAboveItsOldIncarnation) {
  Net net = three();
  // c refutes a few suspicions, then crashes and restarts with incarnation 0.
  net["c"].receive(datagram("a",
                            [](pb::Envelope& e) {
                              e.mutable_gossip();
                              add_claim(e, pb::SUSPECT, "c", 0, "a");
                            }),
                   net.now);
  net.run_for(Millis(3000));
  ASSERT_EQ(net["c"].incarnation(), 1u);
  net.remove("c");
  net.add("c", {info("a").endpoints.gossip}, 0);
  net.run_for(Millis(3000));
  // It learned of its old incarnation from the seed's state and went above it.
  EXPECT_GE(net["c"].incarnation(), 2u);
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kAlive);
  EXPECT_EQ(net.state_of("b", "c"), MemberState::kAlive);
}

TEST(SwimUpdate, MetadataChangePropagatesAsUpdated) {
  Net net = three();
  NodeInfo changed = info("c");
  changed.endpoints.client = "tcp://c:7100";
  changed.id = "ignored";  // the id never changes
  net["c"].update_self(changed, net.now);
  EXPECT_EQ(net["c"].self().id, "c");
  EXPECT_EQ(net["c"].incarnation(), 1u);
  net.run_for(Millis(2000));
  EXPECT_EQ(net.count_events("a", Kind::kUpdated, "c"), 1u);
  for (const Member& m : net["a"].members()) {
    if (m.info.id == "c") {
      EXPECT_EQ(m.info.endpoints.client, "tcp://c:7100");
    }
  }
}

TEST(SwimWire, EveryMessageDecodesAndStaysWithinBounds) {
  Options o = test_options();
  o.max_message_bytes = 600;
  Net net(o);
  net.add("a");
  for (int i = 0; i < 40; ++i) {
    net.add("node-with-a-long-name-" + std::to_string(i), {info("a").endpoints.gossip});
  }
  net.run_for(Millis(5000));
  ASSERT_GT(net.sent.size(), 100u);
  size_t largest_push_pull = 0;
  for (const Outgoing& m : net.sent) {
    pb::Envelope env = decode_ok(m.bytes);
    EXPECT_EQ(env.cluster(), "edgekv");
    EXPECT_EQ(env.version(), kProtocolVersion);
    if (env.has_push_pull()) {
      largest_push_pull = std::max(largest_push_pull, m.bytes.size());
      EXPECT_LE(m.bytes.size(), o.max_push_pull_bytes);
    } else {
      EXPECT_LE(m.bytes.size(), o.max_message_bytes);
      EXPECT_FALSE(m.to_id.empty());
    }
    // Round trip: re-encoding gives the same bytes.
    EXPECT_EQ(env.SerializeAsString(), m.bytes);
  }
  EXPECT_GT(largest_push_pull, o.max_message_bytes);  // full state may exceed it
}

TEST(SwimWire, PushPullIsBoundedToo) {
  Options o = test_options();
  o.max_push_pull_bytes = 2000;
  Net net(o);
  Swim& a = net.add("a");
  for (int i = 0; i < 100; ++i) {
    std::string id = "m" + std::to_string(i);
    a.receive(datagram(id,
                       [&](pb::Envelope& e) {
                         e.mutable_gossip();
                         add_claim(e, pb::ALIVE, id, 0);
                       }),
              net.now);
  }
  a.take_messages();
  a.receive(datagram("m1", [](pb::Envelope& e) { e.mutable_push_pull(); }), net.now);
  std::vector<Outgoing> out = a.take_messages();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LE(out[0].bytes.size(), 2000u);
  pb::Envelope env = decode_ok(out[0].bytes);
  EXPECT_EQ(env.push_pull().states(0).id(), "a");  // self always first
  EXPECT_LT(env.push_pull().states_size(), 101);
}

TEST(SwimWire, OtherClusterOtherVersionAndGarbageAreDroppedAndCounted) {
  Net net(test_options());
  Swim& a = net.add("a");
  auto ping = [](pb::Envelope& e) { e.mutable_ping()->set_seq(1); };
  a.receive(datagram("b", ping, "other-cluster"), net.now);
  a.receive(datagram("b", ping, "edgekv", kMaxProtocolVersion + 1), net.now);
  a.receive(datagram("b", ping, "edgekv", 0), net.now);
  a.receive("\x08\x96\x01garbage", net.now);
  a.receive(datagram("b", [](pb::Envelope&) {}), net.now);  // no body
  a.receive(datagram("bad id!", ping), net.now);
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_gossip();
                       add_claim(e, pb::ALIVE, "c", 0);
                       e.mutable_updates(0)->mutable_node()->set_id("not-c");  // inconsistent
                     }),
            net.now);
  a.receive(std::string(Options::lan().max_push_pull_bytes + 1, 'x'), net.now);  // too large
  const Counters& c = a.counters();
  EXPECT_EQ(c.dropped_cluster, 1u);
  EXPECT_EQ(c.dropped_version, 2u);
  EXPECT_EQ(c.dropped_malformed, 5u);
  EXPECT_EQ(c.messages_dropped, 8u);
  EXPECT_EQ(c.messages_in, 0u);
  EXPECT_TRUE(a.take_messages().empty());
  EXPECT_EQ(a.members().size(), 1u);
  // A good one is accepted.
  a.receive(datagram("b", ping), net.now);
  EXPECT_EQ(a.counters().messages_in, 1u);
  EXPECT_EQ(a.take_messages().size(), 1u);  // the ack
}

TEST(SwimPartitions, ANodeWithAnotherCountIsRefusedAndBothSidesKnowWhy) {
  Options o = test_options();
  o.partitions = 512;
  Net net(o);
  net.partitions["b"] = 256;
  Swim& a = net.add("a");
  Swim& b = net.add("b", {info("a").endpoints.gossip});
  net.run_for(Millis(3000));
  EXPECT_FALSE(b.joined());
  EXPECT_EQ(a.members().size(), 1u);
  EXPECT_EQ(b.members().size(), 1u);
  EXPECT_EQ(a.counters().messages_in, 0u);
  // b's joins (at 0, 0.2, 0.6, 1.4 s and so on) reach a and are dropped; a answers at most
  // one per protocol period, and b drops the answers in turn.
  const uint64_t joins = a.counters().dropped_partitions;
  EXPECT_GE(joins, 4u);
  EXPECT_EQ(a.counters().messages_dropped, joins);
  EXPECT_GE(b.counters().dropped_partitions, 2u);
  EXPECT_LE(b.counters().dropped_partitions, 4u);  // 3 s of 1 s periods, plus the first
  EXPECT_LT(b.counters().dropped_partitions, joins);
  ASSERT_NE(a.partitions_mismatch(), nullptr);
  EXPECT_EQ(a.partitions_mismatch()->id, "b");
  EXPECT_EQ(a.partitions_mismatch()->endpoint, info("b").endpoints.gossip);
  EXPECT_EQ(a.partitions_mismatch()->partitions, 256u);
  ASSERT_NE(b.partitions_mismatch(), nullptr);
  EXPECT_EQ(b.partitions_mismatch()->id, "a");
  EXPECT_EQ(b.partitions_mismatch()->partitions, 512u);
  // Every message states the sender's count.
  for (const Outgoing& m : net.sent) {
    const uint32_t stated = decode_ok(m.bytes).partitions();
    EXPECT_TRUE(stated == 512 || stated == 256);
  }
  // A node with the same count joins as usual.
  Swim& c = net.add("c", {info("a").endpoints.gossip});
  net.run_for(Millis(3000));
  EXPECT_TRUE(c.joined());
  EXPECT_EQ(net.state_of("a", "c"), MemberState::kAlive);
  EXPECT_EQ(c.counters().dropped_partitions, 0u);
  EXPECT_EQ(a.partitions_mismatch()->id, "b");  // c never was one
}

TEST(SwimPartitions, MessagesStatingNoCountAreAcceptedAndNodesStatingNoneAcceptAny) {
  Options o = test_options();
  o.partitions = 512;
  Net net(o);
  net.partitions["quiet"] = 0;
  Swim& a = net.add("a");
  Swim& quiet = net.add("quiet");
  auto ping = [](pb::Envelope& e) { e.mutable_ping()->set_seq(1); };
  a.receive(datagram("b", ping), net.now);  // no partitions field: an older sender
  EXPECT_EQ(a.counters().messages_in, 1u);
  EXPECT_EQ(a.partitions_mismatch(), nullptr);
  quiet.receive(datagram("b",
                         [](pb::Envelope& e) {
                           e.mutable_ping()->set_seq(1);
                           e.set_partitions(64);
                         }),
                net.now);
  EXPECT_EQ(quiet.counters().messages_in, 1u);
  EXPECT_EQ(quiet.counters().dropped_partitions, 0u);
  // A ping stating another count gets no ack: it is dropped.
  a.take_messages();
  a.receive(datagram("b",
                     [](pb::Envelope& e) {
                       e.mutable_ping()->set_seq(2);
                       e.set_partitions(1024);
                     }),
            net.now);
  EXPECT_TRUE(a.take_messages().empty());
  EXPECT_EQ(a.counters().dropped_partitions, 1u);
}

TEST(SwimPartitions, OptionsRefuseACountThatIsNoPowerOfTwo) {
  Options o = Options::lan();
  o.partitions = 100;
  Status status = o.validate();
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_NE(status.message().find("partitions"), std::string::npos) << status.message();
  o.partitions = 131072;
  EXPECT_FALSE(o.validate().ok());
  o.partitions = 0;
  EXPECT_TRUE(o.validate().ok());
  o.partitions = 512;
  EXPECT_TRUE(o.validate().ok());
}

TEST(SwimWire, RandomAndMutatedBytesNeverCrash) {
  Net net(test_options());
  Swim& a = net.add("a");
  // Valid messages of every type, to mutate.
  std::vector<std::string> corpus = {
      datagram("b", [](pb::Envelope& e) { e.mutable_ping()->set_seq(3); }),
      datagram("b", [](pb::Envelope& e) { e.mutable_ack()->set_seq(3); }),
      datagram("b", [](pb::Envelope& e) { e.mutable_nack()->set_seq(3); }),
      datagram("b",
               [](pb::Envelope& e) {
                 pb::PingReq* r = e.mutable_ping_req();
                 r->set_seq(4);
                 r->set_target_id("c");
                 r->set_target_endpoint("tcp://c:1");
                 r->set_want_nack(true);
               }),
      datagram("b",
               [](pb::Envelope& e) {
                 e.mutable_push_pull();
                 add_claim(e, pb::ALIVE, "b", 2);
                 add_claim(e, pb::SUSPECT, "a", 0, "b");
                 add_claim(e, pb::DEAD, "c", 1, "b");
                 add_claim(e, pb::LEFT, "d", 1);
               }),
  };
  Random rng(99);
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = corpus[rng.uniform(corpus.size())];
    switch (rng.uniform(4)) {
      case 0:  // flip bytes
        for (uint64_t n = 1 + rng.uniform(4); n > 0; --n) {
          bytes[rng.uniform(bytes.size())] ^= static_cast<char>(1 + rng.uniform(255));
        }
        break;
      case 1:  // truncate
        bytes.resize(rng.uniform(bytes.size() + 1));
        break;
      case 2:  // splice two
        bytes += corpus[rng.uniform(corpus.size())].substr(rng.uniform(20));
        break;
      default:  // pure garbage
        bytes.assign(rng.uniform(200), '\0');
        for (char& ch : bytes) ch = static_cast<char>(rng.next());
    }
    net.now += Millis(1);
    a.receive(bytes, net.now);
    if (a.next_deadline() <= net.now) a.tick(net.now);
    a.take_messages();
    a.take_events();
  }
  const Counters& c = a.counters();
  EXPECT_EQ(c.messages_in + c.messages_dropped, 20000u);
  EXPECT_GT(c.messages_dropped, 1000u);
  EXPECT_GT(c.messages_in, 100u);
  // The view holds only valid members.
  for (const Member& m : a.members()) EXPECT_TRUE(check_node_info(m.info).ok());
}

}  // namespace
}  // namespace edgekv::gossip
