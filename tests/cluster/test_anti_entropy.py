"""Anti-entropy between real edgekvd processes on loopback: five nodes, N = 3.

A home replica is down (kill -9) for longer than the hint window, so the QUORUM writes made
meanwhile leave it no hint: the fallbacks refuse them as hints and mark their partitions.
When it comes back, no hint and no read brings it up to date; anti-entropy rounds between
the home replicas do, on their schedule, or at once with `kvcli repair`.
"""

from __future__ import annotations

import json

import edgekv_harness as h
from edgekv_harness import pb
from test_handoff import refuse_past_window, wait_alive_everywhere
from test_kvcli_hints import hints_json, hints_text
from test_replication import by_name, put, replicas, states_by_node

BASE = ["--gossip-preset", "local", "--request-timeout-ms", "1000", "--partitions", "64",
        "--hint-window-ms", "1000"]
KEYS = 60


def start(daemons, interval_ms: int) -> list[h.Daemon]:
    args = [*BASE, "--anti-entropy-interval-ms", str(interval_ms)]
    seed = daemons.new("node1", args=args).start()
    return [seed] + [daemons.new(f"node{i}", args=[*args, "--seeds", seed.gossip_endpoint])
                     .start() for i in range(2, 6)]


def write_while_down(view, nodes, table, victim, prefix: bytes
                     ) -> tuple[dict[bytes, "pb.Version"], list[h.Daemon]]:
    """Kills `victim` and writes KEYS keys it is a home replica of once the fallbacks
    refuse hints for it; returns the keys with their versions, and the other nodes."""
    others = refuse_past_window(view, nodes, table, victim)
    coordinator = view.client(nodes[0])

    def refused_as_hints():
        return sum(view.client(n).stats()["hints_past_window"] for n in others)
    before = refused_as_hints()
    written = {}
    for i in range(100000):
        if len(written) == KEYS:
            break
        key = prefix + b"%d" % i
        if victim.name not in list(table.table[replicas(coordinator, key).partition].home):
            continue
        resp = put(coordinator, key, b"missed-" + key, consistency=pb.QUORUM)
        assert resp.code == pb.OK, (key, resp.message)
        written[key] = resp.put.version
    # No fallback kept one of them as a hint for the victim. A QUORUM write is answered once
    # two home replicas took it, maybe before its fallback refused the hint: wait for those.
    h.wait_for(lambda: refused_as_hints() - before >= KEYS or None, 10,
               f"{KEYS} hints refused past the window (before: {before})")
    return written, others


def miss_writes(view, nodes, table, victim) -> dict[bytes, "pb.Version"]:
    """write_while_down(), then restarts `victim`; returns the keys and their versions."""
    written, _ = write_while_down(view, nodes, table, victim, b"ae-")
    victim.start(keep_ports=True)
    wait_alive_everywhere(view, nodes, victim.name)
    return written


def missing_on(view, coordinator, victim, written) -> list[bytes]:
    late = []
    for key, version in written.items():
        state = states_by_node(replicas(coordinator, key))[victim.name]
        if state.state != pb.REPLICA_LIVE or \
                (state.version.hlc, state.version.origin) < (version.hlc, version.origin):
            late.append(key)
    return late


def test_a_replica_no_hint_reached_is_brought_up_to_date_by_anti_entropy(daemons):
    nodes = start(daemons, 2000)
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        written = miss_writes(view, nodes, table, victim)
        coordinator = view.client(nodes[0])
        h.wait_for(lambda: not missing_on(view, coordinator, victim, written) or None, 60,
                   f"anti-entropy to bring {victim.name} up to date")
        stats = [view.client(n).stats() for n in nodes]
        moved = sum(s["anti_entropy_pulled"] + s["anti_entropy_pushed"] for s in stats)
        assert moved >= KEYS, moved
        assert sum(s["anti_entropy_rounds_in_sync"] for s in stats) > 0
    finally:
        view.close()


