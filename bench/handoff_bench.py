#!/usr/bin/env python3
"""Hinted handoff's drain: how long hints take to go home, and what clients see meanwhile.

Four edgekvd nodes, N = 3, on this machine's loopback, in a temporary directory. Each
round: one node is killed (-9) and, once the others see it dead, --keys distinct keys
(100-byte values) are written at QUORUM through the other three, so about 3/4 of them are
kept as hints for it by fallbacks. Then the same write load (bench/edgekv_load, PUTs only,
100-byte values, its own key space `key:%010d`, one edgekv_load per up node) runs twice:
 - baseline: for --seconds, the dead node still down, nothing draining (its writes leave
   hints too, which the drain then hands back as well);
 - drain: the dead node restarted (same data directory and ports) and the load started at
   once, while every node's `store_hints` is polled until their sum is 0.
The drain time is reported from the restart and from the moment every other node's gossip
shows the node alive, and split into the wait for the first acknowledged hint and the
transfer after it. Throughput is reported as the load saw it (edgekv_load's ops/s, whole
runs) and from the up nodes' `coordinator_writes` counters, over the baseline, until
drained, and while hints moved; --seconds (20 by default) should cover the drain. Stats
are polled at the same pace in both runs. With --rounds above 1, baseline and drain runs
alternate (round 1's baseline and drain, then round 2's, ...), so both see the same
machine.

Usage: bench/handoff_bench.py [--build DIR] [--keys N] [--seconds S] [--rate BYTES/S]
                              [--rounds R] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

NODES = 4
VALUE_BYTES = 100
LOAD_CLIENTS = 8  # per edgekv_load, one per up node
LOAD_PIPELINE = 4
LOAD_KEYS = 100_000
POLL_S = 0.05
WRITE_WINDOW = 128  # puts in flight per node while writing the keys that leave hints
HANDOFF_COUNTERS = ("handoff_delivered", "handoff_delivered_bytes", "handoff_refused",
                    "handoff_timeouts", "peer_send_failed")
TOP = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    pass


_given_ports: set[int] = set()


def free_port() -> int:
    """A port below the ephemeral range, so that no outgoing connection takes it while a
    node that the bench kills is down: the node binds it again when it restarts."""
    try:
        high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        high = 32768
    rng = random.Random()
    for _ in range(4096):
        port = rng.randrange(10000, max(high, 10001))
        if port in _given_ports:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise BenchError("no free port below the ephemeral range")


def load_pb(build: Path, root: Path):
    """edgekv_pb2 from the build (tests/cluster), or made here with protoc."""
    built = build / "tests" / "cluster"
    if not (built / "edgekv_pb2.py").exists():
        protoc = shutil.which("protoc")
        if not protoc:
            raise BenchError(f"no edgekv_pb2.py in {built} and no protoc to make one "
                             "(build the cluster_test_proto target)")
        subprocess.run([protoc, f"--proto_path={TOP / 'proto'}", f"--python_out={root}",
                        str(TOP / "proto" / "edgekv.proto")], check=True)
        built = root
    sys.path.insert(0, str(built))
    import edgekv_pb2  # noqa: E402
    return edgekv_pb2


class Client:
    """A DEALER socket speaking docs/protocol.md; one request at a time unless pipelined."""

    def __init__(self, ctx: zmq.Context, pb, endpoint: str, timeout: float = 10.0):
        self.pb = pb
        self.endpoint = endpoint
        self.timeout = timeout
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.sock.connect(endpoint)
        self.next_id = 1

    def close(self):
        self.sock.close(0)

    def request(self):
        req = self.pb.Request(id=self.next_id)
        self.next_id += 1
        return req

    def send(self, req) -> int:
        self.sock.send(req.SerializeToString())
        return req.id

    def recv(self):
        if not self.sock.poll(int(self.timeout * 1000), zmq.POLLIN):
            raise BenchError(f"no reply from {self.endpoint} within {self.timeout} s")
        resp = self.pb.Response()
        resp.ParseFromString(self.sock.recv())
        return resp

    def call(self, req):
        want = self.send(req)
        while True:  # replies to abandoned requests (none here) would be skipped
            resp = self.recv()
            if resp.id == want:
                if resp.code != self.pb.OK:
                    raise BenchError(f"{self.endpoint}: {self.pb.Code.Name(resp.code)} "
                                     f"{resp.message}")
                return resp

    def stats(self) -> dict[str, int]:
        req = self.request()
        req.stats.SetInParent()
        return {s.name: s.value for s in self.call(req).stats.stats}

    def states(self) -> dict[str, int]:
        req = self.request()
        req.members.SetInParent()
        return {m.node_id: m.state for m in self.call(req).members.members}

    def ring(self):
        req = self.request()
        req.ring.SetInParent()
        return self.call(req).ring


class Node:
    def __init__(self, build: Path, root: Path, name: str, seed: str | None, rate: int | None,
                 extra: list[str] | None = None):
        self.name = name
        self.build = build
        self.ports = {k: free_port() for k in ("client", "feed", "resp", "gossip", "peer")}
        self.dir = root / name
        self.cmd = [str(build / "daemon" / "edgekvd"), "--config", "/dev/null",
                    "--node-id", name, "--data-dir", str(self.dir),
                    "--replication-factor", "3", "--gossip-preset", "local",
                    "--log-level", "warning"]
        for k, port in self.ports.items():
            self.cmd += [f"--{k}-endpoint", f"tcp://127.0.0.1:{port}"]
        if seed:
            self.cmd += ["--seeds", seed]
        if rate:
            self.cmd += ["--hint-delivery-rate", str(rate)]
        self.cmd += extra or []
        self.log = open(root / f"{name}.log", "ab")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def client(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['client']}"

    @property
    def gossip(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['gossip']}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = cond()
        except BenchError:
            got = None  # a node still starting does not answer yet
        if got:
            return got
        time.sleep(POLL_S)  # a benchmark's setup, not a test: polling with a pause is fine
    raise BenchError(f"{what} did not happen within {timeout} s")


class Cluster:
    def __init__(self, build: Path, root: Path, rate: int | None, pb,
                 extra: list[str] | None = None):
        self.pb = pb
        self.ctx = zmq.Context()
        first = Node(build, root, "n1", None, rate, extra)
        self.nodes = [first] + [Node(build, root, f"n{i}", first.gossip, rate, extra)
                                for i in range(2, NODES + 1)]
        self.clients = {n.name: Client(self.ctx, pb, n.client) for n in self.nodes}

    def client(self, node: Node) -> Client:
        return self.clients[node.name]

    def sees(self, observers, member: str, states) -> bool:
        return all(self.client(o).states().get(member) in states for o in observers)

    def agreed(self) -> bool:
        names = {n.name for n in self.nodes}
        if not all(self.sees(self.nodes, m, (self.pb.MEMBER_ALIVE,)) for m in names):
            return False
        rings = [self.client(n).ring() for n in self.nodes]
        if any(set(r.members) != names for r in rings):
            return False
        return len({(r.epoch, r.digest) for r in rings}) == 1

    def stat_sum(self, name: str, nodes=None) -> int:
        return sum(self.client(n).stats()[name] for n in (nodes or self.nodes) if n.running())

    def close(self):
        for c in self.clients.values():
            c.close()
        for n in self.nodes:
            n.stop()
        self.ctx.term()


def write_keys(cluster: Cluster, up, prefix: str, count: int) -> float:
    """Writes `count` distinct keys at QUORUM, spread over the up nodes; returns seconds."""
    pb = cluster.pb
    clients = [cluster.client(n) for n in up]
    value = (b"handoff bench value " * 8)[:VALUE_BYTES]
    in_flight = {c.endpoint: 0 for c in clients}
    poller = zmq.Poller()
    for c in clients:
        poller.register(c.sock, zmq.POLLIN)
    next_key = 0
    done = 0
    t0 = time.monotonic()
    while done < count:
        for c in clients:
            while next_key < count and in_flight[c.endpoint] < WRITE_WINDOW:
                req = c.request()
                req.consistency = pb.QUORUM
                req.put.key = f"{prefix}{next_key:07d}".encode()
                req.put.value = value
                c.send(req)
                in_flight[c.endpoint] += 1
                next_key += 1
        ready = dict(poller.poll(10_000))
        if not ready:
            raise BenchError("writing the keys: no reply within 10 s")
        for c in clients:
            if c.sock in ready:
                while c.sock.poll(0, zmq.POLLIN):
                    resp = pb.Response()
                    resp.ParseFromString(c.sock.recv())
                    if resp.code != pb.OK:
                        raise BenchError(f"writing the keys: {pb.Code.Name(resp.code)} "
                                         f"{resp.message}")
                    in_flight[c.endpoint] -= 1
                    done += 1
    return time.monotonic() - t0


def start_load(build: Path, up, seconds: float):
    return [subprocess.Popen(
        [str(build / "bench" / "edgekv_load"), "--endpoint", n.client,
         "--clients", str(LOAD_CLIENTS), "--pipeline", str(LOAD_PIPELINE),
         "--value-bytes", str(VALUE_BYTES), "--keys", str(LOAD_KEYS), "--get-ratio", "0",
         "--seconds", str(seconds), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in up]


def finish_load(procs) -> dict:
    ops, ops_s, errors, p99 = 0, 0.0, 0, 0
    first_errors = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        try:
            r = json.loads(out)
        except json.JSONDecodeError as e:
            raise BenchError(f"edgekv_load: unreadable output {out[-300:]!r} "
                             f"{err.decode()[-300:]}") from e
        ops += r["ops"]
        ops_s += r["ops_per_s"]
        errors += r["errors"]
        p99 = max(p99, r["p99_us"])
        first_errors += [line for line in err.decode(errors="replace").splitlines()
                         if "errors, first:" in line]
    load = {"ops": ops, "ops_per_s": ops_s, "errors": errors, "p99_us_max": p99}
    if first_errors:
        load["first_errors"] = first_errors
    return load


def loads_running(procs) -> bool:
    return any(p.poll() is None for p in procs)


def baseline(cluster: Cluster, build: Path, up, seconds: float) -> dict:
    """The load with nothing draining; stats polled at the drain's pace for equal cost."""
    writes0 = cluster.stat_sum("coordinator_writes", up)
    procs = start_load(build, up, seconds)
    t0 = time.monotonic()
    while loads_running(procs):
        for n in up:
            cluster.client(n).stats()
        time.sleep(POLL_S)
    took = time.monotonic() - t0
    load = finish_load(procs)
    load["coord_writes_per_s"] = (cluster.stat_sum("coordinator_writes", up) - writes0) / took
    return load


