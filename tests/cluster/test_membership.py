"""Cluster membership between real edgekvd processes on loopback, with the local gossip preset.

Five nodes join through one seed and converge; a node killed with SIGKILL is declared dead
everywhere; a node paused (SIGSTOP) for less than the suspicion timeout is suspected but
never declared dead; a node stopped with SIGTERM is seen as left, and rejoins with a higher
incarnation when restarted. A node whose seed is down keeps trying and joins once the seed
appears. Timing bounds are derived from the gossip settings the nodes report (status), with
slack for a loaded machine; the measured times are recorded (see conftest.py `timings`).
"""

from __future__ import annotations

import json
import math
import signal
import time

import pytest

import edgekv_harness as h
from edgekv_harness import describe, kvcli

PRESET = ["--gossip-preset", "local"]
CLUSTER_SIZE = 5


# ---------------------------------------------------------------------------- helpers

class Bounds:
    """Worst-case times derived from the gossip settings one node reports."""

    def __init__(self, settings, members: int):
        self.settings = settings
        self.period = settings.protocol_period_ms / 1000
        self.probe_timeout = settings.probe_timeout_ms / 1000
        # gossip/swim.h: min suspicion = mult * max(1, log10 n) * probe timeout; it starts
        # at max_mult times that and shrinks as other members confirm.
        self.suspicion_min = (settings.suspicion_mult * max(1.0, math.log10(members))
                              * self.probe_timeout)
        self.suspicion_max = self.suspicion_min * settings.suspicion_max_mult
        self.join_retry_max = settings.join_retry_max_ms / 1000
        self.gossip_interval = settings.gossip_interval_ms / 1000
        self.push_pull = settings.push_pull_interval_ms / 1000
        self.leave_timeout = settings.leave_timeout_ms / 1000
        self.members = members

    @property
    def spread(self) -> float:
        """News reaches every member: a few gossip rounds, or at worst a push-pull."""
        rounds = self.settings.retransmit_mult * max(1, math.ceil(math.log10(self.members + 1)))
        return min(rounds * max(self.gossip_interval, self.period), self.push_pull)

    @property
    def join(self) -> float:
        return h.TIMING_SLACK * (self.join_retry_max + self.members * self.period + self.spread)

    @property
    def detection(self) -> float:
        """A crashed member is probed by someone within about a round of periods, fails the
        probe and the indirect probes within a period, is suspected for at most the maximum
        suspicion timeout, and the verdict spreads."""
        return h.TIMING_SLACK * ((self.members + 1) * self.period + self.suspicion_max
                                 + self.spread)

    @property
    def first_suspicion(self) -> float:
        return h.TIMING_SLACK * ((self.members + 1) * self.period + self.probe_timeout)


def bounds_of(daemon: h.Daemon, members: int = CLUSTER_SIZE) -> Bounds:
    with daemon.client() as c:
        resp = c.status()
    assert resp.code == h.pb.OK, resp.message
    assert resp.status.gossip.preset == "local", resp.status.gossip
    return Bounds(resp.status.gossip, members)


def start_cluster(daemons, size: int = CLUSTER_SIZE, extra=()) -> list[h.Daemon]:
    """node1 starts the cluster; the others join through it alone."""
    seed = daemons.new("node1", args=[*PRESET, *extra]).start()
    nodes = [seed]
    for i in range(2, size + 1):
        nodes.append(daemons.new(f"node{i}",
                                 args=[*PRESET, *extra, "--seeds", seed.gossip_endpoint]).start())
    return nodes


def all_see(view: h.ClusterView, observers, want: dict[str, str]):
    """True when every observer's view has each member of `want` in the wanted state."""
    states = view.states(observers)
    for observer in observers:
        seen = states.get(observer.name, {})
        for member, state in want.items():
            if seen.get(member) != state:
                return None
    return states


def wait_converged(view, nodes, bound: float, what: str):
    want = {n.name: "alive" for n in nodes}
    return h.wait_for(lambda: all_see(view, nodes, want), bound, what, interval=0.01)


def stats_of(view: h.ClusterView, daemon: h.Daemon) -> dict[str, int]:
    return view.client(daemon).stats()


@pytest.fixture
def view():
    v = h.ClusterView([])
    yield v
    v.close()


# ---------------------------------------------------------------------------- tests

