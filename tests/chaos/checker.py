"""The fault harness's checker: judges a history of operations (the JSON lines the
harness logs) by versions, never by which node's wall clock said what.

Pure Python, no I/O but load(); unit-tested on hand-made histories (test_checker.py).

An operation is a dict:
  kind      "put", "del" or "get"
  key, value (str; values are unique per write), ttl_ms (int, puts)
  strict    bool: counted home replicas only (docs/replication.md), reads and writes
  consistency "QUORUM" or "ALL" (others, ONE, are logged but judged by nothing here)
  start, end  the harness's monotonic clock, seconds: invocation and completion
  start_wall_ms, end_wall_ms  the harness's wall clock at both
  outcome   "ok", "not_found", or why not: "unavailable", "overloaded", "invalid" (refused
            before anything was sent: no effect), "timeout", "error", "noreply" (unknown:
            the write may have taken effect, now or later)
  version   [hlc, origin] for an ok put, del or get; None otherwise
  expiry_ms absolute expiry of an ok put or get (0: none)
  final     bool: one of the reads after healing

What is judged (docs/replication.md, "In short"), per read R of a key that answered ok or
not_found, against R's floor: the newest version among the operations of the key that
completed before R began and count for R (below).

A read that returned version v below its floor is a violation, named after what set the
floor: lost_write (an acknowledged put), deleted_came_back (an acknowledged delete),
non_monotonic_read (an earlier read). A read returning not_found below a floor is fine
when a delete or a put with a TTL that may have taken effect (acknowledged or of unknown
outcome, invoked before R answered) at or above the floor explains it (the TTL within the
clock slack of R's end); else it is a lost_write or non_monotonic_read. Whatever the floor:
a read returning a value whose write had a TTL that ended (by more than the clock slack)
before R began is expired_came_back; a value no write wrote, or that only a write refused
before it was sent wrote, is phantom_value; a value whose write was acknowledged with
another version is version_mismatch.

Asserted (what edgekv guarantees today):
  - every read: phantom_value, version_mismatch, expired_came_back;
  - the strict QUORUM/ALL reads during the faults and the final reads (made after healing
    with every node up and gossip agreed, so every read reaches the home replicas only):
    floor from the acknowledged strict QUORUM/ALL writes, the earlier strict QUORUM/ALL
    reads and the earlier final reads. No acknowledged strict write is lost, no deleted or
    expired key comes back, and strict quorum reads are monotonic: each counts home
    replicas only and answers once a quorum of them holds what it returns.
Reported (figures; asserted with the flag named):
  - sloppy reads during the faults (`quorum_reads`): floor from the acknowledged strict
    writes and every earlier read. A sloppy read whose replies came from fallbacks may miss
    a write its home replicas hold, so these do not hold under partitions and dead nodes.
  - final reads against acknowledged sloppy writes (`sloppy_writes`): a sloppy write's
    acknowledgements may all be hints, which no read sees until hints are handed back.

check_feeds() judges what subscribers received from the nodes' change feeds: numbers of
a node's change log never received (missed) or received twice, and a change received
twice.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional

NO_EFFECT = {"unavailable", "overloaded", "invalid"}
UNKNOWN = {"timeout", "error", "noreply"}

STRICT_KINDS = ("lost_write", "deleted_came_back", "non_monotonic_read",
                "expired_came_back", "phantom_value", "version_mismatch")


def vt(op: dict) -> Optional[tuple[int, int]]:
    v = op.get("version")
    return (int(v[0]), int(v[1])) if v else None


def may_have_effect(op: dict) -> bool:
    return op["kind"] in ("put", "del") and op["outcome"] not in NO_EFFECT


def acked(op: dict) -> bool:
    return op["kind"] in ("put", "del") and op["outcome"] == "ok"


@dataclass
class Violation:
    kind: str
    key: str
    read: dict            # the read judged
    cause: Optional[dict]  # the operation that set the floor, or the write read
    detail: str
    tier: str = "asserted"  # or quorum_reads, sloppy_writes (see the module's comment)

    def describe(self) -> str:
        r = self.read
        how = "strict" if r.get("strict") else "sloppy"
        return (f"[{self.tier}] {self.kind} key={self.key!r}: {how} read at node {r.get('node')} "
                f"[{r['start']:.3f}, {r['end']:.3f}] returned {r['outcome']} "
                f"{r.get('value')!r} {r.get('version')}{' (final)' if r.get('final') else ''}; "
                f"{self.detail}")


@dataclass
class Report:
    strict: list[Violation] = field(default_factory=list)    # asserted
    reported: list[Violation] = field(default_factory=list)  # figures only
    counts: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        return not self.strict

    def by_kind(self, violations: Iterable[Violation]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for v in violations:
            out[f"{v.tier}:{v.kind}"] += 1
        return dict(sorted(out.items()))

    def summary(self) -> dict:
        return {"counts": self.counts,
                "asserted_violations": self.by_kind(self.strict),
                "reported_violations": self.by_kind(self.reported)}

    def text(self, limit: int = 10) -> str:
        lines = [f"operations: {json.dumps(self.counts, sort_keys=True)}",
                 f"violations asserted: {json.dumps(self.by_kind(self.strict))}"]
        lines += ["  " + v.describe() for v in self.strict[:limit]]
        lines.append(f"violations reported: {json.dumps(self.by_kind(self.reported))}")
        lines += ["  " + v.describe() for v in self.reported[:limit]]
        return "\n".join(lines)


def _judge_key(key: str, ops: list[dict], writes_by_value: dict[str, dict],
               judged, in_floor, slack_ms: int, value_checks: bool) -> list[Violation]:
    """Violations of the reads `judged(op)` selects, with floors from the ops `in_floor`
    selects (acknowledged writes and reads that returned a version)."""
    floor_ops = [op for op in ops if in_floor(op) and
                 (acked(op) or (op["kind"] == "get" and op["outcome"] == "ok"))]
    floor_ops.sort(key=lambda op: op["end"])
    explainers = [op for op in ops if may_have_effect(op) and
                  (op["kind"] == "del" or op.get("ttl_ms", 0) > 0)]
    explainers.sort(key=lambda op: op["start"])
    starts = [w["start"] for w in explainers]
    reads = [op for op in ops if op["kind"] == "get" and
             op["outcome"] in ("ok", "not_found") and judged(op)]
    reads.sort(key=lambda op: op["start"])
    out = []
    # One sweep: reads by start, the floor as the newest of the ops that ended before.
    i, floor = 0, None
    for r in reads:
        while i < len(floor_ops) and floor_ops[i]["end"] < r["start"]:
            if floor is None or vt(floor_ops[i]) > vt(floor):
                floor = floor_ops[i]
            i += 1
        if r["outcome"] == "ok":
            v = vt(r)
            w = writes_by_value.get(r.get("value"))
            if value_checks:
                if w is None or w["kind"] != "put" or w["key"] != key:
                    out.append(Violation("phantom_value", key, r, None,
                                         "no put of this key wrote that value"))
                    continue
                if w["outcome"] in NO_EFFECT:
                    out.append(Violation("phantom_value", key, r, w,
                                         f"its put was answered {w['outcome']} (sent nowhere)"))
                    continue
                if acked(w) and vt(w) != v:
                    out.append(Violation("version_mismatch", key, r, w,
                                         f"its put was acknowledged with version {w['version']}"))
                if w.get("ttl_ms", 0) > 0:
                    expiry = r.get("expiry_ms") or w.get("expiry_ms") or 0
                    if expiry and expiry + slack_ms < r["start_wall_ms"]:
                        out.append(Violation(
                            "expired_came_back", key, r, w,
                            f"its put's TTL ended at {expiry} ms, "
                            f"{r['start_wall_ms'] - expiry} ms before the read began"))
            if floor is not None and vt(floor) > v:
                out.append(Violation(_floor_kind(floor), key, r, floor,
                                     f"older than {_describe_floor(floor)}"))
        else:  # not_found
            if floor is None or floor["kind"] == "del":
                continue
            if _explained(floor, explainers, starts, r, slack_ms):
                continue
            out.append(Violation(_floor_kind(floor), key, r, floor,
                                 f"nothing explains not_found after {_describe_floor(floor)}"))
    return out


def _explained(floor: dict, explainers: list[dict], starts: list[float], r: dict,
               slack_ms: int) -> bool:
    fv = vt(floor)
    # Invoked before the read answered (explainers are sorted by start), newest first.
    n = bisect.bisect_right(starts, r["end"])
    for w in reversed(explainers[:n]):
        wv = vt(w)
        if wv is not None and wv < fv:
            continue
        if w["kind"] == "del":
            return True
        expiry = w.get("expiry_ms") or (w["start_wall_ms"] + w["ttl_ms"])
        if expiry <= r["end_wall_ms"] + slack_ms:
            return True
    # A floor set by a read of a TTL'd value explains itself once the TTL passed.
    expiry = floor.get("expiry_ms") or 0
    return bool(expiry) and expiry <= r["end_wall_ms"] + slack_ms


def _floor_kind(floor: dict) -> str:
    if floor["kind"] == "put":
        return "lost_write"
    if floor["kind"] == "del":
        return "deleted_came_back"
    return "non_monotonic_read"


def _describe_floor(floor: dict) -> str:
    what = {"put": "the acknowledged put", "del": "the acknowledged delete",
            "get": "an earlier read"}[floor["kind"]]
    strict = "strict" if floor.get("strict") else "sloppy"
    return (f"{what} ({strict}, node {floor.get('node')}, [{floor['start']:.3f}, "
            f"{floor['end']:.3f}]) of version {floor['version']}"
            + (f" value {floor.get('value')!r}" if floor["kind"] != "del" else ""))


def _is_strict_write(op: dict) -> bool:
    return op["kind"] in ("put", "del") and bool(op.get("strict"))


def _is_strict_read(op: dict) -> bool:
    return op["kind"] == "get" and bool(op.get("strict"))


def _quorum(op: dict) -> bool:
    """At least a quorum: QUORUM, or ALL (the harness's probes)."""
    return op.get("consistency") in ("QUORUM", "ALL")


def check(ops: list[dict], slack_ms: int = 1000, quorum_reads: bool = False,
          sloppy_writes: bool = False) -> Report:
    """Judges `ops` (records with a "kind"; others are ignored). `slack_ms`: how far the
    nodes' clocks may be from the harness's (clock jumps), for TTL judgements. The flags
    move a reported check to the asserted ones (see the module's comment)."""
    ops = [op for op in ops if op.get("kind") in ("put", "del", "get")]
    writes_by_value = {op["value"]: op for op in ops if op["kind"] == "put"}
    by_key: dict[str, list[dict]] = defaultdict(list)
    for op in ops:
        by_key[op["key"]].append(op)
    report = Report()

    def final(op):
        return bool(op.get("final"))

    def run_read(op):
        return _quorum(op) and not op.get("final")

    def strict_quorum(op):
        return _quorum(op) and (_is_strict_write(op) or _is_strict_read(op))

    for key, key_ops in sorted(by_key.items()):
        # Asserted: strict reads during the faults and final reads against strict writes,
        # earlier strict reads and earlier final reads; the value checks on every read.
        asserted = _judge_key(key, key_ops, writes_by_value,
                              lambda op: final(op) or (run_read(op) and _is_strict_read(op)),
                              lambda op: strict_quorum(op) or final(op),
                              slack_ms, value_checks=False)
        asserted += [v for v in _judge_key(key, key_ops, writes_by_value, lambda op: True,
                                           lambda op: False, slack_ms, value_checks=True)]
        # Sloppy reads during the faults, as docs/replication.md describes QUORUM reads.
        during = _judge_key(key, key_ops, writes_by_value,
                            lambda op: run_read(op) and not _is_strict_read(op),
                            lambda op: _quorum(op) and (_is_strict_write(op) or
                                                        op["kind"] == "get"),
                            slack_ms, value_checks=False)
        # Final reads against every acknowledged QUORUM write, sloppy ones included.
        seen = {id(v.read) for v in asserted}
        sloppy = [v for v in _judge_key(key, key_ops, writes_by_value, final,
                                        lambda op: _quorum(op) and
                                        (op["kind"] in ("put", "del") or final(op)),
                                        slack_ms, value_checks=False)
                  if id(v.read) not in seen]
        for v in during:
            v.tier = "quorum_reads"
        for v in sloppy:
            v.tier = "sloppy_writes"
        report.strict += asserted
        (report.strict if quorum_reads else report.reported).extend(during)
        (report.strict if sloppy_writes else report.reported).extend(sloppy)
    c: dict[str, int] = defaultdict(int)
    for op in ops:
        what = op["kind"]
        if op.get("final"):
            what += "_final"
        else:
            what += "_strict" if op.get("strict") else "_sloppy"
        c[f"{what}_{op['outcome']}"] += 1
        c["operations"] += 1
    c["reads_during_faults_stale"] = sum(1 for v in report.reported + report.strict
                                         if v.tier == "quorum_reads")
    c["sloppy_acked_writes_unseen_at_end"] = sum(
        1 for v in report.reported + report.strict
        if v.tier == "sloppy_writes" and v.kind == "lost_write")
    report.counts = dict(sorted(c.items()))
    return report


# ---------------------------------------------------------------------------- feeds

@dataclass(frozen=True)
class FeedEvent:
    """One change-feed event as a subscriber received it."""
    at: float         # the harness's monotonic clock when it was received
    partition: int
    seq: int          # the node's change number in its partition, gapless
    key: str
    version: tuple[int, int]
    op: int           # ChangeOp: 1 put, 2 delete, 3 expire


def kills_of(faults: list[dict], now: float) -> list[tuple[str, float, float]]:
    """(node, killed at, gossip agreed again at) of every kill in a history's fault
    records (a kill never agreed again lasts until `now`)."""
    out, began = [], {}
    for f in faults:
        if f.get("fault") != "kill":
            continue
        if f["phase"] == "begin":
            began[f["what"]] = (f["at"], f.get("nodes", []))
        elif f["phase"] == "agreed" and f["what"] in began:
            at, nodes = began.pop(f["what"])
            out += [(n, at, f["at"]) for n in nodes]
    for at, nodes in began.values():
        out += [(n, at, now) for n in nodes]
    return out


def check_feeds(received: dict[str, list[FeedEvent]], baseline: dict[str, dict[int, int]],
                positions: dict[str, dict[int, int]], synced_at: float, now: float,
                kills: list[tuple[str, float, float]], ops: list[dict]) -> dict:
    """Judges what one subscriber per node received from that node's feed.

    received   node -> events in the order received
    baseline   node -> partition -> the node's newest change number when the
               subscription was known live (at synced_at); what came before is not judged
    positions  node -> partition -> the node's newest change number at the end
    kills      kills_of(): a subscriber reconnects to a restarted node some time after
               it publishes again, and loses what was queued for it at the kill

    missed: numbers in (baseline, position] never received, but for runs of them between
    two received events (or synced_at and now) around which the node was killed
    (missed_at_a_restart). duplicated_seqs: a number received twice; duplicated_changes:
    a (key, version, op) received twice, which nothing legitimately does, since a store
    applies a change only when it is newer than what it holds. Also: the acknowledged
    strict writes no feed published (a figure: a replica holding a newer version
    acknowledges a write without applying it), how many of them no newer write of the key
    begun before they were acknowledged explains (a figure), and the versions the final
    reads returned that no feed published (those were applied somewhere)."""
    missed = at_restart = dup_seq = dup_change = 0
    missed_examples: list[dict] = []
    dup_examples: list[dict] = []
    for name, evs in received.items():
        base = baseline.get(name, {})
        by_partition: dict[int, list[FeedEvent]] = defaultdict(list)
        first: dict[tuple, FeedEvent] = {}
        for e in evs:
            if e.seq <= base.get(e.partition, 0):
                continue
            by_partition[e.partition].append(e)
            change = (e.key, e.version, e.op)
            if change in first:
                dup_change += 1
                if len(dup_examples) < 10:
                    dup_examples.append({"node": name, "key": e.key,
                                         "version": list(e.version), "op": e.op,
                                         "partition": e.partition,
                                         "seqs": [first[change].seq, e.seq]})
            else:
                first[change] = e
        for p in set(positions.get(name, {})) | set(by_partition):
            last = positions.get(name, {}).get(p, 0)
            got = sorted(by_partition.get(p, []), key=lambda e: (e.seq, e.at))
            dup_seq += len(got) - len({e.seq for e in got})
            prev_at, expect = synced_at, base.get(p, 0) + 1
            for seq, at in [(e.seq, e.at) for e in got] + [(last + 1, now)]:
                if seq > expect:
                    gap = seq - expect
                    if any(n == name and prev_at <= agreed and at >= killed
                           for n, killed, agreed in kills):
                        at_restart += gap
                    else:
                        missed += gap
                        if len(missed_examples) < 10:
                            missed_examples.append({"node": name, "partition": p,
                                                    "seqs": [expect, seq - 1]})
                expect = max(expect, seq + 1)
                prev_at = at
    seen = {(e.key, e.version) for evs in received.values() for e in evs}
    acked_writes = [op for op in ops if op["kind"] in ("put", "del") and acked(op)
                    and op.get("strict")]
    unpublished = [op for op in acked_writes if (op["key"], vt(op)) not in seen]
    # Superseded: a write of the key with a newer version, acknowledged or of unknown
    # outcome, began before this one was acknowledged, so a replica may have held it.
    by_key: dict[str, list[dict]] = defaultdict(list)
    for op in ops:
        if op["kind"] in ("put", "del") and may_have_effect(op) and not op.get("final"):
            by_key[op["key"]].append(op)

    def superseded(w: dict) -> bool:
        return any(x is not w and x["start"] < w["end"] and
                   (vt(x) is None or vt(x) > vt(w)) for x in by_key[w["key"]])
    unexplained = [w for w in unpublished if not superseded(w)]
    finals = {(op["key"], vt(op)) for op in ops if op.get("final") and op["outcome"] == "ok"}
    return {"events": sum(len(evs) for evs in received.values()),
            "missed_events": missed, "missed_at_a_restart": at_restart,
            "duplicated_seqs": dup_seq, "duplicated_changes": dup_change,
            "acked_strict_writes": len(acked_writes),
            "acked_strict_writes_never_published": len(unpublished),
            "of_them_not_superseded": len(unexplained),
            "final_versions": len(finals),
            "final_versions_never_published": len(finals - seen),
            "missed_examples": missed_examples, "duplicated_examples": dup_examples,
            "not_superseded_examples": [
                {k: w.get(k) for k in ("key", "kind", "value", "version", "node", "start",
                                       "end", "ttl_ms")} for w in unexplained[:10]]}


def load(path) -> list[dict]:
    """The operations of a JSON-lines history (lines of other types are skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                if rec.get("type", "op") == "op":
                    out.append(rec)
    return out


def home_replicas_differ(home: list[tuple[str, str, tuple[int, int]]]) -> bool:
    """Whether home replicas' (node, state, version) differ. An expired key's tombstone and
    a delete's are the same state at one version. A replica with no row agrees with
    tombstones: tombstones are purged once every home replica holds them, each replica in
    its own sweep, so for a moment some hold the tombstone and some nothing, and nothing
    can bring the key back on either. It does not agree with a live value."""
    states = {(s if s != "expired" else "deleted", v) for _, s, v in home}
    if any(s == "absent" for s, _ in states) and all(s in ("absent", "deleted")
                                                     for s, _ in states):
        states = {(s, v) for s, v in states if s != "absent"}
    return len(states) > 1


if __name__ == "__main__":
    import sys
    rep = check(load(sys.argv[1]), slack_ms=int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    print(rep.text())
    sys.exit(0 if rep.ok() else 1)
