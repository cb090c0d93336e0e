"""kvcli watch over a cluster: one watch through one node sees the changes written through
every member, each once, in order per key, and what it missed from a node while cut off
from it is read back from that node's change log once it is reachable again."""

import re
import signal
from collections import Counter

import edgekv_harness as h

PRESET = ["--gossip-preset", "local"]


def start_cluster(daemons, size=3, extra=()):
    seed = daemons.new("node1", args=[*PRESET, *extra]).start()
    nodes = [seed]
    for i in range(2, size + 1):
        nodes.append(daemons.new(f"node{i}", args=[*PRESET, *extra, "--seeds",
                                                   seed.gossip_endpoint]).start())
    wait_agreed(nodes)
    return nodes


def wait_agreed(nodes):
    """Every node alive in every view and one placement on all: a node killed later
    restarts with the cluster's placement, not one from before the others joined."""
    view = h.ClusterView(nodes)
    try:
        h.wait_agreed(view, nodes)
    finally:
        view.close()


def changes(watch, prefix):
    """(op, key, value) of each event the watch printed under prefix, markers left out."""
    out = []
    for e in watch.json_lines():
        if e["key"].startswith(prefix) and "~" not in e["key"]:
            out.append((e["op"], e["key"], e.get("value")))
    return out


def wait_markers(watch, keys, what):
    for key in keys:
        watch.wait_line(lambda line, k=key: k in line, 20, f"{what}: {key!r}")


def wait_changes(watch, prefix, expected, what):
    """Waits until the watch printed as many changes under prefix as expected, then
    returns them. Each node's stream is in its log's order, but the streams interleave
    freely: a marker written last may come through one node before another node's
    read-back has handed out the changes written before it."""
    def enough():
        got = changes(watch, prefix)
        return got if len(got) >= len(expected) else None
    try:
        return h.wait_for(enough, 20, what, interval=0.05)
    except AssertionError:
        got = changes(watch, prefix)
        raise AssertionError(f"{what}: {len(got)} of {len(expected)} printed; missing "
                             f"{Counter(expected) - Counter(got)}") from None


def test_watch_through_one_node_sees_every_nodes_changes_once(daemons, watches):
    nodes = start_cluster(daemons)
    watch = watches.start(nodes[0].client_endpoint, "w:", global_args=["--json"])
    expected = []
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"w:~sync-{n.name}".encode())
    for n in nodes:
        with n.client() as c:
            for i in range(10):
                key = f"w:{n.name}:{i}"
                assert c.put(key.encode(), b"v1").code == h.pb.OK
                expected.append(("put", key, "v1"))
            assert c.put(f"w:{n.name}:0".encode(), b"v2").code == h.pb.OK
            expected.append(("put", f"w:{n.name}:0", "v2"))
            assert c.delete(f"w:{n.name}:1".encode()).code == h.pb.OK
            expected.append(("delete", f"w:{n.name}:1", None))
            assert c.put(b"x:other", b"not watched").code == h.pb.OK
            assert c.put(f"w:~end-{n.name}".encode(), b"end").code == h.pb.OK
    wait_markers(watch, [f"w:~end-{n.name}".encode() for n in nodes], "end markers")
    got = changes(watch, "w:")
    assert Counter(got) == Counter(expected), (got, expected)
    # Per key in the order written.
    for n in nodes:
        key = f"w:{n.name}:0"
        assert [v for op, k, v in got if k == key] == ["v1", "v2"], got


