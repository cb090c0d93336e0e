"""`kvcli hints` against real edgekvd processes on loopback: five nodes, N = 3.

While a home replica is down (kill -9), a fallback that keeps QUORUM writes for it as hints
shows it, down, with its hints and their bytes; once it is back they drain to none. With a
hint window shorter than the outage, the partition marked for repair shows up instead.
"""

from __future__ import annotations

import json

import pytest

import edgekv_harness as h
from edgekv_harness import pb
from test_handoff import hints_held, refuse_past_window, wait_alive_everywhere, write_keys
from test_replication import by_name, start_cluster, wait_dead_everywhere

KEYS = 100


def hints_json(node: h.Daemon) -> dict:
    result = h.kvcli("hints", "--json", endpoint=node.client_endpoint)
    assert result.returncode == 0, h.describe(result)
    assert result.stderr == b"", h.describe(result)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1, h.describe(result)
    return json.loads(lines[0])


def hints_text(node: h.Daemon) -> list[str]:
    result = h.kvcli("hints", endpoint=node.client_endpoint)
    assert result.returncode == 0, h.describe(result)
    return result.stdout.decode().splitlines()


def target(report: dict, name: str):
    return next((t for t in report["targets"] if t["node_id"] == name), None)


@pytest.fixture
def cluster(daemons):
    nodes = start_cluster(daemons)
    view = h.ClusterView(nodes)
    h.wait_agreed(view, nodes)
    yield nodes, view
    view.close()


def test_a_fallback_shows_the_hints_it_keeps_for_a_dead_node_until_they_drain(cluster):
    nodes, view = cluster
    victim = by_name(nodes, "node3")
    others = [n for n in nodes if n is not victim]
    before = hints_json(nodes[0])
    assert before == {"targets": [], "marks": []}, before
    assert hints_text(nodes[0]) == ["no hints", "no repair marks"]

    victim.kill()
    wait_dead_everywhere(view, others, victim.name)
    write_keys(view.client(nodes[0]), b"hints-", KEYS)
    holders = [n for n in others if view.client(n).stats()["store_hints"] > 0]
    assert holders, "no fallback keeps a hint"

    for holder in holders:
        report = hints_json(holder)
        dead = target(report, victim.name)
        assert dead is not None, report
        assert dead["up"] is False, dead
        assert dead["hints"] > 0 and dead["bytes"] > 0, dead
        assert dead["oldest_ms"] > 0, dead
        assert report["marks"] == [], report
        # Only the dead node is owed anything: every other target has no hints.
        assert all(t["hints"] == 0 for t in report["targets"] if t is not dead), report

        lines = hints_text(holder)
        assert lines[0].split()[:3] == ["NODE", "UP", "HINTS"], lines
        row = next((line.split() for line in lines if line.startswith(victim.name + " ")), None)
        assert row is not None, lines
        assert row[1] == "down" and int(row[2]) > 0 and int(row[3]) > 0, lines
        assert lines[-1] == "no repair marks", lines

    victim.start(keep_ports=True)
    wait_alive_everywhere(view, nodes, victim.name)

    def drained():
        reports = {n.name: hints_json(n) for n in holders}
        for report in reports.values():
            back = target(report, victim.name)
            if back is None or back["hints"] != 0 or not back["up"]:
                return None
        return reports
    reports = h.wait_for(drained, 60, "every holder's hints for the returned node drained",
                         interval=0.1)
    for name, report in reports.items():
        back = target(report, victim.name)
        # Listed with nothing left: it was handed what was kept for it.
        assert back["delivered"] > 0 and back["bytes"] == 0 and back["oldest_ms"] == 0, (name, back)
    assert hints_held(view, others) == 0


def test_a_partition_marked_for_repair_past_the_hint_window_is_shown(daemons):
    nodes = start_cluster(daemons, extra=["--hint-window-ms", "1000"])
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        victim = by_name(nodes, "node4")
        others = refuse_past_window(view, nodes, table, victim)
        holder = next(n for n in others if view.client(n).stats()["repair_marks"] > 0)

        report = hints_json(holder)
        marks = [m for m in report["marks"] if m["node_id"] == victim.name]
        assert marks, report
        for mark in marks:
            assert victim.name in list(table.table[mark["partition"]].home), mark
            assert mark["hints"] > 0 and mark["since_ms"] > 0, mark
            assert "hint-window" in mark["reason"], mark
        dead = target(report, victim.name)
        if dead is not None:
            assert dead["up"] is False, dead

        lines = hints_text(holder)
        assert "repair marks:" in lines, lines
        after = lines[lines.index("repair marks:") + 1:]
        assert after[0].split()[:2] == ["PARTITION", "NODE"], lines
        assert any(line.split()[1] == victim.name for line in after[1:]), lines
    finally:
        view.close()
