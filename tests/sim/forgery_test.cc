// Scenario 8: an unauthenticated sender keeps claiming that a live member is dead, at an
// absurd incarnation. Every member, the victim included, ignores the claims and counts them;
// the victim stays alive in every view and its incarnation does not move.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gossip/codec.h"
#include "proto/gossip.pb.h"
#include "tests/sim/sim_util.h"
#include "tests/sim/swim_node.h"

namespace edgekv::sim {
namespace {

using gossip::MemberEvent;
using gossip::MemberState;
using gossip::Options;

// A gossip message from a node that is not in the cluster, claiming `victim` is suspect
// and dead at incarnations no member announced.
std::string forged_claims(const std::string& victim, uint64_t victim_incarnation) {
  gossip::pb::Envelope env;
  env.set_cluster(Options::lan().cluster_name);
  env.set_version(gossip::kProtocolVersion);
  env.set_from_id("forger");
  env.set_from_endpoint("sim://forger");
  env.mutable_gossip();
  auto claim = [&](gossip::pb::State state, uint64_t inc) {
    gossip::pb::Update* u = env.add_updates();
    u->set_state(state);
    u->set_id(victim);
    u->set_incarnation(inc);
    u->set_from("forger");
  };
  claim(gossip::pb::DEAD, UINT64_MAX);
  claim(gossip::pb::SUSPECT, UINT64_MAX - 1);
  claim(gossip::pb::DEAD, victim_incarnation + gossip::kMaxIncarnationLead + 1);
  return env.SerializeAsString();
}

class Forgery : public SimTest {};

TEST_F(Forgery, AbsurdDeadClaimsNeverKillALiveMember) {
  uint64_t s = seed(10000);
  const size_t n = 20;
  const int trials = sweep_mode() ? 20 : 5;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    SwimCluster cluster(seed_, n, Options::lan());
    cluster.start_all(Millis(10));
    ASSERT_TRUE(cluster.sim().run_until([&] { return cluster.converged(); }, Millis(60000)));
    const size_t victim = 1 + cluster.sim().random().uniform(n - 1);
    const uint64_t incarnation = cluster.swim(victim).incarnation();
    const std::string forged = forged_claims(SwimCluster::id(victim), incarnation);
    const MonoTime from = cluster.sim().now();
    uint64_t sent_to_victim = 0;
    // Two minutes of claims: every 100 ms to the victim and to one other random member,
    // which would otherwise gossip the claim on.
    for (int step = 0; step < 1200; ++step) {
      cluster.sim().run_for(Millis(100));
      size_t other = cluster.sim().random().uniform(n);
      for (size_t to : {victim, other}) {
        cluster.swim(to).receive(forged, cluster.sim().now());
        cluster.sim().poke(to);
        sent_to_victim += to == victim;
      }
    }
    EXPECT_TRUE(cluster.observed(victim, MemberEvent::Kind::kDead, from).empty()) << seed_;
    EXPECT_TRUE(cluster.observed(victim, MemberEvent::Kind::kSuspect, from).empty()) << seed_;
    EXPECT_TRUE(cluster.all_see(victim, MemberState::kAlive)) << seed_;
    EXPECT_TRUE(cluster.converged()) << seed_;
    EXPECT_EQ(cluster.swim(victim).incarnation(), incarnation) << seed_;
    EXPECT_EQ(cluster.swim(victim).counters().refutations, 0u) << seed_;
    // Three claims per message, each ignored and counted where it arrived.
    EXPECT_EQ(cluster.swim(victim).counters().claims_rejected, 3 * sent_to_victim) << seed_;
    EXPECT_EQ(cluster.sum(&gossip::Counters::claims_rejected), 3u * 2 * 1200) << seed_;
  }
}

}  // namespace
}  // namespace edgekv::sim
