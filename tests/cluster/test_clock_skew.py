"""A data directory written by a node whose clock was ahead (the stored versions are in
this node's future): new writes must still win, as the client expects, and the node's
clock moves past the stored versions (server.cc, on_write_done's single retry)."""

import sqlite3
import time

import edgekv_harness as h
from edgekv_harness import pb

HOUR_MS = 3600 * 1000


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