def test_changes_queued_for_a_dropped_watch_are_read_back_once(daemons, watches):
    # node2 drops a subscriber that holds over 64 KiB of its output unread; the watch is
    # stopped while node2 writes, so node2 drops it with events it never sent.
    nodes = start_cluster(daemons, extra=["--feed-subscriber-buffer-bytes", "65536"])
    node2 = nodes[1]
    watch = watches.start(nodes[0].client_endpoint, "d:", global_args=["--json"])
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"d:~sync-{n.name}".encode())
    with node2.client() as c:
        dropped_before = c.stats()["feed_subscribers_dropped"]
    watch.proc.send_signal(signal.SIGSTOP)
    expected = []
    try:
        value = b"x" * 65536
        n = 0
        with node2.client() as c:
            def dropped():
                nonlocal n
                if c.stats()["feed_subscribers_dropped"] > dropped_before:
                    return True
                for _ in range(8):
                    n += 1
                    key = f"d:{n:05d}"
                    assert c.put(key.encode(), value).code == h.pb.OK
                    expected.append(("put", key, value.decode()))
                return False
            h.wait_for(dropped, 60, "node2 to drop the stopped watch")
        # Written after the drop, while the watch is still stopped: not queued anywhere.
        with node2.client() as c:
            for i in range(5):
                key = f"d:after-{i}"
                assert c.put(key.encode(), b"late").code == h.pb.OK
                expected.append(("put", key, "late"))
    finally:
        watch.proc.send_signal(signal.SIGCONT)
    with node2.client() as c:
        assert c.put(b"d:~end", b"end").code == h.pb.OK
    wait_markers(watch, [b"d:~end"], "the end marker")
    wait_changes(watch, "d:", expected, "every change, the dropped ones read back")
    # Markers through every node: a change handed out twice would be out by now.
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"d:~last-{n.name}".encode())
    got = changes(watch, "d:")
    assert len(got) == len(expected), (len(got), len(expected))
    assert Counter(got) == Counter(expected)


def test_a_node_killed_and_restarted_is_followed_again_without_loss_or_repeat(daemons, watches):
    nodes = start_cluster(daemons)
    node1, node2, node3 = nodes
    watch = watches.start(node1.client_endpoint, "k:", global_args=["--json"])
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"k:~sync-{n.name}".encode())
    expected = []
    with node2.client() as c:
        for i in range(5):
            assert c.put(f"k:before-{i}".encode(), b"b").code == h.pb.OK
            expected.append(("put", f"k:before-{i}", "b"))
    node2.kill()
    # The other nodes' changes keep coming while node2 is down.
    with node3.client() as c:
        assert c.put(b"k:while-down", b"w").code == h.pb.OK
        expected.append(("put", "k:while-down", "w"))
    watch.wait_line(lambda line: b"k:while-down" in line, 20, "a change through node3")
    node2.start(keep_ports=True)
    # A node just restarted knows the others once gossip has met them again; until then
    # it answers UNAVAILABLE, as it should. The watch finds node2 again on its own time
    # (its members refresh): the writes below start before it has, most of the time.
    wait_agreed(nodes)
    with node2.client() as c:
        # Serving again once the others' connections to it are back: a probe outside the
        # watched prefix, so that no event of it is expected.
        h.wait_for(lambda: c.put(b"probe", b"p").code == h.pb.OK or None, 30,
                   "node2 serving writes again", interval=0.05)
        for i in range(20):
            assert c.put(f"k:after-{i}".encode(), b"a").code == h.pb.OK
            expected.append(("put", f"k:after-{i}", "a"))
        assert c.put(b"k:~end", b"end").code == h.pb.OK
    wait_markers(watch, [b"k:~end"], "the end marker")
    wait_changes(watch, "k:", expected, "every change")
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"k:~last-{n.name}".encode())
    got = changes(watch, "k:")
    assert Counter(got) == Counter(expected), (got, expected)
    assert len(got) == len(expected)


