"""Hand-over between real edgekvd processes on loopback (docs/replication.md, "Hand-over").

A node joining a cluster that holds data takes its share by streaming it from the current
home replicas, and the table that lists it is committed only then: every write
acknowledged at QUORUM before and during the hand-over is read back at QUORUM through the
new node, and the new node holds its partitions' keys before anything read them. `kvcli
remove` of a live node streams its partitions to their new home replicas while writes go
on, and the node leaves the table. A taker killed with kill -9 mid-stream resumes when it
is back, and a source killed mid-stream is replaced by the others. A join whose new node is
killed with kill -9 mid-stream is cancelled (`kvcli remove --abort`, or `kvcli remove` of
the joining node): every node returns to the table before it and every acknowledged key
reads back at QUORUM; a removal cancelled leaves the node a member that serves.

Anti-entropy's schedule is off: streaming is the only thing that may move data to a taker
(reads are made after its checks).
"""

from __future__ import annotations

import threading

import pytest

import edgekv_harness as h
from edgekv_harness import pb

# The replication tests' cluster: anti-entropy's schedule off, one-second request timeouts.
from test_replication import PRESET, replicas, start_cluster
import test_replication as rt


def put(client: h.NativeClient, key: bytes, value: bytes) -> "pb.Response":
    return rt.put(client, key, value, consistency=pb.QUORUM)


def get(client: h.NativeClient, key: bytes) -> "pb.Response":
    return rt.get(client, key, pb.QUORUM)


class Writer:
    """Writes keys `prefix`0, 1, ... at QUORUM through `daemon` until stopped; remembers
    the acknowledged ones."""

    def __init__(self, daemon: h.Daemon, prefix: str, value: bytes):
        self.daemon, self.prefix, self.value = daemon, prefix, value
        self.acked: list[bytes] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Writer":
        self._thread.start()
        return self

    def _run(self) -> None:
        with self.daemon.client() as c:
            i = 0
            while not self._stop.is_set():
                key = f"{self.prefix}{i}".encode()
                i += 1
                if put(c, key, self.value).code == pb.OK:
                    self.acked.append(key)
                else:
                    self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def fill(daemon: h.Daemon, prefix: str, count: int, value: bytes) -> list[bytes]:
    keys = []
    with daemon.client() as c:
        for i in range(count):
            key = f"{prefix}{i}".encode()
            resp = put(c, key, value)
            assert resp.code == pb.OK, resp.message
            keys.append(key)
    return keys


def settled(view: h.ClusterView, nodes, members: list[str]):
    """Every node in `nodes` holds one committed table listing exactly `members`."""
    def done():
        rings = [h.ring(view.client(n)) for n in nodes]
        if any(sorted(r.members) != sorted(members) or r.HasField("hand_over") for r in rings):
            return None
        if len({(r.epoch, r.digest) for r in rings}) != 1:
            return None
        return rings[0]
    return done


def assert_held_by_homes(view: h.ClusterView, through: h.Daemon, table, keys, node: str):
    """Every key of `keys` whose home replicas include `node` is stored there already."""
    checked = 0
    for key in keys:
        # An inspection reads without repairing; one that timed out (a loaded machine) is
        # asked again.
        def answered():
            rs = replicas(view.client(through), key)
            held = {r.node_id: r for r in rs.replicas}
            return None if held[node].state == pb.REPLICA_UNREACHABLE else rs
        rs = replicas(view.client(through), key)
        if node not in table.table[rs.partition].home:
            continue
        rs = h.wait_for(answered, 30, f"{node} answering for {key!r}", interval=0.1)
        held = {r.node_id: r for r in rs.replicas}
        assert held[node].state == pb.REPLICA_LIVE, (key, held[node])
        checked += 1
    assert checked > 0


