// Replication under simulation: whole nodes (gossip, coordinator, replica side, in-memory
// store) with concurrent clients, under loss, delay, crashes, restarts, partitions and
// skewed clocks; every run's history goes through the checker (tests/sim/history.h).
//
// A handful of seeds per scenario in the normal run; EDGEKV_SIM_SWEEP=1 (make sim) runs
// EDGEKV_SIM_SWEEP_SEEDS of them (default 1000); EDGEKV_SIM_SEED replays one, and
// EDGEKV_SIM_SHOW_SLOPPY=1 prints the sloppy writes a run lost after healing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "common/hash.h"
#include "tests/sim/cluster_sim.h"
#include "tests/sim/sim_util.h"

namespace edgekv::sim {
namespace {

using std::chrono::seconds;

// Seeds per scenario: a few in the normal run (each a fraction of a second of a CPU), many
// in a sweep.
int seed_count(int normal) {
  if (std::getenv("EDGEKV_SIM_SEED") != nullptr) return 1;
  if (!sweep_mode()) return normal;
  const char* env = std::getenv("EDGEKV_SIM_SWEEP_SEEDS");
  return env != nullptr ? std::atoi(env) : 1000;
}

NetworkOptions lossy() {
  NetworkOptions n;
  n.delay_min = Millis(1);
  n.delay_max = Millis(8);
  n.loss = 0.02;
  n.duplicate = 0.01;
  n.reorder = 0.05;
  n.reorder_delay_max = Millis(30);
  return n;
}

// A replica holding no row of an acknowledged write's key, where a tombstone purged once
// every home replica held it explains that: a delete at or above the write's version, or
// one that may have happened (an error answer, no answer).
bool purged_after_delete(const std::vector<HistoryOp>& history, const HistoryOp& write,
                         const Result<store::Record>& held) {
  if (held.ok() || held.status().code() != Code::kNotFound) return false;
  for (const HistoryOp& d : history) {
    if (d.key != write.key || d.type != OpType::kDel) continue;
    if (d.outcome == Outcome::kUnknown || d.outcome == Outcome::kFailed ||
        (d.outcome == Outcome::kOk && d.version >= write.version)) {
      return true;
    }
  }
  return false;
}

class Replication : public SimTest {
 protected:
  // Runs `scenario` for each seed from `base` (one seed when EDGEKV_SIM_SEED is set), stopping
  // at the first failing one so that the replay line names it.
  void for_seeds(uint64_t base, const std::function<void(uint64_t)>& scenario, int normal = 5) {
    uint64_t first = seed(base);
    for (int i = 0; i < seed_count(normal) && !HasFailure(); ++i) {
      seed_ = first + static_cast<uint64_t>(i);
      scenario(seed_);
    }
  }

  // The hand-over scenarios (below): a join, a removal, under load; with
  // `skew_and_purges`, also under skewed clocks, more loss, and tombstones purged by
  // anti-entropy rounds every second.
  void join_under_load(uint64_t s, bool skew_and_purges);
  void removal_under_load(uint64_t s, bool skew_and_purges);

