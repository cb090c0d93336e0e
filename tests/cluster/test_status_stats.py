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


def test_stats_plain_and_json(daemons):
    # The hour-long sweep interval keeps sweeps (which apply everything staged) out of it,
    # and six writes are far below the default stage-apply-at (8192): nothing is applied.
    node = daemons.start("node1", args=["--ttl-sweep-interval-ms", "3600000"])
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
    # The invalid request was answered with an error; the miss was not an error.
    assert stats["errors"] == stats["api_errors"] == 1, stats
    # The five puts and the delete were committed and staged, and none was applied yet.
    assert stats["store_group_writes"] == 6, stats
    assert stats["store_staged_writes"] == 6, stats
    assert stats["store_apply_batches"] == 0, stats
    assert (stats["store_puts_applied"], stats["store_deletes_applied"]) == (5, 1), stats
    # A few commits are far from the 8192 WAL pages that wake a checkpointer.
    assert stats["store_checkpoints"] == 0, stats
    # A single node keeps no hints.
    assert (stats["store_hints"], stats["store_hint_bytes"]) == (0, 0), stats

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


def _info_stats(node) -> dict[str, str]:
    with h.RespConn(node.resp_port) as conn:
        text = conn.command("INFO", "stats").decode()
    rows = {}
    for line in text.split("\r\n"):
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            rows[name] = value
    return rows


def test_staged_writes_and_apply_batches(daemons):
    # One partition makes one database file, so one stage file counts every write. A batch
    # is due at 4 staged: 4 writes, more if the applier fell behind. So after 10 writes,
    # once fewer than 4 are staged, at least two batches applied and none is under way.
    # The hour-long sweep interval keeps sweeps (which apply everything staged) out of it.
    node = daemons.start("staging-node", args=[
        "--partitions", "1", "--stage-apply-at", "4", "--stage-apply-batch", "4",
        "--ttl-sweep-interval-ms", "3600000"])
    with node.client() as c:
        for i in range(10):
            assert c.put(b"staged%d" % i, b"v").code == h.pb.OK
        # Batches apply on a thread of their own, after their writes were acknowledged.
        h.wait_for(lambda: c.stats()["store_staged_writes"] < 4, 10, "fewer than 4 staged")
        wire = c.stats()
    staged, batches = wire["store_staged_writes"], wire["store_apply_batches"]
    assert batches >= 2, wire
    assert wire["store_apply_failures"] == 0, wire
    assert wire["store_group_writes"] == 10 and wire["keys"] == 10, wire

    # The same figures everywhere they are shown.
    r = kvcli("stats", endpoint=node.client_endpoint, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    stats = json.loads(r.stdout)
    assert (stats["store_staged_writes"], stats["store_apply_batches"]) == (staged, batches), stats
    r = kvcli("stats", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    rows = dict(line.split() for line in r.stdout.decode().splitlines())
    assert (rows["store_staged_writes"], rows["store_apply_batches"]) == (
        str(staged), str(batches)), rows
    info = _info_stats(node)
    assert (info["staged_writes"], info["apply_batches"], info["apply_failures"]) == (
        str(staged), str(batches), "0"), info

    # A clean stop applies what is staged, so the next run starts with nothing staged and
    # nothing left over to apply, and still has every write.
    assert node.stop() == 0
    node.start()
    assert "left by the previous run" not in node.stderr_text(), node.stderr_text()
    with node.client() as c:
        wire = c.stats()
        assert c.get(b"staged9").get.value == b"v"
    assert (wire["store_staged_writes"], wire["store_apply_batches"]) == (0, 0), wire
    assert wire["keys"] == 10, wire
    info = _info_stats(node)
    assert (info["staged_writes"], info["apply_batches"]) == ("0", "0"), info


def test_status_and_stats_of_unreachable_node_exit_3():
    with h.DeadEndpoint() as ep:
        for cmd in ["status", "stats"]:
            for json_flag in [[], ["--json"]]:
                r = kvcli(cmd, endpoint=ep, global_args=["--timeout", "300", *json_flag])
                assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)
                assert r.stdout == b"", describe(r)