def test_a_node_without_seeds_is_a_cluster_of_one(daemons):
    node = daemons.start("solo")
    r = kvcli("members", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NODE", "DATACENTER", "STATE"], lines
    assert len(lines) == 2 and lines[1].split()[:4] == ["solo", "*", "dc1", "alive"], lines
    r = kvcli("status", "--json", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    status = json.loads(r.stdout)
    assert status["cluster_name"] == "edgekv"
    assert (status["members_alive"], status["members_known"]) == (1, 1)
    assert status["gossip_endpoint"] == node.gossip_endpoint
    assert status["gossip_preset"] == "lan"
    r = kvcli("status", endpoint=node.client_endpoint)
    assert b"cluster_size     1 alive / 1 known\n" in r.stdout, describe(r)


def test_a_node_whose_only_seed_is_itself_is_a_cluster_of_one(daemons, view):
    port = h.free_port()
    node = daemons.new("self-seeded", args=[*PRESET, "--seeds", h.tcp_endpoint(port)],
                       gossip_port=port).start()
    view.daemons = [node]
    h.wait_for(lambda: view.states([node]) == {node.name: {node.name: "alive"}}, 5,
               "the node to list itself alone, alive")
    with node.client() as c:
        status = c.status().status
    assert (status.members_alive, status.members_known) == (1, 1)
    assert node.stop() == 0
    assert "did not go out" not in node.stderr_text()


def test_five_nodes_join_through_one_seed_and_converge(daemons, view, timings):
    nodes = start_cluster(daemons)
    started = time.monotonic()
    bounds = bounds_of(nodes[0])
    view.daemons = nodes
    wait_converged(view, nodes, bounds.join, "every node to list all five alive")
    timings.record("join convergence, 5 nodes through one seed (from the last READY)",
                   time.monotonic() - started, bounds.join)

    # The same through kvcli, on every node: five members, all alive, one of them itself.
    for node in nodes:
        r = kvcli("members", "--json", endpoint=node.client_endpoint)
        assert r.returncode == h.EXIT_OK, describe(r)
        members = [json.loads(line) for line in r.stdout.splitlines()]
        assert sorted(m["node_id"] for m in members) == [n.name for n in nodes]
        assert all(m["state"] == "alive" for m in members), members
        assert [m["node_id"] for m in members if m["self"]] == [node.name]
        by_id = {m["node_id"]: m for m in members}
        for other in nodes:
            assert by_id[other.name]["gossip_endpoint"] == other.gossip_endpoint
            assert by_id[other.name]["client_endpoint"] == other.client_endpoint
            assert by_id[other.name]["peer_endpoint"] == other.peer_endpoint
            assert by_id[other.name]["datacenter"] == "dc1"
        r = kvcli("status", endpoint=node.client_endpoint)
        assert b"cluster_size     5 alive / 5 known\n" in r.stdout, describe(r)

    for node in nodes:
        stats = stats_of(view, node)
        assert stats["gossip_members_alive"] == 5, stats
        assert stats["gossip_dead_declared"] == 0, (node.name, stats)
        assert stats["gossip_messages_in"] > 0 and stats["gossip_messages_out"] > 0, stats
    # The probes go on: every node keeps probing and getting acks.
    before = {n.name: stats_of(view, n)["gossip_acks"] for n in nodes}
    h.wait_for(lambda: all(stats_of(view, n)["gossip_acks"] > before[n.name] for n in nodes),
               h.TIMING_SLACK * 10 * bounds.period + 5, "every node to get more acks")


def test_a_killed_node_is_declared_dead_everywhere(daemons, view, timings):
    nodes = start_cluster(daemons)
    bounds = bounds_of(nodes[0])
    view.daemons = nodes
    wait_converged(view, nodes, bounds.join, "convergence")
    victim, others = nodes[2], [n for n in nodes if n is not nodes[2]]

    victim.kill()  # SIGKILL: no leave
    killed = time.monotonic()
    want = {victim.name: "dead", **{n.name: "alive" for n in others}}
    h.wait_for(lambda: all_see(view, others, want), bounds.detection,
               f"every other node to declare {victim.name} dead", interval=0.01)
    timings.record("kill -9 -> dead on all 4 others", time.monotonic() - killed,
                   bounds.detection)
    declared = sum(stats_of(view, n)["gossip_dead_declared"] for n in others)
    assert declared >= 1, "nobody counted the death it declared"
    for n in others:
        assert stats_of(view, n)["gossip_members_dead"] == 1
    assert any(f"member {victim.name} declared dead" in n.stderr_text() for n in others)


def test_a_paused_node_is_suspected_but_never_declared_dead(daemons, view, timings):
    nodes = start_cluster(daemons)
    bounds = bounds_of(nodes[0])
    view.daemons = nodes
    wait_converged(view, nodes, bounds.join, "convergence")
    victim, others = nodes[3], [n for n in nodes if n is not nodes[3]]
    seen_states: dict[str, set[str]] = {n.name: set() for n in others}

    def victim_state_somewhere(state: str):
        found = False
        for observer, states in view.states(others).items():
            seen_states[observer].add(states.get(victim.name, "missing"))
            found = found or states.get(victim.name) == state
        return found

    stopped = time.monotonic()
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        # Stay stopped until the failure detector has noticed, and no longer: a silent node
        # is safe for the time it takes to be suspected plus the suspicion timeout, and the
        # pause ends at the start of that timeout.
        h.wait_for(lambda: victim_state_somewhere("suspect"), bounds.first_suspicion,
                   f"some node to suspect the paused {victim.name}", interval=0.005)
        suspected = time.monotonic()
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    paused = resumed - stopped
    timings.record("SIGSTOP -> first suspicion seen -> SIGCONT (pause length)", paused,
                   bounds.first_suspicion + bounds.suspicion_min)
    # The pause ended well inside the suspicion timeout that began when it was noticed:
    # the scenario is the one intended, not a test of how fast this loop reacts.
    assert resumed - suspected < bounds.suspicion_min / 2, (
        f"SIGCONT came {resumed - suspected:.3f} s after the suspicion was seen; the minimum "
        f"suspicion timeout is {bounds.suspicion_min:.3f} s")

    want = {n.name: "alive" for n in nodes}
    h.wait_for(lambda: not victim_state_somewhere("dead") and all_see(view, nodes, want),
               h.TIMING_SLACK * bounds.suspicion_max + 5,
               f"every node to see {victim.name} alive again", interval=0.005)
    timings.record("SIGCONT -> alive again everywhere", time.monotonic() - resumed,
                   h.TIMING_SLACK * bounds.suspicion_max + 5)
    # Nobody ever saw it dead, and nobody declared anyone dead.
    assert all("dead" not in states for states in seen_states.values()), seen_states
    for n in nodes:
        stats = stats_of(view, n)
        assert stats["gossip_dead_declared"] == 0, (n.name, stats)
        assert f"member {victim.name} declared dead" not in n.stderr_text()
    assert stats_of(view, victim)["gossip_refutations"] >= 1
    suspicions = sum(stats_of(view, n)["gossip_suspicions"] for n in others)
    assert suspicions >= 1
    # Those who suspected it saw the refutation: a false alarm, counted.
    h.wait_for(lambda: sum(stats_of(view, n)["gossip_false_alarms"] for n in others) >= 1,
               bounds.join, "a false alarm to be counted")


def test_a_stopped_node_is_seen_as_left_and_rejoins_higher_when_restarted(daemons, view,
                                                                           timings):
    nodes = start_cluster(daemons)
    bounds = bounds_of(nodes[0])
    view.daemons = nodes
    wait_converged(view, nodes, bounds.join, "convergence")
    victim, others = nodes[1], [n for n in nodes if n is not nodes[1]]
    before = {observer: view_[victim.name].incarnation
              for observer, view_ in view.views(others).items()}

    stopping = time.monotonic()
    assert victim.stop(signal.SIGTERM) == 0, victim.stderr_text()
    left_bound = 2.0 * (2.0 if h.SANITIZED else 1.0)
    want = {victim.name: "left", **{n.name: "alive" for n in others}}
    h.wait_for(lambda: all_see(view, others, want), left_bound,
               f"every other node to show {victim.name} as left", interval=0.005)
    timings.record("SIGTERM -> left on all 4 others", time.monotonic() - stopping, left_bound)
    assert "gossip: the leave announcement did not go out" not in victim.stderr_text()
    for n in others:
        assert stats_of(view, n)["gossip_dead_declared"] == 0

    restarting = time.monotonic()
    victim.start(keep_ports=True)
    want = {n.name: "alive" for n in nodes}
    h.wait_for(lambda: all_see(view, nodes, want), bounds.join,
               f"every node to see the restarted {victim.name} alive", interval=0.01)
    timings.record("restart -> alive everywhere, higher incarnation",
                   time.monotonic() - restarting, bounds.join)
    for observer, view_ in view.views(others).items():
        assert view_[victim.name].incarnation > before[observer], (observer, before)
    with victim.client() as c:
        assert c.status().status.incarnation > max(before.values())


def test_a_node_whose_seed_is_down_joins_once_the_seed_appears(daemons, view, timings):
    with h.DeadEndpoint() as seed_endpoint:
        seed_port = int(seed_endpoint.rsplit(":", 1)[1])
        joiner = daemons.new("joiner", args=[*PRESET, "--seeds", seed_endpoint]).start()
        view.daemons = [joiner]
        bounds = bounds_of(joiner, members=2)
        # Ready at once, alone, and trying: join attempts keep going out.
        with joiner.client() as c:
            status = c.status().status
            assert (status.members_alive, status.members_known) == (1, 1)
        h.wait_for(lambda: stats_of(view, joiner)["gossip_messages_out"] >= 3,
                   bounds.join, "three join attempts")
    seed = daemons.new("seed", args=PRESET, gossip_port=seed_port).start()
    appeared = time.monotonic()
    view.daemons = [joiner, seed]
    wait_converged(view, [joiner, seed], bounds.join, "the joiner and the late seed to meet")
    timings.record("seed appears -> joined", time.monotonic() - appeared, bounds.join)


def test_clusters_with_different_names_do_not_merge(daemons, view):
    a = daemons.new("a", args=[*PRESET, "--cluster-name", "blue"]).start()
    b = daemons.new("b", args=[*PRESET, "--cluster-name", "green",
                               "--seeds", a.gossip_endpoint]).start()
    view.daemons = [a, b]
    bounds = bounds_of(a, members=2)
    # b's joins reach a, which drops them as another cluster's.
    h.wait_for(lambda: stats_of(view, a)["gossip_messages_dropped"] >= 2, bounds.join,
               "a to drop b's joins")
    assert set(view.states([a])["a"]) == {"a"}
    assert set(view.states([b])["b"]) == {"b"}


@pytest.mark.parametrize("args, names", [
    (["--gossip-preset", "fast"], ["--gossip-preset", "'fast'", "lan, local, wan"]),
    (["--seeds", "127.0.0.1:7402"], ["--seeds", "not an endpoint"]),
    (["--seeds", "tcp://127.0.0.1:1,,tcp://127.0.0.1:2"], ["--seeds", "empty entry"]),
    (["--gossip-protocol-period-ms", "-5"], ["--gossip-protocol-period-ms", "0..600000"]),
    (["--gossip-suspicion-mult", "many"], ["--gossip-suspicion-mult", "not an integer"]),
    (["--datacenter", "dc 1"], ["--datacenter", "letters, digits"]),
    (["--cluster-name", "a/b"], ["--cluster-name", "'/'"]),
    (["--gossip-preset", "local", "--gossip-probe-timeout-ms", "900"],
     ["gossip-probe-timeout-ms", "gossip-protocol-period-ms"]),
])
def test_bad_gossip_options_are_rejected_naming_the_option(daemons, args, names):
    node = daemons.new("bad", args=args)
    rc, stderr = node.run_to_exit()
    assert rc == 1, f"exit status {rc}, stderr:\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("edgekvd: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not node.data_dir.exists()


def test_a_wildcard_gossip_endpoint_is_rejected(tmp_path):
    # Run directly: the harness passes a loopback --gossip-endpoint of its own.
    config = tmp_path / "empty.conf"
    config.write_text("")
    r = h.subprocess.run(
        [h.EDGEKVD, "--config", str(config), "--node-id", "w", "--data-dir", str(tmp_path / "d"),
         "--gossip-endpoint", "tcp://0.0.0.0:7402"],
        stdout=h.subprocess.PIPE, stderr=h.subprocess.PIPE, timeout=h.START_TIMEOUT)
    assert r.returncode == 1, describe(r)
    assert r.stderr.count(b"\n") == 1, describe(r)
    assert b"--gossip-endpoint" in r.stderr and b"wildcard" in r.stderr, describe(r)
    assert not (tmp_path / "d").exists()


def test_a_gossip_endpoint_in_use_fails_naming_it(daemons):
    with h.socket.socket(h.socket.AF_INET, h.socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = daemons.new("busy", gossip_port=port)
        rc, stderr = node.run_to_exit()
    assert rc == 1, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "gossip-endpoint" in lines[0] and str(port) in lines[0], lines[0]
    assert not node.data_dir.exists(), "a node that cannot bind must not create its data dir"


def test_nodes_with_different_partition_counts_refuse_each_other(daemons, view):
    a = daemons.new("a", args=[*PRESET, "--partitions", "64"]).start()
    b = daemons.new("b", args=[*PRESET, "--partitions", "128",
                               "--seeds", a.gossip_endpoint]).start()
    view.daemons = [a, b]
    bounds = bounds_of(a, members=2)
    # b's joins reach a, which drops them and answers with its own count; b drops that.
    h.wait_for(lambda: (stats_of(view, a)["gossip_dropped_partitions"] >= 1
                        and stats_of(view, b)["gossip_dropped_partitions"] >= 1),
               bounds.join, "a and b to drop each other's messages")
    assert set(view.states([a])["a"]) == {"a"}
    assert set(view.states([b])["b"]) == {"b"}
    # Each logs one line naming the other node and both counts.
    h.wait_for(lambda: "refusing node b" in a.stderr_text(), bounds.join, "a's log line")
    h.wait_for(lambda: "refusing node a" in b.stderr_text(), bounds.join, "b's log line")
    line_a = next(s for s in a.stderr_text().splitlines() if "refusing node b" in s)
    assert "it has 128 partitions, this node 64" in line_a, line_a
    line_b = next(s for s in b.stderr_text().splitlines() if "refusing node a" in s)
    assert "it has 64 partitions, this node 128" in line_b, line_b
