"""The change feed and the change log behind it (docs/protocol.md, "Change feed"):
per-partition sequence numbers are gapless, survive restarts and crashes, and a
`changes` request returns what the feed published, for gap recovery."""

import os
import signal
import time

import edgekv_harness as h
from edgekv_harness import pb

PARTITIONS = 4


def _all_logs(c, partitions=PARTITIONS):
    return {p: c.change_log(p) for p in range(partitions)}


def _assert_gapless(logs, first_seq=None):
    for p, events in logs.items():
        seqs = [e.seq for e in events]
        if not seqs:
            continue
        start = seqs[0] if first_seq is None else first_seq
        assert seqs == list(range(start, start + len(seqs))), f"partition {p}: {seqs}"


def test_feed_and_change_log_agree(daemons):
    node = daemons.start("node1", args=["--partitions", str(PARTITIONS)])
    with node.client() as c, h.FeedSubscriber(node.feed_endpoint, b"cl:") as feed:
        feed.sync(c, b"cl:~marker")
        for i in range(40):
            assert c.put(b"cl:%02d" % i, b"v%02d" % i).code == pb.OK
        for i in range(0, 40, 4):
            assert c.delete(b"cl:%02d" % i).code == pb.OK
        for i in range(1, 40, 4):
            assert c.put(b"cl:%02d" % i, b"second").code == pb.OK
        assert c.put(b"elsewhere", b"not subscribed").code == pb.OK
        # The end marker is written last, after every other write was acknowledged. A
        # write's event is published before its reply and the feed keeps publish order, so
        # every event of the writes above (and any they should not have had) comes before
        # the marker's.
        assert c.put(b"cl:~end", b"end").code == pb.OK
        feed.wait_event(lambda e: e.key == b"cl:~end", 15, "the end marker")

        logs = _all_logs(c)
        _assert_gapless(logs, first_seq=1)
        by_seq = {(e.partition, e.seq): e for events in logs.values() for e in events}
        assert sum(len(v) for v in logs.values()) == c.stats()["feed_events"]

        published = [e for e in feed.events if e.key != b"cl:~marker"]
        assert not any(e.key == b"elsewhere" for e in feed.events)
        assert len(published) == 40 + 10 + 10 + 1
        for e in published:
            logged = by_seq[(e.partition, e.seq)]
            assert (logged.op, logged.key, logged.version, logged.expiry_ms) == \
                   (e.op, e.key, e.version, e.expiry_ms), (e, logged)
            assert e.partition < PARTITIONS
        # The feed carries every put's value; the log keeps a put's value only while it is
        # the key's current state.
        for e in published:
            if e.op == pb.PUT:
                assert e.value, e
                logged = by_seq[(e.partition, e.seq)]
                current = c.get(e.key)
                if current.code == pb.OK and current.get.version == e.version:
                    assert logged.value == e.value, (e, logged)
                else:
                    assert logged.value == b"", (e, logged)
            else:
                assert e.value == b"", e
        # Per partition the feed's sequence numbers only grow.
        last = {}
        for e in feed.events:
            assert e.seq > last.get(e.partition, 0), e
            last[e.partition] = e.seq
        for p in range(PARTITIONS):
            resp = c.changes(p, 1, max_events=1)
            assert resp.code == pb.OK and len(resp.changes.events) <= 1
            assert resp.changes.last_seq == (logs[p][-1].seq if logs[p] else 0)


def test_sequence_numbers_continue_after_restart_and_kill_9(daemons):
    node = daemons.start("node1", args=["--partitions", "1", "--sync", "full"])
    with node.client() as c:
        c.put_many((b"k%03d" % i, b"v") for i in range(20))
        assert c.changes(0, 1).changes.last_seq == 20
    assert node.stop() == 0
    node.start()
    with node.client() as c:
        assert c.changes(0, 1).changes.last_seq == 20
        assert c.put(b"after-restart", b"v").code == pb.OK
        assert c.changes(0, 1).changes.last_seq == 21
        before = c.get(b"k000").get.version
        c.put_many((b"k%03d" % i, b"w") for i in range(5))
        assert c.get(b"k000").get.version.hlc > before.hlc
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait(h.STOP_TIMEOUT)
    node.start()
    with node.client() as c:
        log = c.change_log(0)
        assert [e.seq for e in log] == list(range(1, 27))
        assert c.put(b"after-crash", b"v").code == pb.OK
        assert c.changes(0, 1).changes.last_seq == 27


