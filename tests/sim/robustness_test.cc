// Scenarios 3 to 7: message loss, a slow node, pauses, a partition, traffic as the cluster
// grows; the local and wan presets' detection bounds; determinism of the simulator.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gossip/suspicion.h"
#include "tests/sim/sim_util.h"
#include "tests/sim/swim_node.h"

namespace edgekv::sim {
namespace {

using gossip::MemberEvent;
using gossip::MemberState;
using gossip::Options;

// Forms the cluster and lets the join traffic settle. False if it never converged.
bool form(SwimCluster& cluster, Millis settle = Millis(10000)) {
  cluster.start_all(Millis(10));
  if (!cluster.sim().run_until([&] { return cluster.converged(); }, Millis(180000))) return false;
  cluster.sim().run_for(settle);
  return true;
}

// False deaths since `from`: members declared dead, other than those in `exclude`. A death
// is observed by every member within a few seconds, so each member counts once per
// 10-second window.
size_t deaths(const SwimCluster& cluster, MonoTime from,
              const std::set<std::string>& exclude = {}) {
  std::set<std::pair<std::string, int64_t>> windows;
  for (const Observation& o : cluster.observations()) {
    if (o.kind != MemberEvent::Kind::kDead || o.at < from || exclude.count(o.member) > 0) continue;
    windows.insert({o.member, static_cast<int64_t>(seconds(o.at.time_since_epoch()) / 10)});
  }
  return windows.size();
}

class Robustness : public SimTest {};

// Scenario 3: random message loss, over several seeds: the bounds hold for the sum over
// them, so no single lucky seed carries the scenario.
TEST_F(Robustness, MessageLoss) {
  uint64_t s = seed(3000);
  struct Case {
    double loss;
    int minutes;
    double seed_max_per_minute;   // for every seed: the goal, or 1.5x the worst seed
    double total_max_per_minute;  // over all seeds: about 1.5x what they measured
  };
  // Measured over the 5 default seeds: 1 false death in 50 minutes at 10% loss, 0.42 per
  // minute at 30% (worst seed 0.7); over the 20 sweep seeds, 0.035 per minute at 10% (worst
  // seed 2 in 10 minutes) and 0.37 at 30%. The goal: at most 1 per minute at 30% loss.
  std::vector<Case> cases = {{0.10, 10, 0.3, 0.05}, {0.30, sweep_mode() ? 30 : 10, 1.0, 0.63}};
  const int seeds = sweep_mode() ? 20 : 5;
  for (const Case& c : cases) {
    std::string name = "loss" + std::to_string(static_cast<int>(c.loss * 100));
    size_t dead_total = 0;
    size_t dead_worst = 0;
    double suspicions = 0;
    double refutations = 0;
    double score_sum = 0;
    for (int t = 0; t < seeds; ++t) {
      seed_ = s + static_cast<uint64_t>(t);
      SwimCluster cluster(seed_, 20, Options::lan());
      ASSERT_TRUE(form(cluster));
      cluster.sim().network().loss = c.loss;
      MonoTime from = cluster.sim().now();
      uint64_t suspicions0 = cluster.sum(&gossip::Counters::suspicions);
      uint64_t refutations0 = cluster.sum(&gossip::Counters::refutations);
      for (int second = 0; second < c.minutes * 60; ++second) {
        cluster.sim().run_for(Millis(1000));
        for (size_t i = 0; i < 20; ++i) score_sum += cluster.swim(i).health_score();
      }
      size_t dead = deaths(cluster, from);
      dead_total += dead;
      dead_worst = std::max(dead_worst, dead);
      suspicions += static_cast<double>(cluster.sum(&gossip::Counters::suspicions) - suspicions0);
      refutations +=
          static_cast<double>(cluster.sum(&gossip::Counters::refutations) - refutations0);
      EXPECT_LE(static_cast<double>(dead), c.seed_max_per_minute * c.minutes)
          << name << " seed " << seed_;
    }
    const double minutes = static_cast<double>(c.minutes) * seeds;
    figure(name + ".seeds", seeds, "");
    figure(name + ".false_deaths", static_cast<double>(dead_total), "deaths");
    figure(name + ".false_deaths_worst_seed", static_cast<double>(dead_worst), "deaths");
    figure(name + ".false_deaths_per_minute", static_cast<double>(dead_total) / minutes, "/min");
    figure(name + ".suspicions_per_minute", suspicions / minutes, "/min");
    figure(name + ".refutations_per_minute", refutations / minutes, "/min");
    figure(name + ".mean_health_score", score_sum / (20.0 * 60 * minutes), "");
    EXPECT_LE(static_cast<double>(dead_total), c.total_max_per_minute * minutes) << name;
  }
}

// Scenario 4: one node handles every message late, later than the probe timeout. Its own
// probes fail, but local health stretches its timeouts and the others do not confirm its
// suspicions: no healthy member is declared dead.
TEST_F(Robustness, SlowNodeDoesNotKillHealthyOnes) {
  uint64_t s = seed(4000);
  SwimCluster cluster(s, 20, Options::lan());
  ASSERT_TRUE(form(cluster));
  const size_t slow = 7;
  cluster.sim().set_slow(slow, Millis(1500));
  MonoTime from = cluster.sim().now();
  uint32_t max_score = 0;
  for (int i = 0; i < 300; ++i) {
    cluster.sim().run_for(Millis(1000));
    max_score = std::max(max_score, cluster.swim(slow).health_score());
  }
  size_t healthy_dead = deaths(cluster, from, {SwimCluster::id(slow)});
  figure("slow.healthy_declared_dead", static_cast<double>(healthy_dead), "deaths");
  figure("slow.slow_node_declared_dead", static_cast<double>(deaths(cluster, from) - healthy_dead),
         "deaths");
  figure("slow.slow_node_suspicions", static_cast<double>(cluster.swim(slow).counters().suspicions),
         "suspicions");
  figure("slow.slow_node_max_health_score", max_score, "");
  EXPECT_EQ(healthy_dead, 0u);
  EXPECT_GT(max_score, 0u);  // it noticed its own slowness
}

// Scenario 5: a pause shorter than the minimum suspicion timeout is never a death; a long
// one is, and the node is alive everywhere again soon after it resumes.
TEST_F(Robustness, PauseShortAndLong) {
  uint64_t s = seed(5100);
  Options options = Options::lan();
  Millis min = gossip::suspicion_min_timeout(options, 20);
  Millis short_pause = min * 8 / 10;
  figure("pause.min_suspicion_timeout", seconds(min), "s");
  int trials = sweep_mode() ? 100 : 12;
  size_t short_deaths = 0;
  std::vector<double> back_alive;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    SwimCluster cluster(seed_, 20, options);
    ASSERT_TRUE(form(cluster, Millis(5000 + cluster.sim().random().uniform(5000))));
    const size_t victim = 1 + cluster.sim().random().uniform(19);
    MonoTime from = cluster.sim().now();
    cluster.sim().pause(victim);
    cluster.sim().run_for(short_pause);
    cluster.sim().resume(victim);
    cluster.sim().run_for(Millis(20000));
    short_deaths += deaths(cluster, from);

    // A long pause: dead everywhere, then alive everywhere after it resumes.
    cluster.sim().pause(victim);
    ASSERT_TRUE(cluster.sim().run_until([&] { return cluster.all_see(victim, MemberState::kDead); },
                                        Millis(60000)));
    cluster.sim().run_for(Millis(5000));
    cluster.sim().resume(victim);
    MonoTime resumed = cluster.sim().now();
    ASSERT_TRUE(
        cluster.sim().run_until([&] { return cluster.converged(); }, Millis(60000), Millis(1)));
    back_alive.push_back(seconds(cluster.sim().now() - resumed));
  }
  figure("pause.short_pause", seconds(short_pause), "s");
  figure("pause.short_pause_deaths", static_cast<double>(short_deaths), "deaths");
  figure("pause.long_pause_alive_again_median", quantile(back_alive, 0.5), "s");
  figure("pause.long_pause_alive_again_max", quantile(back_alive, 1.0), "s");
  EXPECT_EQ(short_deaths, 0u);
  // Measured worst: 5 ms over the 12 default trials, 170 ms over 100 sweep trials.
  EXPECT_LE(quantile(back_alive, 1.0), sweep_mode() ? 0.26 : 0.008);
}

// Scenario 6: two halves cannot talk for 60 s; after healing every member is alive in every
// view again.
TEST_F(Robustness, PartitionHeals) {
  uint64_t s = seed(6000);
  int trials = sweep_mode() ? 20 : 3;
  std::vector<double> heal_times;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    SwimCluster cluster(seed_, 20, Options::lan());
    ASSERT_TRUE(form(cluster));
    std::vector<NodeIndex> a, b;
    for (size_t i = 0; i < 20; ++i) (i < 10 ? a : b).push_back(i);
    cluster.sim().partition(a, b);
    cluster.sim().run_for(Millis(60000));
    // Each side has declared the other dead.
    EXPECT_FALSE(cluster.all_see(0, MemberState::kAlive));
    EXPECT_EQ(cluster.seen_live_by(0), 9u);
    cluster.sim().heal();
    MonoTime healed = cluster.sim().now();
    ASSERT_TRUE(
        cluster.sim().run_until([&] { return cluster.converged(); }, Millis(180000), Millis(100)));
    heal_times.push_back(seconds(cluster.sim().now() - healed));
  }
  figure("partition.remerge_median", quantile(heal_times, 0.5), "s");
  figure("partition.remerge_max", quantile(heal_times, 1.0), "s");
  EXPECT_LE(quantile(heal_times, 1.0), 33.0);  // measured worst 22 s (22.5 s in sweep mode)
}

