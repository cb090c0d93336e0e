"""kvcli watch: a prefix-filtered view of the change feed, in commit order."""

import base64
import json

import edgekv_harness as h
from edgekv_harness import describe


def _is_marker(key: str) -> bool:
    return key.startswith("user:~")


def test_prefix_watch_sees_only_its_prefix_in_order(node, watches):
    watch = watches.start(node.client_endpoint, "user:", global_args=["--json"])
    expected = []  # (op, key, value) of every user: change after the marker, in order
    with node.client() as c:
        watch.sync(c, b"user:~marker")
        for i in range(1, 31):
            user, order = f"user:{i:02d}", f"order:{i:02d}"
            assert c.put(user.encode(), f"name-{i}".encode()).code == h.pb.OK
            expected.append(("put", user, f"name-{i}"))
            assert c.put(order.encode(), f"total-{i}".encode()).code == h.pb.OK
            if i % 10 == 0:
                assert c.delete(f"user:{i - 5:02d}".encode()).code == h.pb.OK
                expected.append(("delete", f"user:{i - 5:02d}", None))
                assert c.delete(order.encode()).code == h.pb.OK
        # Overwrites are events too, and "users:" shares the "user" prefix but not "user:".
        assert c.put(b"user:01", b"renamed").code == h.pb.OK
        expected.append(("put", "user:01", "renamed"))
        assert c.put(b"users:count", b"30").code == h.pb.OK
        assert c.put(b"user:~end", b"done").code == h.pb.OK

    watch.wait_line(lambda line: b"user:~end" in line, 15, "the end marker")
    events = []
    for raw in watch.lines():
        try:
            events.append(json.loads(raw))
        except ValueError:
            raise AssertionError(f"watch --json printed a line that is not JSON: {raw!r}")
    for event in events:
        assert isinstance(event, dict), event
        for field in ("op", "key", "seq", "partition", "version", "expiry_ms"):
            assert field in event, f"event without {field!r}: {event}"
        assert isinstance(event["seq"], int) and event["seq"] >= 1, event
        assert isinstance(event["partition"], int) and 0 <= event["partition"], event
        assert event["key"].startswith("user:"), f"event outside the prefix: {event}"
        if event["op"] == "put":
            assert "value" in event, f"put event without a value: {event}"

    seen = [e for e in events if not _is_marker(e["key"])]
    got = [(e["op"], e["key"], e.get("value") if e["op"] == "put" else None) for e in seen]
    assert got == expected

    # Sequence numbers grow within each partition (gapless per partition, and this watch
    # saw every user: event after the marker, but other prefixes share partitions).
    last_seq = {}
    for e in events:
        part = e["partition"]
        assert e["seq"] > last_seq.get(part, 0), (e, last_seq)
        last_seq[part] = e["seq"]

    # Each event's partition and seq are where the node logged that change.
    with node.client() as c:
        partitions = c.status().status.partitions
        for e in events:
            assert e["partition"] < partitions, (e, partitions)
            resp = c.changes(e["partition"], e["seq"], max_events=1)
            assert resp.code == h.pb.OK, (e, h.code_name(resp.code), resp.message)
            logged = resp.changes.events[0]
            assert (logged.seq, logged.key.decode()) == (e["seq"], e["key"]), (e, logged)


def test_plain_watch_prints_one_line_per_event(node, watches):
    watch = watches.start(node.client_endpoint, "user:")
    with node.client() as c:
        watch.sync(c, b"user:~marker")
        before = len(watch.lines())
        assert c.put(b"order:1", b"not-for-this-watch").code == h.pb.OK
        assert c.put(b"user:alice", b"Alice Liddell").code == h.pb.OK
        assert c.delete(b"user:alice").code == h.pb.OK
        assert c.put(b"user:~end", b"done").code == h.pb.OK
    watch.wait_line(lambda line: b"user:~end" in line, 15, "the end marker")
    lines = watch.lines()[before:]
    lines = [line for line in lines if b"user:~marker" not in line]
    assert len(lines) == 3, lines
    put_line, del_line, end_line = lines
    assert b"put" in put_line and b"user:alice" in put_line and b"Alice Liddell" in put_line
    assert b"del" in del_line and b"user:alice" in del_line, del_line
    assert b"user:~end" in end_line
    assert not any(b"order:" in line for line in watch.lines())


def test_watch_count_exits_after_n_events(node, watches):
    watch = watches.start(node.client_endpoint, "cnt:", "--count", "3")
    with node.client() as c:
        # Keep writing until watch has seen three events and exited: no slow-joiner race.
        n = 0

        def exited():
            nonlocal n
            if watch.proc.poll() is not None:
                return True
            n += 1
            assert c.put(f"cnt:{n}".encode(), b"x").code == h.pb.OK
            assert c.put(f"other:{n}".encode(), b"x").code == h.pb.OK
            return False
        h.wait_for(exited, 20, "watch --count 3 to exit", interval=0.02)
    assert watch.stop() == h.EXIT_OK, watch.stderr_text()
    lines = watch.lines()
    assert len(lines) == 3, lines
    assert all(b"cnt:" in line for line in lines), lines


