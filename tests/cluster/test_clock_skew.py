"""A data directory written by a node whose clock was ahead (the stored versions are in
this node's future): new writes must still win, as the client expects, and the node's
clock moves past the stored versions (the coordinator's single re-stamp).

A node whose clock runs ahead, seen by its peers: such a node (made by the same data
directory, its clock moved an hour ahead by the re-stamp) writes through a peer that
accepts clocks a day ahead and one that keeps the default bound; `kvcli members` through
each shows the node's offset, and through the second the versions it refused."""

import json
import re
import sqlite3
import time

import edgekv_harness as h
from edgekv_harness import pb

HOUR_MS = 3600 * 1000
# Anti-entropy off: the test counts the versions that reach each node through writes it
# makes; a round would copy a key (and its version) between the nodes on its own.
PRESET = ["--gossip-preset", "local", "--partitions", "4", "--anti-entropy-interval-ms", "0"]


def _hlc(physical_ms: int, logical: int = 0) -> int:
    return (physical_ms << 16) | logical  # common/hlc.h: 48 bits of ms, 16 logical


def _move_versions_to_the_future(data_dir, keys, physical_ms):
    """Rewrites the stored version of `keys` (the node is stopped), as a node whose clock
    was `physical_ms` would have written them."""
    changed = 0
    for db_path in sorted(data_dir.glob("data-*.db")):
        db = sqlite3.connect(str(db_path))
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'kv_%'")]
            for table in tables:
                for i, key in enumerate(keys):
                    cur = db.execute(f"UPDATE {table} SET hlc = ? WHERE key = ?",
                                     (_hlc(physical_ms, i), key))
                    changed += cur.rowcount
            db.commit()
        finally:
            db.close()
    assert changed == len(keys), f"rewrote {changed} rows, expected {len(keys)}"


def test_writes_win_over_versions_from_a_clock_that_was_ahead(daemons):
    node = daemons.start("node1", args=["--partitions", "4"])
    keys = [b"put-me", b"delete-me", b"untouched"]
    with node.client() as c:
        for key in keys:
            assert c.put(key, b"old " + key).code == pb.OK
    assert node.stop() == 0
    future_ms = int(time.time() * 1000) + HOUR_MS
    _move_versions_to_the_future(node.data_dir, keys, future_ms)

    node.start()
    with node.client() as c:
        stored = c.get(b"put-me").get.version
        assert stored.hlc >> 16 == future_ms

        resp = c.put(b"put-me", b"new value")
        assert resp.code == pb.OK, (h.code_name(resp.code), resp.message)
        assert resp.put.version.hlc > stored.hlc, "the write was acknowledged with an old version"
        got = c.get(b"put-me")
        assert got.code == pb.OK and got.get.value == b"new value", got
        assert got.get.version == resp.put.version

        resp = c.delete(b"delete-me")
        assert resp.code == pb.OK
        assert c.get(b"delete-me").code == pb.NOT_FOUND, "the delete lost to an older write"

        # The clock moved past what it saw: a write to a fresh key is versioned after it.
        resp = c.put(b"fresh", b"v")
        assert resp.put.version.hlc > stored.hlc
        assert c.get(b"untouched").get.value == b"old untouched"
        assert c.stats()["errors"] == 0


# ---------------------------------------------------------------------------- per member


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000  # as the daemon reads it: whole ms, no float rounding


