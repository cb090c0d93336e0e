// Replication under simulation: whole nodes (gossip, coordinator, replica side, in-memory
// store) with concurrent clients, under loss, delay, crashes, restarts, partitions and
// skewed clocks; every run's history goes through the checker (tests/sim/history.h).
//
// A handful of seeds per scenario in the normal run; EDGEKV_SIM_SWEEP=1 (make sim) runs
// EDGEKV_SIM_SWEEP_SEEDS of them (default 1000); EDGEKV_SIM_SEED replays one, and
// EDGEKV_SIM_SHOW_SLOPPY=1 prints the sloppy writes a run lost after healing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
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
    for (size_t i = 0; i < cluster.size(); ++i) expired += cluster.node(i)->counters().expired;
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

// Tombstones are purged as soon as every home replica holds them (anti-entropy rounds
// every second, a 200 ms clock margin), while writes, deletes and TTLs go on over a lossy
// network, nodes crash and come back, and a minority is cut off: no deleted or expired key
// comes back, through a late hint, a returning replica or a repair, and every
// acknowledged write survives (the history checker). Tombstones are purged in the run.
TEST_F(Replication, TombstonesPurgedByHorizonBringNoKeyBack) {
  for_seeds(13700, [&](uint64_t s) {
    cluster::AntiEntropyOptions ae;
    ae.interval = seconds(1);
    ae.retry_after = Millis(500);
    ae.request_timeout = Millis(500);
    ae.horizon_margin = Millis(200);
    ae.horizon_refresh = Millis(500);
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