  // Heals, reads every key, and checks the whole history; prints what the run did.
  void expect_history_holds(ClusterSim& cluster, const Workload& workload) {
    std::string why;
    ASSERT_TRUE(cluster.heal_and_read(workload, &why)) << why;
    const auto& history = cluster.history();
    CheckResult strict = check(history);
    EXPECT_TRUE(strict.ok()) << strict.violations.size() << " violations:\n"
                             << strict.describe(history);
    EXPECT_EQ(strict.final_reads, workload.keys);
    EXPECT_GT(strict.durable_writes, 0u);
    EXPECT_GT(strict.checked_reads, workload.keys * 2);
    // Sloppy writes promise nothing to reads of the home replicas until hints are handed
    // off; how often a client taking them at their word would be surprised is a figure.
    CheckResult sloppy = check(history, CheckOptions{.include_sloppy = true});
    figure("ops", static_cast<double>(history.size()), "requests");
    figure("durable_writes", static_cast<double>(strict.durable_writes), "writes");
    figure("checked_reads", static_cast<double>(strict.checked_reads), "reads");
    figure("ok", static_cast<double>(cluster.count(Outcome::kOk)), "requests");
    figure("failed", static_cast<double>(cluster.count(Outcome::kFailed)), "requests");
    figure("unknown", static_cast<double>(cluster.count(Outcome::kUnknown)), "requests");
    uint64_t expired = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      if (cluster.node(i) != nullptr) expired += cluster.node(i)->counters().expired;  // retired
    }
    figure("swept_since_last_restart", static_cast<double>(expired), "keys");
    figure("sloppy_surprises", static_cast<double>(sloppy.violations.size()), "reads");
    CheckResult healed = check(history, CheckOptions{.final_reads_see_sloppy_writes = true});
    figure("sloppy_writes_lost_after_healing",
           static_cast<double>(healed.violations.size() - strict.violations.size()), "reads");
    if (std::getenv("EDGEKV_SIM_SHOW_SLOPPY") != nullptr) {
      std::printf("%s", healed.describe(history).c_str());
    }
  }
};

// The quiet case: five nodes, a little loss and reordering, clients at every level.
TEST_F(Replication, ClientsOfAHealthyClusterLoseNothing) {
  for_seeds(13000, [&](uint64_t s) {
    ClusterSim cluster(s, ClusterOptions{.nodes = 5, .network = lossy()});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    cluster.run_clients(seconds(8), clients);
    expect_history_holds(cluster, clients);
  });
}

// Seven nodes with slow disks (commits up to 20 ms after the write); every few seconds one
// of them crashes, losing what its store had not committed and the requests it was
// coordinating, and comes back two seconds later.
TEST_F(Replication, CrashesAndRestartsLoseNoAcknowledgedWrite) {
  for_seeds(13100, [&](uint64_t s) {
    ClusterSim cluster(
        s, ClusterOptions{.nodes = 7, .network = lossy(), .storage_delay_max = Millis(20)});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    for (int round = 0; round < 4; ++round) {
      cluster.run_clients(seconds(1), clients);
      size_t victim = cluster.sim().random().uniform(cluster.size());
      cluster.crash(victim);
      cluster.run_clients(seconds(2), clients);
      cluster.restart(victim);
    }
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
  });
}

// Nine nodes with clocks up to half a second apart and drifting; a minority is cut off for
// a few seconds at a time, clients on both sides keep writing, and short TTLs expire while
// the sides disagree.
TEST_F(Replication, PartitionsAndSkewedClocksBringNoKeyBack) {
  for_seeds(13200, [&](uint64_t s) {
    ClusterSim cluster(
        s, ClusterOptions{
               .nodes = 9, .network = lossy(), .max_clock_offset_ms = 500, .max_drift_ppm = 200});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.ttl_percent_of_puts = 40;
    clients.ttl_max_ms = 1500;
    for (int round = 0; round < 3; ++round) {
      cluster.run_clients(seconds(1), clients);
      std::vector<NodeIndex> minority;
      std::vector<NodeIndex> majority;
      size_t cut = 1 + cluster.sim().random().uniform(4);
      for (size_t i = 0; i < cluster.size(); ++i) {
        (i < cut ? minority : majority).push_back((i + round * 3) % cluster.size());
      }
      cluster.sim().partition(minority, majority);
      cluster.run_clients(seconds(3), clients);
      cluster.sim().heal();
    }
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
  });
}

// Everything at once: crashes during partitions, under skew, with more loss.
TEST_F(Replication, CrashesDuringPartitionsUnderSkew) {
  for_seeds(13300, [&](uint64_t s) {
    NetworkOptions network = lossy();
    network.loss = 0.05;
    ClusterSim cluster(
        s, ClusterOptions{
               .nodes = 6, .network = network, .max_clock_offset_ms = 300, .max_drift_ppm = 100});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.clients = 8;
    Random& rng = cluster.sim().random();
    for (int round = 0; round < 3; ++round) {
      cluster.run_clients(seconds(1), clients);
      NodeIndex a = rng.uniform(cluster.size());
      NodeIndex b = (a + 1 + rng.uniform(cluster.size() - 1)) % cluster.size();
      cluster.sim().partition({a}, {(a + 2) % cluster.size(), (a + 3) % cluster.size()});
      cluster.crash(b);
      cluster.run_clients(seconds(2), clients);
      cluster.restart(b);
      cluster.sim().heal();
    }
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
  });
}

// Power cuts instead of killed processes, with stores that fsync every commit group
// before acknowledging (sync = full): what was acknowledged survives the cut.
TEST_F(Replication, PowerCutsWithFullSyncLoseNoAcknowledgedWrite) {
  for_seeds(13700, [&](uint64_t s) {
    ClusterSim cluster(s, ClusterOptions{.nodes = 5,
                                         .network = lossy(),
                                         .storage_delay_max = Millis(10),
                                         .sync = store::SyncMode::kFull,
                                         .crash_kind = store::MemoryStore::CrashKind::kPowerCut});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.keys = 6;
    for (int round = 0; round < 4; ++round) {
      cluster.run_clients(seconds(1), clients);
      size_t victim = cluster.sim().random().uniform(cluster.size());
      cluster.crash(victim);
      cluster.run_clients(seconds(1), clients);
      cluster.restart(victim);
    }
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
  });
}

// Few keys, many clients, two nodes down at a time out of nine, a node cut off one way:
// every key sees concurrent writes from skewed coordinators, reads repair constantly.
// Twenty seeds in the normal run: a quorum read answering before a quorum holds what it
// returns (no repair first) shows here within them (seed 13512), rarely elsewhere.
TEST_F(Replication, HotKeysUnderChurn) {
  for_seeds(
      13500,
      [&](uint64_t s) {
        NetworkOptions network = lossy();
        network.loss = 0.08;
        network.reorder = 0.2;
        ClusterSim cluster(
            s,
            ClusterOptions{
                .nodes = 9, .network = network, .max_clock_offset_ms = 250, .max_drift_ppm = 200});
        ASSERT_TRUE(cluster.start_all());
        Workload clients;
        clients.clients = 12;
        clients.keys = 3;
        clients.think_max = Millis(10);
        clients.ttl_max_ms = 800;
        Random& rng = cluster.sim().random();
        for (int round = 0; round < 4; ++round) {
          cluster.run_clients(Millis(700), clients);
          NodeIndex a = rng.uniform(cluster.size());
          NodeIndex b = (a + 1 + rng.uniform(cluster.size() - 1)) % cluster.size();
          NodeIndex c = (b + 1 + rng.uniform(cluster.size() - 2)) % cluster.size();
          cluster.crash(a);
          cluster.crash(b);
          cluster.sim().block(c, (c + 1) % cluster.size());
          cluster.run_clients(Millis(1500), clients);
          cluster.restart(a);
          cluster.run_clients(Millis(500), clients);
          cluster.restart(b);
          cluster.sim().heal();
        }
        cluster.run_clients(seconds(1), clients);
        expect_history_holds(cluster, clients);
      },
      /*normal=*/20);
}

// Nodes that stop for a while (a long pause of the process) and resume with their
// requests, their replicas' replies and their store's commits all overdue, while a slow
// node handles every message 40 ms late.
TEST_F(Replication, PausedAndSlowNodesCatchUp) {
  for_seeds(13600, [&](uint64_t s) {
    ClusterSim cluster(
        s, ClusterOptions{
               .nodes = 5, .network = lossy(), .max_clock_offset_ms = 100, .max_drift_ppm = 50});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.keys = 6;
    Random& rng = cluster.sim().random();
    cluster.sim().set_slow(4, Millis(40));
    for (int round = 0; round < 4; ++round) {
      cluster.run_clients(seconds(1), clients);
      NodeIndex paused = rng.uniform(4);
      cluster.sim().pause(paused);
      cluster.run_clients(Millis(300 + rng.uniform(1500)), clients);
      cluster.sim().resume(paused);
    }
    cluster.sim().set_slow(4, Millis(0));
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
  });
}

// After healing, a write acknowledged at QUORUM by fallbacks' hints is on the home
// replicas only once the fallbacks hand their hints off, which is the next step of
// replication (issue 13 leaves hinted handoff out). Until then, a partition that sends
// sloppy writes to fallbacks leaves them invisible after healing, and a delete or an
// expiring write acknowledged that way lets the older value come back. Enable this when
// hints are handed off.
TEST_F(Replication, SloppyWritesSurviveHealing) {
  for_seeds(13200, [&](uint64_t s) {
    ClusterSim cluster(s, ClusterOptions{.nodes = 9, .network = lossy()});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.strict_percent = 0;
    for (int round = 0; round < 3; ++round) {
      cluster.run_clients(seconds(1), clients);
      cluster.sim().partition({0, 1, 2}, {3, 4, 5, 6, 7, 8});
      cluster.run_clients(seconds(3), clients);
      cluster.sim().heal();
    }
    std::string why;
    ASSERT_TRUE(cluster.heal_and_read(clients, &why)) << why;
    CheckResult r = check(cluster.history(), CheckOptions{.final_reads_see_sloppy_writes = true});
    EXPECT_TRUE(r.ok()) << r.describe(cluster.history());
  });
}

// A home replica that was down while sloppy writes went to fallbacks gets them back from
// the fallbacks' hints once gossip shows it up again, over a lossy network: every hint is
// delivered and removed, and the returned node holds every write acknowledged for its
// partitions while it was seen down, without a read having repaired it. (Writes made
// before the others saw it down, and fallback writes the network lost, leave no hint:
// those are anti-entropy's, so the writes go over a network that loses nothing.)
TEST_F(Replication, HintsAreHandedBackToTheirOwner) {
  for_seeds(13500, [&](uint64_t s) {
    NetworkOptions lossless = lossy();
    lossless.loss = 0;
    ClusterSim cluster(s, ClusterOptions{.nodes = 5, .network = lossless});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.strict_percent = 0;
    clients.one_percent = 0;
    clients.all_percent = 0;
    clients.write_percent = 90;
    clients.ttl_percent_of_puts = 0;
    cluster.crash(1);
    ASSERT_TRUE(cluster.sim().run_until(
        [&] {
          for (size_t i = 0; i < cluster.size(); ++i) {
            if (i != 1 && cluster.node(i)->sees_up(ClusterSim::id(1))) return false;
          }
          return true;
        },
        seconds(30)));
    const size_t first_op = cluster.history().size();
    cluster.run_clients(seconds(3), clients);
    auto hints_held = [&] {
      uint64_t held = 0;
      for (size_t i = 0; i < cluster.size(); ++i) {
        ReplicaNode* n = cluster.node(i);
        if (n == nullptr) continue;
        Result<std::vector<store::HintOwnerSummary>> owners = n->store().hint_owners();
        EXPECT_TRUE(owners.ok()) << owners.status().to_string();
        if (!owners.ok()) continue;
        for (const store::HintOwnerSummary& o : *owners) held += o.hints;
      }
      return held;
    };
    ASSERT_GT(hints_held(), 0u) << "no write went to a fallback";
    // The clients have stopped: no read repairs the returning node.
    cluster.sim().network() = lossy();
    cluster.restart(1);
    ASSERT_TRUE(cluster.sim().run_until([&] { return hints_held() == 0; }, seconds(30)))
        << hints_held() << " hints still held 30 s after the owner came back";
    ReplicaNode* owner = cluster.node(1);
    ASSERT_NE(owner, nullptr);
    uint64_t delivered = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      delivered += cluster.node(i)->handoff().counters().delivered;
    }
    EXPECT_GT(delivered, 0u);
    size_t checked = 0;
    for (size_t i = first_op; i < cluster.history().size(); ++i) {
      const HistoryOp& op = cluster.history()[i];
      if (op.type == OpType::kGet || op.outcome != Outcome::kOk) continue;
      const uint32_t p = partition_of(op.key, cluster.placement().partitions());
      if (!cluster.placement().is_home(p, ClusterSim::id(1))) continue;
      Result<store::Record> held = owner->store().read(op.key, WallTime{0});
      ASSERT_TRUE(held.ok()) << op.key << ": " << held.status().to_string();
      EXPECT_GE(held->version, op.version) << op.key << " on the returned owner";
      ++checked;
    }
    EXPECT_GT(checked, 0u);
  });
}

