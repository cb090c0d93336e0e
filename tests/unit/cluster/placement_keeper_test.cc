#include "cluster/placement_keeper.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
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
      auto it = keepers.find(m.to);
      if (it == keepers.end()) continue;
      it->second->on_message(from, m.message, now);
      for (PeerOutgoing& reply : it->second->take_messages()) {
        queue.push_back({m.to, std::move(reply)});
      }
    }
    MonoTime next = MonoTime::max();
    for (auto& [id, k] : keepers) next = std::min(next, k->next_deadline());
    if (next != MonoTime::max()) now = std::max(now, next);
    for (auto& [id, k] : keepers) k->tick(now);
  }
  bool agreed() const {
    const Placement& first = keepers.begin()->second->placement();
    for (auto& [id, k] : keepers) {
      if (!(k->placement() == first) || !k->placement().is_member(id)) return false;
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
  // It adopted a, c, d and joined itself on top: one epoch above the table it fetched.
  EXPECT_EQ(old_side.placement().members(), (std::vector<NodeId>{"a", "b", "c", "d"}));
  EXPECT_EQ(old_side.placement().epoch(), big.epoch() + 1);
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
  PlacementKeeper& e = c.add("e", empty());
  for (auto& [id, k] : c.keepers) {
    k->set_member_up("e", true, c.now);
    e.set_member_up(id, true, c.now);
  }
  e.start(c.now);
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
  // a removes d while e joins through b, before either heard of the other's change.
  c.keepers.erase("d");
  for (auto& [id, k] : c.keepers) k->set_member_up("d", false, c.now);
  ASSERT_TRUE(c.keepers["a"]->remove({"d"}, c.now).ok());
  c.keepers["a"]->take_messages();  // the news of the removal is lost
  Placement with_e = c.keepers["b"]->placement();
  const NodeId e[] = {"e"};
  ASSERT_TRUE(with_e.join(e).ok());
  ASSERT_EQ(with_e.epoch(), c.keepers["a"]->placement().epoch());
  // Whichever of the two same-epoch tables wins, d stays out once a hears of e's table.
  c.keepers["a"]->on_message("b", PlacementTable{with_e.encode()}, c.now);
  EXPECT_FALSE(c.keepers["a"]->placement().is_member("d"));
  EXPECT_TRUE(c.keepers["a"]->placement().is_member("e") ||
              !Placement::newer(with_e, c.keepers["a"]->placement()));
}

}  // namespace
}  // namespace edgekv::cluster
