#!/usr/bin/env python3
"""Hand-over under load: how long a join and a removal take, and what clients see meanwhile.

Three edgekvd nodes, N = 3, on this machine's loopback, in a temporary directory, holding
--keys distinct keys (100-byte values, written at QUORUM). Then, with the same write load
running through the three (bench/edgekv_load, PUTs only, 100-byte values, one edgekv_load
per node, its own key space):
 - baseline (3 nodes): --seconds of load, no hand-over;
 - join: a fourth node started with the first as seed at the load's start; the hand-over
   (pending table seen by all, partitions streamed to the new node, commit) is timed until
   every node's `kvcli ring` shows four members and no hand-over;
 - baseline (4 nodes): --seconds of load, no hand-over;
 - removal: `kvcli remove` of the fourth node at the load's start, timed until every one of
   the three shows three members and no hand-over.
Throughput is reported as the load saw it (edgekv_load's ops/s, whole runs) and from the
three nodes' `coordinator_writes` counters while the hand-over ran, against the baseline
before it. The nodes' stats are polled at the same pace in every run.

--rate sets the nodes' anti-entropy-rate (bytes/s per node, which streaming is held to): a
lower one takes longer and costs clients less.

Usage: bench/hand_over_bench.py [--build DIR] [--keys N] [--seconds S] [--rate BYTES/S] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handoff_bench as hb  # noqa: E402  (the cluster, client and load helpers)


def settled(cluster: hb.Cluster, nodes, members: set[str]) -> bool:
    rings = [cluster.client(n).ring() for n in nodes]
    if any(set(r.members) != members or r.HasField("hand_over") for r in rings):
        return False
    return len({(r.epoch, r.digest) for r in rings}) == 1


def poll_stats(cluster: hb.Cluster, nodes) -> int:
    return sum(cluster.client(n).stats()["coordinator_writes"] for n in nodes)


def baseline(cluster: hb.Cluster, build: Path, load_nodes, seconds: float) -> dict:
    """The load with no hand-over; rings and stats polled at the hand-over run's pace."""
    writes0 = poll_stats(cluster, load_nodes)
    procs = hb.start_load(build, load_nodes, seconds)
    t0 = time.monotonic()
    while hb.loads_running(procs):
        poll_stats(cluster, load_nodes)
        for n in cluster.nodes:
            if n.running():
                cluster.client(n).ring()
        time.sleep(hb.POLL_S)
    took = time.monotonic() - t0
    load = hb.finish_load(procs)
    load["coord_writes_per_s"] = (poll_stats(cluster, load_nodes) - writes0) / took
    return load


def hand_over(cluster: hb.Cluster, build: Path, load_nodes, watch, members: set[str],
              seconds: float, start, timeout: float) -> dict:
    """Starts the load and the hand-over (`start()`) together; polls until every node in
    `watch` shows `members` and no hand-over, and the load has ended."""
    writes0 = poll_stats(cluster, load_nodes)
    t0 = time.monotonic()
    start()
    procs = hb.start_load(build, load_nodes, seconds)
    done_at = load_end = None
    writes_at_done = writes_at_load_end = None
    while done_at is None or load_end is None:
        now = time.monotonic()
        if now - t0 > timeout:
            raise hb.BenchError(f"the hand-over did not end within {timeout} s")
        writes = poll_stats(cluster, load_nodes)
        try:
            ok = done_at is None and settled(cluster, watch, members)
        except hb.BenchError:
            ok = False  # a node still starting does not answer yet
        polled = time.monotonic()
        if ok:
            done_at, writes_at_done = polled, writes
        if load_end is None and not hb.loads_running(procs):
            load_end, writes_at_load_end = polled, writes
        time.sleep(hb.POLL_S)
    load = hb.finish_load(procs)
    load["hand_over_s"] = done_at - t0
    load["coord_writes_per_s"] = (writes_at_load_end - writes0) / (load_end - t0)
    if done_at <= load_end:
        load["during_writes_per_s"] = (writes_at_done - writes0) / (done_at - t0)
    else:
        load["during_writes_per_s"] = None  # the load ended first: --seconds too short
    return load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--keys", type=int, default=100_000, help="keys held before the join")
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="length of each load run (long enough to cover a hand-over)")
    ap.add_argument("--rate", type=int, default=None,
                    help="--anti-entropy-rate for the nodes, bytes/s (default: theirs)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (data and logs) and say where")
    args = ap.parse_args()
    if args.keys < 1 or args.seconds <= 0:
        ap.error("--keys must be >= 1, --seconds > 0")
    build = Path(args.build).resolve()
    for tool in ("daemon/edgekvd", "bench/edgekv_load"):
        if not os.access(build / tool, os.X_OK):
            print(f"hand-over bench: {build / tool} is missing (build edgekvd and edgekv_load)")
            return 1
    root = Path(tempfile.mkdtemp(prefix="edgekv-hand-over-bench-"))
    cluster = None
    hb.NODES = 3
    try:
        pb = hb.load_pb(build, root)
        extra = ["--anti-entropy-rate", str(args.rate)] if args.rate else []
        cluster = hb.Cluster(build, root, None, pb, extra)
        three = list(cluster.nodes)
        names3 = {n.name for n in three}
        hb.wait_for(cluster.agreed, 60, "the cluster to agree on its members and placement")
        wrote_s = hb.write_keys(cluster, three, "hand-over:", args.keys)
        report = {"keys": args.keys, "anti_entropy_rate": args.rate,
                  "preload_s": round(wrote_s, 2)}

        report["baseline_3"] = baseline(cluster, build, three, args.seconds)

        fourth = {}

        def join():
            node = hb.Node(build, root, "n4", three[0].gossip, None, extra)
            cluster.nodes.append(node)
            cluster.clients[node.name] = hb.Client(cluster.ctx, pb, node.client)
            fourth["node"] = node

        names4 = names3 | {"n4"}
        report["join"] = hand_over(cluster, build, three, cluster.nodes, names4, args.seconds,
                                   join, args.timeout)
        # The join's watch list was taken before n4 existed: check all four agree now.
        hb.wait_for(lambda: settled(cluster, cluster.nodes, names4), 60,
                    "all four nodes to hold the committed table")
        report["baseline_4"] = baseline(cluster, build, three, args.seconds)

        def remove():
            req = cluster.client(three[0]).request()
            req.remove.node_ids.append("n4")
            cluster.client(three[0]).call(req)

        report["removal"] = hand_over(cluster, build, three, three, names3, args.seconds,
                                      remove, args.timeout)
        for name, base in (("join", "baseline_3"), ("removal", "baseline_4")):
            during = report[name]["during_writes_per_s"]
            report[f"{name}_ratio"] = (round(during / report[base]["coord_writes_per_s"], 3)
                                       if during else None)
        print(json.dumps(report, indent=1))
        print(f"join of a 4th node to 3 holding {args.keys} keys: "
              f"{report['join']['hand_over_s']:.1f} s, writes while it ran "
              f"{report['join_ratio']}x those with no hand-over")
        print(f"removal of it: {report['removal']['hand_over_s']:.1f} s, writes while it ran "
              f"{report['removal_ratio']}x those with no hand-over")
        return 0
    except hb.BenchError as e:
        print(f"hand-over bench: {e}")
        return 1
    finally:
        if cluster:
            cluster.close()
        if args.keep:
            print(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
