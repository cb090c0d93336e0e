"""`kvcli remove` and `kvcli ring` against real edgekvd processes on loopback: three nodes.

Removing a node that is not a member fails naming it, and removes nothing, not even the
members named with it. A member stopped for good and then removed through one node is, in
the end, listed by no node's `kvcli ring`, text or JSON, and writes and reads at QUORUM go
on through the two left; a strict ALL write, which needs every home replica and so failed
while the stopped node was still one, succeeds once it is gone.

The removal may take effect at once or through a hand-over that streams the node's
partitions first: the tests wait for the node to be gone (with a deadline), and while a
hand-over shows in `kvcli ring` they check it is the one removing that node.
"""

from __future__ import annotations

import json

import pytest

import edgekv_harness as h
from edgekv_harness import pb
from test_replication import by_name, put, start_cluster

# A hand-over streams every partition the removed node held before the table changes.
REMOVAL_TIMEOUT = 120.0 if h.SANITIZED else 60.0


@pytest.fixture
def cluster(daemons):
    nodes = start_cluster(daemons, size=3)
    view = h.ClusterView(nodes)
    table = h.wait_agreed(view, nodes)
    yield nodes, view, table
    view.close()


def ring_json(node: h.Daemon) -> dict:
    result = h.kvcli("ring", "--json", endpoint=node.client_endpoint)
    assert result.returncode == 0, h.describe(result)
    assert result.stderr == b"", h.describe(result)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1, h.describe(result)
    return json.loads(lines[0])


def ring_text(node: h.Daemon) -> list[str]:
    result = h.kvcli("ring", endpoint=node.client_endpoint)
    assert result.returncode == 0, h.describe(result)
    return result.stdout.decode().splitlines()


def wait_gone_or_left_everywhere(view, observers, member: str, timeout: float = 30.0):
    """Waits until every observer's gossip shows `member` as not up (dead or left)."""
    def seen():
        states = view.states(observers)
        return all(states.get(o.name, {}).get(member) in ("dead", "left", None)
                   for o in observers) or None
    h.wait_for(seen, timeout, f"{member} down everywhere", interval=0.05)


def test_removing_a_node_that_is_not_a_member_fails_naming_it(cluster):
    nodes, _, table = cluster
    node1 = nodes[0]

    alone = h.kvcli("remove", "node9", endpoint=node1.client_endpoint)
    assert alone.returncode == 4, h.describe(alone)
    assert alone.stdout == b"", h.describe(alone)
    assert alone.stderr == b"kvcli: node9 is not a member of the placement (kvcli ring)\n", \
        h.describe(alone)

    # Named with a member: nothing is removed, and the error names the stranger.
    mixed = h.kvcli("remove", "node3", "node9", "--json", endpoint=node1.client_endpoint)
    assert mixed.returncode == 4, h.describe(mixed)
    assert mixed.stdout == b"", h.describe(mixed)
    assert b"node9 is not a member" in mixed.stderr, h.describe(mixed)

    # Not a node id at all: refused before it reaches the placement, saying why.
    bad = h.kvcli("remove", "node/3", endpoint=node1.client_endpoint)
    assert bad.returncode == 4, h.describe(bad)
    assert b"'node/3' may hold only" in bad.stderr, h.describe(bad)
    twice = h.kvcli("remove", "node3", "node3", endpoint=node1.client_endpoint)
    assert twice.returncode == 4, h.describe(twice)
    assert b"node3 is given twice" in twice.stderr, h.describe(twice)

    for node in nodes:
        ring = ring_json(node)
        assert ring["members"] == ["node1", "node2", "node3"], ring
        assert ring["epoch"] == table.epoch, (ring["epoch"], table.epoch)
        assert ring["hand_over"] is None, ring


def test_a_stopped_member_removed_is_listed_no_more_and_quorum_goes_on(cluster):
    nodes, view, table = cluster
    node1, node2, node3 = (by_name(nodes, f"node{i}") for i in (1, 2, 3))
    others = [node1, node2]
    client1 = view.client(node1)
    assert put(client1, b"before", b"v0", consistency=pb.QUORUM).code == pb.OK

    assert node3.stop() == 0
    wait_gone_or_left_everywhere(view, others, "node3")
    # Still a home replica of every partition: a strict ALL write cannot be taken.
    refused = put(client1, b"all-strict", b"v", consistency=pb.ALL, strict=True)
    assert refused.code == pb.UNAVAILABLE, (h.code_name(refused.code), refused.message)
    assert "of 3 home replicas" in refused.message, refused.message

    removed = h.kvcli("remove", "node3", endpoint=node1.client_endpoint)
    assert removed.returncode == 0, h.describe(removed)
    assert removed.stderr == b"", h.describe(removed)
    text = removed.stdout.decode()
    assert text.startswith(("OK removed node3: placement epoch ",
                            "OK removing node3: hand-over to epoch ")), text
    assert int(text.split("epoch ")[1].split()[0]) > table.epoch, text

    def gone_everywhere():
        rings = {}
        for node in others:
            ring = ring_json(node)
            if ring["hand_over"] is not None:
                # A removal in progress: it is this one.
                assert ring["hand_over"]["leaving"] == ["node3"], ring["hand_over"]
                assert ring["hand_over"]["joining"] == [], ring["hand_over"]
                return None
            if "node3" in ring["members"]:
                return None
            rings[node.name] = ring
        if len({(r["epoch"], r["digest"]) for r in rings.values()}) != 1:
            return None
        return rings
    rings = h.wait_for(gone_everywhere, REMOVAL_TIMEOUT, "node3 gone from every ring",
                       interval=0.1)
    for name, ring in rings.items():
        assert ring["members"] == ["node1", "node2"], (name, ring)
        assert ring["epoch"] > table.epoch, (name, ring["epoch"], table.epoch)
        assert len(ring["table"]) == ring["partitions"], (name, len(ring["table"]))
        for row in ring["table"]:
            assert sorted(row["home"]) == ["node1", "node2"], (name, row)
    for node in others:
        lines = ring_text(node)
        assert lines[1] == "members node1 node2", lines[:3]
        assert not any("hand-over" in line for line in lines), lines[:10]
        assert not any("node3" in line for line in lines), \
            [line for line in lines if "node3" in line][:5]

    # QUORUM through either node left, each reading the other's write.
    for writer, reader, key in ((node2, node1, "after-1"), (node1, node2, "after-2")):
        wrote = h.kvcli("put", key, "v-" + key, endpoint=writer.client_endpoint,
                        global_args=["--consistency", "quorum"])
        assert wrote.returncode == 0, h.describe(wrote)
        read = h.kvcli("get", key, endpoint=reader.client_endpoint,
                       global_args=["--consistency", "quorum"])
        assert read.returncode == 0, h.describe(read)
        assert read.stdout == ("v-" + key).encode(), h.describe(read)
    # A write made before the removal is still read at QUORUM.
    before = h.kvcli("get", "before", endpoint=node2.client_endpoint,
                     global_args=["--consistency", "quorum"])
    assert before.returncode == 0 and before.stdout == b"v0", h.describe(before)
    # Every home replica is up now: a strict ALL write is taken.
    taken = put(client1, b"all-strict", b"v", consistency=pb.ALL, strict=True)
    assert taken.code == pb.OK, (h.code_name(taken.code), taken.message)

    # Removed for good: asking again names it as no member.
    again = h.kvcli("remove", "node3", endpoint=node2.client_endpoint)
    assert again.returncode == 4, h.describe(again)
    assert again.stderr == b"kvcli: node3 is not a member of the placement (kvcli ring)\n", \
        h.describe(again)
