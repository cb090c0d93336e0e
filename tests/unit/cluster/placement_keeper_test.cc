#include "cluster/placement_keeper.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/random.h"

namespace edgekv::cluster {
namespace {

using std::chrono::milliseconds;

constexpr uint32_t kQ = 64;
constexpr uint32_t kN = 3;

Placement solo(const NodeId& id, uint32_t q = kQ, uint32_t n = kN) {
  const NodeId ids[] = {id};
  auto p = Placement::create(q, n, ids);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return std::move(p).value();
}

Placement empty(uint32_t q = kQ, uint32_t n = kN) {
  auto p = Placement::create(q, n, {});
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return std::move(p).value();
}

// Keepers wired to each other through a queue, with optional loss, in virtual time.
struct Cluster {
  explicit Cluster(uint64_t seed) : random(seed) {}

  PlacementKeeper& add(const NodeId& id, Placement start_with) {
    keepers[id] = std::make_unique<PlacementKeeper>(id, std::move(start_with),
                                                    PlacementKeeperOptions{}, random.next());
    return *keepers[id];
  }
  // A node added to running ones: it and they see each other up, and it starts.
  PlacementKeeper& start_new(const NodeId& id) {
    PlacementKeeper& n = *keepers[id];
    for (auto& [other, k] : keepers) {
      if (other == id) continue;
      k->set_member_up(id, true, now);
      n.set_member_up(other, true, now);
    }
    n.start(now);
    return n;
  }
  void start_all() {
    for (auto& [id, k] : keepers) {
      for (auto& [other, unused] : keepers) k->set_member_up(other, true, now);
      k->start(now);
    }
  }
  // One step: deliver everything queued (dropping some when lossy), then advance time to
  // the earliest deadline and tick.
  void step() {
    for (auto& [id, k] : keepers) {
      for (PeerOutgoing& m : k->take_messages()) queue.push_back({id, std::move(m)});
    }
    while (!queue.empty()) {
      auto [from, m] = std::move(queue.front());
      queue.pop_front();
      if (loss > 0 && random.chance(loss)) continue;
      if (cut.contains(from) || cut.contains(m.to)) continue;
      auto it = keepers.find(m.to);
      if (it == keepers.end()) continue;
      it->second->on_message(from, m.message, now);
      for (PeerOutgoing& reply : it->second->take_messages()) {
        queue.push_back({m.to, std::move(reply)});
      }
    }
    drive();
    MonoTime next = MonoTime::max();
    for (auto& [id, k] : keepers) next = std::min(next, k->next_deadline());
    if (next != MonoTime::max()) now = std::max(now, next);
    for (auto& [id, k] : keepers) k->tick(now);
  }
  // What a node's driver does (daemon/cluster_node.cc): it declares a pending table seen
  // (no requests of its own in flight here) and streams what it takes over at once, unless
  // the test holds it back.
  void drive() {
    for (auto& [id, k] : keepers) {
      if (k->awaiting_seen().has_value() && !holds_seen.contains(id)) k->mark_seen(now);
      if (k->streaming_may_begin() && !k->taking_over().empty() && !holds_stream.contains(id)) {
        k->set_streamed(static_cast<uint32_t>(k->taking_over().size()), now);
      }
    }
  }
  bool agreed() const {
    const Placement& first = keepers.begin()->second->placement();
    for (auto& [id, k] : keepers) {
      if (!(k->placement() == first) || !k->placement().is_member(id)) return false;
      if (k->pending().has_value()) return false;
    }
    return first.members().size() == keepers.size();
  }
  // Steps until every keeper holds the same table listing every node; the virtual time it
  // took, or nullopt when `max_steps` were not enough.
  std::optional<milliseconds> run_until_agreed(int max_steps) {
    const MonoTime began = now;
    for (int i = 0; i < max_steps; ++i) {
      step();
      if (agreed()) return std::chrono::duration_cast<milliseconds>(now - began);
    }
    return std::nullopt;
  }