def test_a_joining_node_takes_its_share_while_writes_go_on(daemons):
    nodes = start_cluster(daemons, 3)
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
        before = fill(nodes[0], "before:", 600, b"v" * 200)
        writer = Writer(nodes[1], "during:", b"w" * 200).start()
        node4 = daemons.new("node4", args=[*PRESET, "--seeds", nodes[0].gossip_endpoint]).start()
        everyone = [*nodes, node4]
        view = h.ClusterView(everyone)
        table = h.wait_for(settled(view, everyone, [n.name for n in everyone]), 60,
                           "node4 joined by a hand-over", interval=0.1)
        writer.stop()
        assert len(writer.acked) > 0
        assert table.epoch > 0
        homes_of_4 = sum(1 for row in table.table if "node4" in row.home)
        assert homes_of_4 > 0
        # Streamed before anything read them: node4 holds its keys already.
        assert_held_by_homes(view, nodes[0], table, before[:200] + writer.acked[:200], "node4")
        for key in before + writer.acked:
            resp = get(view.client(node4), key)
            assert resp.code == pb.OK, (key, resp.message)
    finally:
        view.close()


def test_kvcli_remove_hands_a_live_nodes_partitions_over(daemons):
    nodes = start_cluster(daemons, 4)
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
        before = fill(nodes[0], "k:", 600, b"v" * 200)
        writer = Writer(nodes[1], "during:", b"w" * 200).start()
        r = h.kvcli("remove", "node4", endpoint=nodes[0].client_endpoint)
        assert r.returncode == 0, h.describe(r)
        stay = nodes[:3]
        table = h.wait_for(settled(view, stay, [n.name for n in stay]), 60,
                           "node4 removed by a hand-over", interval=0.1)
        writer.stop()
        assert all("node4" not in row.home for row in table.table)
        # Every key is on its three home replicas among the three left, before any read.
        sample = before[:150] + writer.acked[:150]
        for key in sample:
            rs = replicas(view.client(nodes[0]), key)
            live = [r.node_id for r in rs.replicas if r.home and r.state == pb.REPLICA_LIVE]
            assert sorted(live) == sorted(table.table[rs.partition].home), (key, rs)
        for key in before + writer.acked:
            resp = get(view.client(nodes[2]), key)
            assert resp.code == pb.OK, (key, resp.message)
    finally:
        view.close()


def test_a_taker_killed_mid_stream_resumes_and_a_killed_source_is_replaced(daemons):
    # A slow stream (about 10 s at this rate: each partition that differs costs its 8 KiB
    # of leaves per source, and its records) so that both kills land in it.
    slow = ["--anti-entropy-rate", "1048576"]
    nodes = start_cluster(daemons, 3, slow)
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
        keys = fill(nodes[0], "big:", 600, b"x" * 2000)
        node4 = daemons.new("node4",
                            args=[*PRESET, *slow, "--seeds", nodes[0].gossip_endpoint]).start()

        def streaming(least: int):
            def check():
                r = h.ring(view.client(nodes[1]))
                if not r.HasField("hand_over"):
                    return None
                takers = {t.node_id: t for t in r.hand_over.takers}
                t = takers.get("node4")
                return t if t is not None and least <= t.streamed < t.partitions else None
            return check

        h.wait_for(streaming(1), 60, "node4 streaming", interval=0.1)
        node4.kill()
        node4.start()
        h.wait_for(streaming(1), 60, "node4 streaming again", interval=0.1)
        # A source goes: two of the three current home replicas are still enough.
        nodes[2].kill()
        survivors = [nodes[0], nodes[1], node4]
        view = h.ClusterView([*survivors, nodes[2]])
        nodes[2].start()
        everyone = [*nodes, node4]
        table = h.wait_for(settled(view, everyone, [n.name for n in everyone]), 120,
                           "the hand-over completed", interval=0.1)
        assert_held_by_homes(view, nodes[0], table, keys[:200], "node4")
        for key in keys:
            resp = get(view.client(node4), key)
            assert resp.code == pb.OK, (key, resp.message)
    finally:
        view.close()


def taker_streaming(view: h.ClusterView, observer: h.Daemon, node: str, least: int = 1):
    """`node` streamed at least `least` partitions of the hand-over `observer` shows, not
    all of them."""
    def check():
        r = h.ring(view.client(observer))
        if not r.HasField("hand_over"):
            return None
        t = {t.node_id: t for t in r.hand_over.takers}.get(node)
        return t if t is not None and least <= t.streamed < t.partitions else None
    return check


def homes(table) -> list[list[str]]:
    return [list(row.home) for row in table.table]


