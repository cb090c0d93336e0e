"""Hinted handoff between real edgekvd processes on loopback: five nodes, N = 3.

While a home replica is down (kill -9), QUORUM writes for its partitions go to fallbacks,
which keep them as hints. When it comes back, the fallbacks hand the hints to it and remove
each one it acknowledged, without any read having repaired it; hints survive a kill -9 of
the fallbacks that hold them. When the down replica is removed instead, its hints go to
the current home replicas of their partitions once the removal committed. With a hint window shorter than the outage, a fallback keeps
no hint: the write is refused as a hint and its partition is marked for repair, durably.
"""

from __future__ import annotations

import json

import edgekv_harness as h
from edgekv_harness import pb
from test_replication import (by_name, cluster, home_of, put, replicas,  # noqa: F401
                              start_cluster, states_by_node, wait_dead_everywhere)

KEYS = 200


def wait_alive_everywhere(view, nodes, member: str, timeout: float = 30.0):
    def seen():
        states = view.states(nodes)
        return all(states.get(o.name, {}).get(member) == "alive" for o in nodes) or None
    h.wait_for(seen, timeout, f"{member} alive in every view", interval=0.05)


def hints_held(view, nodes) -> int:
    return sum(view.client(n).stats()["store_hints"] for n in nodes if n.running())


def write_keys(client, prefix: bytes, count: int) -> dict[bytes, "pb.Version"]:
    versions = {}
    for i in range(count):
        key = prefix + b"%d" % i
        resp = put(client, key, b"value-%d" % i, consistency=pb.QUORUM)
        assert resp.code == pb.OK, (key, resp.message)
        versions[key] = resp.put.version
    return versions


def test_a_returning_replica_gets_the_hints_written_while_it_was_down(cluster):
    nodes, view, table = cluster
    victim = by_name(nodes, "node3")
    others = [n for n in nodes if n is not victim]
    victim.kill()
    wait_dead_everywhere(view, others, victim.name)
    versions = write_keys(view.client(nodes[0]), b"handoff-", KEYS)

    # The keys the victim is a home replica of went to fallbacks as hints.
    coordinator = view.client(nodes[0])
    mine = {}
    for key, version in versions.items():
        rs = replicas(coordinator, key)
        if victim.name in list(table.table[rs.partition].home):
            hinted = [r for r in rs.replicas if not r.home and r.hinted]
            assert hinted and hinted[0].version.hlc == version.hlc, rs
            mine[key] = version
    assert len(mine) > KEYS // 10, len(mine)
    assert hints_held(view, others) >= len(mine)

    # Hints are durable: the fallbacks holding them crash and come back first.
    holders = [n for n in others if view.client(n).stats()["store_hints"] > 0]
    for n in holders:
        if n is nodes[0]:
            continue  # the view's coordinator; the others cover the restart
        n.kill()
        n.start(keep_ports=True)
    wait_agreed_without(view, others)
    assert hints_held(view, others) >= len(mine)

    victim.start(keep_ports=True)
    wait_alive_everywhere(view, nodes, victim.name)
    h.wait_for(lambda: hints_held(view, others) == 0 or None, 60, "every hint delivered")
    delivered = sum(view.client(n).stats()["handoff_delivered"] for n in others)
    assert delivered >= len(mine)

    # The victim holds every write, though no read repaired it.
    for key, version in mine.items():
        state = states_by_node(replicas(coordinator, key))[victim.name]
        assert state.state == pb.REPLICA_LIVE, (key, state)
        assert (state.version.hlc, state.version.origin) >= (version.hlc, version.origin), key


def wait_agreed_without(view, nodes):
    names = {n.name for n in nodes}

    def all_alive():
        states = view.states(nodes)
        return all(states.get(o.name, {}).get(m) == "alive" for o in nodes for m in names) or None
    h.wait_for(all_alive, 30, "restarted fallbacks alive in every view", interval=0.05)


def test_past_the_hint_window_a_partition_is_marked_for_repair_not_dropped(daemons):
    nodes = start_cluster(daemons, extra=["--hint-window-ms", "1000"])
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        others = refuse_past_window(view, nodes, table, victim)
        marked = {n.name: view.client(n).stats()["repair_marks"] for n in others}
        assert sum(marked.values()) > 0, marked
        holder = next(n for n in others if marked[n.name] > 0)
        # The mark is durable: it is in the data directory and survives a kill -9.
        marks_file = holder.data_dir / "repair-marks"
        text = marks_file.read_text()
        assert text.startswith("edgekv-repair-marks 1\n"), text
        assert victim.name.encode().hex() in text, text
        holder.kill()
        holder.start(keep_ports=True)
        assert view.client(holder).stats()["repair_marks"] == marked[holder.name]
    finally:
        view.close()


