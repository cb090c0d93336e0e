"""The change feed bounds what subscribers can cost: the size and number of subscriptions,
connections, and the output queued for a subscriber that does not read. None of it may
grow the daemon's memory without bound or stall the clients of the same node.

Each test measures the daemon's memory (VmHWM, the peak resident set, from /proc) and the
worst GET latency of a client polling the node throughout, and records them (`timings`).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import edgekv_harness as h

MiB = 1024 * 1024
# Worst GET latency a client may see while subscribers misbehave. A GET takes well under a
# millisecond; the slack is for a loaded 2-core machine, and still far below the stalls
# the feed caused before its bounds (0.5 s to 50 s).
LATENCY_BOUND = 0.3


def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class LatencyProbe:
    """A client on its own thread issuing GETs back to back, keeping the slowest."""

    def __init__(self, node: h.Daemon):
        self.node = node
        self.worst = 0.0
        self.count = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.node.client(timeout=60.0) as c:
                while not self._stop.is_set():
                    start = time.monotonic()
                    resp = c.get(b"probe")
                    elapsed = time.monotonic() - start
                    assert resp.code in (h.pb.OK, h.pb.NOT_FOUND), resp
                    self.worst = max(self.worst, elapsed)
                    self.count += 1
        except BaseException as e:  # reported by stop()
            self.error = e

    def __enter__(self) -> "LatencyProbe":
        self._thread.start()
        h.wait_for(lambda: self.count > 0, 10, "the first probe GET")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the probe GET never returned"
        if self.error is not None:
            raise self.error


def zmtp_frame(body: bytes, more: bool = False) -> bytes:
    flags = 1 if more else 0
    if len(body) <= 255:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 2]) + len(body).to_bytes(8, "big") + body


def zmtp_handshake() -> bytes:
    """The greeting (ZMTP 3.1, NULL mechanism) and READY command a libzmq SUB socket sends,
    byte for byte."""
    greeting = b"\xff" + b"\x00" * 7 + b"\x01\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
    greeting += b"\x00" * 32
    name = b"Socket-Type"
    props = bytes([len(name)]) + name + (3).to_bytes(4, "big") + b"SUB"
    ready = b"\x05READY" + props
    return greeting, bytes([0x04, len(ready)]) + ready


def raw_subscriber(node: h.Daemon, prefixes, rcvbuf: int = 0) -> socket.socket:
    """A hand-made ZMTP SUB peer on the node's feed, subscribed to `prefixes`. Used for the
    abusive subscribers: a libzmq SUB socket would spend the test process's own memory and
    time (and Python's lock) on the same subscriptions, stalling the probe."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", node.feed_port))
    greeting, ready = zmtp_handshake()
    # As libzmq does: the rest only once the publisher's greeting is in.
    s.sendall(greeting)
    s.settimeout(30)
    got = b""
    while len(got) < len(greeting):
        chunk = s.recv(len(greeting) - len(got))
        assert chunk, "the feed closed the connection during the greeting"
        got += chunk
    try:
        s.sendall(ready + b"".join(zmtp_frame(b"\x01" + p) for p in prefixes))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon closed it: what the abusive cases expect
    except socket.timeout:
        raise AssertionError("the feed took no more subscriptions for 30 s")
    s.settimeout(None)
    return s


def stats(node: h.Daemon) -> dict[str, int]:
    with node.client() as c:
        return c.stats()


def wait_stat(node: h.Daemon, name: str, pred, timeout: float = 30.0) -> dict[str, int]:
    def check():
        s = stats(node)
        return s if pred(s[name]) else None
    return h.wait_for(check, timeout, f"stat {name}", interval=0.05)


def test_a_huge_subscription_costs_no_memory_and_no_stall(daemons, timings):
    node = daemons.start()
    hwm_before = vm_kb(node.pid, "VmHWM")
    with LatencyProbe(node) as probe:
        # One subscription of 16 MiB, as any ZeroMQ SUB socket can send.
        sub = raw_subscriber(node, [b"x" * (16 * MiB)])
        try:
            wait_stat(node, "feed_bad_subscriptions", lambda v: v >= 1)
        finally:
            sub.close()
    growth_mb = (vm_kb(node.pid, "VmHWM") - hwm_before) / 1024
    timings.record("16 MiB subscription: worst GET latency", probe.worst, LATENCY_BOUND)
    print(f"16 MiB subscription: VmHWM grew {growth_mb:.1f} MB")
    assert growth_mb < 16, f"the daemon's peak memory grew by {growth_mb:.1f} MB"
    assert probe.worst < LATENCY_BOUND
    s = wait_stat(node, "feed_connections", lambda v: v == 0)
    assert s["feed_subscriptions"] == 0
    assert "longer than max-key-bytes" in node.stderr_text() or \
        "over the limit" in node.stderr_text()


def test_subscriptions_over_the_bound_close_the_connection(daemons, timings):
    node = daemons.start()
    hwm_before = vm_kb(node.pid, "VmHWM")
    with LatencyProbe(node) as probe:
        # 20 000 subscriptions of 1 KiB on one connection: 64 are allowed.
        sub = raw_subscriber(node, [f"{i:08d}".encode().ljust(1024, b"s") for i in range(20000)])
        try:
            s = wait_stat(node, "feed_bad_subscriptions", lambda v: v >= 1)
            assert s["feed_subscriptions"] <= 64, s
        finally:
            sub.close()
    growth_mb = (vm_kb(node.pid, "VmHWM") - hwm_before) / 1024
    timings.record("20 000 x 1 KiB subscriptions: worst GET latency", probe.worst,
                   LATENCY_BOUND)
    print(f"20 000 x 1 KiB subscriptions: VmHWM grew {growth_mb:.1f} MB")
    assert growth_mb < 16, f"the daemon's peak memory grew by {growth_mb:.1f} MB"
    assert probe.worst < LATENCY_BOUND
    s = wait_stat(node, "feed_connections", lambda v: v == 0)
    assert s["feed_subscriptions"] == 0
    assert "feed-max-subscriptions-per-connection (64)" in node.stderr_text()


def test_connects_and_disconnects_stay_cheap_after_junk_connections(daemons, timings):
    node = daemons.new(args=["--feed-max-subscriptions-per-connection", "1000"]).start()
    junk = []
    subs = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", node.feed_port))
            junk.append(s)
        wait_stat(node, "feed_connections", lambda v: v >= 200)
        with LatencyProbe(node) as probe:
            # 1000 subscriptions of 1 KiB over four connections, then subscribers coming
            # and going while they are held.
            for c in range(4):
                subs.append(raw_subscriber(
                    node, [f"{c}-{i:06d}".encode().ljust(1024, b"s") for i in range(250)]))
            wait_stat(node, "feed_subscriptions", lambda v: v == 1000)
            for _ in range(20):
                with h.FeedSubscriber(node.feed_endpoint, b"some/"):
                    wait_stat(node, "feed_subscriptions", lambda v: v == 1001)
                wait_stat(node, "feed_subscriptions", lambda v: v == 1000)
            for sub in subs:
                sub.close()
            subs.clear()
            wait_stat(node, "feed_subscriptions", lambda v: v == 0)
        timings.record("200 junk connections, 1000 subscriptions coming and going: worst GET "
                       "latency", probe.worst, LATENCY_BOUND)
        assert probe.worst < LATENCY_BOUND
        # The junk connections never completed a handshake: they are closed and counted.
        s = wait_stat(node, "feed_connections_refused", lambda v: v >= 200, timeout=30)
        assert s["feed_connections"] == 0, s
        for s in junk:
            s.settimeout(10)
            assert s.recv(4096 * 4)  # the greeting, then the close
    finally:
        for sub in subs:
            sub.close()
        for s in junk:
            s.close()


def test_a_subscriber_that_never_reads_is_dropped(daemons, timings):
    buffer_bytes = 8 * MiB
    node = daemons.new(args=["--feed-subscriber-buffer-bytes", str(buffer_bytes)]).start()
    # Subscribes to everything, then never reads; its receive buffer is kept small.
    slow = raw_subscriber(node, [b""], rcvbuf=64 * 1024)
    wait_stat(node, "feed_subscriptions", lambda v: v == 1)
    hwm_before = vm_kb(node.pid, "VmHWM")
    # Another subscriber, reading, to a prefix of its own.
    with h.FeedSubscriber(node.feed_endpoint, b"mark/") as good, node.client() as c, \
            LatencyProbe(node) as probe:
        good.sync(c, b"mark/start")
        marks = []
        for batch in range(15):
            # Compressible values: the store keeps them small on disk, the feed carries
            # each whole (1 MiB).
            c.put_many(((f"big/{batch:02d}/{i:03d}".encode(),
                         f"{batch}-{i}".encode().ljust(MiB, b"v")) for i in range(100)),
                       window=8)
            key = f"mark/{batch:02d}".encode()
            assert c.put(key, b"m").code == h.pb.OK
            marks.append(key)
        good.wait_event(lambda e: e.key == marks[-1], 30, "the last mark")
        got = [e.key for e in good.events if e.key in marks]
        assert got == marks
    s = wait_stat(node, "feed_subscribers_dropped", lambda v: v == 1)
    growth_mb = (vm_kb(node.pid, "VmHWM") - hwm_before) / 1024
    timings.record("1500 x 1 MiB writes with a subscriber that never reads: worst GET latency",
                   probe.worst, LATENCY_BOUND * 4)
    print(f"never-reading subscriber, 1500 x 1 MiB: VmHWM grew {growth_mb:.1f} MB")
    # The slow subscriber was dropped with its queue, and the reading one has left: the node
    # sees that close on a later turn than the test's, so wait for it.
    s = wait_stat(node, "feed_connections", lambda v: v == 0)
    assert s["feed_subscribers_dropped"] == 1, s
    assert s["feed_queued_bytes"] == 0, s
    # Writing 1.5 GB through the store costs its own memory (values in flight, the staged
    # writes, the read cache); what the feed may add is one buffer of 8 MiB. AddressSanitizer
    # keeps up to 256 MiB of freed memory in quarantine, which the peak counts too.
    bound_mb = 400 + (256 if os.environ.get("EDGEKV_SANITIZE") else 0)
    assert growth_mb < bound_mb, f"the daemon's peak memory grew by {growth_mb:.1f} MB"
    slow.close()


def test_sigterm_is_answered_promptly_with_many_feed_connections(daemons, timings):
    node = daemons.new(args=["--feed-max-subscriptions-per-connection", "1000"]).start()
    junk = [socket.create_connection(("127.0.0.1", node.feed_port)) for _ in range(200)]
    subs = []
    try:
        for c in range(4):
            subs.append(raw_subscriber(
                node, [f"{c}-{i:06d}".encode().ljust(1024, b"s") for i in range(1000)]))
        wait_stat(node, "feed_subscriptions", lambda v: v == 4000)
        for sub in subs[:2]:
            sub.close()  # departures under way as the signal arrives
        start = time.monotonic()
        rc = node.stop(timeout=10)
        elapsed = time.monotonic() - start
        timings.record("SIGTERM with 200 junk and 4000 subscriptions: time to exit", elapsed,
                       2.0)
        assert rc == 0
        assert elapsed < 2.0
    finally:
        for sub in subs:
            sub.close()
        for s in junk:
            s.close()

