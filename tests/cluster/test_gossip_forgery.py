"""Made-up gossip from an unauthenticated sender, against real edgekvd processes.

Three nodes on loopback (local gossip preset). tests/cluster/gossip_forge (built with the
daemon's own gossip codec and transport) plays a sender that is no member: it claims that a
live member is dead at incarnation 2^64-1, which every node ignores and counts
(gossip_claims_rejected), so the member stays alive everywhere at its own incarnation; and
it announces 3000 made-up members, of which a node keeps at most gossip-max-members, with
peer sockets opened at a bounded rate, joins logged by name only up to a budget, and the
node answering clients throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import edgekv_harness as h
from edgekv_harness import describe, kvcli
from test_membership import bounds_of, start_cluster, stats_of, wait_converged

# daemon/gossip_transport.h: new peer sockets per second after a burst.
PEERS_OPEN_PER_S = 64
PEERS_OPEN_BURST = 256
# daemon/server.cc: joins logged by name per 10 s window.
JOIN_LOGS_PER_WINDOW = 20
JOIN_LOG_WINDOW_S = 10
MAX_MEMBERS = 1024  # gossip-max-members' default
FORGED_MEMBERS = 3000


def forge_binary() -> str:
    path = os.environ.get("GOSSIP_FORGE")
    if not path:
        path = str(Path(os.environ["EDGEKV_BUILD_DIR"]) / "tests" / "cluster" / "gossip_forge")
    if not Path(path).is_file():
        pytest.fail(f"gossip_forge not found at {path}: build the gossip_forge target")
    return path


def forge(target: h.Daemon, *args: str) -> None:
    cmd = [forge_binary(), "--to", target.gossip_endpoint, "--to-id", target.name, *args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, describe(r)


def stats_read(view: h.ClusterView, nodes, node: h.Daemon) -> dict[str, int]:
    """The node's stats, after reading every node's service notifications as systemd would:
    sd_notify blocks a daemon whose notification socket is full, and the membership
    churn of a flood makes several."""
    for n in nodes:
        n.notify.drain()
    return stats_of(view, node)


def members_json(node: h.Daemon) -> dict[str, dict]:
    r = kvcli("members", "--json", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    return {m["node_id"]: m for m in (json.loads(line) for line in r.stdout.splitlines())}


@pytest.fixture
def view():
    v = h.ClusterView([])
    yield v
    v.close()


def test_a_forged_dead_claim_at_the_top_incarnation_leaves_the_member_alive(daemons, view):
    nodes = start_cluster(daemons, 3)
    bounds = bounds_of(nodes[0], 3)
    wait_converged(view, nodes, bounds.join, "3 nodes converged")
    seed, victim = nodes[0], nodes[1]
    incarnation = members_json(victim)[victim.name]["incarnation"]
    assert all(members_json(n)[victim.name]["incarnation"] == incarnation for n in nodes)

    # To a bystander (which would spread it) and to the victim (which would refute it).
    repeats = 20
    for target in (seed, victim):
        forge(target, "--repeat", str(repeats), "--interval-ms", "20",
              "dead", victim.name, str(2**64 - 1))
    # Each message holds a dead and a suspect claim: wait until all of them were ignored
    # (counted), or until one took effect somewhere.
    def settled():
        for n in nodes:
            m = view.client(n).members()[victim.name]
            if h.state_name(m) != "alive" or m.incarnation != incarnation:
                return True
        return all(stats_read(view, nodes, n).get("gossip_claims_rejected", 0) >= 2 * repeats
                   for n in (seed, victim))
    h.wait_for(settled, h.TIMING_SLACK * 5, "the forged claims handled")

    for observer in nodes:
        member = members_json(observer)[victim.name]
        assert member["state"] == "alive", (observer.name, member)
        assert member["incarnation"] == incarnation, (observer.name, member)
    assert stats_read(view, nodes, victim)["gossip_refutations"] == 0
    assert stats_read(view, nodes, victim)["gossip_incarnation"] == incarnation
    # Nothing was passed on to the third node.
    assert stats_read(view, nodes, nodes[2])["gossip_claims_rejected"] == 0


def test_a_flood_of_forged_members_stays_bounded_and_the_node_responsive(daemons, view):
    nodes = start_cluster(daemons, 3)
    started = time.monotonic()
    bounds = bounds_of(nodes[0], 3)
    wait_converged(view, nodes, bounds.join, "3 nodes converged")
    target = nodes[0]

    forge(target, "members", str(FORGED_MEMBERS))
    # The view fills up to the bound; every announcement beyond it is refused and counted.
    # (Without a bound the view takes in every one.)
    h.wait_for(lambda: stats_read(view, nodes, target).get("gossip_members_refused", 0)
               >= FORGED_MEMBERS - (MAX_MEMBERS - len(nodes))
               or stats_read(view, nodes, target)["gossip_members_known"] > MAX_MEMBERS,
               h.TIMING_SLACK * 10, "the forged members handled")
    stats = stats_read(view, nodes, target)
    assert stats["gossip_members_known"] == MAX_MEMBERS, stats
    assert len(members_json(target)) == MAX_MEMBERS

    # The node keeps answering clients while it gossips with (and fails to reach) them.
    r = kvcli("put", "after-flood", "yes", endpoint=target.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "after-flood", endpoint=target.client_endpoint)
    assert r.returncode == h.EXIT_OK and r.stdout.strip() == b"yes", describe(r)

    # Whoever heard of them from the target holds at most the bound too.
    for node in nodes:
        s = stats_read(view, nodes, node)
        assert s["gossip_members_known"] <= MAX_MEMBERS, (node.name, s)
        assert s["gossip_peer_sockets"] <= MAX_MEMBERS, (node.name, s)
        elapsed = time.monotonic() - started
        assert s["gossip_peer_sockets_opened"] <= PEERS_OPEN_BURST + PEERS_OPEN_PER_S * elapsed, (
            node.name, s)

    # Joins beyond the budget are summed up, not logged one by one.
    h.wait_for(lambda: "more members joined (not logged by name)" in target.stderr_text(),
               h.TIMING_SLACK * 2 * JOIN_LOG_WINDOW_S, "the summary of joins not logged")
    elapsed = time.monotonic() - started
    named = target.stderr_text().count("joined (datacenter dc-forged")
    assert named <= JOIN_LOGS_PER_WINDOW * (elapsed / JOIN_LOG_WINDOW_S + 1), named
    assert stats_read(view, nodes, target)["gossip_joins_not_logged"] > 0

    # The real members are still alive in every view.
    for observer in nodes:
        view_of = members_json(observer)
        for member in nodes:
            assert view_of[member.name]["state"] == "alive", (observer.name, member.name)