def test_resume_file_carries_the_cursor_across_watch_runs(daemons, watches, tmp_path):
    nodes = start_cluster(daemons)
    resume = tmp_path / "cursor"
    first = watches.start(nodes[0].client_endpoint, "r:", "--resume-file", str(resume),
                          "--count", "3", global_args=["--json"], name="first")
    with nodes[1].client() as c:
        n = 0

        def exited():
            nonlocal n
            if first.proc.poll() is not None:
                return True
            n += 1
            assert c.put(f"r:a{n:03d}".encode(), b"1").code == h.pb.OK
            return False
        h.wait_for(exited, 20, "the first watch to print 3 events and exit", interval=0.05)
    assert first.stop() == h.EXIT_OK, first.stderr_text()
    printed = {e["key"] for e in first.json_lines()}
    assert resume.read_text().startswith("edgekv-feed-cursor 2\n")
    # Written while no watch runs; the next run starts where the first stopped.
    with nodes[2].client() as c:
        assert c.put(b"r:gap", b"2").code == h.pb.OK
    second = watches.start(nodes[0].client_endpoint, "r:", "--resume-file", str(resume),
                           global_args=["--json"], name="second")
    with nodes[1].client() as c:
        assert c.put(b"r:~end", b"end").code == h.pb.OK
    # The end marker and the gap come from different nodes, in either order.
    second.wait_line(lambda line: b"r:~end" in line, 20, "the end marker")
    second.wait_line(lambda line: b"r:gap" in line, 20, "the change made between the runs")
    keys = [e["key"] for e in second.json_lines()]
    # The first watch followed node2 from before its first printed key was written (keys
    # written before it started are in neither run): the second prints the rest, once.
    first_printed = min(int(k[len("r:a"):]) for k in printed)
    written_since = {f"r:a{i:03d}" for i in range(first_printed, n + 1)}
    want = sorted(written_since - printed | {"r:gap", "r:~end"})
    # The cursor carries the de-duplicator's newest keys: what the first run printed from
    # one replica's stream does not come again from another whose copy it had not read.
    assert sorted(keys) == want, (keys, printed)
    assert "\nmarks\n" in resume.read_text()


def changes_since(c, from_seq, prefixes=(), max_events=0):
    req = c.new_request()
    for partition, seq in from_seq.items():
        req.changes_since.from_seq[partition] = seq
    req.changes_since.prefixes.extend(prefixes)
    req.changes_since.max_events = max_events
    return c.call(req)


def test_changes_since_reads_past_a_cursor_filtered_paged_and_reports_trimming(daemons):
    node = daemons.start("node1", args=["--partitions", "1", "--changelog-keep", "5",
                                        "--ttl-sweep-interval-ms", "20"])
    with node.client() as c:
        # An empty map: positions only.
        resp = changes_since(c, {})
        assert resp.code == h.pb.OK, resp.message
        assert [(p.partition, p.through_seq, p.last_seq) for p in
                resp.changes_since.positions] == [(0, 0, 0)]
        for key, value in [(b"a:1", b"x"), (b"b:1", b"y"), (b"a:2", b"z"), (b"a:1", b"w")]:
            assert c.put(key, value).code == h.pb.OK
        # Prefix-filtered, the overwritten put of a:1 (seq 1) left out, seq 4 accounted for.
        resp = changes_since(c, {0: 1}, [b"a:"])
        assert resp.code == h.pb.OK, resp.message
        got = [(e.seq, e.key, e.value) for e in resp.changes_since.events]
        assert got == [(3, b"a:2", b"z"), (4, b"a:1", b"w")], got
        p = resp.changes_since.positions[0]
        assert (p.through_seq, p.last_seq, p.lost_to, resp.changes_since.more) == (4, 4, 0, False)
        # Paged: one event per reply, `more` until the end.
        resp = changes_since(c, {0: 1}, [b"a:"], max_events=1)
        assert [e.seq for e in resp.changes_since.events] == [3]
        assert resp.changes_since.more and resp.changes_since.positions[0].through_seq == 3
        # Bad input is refused, naming the problem.
        resp = changes_since(c, {7: 1})
        assert resp.code == h.pb.INVALID_ARGUMENT and "partition 7" in resp.message, resp
        resp = changes_since(c, {0: 1}, [b"p"] * 65)
        assert resp.code == h.pb.INVALID_ARGUMENT and "65 prefixes" in resp.message, resp
        resp = changes_since(c, {0: 1}, [b"p" * 2000])
        assert resp.code == h.pb.INVALID_ARGUMENT and "max-key-bytes" in resp.message, resp
        # Trimmed to 5 entries: a read from seq 2 learns that 2..15 are gone.
        c.put_many((b"t%02d" % i, b"v") for i in range(16))
        h.wait_for(lambda: c.changes(0, 1).changes.events[0].seq == 16, 15, "trimming")
        resp = changes_since(c, {0: 2})
        p = resp.changes_since.positions[0]
        assert (p.lost_to, p.through_seq, p.last_seq) == (15, 20, 20), p
        assert [e.seq for e in resp.changes_since.events] == [16, 17, 18, 19, 20]