def _members(node) -> dict:
    """`kvcli members --json` through `node`: node id -> member object."""
    r = h.kvcli("members", "--json", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, h.describe(r)
    return {m["node_id"]: m for m in map(json.loads, r.stdout.splitlines())}


def _clock_cell(node, member_id: str) -> str:
    """The CLOCK column of `member_id`'s row in `kvcli members` through `node`."""
    r = h.kvcli("members", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, h.describe(r)
    header, *rows = r.stdout.decode().splitlines()
    row = next(line for line in rows if line.split()[0] == member_id)
    return row[header.index("CLOCK"):header.index("CLIENT")].rstrip()


def _assert_offset(member: dict, physical_ms: int, sent_ms: int, seen_ms: int) -> None:
    """A node shows the physical part of the member's version minus its own wall clock
    when the version arrived, which was after `sent_ms` (before the write was sent) and
    before `seen_ms` (once the node showed it): the member's offset less the delay. Both
    bounds are read from the clock every process here shares."""
    assert member["clock_known"], member
    low, high = physical_ms - seen_ms, physical_ms - sent_ms
    assert low <= member["clock_offset_ms"] <= high, (member, low, high)


def _clock_ahead_node(daemons) -> tuple[h.Daemon, int]:
    """A node whose clock runs an hour ahead: its data written as by a clock an hour ahead,
    then one write after a restart, which moves its clock past that version of its own.
    Alone, so that the write's single re-stamp is certain. Returns it and the hour's
    physical part."""
    node = daemons.new("node1", args=PRESET).start()
    with node.client() as c:
        assert c.put(b"ahead", b"old").code == pb.OK
    assert node.stop() == 0
    future_ms = _wall_ms() + HOUR_MS
    _move_versions_to_the_future(node.data_dir, [b"ahead"], future_ms)
    node.start()
    with node.client() as c:
        resp = c.put(b"ahead", b"new")
        assert resp.code == pb.OK, (h.code_name(resp.code), resp.message)
        assert resp.put.version.hlc >> 16 == future_ms, "the clock did not move past it"
    return node, future_ms


def test_members_show_each_peers_clock_offset_and_the_versions_refused(daemons):
    fast, future_ms = _clock_ahead_node(daemons)
    # `lenient` takes versions up to a day ahead (the widest bound); `strict` keeps 500 ms.
    lenient = daemons.new("node2", args=[*PRESET, "--max-clock-offset-ms", "86400000",
                                         "--seeds", fast.gossip_endpoint]).start()
    strict = daemons.new("node3", args=[*PRESET, "--seeds", fast.gossip_endpoint]).start()
    nodes = [fast, lenient, strict]
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
    finally:
        view.close()

    # Nothing freshly stamped by `fast` has reached `lenient` yet: its clock is unknown, not
    # 0. (What the joins streamed is relayed: checked, and refused by `strict`, but it tells
    # nothing of the clock; the counts below are taken from here.)
    seen = _members(lenient)["node1"]
    assert seen["clock_known"] is False, seen
    assert _clock_cell(lenient, "node1") == "-"
    lenient_checked = seen["clock_versions_checked"]
    strict_before = _members(strict)["node1"]
    strict_checked = strict_before["clock_versions_checked"]
    strict_refused = strict_before["clock_versions_refused"]
    assert strict_checked == strict_refused, strict_before
    with strict.client() as c:
        strict_rejected = c.stats()["clock_offset_rejected"]

    # Every partition's home replicas are the three nodes, so a write through `fast` goes to
    # all: `fast` takes its own version, `lenient` takes it too (the two make QUORUM),
    # `strict` refuses it.
    sent_ms = _wall_ms()
    with fast.client() as c:
        resp = c.put(b"skewed", b"v")
    assert resp.code == pb.OK, (h.code_name(resp.code), resp.message)
    physical_ms = resp.put.version.hlc >> 16
    assert physical_ms == future_ms

    def refused_at_strict():
        member = _members(strict)["node1"]
        return member if member["clock_versions_refused"] >= strict_refused + 1 else None
    at_strict = h.wait_for(refused_at_strict, 10, "node3 to refuse node1's version")
    seen_ms = _wall_ms()
    at_lenient = _members(lenient)["node1"]
    _assert_offset(at_lenient, physical_ms, sent_ms, seen_ms)
    assert (at_lenient["clock_versions_checked"], at_lenient["clock_versions_refused"]) == (
        lenient_checked + 1, 0)
    _assert_offset(at_strict, physical_ms, sent_ms, seen_ms)
    assert (at_strict["clock_versions_checked"], at_strict["clock_versions_refused"]) == (
        strict_checked + 1, strict_refused + 1)
    with strict.client() as c:
        assert c.stats()["clock_offset_rejected"] == strict_rejected + 1
    # The node's own entry: how far its own versions run ahead of its wall clock.
    _assert_offset(_members(fast)["node1"], physical_ms, sent_ms, seen_ms)

    # The text: the offset as a duration (about an hour less the seconds since the data
    # directory was rewritten), and how many of the member's versions were refused.
    cell = _clock_cell(strict, "node1")
    n = strict_refused + 1
    assert re.fullmatch(rf"\+5\dm \d+s \({n} of {n} refused\)", cell), cell

    # A clock that is not ahead: `strict` did not take `fast`'s version, so its versions
    # follow its wall clock, and `lenient` shows it within the delay of 0.
    sent_ms = _wall_ms()
    with strict.client() as c:
        resp = c.put(b"on-time", b"v")
    assert resp.code == pb.OK, (h.code_name(resp.code), resp.message)
    physical_ms = resp.put.version.hlc >> 16

    def checked_at_lenient():  # QUORUM may have been `strict` and `fast`
        member = _members(lenient)["node3"]
        return member if member["clock_versions_checked"] >= 1 else None
    at_lenient = h.wait_for(checked_at_lenient, 10, "node2 to check node3's version")
    seen_ms = _wall_ms()
    assert sent_ms <= physical_ms <= seen_ms
    _assert_offset(at_lenient, physical_ms, sent_ms, seen_ms)
    assert at_lenient["clock_versions_refused"] == 0