// Anti-entropy brings every home replica to the same state without hints or reads: writes
// go over a network that loses messages, one home replica is down for part of them and no
// hint is kept for it (a 1 ms hint window), and the clients stop before it returns. Then
// the home replicas of every partition reach equal digests by anti-entropy rounds alone,
// and each holds every acknowledged write (its version or a newer one). Without
// anti-entropy the digests never agree.
TEST_F(Replication, AntiEntropyConvergesEveryReplica) {
  for_seeds(13600, [&](uint64_t s) {
    cluster::HandoffOptions no_hints;
    no_hints.hint_window = Millis(1);
    cluster::AntiEntropyOptions ae;
    ae.interval = seconds(2);
    ae.retry_after = seconds(1);
    ae.request_timeout = Millis(500);
    ClusterSim cluster(
        s, ClusterOptions{.nodes = 5, .network = lossy(), .handoff = no_hints, .anti_entropy = ae});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.strict_percent = 0;
    clients.write_percent = 90;
    clients.ttl_percent_of_puts = 0;
    cluster.run_clients(seconds(1), clients);
    cluster.crash(1);
    cluster.run_clients(seconds(2), clients);
    cluster.restart(1);
    const cluster::Placement& placement = cluster.placement();
    // Node ids are "n" and the index (ClusterSim::id).
    auto node_of = [&](const cluster::NodeId& id) {
      return cluster.node(static_cast<size_t>(std::stoul(id.substr(1))));
    };
    auto in_sync = [&] {
      for (uint32_t p = 0; p < placement.partitions(); ++p) {
        std::optional<uint64_t> root;
        for (const cluster::NodeId& home : placement.home(p)) {
          ReplicaNode* n = node_of(home);
          if (n == nullptr) return false;
          Result<store::PartitionDigest> d = n->store().digest(p);
          if (!d.ok()) return false;
          if (root.has_value() && *root != d->root) return false;
          root = d->root;
        }
      }
      return true;
    };
    ASSERT_FALSE(in_sync()) << "the replicas agreed before any anti-entropy round: the test "
                               "shows nothing";
    ASSERT_TRUE(cluster.sim().run_until(in_sync, seconds(60)))
        << "home replicas still differ 60 s after the last write";
    uint64_t moved = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      const auto& c = cluster.node(i)->anti_entropy().counters();
      moved += c.pulled + c.pushed;
    }
    EXPECT_GT(moved, 0u);
    size_t checked = 0;
    for (const HistoryOp& op : cluster.history()) {
      if (op.type == OpType::kGet || op.outcome != Outcome::kOk) continue;
      const uint32_t p = partition_of(op.key, placement.partitions());
      for (const cluster::NodeId& home : placement.home(p)) {
        Result<store::Record> held = node_of(home)->store().read(op.key, WallTime{0});
        if (purged_after_delete(cluster.history(), op, held)) continue;
        ASSERT_TRUE(held.ok()) << op.key << " on " << home << ": " << held.status().to_string();
        EXPECT_GE(held->version, op.version) << op.key << " on " << home;
        ++checked;
      }
    }
    EXPECT_GT(checked, 0u);
  });
}

// Anti-entropy rounds every second, timeouts and retries of half a second, a 200 ms clock
// margin: tombstones go within seconds of the last home replica taking them.
cluster::AntiEntropyOptions rounds_every_second() {
  cluster::AntiEntropyOptions ae;
  ae.interval = seconds(1);
  ae.retry_after = Millis(500);
  ae.request_timeout = Millis(500);
  ae.horizon_margin = Millis(200);
  ae.horizon_refresh = Millis(500);
  return ae;
}

// Tombstones are purged as soon as every home replica holds them (anti-entropy rounds
// every second, a 200 ms clock margin), while writes, deletes and TTLs go on over a lossy
// network, nodes crash and come back, and a minority is cut off: no deleted or expired key
// comes back, through a late hint, a returning replica or a repair, and every
// acknowledged write survives (the history checker). Tombstones are purged in the run.
TEST_F(Replication, TombstonesPurgedByHorizonBringNoKeyBack) {
  for_seeds(13700, [&](uint64_t s) {
    const cluster::AntiEntropyOptions ae = rounds_every_second();
    ClusterSim cluster(s, ClusterOptions{.nodes = 5, .network = lossy(), .anti_entropy = ae});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.delete_percent_of_writes = 40;
    clients.ttl_percent_of_puts = 40;
    clients.ttl_max_ms = 1500;
    for (int round = 0; round < 3; ++round) {
      cluster.run_clients(seconds(2), clients);
      const size_t victim = cluster.sim().random().uniform(cluster.size());
      cluster.crash(victim);
      cluster.run_clients(seconds(2), clients);
      cluster.restart(victim);
    }
    cluster.run_clients(seconds(3), clients);
    // A quiet spell: tombstones the clients leave are superseded within a second or two by
    // the next write of their key, often before the purge horizon reaches them, now that
    // it also trails the hint floors' reports (cluster/hint_floors.h: margin plus up to a
    // second); the last ones go now.
    cluster.sim().run_for(seconds(4));
    uint64_t purged = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      ReplicaNode* n = cluster.node(i);
      if (n != nullptr) purged += n->store().stats(WallTime{0}).tombstones_purged;
    }
    EXPECT_GT(purged, 0u) << "no tombstone was purged: the test shows nothing";
    figure("tombstones_purged", static_cast<double>(purged), "tombstones");
    expect_history_holds(cluster, clients);
  });
}

