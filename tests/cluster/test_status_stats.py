"""kvcli status and stats, plain and --json, against what the node reports on the wire."""

import json

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def _populate(node):
    with node.client() as c:
        for i in range(5):
            assert c.put(b"s%d" % i, b"v").code == h.pb.OK
        assert c.delete(b"s0").code == h.pb.OK
        assert c.get(b"s1").code == h.pb.OK
        assert c.get(b"missing").code == h.pb.NOT_FOUND
        assert c.get(b"").code == h.pb.INVALID_ARGUMENT


def test_status_plain_and_json(daemons):
    node = daemons.start("status-node", args=["--partitions", "16", "--sync", "full"])
    _populate(node)
    ep = node.client_endpoint

    r = kvcli("status", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    text = r.stdout.decode()
    for shown in ["status-node", "16", "full", node.client_endpoint, node.feed_endpoint,
                  str(node.data_dir)]:
        assert shown in text, f"{shown!r} not in kvcli status output:\n{text}"

    r = kvcli("status", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    status = json.loads(r.stdout)
    assert isinstance(status, dict), status
    assert status["node_id"] == "status-node"
    assert status["partitions"] == 16
    assert status["sync"] == "full"
    assert status["keys"] == 4
    assert status["client_endpoint"] == node.client_endpoint
    assert status["feed_endpoint"] == node.feed_endpoint
    assert status["data_dir"] == str(node.data_dir)
    assert isinstance(status["uptime_ms"], int) and status["uptime_ms"] >= 0
    assert status["server_version"]


def _stats_dict(parsed):
    # Either {"name": value, ...} or [{"name": ..., "value": ...}, ...].
    if isinstance(parsed, dict):
        return parsed
    assert isinstance(parsed, list), parsed
    return {row["name"]: row["value"] for row in parsed}


def test_stats_plain_and_json(node):
    _populate(node)
    ep = node.client_endpoint

    r = kvcli("stats", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    stats = _stats_dict(json.loads(r.stdout))
    assert all(isinstance(v, int) for v in stats.values()), stats
    assert stats["puts"] == 5
    assert stats["deletes"] == 1
    assert stats["gets"] == 2
    assert stats["get_hits"] == 1
    assert stats["get_misses"] == 1
    assert stats["invalid_requests"] == 1
    assert stats["keys"] == 4
    assert stats["errors"] == 0

    with node.client() as c:
        wire = c.stats()
    assert list(stats) == [n for n in wire if n in stats], "kvcli changed the stable order"
    assert set(stats) == set(wire)

    r = kvcli("stats", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    text = r.stdout.decode()
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        assert len(parts) >= 2, f"unexpected line in kvcli stats: {line!r}"
        rows[parts[0].rstrip(":")] = parts[-1]
    assert set(rows) == set(wire), text
    assert rows["puts"] == "5" and rows["invalid_requests"] == "1", text


def test_status_and_stats_of_unreachable_node_exit_3():
    with h.DeadEndpoint() as ep:
        for cmd in ["status", "stats"]:
            for json_flag in [[], ["--json"]]:
                r = kvcli(cmd, endpoint=ep, global_args=["--timeout", "300", *json_flag])
                assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)
                assert r.stdout == b"", describe(r)
