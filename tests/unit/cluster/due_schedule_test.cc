// DueSchedule, anti-entropy's index of when each pair is next due: the earliest eligible
// pair, ties, down peers and busy pairs, against a walk of every pair over random
// schedules.
#include "cluster/due_schedule.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>

namespace edgekv::cluster {
namespace {

using namespace std::chrono_literals;
using Pair = DueSchedule::Pair;

MonoTime at(int64_t ms) { return MonoTime{} + std::chrono::milliseconds(ms); }

TEST(DueScheduleTest, TheEarliestPairOfAnUpPeerThatIsNotBusy) {
  DueSchedule s;
  EXPECT_FALSE(s.earliest([](const NodeId&) { return true; }, [](const Pair&) { return false; }));
  s.set({1, "b"}, at(30));
  s.set({2, "a"}, at(10));
  s.set({3, "a"}, at(20));
  s.set({4, "c"}, at(5));
  auto all_up = [](const NodeId&) { return true; };
  auto none_busy = [](const Pair&) { return false; };
  auto e = s.earliest(all_up, none_busy);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{4, "c"}));
  EXPECT_EQ(e->at, at(5));
  // c down: a's earliest.
  e = s.earliest([](const NodeId& p) { return p != "c"; }, none_busy);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{2, "a"}));
  // c down and a's earliest busy: a's next.
  e = s.earliest([](const NodeId& p) { return p != "c"; },
                 [](const Pair& p) {
                   return p == Pair{2, "a"};
                 });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{3, "a"}));
  // Moving a pair reorders it; a moved pair is not found at its old time.
  s.set({4, "c"}, at(40));
  e = s.earliest(all_up, none_busy);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{2, "a"}));
  EXPECT_EQ(s.find({4, "c"}), at(40));
  EXPECT_EQ(s.size(), 4u);
  // Every peer down: none.
  EXPECT_FALSE(s.earliest([](const NodeId&) { return false; }, none_busy));
}

TEST(DueScheduleTest, TiesGoToTheSmallerPair) {
  DueSchedule s;
  s.set({7, "a"}, at(10));
  s.set({3, "b"}, at(10));
  s.set({3, "c"}, at(10));
  auto e = s.earliest([](const NodeId&) { return true; }, [](const Pair&) { return false; });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{3, "b"}));
  e = s.earliest([](const NodeId&) { return true; },
                 [](const Pair& p) {
                   return p == Pair{3, "b"};
                 });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{3, "c"}));
}

TEST(DueScheduleTest, RetainDropsTheRestAndTheirPeers) {
  DueSchedule s;
  for (uint32_t p = 0; p < 10; ++p) s.set({p, p % 2 == 0 ? "a" : "b"}, at(p));
  s.retain([](const Pair& p) { return p.second == "b"; });
  EXPECT_EQ(s.size(), 5u);
  EXPECT_FALSE(s.find({0, "a"}));
  auto e = s.earliest([](const NodeId&) { return true; }, [](const Pair&) { return false; });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pair, (Pair{1, "b"}));
  s.retain([](const Pair&) { return false; });
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.earliest([](const NodeId&) { return true; }, [](const Pair&) { return false; }));
}

TEST(DueScheduleTest, AgreesWithAWalkOfEveryPairOverRandomSchedules) {
  // The reference is what anti-entropy did before the index: the smallest (due, pair) over
  // every pair whose peer is up and that is not busy.
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    const std::vector<NodeId> peers{"a", "b", "c", "d", "e"};
    DueSchedule s;
    std::map<Pair, MonoTime> model;
    for (int step = 0; step < 300; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 7) {  // set (new or moved); few distinct times, so ties happen
        Pair pair{static_cast<uint32_t>(rng() % 40), peers[rng() % peers.size()]};
        const MonoTime t = at(static_cast<int64_t>(rng() % 20));
        s.set(pair, t);
        model[pair] = t;
      } else if (op < 8) {  // retain a random half of the partitions
        const uint32_t parity = rng() % 2;
        s.retain([&](const Pair& p) { return p.first % 2 == parity || p.first % 3 == 0; });
        std::erase_if(model, [&](const auto& e) {
          return !(e.first.first % 2 == parity || e.first.first % 3 == 0);
        });
      }
      std::set<NodeId> down;
      for (const NodeId& p : peers) {
        if (rng() % 4 == 0) down.insert(p);
      }
      std::set<Pair> busy;
      for (const auto& [pair, t] : model) {
        if (rng() % 5 == 0) busy.insert(pair);
      }
      std::optional<DueSchedule::Due> want;
      for (const auto& [pair, t] : model) {
        if (down.contains(pair.second) || busy.contains(pair)) continue;
        if (!want || t < want->at) want = DueSchedule::Due{t, pair};
      }
      const auto got = s.earliest([&](const NodeId& p) { return !down.contains(p); },
                                  [&](const Pair& p) { return busy.contains(p); });
      ASSERT_EQ(got.has_value(), want.has_value()) << "seed " << seed << " step " << step;
      if (got) {
        ASSERT_EQ(got->pair, want->pair) << "seed " << seed << " step " << step;
        ASSERT_EQ(got->at, want->at) << "seed " << seed << " step " << step;
      }
      ASSERT_EQ(s.size(), model.size());
      for (const auto& [pair, t] : model) ASSERT_EQ(s.find(pair), t);
    }
  }
}

}  // namespace
}  // namespace edgekv::cluster