def test_kvcli_repair_fixes_a_partition_at_once_and_reports_it(daemons):
    # No schedule: only kvcli repair compares replicas.
    nodes = start(daemons, 0)
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        written = miss_writes(view, nodes, table, victim)
        coordinator = view.client(nodes[0])
        late = missing_on(view, coordinator, victim, written)
        assert len(late) == KEYS, "something other than a repair reached the victim"

        key = late[0]
        partition = replicas(coordinator, key).partition
        in_partition = {k for k in written if replicas(coordinator, k).partition == partition}
        ran = h.kvcli("--json", "repair", str(partition), endpoint=victim.client_endpoint)
        assert ran.returncode == 0, h.describe(ran)
        rounds = json.loads(ran.stdout)["rounds"]
        others = sorted(n for n in table.table[partition].home if n != victim.name)
        assert sorted(r["node_id"] for r in rounds) == others, rounds
        assert all(r["partition"] == partition and r["error"] == "" for r in rounds), rounds
        assert sum(r["pulled"] for r in rounds) >= len(in_partition), rounds
        assert not set(missing_on(view, coordinator, victim, written)) & in_partition

        # Every partition of the node: the rest is fixed, then all is in sync.
        ran = h.kvcli("repair", endpoint=victim.client_endpoint)
        assert ran.returncode == 0, h.describe(ran)
        assert missing_on(view, coordinator, victim, written) == []
        ran = h.kvcli("repair", endpoint=victim.client_endpoint)
        assert ran.returncode == 0, h.describe(ran)
        summary = ran.stdout.decode().splitlines()[-1]
        assert " 0 repaired, 0 failed; 0 keys pulled, 0 pushed" in summary, summary

        # A partition the node does not hold is refused, naming it.
        foreign = next(p for p, row in enumerate(table.table) if victim.name not in row.home)
        ran = h.kvcli("repair", str(foreign), endpoint=victim.client_endpoint)
        assert ran.returncode != 0 and ran.stdout == b"", h.describe(ran)
        assert f"not a home replica of partition {foreign}".encode() in ran.stderr, \
            h.describe(ran)
    finally:
        view.close()


def test_a_fallbacks_repair_marks_are_cleared_by_asking_the_owner(daemons):
    # A fallback is no home replica of the partitions it marks, so no round of its own
    # clears them: it asks the owner, once back, to repair each with the other home
    # replicas. The schedule is a day long (its first rounds still start at once for a few
    # pairs); whatever else runs, only an answered ask takes a fallback's mark away.
    nodes = start(daemons, 86400000)
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        written, others = write_while_down(view, nodes, table, victim, b"ask-")
        coordinator = view.client(nodes[0])

        # `kvcli hints` on each fallback shows its marks for the victim.
        marked = {}
        for n in others:
            marks = hints_json(n)["marks"]
            assert all(m["node_id"] == victim.name for m in marks), marks
            if marks:
                marked[n.name] = {m["partition"] for m in marks}
                for p in marked[n.name]:
                    assert n.name not in list(table.table[p].home), (n.name, p)
                assert "repair marks:" in hints_text(n)
        assert marked, "no fallback holds a mark"
        holders = [n for n in others if n.name in marked]
        partitions = {replicas(coordinator, k).partition for k in written}
        assert partitions <= set().union(*marked.values()), (partitions, marked)
        assert len(missing_on(view, coordinator, victim, written)) == KEYS

        victim.start(keep_ports=True)
        wait_alive_everywhere(view, nodes, victim.name)
        h.wait_for(lambda: all(hints_json(n)["marks"] == [] for n in holders) or None, 60,
                   "every fallback's marks for the returned node cleared", interval=0.1)
        for n in holders:
            assert hints_text(n)[-1] == "no repair marks"
            stats = view.client(n).stats()
            assert stats["repair_marks"] == 0, stats
            assert stats["repair_asks_cleared"] >= len(marked[n.name]), stats
            assert stats["repair_asks_sent"] >= stats["repair_asks_cleared"], stats
        # The owner holds every key its home replicas held, read from its own store.
        assert missing_on(view, coordinator, victim, written) == []
        assert view.client(victim).stats()["anti_entropy_pulled"] >= KEYS
    finally:
        view.close()
