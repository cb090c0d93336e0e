#!/usr/bin/python3
"""One run of the fault harness: five real edgekvd in network namespaces, concurrent
clients, a seeded schedule of faults, healing, final reads, and the checker's verdict.

Owns the workload (client threads writing, overwriting, deleting and reading keys with and
without TTLs at QUORUM, strict and sloppy), the fault schedule, the history (JSON lines:
every operation with its outcome and the version the node answered, and every fault), the
final phase (hints handed back, one forced anti-entropy round on every node, the replicas
read before the final reads, the final reads, the feeds caught up) and the reports.
Guarantees: the cluster and the fabric are torn down on every way out
(ChaosCluster.close()); the schedule is a function of the seed alone (which fault, which
nodes, for how many completed operations), so a seed names a run.

Nothing here sleeps: a fault begins when the clients have completed the number of
operations the schedule says, holds until the nodes show it and the clients completed
another number, and once healed the run waits for gossip to agree before the next (all
waited for with deadlines). The run makes at least --faults faults and goes on while
--duration seconds have not passed, checked between faults.

Usage (make chaos runs this):
  chaos_run.py --build BUILD_DIR [--duration S] [--faults N] [--seed N] [--workdir DIR]
               [--no-anti-entropy-checks] [--quorum-reads]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


def _env_from_build(build: Path) -> None:
    """Sets what edgekv_harness needs from a build directory (ctest sets it itself)."""
    build = build.resolve()
    os.environ.setdefault("EDGEKVD", str(build / "daemon" / "edgekvd"))
    os.environ.setdefault("KVCLI", str(build / "cli" / "kvcli"))
    os.environ.setdefault("EDGEKV_PB_DIR", str(build / "tests" / "cluster"))


if __name__ == "__main__":
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--build")
    _known, _ = _pre.parse_known_args()
    if _known.build:
        _env_from_build(Path(_known.build))

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chaos_cluster as cc  # noqa: E402
import checker  # noqa: E402
from chaos_cluster import h, pb  # noqa: E402

CLIENT_TIMEOUT = 2.5    # s a client waits for one answer (request timeout is 1 s)
AVOID_OPS = 50          # operations a client leaves a node alone after it did not answer
EFFECT_TIMEOUT = 10.0   # s to wait for the nodes to show a fault before holding it
FAULT_KINDS = ("kill", "pause", "partition", "one_way", "clock")
CLOCK_OFFSETS_S = (-5.0, -2.0, 1.5, 3.0)   # a forward jump beyond 0.5 s is refused by peers
AGREE_TIMEOUT = 90.0
FINAL_READ_TIMEOUT = 90.0
HINTS_TIMEOUT = 60.0    # s for every node's hints to be handed back after healing
REPAIR_WAIT_S = 60      # kvcli repair --wait, per node
FEED_CATCH_UP_TIMEOUT = 20.0  # s for the subscribers to receive what the nodes logged


# ---------------------------------------------------------------------------- history

class History:
    """The JSON-lines log; thread-safe; counts completed operations."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.ops: list[dict] = []
        self.faults: list[dict] = []

    def op(self, rec: dict) -> None:
        rec["type"] = "op"
        with self._cond:
            self.ops.append(rec)
            self._f.write(json.dumps(rec, sort_keys=True) + "\n")
            self._cond.notify_all()

    def fault(self, rec: dict) -> None:
        rec["type"] = "fault"
        rec["at"] = time.monotonic()
        with self._lock:
            self.faults.append(rec)
            self._f.write(json.dumps(rec, sort_keys=True) + "\n")
            self._f.flush()

    def count(self) -> int:
        with self._lock:
            return len(self.ops)

    def wait_ops(self, more: int, timeout: float, stop: threading.Event,
                 through: Optional[set[str]] = None) -> None:
        """Waits until `more` operations (through the nodes named in `through`, or any)
        complete after this call; AssertionError when the workload stalls for `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            pos, done = len(self.ops), 0
            while done < more and not stop.is_set():
                for op in self.ops[pos:]:
                    if through is None or op.get("node") in through:
                        done += 1
                pos = len(self.ops)
                if done >= more:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the clients completed {done} of {more} operations expected within "
                        f"{timeout:.0f} s: the workload stalled")
                self._cond.wait(min(left, 0.5))

    def note(self, rec: dict) -> None:
        """Any other record (the placement of the keys, ...)."""
        with self._lock:
            self._f.write(json.dumps(rec, sort_keys=True) + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()


# ---------------------------------------------------------------------------- clients

_OUTCOMES = {pb.OK: "ok", pb.NOT_FOUND: "not_found", pb.UNAVAILABLE: "unavailable",
             pb.OVERLOADED: "overloaded", pb.INVALID_ARGUMENT: "invalid",
             pb.TIMEOUT: "timeout"}


def _version(v) -> Optional[list[int]]:
    return [v.hlc, v.origin] if v.hlc or v.origin else None


def perform(client: h.NativeClient, kind: str, key: str, value: str = "", ttl_ms: int = 0,
            strict: bool = True, consistency: int = pb.QUORUM) -> dict:
    """One operation, as a history record (without the node and client names)."""
    if kind == "put":
        req = client.put_request(key.encode(), value.encode(), ttl_ms)
    elif kind == "del":
        req = client.new_request()
        getattr(req, "del").key = key.encode()
    else:
        req = client.get_request(key.encode())
    req.consistency = consistency
    req.strict = strict
    rec = {"kind": kind, "key": key, "strict": strict,
           "consistency": pb.Consistency.Name(consistency),
           "start": time.monotonic(), "start_wall_ms": int(time.time() * 1000)}
    if kind == "put":
        rec.update(value=value, ttl_ms=ttl_ms)
    try:
        resp = client.call(req, timeout=CLIENT_TIMEOUT)
    except h.NoReply as e:
        rec.update(outcome="noreply", message=str(e))
        resp = None
    rec["end"] = time.monotonic()
    rec["end_wall_ms"] = int(time.time() * 1000)
    if resp is not None:
        rec["outcome"] = _OUTCOMES.get(resp.code, "error")
        rec["code"] = pb.Code.Name(resp.code)
        if resp.message:
            rec["message"] = resp.message
        if resp.code == pb.OK:
            if kind == "put":
                rec.update(version=_version(resp.put.version), expiry_ms=resp.put.expiry_ms)
            elif kind == "del":
                rec.update(version=_version(getattr(resp, "del").version))
            else:
                rec.update(value=resp.get.value.decode("utf-8", "replace"),
                           version=_version(resp.get.version), expiry_ms=resp.get.expiry_ms)
    return rec


def key_name(i: int) -> str:
    return f"k{i:03d}"


class Clients:
    """`count` threads, each with a seeded generator, issuing operations on a shared key
    space through randomly chosen nodes until stopped."""

    def __init__(self, cluster: cc.ChaosCluster, history: History, seed: int, count: int,
                 keys: int):
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.keys = keys
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                         name=f"client{i}") for i in range(count)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT * 3)

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        clients: dict[str, h.NativeClient] = {}
        # A node that did not answer is left alone for the client's next AVOID_OPS
        # operations, as a client with other nodes to go to would; the draw is made all
        # the same, so the choices stay a function of the seed.
        avoid: dict[str, int] = {}
        seq = 0
        try:
            while not self.stop.is_set():
                node = rng.choice(self.cluster.nodes)
                if avoid.get(node.name, 0) > seq:
                    others = [n for n in self.cluster.nodes if avoid.get(n.name, 0) <= seq]
                    if others:
                        node = others[seq % len(others)]
                client = clients.get(node.name)
                if client is None:
                    client = clients[node.name] = node.client(timeout=CLIENT_TIMEOUT)
                key = key_name(rng.randrange(self.keys))
                roll = rng.random()
                strict = rng.random() < 0.75
                seq += 1
                if roll < 0.45:
                    ttl = rng.choice((1500, 3000, 6000)) if rng.random() < 0.25 else 0
                    rec = perform(client, "put", key, f"c{index}.{seq}", ttl, strict)
                elif roll < 0.55:
                    rec = perform(client, "del", key, strict=strict)
                else:
                    rec = perform(client, "get", key, strict=strict)
                rec.update(node=node.name, client=index)
                self.history.op(rec)
                if rec["outcome"] == "noreply":
                    # A fresh socket: the old one may still queue the request for a node
                    # that comes back, which would run it long after it was given up on.
                    client.close()
                    del clients[node.name]
                    avoid[node.name] = seq + AVOID_OPS
        except Exception as e:  # reported by the run, which fails on it
            self.errors.append(f"client {index}: {type(e).__name__}: {e}")
        finally:
            for c in clients.values():
                c.close()


# ---------------------------------------------------------------------------- faults

@dataclass
class Fault:
    kind: str
    nodes: list[int]                  # the victim(s); for partitions, one side
    other: list[int] = field(default_factory=list)  # the other side (partitions)
    offset_s: float = 0.0             # clock jumps
    hold_ops: int = 0                 # completed operations while the fault holds
    gap_ops: int = 0                  # completed operations before it begins

    def describe(self) -> str:
        names = lambda ix: ",".join(f"node{i + 1}" for i in ix)  # noqa: E731
        if self.kind == "partition":
            return f"partition {names(self.nodes)} | {names(self.other)}"
        if self.kind == "one_way":
            return f"one-way: {names(self.nodes)} hears nothing from {names(self.other)}"
        if self.kind == "clock":
            return f"clock of {names(self.nodes)} jumps {self.offset_s:+.1f} s"
        return f"{self.kind} {names(self.nodes)}"


def schedule(seed: int, size: int, count: int, clock_jumps: bool) -> list[Fault]:
    """The first `count` faults of seed `seed`'s schedule."""
    rng = random.Random(seed)
    kinds = [k for k in FAULT_KINDS if clock_jumps or k != "clock"]
    out = []
    for i in range(count):
        # Every kind once in the first len(kinds) faults, in a seeded order; then at random.
        if i % len(kinds) == 0:
            order = kinds[:]
            rng.shuffle(order)
        kind = order[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        everyone = list(range(size))
        rng.shuffle(everyone)
        f = Fault(kind, [], hold_ops=rng.randint(60, 200), gap_ops=rng.randint(50, 150))
        if kind == "partition":
            minority = rng.choice((1, 2))
            f.nodes, f.other = sorted(everyone[:minority]), sorted(everyone[minority:])
        elif kind == "one_way":
            f.nodes, f.other = [everyone[0]], sorted(everyone[1:1 + rng.choice((1, 2))])
        elif kind == "clock":
            f.nodes, f.offset_s = [everyone[0]], rng.choice(CLOCK_OFFSETS_S)
        else:
            f.nodes = [everyone[0]]
        out.append(f)
    return out


def affected(cluster: cc.ChaosCluster, f: Fault) -> Optional[set[str]]:
    """The nodes whose operations measure how long a fault holds: the deaf, jumped or
    nodes (each a fifth of the operations); None (all operations) for a dead, paused or
    partitioned node, whose operations complete only when the client or the request
    times out."""
    if f.kind in ("kill", "pause", "partition"):
        return None
    return {cluster.nodes[i].name for i in f.nodes}


def begin(cluster: cc.ChaosCluster, f: Fault) -> None:
    nodes = [cluster.nodes[i] for i in f.nodes]
    if f.kind == "kill":
        for n in nodes:
            n.kill9()
    elif f.kind == "pause":
        for n in nodes:
            n.pause()
    elif f.kind == "partition":
        cluster.fabric.cut(f.nodes, f.other)
    elif f.kind == "one_way":
        cluster.fabric.cut_one_way(f.nodes[0], f.other)
    elif f.kind == "clock":
        nodes[0].set_clock_offset(f.offset_s)


def _not_alive_seen(cluster: cc.ChaosCluster, pairs: list[tuple[int, int]]) -> bool:
    """Whether some observer of `pairs` (observer, member) sees its member not alive (for
    a kill or a pause: all of them)."""
    seen = []
    for obs, member in pairs:
        node = cluster.nodes[obs]
        try:
            with node.client(timeout=1.0) as c:
                m = c.members().get(cluster.nodes[member].name)
        except h.NoReply:
            seen.append(False)
            continue
        seen.append(m is not None and m.state != pb.MEMBER_ALIVE)
    return seen


def _clock_seen(cluster: cc.ChaosCluster, f: Fault) -> bool:
    """Whether some node's `members` shows the jumped node's clock off by at least half
    the jump: the node itself once its versions run ahead of its wall clock (a backward
    jump), or a peer a write of it reached (a forward one)."""
    name = cluster.nodes[f.nodes[0]].name
    for node in cluster.nodes:
        try:
            with node.client(timeout=1.0) as c:
                m = c.members().get(name)
        except h.NoReply:
            continue
        if m is not None and m.clock_known and abs(m.clock_offset_ms) >= abs(f.offset_s) * 500:
            return True
    return False


def wait_effect(cluster: cc.ChaosCluster, f: Fault, timeout: float = EFFECT_TIMEOUT) -> Optional[float]:
    """Waits until the nodes show the fault (a killed or paused node not alive in every
    other node's view; one side of a partition not alive to the other; for a one-way cut,
    the deaf node or one it cannot hear suspecting the other; a clock jump in `members`);
    returns how long it took, or
    None when it was not seen within `timeout` s (the run goes on)."""
    if f.kind in ("kill", "pause"):
        pairs = [(o, v) for v in f.nodes for o in range(cluster.size) if o not in f.nodes]
        need_all = True
    elif f.kind == "partition":
        pairs = [(a, b) for a in f.nodes for b in f.other] + \
                [(b, a) for a in f.nodes for b in f.other]
        need_all = True
    elif f.kind == "one_way":
        pairs = [(f.nodes[0], b) for b in f.other] + [(b, f.nodes[0]) for b in f.other]
        need_all = False
    else:
        pairs, need_all = [], False
    t = time.monotonic()
    if f.kind == "clock":
        cond = lambda: _clock_seen(cluster, f)  # noqa: E731
    else:
        cond = lambda: (all if need_all else any)(_not_alive_seen(cluster, pairs))  # noqa: E731
    try:
        h.wait_for(cond, timeout, f"gossip to see {f.describe()}", interval=0.1)
    except AssertionError:
        return None
    return time.monotonic() - t


def heal_all(cluster: cc.ChaosCluster) -> None:
    """Undoes every fault: network whole, clocks true, stopped nodes continued, killed
    nodes restarted on their data directories."""
    cluster.fabric.heal()
    for n in cluster.nodes:
        if n.clock_file is not None:
            n.set_clock_offset(0)
        n.resume()
        if not n.running():
            n.start(keep_ports=True)


def wait_versions_accepted(cluster: cc.ChaosCluster, history: History,
                           timeout: float = 30.0) -> None:
    """Waits until every node's versions are taken by every replica: for each node, a
    key homed on it written at ALL through each other node answers OK. After a clock jump
    a node's hybrid logical clock stays ahead until real time catches up, and a replica
    whose clock was put back re-reads its offset within a second; until then replicas
    refuse (FAILED_PRECONDITION) the versions, read repairs included, that final reads
    would send. The probes are logged like any write."""
    clients = {n.name: n.client(timeout=CLIENT_TIMEOUT) for n in cluster.nodes}
    try:
        probes = {}
        for n in cluster.nodes:
            for i in range(10000):
                key = f"probe-{n.name}-{i}"
                req = clients[n.name].new_request()
                req.replicas.key = key.encode()
                reps = clients[n.name].call(req).replicas.replicas
                if any(r.home and r.node_id == n.name for r in reps):
                    probes[n.name] = key
                    break
        pending = [(n.name, m.name) for n in cluster.nodes for m in cluster.nodes
                   if m is not n]
        seq = [0]

        def all_taken():
            for owner, via in list(pending):
                seq[0] += 1
                rec = perform(clients[via], "put", probes[owner], f"probe.{seq[0]}",
                              strict=True, consistency=pb.ALL)
                rec.update(node=via, client="probe")
                history.op(rec)
                if rec["outcome"] == "ok":
                    pending.remove((owner, via))
            return not pending
        h.wait_for(all_taken, timeout, "every replica to take every node's versions",
                   interval=0.2)
    finally:
        for c in clients.values():
            c.close()


def _kvcli_json(node: cc.ChaosNode, *args: str, timeout: float = 30.0):
    """`kvcli --json ARGS` through `node`: (exit status, the JSON object printed or None,
    stderr)."""
    result = h.kvcli("--json", *args, endpoint=node.client_endpoint, timeout=timeout)
    try:
        out = json.loads(result.stdout.decode() or "null")
    except ValueError:
        out = None
    return result.returncode, out, result.stderr.decode(errors="replace").strip()


def wait_hints_drained(cluster: cc.ChaosCluster, timeout: float = HINTS_TIMEOUT) -> dict:
    """Waits until no node holds a hint for another (`kvcli hints --json` on each): with
    every node up and agreed, each fallback hands its hints back. Returns how long it
    took (None: not within `timeout`, the run fails), the hints still held then, the
    hints delivered and hand-overs failed since the nodes started, and the repair marks
    (partitions whose hints were refused)."""
    t = time.monotonic()
    state: dict = {}

    def drained() -> bool:
        pending, delivered, failures, marks = {}, 0, 0, []
        for n in cluster.nodes:
            rc, out, err = _kvcli_json(n, "hints")
            if rc != 0 or out is None:
                pending[n.name] = f"kvcli hints failed ({rc}): {err}"
                continue
            for target in out["targets"]:
                delivered += target["delivered"]
                failures += target["failures"]
                if target["hints"]:
                    pending[f"{n.name}->{target['node_id']}"] = target["hints"]
            marks += [dict(m, holder=n.name) for m in out["marks"]]
        state.update(pending=pending, delivered=delivered, failures=failures, marks=marks)
        return not pending
    try:
        h.wait_for(drained, timeout, "every node's hints to be handed back", interval=0.5)
        seconds = round(time.monotonic() - t, 1)
    except AssertionError:
        seconds = None
    return {"drained_after_s": seconds, "pending": state.get("pending", {}),
            "delivered": state.get("delivered", 0), "failures": state.get("failures", 0),
            "repair_marks": len(state.get("marks", [])),
            "repair_mark_examples": state.get("marks", [])[:5]}


def forced_repair(cluster: cc.ChaosCluster, wait_s: int = REPAIR_WAIT_S) -> dict:
    """One forced anti-entropy pass: `kvcli repair --wait S --json` on every node in turn,
    so every partition's every pair of home replicas compares digests (the later node of a
    pair finds it in sync when the earlier one repaired it). Returns the rounds' totals,
    per node, and the failed rounds (the run fails on any)."""
    keys = ("rounds", "in_sync", "repaired", "failed", "leaves_differing", "pulled",
            "pushed", "skipped", "bytes")
    total = dict.fromkeys(keys, 0)
    per_node, failed, errors = {}, [], []  # failed: rounds that failed
    t0 = time.monotonic()
    for n in cluster.nodes:
        t = time.monotonic()
        rc, out, err = _kvcli_json(n, "repair", "--wait", str(wait_s), timeout=wait_s + 30)
        if out is None or rc not in (0, 3):
            errors.append(f"kvcli repair on {n.name} exited {rc}: {err}")
            continue
        mine = dict.fromkeys(keys, 0)
        for r in out["rounds"]:
            mine["rounds"] += 1
            if r["error"]:
                mine["failed"] += 1
                failed.append({"node": n.name, "peer": r["node_id"],
                               "partition": r["partition"], "error": r["error"]})
            elif r["in_sync"]:
                mine["in_sync"] += 1
            else:
                mine["repaired"] += 1
            for k in ("leaves_differing", "pulled", "pushed", "skipped", "bytes"):
                mine[k] += r[k]
        mine["seconds"] = round(time.monotonic() - t, 1)
        per_node[n.name] = mine
        for k in keys:
            total[k] += mine[k]
    # A forced pair whose scheduled round is running is answered by that round (cluster/
    # anti_entropy.h), which may have begun under the last fault (a node paused until the
    # heal times out its own round, one its peer did not hear). Such a pair is forced
    # once more, now that the round is over; only a failure of that round fails the run.
    retried = []
    for f in failed:
        node = next(n for n in cluster.nodes if n.name == f["node"])
        rc, out, err = _kvcli_json(node, "repair", str(f["partition"]), "--wait",
                                   str(wait_s), timeout=wait_s + 30)
        rounds = [r for r in (out or {}).get("rounds", []) if r["node_id"] == f["peer"]]
        again = rounds[0]["error"] if rounds else f"no round ({rc}: {err})"
        retried.append(dict(f, retry_error=again))
        if rounds and not again:
            total["pulled"] += rounds[0]["pulled"]
            total["pushed"] += rounds[0]["pushed"]
    still = [f for f in retried if f["retry_error"]]
    total["failed_first"] = total.pop("failed")
    total["failed"] = len(still)
    total["seconds"] = round(time.monotonic() - t0, 1)
    return {**total, "per_node": per_node, "failed_examples": retried[:10],
            "errors": errors}


# ---------------------------------------------------------------------------- reports

def final_reads(cluster: cc.ChaosCluster, history: History, keys: list[str],
                rounds: int = 2) -> list[str]:
    """`rounds` passes of a strict QUORUM read of every key, through the nodes in turn (the next
    node each pass), retried while one times out or is unavailable; returns the keys some
    pass never read."""
    clients = [n.client(timeout=CLIENT_TIMEOUT) for n in cluster.nodes]
    unread = []
    try:
        deadline = time.monotonic() + FINAL_READ_TIMEOUT
        for i, key in ((i, key) for r in range(rounds) for i, key in enumerate(keys, r)):
            attempt = 0
            while True:
                c = clients[(i + attempt) % len(clients)]
                rec = perform(c, "get", key)
                rec.update(node=cluster.nodes[(i + attempt) % len(clients)].name,
                           client="final", final=True)
                history.op(rec)
                if rec["outcome"] in ("ok", "not_found"):
                    break
                attempt += 1
                if rec["outcome"] == "noreply":
                    idx = (i + attempt - 1) % len(clients)
                    clients[idx].close()
                    clients[idx] = cluster.nodes[idx].client(timeout=CLIENT_TIMEOUT)
                if time.monotonic() > deadline:
                    unread.append(key)
                    break
    finally:
        for c in clients:
            c.close()
    return unread


_VERSION = re.compile(r"^(\d+)\.(\d+)@([0-9a-fA-F]+)$")


def parse_version(text: str) -> tuple[int, int]:
    """kvcli's version text, PHYSICAL_MS.LOGICAL@ORIGIN_HEX, as (hlc, origin); (0, 0) for
    none ("-" or empty)."""
    m = _VERSION.match(text or "")
    if not m:
        return (0, 0)
    return ((int(m.group(1)) << 16) | int(m.group(2)), int(m.group(3), 16))


def replicas_of(node: cc.ChaosNode, key: str) -> Optional[list[dict]]:
    """`kvcli replicas KEY --json` through `node`: one dict per replica, or None when
    kvcli failed."""
    result = h.kvcli("--json", "replicas", "--", key, endpoint=node.client_endpoint,
                     timeout=30.0)
    if result.returncode != 0:
        return None
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line]


