// SWIM under simulation: SwimNode adapts one gossip::Swim to the simulator's SimNode, and
// SwimCluster builds a cluster of them and answers the questions scenarios ask ("does every
// live member see n7 dead?", "when did the last one notice?").
//
// SwimCluster keeps, per node, the view it has learned from the machine's events, so the
// questions cost no copies of the machines' views; the events are also recorded in the
// simulation's trace.
//
// Thread-safety: none, like the simulation.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gossip/swim.h"
#include "tests/sim/sim.h"

namespace edgekv::sim {

class SwimNode final : public SimNode {
 public:
  using Observer =
      std::function<void(const std::string& observer, const gossip::MemberEvent&, MonoTime now)>;

  SwimNode(gossip::NodeInfo info, gossip::Options options, uint64_t seed, uint64_t incarnation,
           Observer observer);

  void start(MonoTime now) override;
  void receive(std::string_view to_address, std::string_view bytes, MonoTime now) override;
  void tick(MonoTime now) override;
  MonoTime next_deadline() const override;
  void drain(std::vector<Datagram>& out, Trace& trace) override;

  gossip::Swim& swim() { return swim_; }
  const gossip::Swim& swim() const { return swim_; }

 private:
  gossip::Swim swim_;
  uint64_t incarnation_;
  Observer observer_;
  MonoTime last_now_{};
};

// One observed event: `observer` saw `member` change as `kind` at `at`.
struct Observation {
  std::string observer;
  std::string member;
  gossip::MemberEvent::Kind kind;
  MonoTime at;
};

class SwimCluster {
 public:
  // `size` nodes n000, n001, ... at sim://n000, ...; each joins through `seeds` (node
  // indexes; default: node 0). Nothing starts until start_all() or sim().start().
  SwimCluster(uint64_t seed, size_t size, gossip::Options options, NetworkOptions network = {},
              std::vector<size_t> seeds = {0});

  Simulation& sim() { return sim_; }
  const Simulation& sim() const { return sim_; }
  gossip::Swim& swim(size_t i) { return sim_.node_as<SwimNode>(i).swim(); }
  const gossip::Swim& swim(size_t i) const { return sim_.node_as<SwimNode>(i).swim(); }
  static std::string id(size_t i);
  size_t index_of(const std::string& id) const;
  size_t size() const { return sim_.size(); }

  // Node i runs with other options from its next start (seeds excepted: the cluster's).
  void set_options(size_t i, gossip::Options options);

  // Starts every node, `stagger` apart.
  void start_all(Millis stagger = Millis(0));
  // Crashes node i, losing its state; restart() then starts a fresh machine (incarnation
  // as given, by default 0: it must learn its old one from the cluster and refute).
  void crash(size_t i);
  void restart(size_t i, uint64_t incarnation = 0);

  // The state node `observer` holds for `member`, from its events; false if unknown.
  bool view_state(size_t observer, size_t member, gossip::MemberState* state) const;
  // Every running node other than `member` sees it in `state`.
  bool all_see(size_t member, gossip::MemberState state) const;
  // Every running node sees every other running node alive, and no one else as alive.
  bool converged() const;
  // How many running nodes see `member` alive or suspect.
  size_t seen_live_by(size_t member) const;

  const std::vector<Observation>& observations() const { return observations_; }
  // Observations of `kind` about `member` at or after `from`.
  std::vector<Observation> observed(size_t member, gossip::MemberEvent::Kind kind,
                                    MonoTime from) const;
  // Sum of a counter over running nodes.
  uint64_t sum(uint64_t gossip::Counters::*field) const;

 private:
  std::unique_ptr<SimNode> make(size_t i, uint32_t life);

  Simulation sim_;
  gossip::Options options_;
  std::map<size_t, gossip::Options> node_options_;  // set_options()
  std::vector<std::string> seed_endpoints_;
  std::vector<uint64_t> incarnation_;  // for the next start of each node
  std::vector<std::map<std::string, gossip::MemberState>> views_;
  std::vector<Observation> observations_;
  uint64_t seed_;
};

}  // namespace edgekv::sim