  Random random;
  MonoTime now{};
  double loss = 0;
  std::set<NodeId> holds_seen;    // nodes that do not declare a pending table seen
  std::set<NodeId> holds_stream;  // takers that do not stream
  std::set<NodeId> cut;           // nodes whose messages, both ways, are lost
  std::map<NodeId, std::unique_ptr<PlacementKeeper>> keepers;
  std::deque<std::pair<NodeId, PeerOutgoing>> queue;
};

TEST(PlacementKeeper, AFreshNodeJoinsItselfAtStart) {
  PlacementKeeper keeper("a", empty(), {}, 1);
  EXPECT_FALSE(keeper.placement().is_member("a"));
  keeper.start(MonoTime{});
  EXPECT_TRUE(keeper.placement().is_member("a"));
  EXPECT_EQ(keeper.counters().self_joins, 1u);
  EXPECT_TRUE(keeper.take_changed());
  EXPECT_FALSE(keeper.take_changed());
}

TEST(PlacementKeeper, ANodeAlreadyInItsTableChangesNothingAtStart) {
  PlacementKeeper keeper("a", solo("a"), {}, 1);
  const uint64_t epoch = keeper.placement().epoch();
  keeper.start(MonoTime{});
  EXPECT_EQ(keeper.placement().epoch(), epoch);
  EXPECT_FALSE(keeper.take_changed());
}

TEST(PlacementKeeper, TheOlderSideFetchesAndJoinsItself) {
  Placement big = solo("a");
  const NodeId more[] = {"c", "d"};
  ASSERT_TRUE(big.join(more).ok());
  PlacementKeeper old_side("b", solo("b"), {}, 2);
  old_side.start(MonoTime{});
  old_side.take_changed();
  ASSERT_TRUE(Placement::newer(big, old_side.placement()));

  old_side.on_message("a", PlacementDigest{big.epoch(), big.digest()}, MonoTime{});
  auto out = old_side.take_messages();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, "a");
  EXPECT_TRUE(std::holds_alternative<PlacementFetch>(out[0].message));

  old_side.on_message("a", PlacementTable{big.encode()}, MonoTime{});
  EXPECT_EQ(old_side.counters().adopted, 1u);
  EXPECT_TRUE(old_side.take_changed());
  // It adopted a, c, d and proposed its own join on top, as a hand-over: the table stays
  // the fetched one, the pending one (one epoch above) lists b too.
  EXPECT_TRUE(old_side.placement() == big);
  ASSERT_TRUE(old_side.pending().has_value());
  EXPECT_EQ(old_side.pending()->members(), (std::vector<NodeId>{"a", "b", "c", "d"}));
  EXPECT_EQ(old_side.pending()->epoch(), big.epoch() + 1);
  EXPECT_EQ(old_side.counters().hand_overs_proposed, 1u);
  // It has not declared it seen, and the others have not seen it: nothing streams yet.
  EXPECT_TRUE(old_side.awaiting_seen().has_value());
  EXPECT_FALSE(old_side.streaming_may_begin());
  EXPECT_FALSE(old_side.taking_over().empty());
  // Its reads and writes go to b as well for the partitions b takes over.
  for (uint32_t p : old_side.taking_over()) {
    EXPECT_EQ(old_side.joining()[p], (std::vector<NodeId>{"b"})) << p;
  }
}

TEST(PlacementKeeper, TheNewerSideSendsItsTable) {
  PlacementKeeper keeper("a", solo("a"), {}, 3);
  keeper.start(MonoTime{});
  keeper.on_message("b", PlacementDigest{0, 0}, MonoTime{});
  auto out = keeper.take_messages();
  ASSERT_EQ(out.size(), 1u);
  const auto* table = std::get_if<PlacementTable>(&out[0].message);
  ASSERT_NE(table, nullptr);
  auto decoded = Placement::decode(table->encoded);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(*decoded == keeper.placement());
  // The same digest back: nothing to do.
  keeper.on_message("b", PlacementDigest{keeper.placement().epoch(), keeper.placement().digest()},
                    MonoTime{});
  EXPECT_TRUE(keeper.take_messages().empty());
}

TEST(PlacementKeeper, RefusesTablesOfAnotherShapeOrThatDoNotDecode) {
  PlacementKeeper keeper("a", solo("a"), {}, 4);
  keeper.start(MonoTime{});
  keeper.take_changed();
  Placement other_q = solo("b", kQ * 2);
  const NodeId more[] = {"c", "d", "e"};
  ASSERT_TRUE(other_q.join(more).ok());
  keeper.on_message("b", PlacementTable{other_q.encode()}, MonoTime{});
  EXPECT_EQ(keeper.counters().tables_refused, 1u);
  EXPECT_NE(keeper.last_refusal().find("128 partitions"), std::string::npos)
      << keeper.last_refusal();
  EXPECT_NE(keeper.last_refusal().find("this node 64"), std::string::npos) << keeper.last_refusal();

  keeper.on_message("b", PlacementTable{"\x08\x01garbage"}, MonoTime{});
  EXPECT_EQ(keeper.counters().tables_refused, 2u);
  EXPECT_FALSE(keeper.take_changed());
  EXPECT_EQ(keeper.placement().members(), (std::vector<NodeId>{"a"}));
}

TEST(PlacementKeeper, ADownMemberStaysInTheTable) {
  Cluster c(5);
  for (const char* id : {"a", "b", "c"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(100));
  const Placement before = c.keepers["a"]->placement();
  c.keepers["a"]->set_member_up("c", false, c.now);
  c.keepers["b"]->set_member_up("c", false, c.now);
  for (int i = 0; i < 20; ++i) c.step();
  EXPECT_TRUE(c.keepers["a"]->placement() == before);
  EXPECT_TRUE(c.keepers["a"]->placement().is_member("c"));
}

TEST(PlacementKeeper, FreshNodesStartedTogetherAgree) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Cluster c(seed);
    for (int i = 0; i < 7; ++i) c.add("n" + std::to_string(i), empty());
    c.start_all();
    auto took = c.run_until_agreed(200);
    ASSERT_TRUE(took) << "seed " << seed;
    // Every node joins itself once per table it adopts without it; a handful of seconds of
    // one-second exchanges is enough for seven nodes.
    EXPECT_LE(took->count(), 15000) << "seed " << seed;
  }
}

