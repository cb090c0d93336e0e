"""The fault harness on real processes: five edgekvd in network namespaces.

A short seeded run (every kind of fault once: kill -9 and restart, SIGSTOP and SIGCONT, a
symmetric partition, a one-way one, a clock jump when libfaketime is installed) under
concurrent clients, judged after healing: hints handed back, one forced anti-entropy round
with no failed round, home replicas equal before the final reads, feeds missing and
duplicating nothing, and checker.py on the history; and a full disk on one node of
the cluster: that node's writes fail naming it, the cluster goes on serving QUORUM writes
and reads, and once space returns the node serves again and restarts with its data.

Skipped, with the reason, where the machine cannot make namespaces (not root, no
iptables). `make chaos` runs longer (chaos_run.py; docs/reliability.md, "Fault harness").
"""

from __future__ import annotations

import os
import subprocess

import pytest

import chaos_cluster as cc
import chaos_run
import netfab
from chaos_cluster import h, pb

# The seed of the short run: the schedule is a function of it (tests are deterministic in
# what they do; the interleaving of the clients' operations is the machine's).
SEED = int(os.environ.get("EDGEKV_CHAOS_SEED", "20261202"))


@pytest.fixture(scope="module", autouse=True)
def machine_can_run():
    reason = netfab.unavailable_reason()
    if reason:
        pytest.skip(reason)


# Under the sanitizers the nodes run several times slower: a fault's window can pass
# before it takes effect, so the run's count of effective faults says nothing there.
@pytest.mark.skipif(bool(os.environ.get("EDGEKV_SANITIZE")),
                    reason="timings of the fault schedule need an unsanitized build")
def test_a_short_seeded_run_keeps_every_guarantee(tmp_path):
    result = chaos_run.run(tmp_path / "run", SEED, duration=0,
                           anti_entropy=not os.environ.get(
                               "EDGEKV_CHAOS_NO_ANTI_ENTROPY_CHECKS"),
                           quorum_reads=bool(os.environ.get("EDGEKV_CHAOS_QUORUM_READS")))
    print(result.text())
    assert sum(result.faults.values()) == len(chaos_run.FAULT_KINDS) - \
        (0 if result.clock_jumps else 1), result.faults
    assert result.report.counts["operations"] > 500, result.report.counts
    # The faults took effect: the nodes showed each (a one-way cut need not show).
    for f in result.fault_log:
        if f["phase"] == "end" and f["fault"] != "one_way":
            assert f["effect_seen_after_s"] is not None, f
    assert not result.failures(), result.text()


# ---------------------------------------------------------------------------- a full disk

DISK_BYTES = 24 << 20
RESERVE_BYTES = 4 << 20
VALUE_BYTES = 32 << 10
FULL = 2  # node3


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {mount_point}: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def call(client: h.NativeClient, kind: str, key: bytes, value: bytes = b"",
         consistency=pb.QUORUM) -> "pb.Response":
    if kind == "put":
        req = client.put_request(key, value)
    elif kind == "get":
        req = client.get_request(key)
    else:
        req = client.new_request()
        getattr(req, "del").key = key
    req.consistency = consistency
    return client.call(req, timeout=10.0)


def keys_homed_on(client: h.NativeClient, node: str, count: int, prefix: str) -> list[bytes]:
    out = []
    for i in range(100000):
        key = f"{prefix}{i:05d}".encode()
        req = client.new_request()
        req.replicas.key = key
        resp = client.call(req)
        assert resp.code == pb.OK, resp.message
        if any(r.home and r.node_id == node for r in resp.replicas.replicas):
            out.append(key)
            if len(out) == count:
                return out
    raise AssertionError(f"no {count} keys homed on {node}")


def test_a_full_disk_on_one_node_fails_its_writes_only_until_space_returns(tmp_path,
                                                                            small_disk):
    with cc.ChaosCluster(tmp_path / "run", data_dirs={FULL: small_disk / "data"},
                         extra_args=["--disk-reserve-bytes", str(RESERVE_BYTES)],
                         clock_jumps=False) as cluster:
        cluster.wait_agreed()
        full = cluster.nodes[FULL]
        others = [n for n in cluster.nodes if n is not full]
        clients = {n.name: n.client(timeout=10.0) for n in cluster.nodes}
        try:
            c_full = clients[full.name]
            homed = keys_homed_on(c_full, full.name, 400, "full-")
            acked: dict[bytes, bytes] = {}
            # Written at ALL before the disk fills: every replica, the full node's too.
            for key in homed[:10]:
                resp = call(c_full, "put", key, b"before " + key, pb.ALL)
                assert resp.code == pb.OK, resp.message
                acked[key] = b"before " + key

            # Fill the disk: a filler file takes all but a little, then writes of keys homed
            # on the node take the rest, until its store says the disk is full.
            free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
            filler = small_disk / "filler"
            with open(filler, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, max(free - (1 << 20), 0))
            fill_keys = iter(homed[20:])

            def disk_full():
                if c_full.stats()["store_disk_full"] == 1:
                    return True
                key = next(fill_keys)
                resp = call(clients[others[0].name], "put", key, os.urandom(VALUE_BYTES))
                if resp.code == pb.OK:
                    acked[key] = None  # some value; checked below by version only
                return False
            h.wait_for(disk_full, 60, f"{full.name}'s store to find its disk full",
                       interval=0.01)

            # A write the full node must take (ALL) fails naming the full disk.
            key = homed[0]
            resp = call(c_full, "put", key, b"needs every replica", pb.ALL)
            assert resp.code == pb.IO_ERROR, (h.code_name(resp.code), resp.message)
            assert "disk full" in resp.message, resp.message
            # QUORUM writes and reads of its keys go on, through every node, itself included.
            for i, node in enumerate(cluster.nodes):
                c = clients[node.name]
                k, v = homed[10 + i], b"while full via " + node.name.encode()
                resp = call(c, "put", k, v)
                assert resp.code == pb.OK, (node.name, h.code_name(resp.code), resp.message)
                acked[k] = v
                got = call(c, "get", k)
                assert got.code == pb.OK and got.get.value == v, (node.name, got.message)

            # Space returns: the node takes writes again.
            filler.unlink()

            def writes_again():
                resp = call(c_full, "put", key, b"room again", pb.ALL)
                return resp.code == pb.OK
            h.wait_for(writes_again, 60, f"{full.name} to take writes after space returned",
                       interval=0.1)
            acked[key] = b"room again"
            assert c_full.stats()["store_disk_full"] == 0
        finally:
            for c in clients.values():
                c.close()

        # A restart on that disk: the node opens its data and serves it. Its replica of
        # the keys written at ALL before the disk filled is read first, before any read
        # could repair it; then every acknowledged write reads back at QUORUM.
        assert full.stop() == 0
        full.start(keep_ports=True)
        cluster.wait_agreed()
        with full.client(timeout=10.0) as c:
            for k in homed[1:10]:
                req = c.new_request()
                req.replicas.key = k
                states = {r.node_id: r for r in c.call(req).replicas.replicas}
                mine = states[full.name]
                assert mine.state == pb.REPLICA_LIVE, (k, mine)
                assert mine.value_bytes == len(acked[k]), (k, mine)
            for k, v in acked.items():
                if v is None:
                    continue
                got = call(c, "get", k)
                assert got.code == pb.OK and got.get.value == v, (k, got.message)
        assert not cluster.close()