def test_change_log_is_trimmed_to_changelog_keep_and_seq_survives_it(daemons):
    node = daemons.start("node1", args=["--partitions", "1", "--changelog-keep", "5",
                                        "--ttl-sweep-interval-ms", "20"])
    with node.client() as c:
        c.put_many((b"t%02d" % i, b"v%02d" % i) for i in range(20))

        def trimmed():
            log = c.change_log(0)
            return [e.seq for e in log] == [16, 17, 18, 19, 20] and log
        log = h.wait_for(trimmed, 15, "the change log to be trimmed to 5 entries")
        assert [e.key for e in log] == [b"t%02d" % i for i in range(15, 20)]
        resp = c.changes(0, 1)
        assert resp.changes.last_seq == 20
        assert resp.changes.events[0].seq == 16  # a reader asking for older ones sees the gap
    assert node.stop() == 0
    node.start()
    with node.client() as c:
        assert c.put(b"next", b"v").code == pb.OK
        assert c.changes(0, 1).changes.last_seq == 21
        assert c.get(b"t00").get.value == b"v00"  # trimming the log keeps the data


def test_key_that_expires_while_the_node_is_down_is_swept_after_restart(daemons):
    node = daemons.start("node1", args=["--partitions", "1", "--ttl-sweep-interval-ms", "50"])
    with node.client() as c:
        resp = c.put(b"short", b"lived", ttl_ms=500)
        assert resp.code == pb.OK
        expiry_ms = resp.put.expiry_ms
        assert c.put(b"long", b"lived").code == pb.OK
    assert node.stop() == 0
    h.wait_for(lambda: time.time() * 1000 > expiry_ms + 50, 10, "the TTL to run out")
    node.start()
    with node.client() as c:
        assert c.get(b"short").code == pb.NOT_FOUND
        assert c.get(b"long").get.value == b"lived"
        assert c.status().status.keys == 1

        def expire_logged():
            return [e for e in c.change_log(0) if e.op == pb.EXPIRE]
        expired = h.wait_for(expire_logged, 10, "an EXPIRE entry in the change log")
        assert [e.key for e in expired] == [b"short"]
        assert expired[0].expiry_ms == expiry_ms
        assert c.stats()["store_expired"] == 1


def test_deleted_or_overwritten_ttl_key_never_expires(daemons):
    node = daemons.start("node1", args=["--partitions", "1", "--ttl-sweep-interval-ms", "20"])
    with node.client() as c:
        assert c.put(b"deleted", b"v", ttl_ms=200).code == pb.OK
        assert c.put(b"overwritten", b"v", ttl_ms=200).code == pb.OK
        assert c.put(b"extended", b"v", ttl_ms=200).code == pb.OK
        assert c.put(b"expires", b"v", ttl_ms=200).code == pb.OK
        assert c.delete(b"deleted").code == pb.OK
        assert c.put(b"overwritten", b"no ttl").code == pb.OK
        assert c.put(b"extended", b"an hour", ttl_ms=3600_000).code == pb.OK
        h.wait_for(lambda: any(e.op == pb.EXPIRE for e in c.change_log(0)), 10,
                   "the expiry of 'expires'")
        # Let several more sweeps run past the original expiry.
        groups = c.stats()["store_commit_groups"]
        h.wait_for(lambda: c.stats()["store_commit_groups"] >= groups + 5, 10, "more sweeps")
        expired = [e.key for e in c.change_log(0) if e.op == pb.EXPIRE]
        assert expired == [b"expires"]
        assert c.get(b"overwritten").get.value == b"no ttl"
        assert c.get(b"extended").get.value == b"an hour"
        assert c.get(b"deleted").code == pb.NOT_FOUND
        assert c.status().status.keys == 2


def test_many_expiries_are_swept_in_batches(daemons):
    # More expired keys than one sweep takes: the sweeper goes on without waiting an interval.
    node = daemons.start("node1", args=["--partitions", "2", "--ttl-sweep-batch-max", "10",
                                        "--ttl-sweep-interval-ms", "1000"])
    with node.client() as c:
        ids = [c.send(c.put_request(b"e%03d" % i, b"v", ttl_ms=100)) for i in range(200)]
        for req_id in ids:
            assert c.wait(req_id).code == pb.OK
        assert c.put(b"stays", b"v").code == pb.OK
        start = time.monotonic()
        h.wait_for(lambda: c.stats()["store_expired"] == 200, 10, "200 expiries")
        # 20 batches at one per second would take 20 s.
        assert time.monotonic() - start < 8
        assert c.status().status.keys == 1
        assert c.stats()["expired_events"] == 200