TEST(PlacementKeeper, AgreesUnderMessageLoss) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    Cluster c(seed);
    c.loss = 0.3;
    for (int i = 0; i < 10; ++i) c.add("n" + std::to_string(i), empty());
    c.start_all();
    EXPECT_TRUE(c.run_until_agreed(2000)) << "seed " << seed;
  }
}

TEST(PlacementKeeper, ANewNodeJoinsAnAgreedCluster) {
  Cluster c(9);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement before = c.keepers["a"]->placement();
  c.add("e", empty());
  c.start_new("e");
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement& after = c.keepers["a"]->placement();
  EXPECT_GT(after.epoch(), before.epoch());
  // The new node took about its share; everyone else kept the rest of their slots.
  EXPECT_GT(after.slots_of("e"), 0u);
}

TEST(PlacementKeeper, RemoveTakesANodeOutAndSpreads) {
  Cluster c(11);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  c.keepers["d"]->set_member_up("a", false, c.now);
  // d is gone for good: a removes it; the others adopt the newer table.
  auto gone = std::move(c.keepers["d"]);
  c.keepers.erase("d");
  for (auto& [id, k] : c.keepers) k->set_member_up("d", false, c.now);
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  ASSERT_TRUE(c.run_until_agreed(200));
  EXPECT_FALSE(c.keepers["b"]->placement().is_member("d"));
}

TEST(PlacementKeeper, ARemovalSurvivesAConcurrentJoinElsewhere) {
  Cluster c(13);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  // a removes d while a table with e joined spreads from b, before either heard of the
  // other's change.
  c.keepers.erase("d");
  for (auto& [id, k] : c.keepers) k->set_member_up("d", false, c.now);
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  c.keepers["a"]->take_messages();  // the news of the removal is lost
  ASSERT_TRUE(c.keepers["a"]->pending().has_value());
  Placement with_e = c.keepers["b"]->placement();
  const NodeId e[] = {"e"};
  ASSERT_TRUE(with_e.join(e).ok());
  ASSERT_EQ(with_e.epoch(), c.keepers["a"]->pending()->epoch());
  // a adopts the newer table, which still lists d: it proposes the removal again on top.
  c.keepers["a"]->on_message("b", PlacementTable{with_e.encode()}, c.now);
  EXPECT_TRUE(c.keepers["a"]->placement() == with_e);
  ASSERT_TRUE(c.keepers["a"]->pending().has_value());
  EXPECT_FALSE(c.keepers["a"]->pending()->is_member("d"));
  EXPECT_TRUE(c.keepers["a"]->pending()->is_member("e"));
}

// Steps until `done` holds, at most `max_steps`.
template <typename Done>
bool run_until(Cluster& c, int max_steps, Done done) {
  for (int i = 0; i < max_steps; ++i) {
    c.step();
    if (done()) return true;
  }
  return false;
}

