// The simulator itself: same seed, same run; its faults behave as documented.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/sim/sim_util.h"
#include "tests/sim/swim_node.h"

namespace edgekv::sim {
namespace {

using gossip::MemberState;
using gossip::Options;

// A busy run touching every fault the simulator has.
uint64_t eventful_run(uint64_t seed, uint64_t* records) {
  NetworkOptions net;
  net.delay_min = Millis(1);
  net.delay_max = Millis(20);
  net.loss = 0.05;
  net.duplicate = 0.02;
  net.reorder = 0.05;
  net.reorder_delay_max = Millis(300);
  SwimCluster cluster(seed, 12, Options::lan(), net);
  Simulation& sim = cluster.sim();
  cluster.start_all(Millis(5));
  sim.run_for(Millis(15000));
  sim.set_slow(3, Millis(700));
  sim.pause(4);
  sim.run_for(Millis(3000));
  sim.resume(4);
  cluster.crash(5);
  sim.partition({0, 1, 2}, {6, 7, 8});
  sim.block(9, 10);
  sim.run_for(Millis(20000));
  sim.heal();
  cluster.restart(5);
  sim.run_for(Millis(30000));
  *records = sim.trace().records();
  return sim.digest();
}

TEST(Determinism, SameSeedSameTraceOtherSeedOtherTrace) {
  uint64_t seed = seed_from_env(42);
  uint64_t records_a = 0, records_b = 0, records_c = 0;
  uint64_t a = eventful_run(seed, &records_a);
  uint64_t b = eventful_run(seed, &records_b);
  uint64_t c = eventful_run(seed + 1, &records_c);
  EXPECT_EQ(a, b) << "seed " << seed << " did not replay";
  EXPECT_EQ(records_a, records_b);
  EXPECT_NE(a, c);
  EXPECT_GT(records_a, 1000u);
}

// A node that echoes every datagram back to the address named in it, and counts.
class EchoNode final : public SimNode {
 public:
  explicit EchoNode(std::string self) : self_(std::move(self)) {}
  void start(MonoTime) override {}
  void receive(std::string_view, std::string_view bytes, MonoTime now) override {
    received.emplace_back(bytes);
    times.push_back(now);
    if (bytes.rfind("ping:", 0) == 0) out_.push_back({std::string(bytes.substr(5)), "pong"});
  }
  void tick(MonoTime now) override {
    ticks.push_back(now);
    timer = MonoTime::max();
  }
  MonoTime next_deadline() const override { return timer; }
  void drain(std::vector<Datagram>& out, Trace&) override {
    for (Datagram& d : out_) out.push_back(std::move(d));
    out_.clear();
  }
  void send(std::string to, std::string bytes) {
    out_.push_back({std::move(to), std::move(bytes)});
  }

  std::vector<std::string> received;
  std::vector<MonoTime> times;
  std::vector<MonoTime> ticks;
  MonoTime timer = MonoTime::max();

 private:
  std::string self_;
  std::vector<Datagram> out_;
};

struct EchoPair {
  EchoPair() : sim(7, NetworkOptions{Millis(10), Millis(10)}) {
    for (const char* name : {"a", "b"}) {
      sim.add_node({name}, [name](uint32_t) { return std::make_unique<EchoNode>(name); });
    }
    sim.start(0);
    sim.start(1);
  }
  EchoNode& node(size_t i) { return sim.node_as<EchoNode>(i); }
  void send(size_t from, std::string to, std::string bytes) {
    node(from).send(std::move(to), std::move(bytes));
    sim.poke(from);
  }
  Simulation sim;
};

TEST(Simulator, DeliversAfterDelayAndRunsTimers) {
  EchoPair p;
  p.send(0, "b", "ping:a");
  p.sim.run_for(Millis(100));
  ASSERT_EQ(p.node(1).received.size(), 1u);
  EXPECT_EQ(p.node(1).times[0] - MonoTime{}, Millis(10));
  ASSERT_EQ(p.node(0).received.size(), 1u);
  EXPECT_EQ(p.node(0).received[0], "pong");
  EXPECT_EQ(p.node(0).times[0] - MonoTime{}, Millis(20));
  p.node(1).timer = p.sim.now() + Millis(50);
  p.send(1, "nowhere",
         "lost");  // the poke also schedules the timer  // an unknown address is a loss
  p.sim.run_for(Millis(100));
  ASSERT_EQ(p.node(1).ticks.size(), 1u);
  EXPECT_EQ(p.node(1).ticks[0] - MonoTime{}, Millis(150));
  EXPECT_EQ(p.sim.lost(), 1u);
}

TEST(Simulator, PauseHoldsCrashDropsPartitionBlocks) {
  EchoPair p;
  p.sim.pause(1);
  p.send(0, "b", "held");
  p.sim.run_for(Millis(100));
  EXPECT_TRUE(p.node(1).received.empty());
  p.sim.resume(1);
  p.sim.run_for(Millis(0));
  ASSERT_EQ(p.node(1).received.size(), 1u);

  p.sim.crash(1, false);
  p.send(0, "b", "dropped");
  p.sim.run_for(Millis(100));
  p.sim.restart(1);
  EXPECT_EQ(p.node(1).received.size(), 1u);

  p.sim.block(0, 1);  // one way
  p.send(0, "b", "blocked");
  p.send(1, "a", "through");
  p.sim.run_for(Millis(100));
  EXPECT_EQ(p.node(1).received.size(), 1u);
  EXPECT_EQ(p.node(0).received.back(), "through");
  p.sim.heal();
  p.sim.set_slow(1, Millis(500));
  p.send(0, "b", "late");
  p.sim.run_for(Millis(100));
  EXPECT_EQ(p.node(1).received.size(), 1u);
  p.sim.run_for(Millis(500));
  EXPECT_EQ(p.node(1).received.back(), "late");
}

}  // namespace
}  // namespace edgekv::sim
