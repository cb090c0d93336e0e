"""Memory in flight is bounded in bytes and handed back: clients that send large values
faster than the store takes them, without reading their replies, make the node stop
reading them (RESP) or refuse their writes OVERLOADED (ZeroMQ) instead of growing, every
write it took is answered and stored, and once the load ends the resident set falls back
near where it started.

The store is made slow on purpose (--sync full, one write per commit) so that writes pile
up in front of it; the bounds are set small on the command line so that the test needs a
few hundred MiB of load, not gigabytes."""

from __future__ import annotations

import contextlib
import os
import threading

import edgekv_harness as h
from edgekv_harness import pb

MiB = 1 << 20

MAX_INFLIGHT = 32 * MiB      # --max-inflight-bytes
CLIENT_BUFFER = 8 * MiB      # --resp-client-buffer-bytes
STAGE_MAX = 8 * MiB          # --stage-max-bytes: staged values per database file
DB_FILES = 2                 # the store's default for a new directory
# What the node may hold beyond the counted bytes: the command being parsed and the one
# admitted just below a bound (a few values), the writers' compression buffers, SQLite's
# page caches, libzmq's and the kernel's socket buffers, allocator slack.
SLACK = 24 * MiB
# Peak growth allowed: the counted bytes in flight, once more for values on their way
# between the parser and the request path (a value is counted where it is held, but a
# copy can be transient), the staged values of every file, and the slack above.
PEAK_GROWTH_MAX = 2 * MAX_INFLIGHT + DB_FILES * STAGE_MAX + SLACK
# The ZeroMQ API has one more place for requests: libzmq receives them on its own thread,
# ahead of the node reading them (and answering OVERLOADED), up to its receive high-water
# mark, a count: 64 (the least the node sets) of the largest requests, here 1 MiB.
ZMQ_VALUE = MiB
ZMQ_QUEUE_SLACK = 64 * ZMQ_VALUE
# After the load: what the node may keep of it (SQLite's caches, allocator metadata).
AFTER_GROWTH_MAX = 24 * MiB
# AddressSanitizer keeps freed memory in a quarantine of up to 256 MiB, by design: it
# raises the peak by that much, and what it holds is not handed back.
SANITIZE = bool(os.environ.get("EDGEKV_SANITIZE"))
QUARANTINE = 256 * MiB if SANITIZE else 0

ARGS = ["--max-inflight-bytes", str(MAX_INFLIGHT),
        "--resp-client-buffer-bytes", str(CLIENT_BUFFER),
        "--stage-max-bytes", str(STAGE_MAX),
        # The cache would keep the last values written, by design: not what is measured.
        "--read-cache-bytes", "0",
        "--sync", "full", "--group-commit-max", "1",
        "--log-level", "error"]


@contextlib.contextmanager
def notify_drained(node: h.Daemon):
    """Keeps reading the daemon's sd_notify datagrams: it sends STATUS= every 5 s and
    blocks once 10 of them wait unread, which a test this long would otherwise see."""
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            node.notify.drain(timeout=0.2)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        yield node
    finally:
        done.set()
        t.join()


def start(daemons, extra=()):
    return notify_drained(daemons.start("node1", args=[*ARGS, *extra]))


def memory(node: h.Daemon) -> dict[str, int]:
    kib = h.process_memory_kib(node.pid)
    return {k: v * 1024 for k, v in kib.items()}


def assert_peak_bounded(node: h.Daemon, baseline: int, load: str, extra: int = 0) -> None:
    peak = memory(node)["VmHWM"]
    allowed = PEAK_GROWTH_MAX + extra + QUARANTINE
    assert peak - baseline < allowed, (
        f"{load}: the node's peak resident set grew by {(peak - baseline) / MiB:.0f} MiB, "
        f"over the {allowed / MiB:.0f} MiB its bounds allow")


def assert_memory_handed_back(node: h.Daemon, baseline: int, load: str) -> None:
    with node.client() as c:
        h.wait_for(lambda: c.stats()["inflight_bytes"] == 0, 60, "the writes in flight to finish")
        if SANITIZE:
            return
        last = [0]

        def back_near_baseline():
            last[0] = memory(node)["VmRSS"]
            return last[0] - baseline < AFTER_GROWTH_MAX
        try:
            h.wait_for(back_near_baseline, 30, "the memory of the load to be handed back",
                       interval=0.1)
        except AssertionError:
            raise AssertionError(
                f"{load}: 30 s after the load the node still holds "
                f"{(last[0] - baseline) / MiB:.0f} MiB more than before it (allowed: "
                f"{AFTER_GROWTH_MAX / MiB:.0f} MiB)") from None