// Scenario 7: messages per node per second, push-pull included, from 16 to 256 members.
TEST_F(Robustness, TrafficIsFlatAsClusterGrows) {
  uint64_t s = seed(7000);
  std::vector<size_t> sizes = {16, 32, 64, 128, 256};
  std::vector<double> rates;
  for (size_t n : sizes) {
    SwimCluster cluster(s, n, Options::lan());
    ASSERT_TRUE(form(cluster, Millis(30000)));
    cluster.sim().reset_counts();
    Millis window(60000);
    cluster.sim().run_for(window);
    double rate =
        static_cast<double>(cluster.sim().total_sent()) / static_cast<double>(n) / seconds(window);
    rates.push_back(rate);
    figure("traffic.n" + std::to_string(n) + ".msgs_per_node_per_s", rate, "msg/s");
  }
  for (double r : rates) {
    EXPECT_LE(r, 2.3);
    EXPECT_GE(r, 1.8);
  }
  EXPECT_LE(rates.back() - rates.front(), 0.15);
}

// The local preset (loopback tests): a killed node of 5 is dead everywhere within 3 s; a
// pause of 0.5 s is never a death.
TEST_F(Robustness, LocalPresetBounds) {
  uint64_t s = seed(8000);
  int trials = sweep_mode() ? 300 : 40;
  std::vector<double> detect;
  size_t pause_deaths = 0;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    SwimCluster cluster(seed_, 5, Options::local(), NetworkOptions{Millis(0), Millis(2)});
    ASSERT_TRUE(form(cluster, Millis(2000 + cluster.sim().random().uniform(2000))));
    const size_t victim = 1 + cluster.sim().random().uniform(4);
    MonoTime from = cluster.sim().now();
    cluster.sim().pause(victim);
    cluster.sim().run_for(Millis(500));
    cluster.sim().resume(victim);
    cluster.sim().run_for(Millis(5000));
    pause_deaths += deaths(cluster, from);

    MonoTime crashed = cluster.sim().now();
    cluster.crash(victim);
    ASSERT_TRUE(cluster.sim().run_until([&] { return cluster.all_see(victim, MemberState::kDead); },
                                        Millis(30000), Millis(10)));
    detect.push_back(seconds(cluster.sim().now() - crashed));
  }
  figure("local5.detect_median", quantile(detect, 0.5), "s");
  figure("local5.detect_p99", quantile(detect, 0.99), "s");
  figure("local5.detect_max", quantile(detect, 1.0), "s");
  figure("local5.pause_500ms_deaths", static_cast<double>(pause_deaths), "deaths");
  EXPECT_LE(quantile(detect, 1.0), 2.8);  // measured worst 1.75 s (1.9 s over 300 trials)
  EXPECT_EQ(pause_deaths, 0u);
}