// A sloppy write whose only copies are hints on fallbacks that stay away while the home
// replicas' rounds carry their purge horizons past it: every home replica of k0 is cut off
// from the rest (still running, comparing among themselves every second), clients write
// through the rest only, so fallbacks take every write of k0's partition as hints; then the
// fallbacks holding hints crash, the network heals, the home replicas compare for seconds
// more, and the fallbacks come back and hand their hints over. The hint floors (cluster/
// hint_floors.h) keep the home replicas' horizons below what the fallbacks last reported,
// so no hint is refused as below the horizon and no acknowledged write is lost; without
// them the owners answer those hints "not applied" and the history checker finds the
// writes gone.
TEST_F(Replication, HintsKeptAwayPastTheHorizonAreNotRefused) {
  for_seeds(14600, [&](uint64_t s) {
    const cluster::AntiEntropyOptions ae = rounds_every_second();
    ClusterSim cluster(s, ClusterOptions{.nodes = 7, .network = lossy(), .anti_entropy = ae});
    ASSERT_TRUE(cluster.start_all());
    const cluster::Placement& placement = cluster.placement();
    const uint32_t p = partition_of("k0", placement.partitions());
    std::vector<size_t> homes;
    std::vector<size_t> rest;
    for (size_t i = 0; i < cluster.size(); ++i) {
      (placement.is_home(p, ClusterSim::id(i)) ? homes : rest).push_back(i);
    }
    ASSERT_EQ(homes.size(), 3u);
    // Every node hears every other's report before the cut.
    cluster.sim().run_for(seconds(2));
    cluster.sim().partition(homes, rest);
    ASSERT_TRUE(cluster.sim().run_until(
        [&] {
          for (size_t r : rest) {
            for (size_t h : homes) {
              if (cluster.node(r)->sees_up(ClusterSim::id(h))) return false;
            }
          }
          return true;
        },
        seconds(30)));
    Workload clients;
    clients.strict_percent = 0;
    clients.write_percent = 80;
    clients.ttl_percent_of_puts = 0;
    clients.all_percent = 0;
    clients.at = rest;
    cluster.run_clients(seconds(2), clients);
    // The fallbacks holding hints for k0's home replicas go away with them.
    std::vector<size_t> away;
    for (size_t r : rest) {
      Result<std::vector<store::HintOwnerSummary>> owners = cluster.node(r)->store().hint_owners();
      ASSERT_TRUE(owners.ok()) << owners.status().to_string();
      for (const store::HintOwnerSummary& o : *owners) {
        if (placement.is_home(p, o.owner)) {
          away.push_back(r);
          break;
        }
      }
    }
    ASSERT_FALSE(away.empty()) << "no fallback holds a hint for k0's home replicas";
    cluster.sim().run_until([&] { return cluster.count(Outcome::kPending) == 0; }, seconds(5));
    for (size_t r : away) cluster.crash(r);
    cluster.sim().heal();
    // The home replicas compare on: without a hold their horizons pass every write above.
    cluster.sim().run_for(seconds(5));
    for (size_t r : away) cluster.restart(r);
    uint64_t delivered = 0;
    auto hints_held = [&] {
      uint64_t held = 0;
      for (size_t r : away) {
        Result<std::vector<store::HintOwnerSummary>> owners =
            cluster.node(r)->store().hint_owners();
        if (!owners.ok()) return uint64_t{1};
        for (const store::HintOwnerSummary& o : *owners) held += o.hints;
      }
      return held;
    };
    ASSERT_TRUE(cluster.sim().run_until([&] { return hints_held() == 0; }, seconds(30)))
        << hints_held() << " hints still held 30 s after the fallbacks returned";
    uint64_t below = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      delivered += cluster.node(i)->handoff().counters().delivered;
      below += cluster.node(i)->store().stats(WallTime{0}).writes_below_horizon;
    }
    EXPECT_GT(delivered, 0u);
    EXPECT_EQ(below, 0u) << "hints were refused as below a purge horizon";
    figure("hints_delivered", static_cast<double>(delivered), "hints");
    std::string why;
    ASSERT_TRUE(cluster.heal_and_read(clients, &why)) << why;
    CheckResult r = check(cluster.history(), CheckOptions{.final_reads_see_sloppy_writes = true});
    EXPECT_TRUE(r.ok()) << r.violations.size() << " violations:\n" << r.describe(cluster.history());
  });
}

// A fallback refuses hints for an owner down past the hint window and marks the partitions
// instead; it is no home replica of them, so it runs no anti-entropy round that would
// clear them. Once the owner is back, the fallback asks it to repair each marked partition
// with the other home replicas: the marks go, and the owner holds every acknowledged write
// of those partitions, with no anti-entropy schedule and no reads.
TEST_F(Replication, AFallbacksRepairMarksAreClearedThroughTheOwner) {
  for_seeds(13800, [&](uint64_t s) {
    cluster::HandoffOptions no_hints;
    no_hints.hint_window = Millis(1);
    no_hints.repair_ask_wait = seconds(2);
    no_hints.repair_ask_backoff_min = Millis(200);
    no_hints.repair_ask_backoff_max = seconds(2);
    ClusterSim cluster(s, ClusterOptions{.nodes = 5, .network = {}, .handoff = no_hints});
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    clients.strict_percent = 0;
    clients.write_percent = 100;
    clients.ttl_percent_of_puts = 0;
    cluster.run_clients(seconds(1), clients);
    cluster.crash(1);
    cluster.run_clients(seconds(3), clients);
    const cluster::Placement& placement = cluster.placement();
    const cluster::NodeId owner = ClusterSim::id(1);
    std::set<uint32_t> marked;
    for (size_t i = 0; i < cluster.size(); ++i) {
      if (cluster.node(i) == nullptr) continue;
      for (const cluster::RepairMark& m : cluster.node(i)->handoff().marks()) {
        ASSERT_EQ(m.owner, owner);
        EXPECT_FALSE(placement.is_home(m.partition, cluster.node(i)->id()))
            << "a mark is held by a fallback";
        marked.insert(m.partition);
      }
    }
    ASSERT_FALSE(marked.empty()) << "no fallback refused a hint: the test shows nothing";
    cluster.restart(1);
    auto no_marks = [&] {
      for (size_t i = 0; i < cluster.size(); ++i) {
        if (cluster.node(i) != nullptr && !cluster.node(i)->handoff().marks().empty()) {
          return false;
        }
      }
      return true;
    };
    ASSERT_TRUE(cluster.sim().run_until(no_marks, seconds(30)))
        << "repair marks still held 30 s after the owner came back";
    uint64_t cleared = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      cleared += cluster.node(i)->handoff().counters().repair_asks_cleared;
    }
    EXPECT_GE(cleared, marked.size());
    EXPECT_GT(cluster.node(1)->anti_entropy().counters().pulled, 0u);
    size_t checked = 0;
    for (const HistoryOp& op : cluster.history()) {
      if (op.type == OpType::kGet || op.outcome != Outcome::kOk) continue;
      const uint32_t p = partition_of(op.key, placement.partitions());
      if (!marked.contains(p)) continue;
      Result<store::Record> held = cluster.node(1)->store().read(op.key, WallTime{0});
      if (purged_after_delete(cluster.history(), op, held)) continue;
      ASSERT_TRUE(held.ok()) << op.key << " on " << owner << ": " << held.status().to_string();
      EXPECT_GE(held->version, op.version) << op.key << " on " << owner;
      ++checked;
    }
    EXPECT_GT(checked, 0u);
  });
}

