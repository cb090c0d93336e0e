#!/usr/bin/env python3
"""The cluster case of `make bench`: three nodes with N = 3 against one node with N = 1.

Both run on this machine's loopback, in a temporary directory, with the same
redis-benchmark load (SET, then GET, 50 clients in all, 100-byte values, a keyspace of
100 000): against the single node from one redis-benchmark, against the cluster from three
at once, one per node's RESP endpoint, the clients split among them. Runs alternate
(single, cluster, single, ...) so that both see the same machine. The cluster answers each
request at QUORUM, and every write is made three times on the same cores, so a third of
the single node's rate is the physical bound; the goal is 0.3x. Server CPU per operation is
read from /proc (user + system time of every edgekvd, over the run).

Usage: bench/cluster_bench.py [--build DIR] [--reps N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENTS = 50
KEYS = 100_000
VALUE_BYTES = 100
GOAL = 0.3
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, build: Path, root: Path, name: str, replication: int,
                 seed: str | None):
        self.name = name
        self.ports = {k: free_port() for k in ("client", "feed", "resp", "gossip", "peer")}
        self.dir = root / name
        cmd = [str(build / "daemon" / "edgekvd"), "--config", "/dev/null",
               "--node-id", name, "--data-dir", str(self.dir),
               "--replication-factor", str(replication), "--gossip-preset", "local",
               "--log-level", "warning"]
        for k, port in self.ports.items():
            cmd += [f"--{k}-endpoint", f"tcp://127.0.0.1:{port}"]
        if seed:
            cmd += ["--seeds", seed]
        self.err = open(root / f"{name}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err)
        self.kvcli = build / "cli" / "kvcli"

    @property
    def client(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['client']}"

    @property
    def gossip(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['gossip']}"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def ring(self):
        p = subprocess.run([str(self.kvcli), "--endpoint", self.client, "ring", "--json"],
                           capture_output=True, timeout=10)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)  # a benchmark's setup, not a test: polling with a pause is fine
    raise SystemExit(f"cluster bench: {what} did not happen within {timeout} s")


def agreed(nodes) -> bool:
    rings = [n.ring() for n in nodes]
    if any(r is None or len(r.get("members", [])) != len(nodes) for r in rings):
        return False
    return len({(r["epoch"], r["digest"]) for r in rings}) == 1


def bench(rb: str, nodes, test: str, total_ops: int) -> tuple[float, float]:
    """ops/s over all nodes and server CPU µs per op for one run of `test`."""
    shares = [CLIENTS // len(nodes) + (1 if i < CLIENTS % len(nodes) else 0)
              for i in range(len(nodes))]
    cpu0 = sum(n.cpu_s() for n in nodes)
    t0 = time.monotonic()
    procs = []
    for node, clients in zip(nodes, shares):
        n = total_ops * clients // CLIENTS
        procs.append(subprocess.Popen(
            [rb, "-h", "127.0.0.1", "-p", str(node.ports["resp"]), "-c", str(clients),
             "-n", str(n), "-r", str(KEYS), "-d", str(VALUE_BYTES), "-t", test, "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"cluster bench: redis-benchmark failed: {err.decode()[-300:]}")
    took = time.monotonic() - t0
    cpu = sum(n.cpu_s() for n in nodes) - cpu0
    return total_ops / took, cpu / total_ops * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", type=int, default=100_000, help="operations per run")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    rb = shutil.which("redis-benchmark")
    if not rb:
        print("cluster bench: redis-benchmark not found (bench/run.sh installs redis-tools)")
        return 1
    root = Path(tempfile.mkdtemp(prefix="edgekv-cluster-bench-"))
    nodes: list[Node] = []
    try:
        single = Node(build, root, "single", 1, None)
        first = Node(build, root, "c1", 3, None)
        cluster = [first] + [Node(build, root, f"c{i}", 3, first.gossip) for i in (2, 3)]
        nodes = [single, *cluster]
        wait_for(lambda: single.ring() and len(single.ring()["members"]) == 1, 30,
                 "the single node to start")
        wait_for(lambda: agreed(cluster), 60, "the cluster to agree on its placement")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for rep in range(args.reps):
            for test in ("set", "get"):
                for name, group in (("single", [single]), ("cluster", cluster)):
                    results.setdefault((test, name), []).append(bench(rb, group, test, args.ops))
        print("\nCluster case: 3 nodes, N=3, QUORUM (the defaults) vs 1 node, N=1; "
              f"redis-benchmark, {CLIENTS} clients in all, {VALUE_BYTES} B values, "
              f"median of {args.reps} alternating runs\n")
        print(f"{'op':4} {'1 node ops/s':>13} {'3 nodes ops/s':>14} {'ratio':>6} {'goal':>5}"
              f" {'CPU us/op 1':>12} {'CPU us/op 3':>12}")
        for test in ("set", "get"):
            s = results[(test, "single")]
            c = results[(test, "cluster")]
            s_ops = statistics.median(x[0] for x in s)
            c_ops = statistics.median(x[0] for x in c)
            ratio = c_ops / s_ops
            print(f"{test.upper():4} {s_ops:13,.0f} {c_ops:14,.0f} {ratio:6.2f} "
                  f"{'met' if ratio >= GOAL else 'MISSED':>5} "
                  f"{statistics.median(x[1] for x in s):12.1f} "
                  f"{statistics.median(x[1] for x in c):12.1f}")
        return 0
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
