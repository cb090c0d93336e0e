// The placement table: balance, movement and distinctness through joins and removals, the
// fallback order, the encoding and its validation, and the ReplicaView over it.
#include "cluster/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/hash.h"
#include "common/random.h"
#include "proto/placement.pb.h"

namespace edgekv::cluster {
namespace {

constexpr uint32_t kQ = kDefaultPartitions;
constexpr uint32_t kN = 3;

std::string node_name(int i) { return "node-" + std::to_string(i); }

std::vector<NodeId> names(int from, int to) {
  std::vector<NodeId> out;
  for (int i = from; i < to; ++i) out.push_back(node_name(i));
  return out;
}

// Slots a node did not hold before: what a transition copies between nodes.
size_t moved(const Placement& before, const Placement& after) {
  size_t count = 0;
  for (uint32_t p = 0; p < before.partitions(); ++p) {
    std::vector<NodeId> old_home = before.home(p);
    for (const NodeId& id : after.home(p)) {
      if (std::find(old_home.begin(), old_home.end(), id) == old_home.end()) ++count;
    }
  }
  return count;
}

double fair_share(const Placement& p) {
  const size_t n = p.members().size();
  const size_t filled = std::min<size_t>(n, p.replication_factor());
  return static_cast<double>(p.partitions()) * static_cast<double>(filled) / static_cast<double>(n);
}

// Distinct replicas, min(n, N) per partition, every holder a member, nobody over 1.1x its
// fair share.
void expect_invariants(const Placement& p, const std::string& where) {
  const size_t n = p.members().size();
  const size_t filled = std::min<size_t>(n, p.replication_factor());
  std::map<NodeId, size_t> held;
  for (uint32_t part = 0; part < p.partitions(); ++part) {
    std::vector<NodeId> home = p.home(part);
    ASSERT_EQ(home.size(), filled) << where << " partition " << part;
    std::set<NodeId> distinct(home.begin(), home.end());
    ASSERT_EQ(distinct.size(), home.size()) << where << " partition " << part;
    for (const NodeId& id : home) {
      ASSERT_TRUE(p.is_member(id)) << where;
      ++held[id];
    }
  }
  if (n == 0) return;
  const double fair = fair_share(p);
  for (const NodeId& id : p.members()) {
    EXPECT_LE(static_cast<double>(held[id]), 1.1 * fair)
        << where << ": " << id << " holds " << held[id] << " slots, fair share " << fair;
    // Tighter than the bound above, and what the transitions promise: floor or ceil.
    EXPECT_GE(static_cast<double>(held[id]), std::floor(fair)) << where << ": " << id;
    EXPECT_LE(static_cast<double>(held[id]), std::ceil(fair)) << where << ": " << id;
    EXPECT_EQ(p.slots_of(id), held[id]) << where;
  }
}

Placement make(uint32_t q, uint32_t n_replicas, const std::vector<NodeId>& members) {
  Result<Placement> p = Placement::create(q, n_replicas, members);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return std::move(p).value();
}

TEST(Placement, JoinsFrom3To100StayBalancedAndMoveNearTheMinimum) {
  Placement p = make(kQ, kN, names(0, 3));
  expect_invariants(p, "n=3");
  double worst_join = 0, worst_remove = 0;
  Random random(7);
  for (int n = 3; n < 100; ++n) {
    // A removal from this size: at most 1.2x the removed node's slots move.
    Placement smaller = p;
    const NodeId gone = p.members()[random.uniform(p.members().size())];
    const size_t gone_slots = p.slots_of(gone);
    ASSERT_TRUE(smaller.remove(std::vector<NodeId>{gone}).ok());
    expect_invariants(smaller, "n=" + std::to_string(n) + " minus " + gone);
    const size_t removal_moved = moved(p, smaller);
    if (n > static_cast<int>(kN)) {
      EXPECT_GE(removal_moved, gone_slots);
    }
    EXPECT_LE(static_cast<double>(removal_moved), 1.2 * static_cast<double>(gone_slots))
        << "removing " << gone << " from " << n;
    worst_remove = std::max(worst_remove, double(removal_moved) / double(gone_slots));

    // A join to n + 1: at most 1.2x the new node's fair share moves.
    Placement before = p;
    ASSERT_TRUE(p.join(std::vector<NodeId>{node_name(n)}).ok());
    expect_invariants(p, "n=" + std::to_string(n + 1));
    const double minimum = fair_share(p);
    const size_t join_moved = moved(before, p);
    EXPECT_LE(static_cast<double>(join_moved), 1.2 * minimum) << "joining to " << n + 1;
    EXPECT_EQ(join_moved, p.slots_of(node_name(n)));  // only what the new node took
    worst_join = std::max(worst_join, double(join_moved) / minimum);
    EXPECT_EQ(p.epoch(), before.epoch() + 1);
  }
  std::printf("[figure] worst join moved %.3fx its minimum, worst removal %.3fx\n", worst_join,
              worst_remove);
}

TEST(Placement, CreateIsSortedJoinsAndIndependentOfInputOrder) {
  std::vector<NodeId> members = names(0, 40);
  Placement a = make(kQ, kN, members);
  std::reverse(members.begin(), members.end());
  members.push_back(node_name(5));  // a duplicate is ignored
  Placement b = make(kQ, kN, members);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.epoch(), 0u);
  expect_invariants(a, "create 40");
}

TEST(Placement, RandomSequencesOfJoinsAndRemovalsKeepEveryBound) {
  for (uint64_t seed : {1, 2, 3}) {
    Random random(seed);
    Placement p = make(kQ, kN, names(0, 10));
    int next_id = 10;
    for (int step = 0; step < 150; ++step) {
      const size_t n = p.members().size();
      const bool grow = n <= 3 || (n < 100 && random.chance(0.5));
      Placement before = p;
      const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
      if (grow) {
        ASSERT_TRUE(p.join(std::vector<NodeId>{node_name(next_id++)}).ok());
        EXPECT_LE(static_cast<double>(moved(before, p)), 1.2 * fair_share(p)) << where;
      } else {
        const NodeId gone = p.members()[random.uniform(n)];
        const size_t gone_slots = p.slots_of(gone);
        ASSERT_TRUE(p.remove(std::vector<NodeId>{gone}).ok());
        EXPECT_LE(static_cast<double>(moved(before, p)), 1.2 * static_cast<double>(gone_slots))
            << where;
      }
      expect_invariants(p, where);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Placement, FewerMembersThanReplicasGrowToMore) {
  Placement p = make(kQ, kN, names(0, 1));
  expect_invariants(p, "n=1");
  EXPECT_EQ(p.home(0), std::vector<NodeId>{node_name(0)});
  for (int n = 1; n < 6; ++n) {
    Placement before = p;
    ASSERT_TRUE(p.join(std::vector<NodeId>{node_name(n)}).ok());
    expect_invariants(p, "n=" + std::to_string(n + 1));
    EXPECT_LE(static_cast<double>(moved(before, p)), 1.2 * fair_share(p));
  }
  // And shrinking back to one, then none.
  for (int n = 6; n > 0; --n) {
    ASSERT_TRUE(p.remove(std::vector<NodeId>{node_name(n - 1)}).ok());
    expect_invariants(p, "down to " + std::to_string(n - 1));
  }
  EXPECT_TRUE(p.members().empty());
  EXPECT_TRUE(p.home(3).empty());
}

TEST(Placement, FirstPlacesAreSpread) {
  // Read-modify-writes run on a partition's first home replica: no node should be first of
  // many more partitions than its share.
  for (int n : {2, 3, 7, 20, 64}) {
    Placement p = make(kQ, kN, names(0, n));
    std::map<NodeId, size_t> first;
    for (uint32_t part = 0; part < kQ; ++part) ++first[p.home(part)[0]];
    const double share = double(kQ) / n;
    for (const auto& [id, count] : first) {
      EXPECT_LE(double(count), 1.5 * share + 1) << "n=" << n << " " << id;
    }
  }
}

TEST(Placement, SameChangesGiveTheSameTableOnEveryNode) {
  Placement a = make(kQ, kN, names(0, 8));
  Placement b = Placement::decode(a.encode()).value();
  const std::vector<NodeId> joining = {node_name(30), node_name(9)};
  ASSERT_TRUE(a.join(joining).ok());
  ASSERT_TRUE(b.join(std::vector<NodeId>{node_name(9), node_name(30), node_name(9)}).ok());
  ASSERT_TRUE(a.remove(std::vector<NodeId>{node_name(2)}).ok());
  ASSERT_TRUE(b.remove(std::vector<NodeId>{node_name(2), "never-a-member"}).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.encode(), b.encode());
  // Re-applying a join that is already in is harmless and does not step the epoch.
  const uint64_t epoch = a.epoch();
  ASSERT_TRUE(a.join(joining).ok());
  EXPECT_EQ(a.epoch(), epoch);
  EXPECT_EQ(a, b);
}

TEST(Placement, AdoptingTheHighestEpochThenRejoiningConverges) {
  // Two nodes see different joins at the same epoch: both adopt the higher (epoch, digest)
  // and re-apply the join they still miss, and end with one table.
  Placement base = make(kQ, kN, names(0, 5));
  Placement a = base, b = base;
  ASSERT_TRUE(a.join(std::vector<NodeId>{"x"}).ok());
  ASSERT_TRUE(b.join(std::vector<NodeId>{"y"}).ok());
  EXPECT_EQ(a.epoch(), b.epoch());
  EXPECT_NE(a.digest(), b.digest());
  EXPECT_NE(Placement::newer(a, b), Placement::newer(b, a));
  Placement winner = Placement::newer(a, b) ? a : b;
  Placement a2 = winner, b2 = winner;
  ASSERT_TRUE(a2.join(std::vector<NodeId>{"x"}).ok());
  ASSERT_TRUE(b2.join(std::vector<NodeId>{"y"}).ok());
  // One of them re-applied nothing; the other stepped; adopting again converges.
  Placement final_table = Placement::newer(a2, b2) ? a2 : b2;
  EXPECT_TRUE(final_table.is_member("x"));
  EXPECT_TRUE(final_table.is_member("y"));
  expect_invariants(final_table, "converged");
}

TEST(Placement, CreateRefusesBadShapesAndIds) {
  auto message = [](uint32_t q, uint32_t n, std::vector<NodeId> members) {
    Result<Placement> p = Placement::create(q, n, members);
    EXPECT_FALSE(p.ok());
    return p.ok() ? std::string() : p.status().message();
  };
  EXPECT_NE(message(100, 3, {}).find("100 partitions is not a power of two"), std::string::npos);
  EXPECT_NE(message(0, 3, {}).find("0 partitions"), std::string::npos);
  EXPECT_NE(message(131072, 3, {}).find("131072 partitions"), std::string::npos);
  EXPECT_NE(message(64, 0, {}).find("replication factor 0"), std::string::npos);
  EXPECT_NE(message(64, 8, {}).find("replication factor 8"), std::string::npos);
  EXPECT_NE(message(64, 3, {"ok", "bad id"}).find("member id"), std::string::npos);
  Placement p = make(64, 3, {"a"});
  Status status = p.join(std::vector<NodeId>{""});
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_EQ(p.epoch(), 0u);
}

TEST(Placement, RingWalkListsEveryOtherMemberOnceInHomeListOrder) {
  Placement p = make(64, 3, names(0, 9));
  for (uint32_t part = 0; part < 64; ++part) {
    std::vector<NodeId> walk = p.ring_walk(part);
    std::vector<NodeId> home = p.home(part);
    // What the rule says, step by step.
    std::vector<NodeId> expected;
    for (uint32_t k = 1; k < 64; ++k) {
      for (const NodeId& id : p.home((part + k) % 64)) {
        if (std::find(home.begin(), home.end(), id) == home.end() &&
            std::find(expected.begin(), expected.end(), id) == expected.end()) {
          expected.push_back(id);
        }
      }
    }
    EXPECT_EQ(walk, expected) << part;
    EXPECT_EQ(walk.size(), 6u) << part;
  }
  // With more members than slots, members holding none come last, in id order.
  Placement tiny = make(1, 2, names(0, 5));
  std::vector<NodeId> walk = tiny.ring_walk(0);
  EXPECT_EQ(walk.size(), 3u);
  EXPECT_TRUE(std::is_sorted(walk.begin(), walk.end()));
}

TEST(Placement, EncodeDecodeRoundTrips) {
  for (int n : {0, 1, 2, 3, 17}) {
    Placement p = make(256, 3, names(0, n));
    Result<Placement> back = Placement::decode(p.encode());
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, p);
    EXPECT_EQ(back->digest(), p.digest());
    EXPECT_EQ(back->encode(), p.encode());
  }
}

// Decoding a table altered by `change` fails naming `expected`.
void expect_refused(const std::function<void(pb::Placement&)>& change,
                    const std::string& expected) {
  Placement p = make(8, 3, names(0, 4));
  pb::Placement msg;
  ASSERT_TRUE(msg.ParseFromString(p.encode()));
  change(msg);
  Result<Placement> back = Placement::decode(msg.SerializeAsString());
  ASSERT_FALSE(back.ok()) << expected;
  EXPECT_EQ(back.status().code(), Code::kInvalidArgument);
  EXPECT_NE(back.status().message().find(expected), std::string::npos)
      << back.status().message() << " lacks " << expected;
}

TEST(Placement, DecodeNamesEveryProblem) {
  expect_refused([](pb::Placement& m) { m.set_format(2); }, "format 2");
  expect_refused([](pb::Placement& m) { m.set_partitions(12); }, "12 partitions");
  expect_refused([](pb::Placement& m) { m.set_partitions(1u << 20); }, "1048576 partitions");
  expect_refused([](pb::Placement& m) { m.set_replication_factor(9); }, "replication factor 9");
  expect_refused([](pb::Placement& m) { m.set_members(1, "no/slash"); }, "member id");
  expect_refused([](pb::Placement& m) { m.set_members(1, std::string(65, 'a')); }, "member id");
  expect_refused([](pb::Placement& m) { m.set_members(1, "node-0"); }, "ascending");
  expect_refused([](pb::Placement& m) { m.add_slots(1); }, "25 slots, expected 24");
  expect_refused([](pb::Placement& m) { m.set_slots(4, 9); }, "names member 9");
  expect_refused([](pb::Placement& m) { m.set_slots(3, 0); }, "partition 1 slot 0 names member 0");
  expect_refused(
      [](pb::Placement& m) {
        m.set_slots(1, m.slots(0));  // partition 0 lists one member twice
      },
      "repeats member");
  expect_refused([](pb::Placement& m) { m.set_epoch(m.epoch() + 1); }, "digest");
  expect_refused(
      [](pb::Placement& m) {
        m.clear_members();
        m.add_members("solo");  // one member: only the first slot of each partition is filled
        m.set_slots(0, 1);
      },
      "must be empty with 1 members");
  Result<Placement> garbage = Placement::decode("\xff\xff\xff");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("does not parse"), std::string::npos);
  Result<Placement> huge = Placement::decode(std::string(kMaxPlacementBytes + 1, '\0'));
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("over the bound"), std::string::npos);
}