// For the hand-over scenarios: a join or a removal while clients write, overwrite, delete
// and read, over a lossy network, and what a run must show once the hand-over committed.
struct HandOverChecks {
  // No schedule (only streams and repairs move data), or, with `purges`, rounds every
  // second that purge tombstones soon after every home replica holds them.
  static cluster::AntiEntropyOptions anti_entropy(bool purges) {
    cluster::AntiEntropyOptions ae = rounds_every_second();
    if (!purges) ae.interval = Millis(0);
    return ae;
  }

  static ClusterOptions options(size_t nodes, bool skew_and_purges) {
    NetworkOptions network = lossy();
    if (skew_and_purges) network.loss = 0.05;
    return ClusterOptions{.nodes = nodes,
                          .network = network,
                          .max_clock_offset_ms = skew_and_purges ? 300 : 0,
                          .max_drift_ppm = skew_and_purges ? 100.0 : 0.0,
                          .storage_delay_max = Millis(5),
                          .anti_entropy = anti_entropy(skew_and_purges)};
  }

  // Runs the clients until every running node holds the same table, no pending one, and
  // `done` holds of it; that table. Fails the test after `limit`.
  static std::optional<cluster::Placement> run_until_committed(
      ClusterSim& cluster, const Workload& w, Millis limit,
      const std::function<bool(const cluster::Placement&)>& done) {
    const MonoTime end = cluster.sim().now() + limit;
    while (cluster.sim().now() < end) {
      cluster::Placement p = cluster.placement();
      if (cluster.placements_agree(&p) && done(p)) return p;
      cluster.run_clients(Millis(200), w);
    }
    return std::nullopt;
  }

  // Runs the clients until node `i` streams (its hand-over began streaming), at most
  // `limit`; whether it did.
  static bool run_until_streaming(ClusterSim& cluster, size_t i, const Workload& w, Millis limit) {
    const MonoTime end = cluster.sim().now() + limit;
    while (cluster.sim().now() < end) {
      ReplicaNode* n = cluster.node(i);
      if (n != nullptr && n->hand_over().progress().started != MonoTime{}) return true;
      // A millisecond at a time: a taker of a few small partitions streams them in a few.
      cluster.run_clients(Millis(1), w);
    }
    return false;
  }

  // Whether every key's home replicas in `p` hold the same state: equal versions where
  // they hold a row; where one holds none, the others hold a tombstone or an expired
  // record (a purged delete, a swept expiry). The first difference in `*why`.
  static bool replicas_converged(ClusterSim& cluster, const cluster::Placement& p,
                                 const Workload& w, std::string* why) {
    for (size_t k = 0; k < w.keys; ++k) {
      const std::string key = "k" + std::to_string(k);
      const uint32_t partition = partition_of(key, p.partitions());
      std::optional<Version> version;
      bool absent = false;
      bool live = false;
      std::string states;
      for (const cluster::NodeId& home : p.home(partition)) {
        ReplicaNode* n = cluster.node(ClusterSim::index_of(home));
        if (n == nullptr) {
          *why = key + ": home replica " + home + " is down";
          return false;
        }
        Result<store::Record> r = n->store().read(key, WallTime{0});
        if (!r.ok()) {
          if (r.status().code() != Code::kNotFound) {
            *why = key + " on " + home + ": " + r.status().to_string();
            return false;
          }
          absent = true;
          states += " " + home + "=none";
          continue;
        }
        const WallTime wall = cluster.disk(ClusterSim::index_of(home)).clock.wall_now();
        if (!r->tombstone && (r->expiry.ms == 0 || r->expiry.ms > wall.ms)) live = true;
        states += " " + home + "=" + std::to_string(r->version.hlc) + (r->tombstone ? "d" : "");
        if (version.has_value() && *version != r->version) {
          *why = key + " differs:" + states;
          return false;
        }
        version = r->version;
      }
      if (absent && live) {
        *why = key + " is live on some home replicas only:" + states;
        return false;
      }
    }
    return true;
  }

  // Forces anti-entropy rounds on every running node until the home replicas of `p`
  // converge (replicas_converged), within a bound.
  static void expect_replicas_converge(ClusterSim& cluster, const cluster::Placement& p,
                                       const Workload& w) {
    std::string why;
    for (int attempt = 0; attempt < 8 && !replicas_converged(cluster, p, w, &why); ++attempt) {
      for (size_t i = 0; i < cluster.size(); ++i) {
        if (ReplicaNode* n = cluster.node(i)) {
          n->repair_all(cluster.sim().now());
          cluster.sim().poke(i);
        }
      }
      cluster.sim().run_for(seconds(3));
    }
    EXPECT_TRUE(replicas_converged(cluster, p, w, &why)) << why;
  }

  // Each running node's tables and hand-over, for a failure message.
  static std::string describe_nodes(ClusterSim& cluster) {
    std::string out;
    for (size_t i = 0; i < cluster.size(); ++i) {
      ReplicaNode* n = cluster.node(i);
      if (n == nullptr) {
        out += "\n  " + ClusterSim::id(i) + " down";
        continue;
      }
      const cluster::PlacementKeeper& k = n->keeper();
      out += "\n  " + n->id() + " epoch " + std::to_string(k.placement().epoch()) + " members";
      for (const cluster::NodeId& m : k.placement().members()) out += " " + m;
      if (std::optional<cluster::HandOverStatus> h = k.hand_over()) {
        out += "; pending epoch " + std::to_string(h->to_epoch) + ", not seen:";
        for (const cluster::NodeId& m : h->not_seen) out += " " + m;
        out += ", takers:";
        for (const cluster::HandOverProgress& t : h->takers) {
          out +=
              " " + t.node + " " + std::to_string(t.streamed) + "/" + std::to_string(t.partitions);
        }
      }
      const cluster::StreamProgress& p = n->hand_over().progress();
      out += "; streams " + std::to_string(p.streamed) + "/" + std::to_string(p.partitions) +
             " failed " + std::to_string(p.rounds_failed) + " " + p.last_failure;
    }
    return out;
  }

