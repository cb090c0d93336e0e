"""Anti-entropy between real edgekvd processes on loopback: five nodes, N = 3.

A home replica is down (kill -9) for longer than the hint window, so the QUORUM writes made
meanwhile leave it no hint: the fallbacks refuse them as hints and mark their partitions.
When it comes back, no hint and no read brings it up to date; anti-entropy rounds between
the home replicas do, and every key then reads back on it at the version written.
"""

from __future__ import annotations

import edgekv_harness as h
from edgekv_harness import pb
from test_handoff import refuse_past_window, wait_alive_everywhere
from test_replication import by_name, put, replicas, states_by_node

ARGS = ["--gossip-preset", "local", "--request-timeout-ms", "1000", "--partitions", "64",
        "--hint-window-ms", "1000", "--anti-entropy-interval-ms", "0"]
KEYS = 60


def test_a_replica_no_hint_reached_is_brought_up_to_date_by_anti_entropy(daemons):
    seed = daemons.new("node1", args=ARGS).start()
    nodes = [seed] + [daemons.new(f"node{i}", args=[*ARGS, "--seeds", seed.gossip_endpoint])
                      .start() for i in range(2, 6)]
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        others = refuse_past_window(view, nodes, table, victim)
        coordinator = view.client(nodes[0])

        def refused_as_hints():
            return sum(view.client(n).stats()["hints_past_window"] for n in others)
        before = refused_as_hints()
        written = {}
        for i in range(100000):
            if len(written) == KEYS:
                break
            key = b"ae-%d" % i
            if victim.name not in list(table.table[replicas(coordinator, key).partition].home):
                continue
            resp = put(coordinator, key, b"missed-" + key, consistency=pb.QUORUM)
            assert resp.code == pb.OK, (key, resp.message)
            written[key] = resp.put.version
        # No fallback kept one of them as a hint for the victim.
        assert refused_as_hints() - before >= KEYS, (before, refused_as_hints())

        victim.start(keep_ports=True)
        wait_alive_everywhere(view, nodes, victim.name)

        def missing():
            late = []
            for key, version in written.items():
                state = states_by_node(replicas(coordinator, key))[victim.name]
                if state.state != pb.REPLICA_LIVE or \
                        (state.version.hlc, state.version.origin) < (version.hlc, version.origin):
                    late.append(key)
            return late

        h.wait_for(lambda: not missing() or None, 60,
                   f"anti-entropy to bring {victim.name} up to date")
        stats = [view.client(n).stats() for n in nodes]
        moved = sum(s["anti_entropy_pulled"] + s["anti_entropy_pushed"] for s in stats)
        assert moved >= KEYS, moved
        assert sum(s["anti_entropy_rounds_in_sync"] for s in stats) > 0
    finally:
        view.close()