TEST(PlacementKeeper, AJoinCommitsOnlyOnceEveryMemberSawItAndItsTakerStreamed) {
  Cluster c(21);
  for (const char* id : {"a", "b", "c"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement before = c.keepers["a"]->placement();
  c.holds_seen.insert("b");
  c.add("d", empty());
  PlacementKeeper& d = c.start_new("d");
  // Every node learns of the pending table; b has not declared it seen.
  ASSERT_TRUE(run_until(c, 200, [&] {
    for (auto& [id, k] : c.keepers) {
      if (!k->pending().has_value() || k->hand_over()->not_seen != std::vector<NodeId>{"b"}) {
        return false;
      }
    }
    return true;
  }));
  for (int i = 0; i < 20; ++i) c.step();
  EXPECT_FALSE(d.streaming_may_begin());
  EXPECT_TRUE(c.keepers["a"]->placement() == before);
  // Meanwhile every node sends the partitions d takes over to d as well.
  const std::vector<uint32_t> taken = d.taking_over();
  ASSERT_FALSE(taken.empty());
  for (auto& [id, k] : c.keepers) {
    for (uint32_t p : taken) EXPECT_EQ(k->joining()[p], (std::vector<NodeId>{"d"})) << id << p;
  }
  // b sees it; d may stream, but has not streamed yet: still pending.
  c.holds_seen.erase("b");
  c.holds_stream.insert("d");
  ASSERT_TRUE(run_until(c, 200, [&] { return d.streaming_may_begin(); }));
  for (int i = 0; i < 20; ++i) c.step();
  EXPECT_TRUE(c.keepers["a"]->pending().has_value());
  d.set_streamed(static_cast<uint32_t>(taken.size() - 1), c.now);
  for (int i = 0; i < 20; ++i) c.step();
  std::optional<HandOverStatus> status = c.keepers["b"]->hand_over();
  ASSERT_TRUE(status.has_value());
  ASSERT_EQ(status->takers.size(), 1u);
  EXPECT_EQ(status->takers[0].node, "d");
  EXPECT_EQ(status->takers[0].streamed, taken.size() - 1);
  EXPECT_FALSE(status->takers[0].ready);
  EXPECT_EQ(status->joining, (std::vector<NodeId>{"d"}));
  // The last partition: the table commits everywhere.
  c.holds_stream.clear();
  ASSERT_TRUE(c.run_until_agreed(200));
  EXPECT_EQ(c.keepers["a"]->placement().epoch(), before.epoch() + 1);
  EXPECT_EQ(c.keepers["a"]->placement().slots_of("d"), taken.size());
  for (auto& [id, k] : c.keepers) EXPECT_TRUE(k->joining().empty()) << id;
}

TEST(PlacementKeeper, RemovingADownNodeDoesNotWaitForIt) {
  Cluster c(23);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  c.keepers.erase("d");
  for (auto& [id, k] : c.keepers) k->set_member_up("d", false, c.now);
  const uint64_t proposed_a = c.keepers["a"]->counters().hand_overs_proposed;
  const uint64_t proposed_c = c.keepers["c"]->counters().hand_overs_proposed;
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  ASSERT_TRUE(c.run_until_agreed(200));
  EXPECT_FALSE(c.keepers["c"]->placement().is_member("d"));
  EXPECT_EQ(c.keepers["c"]->counters().hand_overs_proposed, proposed_c);
  EXPECT_EQ(c.keepers["a"]->counters().hand_overs_proposed, proposed_a + 1);
}

TEST(PlacementKeeper, ALiveLeavingNodeMustSeeItsRemovalAndThenStaysOut) {
  Cluster c(25);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  c.holds_seen.insert("d");
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  for (int i = 0; i < 50; ++i) c.step();
  EXPECT_TRUE(c.keepers["a"]->placement().is_member("d"));
  EXPECT_EQ(c.keepers["a"]->hand_over()->not_seen, (std::vector<NodeId>{"d"}));
  EXPECT_EQ(c.keepers["a"]->hand_over()->leaving, (std::vector<NodeId>{"d"}));
  c.holds_seen.clear();
  ASSERT_TRUE(run_until(c, 200, [&] {
    for (auto& [id, k] : c.keepers) {
      if (k->placement().is_member("d") || k->pending().has_value()) return false;
    }
    return true;
  }));
  // d does not join itself back while it runs.
  for (int i = 0; i < 50; ++i) c.step();
  EXPECT_TRUE(c.keepers["d"]->left());
  EXPECT_FALSE(c.keepers["a"]->placement().is_member("d"));
  EXPECT_FALSE(c.keepers["d"]->pending().has_value());
}

TEST(PlacementKeeper, OneHandOverAtATime) {
  Cluster c(27);
  for (const char* id : {"a", "b", "c", "d", "e"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(300));
  c.holds_stream.insert("a");
  c.holds_stream.insert("b");
  c.holds_stream.insert("c");
  ASSERT_TRUE(c.keepers["a"]->remove({"e"}, c.now).ok());
  const Status again = c.keepers["a"]->remove({"d"}, c.now);
  EXPECT_EQ(again.code(), Code::kFailedPrecondition) << again.to_string();
  EXPECT_NE(again.message().find("in progress"), std::string::npos) << again.to_string();
  // Asking the same removal again is no error.
  EXPECT_TRUE(c.keepers["a"]->remove({"e"}, c.now).ok());
  // Nor is removing two at once: they go one after the other.
  c.holds_stream.clear();
  ASSERT_TRUE(run_until(c, 300, [&] { return !c.keepers["a"]->pending().has_value(); }));
  ASSERT_TRUE(c.keepers["b"]->remove({"c", "d"}, c.now).ok());
  ASSERT_TRUE(c.keepers["b"]->pending().has_value());
  EXPECT_EQ(c.keepers["b"]->pending()->members().size(), 3u);
  ASSERT_TRUE(run_until(c, 600, [&] {
    return c.keepers["b"]->placement().members() == std::vector<NodeId>{"a", "b"} &&
           !c.keepers["b"]->pending().has_value();
  }));
  EXPECT_EQ(c.keepers["a"]->remove({"a", "b"}, c.now).code(), Code::kInvalidArgument);
}

TEST(PlacementKeeper, JoinsProposedAtOnceEndInOneTableHoldingAll) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    Cluster c(100 + seed);
    for (const char* id : {"a", "b", "c"}) c.add(id, empty());
    c.start_all();
    ASSERT_TRUE(c.run_until_agreed(200));
    for (const char* id : {"x", "y", "z"}) {
      PlacementKeeper& k = c.add(id, c.keepers["a"]->placement());
      for (auto& [other, o] : c.keepers) {
        o->set_member_up(id, true, c.now);
        k.set_member_up(other, true, c.now);
      }
    }
    for (const char* id : {"x", "y", "z"}) c.keepers[id]->start(c.now);
    ASSERT_TRUE(c.run_until_agreed(2000)) << "seed " << seed;
    EXPECT_EQ(c.keepers["a"]->placement().members().size(), 6u);
  }
}

TEST(PlacementKeeper, ANodeThatAdoptsAHigherPendingTableStillWritesToTheLowersTakers) {
  Placement base = solo("a");
  const NodeId bc[] = {"b", "c"};
  ASSERT_TRUE(base.join(bc).ok());
  Placement with_x = base;
  const NodeId x[] = {"x"};
  ASSERT_TRUE(with_x.join(x).ok());
  Placement with_y = base;
  const NodeId y[] = {"y"};
  ASSERT_TRUE(with_y.join(y).ok());
  const bool y_higher = Placement::newer(with_y, with_x);
  const Placement& lower = y_higher ? with_x : with_y;
  const Placement& higher = y_higher ? with_y : with_x;
  const NodeId low_taker = y_higher ? "x" : "y";
  const NodeId high_taker = y_higher ? "y" : "x";

  PlacementKeeper a("a", base, {}, 5);
  a.start(MonoTime{});
  a.on_message("b", PlacementTable{base.encode(), lower.encode(), {}, {}}, MonoTime{});
  ASSERT_TRUE(a.pending().has_value());
  EXPECT_TRUE(*a.pending() == lower);
  a.on_message("c", PlacementTable{base.encode(), higher.encode(), {}, {}}, MonoTime{});
  EXPECT_TRUE(*a.pending() == higher);
  EXPECT_EQ(a.counters().pendings_superseded, 1u);
  // Both takers get the reads and writes of what they take over.
  for (uint32_t p : taken_over(base, lower, low_taker)) {
    const auto& j = a.joining()[p];
    EXPECT_NE(std::find(j.begin(), j.end(), low_taker), j.end()) << p;
  }
  for (uint32_t p : taken_over(base, higher, high_taker)) {
    const auto& j = a.joining()[p];
    EXPECT_NE(std::find(j.begin(), j.end(), high_taker), j.end()) << p;
  }
  // The lower one is no longer adopted back.
  a.on_message("b", PlacementTable{base.encode(), lower.encode(), {}, {}}, MonoTime{});
  EXPECT_TRUE(*a.pending() == higher);
}

TEST(PlacementKeeper, APendingTableHeldAcrossARestartIsSeenAndAnOddOneIgnored) {
  Placement base = solo("a");
  const NodeId bc[] = {"b", "c"};
  ASSERT_TRUE(base.join(bc).ok());
  Placement next = base;
  const NodeId d[] = {"d"};
  ASSERT_TRUE(next.join(d).ok());
  PlacementKeeper a("a", base, {}, 7, next);
  ASSERT_TRUE(a.pending().has_value());
  EXPECT_FALSE(a.awaiting_seen().has_value());
  // A pending table whose epoch does not follow the table's is not one.
  Placement far = next;
  const NodeId e[] = {"e"};
  ASSERT_TRUE(far.join(e).ok());
  PlacementKeeper b("b", base, {}, 7, far);
  EXPECT_FALSE(b.pending().has_value());
  // Nor is one from a peer.
  b.on_message("c", PlacementTable{base.encode(), far.encode(), {}, {}}, MonoTime{});
  EXPECT_FALSE(b.pending().has_value());
  EXPECT_EQ(b.counters().tables_refused, 1u);
  EXPECT_NE(b.last_refusal().find("does not follow"), std::string::npos) << b.last_refusal();
}

TEST(PlacementKeeper, ANodeExpectingAClusterWaitsForItsTableBeforeStartingOne) {
  PlacementKeeperOptions options;
  options.bootstrap_wait = milliseconds(5000);
  PlacementKeeper alone("a", empty(), options, 1);
  alone.start(MonoTime{});
  EXPECT_TRUE(alone.placement().members().empty());
  EXPECT_EQ(alone.next_deadline(), MonoTime{} + milliseconds(1000));
  alone.tick(MonoTime{} + milliseconds(4999));
  EXPECT_TRUE(alone.placement().members().empty());
  alone.tick(MonoTime{} + milliseconds(5000));
  EXPECT_TRUE(alone.placement().is_member("a"));

  // Hearing a cluster's table first: it joins that one, by a hand-over.
  PlacementKeeper joiner("d", empty(), options, 2);
  joiner.start(MonoTime{});
  Placement cluster = solo("a");
  const NodeId bc[] = {"b", "c"};
  ASSERT_TRUE(cluster.join(bc).ok());
  joiner.on_message("a", PlacementTable{cluster.encode()}, MonoTime{} + milliseconds(100));
  EXPECT_TRUE(joiner.placement() == cluster);
  ASSERT_TRUE(joiner.pending().has_value());
  EXPECT_TRUE(joiner.pending()->is_member("d"));
  joiner.tick(MonoTime{} + milliseconds(6000));
  EXPECT_TRUE(joiner.placement() == cluster);
}

// ---- Cancelling a hand-over (abort()).

// a, b, c agreed; d joins and has streamed nothing yet when it dies for good.
struct DeadJoiner {
  explicit DeadJoiner(uint64_t seed) : c(seed) {
    for (const char* id : {"a", "b", "c"}) c.add(id, empty());
    c.start_all();
    EXPECT_TRUE(c.run_until_agreed(200));
    before = c.keepers["a"]->placement();
    c.holds_stream.insert("d");
    c.add("d", empty());
    c.start_new("d");
    EXPECT_TRUE(run_until(c, 200, [&] {
      for (auto& [id, k] : c.keepers) {
        if (!k->pending().has_value() || !k->streaming_may_begin()) return false;
      }
      return true;
    }));
    cancelled = *c.keepers["a"]->pending();
    gone = std::move(c.keepers["d"]);
    c.keepers.erase("d");
    for (auto& [id, k] : c.keepers) k->set_member_up("d", false, c.now);
  }
  // Every node holds the table before the join, two epochs on, and nothing pending.
  bool restored() {
    for (auto& [id, k] : c.keepers) {
      if (k->pending().has_value() || !k->placement().same_assignments(before) ||
          k->placement().epoch() != before.epoch() + 2) {
        return false;
      }
    }
    return true;
  }

  Cluster c;
  Placement before = empty();
  Placement cancelled = empty();
  std::unique_ptr<PlacementKeeper> gone;
};

TEST(PlacementKeeper, AnAbortOfAJoinWhoseTakerIsDeadCommitsTheOldAssignmentsEverywhere) {
  DeadJoiner j(31);
  Cluster& c = j.c;
  // Without a cancel the dead taker holds the hand-over.
  for (int i = 0; i < 50; ++i) c.step();
  ASSERT_TRUE(c.keepers["a"]->pending().has_value());
  ASSERT_TRUE(c.keepers["b"]->abort(c.now).ok());
  std::optional<HandOverStatus> status = c.keepers["b"]->hand_over();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->cancels);
  EXPECT_EQ(status->cancelled_epoch, j.before.epoch() + 1);
  EXPECT_EQ(status->to_epoch, j.before.epoch() + 2);
  EXPECT_TRUE(status->takers.empty());
  // Until it commits, the dead taker still gets what it would have taken over.
  for (uint32_t p : taken_over(j.before, j.cancelled, "d")) {
    EXPECT_EQ(c.keepers["b"]->joining()[p], (std::vector<NodeId>{"d"})) << p;
  }
  // Asking again while it runs changes nothing.
  EXPECT_TRUE(c.keepers["b"]->abort(c.now).ok());
  ASSERT_TRUE(run_until(c, 200, [&] { return j.restored(); }));
  for (auto& [id, k] : c.keepers) {
    EXPECT_TRUE(k->joining().empty()) << id;
    EXPECT_EQ(k->counters().hand_overs_cancelled, 1u) << id;
  }
  EXPECT_FALSE(c.keepers["a"]->placement().is_member("d"));
  // Nothing more is pending, so a second cancel names the problem.
  const Status again = c.keepers["a"]->abort(c.now);
  EXPECT_EQ(again.code(), Code::kFailedPrecondition) << again.to_string();

  // The joining node comes back later (restarted with the tables it kept): it learns the
  // restored table and simply joins again.
  c.keepers["d"] =
      std::make_unique<PlacementKeeper>("d", j.before, PlacementKeeperOptions{}, 77, j.cancelled);
  c.start_new("d");
  c.holds_stream.clear();
  ASSERT_TRUE(c.run_until_agreed(300));
  EXPECT_TRUE(c.keepers["a"]->placement().is_member("d"));
  EXPECT_EQ(c.keepers["a"]->placement().epoch(), j.before.epoch() + 3);
}