def replica_report(cluster: cc.ChaosCluster, keys: list[str]) -> dict:
    """Per key, each replica's stored state as `kvcli replicas KEY --json` prints it: keys
    whose home replicas differ, and keys whose newest state only a fallback's hint
    holds."""
    divergent, only_hinted, unreachable = [], [], []
    for i, key in enumerate(keys):
        reps = replicas_of(cluster.nodes[i % len(cluster.nodes)], key)
        if reps is None:
            unreachable.append(key)
            continue
        home = [(r["node_id"], r["state"], parse_version(r["version"]))
                for r in reps if r["home"]]
        if any(s == "unreachable" for _, s, _ in home):
            unreachable.append(key)
            continue
        if checker.home_replicas_differ(home):
            divergent.append({"key": key, "home": home})
        newest_home = max((v for _, _, v in home), default=(0, 0))
        hints = [(r["node_id"], r["state"], parse_version(r["version"]))
                 for r in reps if not r["home"] and r["hinted"]]
        if any(v > newest_home for _, _, v in hints):
            only_hinted.append({"key": key, "home": home, "hints": hints})
    return {"keys": len(keys), "divergent_home_replicas": len(divergent),
            "newest_only_in_a_hint": len(only_hinted), "unreachable": len(unreachable),
            "divergent_examples": divergent[:5], "hinted_examples": only_hinted[:5]}