@pytest.mark.parametrize("how", [["--abort"], ["node4"]], ids=["abort", "remove-the-joiner"])
def test_a_join_whose_node_died_mid_stream_is_cancelled(daemons, how):
    slow = ["--anti-entropy-rate", "1048576"]
    nodes = start_cluster(daemons, 3, slow)
    view = h.ClusterView(nodes)
    try:
        before = h.wait_agreed(view, nodes)
        keys = fill(nodes[0], "big:", 600, b"x" * 2000)
        writer = Writer(nodes[1], "during:", b"w" * 200).start()
        node4 = daemons.new("node4",
                            args=[*PRESET, *slow, "--seeds", nodes[0].gossip_endpoint]).start()
        h.wait_for(taker_streaming(view, nodes[1], "node4"), 60, "node4 streaming",
                   interval=0.1)
        node4.kill()
        # Gone for good: only a cancel ends the hand-over.
        shown = h.ring(view.client(nodes[0]))
        assert shown.HasField("hand_over") and list(shown.hand_over.joining) == ["node4"]
        r = h.kvcli("remove", *how, endpoint=nodes[0].client_endpoint)
        assert r.returncode == 0, h.describe(r)
        assert f"OK cancelling the hand-over to epoch {before.epoch + 1}" in r.stdout.decode(), \
            h.describe(r)
        names = [n.name for n in nodes]
        table = h.wait_for(settled(view, nodes, names), 60, "the join cancelled on every node",
                           interval=0.1)
        writer.stop()
        assert len(writer.acked) > 0
        assert table.epoch == before.epoch + 2
        assert homes(table) == homes(before)
        text = h.kvcli("ring", endpoint=nodes[2].client_endpoint)
        assert text.returncode == 0, h.describe(text)
        lines = text.stdout.decode().splitlines()
        assert lines[1] == "members node1 node2 node3", h.describe(text)
        assert not any(line.startswith("hand-over") for line in lines), h.describe(text)
        for n in nodes:
            assert view.client(n).stats()["hand_overs_cancelled"] == 1, n.name
        for key in keys + writer.acked:
            resp = get(view.client(nodes[2]), key)
            assert resp.code == pb.OK, (key, resp.message)
        # Nothing is left to cancel.
        again = h.kvcli("remove", "--abort", endpoint=nodes[1].client_endpoint)
        assert again.returncode == 4, h.describe(again)
        assert "no hand-over is pending" in again.stderr.decode(), h.describe(again)
    finally:
        view.close()


def test_kvcli_remove_abort_cancels_a_removal_and_the_node_serves(daemons):
    slow = ["--anti-entropy-rate", "262144"]
    nodes = start_cluster(daemons, 4, slow)
    view = h.ClusterView(nodes)
    try:
        before = h.wait_agreed(view, nodes)
        keys = fill(nodes[0], "big:", 600, b"x" * 2000)
        r = h.kvcli("remove", "node4", endpoint=nodes[0].client_endpoint)
        assert r.returncode == 0, h.describe(r)

        def removing():
            ring = h.ring(view.client(nodes[1]))
            if not ring.HasField("hand_over") or list(ring.hand_over.leaving) != ["node4"]:
                return None
            return ring
        h.wait_for(removing, 30, "node4's removal under way", interval=0.05)
        # Cancelled through another node than the one asked.
        r = h.kvcli("remove", "--abort", "--json", endpoint=nodes[1].client_endpoint)
        assert r.returncode == 0, h.describe(r)
        assert '"cancelling":true' in r.stdout.decode(), h.describe(r)
        names = [n.name for n in nodes]
        table = h.wait_for(settled(view, nodes, names), 60, "the removal cancelled everywhere",
                           interval=0.1)
        assert table.epoch == before.epoch + 2
        assert homes(table) == homes(before)
        # node4 is a member and serves: reads and writes through it at QUORUM.
        node4 = nodes[3]
        with node4.client() as c:
            for key in keys:
                resp = get(c, key)
                assert resp.code == pb.OK, (key, resp.message)
            for i in range(50):
                resp = put(c, f"after:{i}".encode(), b"a")
                assert resp.code == pb.OK, resp.message
        for i in range(50):
            resp = get(view.client(nodes[0]), f"after:{i}".encode())
            assert resp.code == pb.OK, resp.message
    finally:
        view.close()