TEST(Placement, RandomizedDecodeNeverAcceptsABrokenTable) {
  Placement p = make(16, 3, names(0, 6));
  const std::string good = p.encode();
  Random random(99);
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = good;
    const uint64_t edits = 1 + random.uniform(4);
    for (uint64_t e = 0; e < edits; ++e) {
      switch (random.uniform(4)) {
        case 0:
          if (!bytes.empty()) bytes[random.uniform(bytes.size())] = char(random.uniform(256));
          break;
        case 1: bytes.resize(random.uniform(bytes.size() + 1)); break;
        case 2: bytes.insert(random.uniform(bytes.size() + 1), 1, char(random.uniform(256))); break;
        default: {
          // Random bytes altogether, now and then.
          if (random.chance(0.1)) {
            bytes.assign(random.uniform(200), '\0');
            for (char& c : bytes) c = static_cast<char>(random.uniform(256));
          }
        }
      }
    }
    Result<Placement> back = Placement::decode(bytes);
    if (!back.ok()) {
      EXPECT_EQ(back.status().code(), Code::kInvalidArgument);
      EXPECT_FALSE(back.status().message().empty());
      continue;
    }
    ++accepted;
    // Whatever is accepted is a whole, consistent table.
    for (uint32_t part = 0; part < back->partitions(); ++part) {
      std::vector<NodeId> home = back->home(part);
      std::set<NodeId> distinct(home.begin(), home.end());
      ASSERT_EQ(distinct.size(), home.size());
      ASSERT_EQ(home.size(), std::min<size_t>(back->members().size(), back->replication_factor()));
    }
    EXPECT_EQ(Placement::decode(back->encode()).value(), *back);
  }
  // Some edits land in fields that do not matter (an unknown field appended) or reproduce
  // the original; nearly all are refused by the digest or the checks.
  EXPECT_LT(accepted, 20000u / 10);
}

