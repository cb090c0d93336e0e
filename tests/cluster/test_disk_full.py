"""A full disk and the error counters.

On a small tmpfs the test mounts itself, edgekvd fills the disk: writes are then refused
with an error naming the full disk, while DEL (through the ZeroMQ API and RESP) and TTL
expiry still work, writes are accepted again once deletes made room, and after a restart
on the disk filled again every acknowledged write reads back. Separately: failed commands count in `errors` from
every front-end.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import edgekv_harness as h
from edgekv_harness import pb

# The disk: small enough to fill in seconds, large enough for the store's files and the
# reserve. The reserve is what the node gives back when the disk fills.
DISK_BYTES = 24 << 20
RESERVE_BYTES = 4 << 20
VALUE_BYTES = 32 << 10
# TTL of the keys that must expire while the disk is full: well beyond the time filling
# takes (a few seconds), so they are written before the disk fills and expire after.
TTL_MS = 15000
TTL_KEYS = 10


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {DISK_BYTES}-byte tmpfs at {mount_point} (the test needs "
                    f"root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # The daemons are stopped first (they were started after the mount); lazily if a
        # process still holds a file there.
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def is_disk_full_error(reply) -> bool:
    return isinstance(reply, h.RespError) and "disk full" in reply


def fill(resp: h.RespConn, prefix: bytes, acked: dict[bytes, bytes]) -> int:
    """SETs of VALUE_BYTES until one is refused naming the full disk; the acknowledged ones
    go to `acked`. Returns how many were refused (an SQLite error may come first)."""
    refused = 0
    for i in range(DISK_BYTES // VALUE_BYTES * 4):
        key, value = b"%s:%05d" % (prefix, i), os.urandom(VALUE_BYTES)
        reply = resp.command("SET", key, value)
        if reply == "OK":
            acked[key] = value
            continue
        assert isinstance(reply, h.RespError), reply
        refused += 1
        if is_disk_full_error(reply):
            return refused
    pytest.fail(f"{len(acked)} SETs of {VALUE_BYTES} bytes never filled the disk")


def test_full_disk_refuses_writes_but_deletes_and_expiry_work(small_disk, daemons):
    node = daemons.start("node1", data_dir=small_disk / "data", args=[
        "--disk-reserve-bytes", str(RESERVE_BYTES), "--ttl-sweep-interval-ms", "100",
        "--log-level", "notice"])
    client = node.client(timeout=30.0)
    resp = h.RespConn(node.resp_port, timeout=30.0)
    try:
        assert client.stats()["store_disk_reserve_bytes"] == RESERVE_BYTES
        ttl_keys = [b"ttl:%d" % i for i in range(TTL_KEYS)]
        ttl_written = time.monotonic()
        for key in ttl_keys:
            assert client.put(key, b"expires", ttl_ms=TTL_MS).code == pb.OK

        acked: dict[bytes, bytes] = {}
        refused = fill(resp, b"fill", acked)
        assert time.monotonic() - ttl_written < TTL_MS / 1000, "filling took longer than the TTL"
        stats = client.stats()
        assert stats["store_disk_full"] == 1, stats
        assert stats["store_disk_full_events"] >= 1, stats
        assert stats["errors"] >= refused and stats["resp_errors"] >= refused, (refused, stats)
        # Nearly full, little waited to be applied when the disk filled, so applying it cannot
        # take the room the reserve gave back for the deletes and the sweep below (a quarter
        # of the reserve may be staged, plus a group per file).
        assert stats["store_staged_writes"] * VALUE_BYTES <= RESERVE_BYTES // 2, stats
        # The ZeroMQ API says the same.
        refused_put = client.put(b"zmq-put", b"x" * VALUE_BYTES)
        assert refused_put.code == pb.IO_ERROR, h.code_name(refused_put.code)
        assert "disk full" in refused_put.message, refused_put.message

        # DEL works on the full disk, through RESP and through the ZeroMQ API.
        keys = sorted(acked)
        deleted: set[bytes] = set()
        for key in keys[:5]:
            assert resp.command("DEL", key) == 1, key
            deleted.add(key)
        for key in keys[5:10]:
            r = client.delete(key)
            assert r.code == pb.OK, (key, h.code_name(r.code), r.message)
            deleted.add(key)
        for key in keys[:10]:
            assert resp.command("GET", key) is None, key
            assert client.get(key).code == pb.NOT_FOUND, key
        assert client.stats()["store_disk_full"] == 1

        # Keys with a TTL expire while the disk is full: the sweep commits their expiry and
        # reports it (expired_events counts the expire events the daemon published).
        def swept():
            s = client.stats()
            return s if s["expired_events"] >= TTL_KEYS else None
        stats = h.wait_for(swept, TTL_MS / 1000 + 30, "the TTL keys to be swept")
        assert stats["store_disk_full"] == 1, stats
        assert stats["store_expired"] >= TTL_KEYS, stats
        for key in ttl_keys:
            assert client.get(key).code == pb.NOT_FOUND, key

        # Deleting frees pages the store reuses: SETs are accepted again.
        remaining = [k for k in keys if k not in deleted]

        def delete_more_then_set():
            # Each poll deletes 16 more keys, then tries a SET.
            nonlocal remaining
            for key in remaining[:16]:
                assert resp.command("DEL", key) == 1, key
                deleted.add(key)
            remaining = remaining[16:]
            reply = resp.command("SET", "after", "room again")
            if reply == "OK":
                return reply
            assert is_disk_full_error(reply), reply
            return None

        h.wait_for(delete_more_then_set, 60, "a SET accepted after deleting keys", interval=0.05)
        assert client.get(b"after").get.value == b"room again"
        h.wait_for(lambda: client.stats()["store_disk_full"] == 0, 10, "the disk to count as not full")

        # Fill it again, and restart on the full disk.
        fill(resp, b"refill", acked)
        assert client.stats()["store_disk_full"] == 1
    finally:
        client.close()
        resp.close()

    # The restart recovers: nothing acknowledged is lost, nothing deleted comes back.
    assert node.stop() == 0
    node.start()
    with node.client(timeout=30.0) as c:
        got = c.get_many(list(acked))
        for key, value in acked.items():
            if key in deleted:
                assert got[key].code == pb.NOT_FOUND, key
            else:
                assert got[key].code == pb.OK and got[key].get.value == value, key
        assert c.get(b"after").get.value == b"room again"


def test_failed_commands_count_as_errors_from_every_front_end(daemons):
    node = daemons.start("node1", args=["--max-value-bytes", "1024"])
    with node.client() as c, h.RespConn(node.resp_port) as r:
        before = c.stats()
        assert before["errors"] == before["resp_errors"] == before["api_errors"] == 0, before
        # RESP: a value over max-value-bytes and an unknown command are errors; a miss is not.
        assert isinstance(r.command("SET", "k", "v" * 2000), h.RespError)
        assert isinstance(r.command("NOSUCHCOMMAND"), h.RespError)
        assert r.command("GET", "missing") is None
        stats = c.stats()
        assert stats["resp_errors"] == 2 and stats["errors"] == 2, stats
        # The ZeroMQ API: the same oversized value is an error; a miss is not.
        assert c.put(b"k", b"v" * 2000).code == pb.INVALID_ARGUMENT
        assert c.get(b"missing").code == pb.NOT_FOUND
        stats = c.stats()
        assert stats["api_errors"] == 1 and stats["resp_errors"] == 2, stats
        assert stats["errors"] == 3, stats
