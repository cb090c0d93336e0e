"""Tombstones purged by horizon, on real edgekvd processes on loopback: three nodes, N = 3,
so every node is a home replica of every partition, and anti-entropy every second.

A tombstone goes from every replica once all three are known to hold it (completed
anti-entropy rounds), within seconds rather than after tombstone-grace-ms. A home replica
that is down holds the purge of its partitions back: it still holds the deleted key's old
value, takes the tombstone when it returns, and only then does the tombstone go. The
deleted key never reads back.
"""

from __future__ import annotations

import edgekv_harness as h
from edgekv_harness import pb
from test_handoff import wait_alive_everywhere
from test_replication import get, put, replicas, states_by_node, wait_dead_everywhere

BASE = ["--gossip-preset", "local", "--request-timeout-ms", "1000", "--partitions", "64",
        "--anti-entropy-interval-ms", "1000", "--ttl-sweep-interval-ms", "100"]


def start(daemons) -> list[h.Daemon]:
    seed = daemons.new("node1", args=BASE).start()
    return [seed] + [daemons.new(f"node{i}", args=[*BASE, "--seeds", seed.gossip_endpoint])
                     .start() for i in (2, 3)]


def delete(client: h.NativeClient, key: bytes, consistency: int) -> "pb.Response":
    req = client.new_request()
    getattr(req, "del").key = key  # `del` is a Python keyword
    req.consistency = consistency
    return client.call(req)


def states(client: h.NativeClient, key: bytes, nodes) -> dict[str, int]:
    rs = states_by_node(replicas(client, key))
    return {n.name: rs[n.name].state for n in nodes}


def stat(view, node, name: str) -> int:
    return view.client(node).stats()[name]


def test_a_tombstone_goes_from_every_replica_once_all_hold_it(daemons):
    nodes = start(daemons)
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
        c = view.client(nodes[0])
        assert put(c, b"gone", b"v", consistency=pb.ALL).code == pb.OK
        assert delete(c, b"gone", pb.ALL).code == pb.OK
        assert set(states(c, b"gone", nodes).values()) == {pb.REPLICA_DELETED}
        h.wait_for(lambda: set(states(c, b"gone", nodes).values()) == {pb.REPLICA_ABSENT}
                   or None, 60, "the tombstone purged from every replica")
        for n in nodes:
            assert stat(view, n, "store_tombstones_purged") >= 1, n.name
            # Purges wait for every member's hint floor report (cluster/hint_floors.h).
            assert stat(view, n, "hint_floor_reports_received") >= 2, n.name
            assert stat(view, n, "purges_held") == 0, n.name
        assert get(c, b"gone", consistency=pb.ALL).code == pb.NOT_FOUND
    finally:
        view.close()


def test_a_replica_that_is_down_holds_the_purge_back_and_takes_the_tombstone(daemons):
    nodes = start(daemons)
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
        up, victim = nodes[:2], nodes[2]
        c = view.client(up[0])
        assert put(c, b"back", b"old", consistency=pb.ALL).code == pb.OK
        victim.kill()
        wait_dead_everywhere(view, up, victim.name)
        assert delete(c, b"back", pb.QUORUM).code == pb.OK

        # node1 compares every partition with node2 (the lower id starts each pair's
        # rounds), every second, three times over; the tombstone stays on both, since node3
        # does not hold it.
        first, second = up
        begun = stat(view, first, "anti_entropy_rounds_in_sync")
        answered = stat(view, second, "anti_entropy_answered")
        h.wait_for(lambda: stat(view, first, "anti_entropy_rounds_in_sync") >= begun + 3 * 64 and
                   stat(view, second, "anti_entropy_answered") >= answered + 3 * 64 or None,
                   60, "three rounds of every partition between node1 and node2")
        held = states(c, b"back", up)
        assert set(held.values()) == {pb.REPLICA_DELETED}, held
        assert all(stat(view, n, "store_tombstones_purged") == 0 for n in up)

        # node3 returns with the old value; anti-entropy gives it the tombstone, and then
        # the tombstone goes from all three. No read runs meanwhile (no read repair).
        victim.start(keep_ports=True)
        wait_alive_everywhere(view, nodes, victim.name)
        h.wait_for(lambda: set(states(c, b"back", nodes).values()) == {pb.REPLICA_ABSENT}
                   or None, 60, "the tombstone taken by node3 and purged from every replica")
        for n in nodes:
            assert get(view.client(n), b"back", consistency=pb.ALL).code == pb.NOT_FOUND, n.name
            assert get(view.client(n), b"back", consistency=pb.ONE).code == pb.NOT_FOUND, n.name
    finally:
        view.close()