  // Every node taking slots over from `before` to `after` holds, in each partition it took
  // over, every durable write (strict, QUORUM or ALL) acknowledged before `t0` (the
  // hand-over's start): its version or a newer one, or nothing where a delete or an
  // expiry (acknowledged at or above it, or of unknown outcome) was purged since. What the
  // streams must have brought, before any read repaired it; how many were checked.
  static size_t expect_takers_hold(ClusterSim& cluster, const cluster::Placement& before,
                                   const cluster::Placement& after, MonoTime t0) {
    const std::vector<HistoryOp>& history = cluster.history();
    auto absence_explained = [&](const HistoryOp& write) {
      for (const HistoryOp& o : history) {
        if (o.key != write.key || o.type == OpType::kGet) continue;
        const bool ends = o.type == OpType::kDel || o.ttl_ms > 0;
        if (!ends) continue;
        if (o.outcome != Outcome::kOk || o.version >= write.version) return true;
      }
      return false;
    };
    size_t checked = 0;
    for (const cluster::NodeId& taker : cluster::takers(before, after)) {
      ReplicaNode* n = cluster.node(ClusterSim::index_of(taker));
      if (n == nullptr) {
        ADD_FAILURE() << "taker " << taker << " is down";
        continue;
      }
      const std::vector<uint32_t> taken = cluster::taken_over(before, after, taker);
      const std::set<uint32_t> partitions(taken.begin(), taken.end());
      for (const HistoryOp& op : history) {
        if (op.type == OpType::kGet || op.outcome != Outcome::kOk || !op.strict ||
            op.consistency == cluster::Consistency::kOne || op.complete_time >= t0) {
          continue;
        }
        if (!partitions.contains(partition_of(op.key, before.partitions()))) continue;
        Result<store::Record> held = n->store().read(op.key, WallTime{0});
        ++checked;
        if (!held.ok() && held.status().code() == Code::kNotFound && absence_explained(op)) {
          continue;
        }
        EXPECT_TRUE(held.ok()) << op.key << " ("
                               << sim::describe(history, static_cast<size_t>(&op - history.data()))
                               << ") on taker " << taker << ": " << held.status().to_string();
        if (held.ok()) {
          EXPECT_GE(held->version, op.version)
              << op.key << " (" << sim::describe(history, static_cast<size_t>(&op - history.data()))
              << ") on taker " << taker;
        }
      }
    }
    return checked;
  }

  static Workload load(bool skew_and_purges) {
    Workload w;
    w.clients = 8;
    w.keys = 200;
    w.delete_percent_of_writes = skew_and_purges ? 40 : 25;
    w.ttl_percent_of_puts = skew_and_purges ? 40 : 15;
    if (skew_and_purges) w.ttl_max_ms = 1500;
    return w;
  }
};

// A fifth node joins four that hold data, while clients write, overwrite, delete and read
// over a lossy network; in a quarter of the seeds the joining node (the taker) crashes while
// it streams and comes back, in another one of the nodes it streams from does, in another
// the home replicas keeping a partition the joiner takes are cut off for a while. The
// hand-over commits on every node within a bound, the history checker finds no
// acknowledged write lost and no quorum read older than a write completed before it, and
// the new table's home replicas of every key converge.
void Replication::join_under_load(uint64_t s, bool skew_and_purges) {
  using H = HandOverChecks;
  ClusterSim cluster(s, H::options(4, skew_and_purges));
  ASSERT_TRUE(cluster.start_all());
  const Workload clients = H::load(skew_and_purges);
  cluster.run_clients(seconds(2), clients);
  const MonoTime joined_at = cluster.sim().now();
  const size_t joiner = cluster.add_node();
  const cluster::NodeId joiner_id = ClusterSim::id(joiner);
  const int fault = static_cast<int>(s % 4);
  if (fault != 0) {
    ASSERT_TRUE(H::run_until_streaming(cluster, joiner, clients, seconds(30)))
        << "the joining node never began streaming";
    // A partition the joiner takes over and its current home replicas (the join is
    // deterministic: the pending table is this one).
    cluster::Placement next = cluster.placement();
    const cluster::NodeId ids[] = {joiner_id};
    ASSERT_TRUE(next.join(ids).ok());
    const std::vector<uint32_t> taken = cluster::taken_over(cluster.placement(), next, joiner_id);
    ASSERT_FALSE(taken.empty());
    const uint32_t moved = taken[cluster.sim().random().uniform(taken.size())];
    const std::vector<cluster::NodeId> homes = cluster.placement().home(moved);
    const Millis outage(500 + cluster.sim().random().uniform(1500));
    if (fault == 3) {
      // The home replicas that keep the partition are cut off from the one handing it
      // over, the joiner and the rest: writes on that side reach the leaving replica
      // and the joiner only.
      std::vector<NodeIndex> keeping;
      std::vector<NodeIndex> others;
      for (size_t i = 0; i < cluster.size(); ++i) {
        const cluster::NodeId node = ClusterSim::id(i);
        const bool keeps =
            next.is_home(moved, node) && std::find(homes.begin(), homes.end(), node) != homes.end();
        (keeps ? keeping : others).push_back(i);
      }
      cluster.sim().partition(keeping, others);
      cluster.run_clients(outage, clients);
      cluster.sim().heal();
    } else {
      // The taker, or a source: a current home replica of that partition.
      const size_t victim =
          fault == 1 ? joiner
                     : ClusterSim::index_of(homes[cluster.sim().random().uniform(homes.size())]);
      cluster.crash(victim);
      cluster.run_clients(outage, clients);
      cluster.restart(victim);
    }
  }
  std::optional<cluster::Placement> done =
      H::run_until_committed(cluster, clients, seconds(60),
                             [&](const cluster::Placement& p) { return p.is_member(joiner_id); });
  ASSERT_TRUE(done.has_value()) << "the join did not commit on every node within 60 s";
  figure("join_committed_after", sim::seconds(cluster.sim().now() - joined_at), "s");
  figure("taken_over_writes_checked",
         static_cast<double>(H::expect_takers_hold(cluster, cluster.placement(), *done, joined_at)),
         "writes");
  EXPECT_EQ(done->members().size(), 5u);
  EXPECT_GT(done->slots_of(joiner_id), 0u);
  cluster.run_clients(seconds(1), clients);
  expect_history_holds(cluster, clients);
  H::expect_replicas_converge(cluster, *done, clients);
  uint64_t dropped = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    dropped += cluster.node(i)->counters().partitions_dropped;
  }
  figure("partitions_dropped", static_cast<double>(dropped), "partitions");
  EXPECT_GT(dropped, 0u) << "no node dropped a partition it handed over";
}