def drain(cluster: Cluster, build: Path, victim: Node, up, seconds: float,
          timeout: float) -> dict:
    """Restarts the victim and runs the load at once; polls every node's stats (one call
    each per poll, as the baseline does) until no hint is held and the load has ended."""
    pb = cluster.pb
    before = [cluster.client(n).stats() for n in up]
    bytes0 = [s["handoff_delivered_bytes"] for s in before]
    writes0 = sum(s["coordinator_writes"] for s in before)
    counters0 = {c: sum(s[c] for s in before) for c in HANDOFF_COUNTERS}
    t0 = time.monotonic()
    victim.start()
    procs = start_load(build, up, seconds)
    alive_at = drained_at = load_end = first_delivery_at = None
    writes_at_drain = writes_at_load_end = writes_at_first = None
    samples = []  # (seconds since the restart, hints held, hints delivered)
    deadline = t0 + timeout
    while drained_at is None or load_end is None:
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"hints not drained within {timeout} s of the restart")
        if alive_at is None and cluster.sees(up, victim.name, (pb.MEMBER_ALIVE,)):
            alive_at = now
        # The victim holds no hints; it is asked too once it is up, in case it kept some.
        stats = [cluster.client(n).stats() for n in up]
        if alive_at is not None:
            stats.append(cluster.client(victim).stats())
        polled = time.monotonic()
        held = sum(s["store_hints"] for s in stats)
        delivered = sum(s["handoff_delivered"] for s in stats[:len(up)]) - counters0[
            "handoff_delivered"]
        writes = sum(s["coordinator_writes"] for s in stats[:len(up)])
        samples.append((round(polled - t0, 2), held, delivered))
        if first_delivery_at is None and delivered > 0:
            first_delivery_at, writes_at_first = polled, writes
        if drained_at is None and alive_at is not None and held == 0:
            drained_at, writes_at_drain = polled, writes
        if load_end is None and not loads_running(procs):
            load_end, writes_at_load_end = polled, writes
        time.sleep(POLL_S)
    load = finish_load(procs)
    drain_s = drained_at - t0
    load["coord_writes_per_s"] = (writes_at_load_end - writes0) / (load_end - t0)
    # Writes coordinated while both the load ran and hints drained (from the restart until
    # the first of the two ended).
    if drained_at <= load_end:
        load["overlap_writes_per_s"] = (writes_at_drain - writes0) / drain_s
    else:
        load["overlap_writes_per_s"] = load["coord_writes_per_s"]
    load["drain_s_from_restart"] = drain_s
    load["drain_s_from_alive"] = drained_at - alive_at
    load["alive_s_after_restart"] = alive_at - t0
    load["first_delivery_s_after_restart"] = first_delivery_at - t0
    load["transfer_s"] = drained_at - first_delivery_at
    # Writes coordinated while hints were moving (first acknowledged until drained) and the
    # load still ran; None when the load had ended before the first hint was acknowledged.
    moving_end = min(drained_at, load_end)
    if moving_end > first_delivery_at:
        moving_writes = (writes_at_drain if drained_at <= load_end else writes_at_load_end)
        load["transfer_writes_per_s"] = (moving_writes - writes_at_first) / (
            moving_end - first_delivery_at)
    else:
        load["transfer_writes_per_s"] = None
    after = [cluster.client(n).stats() for n in up]
    # The most one fallback handed over, which its rate limit bounds.
    load["max_bytes_per_fallback"] = max(a["handoff_delivered_bytes"] - b
                                         for a, b in zip(after, bytes0))
    for c in HANDOFF_COUNTERS:
        load[c] = sum(s[c] for s in after) - counters0[c]
    load["samples"] = samples if len(samples) <= 400 else samples[::len(samples) // 400 + 1]
    return load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--keys", type=int, default=100_000,
                    help="distinct keys written while the node is down")
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="length of each load run (long enough to cover the drain)")
    ap.add_argument("--rate", type=int, default=None,
                    help="--hint-delivery-rate for the nodes, bytes/s (default: theirs)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="baseline-then-drain rounds, alternating")
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (data and logs) and say where")
    args = ap.parse_args()
    if args.keys < 1 or args.seconds <= 0 or args.rounds < 1:
        ap.error("--keys and --rounds must be >= 1, --seconds > 0")
    build = Path(args.build).resolve()
    for tool in ("daemon/edgekvd", "bench/edgekv_load"):
        if not os.access(build / tool, os.X_OK):
            print(f"handoff bench: {build / tool} is missing (build edgekvd and edgekv_load)")
            return 1
    root = Path(tempfile.mkdtemp(prefix="edgekv-handoff-bench-"))
    cluster = None
    rounds = []
    try:
        pb = load_pb(build, root)
        cluster = Cluster(build, root, args.rate, pb)
        wait_for(cluster.agreed, 60, "the cluster to agree on its members and placement")
        victim = cluster.nodes[-1]
        up = cluster.nodes[:-1]
        for r in range(args.rounds):
            victim.kill()
            wait_for(lambda: cluster.sees(up, victim.name, (pb.MEMBER_DEAD,)), 60,
                     f"{victim.name} seen dead by the others")
            hints0 = cluster.stat_sum("store_hints", up)
            write_s = write_keys(cluster, up, f"handoff:{r}:", args.keys)
            hints_written = cluster.stat_sum("store_hints", up) - hints0
            base = baseline(cluster, build, up, args.seconds)
            stats = [cluster.client(n).stats() for n in up]
            held = sum(s["store_hints"] for s in stats)
            held_bytes = max(s["store_hint_bytes"] for s in stats)
            d = drain(cluster, build, victim, up, args.seconds, args.drain_timeout)
            wait_for(cluster.agreed, 60, "the cluster to agree again after the drain")
            rounds.append({"round": r + 1, "keys": args.keys, "write_s": write_s,
                           "hints_from_keys": hints_written, "hints_at_restart": held,
                           "max_hint_bytes_per_node": held_bytes,
                           "baseline": base, "drain": d})
        report(args, rounds)
        return 0
    except BenchError as e:
        print(f"handoff bench: {e} (logs in {root})")
        root = None  # keep the logs
        return 1
    finally:
        if cluster:
            cluster.close()
        if root and args.keep:
            print(f"handoff bench: kept {root}")
        elif root:
            shutil.rmtree(root, ignore_errors=True)


def rate_bound(sent: int, rate: int) -> float:
    """Seconds the delivery rate alone allows for `sent` bytes to one owner: the token
    bucket of cluster/handoff.cc starts with up to max(rate / 10, a 1 MiB page) at once."""
    return max(0, sent - max(rate / 10, 1 << 20)) / rate


def report(args, rounds):
    rate = args.rate or 16 * 1024 * 1024
    print(f"\nHinted handoff drain: {NODES} nodes, N=3, QUORUM; {args.keys:,} keys of "
          f"{VALUE_BYTES} B written while one node was down; load: {NODES - 1} x edgekv_load "
          f"({LOAD_CLIENTS} clients x pipeline {LOAD_PIPELINE}, PUT {VALUE_BYTES} B) for "
          f"{args.seconds:g} s; hint-delivery-rate {rate:,} B/s per fallback per owner\n")
    print("Drain (seconds from the restart unless said otherwise)")
    print(f"{'round':>5} {'hints':>7} {'at restart':>10} {'alive':>6} {'drained':>8} "
          f"{'from alive':>10} {'1st acked':>9} {'transfer':>8} {'rate bound':>10} "
          f"{'timeouts':>8}")
    for r in rounds:
        d = r["drain"]
        print(f"{r['round']:>5} {r['hints_from_keys']:>7,} {r['hints_at_restart']:>10,} "
              f"{d['alive_s_after_restart']:>6.2f} {d['drain_s_from_restart']:>8.2f} "
              f"{d['drain_s_from_alive']:>10.2f} {d['first_delivery_s_after_restart']:>9.2f} "
              f"{d['transfer_s']:>8.2f} {rate_bound(d['max_bytes_per_fallback'], rate):>10.2f} "
              f"{d['handoff_timeouts']:>8,}")
    print("\nWrite throughput (ops/s)")
    print(f"{'round':>5} {'baseline':>9} {'drain run':>9} {'ratio':>6} {'base coord':>10} "
          f"{'to drained':>10} {'transfer':>9} {'errors':>6}")
    for r in rounds:
        b, d = r["baseline"], r["drain"]
        moving = d["transfer_writes_per_s"]
        print(f"{r['round']:>5} {b['ops_per_s']:>9,.0f} {d['ops_per_s']:>9,.0f} "
              f"{d['ops_per_s'] / b['ops_per_s']:>6.2f} {b['coord_writes_per_s']:>10,.0f} "
              f"{d['overlap_writes_per_s']:>10,.0f} "
              f"{'-' if moving is None else f'{moving:,.0f}':>9} {b['errors'] + d['errors']:>6}")
    print("\nhints: kept for the dead node from the keys written; at restart: also those the "
          "baseline load left. alive: until every other node's gossip shows it alive. "
          "drained: until no node holds a hint. 1st acked: until the first hint was "
          "acknowledged; transfer: from then until drained; rate bound: the least time "
          "hint-delivery-rate allows for what one fallback handed over (less its burst). "
          "baseline, drain run: edgekv_load's "
          "ops/s over its whole run (node down; node restarted). base coord: the up nodes' "
          "coordinator_writes over the baseline run; to drained: the same from the restart "
          "until drained (or the load ended, if first); transfer: the same while hints moved "
          "(- if the load had ended before).")
    summary = {
        "bench": "handoff", "keys": args.keys, "seconds": args.seconds, "rate": rate,
        "rounds": rounds,
        "median_drain_s_from_restart": statistics.median(
            r["drain"]["drain_s_from_restart"] for r in rounds),
        "median_baseline_ops_per_s": statistics.median(
            r["baseline"]["ops_per_s"] for r in rounds),
        "median_drain_ops_per_s": statistics.median(r["drain"]["ops_per_s"] for r in rounds),
    }
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
