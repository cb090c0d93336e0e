// Scenario 9: one node is configured with another partition count than the cluster. Under
// message loss, the others form their cluster as usual and never take it in; it never
// joins, keeps being refused, and both sides can tell why (the counts each saw).
#include <gtest/gtest.h>

#include <string>

#include "tests/sim/sim_util.h"
#include "tests/sim/swim_node.h"

namespace edgekv::sim {
namespace {

using gossip::MemberState;
using gossip::Options;

class Partitions : public SimTest {};

TEST_F(Partitions, ANodeWithAnotherCountNeverJoins) {
  uint64_t s = seed(12000);
  const int trials = sweep_mode() ? 20 : 3;
  const size_t n = 6, odd = 5;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    Options options = Options::local();
    options.partitions = 512;
    NetworkOptions network;
    network.loss = 0.1;
    SwimCluster cluster(seed_, n, options, network);
    Options other = options;
    other.partitions = 256;
    cluster.set_options(odd, other);
    cluster.start_all(Millis(10));
    // The others see each other alive.
    auto formed = [&] {
      for (size_t a = 0; a < odd; ++a) {
        for (size_t b = 0; b < odd; ++b) {
          MemberState state;
          if (a != b && (!cluster.view_state(a, b, &state) || state != MemberState::kAlive)) {
            return false;
          }
        }
      }
      return true;
    };
    ASSERT_TRUE(cluster.sim().run_until(formed, Millis(60000))) << seed_;
    cluster.sim().run_for(Millis(60000));
    EXPECT_TRUE(formed()) << seed_;
    for (size_t a = 0; a < n; ++a) {
      MemberState state;
      if (a != odd) {
        EXPECT_FALSE(cluster.view_state(a, odd, &state)) << seed_ << " node " << a;
        EXPECT_EQ(cluster.swim(a).members().size(), odd) << seed_;
      }
    }
    EXPECT_FALSE(cluster.swim(odd).joined()) << seed_;
    EXPECT_EQ(cluster.swim(odd).members().size(), 1u) << seed_;
    EXPECT_EQ(cluster.swim(odd).counters().messages_in, 0u) << seed_;
    // The seed (node 0) refused the odd node's joins and answered some; the odd node
    // dropped those answers.
    EXPECT_GT(cluster.swim(0).counters().dropped_partitions, 10u) << seed_;
    ASSERT_NE(cluster.swim(0).partitions_mismatch(), nullptr);
    EXPECT_EQ(cluster.swim(0).partitions_mismatch()->id, SwimCluster::id(odd));
    EXPECT_EQ(cluster.swim(0).partitions_mismatch()->partitions, 256u);
    EXPECT_GT(cluster.swim(odd).counters().dropped_partitions, 0u) << seed_;
    ASSERT_NE(cluster.swim(odd).partitions_mismatch(), nullptr);
    EXPECT_EQ(cluster.swim(odd).partitions_mismatch()->partitions, 512u);
  }
}

}  // namespace
}  // namespace edgekv::sim