// One of five nodes is removed under the same load: alive in half the seeds (it takes
// part in its own removal), crashed for good before the removal in the others; in some
// seeds a node taking its slots over crashes while it streams and comes back, in others the
// home replicas keeping a partition that moves are cut off for a while. The same
// checks, and the removed node is in no node's table at the end.
void Replication::removal_under_load(uint64_t s, bool skew_and_purges) {
  using H = HandOverChecks;
  ClusterSim cluster(s, H::options(5, skew_and_purges));
  ASSERT_TRUE(cluster.start_all());
  const Workload clients = H::load(skew_and_purges);
  cluster.run_clients(seconds(2), clients);
  Random& rng = cluster.sim().random();
  const size_t target = rng.uniform(cluster.size());
  const size_t at = (target + 1 + rng.uniform(cluster.size() - 1)) % cluster.size();
  const cluster::NodeId target_id = ClusterSim::id(target);
  const bool crashed = s % 2 == 1;
  if (crashed) {
    cluster.crash_for_good(target);
    cluster.run_clients(seconds(1), clients);
  }
  const MonoTime asked_at = cluster.sim().now();
  Status asked = cluster.remove(target, at);
  ASSERT_TRUE(asked.ok()) << asked.to_string();
  const int fault = static_cast<int>((s / 2) % 3);
  if (fault != 0) {
    // A partition moving to a taker: a node the pending table gives slots it did not
    // hold.
    const cluster::PlacementKeeper& k = cluster.node(at)->keeper();
    ASSERT_TRUE(k.pending().has_value());
    const cluster::Placement current = k.placement();
    const cluster::Placement next = *k.pending();
    const std::vector<cluster::NodeId> takers = cluster::takers(current, next);
    ASSERT_FALSE(takers.empty());
    const cluster::NodeId taker_id = takers[rng.uniform(takers.size())];
    const size_t taker = ClusterSim::index_of(taker_id);
    const std::vector<uint32_t> taken = cluster::taken_over(current, next, taker_id);
    const uint32_t moved = taken[rng.uniform(taken.size())];
    ASSERT_TRUE(H::run_until_streaming(cluster, taker, clients, seconds(30)))
        << taker_id << " never began streaming: " << H::describe_nodes(cluster);
    const Millis outage(500 + rng.uniform(1500));
    if (fault == 1) {
      cluster.crash(taker);
      cluster.run_clients(outage, clients);
      cluster.restart(taker);
    } else {
      // The home replicas that keep that partition are cut off from the rest: writes on
      // the other side reach the removed node (when it runs) and the taker only.
      std::vector<NodeIndex> keeping;
      std::vector<NodeIndex> others;
      for (size_t i = 0; i < cluster.size(); ++i) {
        const cluster::NodeId node = ClusterSim::id(i);
        const bool keeps = current.is_home(moved, node) && next.is_home(moved, node);
        (keeps ? keeping : others).push_back(i);
      }
      cluster.sim().partition(keeping, others);
      cluster.run_clients(outage, clients);
      cluster.sim().heal();
    }
  }
  std::optional<cluster::Placement> done =
      H::run_until_committed(cluster, clients, seconds(60),
                             [&](const cluster::Placement& p) { return !p.is_member(target_id); });
  ASSERT_TRUE(done.has_value()) << "the removal did not commit on every node within 60 s";
  figure("removal_committed_after", sim::seconds(cluster.sim().now() - asked_at), "s");
  figure("taken_over_writes_checked",
         static_cast<double>(H::expect_takers_hold(cluster, cluster.placement(), *done, asked_at)),
         "writes");
  EXPECT_EQ(done->members().size(), 4u);
  cluster.run_clients(seconds(1), clients);
  expect_history_holds(cluster, clients);
  H::expect_replicas_converge(cluster, *done, clients);
  for (size_t i = 0; i < cluster.size(); ++i) {
    ReplicaNode* n = cluster.node(i);
    if (n == nullptr) continue;
    EXPECT_FALSE(n->keeper().placement().is_member(target_id)) << "in the table of " << n->id();
    EXPECT_FALSE(n->keeper().pending().has_value()) << "a table pending on " << n->id();
  }
  if (!crashed) {
    EXPECT_TRUE(cluster.node(target)->keeper().left());
    EXPECT_GT(cluster.node(target)->counters().partitions_dropped, 0u);
  }
}

TEST_F(Replication, AJoinUnderLoadLosesNothing) {
  for_seeds(13900, [&](uint64_t s) { join_under_load(s, /*skew_and_purges=*/false); });
}

TEST_F(Replication, ARemovalUnderLoadLosesNothing) {
  for_seeds(14000, [&](uint64_t s) { removal_under_load(s, /*skew_and_purges=*/false); });
}

// The same under clocks up to 300 ms apart and drifting, 5% loss, more deletes and short
// TTLs, and anti-entropy rounds every second purging tombstones as soon as every home
// replica (a taker included) holds them: a taker's streams and the purge horizons bring
// no deleted or expired key back and lose no write.
TEST_F(Replication, AJoinUnderSkewAndPurgesLosesNothing) {
  for_seeds(14100, [&](uint64_t s) { join_under_load(s, /*skew_and_purges=*/true); });
}

TEST_F(Replication, ARemovalUnderSkewAndPurgesLosesNothing) {
  for_seeds(14200, [&](uint64_t s) { removal_under_load(s, /*skew_and_purges=*/true); });
}

// The hints the running nodes hold, for `owner` (every owner when empty).
uint64_t hints_held(ClusterSim& cluster, const cluster::NodeId& owner = {}) {
  uint64_t held = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    ReplicaNode* n = cluster.node(i);
    if (n == nullptr) continue;
    Result<std::vector<store::HintOwnerSummary>> owners = n->store().hint_owners();
    EXPECT_TRUE(owners.ok()) << owners.status().to_string();
    if (!owners.ok()) continue;
    for (const store::HintOwnerSummary& o : *owners) {
      if (owner.empty() || o.owner == owner) held += o.hints;
    }
  }
  return held;
}

// A node is down for good while clients write at QUORUM: writes of its partitions leave
// hints for it on fallbacks. It is removed; once the removal committed, no node holds a
// hint for it (each went to its partition's home replicas in the new table, which all
// acknowledged it), every acknowledged write is on every home replica of its key in the
// new table, and the history holds. Without re-homing the hints stay for good.
TEST_F(Replication, ARemovedNodesHintsReachItsPartitionsHomes) {
  for_seeds(14500, [&](uint64_t s) {
    using H = HandOverChecks;
    ClusterSim cluster(s, H::options(6, /*skew_and_purges=*/false));
    ASSERT_TRUE(cluster.start_all());
    Workload clients;
    Random& rng = cluster.sim().random();
    const size_t target = rng.uniform(cluster.size());
    const size_t at = (target + 1 + rng.uniform(cluster.size() - 1)) % cluster.size();
    const cluster::NodeId target_id = ClusterSim::id(target);
    cluster.run_clients(seconds(1), clients);
    cluster.crash_for_good(target);
    ASSERT_TRUE(cluster.sim().run_until(
        [&] {
          for (size_t i = 0; i < cluster.size(); ++i) {
            if (i != target && cluster.node(i)->sees_up(target_id)) return false;
          }
          return true;
        },
        seconds(30)));
    const size_t first_op = cluster.history().size();
    cluster.run_clients(seconds(3), clients);
    auto hints_for_target = [&] { return hints_held(cluster, target_id); };
    ASSERT_GT(hints_for_target(), 0u) << "no write went to a fallback";
    ASSERT_TRUE(cluster.remove(target, at).ok());
    std::optional<cluster::Placement> done = H::run_until_committed(
        cluster, clients, seconds(60),
        [&](const cluster::Placement& p) { return !p.is_member(target_id); });
    ASSERT_TRUE(done.has_value()) << "the removal did not commit on every node within 60 s";
    cluster.run_clients(seconds(1), clients);
    ASSERT_TRUE(cluster.sim().run_until([&] { return hints_for_target() == 0; }, seconds(30)))
        << hints_for_target() << " hints for " << target_id << " still held 30 s after";
    // The hints for the other nodes, handed to them (they are all up).
    ASSERT_TRUE(cluster.sim().run_until([&] { return hints_held(cluster) == 0; }, seconds(30)))
        << hints_held(cluster) << " hints still held 30 s after";
    uint64_t rehomed = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      if (cluster.node(i) != nullptr) rehomed += cluster.node(i)->handoff().counters().rehomed;
    }
    EXPECT_GT(rehomed, 0u);
    figure("hints_rehomed", static_cast<double>(rehomed), "hints");
    // Every write acknowledged at QUORUM or ALL is on a quorum of its home replicas in the
    // new table (its version or a newer one), from stores alone: no read repaired them.
    size_t checked = 0;
    for (size_t i = first_op; i < cluster.history().size(); ++i) {
      const HistoryOp& op = cluster.history()[i];
      if (op.type == OpType::kGet || op.outcome != Outcome::kOk) continue;
      if (op.consistency == cluster::Consistency::kOne) continue;
      const std::vector<cluster::NodeId> homes =
          done->home(partition_of(op.key, done->partitions()));
      size_t holding = 0;
      std::string states;
      for (const cluster::NodeId& home : homes) {
        ReplicaNode* n = cluster.node(ClusterSim::index_of(home));
        ASSERT_NE(n, nullptr) << home;
        Result<store::Record> held = n->store().read(op.key, WallTime{0});
        if (held.ok() && held->version >= op.version) ++holding;
        states += " " + home + (held.ok() && held->version >= op.version ? ":held" : ":missing");
      }
      EXPECT_GE(holding, homes.size() / 2 + 1) << op.key << " (" << i << "):" << states;
      ++checked;
    }
    EXPECT_GT(checked, 0u);
    expect_history_holds(cluster, clients);
  });
}