class FeedWatch:
    """A subscriber on every node's change feed for the whole run, read by one thread:
    every event each node's subscriber received, with when.

    A node's change log numbers each partition's changes without gaps (`seq`), so what
    one subscriber missed is the numbers it never received up to the node's newest, and
    what it received twice is a number, or a (key, version, op), seen again. sync() marks
    where the subscriptions are known to be live; what the nodes logged before is not
    judged."""

    def __init__(self, cluster: cc.ChaosCluster):
        self.cluster = cluster
        self.subs = {n.name: h.FeedSubscriber(n.feed_endpoint) for n in cluster.nodes}
        self._lock = threading.Lock()
        self.received: dict[str, list[checker.FeedEvent]] = {n.name: [] for n in cluster.nodes}
        self.baseline: dict[str, dict[int, int]] = {}  # node -> partition -> last seq at sync
        self.synced_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="feeds")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, s in self.subs.items():
                s.drain(0.01)
                if not s.events:
                    continue
                now = time.monotonic()
                with self._lock:
                    self.received[name] += [
                        checker.FeedEvent(now, e.partition, e.seq,
                                          e.key.decode("utf-8", "replace"),
                                          (e.version.hlc, e.version.origin), e.op)
                        for e in s.events]
                s.events.clear()

    def _seen_keys(self, name: str) -> set[str]:
        with self._lock:
            return {e.key for e in self.received[name]}

    def sync(self, timeout: float = 30.0) -> None:
        """Writes, through each node, a key homed on it until that node's subscriber
        receives the key's event (a SUB connects some time after connect() returns), then
        takes every node's change-log positions as the baseline."""
        for n in self.cluster.nodes:
            with n.client(timeout=CLIENT_TIMEOUT) as c:
                for i in range(10000):
                    key = f"feed-sync-{n.name}-{i}"
                    req = c.new_request()
                    req.replicas.key = key.encode()
                    if any(r.home and r.node_id == n.name
                           for r in c.call(req).replicas.replicas):
                        break

                def arrived() -> bool:  # any of the puts' events will do
                    if key in self._seen_keys(n.name):
                        return True
                    resp = c.put(key.encode(), b"sync")
                    assert resp.code == pb.OK, (n.name, resp.message)
                    return False
                h.wait_for(arrived, timeout, f"{n.name}'s feed subscriber to receive events",
                           interval=0.05)
        self.synced_at = time.monotonic()
        self.baseline = self.positions()

    def positions(self) -> dict[str, dict[int, int]]:
        """Every node's newest change-log number of each partition (a changes_since
        request asking for no partition)."""
        out = {}
        for n in self.cluster.nodes:
            with n.client(timeout=CLIENT_TIMEOUT) as c:
                req = c.new_request()
                req.changes_since.SetInParent()
                resp = c.call(req, timeout=10.0)
                assert resp.code == pb.OK, (n.name, resp.message)
                out[n.name] = {p.partition: p.last_seq for p in resp.changes_since.positions}
        return out

    def _newest_received(self) -> dict[str, dict[int, int]]:
        with self._lock:
            out: dict[str, dict[int, int]] = {}
            for name, events in self.received.items():
                mine = out.setdefault(name, {})
                for e in events:
                    mine[e.partition] = max(mine.get(e.partition, 0), e.seq)
            return out

    def catch_up(self, timeout: float = FEED_CATCH_UP_TIMEOUT) -> dict[str, dict[int, int]]:
        """Waits (up to `timeout`) until each subscriber received every node's newest
        change of every partition; returns the nodes' positions last asked."""
        last: dict[str, dict[int, int]] = {}

        def caught_up() -> bool:
            last.update(self.positions())
            got = self._newest_received()
            return all(got[name].get(p, 0) >= seq
                       for name, pos in last.items() for p, seq in pos.items()
                       if seq > self.baseline.get(name, {}).get(p, 0))
        try:
            h.wait_for(caught_up, timeout, "the feed subscribers to catch up", interval=0.2)
        except AssertionError:
            pass
        return last

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.subs.values():
            s.close()

    def report(self, ops: list[dict], faults: list[dict],
               positions: dict[str, dict[int, int]]) -> dict:
        """checker.check_feeds() on what the subscribers received."""
        now = time.monotonic()
        with self._lock:
            received = {name: list(evs) for name, evs in self.received.items()}
        return checker.check_feeds(received, self.baseline, positions, self.synced_at, now,
                                   checker.kills_of(faults, now), ops)