def test_a_resumed_watch_reports_changes_trimmed_before_it_read_them(daemons, watches, tmp_path):
    node = daemons.start("node1", args=["--partitions", "1", "--changelog-keep", "5",
                                        "--ttl-sweep-interval-ms", "20"])
    resume = tmp_path / "cursor"
    first = watches.start(node.client_endpoint, "--resume-file", str(resume), "--count", "1",
                          name="first")
    with node.client() as c:
        h.wait_for(lambda: first.proc.poll() is not None or
                   c.put(b"first", b"v").code != h.pb.OK, 20, "the first watch to exit",
                   interval=0.05)
        assert first.stop() == h.EXIT_OK, first.stderr_text()
        at = int(next(line.split()[2] for line in resume.read_text().splitlines()
                      if line.startswith("node1 0 ")))  # "node1 0 SEQ"
        # 20 changes while no watch runs: all but the last 5 are trimmed.
        c.put_many((b"gone%02d" % i, b"v") for i in range(20))
        h.wait_for(lambda: c.changes(0, 1).changes.events[0].seq > at + 1, 15, "trimming")
        # Where gone19 was logged: "first" may have been put again after the one the watch
        # printed (while it was exiting), so the gone keys need not follow `at` directly.
        last = next(e.seq for e in c.change_log(0) if e.key == b"gone19")
    second = watches.start(node.client_endpoint, "--resume-file", str(resume), name="second")
    with node.client() as c:
        second.sync(c, b"~end")
    pattern = re.compile(r"node node1 partition 0: changes seq (\d+) to (\d+) were trimmed")
    found = h.wait_for(lambda: pattern.search(second.stderr_text()), 10,
                       "the loss reported on stderr")
    lost_from, lost_to = int(found.group(1)), int(found.group(2))
    assert lost_from == at + 1, (found.group(0), at)
    # gone<i> was logged at seq last - 19 + i: the ones the log still held were printed, once.
    printed = [line.split()[1] for line in second.lines() if line.startswith(b"put gone")]
    expected = [b"gone%02d" % i for i in range(20) if last - 19 + i > lost_to]
    assert printed == expected, (printed, lost_to, last)


def test_watch_follows_a_joining_node_after_the_node_it_was_given_died(daemons, watches):
    nodes = start_cluster(daemons)
    node1, node2, node3 = nodes
    watch = watches.start(node1.client_endpoint, "j:", global_args=["--json"])
    for n in nodes:
        with n.client() as c:
            watch.sync(c, f"j:~sync-{n.name}".encode())
    node1.kill()
    with node2.client() as c:
        assert c.put(b"j:from-node2", b"v").code == h.pb.OK
    watch.wait_line(lambda line: b"j:from-node2" in line, 20, "a change through node2")
    # A node joins through node2 while node1, the one the watch was given, is down: the
    # members are re-read from the others, and the newcomer's changes come through.
    node4 = daemons.new("node4", args=[*PRESET, "--seeds", node2.gossip_endpoint]).start()
    # A new node serves once it holds the cluster's placement (it does not start one of its
    # own while it expects to find one).
    with node4.client() as c4:
        h.wait_for(lambda: "node2" in h.ring(c4).members or None, 30, "node4 holds the placement")
    with node4.client() as c:
        watch.sync(c, b"j:from-node4", timeout=60)
    assert Counter(e["key"] for e in watch.json_lines())[b"j:from-node2".decode()] == 1