TEST(PlacementView, HomeAndFallbacksSkipDownNodes) {
  Placement p = make(64, 3, names(0, 8));
  std::set<NodeId> down;
  PlacementView view(node_name(0), p, [&](const NodeId& id) { return !down.count(id); });
  EXPECT_EQ(view.self(), node_name(0));
  EXPECT_EQ(view.replication_factor(), 3u);
  EXPECT_EQ(view.partition_of("some key"), partition_of("some key", 64));
  for (uint32_t part = 0; part < 64; ++part) {
    EXPECT_EQ(view.home(part), p.home(part));
    std::vector<NodeId> walk = p.ring_walk(part);
    // All up: the first k of the walk.
    EXPECT_EQ(view.fallbacks(part, 2), std::vector<NodeId>(walk.begin(), walk.begin() + 2));
    // The walk's first two down: the next two, in order.
    down = {walk[0], walk[1]};
    EXPECT_EQ(view.fallbacks(part, 2), std::vector<NodeId>(walk.begin() + 2, walk.begin() + 4));
    EXPECT_FALSE(view.is_up(walk[0]));
    EXPECT_TRUE(view.is_up(walk[2]));
    // Home replicas are never fallbacks, down or not, and a down home stays home.
    down.insert(p.home(part)[0]);
    EXPECT_EQ(view.home(part), p.home(part));
    for (const NodeId& id : view.fallbacks(part, 10)) EXPECT_FALSE(p.is_home(part, id));
    EXPECT_EQ(view.fallbacks(part, 10).size(), 3u);  // 5 non-home, 2 of them down
    EXPECT_TRUE(view.fallbacks(part, 0).empty());
    down.clear();
  }
  // A new table replaces the old one.
  Placement bigger = p;
  ASSERT_TRUE(bigger.join(std::vector<NodeId>{"late"}).ok());
  view.set_placement(bigger);
  EXPECT_EQ(view.placement(), bigger);
}

}  // namespace
}  // namespace edgekv::cluster