# ---------------------------------------------------------------------------- the run

def by_fault(violations: list, faults: list[dict]) -> dict[str, int]:
    """Violations counted by the fault holding when their read began ("recovering from
    X": X healed, gossip not yet agreed again; "between faults": agreed, no fault;
    "final": the final reads)."""
    spans = []  # (begin, end, kind)
    open_at: dict[str, float] = {}
    recovered: list[tuple[float, float, str]] = []  # (healed, agreed, kind)
    for f in faults:
        if f["phase"] == "begin":
            open_at[f["what"]] = f["at"]
        elif f["phase"] == "end":
            spans.append((open_at.pop(f["what"], f["at"]), f["at"], f["fault"]))
        else:
            recovered.append((spans[-1][1], f["at"], f["fault"]))
    out: dict[str, int] = {}
    for v in violations:
        t = v.read["start"]
        if v.read.get("final"):
            what = "final"
        else:
            what = "before any fault"
            for b, e, kind in spans:
                if b <= t <= e:
                    what = kind
                    break
                if e < t:
                    what = "between faults"
            for b, e, kind in recovered:
                if b < t <= e:
                    what = f"recovering from {kind}"
        out[what] = out.get(what, 0) + 1
    return dict(sorted(out.items()))


@dataclass
class Result:
    seed: int
    report: checker.Report
    faults: dict[str, int]
    unread: list[str]
    replicas_before_round: dict  # hints handed back, before the forced round (a figure)
    replicas: dict              # before the final reads, after the forced round
    replicas_after_reads: dict  # after them (read repair may have hidden a divergence)
    hints: dict                 # wait_hints_drained()
    repair: dict                # forced_repair()
    feed: dict
    client_errors: list[str]
    seconds: float
    anti_entropy: bool          # assert hints, repair, replicas, feeds, sloppy writes
    quorum_reads: bool
    clock_jumps: bool
    reported_by_fault: dict[str, int] = field(default_factory=dict)
    fault_log: list[dict] = field(default_factory=list)  # the history's fault records
    problems: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        out = list(self.problems) + self.client_errors
        if self.unread:
            out.append(f"{len(self.unread)} keys could not be read after healing: "
                       f"{self.unread[:10]}")
        if self.report.strict:
            out.append(f"checker: {len(self.report.strict)} violations "
                       f"{self.report.by_kind(self.report.strict)}")
        if self.anti_entropy:
            if self.hints["drained_after_s"] is None:
                out.append(f"hints not handed back within {HINTS_TIMEOUT:.0f} s of healing: "
                           f"{self.hints['pending']}")
            if self.repair["failed"] or self.repair["errors"]:
                out.append(f"forced anti-entropy: {self.repair['failed']} rounds failed "
                           f"{self.repair['failed_examples']} {self.repair['errors']}")
            r = self.replicas
            if r["divergent_home_replicas"] or r["newest_only_in_a_hint"] or r["unreachable"]:
                out.append(f"replicas after the forced anti-entropy round, before the final "
                           f"reads: {r}")
            f = self.feed
            if (f["final_versions_never_published"] or f["missed_events"] or
                    f["duplicated_seqs"] or f["duplicated_changes"]):
                out.append(f"feeds: {f}")
        return out

    def summary(self) -> dict:
        brief = lambda d: {k: v for k, v in d.items() if not k.endswith("examples")}  # noqa: E731
        return {"seed": self.seed, "seconds": round(self.seconds, 1), "faults": self.faults,
                "checker": self.report.summary(), "unread_keys": len(self.unread),
                "hints": self.hints, "forced_repair": self.repair,
                "replicas_before_round": brief(self.replicas_before_round),
                "replicas": brief(self.replicas),
                "replicas_after_reads": brief(self.replicas_after_reads),
                "reported_by_fault": self.reported_by_fault,
                "feed": self.feed, "client_errors": self.client_errors,
                "anti_entropy_asserted": self.anti_entropy,
                "quorum_reads_asserted": self.quorum_reads, "clock_jumps": self.clock_jumps,
                "failures": self.failures()}

    def text(self) -> str:
        rep = {k: v for k, v in self.repair.items() if k != "per_node"}
        lines = [f"seed {self.seed}: {self.seconds:.0f} s, faults {json.dumps(self.faults)}",
                 self.report.text(),
                 f"violations by the fault holding when the read began: "
                 f"{json.dumps(self.reported_by_fault)}",
                 f"asserted (hints, forced repair, replicas, feeds, sloppy writes): "
                 f"{self.anti_entropy}",
                 f"hints after healing: {json.dumps(self.hints)}",
                 f"replicas before the forced round: {json.dumps(self.replicas_before_round)}",
                 f"forced anti-entropy pass: {json.dumps(rep)}",
                 f"replicas before the final reads: {json.dumps(self.replicas)}",
                 f"replicas after the final reads: {json.dumps(self.replicas_after_reads)}",
                 f"feeds: {json.dumps(self.feed)}"]
        if not self.clock_jumps:
            lines.append("clock jumps skipped: libfaketime is not installed, or a sanitizer "
                         "build")
        for f in self.failures():
            lines.append(f"FAILURE: {f}")
        return "\n".join(lines)


