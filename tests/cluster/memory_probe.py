"""Measures edgekvd's memory under the loads of the memory-bounds issue: peak resident set
(VmHWM) and resident set after the load, for

  resp1   one RESP connection pipelining 2000 SETs of 1 MiB before reading any reply
  resp4   4 RESP connections each pipelining 250 SETs of 4 MiB before reading any reply
  zmq     the ZeroMQ API sent 500 PUTs of 4 MiB before any reply is read

Not a test: it prints figures. Run it with the environment ctest gives the cluster tests,
e.g. from the top of the source tree:

  B=$PWD/build/release; EDGEKVD=$B/daemon/edgekvd KVCLI=$B/cli/kvcli \
    EDGEKV_PB_DIR=$B/tests/cluster /usr/bin/python3 tests/cluster/memory_probe.py [ARGS...]

ARGS are passed to edgekvd (e.g. --max-inflight-bytes 67108864).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time

import edgekv_harness as h
from edgekv_harness import pb

MiB = 1 << 20


def mib(kib: int) -> float:
    return kib / 1024


def resp_load(node: h.Daemon, conns: int, count: int, size: int) -> None:
    value = b"v" * size
    socks = [h.RespConn(node.resp_port, timeout=300) for _ in range(conns)]

    def send(n: int) -> None:
        c = socks[n]
        for i in range(count):
            c.send(h.resp_encode("SET", f"c{n}:k{i % 100}", value))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in socks:
        got = c.replies(count, timeout=300)
        assert all(g == "OK" for g in got), [g for g in got if g != "OK"][:3]
        c.close()


def zmq_load_counted(node: h.Daemon, count: int, size: int) -> dict[str, int]:
    value = b"z" * size
    with node.client(timeout=300) as c:
        ids = [c.send(c.put_request(b"z%d" % (i % 100), value)) for i in range(count)]
        codes: dict[str, int] = {}
        for i in ids:
            name = h.code_name(c.wait(i).code)
            codes[name] = codes.get(name, 0) + 1
        return codes


def settle_rss(node: h.Daemon) -> int:
    """VmRSS once the load is over and the node has handed freed memory back: no byte in
    flight, and a memory release (malloc_trim, run once the node is idle) made after the
    node was seen idle. One made during the load does not do (the node idles between
    bursts): the next waits up to a second for the rate limit, and what was freed since is
    resident until then. Once a load left free pages, the node releases again every second
    while idle; if no release comes within a few seconds, none is due."""
    with node.client() as c:
        h.wait_for(lambda: c.stats()["inflight_bytes"] == 0, 300, "the load to finish")
        idle = c.stats()["memory_releases"]
        try:
            h.wait_for(lambda: (s := c.stats())["inflight_bytes"] == 0 and
                       s["memory_releases"] > idle, 5, "a memory release once idle")
        except AssertionError:
            pass
    return h.process_memory_kib(node.pid)["VmRSS"]


def run(name: str, args: list[str], load) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = h.Daemon(tmp, args=["--log-level", "error", *args]).start()
        # sd_notify blocks the daemon once 10 datagrams wait unread: keep reading them.
        done = threading.Event()

        def drain_notify() -> None:
            while not done.is_set():
                node.notify.drain(timeout=0.5)

        drainer = threading.Thread(target=drain_notify, daemon=True)
        drainer.start()
        try:
            base = h.process_memory_kib(node.pid)["VmRSS"]
            start = time.monotonic()
            extra = load(node)
            took = time.monotonic() - start
            peak = h.process_memory_kib(node.pid)["VmHWM"]
            after = settle_rss(node)
            print(f"{name:6} baseline {mib(base):7.1f} MiB  peak {mib(peak):7.1f} MiB  "
                  f"after {mib(after):7.1f} MiB  ({took:.1f} s){'  ' + str(extra) if extra else ''}",
                  flush=True)
        finally:
            done.set()
            drainer.join()
            node.stop()
            node.close()


def main() -> None:
    args = sys.argv[1:]
    run("resp1", args, lambda n: resp_load(n, 1, 2000, MiB))
    run("resp4", args, lambda n: resp_load(n, 4, 250, 4 * MiB))
    run("zmq", args, lambda n: zmq_load_counted(n, 500, 4 * MiB))


if __name__ == "__main__":
    main()
