"""Data survives a clean restart; the partition count of a data directory is fixed."""

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def _value(i: int) -> bytes:
    # Some values above the compression threshold (1024), some below.
    return (b"value-%d-" % i) * (200 if i % 7 == 0 else 3)


def test_restart_keeps_data(daemons):
    node = daemons.new("node1", args=["--partitions", "8"]).start()
    n = 400
    keys = [b"key:%04d" % i for i in range(n)]
    with node.client() as c:
        c.put_many((k, _value(i)) for i, k in enumerate(keys))
        assert c.delete(keys[0]).code == h.pb.OK  # a tombstone must survive too
        assert c.put(keys[1], b"overwritten").code == h.pb.OK
        assert c.put(b"with-ttl", b"an hour", ttl_ms=3600_000).code == h.pb.OK
        expiry_before = c.get(b"with-ttl").get.expiry_ms
        version_before = c.get(keys[2]).get.version
    r = kvcli("put", "from-kvcli", "cli value", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)

    assert node.stop() == 0
    node.start()

    with node.client() as c:
        got = c.get_many(keys)
        assert got[keys[0]].code == h.pb.NOT_FOUND
        assert got[keys[1]].get.value == b"overwritten"
        for i, k in enumerate(keys[2:], start=2):
            assert got[k].code == h.pb.OK, (k, h.code_name(got[k].code), got[k].message)
            assert got[k].get.value == _value(i), k
        assert got[keys[2]].get.version == version_before
        resp = c.get(b"with-ttl")
        assert resp.code == h.pb.OK and resp.get.expiry_ms == expiry_before
        status = c.status().status
        assert status.keys == n - 1 + 2, status
        assert status.partitions == 8
        # Writes after the restart win over the ones before it (versions keep growing).
        assert c.put(keys[3], b"after restart").code == h.pb.OK
        assert c.get(keys[3]).get.value == b"after restart"
    r = kvcli("get", "from-kvcli", endpoint=node.client_endpoint)
    assert (r.returncode, r.stdout) == (h.EXIT_OK, b"cli value"), describe(r)


def test_restart_keeps_ports_and_serves_again(daemons):
    node = daemons.start("node1")
    with node.client() as c:
        assert c.put(b"k", b"v1").code == h.pb.OK
        assert node.stop() == 0
        node.start(keep_ports=True)  # the same endpoints can be bound again at once
        # The client connected before the restart (a ZeroMQ DEALER socket) reconnects by
        # itself: the same socket reaches the new process, which answers from the same data.
        resp = c.get(b"k")
        assert resp.code == h.pb.OK and resp.get.value == b"v1", resp
        assert c.put(b"k", b"v2").code == h.pb.OK
        assert c.get(b"k").get.value == b"v2"
    assert node.stop() == 0


def test_restart_with_another_partition_count_fails(daemons):
    node = daemons.new("node1")
    node.start(extra=["--partitions", "8"])
    with node.client() as c:
        assert c.put(b"k", b"v").code == h.pb.OK
    assert node.stop() == 0

    rc, stderr = node.run_to_exit(extra=["--partitions", "16"])
    assert rc == 1, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("edgekvd: "), lines
    assert "partition" in lines[0], lines
    assert "8" in lines[0] and "16" in lines[0], f"the line should name both counts: {lines}"

    # The refused start changed nothing: the directory still opens with its own count.
    node.start(extra=["--partitions", "8"])
    with node.client() as c:
        assert c.get(b"k").get.value == b"v"
        assert c.status().status.partitions == 8