HOT_KEYS = 4  # keys each connection writes in turn


def value_of(n: int, i: int, size: int) -> bytes:
    return bytes([0x41 + n * 26 // 4 + i % 26]) * size


def pipeline_sets(node: h.Daemon, conns: int, count: int, size: int) -> None:
    """Each of `conns` connections sends `count` SETs of `size` bytes to a few hot keys
    before reading any reply, then reads them all: each must be OK, and the last value of
    each key stored. A key takes one write at a time, so writes pile up in the node."""
    socks = [h.RespConn(node.resp_port, timeout=120) for _ in range(conns)]
    try:
        def send(n: int) -> None:
            socks[n].send(b"".join(h.resp_encode("SET", f"c{n}:k{i % HOT_KEYS}",
                                                 value_of(n, i, size))
                                   for i in range(count)))

        senders = [threading.Thread(target=send, args=(n,)) for n in range(conns)]
        for t in senders:
            t.start()
        with node.client() as c:
            # The node stops reading: it reports the connections paused for a bound.
            h.wait_for(lambda: c.stats()["resp_pauses"] > 0, 60,
                       "the node to pause reading a connection")
        for t in senders:
            t.join(120)
            assert not t.is_alive(), "a client could not send its SETs within 120 s"
        for n, s in enumerate(socks):
            got = s.replies(count, timeout=120)
            assert got == ["OK"] * count, (n, [g for g in got if g != "OK"][:3])
        for n in range(conns):
            for i in range(count - HOT_KEYS, count):
                got = socks[0].command("GET", f"c{n}:k{i % HOT_KEYS}")
                assert got == value_of(n, i, size), (n, i)
    finally:
        for s in socks:
            s.close()


def test_one_connection_pipelining_1mib_sets_is_bounded_and_handed_back(daemons):
    with start(daemons) as node:
        baseline = memory(node)["VmRSS"]
        pipeline_sets(node, conns=1, count=400, size=MiB)
        assert_peak_bounded(node, baseline, "400 pipelined SETs of 1 MiB")
        assert_memory_handed_back(node, baseline, "400 pipelined SETs of 1 MiB")
        with node.client() as c:
            stats = c.stats()
            assert stats["resp_connections_paused"] == 0, stats["resp_connections_paused"]
            assert stats["resp_held_bytes"] == 0, stats["resp_held_bytes"]


def test_four_connections_pipelining_4mib_sets_are_bounded_and_handed_back(daemons):
    with start(daemons) as node:
        baseline = memory(node)["VmRSS"]
        pipeline_sets(node, conns=4, count=40, size=4 * MiB)
        assert_peak_bounded(node, baseline, "4 connections x 40 pipelined SETs of 4 MiB")
        assert_memory_handed_back(node, baseline, "4 connections x 40 pipelined SETs of 4 MiB")


def test_zeromq_flood_of_1mib_puts_is_refused_overloaded_not_buffered(daemons):
    with start(daemons, ["--max-value-bytes", str(ZMQ_VALUE)]) as node:
        baseline = memory(node)["VmRSS"]
        count = 300
        with node.client(timeout=120) as c:
            sent = {}
            for i in range(count):  # all sent before any reply is read
                key = b"z%d" % i
                sent[c.send(c.put_request(key, bytes([i % 251]) * ZMQ_VALUE))] = key
            outcome = {}
            for req_id, key in sent.items():
                resp = c.wait(req_id)
                assert resp.code in (pb.OK, pb.OVERLOADED), \
                    (key, h.code_name(resp.code), resp.message)
                if resp.code == pb.OVERLOADED:
                    assert "max-inflight-bytes" in resp.message, resp.message
                outcome[key] = resp.code
            assert_peak_bounded(node, baseline, f"{count} PUTs of 1 MiB", ZMQ_QUEUE_SLACK)
            shed = sum(1 for code in outcome.values() if code == pb.OVERLOADED)
            assert shed > 0, "no PUT was refused, though the flood was 9 times max-inflight-bytes"
            assert c.stats()["requests_shed"] == shed
            # Acknowledged writes are stored, refused ones are not.
            got = c.get_many(list(outcome), window=4)
            for i, key in enumerate(outcome):
                if outcome[key] == pb.OK:
                    want = bytes([i % 251]) * ZMQ_VALUE
                    assert got[key].code == pb.OK and got[key].get.value == want, key
                else:
                    assert got[key].code == pb.NOT_FOUND, (key, h.code_name(got[key].code))
        assert_memory_handed_back(node, baseline, f"{count} PUTs of 1 MiB")