// Two nodes join three at once under the same load: each proposes its own join, the
// higher pending table wins everywhere, and the other joins once it committed. Both end
// in every node's table, and nothing acknowledged is lost. No anti-entropy schedule: a home
// replica that was no stream source of a taker keeps a tombstone the sources purged until
// its own round with the taker, and QUORUM reads of that key must still answer (seed 14336
// answered UNAVAILABLE after healing until the coordinator counted a tombstone's repair
// ignored below the replica's horizon as held).
TEST_F(Replication, TwoJoinsAtOnceUnderLoadLoseNothing) {
  using H = HandOverChecks;
  for_seeds(14300, [&](uint64_t s) {
    ClusterSim cluster(s, H::options(3, /*skew_and_purges=*/false));
    ASSERT_TRUE(cluster.start_all());
    const Workload clients = H::load(false);
    cluster.run_clients(seconds(2), clients);
    const size_t a = cluster.add_node();
    const size_t b = cluster.add_node();
    std::optional<cluster::Placement> done =
        H::run_until_committed(cluster, clients, seconds(90), [&](const cluster::Placement& p) {
          return p.is_member(ClusterSim::id(a)) && p.is_member(ClusterSim::id(b));
        });
    ASSERT_TRUE(done.has_value()) << "the joins did not commit on every node within 90 s"
                                  << H::describe_nodes(cluster);
    EXPECT_EQ(done->members().size(), 5u);
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
    H::expect_replicas_converge(cluster, *done, clients);
  });
}

// A fifth node joins four that hold data under the same load, and once it streams its join
// is cancelled (kvcli remove --abort) at one of the four. In a third of the seeds the
// joining node crashed for good just before (the cancel must not wait for it); in another
// it runs on (its join may commit on some nodes before they see the cancel: the cancel is
// then a hand-over back); in the rest a node it streams from crashes as the cancel is asked
// and comes back. Every node ends on the table before the join, or, when the join had
// committed at the node asked (nothing pending: the cancel is refused), on the join; the
// history checker finds no acknowledged write lost and no QUORUM read older than a write
// completed before it, and the home replicas of every key converge.
TEST_F(Replication, AnAbortedJoinUnderLoadLosesNothing) {
  using H = HandOverChecks;
  for_seeds(14400, [&](uint64_t s) {
    ClusterSim cluster(s, H::options(4, /*skew_and_purges=*/false));
    ASSERT_TRUE(cluster.start_all());
    const Workload clients = H::load(false);
    cluster.run_clients(seconds(2), clients);
    const cluster::Placement before = cluster.placement();
    const size_t joiner = cluster.add_node();
    const cluster::NodeId joiner_id = ClusterSim::id(joiner);
    ASSERT_TRUE(H::run_until_streaming(cluster, joiner, clients, seconds(30)))
        << "the joining node never began streaming" << H::describe_nodes(cluster);
    Random& rng = cluster.sim().random();
    const int fault = static_cast<int>(s % 3);
    if (fault == 0) {
      cluster.crash_for_good(joiner);
    } else {
      cluster.run_clients(Millis(rng.uniform(400)), clients);
    }
    const size_t at = rng.uniform(before.members().size());
    size_t victim = before.members().size();
    if (fault == 2) {
      victim = (at + 1 + rng.uniform(before.members().size() - 1)) % before.members().size();
      cluster.crash(victim);
    }
    const Status asked = cluster.abort_hand_over(at);
    const bool cancelled = asked.ok();
    if (!cancelled) {
      ASSERT_EQ(asked.code(), Code::kFailedPrecondition) << asked.to_string();
      ASSERT_NE(fault, 0) << "a join whose taker crashed mid-stream committed";
    }
    figure("cancelled", cancelled ? 1.0 : 0.0, "");
    if (victim < before.members().size()) {
      cluster.run_clients(Millis(500 + rng.uniform(1500)), clients);
      cluster.restart(victim);
    }
    std::optional<cluster::Placement> done =
        H::run_until_committed(cluster, clients, seconds(60), [&](const cluster::Placement& p) {
          if (!cancelled) return p.is_member(joiner_id);
          return p.same_assignments(before) && p.epoch() == before.epoch() + 2;
        });
    ASSERT_TRUE(done.has_value()) << "the cancel did not commit on every node within 60 s"
                                  << H::describe_nodes(cluster);
    cluster.run_clients(seconds(1), clients);
    expect_history_holds(cluster, clients);
    H::expect_replicas_converge(cluster, *done, clients);
    if (cancelled) {
      EXPECT_EQ(cluster.node(at)->keeper().counters().hand_overs_cancelled, 1u);
      // A joining node whose join was cancelled while it ran stays out.
      if (fault != 0) {
        EXPECT_TRUE(cluster.node(joiner)->keeper().left());
        // What it streamed for the join is dropped. (Writes of a coordinator that still
        // held the cancelled table, a restarted one, may reach it after: not checked.)
        EXPECT_GT(cluster.node(joiner)->counters().partitions_dropped, 0u);
      }
    }
  });
}

// The same seed gives the same run, to the last delivered byte and answered version.
TEST_F(Replication, SameSeedSameRun) {
  auto run = [](uint64_t s) {
    ClusterSim cluster(
        s, ClusterOptions{
               .nodes = 5, .network = lossy(), .max_clock_offset_ms = 200, .max_drift_ppm = 100});
    EXPECT_TRUE(cluster.start_all());
    Workload clients;
    cluster.run_clients(seconds(1), clients);
    cluster.crash(2);
    cluster.run_clients(seconds(1), clients);
    cluster.restart(2);
    cluster.run_clients(seconds(1), clients);
    EXPECT_GT(cluster.count(Outcome::kOk), 50u);
    return cluster.digest();
  };
  uint64_t s = seed(13400);
  uint64_t first = run(s);
  EXPECT_EQ(run(s), first);
  EXPECT_NE(run(s + 1), first);
}

}  // namespace
}  // namespace edgekv::sim