def test_watch_without_prefix_sees_every_key(node, watches):
    watch = watches.start(node.client_endpoint, global_args=["--json"])
    with node.client() as c:
        watch.sync(c, b"~marker")
        for key in [b"a", b"b:1", b"zzz"]:
            assert c.put(key, b"v").code == h.pb.OK
        assert c.put(b"~end", b"done").code == h.pb.OK
    watch.wait_line(lambda line: b"~end" in line, 15, "the end marker")
    keys = [e["key"] for e in watch.json_lines() if not e["key"].startswith("~")]
    assert keys == ["a", "b:1", "zzz"]


def test_watch_of_unreachable_node_fails_cleanly():
    # Nothing answers there: status (used to find the feed) cannot be answered.
    with h.DeadEndpoint() as dead:
        r = h.kvcli("watch", "x", endpoint=dead, global_args=["--timeout", "300"], timeout=30)
    assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)
    assert r.stdout == b""


def test_watch_escapes_bytes_in_text_and_base64_in_json(node, watches):
    plain = watches.start(node.client_endpoint, "bin:", name="plain")
    as_json = watches.start(node.client_endpoint, "bin:", global_args=["--json"], name="json")
    key, value = b"bin:a b\\c", b"\x00\xff\n\tend \\"
    with node.client() as c:
        plain.sync(c, b"bin:~marker")
        as_json.sync(c, b"bin:~marker")
        assert c.put(key, value).code == h.pb.OK
        assert c.put(b"bin:utf8", "\u00e9t\u00e9".encode()).code == h.pb.OK
        assert c.put(b"bin:\xff", b"x").code == h.pb.OK
        assert c.put(b"bin:~end", b"done").code == h.pb.OK
    plain.wait_line(lambda line: b"bin:~end" in line, 15, "the end marker (text)")
    as_json.wait_line(lambda line: b"bin:~end" in line, 15, "the end marker (json)")

    lines = [line for line in plain.lines() if b"~marker" not in line]
    assert lines[0] == b"put bin:a\\x20b\\\\c \\x00\\xff\\n\\tend \\\\", lines[0]
    assert lines[1] == "put bin:utf8 \\xc3\\xa9t\\xc3\\xa9".encode(), lines[1]
    assert lines[2] == b"put bin:\\xff x", lines[2]

    events = [e for e in as_json.json_lines() if e.get("key") != "bin:~marker"]
    assert events[0]["key"] == key.decode()
    assert "value" not in events[0], events[0]
    assert base64.b64decode(events[0]["value_base64"]) == value
    assert events[1]["value"] == "\u00e9t\u00e9"
    assert "key" not in events[2] and base64.b64decode(events[2]["key_base64"]) == b"bin:\xff"


def test_watch_with_explicit_feed_endpoint(node, watches):
    # --feed-endpoint skips asking the node: the client endpoint may even be dead.
    with h.DeadEndpoint() as dead:
        watch = watches.start(dead, "f:", "--feed-endpoint", node.feed_endpoint)
        with node.client() as c:
            watch.sync(c, b"f:marker")


def test_ipc_endpoints(daemons, watches, tmp_path):
    sock_dir = h.short_socket_path(tmp_path, "x").parent
    client_ep, feed_ep = f"ipc://{sock_dir}/client.ipc", f"ipc://{sock_dir}/feed.ipc"
    node = daemons.new("node1", endpoints=(client_ep, feed_ep)).start()
    r = h.kvcli("put", "ipc-key", "ipc-value", endpoint=client_ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = h.kvcli("status", endpoint=client_ep, global_args=["--json"])
    assert json.loads(r.stdout)["feed_endpoint"] == feed_ep
    watch = watches.start(client_ep, "ipc-")
    with h.NativeClient(client_ep) as c:
        watch.sync(c, b"ipc-marker")
        assert c.get(b"ipc-key").get.value == b"ipc-value"
    assert node.stop() == 0


def test_watch_keeps_running_across_a_node_restart(node, watches):
    watch = watches.start(node.client_endpoint, "r:")
    with node.client() as c:
        watch.sync(c, b"r:before")
    assert node.stop() == 0
    node.start(keep_ports=True)
    assert watch.proc.poll() is None, watch.stderr_text()
    with node.client() as c:
        watch.sync(c, b"r:after")  # ZeroMQ reconnected the subscription by itself
    assert watch.proc.poll() is None
