#!/usr/bin/python3
"""What abusive change-feed subscribers cost a node: its memory and its clients' latency.

    EDGEKVD=... KVCLI=... EDGEKV_PB_DIR=BUILD/tests/cluster \
        /usr/bin/python3 bench/feed_abuse.py CASE [--bounded]

CASE is one of
  sub16      one subscription of 16 MiB
  sub20k     20 000 subscriptions of 1 KiB on one connection
  junkN      200 idle TCP connections, then N subscriptions of 1 KiB over 4 connections,
             which then leave; then the same again and SIGTERM (time to exit)
  slow       a subscriber that never reads while 1500 values of 1 MiB are written
--bounded passes the options only a daemon with feed bounds knows (junkN: subscriptions
per connection raised so that all N are taken). Prints the daemon's peak (VmHWM) and
current (VmRSS) memory growth and the worst GET latency of a client polling throughout.
A client writes a key every 50 ms meanwhile: a libzmq PUB socket takes in subscriptions
only when it is sent to. Uses the cluster tests' harness; loopback only.
"""

import pathlib
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "cluster"))
import edgekv_harness as h  # noqa: E402
import test_feed_bounds as t  # noqa: E402

MiB = 1024 * 1024


class Ticker:
    def __init__(self, node):
        self.node = node
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        with self.node.client(timeout=600) as c:
            i = 0
            while not self.stop.is_set():
                c.put(b"tick", str(i).encode())
                i += 1
                self.stop.wait(0.05)


def observe(seconds):
    """Lets the daemon work for a while (a measurement window, not a wait for an event)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        h.pause(0.1)


def main():
    case = sys.argv[1]
    bounded = "--bounded" in sys.argv[2:]
    args = []
    if bounded and case.startswith("junk"):
        args = ["--feed-max-subscriptions-per-connection", "1000000"]
    node = h.Daemon(tempfile.mkdtemp(prefix="feed-abuse-"), args=args).start()
    pid = node.pid
    rss0, hwm0 = t.vm_kb(pid, "VmRSS"), t.vm_kb(pid, "VmHWM")
    ticker = Ticker(node)

    def report(what, probe):
        print(f"{case}: {what}: VmHWM +{(t.vm_kb(pid, 'VmHWM') - hwm0) / 1024:.0f} MB, "
              f"VmRSS +{(t.vm_kb(pid, 'VmRSS') - rss0) / 1024:.0f} MB, "
              f"worst GET {probe.worst * 1000:.0f} ms", flush=True)

    def prefixes(c, n):
        return [f"{c}-{i:06d}".encode().ljust(1024, b"s") for i in range(n)]

    try:
        if case == "sub16":
            with t.LatencyProbe(node) as p:
                s = t.raw_subscriber(node, [b"x" * (16 * MiB)])
                observe(5)
                s.close()
                observe(2)
            report("one 16 MiB subscription", p)
        elif case == "sub20k":
            with t.LatencyProbe(node) as p:
                s = t.raw_subscriber(node, prefixes(0, 20000))
                observe(8)
                s.close()
                observe(2)
            report("20000 x 1 KiB subscriptions", p)
        elif case.startswith("junk"):
            n = int(case[4:])
            junk = [socket.create_connection(("127.0.0.1", node.feed_port)) for _ in range(200)]
            observe(1)
            with t.LatencyProbe(node) as p:
                subs = [t.raw_subscriber(node, prefixes(c, n // 4)) for c in range(4)]
                observe(3)
                for s in subs:
                    s.close()
                observe(5)
            report(f"200 junk connections, {n} subscriptions coming and going", p)
            subs = [t.raw_subscriber(node, prefixes(c, n // 4)) for c in range(4)]
            observe(3)
            ticker.stop.set()
            start = time.monotonic()
            rc = node.stop(timeout=120)
            print(f"{case}: SIGTERM to exit {time.monotonic() - start:.2f} s (status {rc})")
            for s in junk + subs:
                s.close()
        elif case == "slow":
            slow = t.raw_subscriber(node, [b""], rcvbuf=64 * 1024)
            with t.LatencyProbe(node) as p, node.client() as c:
                for batch in range(15):
                    c.put_many(((f"big/{batch:02d}/{i:03d}".encode(),
                                 f"{batch}-{i}".encode().ljust(MiB, b"v")) for i in range(100)),
                               window=8)
                observe(3)
            report("a subscriber that never reads, 1500 x 1 MiB written", p)
            slow.close()
            observe(3)
            report("the same, after it closed", p)
        else:
            sys.exit(f"unknown case {case}")
    finally:
        ticker.stop.set()
        if node.running():
            node.stop(timeout=120)
        node.close()


if __name__ == "__main__":
    main()