def refuse_past_window(view, nodes, table, victim) -> list:
    """Kills `victim` and writes keys it is a home replica of until a fallback refuses one
    as a hint past the window (the nodes run with a short --hint-window-ms); returns the
    other nodes."""
    others = [n for n in nodes if n is not victim]
    victim.kill()
    wait_dead_everywhere(view, others, victim.name)
    # Once a fallback's gossip has seen it down longer than the window, a write for it is
    # refused as a hint (answered by its two other home replicas) and marked.
    coordinator = view.client(nodes[0])
    keys = iter(keys_homed_at(coordinator, table, victim.name))

    def refused():
        resp = put(coordinator, next(keys), b"late", consistency=pb.QUORUM)
        assert resp.code == pb.OK, resp.message
        return sum(view.client(n).stats()["hints_past_window"] for n in others) or None
    h.wait_for(refused, 30, "a write past the hint window refused as a hint", interval=0.1)
    return others


def keys_homed_at(coordinator, table, victim: str):
    for i in range(100000):
        key = b"window-%d" % i
        if victim in list(table.table[replicas(coordinator, key).partition].home):
            yield key


def hints_for(nodes, owner: str) -> int:
    """The hints every node of `nodes` holds for `owner`, as `kvcli hints --json` shows."""
    held = 0
    for n in nodes:
        ran = h.kvcli("hints", "--json", endpoint=n.client_endpoint)
        assert ran.returncode == 0, h.describe(ran)
        for t in json.loads(ran.stdout.decode())["targets"]:
            if t["node_id"] == owner:
                held += t["hints"]
    return held


def test_hints_for_a_removed_node_go_to_its_partitions_home_replicas(cluster):
    nodes, view, table = cluster
    victim = by_name(nodes, "node4")
    others = [n for n in nodes if n is not victim]
    victim.kill()
    wait_dead_everywhere(view, others, victim.name)
    entry = by_name(nodes, "node1")
    coordinator = view.client(entry)
    versions = write_keys(coordinator, b"rehome-", KEYS)
    mine = [k for k in versions if victim.name in home_of(table, k, coordinator)]
    assert len(mine) > KEYS // 10, len(mine)
    assert hints_for(others, victim.name) >= len(mine)

    removed = h.kvcli("remove", victim.name, endpoint=entry.client_endpoint)
    assert removed.returncode == 0, h.describe(removed)

    def committed():
        for n in others:
            ran = h.kvcli("ring", "--json", endpoint=n.client_endpoint)
            assert ran.returncode == 0, h.describe(ran)
            ring = json.loads(ran.stdout.decode())
            if ring["hand_over"] is not None or victim.name in ring["members"]:
                return None
        return True
    h.wait_for(committed, 60, f"the removal of {victim.name} committed", interval=0.1)

    # No node holds a hint for it any more: each went to its partition's home replicas.
    h.wait_for(lambda: hints_for(others, victim.name) == 0 or None, 60,
               f"no hint left for {victim.name}", interval=0.1)
    for n in others:
        ran = h.kvcli("hints", endpoint=n.client_endpoint)
        assert ran.returncode == 0, h.describe(ran)
        rows = [line for line in ran.stdout.decode().splitlines()
                if line.startswith(victim.name + " ")]
        assert all(row.split()[1] == "removed" and row.split()[2] == "0" for row in rows), rows
    rehomed = sum(view.client(n).stats()["hints_rehomed"] for n in others)
    assert rehomed >= len(mine), rehomed

    # Every acknowledged write is on every current home replica of its key, and no table
    # lists the removed node.
    for key, version in versions.items():
        rs = replicas(coordinator, key)
        homes = [r for r in rs.replicas if r.home]
        assert len(homes) == 3 and victim.name not in [r.node_id for r in homes], rs
        for r in homes:
            assert r.state == pb.REPLICA_LIVE, (key, r)
            assert (r.version.hlc, r.version.origin) >= (version.hlc, version.origin), (key, r)