def run(workdir: Path, seed: int, duration: float, anti_entropy: bool = True,
        quorum_reads: bool = False, clients: int = 4, keys: int = 48,
        min_faults: int = len(FAULT_KINDS), log=print) -> Result:
    """One run: at least `min_faults` faults (the first ones are one of each kind), more
    while `duration` seconds have not passed. The cluster is torn down before it returns
    or raises."""
    workdir = Path(workdir).resolve()  # the daemons run in it: paths must not be relative
    workdir.mkdir(parents=True, exist_ok=True)
    history = History(workdir / "history.jsonl")
    t0 = time.monotonic()
    faults_done: dict[str, int] = {}
    cluster = cc.ChaosCluster(workdir)
    feeds = None
    try:
        cluster.start()
        cluster.wait_agreed(AGREE_TIMEOUT)
        log(f"cluster of {cluster.size} agreed in {time.monotonic() - t0:.1f} s "
            f"(subnet {cluster.fabric.subnet}.0/24, clock jumps: {cluster.clock_jumps})")
        with cluster.nodes[0].client(timeout=CLIENT_TIMEOUT) as c:
            for i in range(keys):
                key = key_name(i)
                req = c.new_request()
                req.replicas.key = key.encode()
                resp = c.call(req)
                history.note({"type": "placement", "key": key,
                              "partition": resp.replicas.partition,
                              "home": [r.node_id for r in resp.replicas.replicas if r.home]})
        feeds = FeedWatch(cluster)
        feeds.sync()
        workload = Clients(cluster, history, seed, clients, keys)
        workload.start()
        plan = schedule(seed, cluster.size, 10000, cluster.clock_jumps)
        try:
            for n, f in enumerate(plan):
                if workload.errors:
                    break
                if n >= min_faults and time.monotonic() - t0 >= duration:
                    break
                history.wait_ops(f.gap_ops, 120, workload.stop)
                history.fault({"fault": f.kind, "what": f.describe(), "phase": "begin",
                               "nodes": [cluster.nodes[i].name for i in f.nodes]})
                log(f"{time.monotonic() - t0:6.1f} s  {history.count():6d} ops  {f.describe()}")
                begin(cluster, f)
                seen = wait_effect(cluster, f)
                history.wait_ops(f.hold_ops, 120, workload.stop, through=affected(cluster, f))
                heal_all(cluster)
                history.fault({"fault": f.kind, "what": f.describe(), "phase": "end",
                               "effect_seen_after_s": seen})
                # The next fault begins on a recovered cluster, so that what the reads see
                # is put down to the fault that holds (or to the recovery, "after X").
                t = time.monotonic()
                cluster.wait_agreed(AGREE_TIMEOUT)
                history.fault({"fault": f.kind, "what": f.describe(), "phase": "agreed",
                               "agreed_after_s": time.monotonic() - t})
                if seen is None:
                    log(f"         not seen in the nodes' views within {EFFECT_TIMEOUT:.0f} s")
                faults_done[f.kind] = faults_done.get(f.kind, 0) + 1
        finally:
            workload.join()
            heal_all(cluster)
        log(f"{time.monotonic() - t0:6.1f} s  {history.count():6d} ops  healed; "
            f"waiting for gossip to agree")
        cluster.wait_agreed(AGREE_TIMEOUT)
        wait_versions_accepted(cluster, history)
        # One anti-entropy round after healing: once the hints are back, every pair of
        # home replicas compares digests; then the replicas are read BEFORE the final
        # reads, whose read repair would hide what the round left different.
        hints = wait_hints_drained(cluster)
        log(f"{time.monotonic() - t0:6.1f} s  hints handed back after "
            f"{hints['drained_after_s']} s; forcing an anti-entropy round on every node")
        keys_used = sorted({op["key"] for op in history.ops})
        replicas_before_round = replica_report(cluster, keys_used)  # what the round is for
        repair = forced_repair(cluster)
        log(f"{time.monotonic() - t0:6.1f} s  {repair['rounds']} rounds in "
            f"{repair['seconds']} s: {repair['in_sync']} in sync, {repair['repaired']} "
            f"repaired ({repair['pulled']} pulled, {repair['pushed']} pushed), "
            f"{repair['failed_first']} failed ({repair['failed']} again when forced anew)")
        replicas = replica_report(cluster, keys_used)
        unread = final_reads(cluster, history, keys_used)
        replicas_after = replica_report(cluster, keys_used)
        positions = feeds.catch_up()
        feeds.close()
        feed = feeds.report(history.ops, history.faults, positions)
        feeds = None
        report = checker.check(history.ops,
                               slack_ms=int(max(abs(o) for o in CLOCK_OFFSETS_S) * 1000) + 1000,
                               quorum_reads=quorum_reads, sloppy_writes=anti_entropy)
        result = Result(seed, report, faults_done, unread, replicas_before_round, replicas,
                        replicas_after, hints, repair, feed, workload.errors,
                        time.monotonic() - t0, anti_entropy, quorum_reads, cluster.clock_jumps,
                        by_fault(report.reported + report.strict, history.faults),
                        list(history.faults))
    finally:
        if feeds is not None:
            feeds.close()
        history.close()
        problems = cluster.close()
    result.problems += problems
    (workdir / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", help="the build directory (edgekvd, kvcli, edgekv_pb2.py)")
    p.add_argument("--duration", type=float, default=300,
                   help="go on making faults while this many seconds have not passed (300)")
    p.add_argument("--faults", type=int, default=len(FAULT_KINDS),
                   help="make at least this many faults (default: one of each kind)")
    p.add_argument("--seed", type=int, default=None, help="the schedule's seed (random)")
    p.add_argument("--workdir", help="where the history, summary and daemon logs go "
                   "(default: BUILD/chaos/seed-N)")
    p.add_argument("--no-anti-entropy-checks", dest="anti_entropy", action="store_false",
                   default=not os.environ.get("EDGEKV_CHAOS_NO_ANTI_ENTROPY_CHECKS"),
                   help="report, without asserting, what is asserted by default after "
                        "healing: hints handed back, the forced anti-entropy round, "
                        "replicas equal before the final reads, feeds missing or "
                        "duplicating nothing, sloppy writes seen at the end (also "
                        "EDGEKV_CHAOS_NO_ANTI_ENTROPY_CHECKS=1)")
    p.add_argument("--quorum-reads", action="store_true",
                   default=bool(os.environ.get("EDGEKV_CHAOS_QUORUM_READS")),
                   help="assert that sloppy reads during the faults see every acknowledged "
                        "strict write and every earlier read, as strict reads always must "
                        "(also EDGEKV_CHAOS_QUORUM_READS=1)")
    args = p.parse_args()
    # SIGTERM unwinds like ^C, so the cluster and the fabric are torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = cc.netfab.unavailable_reason()
    if reason:
        print(f"chaos: cannot run: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    base = Path(args.build or ".") / "chaos"
    workdir = Path(args.workdir) if args.workdir else base / f"seed-{seed}"
    print(f"chaos: seed {seed}, {args.duration:.0f} s, logs in {workdir}", flush=True)
    result = run(workdir, seed, args.duration, args.anti_entropy, args.quorum_reads,
                 min_faults=args.faults, log=lambda s: print(s, flush=True))
    print(result.text())
    print(f"history: {workdir / 'history.jsonl'}\nsummary: {workdir / 'summary.json'}")
    return 1 if result.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