// The wan preset's detection time, for the documentation (20 members, 20-60 ms one way).
TEST_F(Robustness, WanPresetDetection) {
  uint64_t s = seed(9000);
  int trials = sweep_mode() ? 100 : 10;
  std::vector<double> detect;
  for (int t = 0; t < trials; ++t) {
    seed_ = s + static_cast<uint64_t>(t);
    SwimCluster cluster(seed_, 20, Options::wan(), NetworkOptions{Millis(20), Millis(60)});
    ASSERT_TRUE(form(cluster, Millis(10000 + cluster.sim().random().uniform(30000))));
    const size_t victim = 1 + cluster.sim().random().uniform(19);
    MonoTime crashed = cluster.sim().now();
    cluster.crash(victim);
    ASSERT_TRUE(cluster.sim().run_until([&] { return cluster.all_see(victim, MemberState::kDead); },
                                        Millis(300000), Millis(100)));
    detect.push_back(seconds(cluster.sim().now() - crashed));
  }
  figure("wan20.detect_median", quantile(detect, 0.5), "s");
  figure("wan20.detect_max", quantile(detect, 1.0), "s");
  // Measured worst 27.9 s over the 10 default trials; 41 s over 100 sweep trials.
  EXPECT_LE(quantile(detect, 1.0), sweep_mode() ? 62.0 : 42.0);
}

}  // namespace
}  // namespace edgekv::sim