TEST(PlacementKeeper, RemovingANodeOnlyAPendingJoinListsCancelsTheJoin) {
  DeadJoiner j(33);
  Cluster& c = j.c;
  ASSERT_TRUE(c.keepers["c"]->remove({"d"}, c.now).ok());
  ASSERT_TRUE(c.keepers["c"]->hand_over()->cancels);
  // A member given with it is refused: one or the other.
  EXPECT_EQ(c.keepers["a"]->remove({"b", "d"}, c.now).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(run_until(c, 200, [&] { return j.restored(); }));
}

TEST(PlacementKeeper, AnAbortWithNothingPendingIsRefused) {
  Cluster c(35);
  for (const char* id : {"a", "b", "c"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement before = c.keepers["a"]->placement();
  const Status s = c.keepers["a"]->abort(c.now);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.to_string();
  EXPECT_NE(s.message().find("no hand-over is pending"), std::string::npos) << s.to_string();
  EXPECT_TRUE(c.keepers["a"]->placement() == before);
  EXPECT_FALSE(c.keepers["a"]->pending().has_value());
}

TEST(PlacementKeeper, AnAbortOfARemovalKeepsTheNodeAMember) {
  Cluster c(37);
  for (const char* id : {"a", "b", "c", "d"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement before = c.keepers["a"]->placement();
  for (const char* id : {"a", "b", "c"}) c.holds_stream.insert(id);
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  // d took part in its removal.
  ASSERT_TRUE(run_until(
      c, 200, [&] { return c.keepers["d"]->left() && c.keepers["a"]->streaming_may_begin(); }));
  // Cancelled elsewhere than where the removal was asked.
  ASSERT_TRUE(c.keepers["b"]->abort(c.now).ok());
  EXPECT_EQ(c.keepers["b"]->hand_over()->leaving, std::vector<NodeId>{});
  ASSERT_TRUE(run_until(c, 200, [&] {
    for (auto& [id, k] : c.keepers) {
      if (k->pending().has_value() || !k->placement().same_assignments(before)) return false;
    }
    return true;
  }));
  EXPECT_FALSE(c.keepers["d"]->left());
  // The node that asked the removal does not propose it again (its memory would for a
  // minute): the cancel cleared it.
  c.holds_stream.clear();
  for (int i = 0; i < 40; ++i) c.step();
  for (auto& [id, k] : c.keepers) {
    EXPECT_TRUE(k->placement().is_member("d")) << id;
    EXPECT_FALSE(k->pending().has_value()) << id;
    EXPECT_EQ(k->placement().epoch(), before.epoch() + 2) << id;
  }
}

// Whether every write quorum one node's view asks for meets every read quorum another's asks
// for, in every partition: the coordinator asks W + k (R + k) of the current home replicas
// and the k takers (joining()).
bool quorums_meet(Cluster& c, std::string* why) {
  const uint32_t q = kN / 2 + 1;
  for (auto& [u, ku] : c.keepers) {
    for (auto& [v, kv] : c.keepers) {
      for (uint32_t p = 0; p < kQ; ++p) {
        auto replicas = [p](PlacementKeeper& k) {
          std::set<NodeId> out;
          for (const NodeId& id : k.placement().home(p)) out.insert(id);
          const size_t k_extra = k.joining().empty() ? 0 : k.joining()[p].size();
          if (k_extra > 0) out.insert(k.joining()[p].begin(), k.joining()[p].end());
          return std::make_pair(out, q + k_extra);
        };
        auto [su, wu] = replicas(*ku);
        auto [sv, rv] = replicas(*kv);
        size_t only_u = 0, only_v = 0, both = 0;
        for (const NodeId& id : su) (sv.contains(id) ? both : only_u)++;
        for (const NodeId& id : sv) only_v += su.contains(id) ? 0 : 1;
        const size_t in_u = wu > only_u ? wu - only_u : 0;
        const size_t in_v = rv > only_v ? rv - only_v : 0;
        if (in_u + in_v <= both) {
          *why = "partition " + std::to_string(p) + ": " + u + " writes to " + std::to_string(wu) +
                 " of " + std::to_string(su.size()) + ", " + v + " reads " + std::to_string(rv) +
                 " of " + std::to_string(sv.size()) + ", " + std::to_string(both) + " in common";
          return false;
        }
      }
    }
  }
  return true;
}

TEST(PlacementKeeper, AnAbortRacingTheCancelledTablesCommitEndsInOneTableWithQuorumsMeeting) {
  Cluster c(39);
  for (const char* id : {"a", "b", "c"}) c.add(id, empty());
  c.start_all();
  ASSERT_TRUE(c.run_until_agreed(200));
  const Placement before = c.keepers["a"]->placement();
  c.holds_stream.insert("d");
  c.add("d", empty());
  c.start_new("d");
  ASSERT_TRUE(run_until(c, 200, [&] {
    for (auto& [id, k] : c.keepers) {
      if (!k->pending().has_value() || !k->streaming_may_begin()) return false;
    }
    return true;
  }));
  // b is cut off; d streams and the join commits on the others.
  c.cut.insert("b");
  c.holds_stream.clear();
  ASSERT_TRUE(run_until(c, 200, [&] {
    return c.keepers["a"]->placement().epoch() == before.epoch() + 1 &&
           !c.keepers["a"]->pending().has_value();
  }));
  // b, not knowing, cancels it: it restores the table before the join, over that table.
  ASSERT_TRUE(c.keepers["b"]->abort(c.now).ok());
  ASSERT_EQ(c.keepers["b"]->placement().epoch(), before.epoch());
  std::string why;
  ASSERT_TRUE(quorums_meet(c, &why)) << why;
  c.cut.clear();
  bool met = true;
  ASSERT_TRUE(run_until(c, 400, [&] {
    if (met && !quorums_meet(c, &why)) met = false;
    const Placement& first = c.keepers["a"]->placement();
    for (auto& [id, k] : c.keepers) {
      if (k->pending().has_value() || !(k->placement() == first)) return false;
    }
    return true;
  }));
  EXPECT_TRUE(met) << why;
  // The join had committed: the cancel became a hand-over back, to the slots before it.
  const Placement& final_table = c.keepers["a"]->placement();
  EXPECT_TRUE(final_table.same_assignments(before));
  EXPECT_EQ(final_table.epoch(), before.epoch() + 2);
  EXPECT_FALSE(final_table.is_member("d"));
  EXPECT_EQ(c.keepers["b"]->counters().hand_overs_cancelled, 1u);
}

// The joining node finishes streaming while cut off: it may not commit on its own word (it
// would write to the new table's replicas while the others, cancelling, commit the old).
TEST(PlacementKeeper, AJoiningNodeCutOffAsItFinishesDoesNotCommitWhileTheJoinIsCancelled) {
  DeadJoiner j(41);
  Cluster& c = j.c;
  // d is back, cut off: it streams everything it takes over.
  c.keepers["d"] = std::move(j.gone);
  PlacementKeeper& d = *c.keepers["d"];
  c.cut.insert("d");
  d.set_streamed(static_cast<uint32_t>(d.taking_over().size()), c.now);
  EXPECT_TRUE(d.pending().has_value());
  EXPECT_FALSE(d.placement().is_member("d"));
  ASSERT_TRUE(c.keepers["a"]->abort(c.now).ok());
  std::string why;
  bool met = true;
  ASSERT_TRUE(run_until(c, 200, [&] {
    if (met && !quorums_meet(c, &why)) met = false;
    for (const char* id : {"a", "b", "c"}) {
      if (c.keepers[id]->pending().has_value() ||
          !c.keepers[id]->placement().same_assignments(j.before)) {
        return false;
      }
    }
    return true;
  }));
  EXPECT_TRUE(met) << why;
  EXPECT_FALSE(d.placement().is_member("d"));
  c.cut.clear();
  for (const char* id : {"a", "b", "c"}) c.keepers[id]->set_member_up("d", true, c.now);
  ASSERT_TRUE(run_until(c, 200, [&] {
    if (met && !quorums_meet(c, &why)) met = false;
    return d.placement() == c.keepers["a"]->placement() && !d.pending().has_value();
  }));
  EXPECT_TRUE(met) << why;
  EXPECT_TRUE(d.left());  // its join was cancelled while it ran: it stays out
}

}  // namespace
}  // namespace edgekv::cluster
