"""The fault harness's checker on hand-made histories: each kind of violation is found
where it is, in the tier it belongs to, and nothing is reported where operations overlap
or a delete, a TTL or a write of unknown outcome explains what a read saw."""

from __future__ import annotations

import json

import checker

ORIGIN = 7


def op(kind, key, start, end, outcome="ok", hlc=None, value=None, ttl_ms=0, strict=None,
       final=False, expiry_ms=0, node="node1"):
    """An operation; times in seconds, the wall clock in ms at 1000x the same times.
    Writes are strict and reads sloppy unless `strict` says otherwise."""
    if strict is None:
        strict = kind != "get"
    rec = {"kind": kind, "key": key, "start": start, "end": end, "outcome": outcome,
           "start_wall_ms": int(start * 1000), "end_wall_ms": int(end * 1000),
           "consistency": "QUORUM", "strict": strict, "node": node,
           "version": [hlc, ORIGIN] if hlc is not None else None}
    if value is not None:
        rec["value"] = value
    if kind == "put":
        rec["ttl_ms"] = ttl_ms
        if ttl_ms and outcome == "ok":
            rec["expiry_ms"] = expiry_ms or int(start * 1000) + ttl_ms
    if kind == "get" and expiry_ms:
        rec["expiry_ms"] = expiry_ms
    if final:
        rec["final"] = True
    return rec


def kinds(violations):
    return sorted((v.tier, v.kind, v.key) for v in violations)


def test_a_clean_history_has_no_violations():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("get", "a", 2, 3, hlc=10, value="a1"),
           op("put", "a", 4, 5, hlc=20, value="a2"),
           op("del", "a", 6, 7, hlc=30),
           op("get", "a", 8, 9, outcome="not_found"),
           op("put", "b", 0, 1, hlc=11, value="b1", strict=False),
           op("get", "b", 10, 11, hlc=11, value="b1", final=True),
           op("get", "a", 10, 11, outcome="not_found", final=True)]
    report = checker.check(ops)
    assert report.ok() and not report.reported, report.text()
    assert report.counts["operations"] == 8
    assert report.counts["put_strict_ok"] == 2 and report.counts["get_final_ok"] == 1


def test_a_final_read_older_than_an_acknowledged_strict_put_is_a_lost_write():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, hlc=20, value="a2"),
           op("get", "a", 10, 11, hlc=10, value="a1", final=True)]
    report = checker.check(ops)
    assert kinds(report.strict) == [("asserted", "lost_write", "a")]
    assert "a2" in report.strict[0].describe()


def test_a_final_not_found_after_an_acknowledged_put_is_lost_unless_explained():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("get", "a", 10, 11, outcome="not_found", final=True)]
    assert kinds(checker.check(ops).strict) == [("asserted", "lost_write", "a")]
    # A delete that timed out (its outcome unknown, its version too) explains it...
    explained = ops + [op("del", "a", 2, 3, outcome="timeout")]
    assert checker.check(explained).ok()
    # ...one refused before it was sent does not...
    refused = ops + [op("del", "a", 2, 3, outcome="unavailable")]
    assert not checker.check(refused).ok()
    # ...nor one acknowledged with a version older than the put's.
    older = ops + [op("del", "a", 2, 3, hlc=5)]
    assert not checker.check(older).ok()
    # A TTL put at or above the floor whose TTL ended explains it.
    ttl = ops + [op("put", "a", 2, 3, hlc=12, value="a2", ttl_ms=1000)]
    assert checker.check(ttl).ok()


def test_a_value_older_than_an_acknowledged_delete_is_a_deleted_key_back():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("del", "a", 2, 3, hlc=20),
           op("get", "a", 10, 11, hlc=10, value="a1", final=True)]
    assert kinds(checker.check(ops).strict) == [("asserted", "deleted_came_back", "a")]


def test_a_value_read_after_its_ttl_ended_is_an_expired_key_back():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1", ttl_ms=2000),
           op("get", "a", 1.5, 1.6, hlc=10, value="a1", expiry_ms=2000),
           op("get", "a", 5, 5.1, hlc=10, value="a1", expiry_ms=2000)]
    report = checker.check(ops, slack_ms=1000)
    assert kinds(report.strict) == [("asserted", "expired_came_back", "a")]
    assert report.strict[0].read["start"] == 5
    # Within the clock slack it is not judged.
    assert checker.check(ops, slack_ms=4000).ok()


def test_two_passes_of_final_reads_must_be_monotonic():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1", strict=False),
           op("put", "a", 0, 1, hlc=20, value="a2", strict=False),
           op("get", "a", 10, 11, hlc=20, value="a2", final=True),
           op("get", "a", 12, 13, hlc=10, value="a1", final=True)]
    report = checker.check(ops)
    assert kinds(report.strict) == [("asserted", "non_monotonic_read", "a")]


def test_stale_reads_during_faults_are_reported_unless_asserted():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, hlc=20, value="a2"),
           op("get", "a", 4, 5, hlc=20, value="a2"),
           op("get", "a", 6, 7, hlc=10, value="a1"),
           op("get", "a", 10, 11, hlc=20, value="a2", final=True)]
    report = checker.check(ops)
    assert report.ok(), report.text()
    assert kinds(report.reported) == [("quorum_reads", "lost_write", "a")]
    assert report.counts["reads_during_faults_stale"] == 1
    asserted = checker.check(ops, quorum_reads=True)
    assert kinds(asserted.strict) == [("quorum_reads", "lost_write", "a")]


def test_a_strict_read_during_the_faults_older_than_a_strict_write_is_asserted():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, hlc=20, value="a2"),
           op("get", "a", 4, 5, hlc=10, value="a1", strict=True)]
    report = checker.check(ops)
    assert kinds(report.strict) == [("asserted", "lost_write", "a")]
    assert "strict read" in report.strict[0].describe()
    assert report.counts["get_strict_ok"] == 1
    assert report.counts["reads_during_faults_stale"] == 0


def test_strict_reads_are_monotonic_and_floor_later_final_reads():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1", strict=False),
           op("put", "a", 0, 1, hlc=20, value="a2", strict=False),
           op("get", "a", 2, 3, hlc=20, value="a2", strict=True),
           op("get", "a", 4, 5, hlc=10, value="a1", strict=True),
           op("get", "a", 10, 11, hlc=10, value="a1", final=True)]
    report = checker.check(ops)
    assert kinds(report.strict) == [("asserted", "non_monotonic_read", "a"),
                                    ("asserted", "non_monotonic_read", "a")]


def test_a_strict_read_is_not_held_to_sloppy_reads_or_sloppy_writes():
    # Fallbacks may answer a sloppy read with a hint the home replicas never got, and a
    # sloppy write may be held only as hints: a strict read rightly misses both.
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, hlc=20, value="a2", strict=False),
           op("get", "a", 4, 5, hlc=20, value="a2"),
           op("get", "a", 6, 7, hlc=10, value="a1", strict=True)]
    report = checker.check(ops)
    assert report.ok(), report.text()
    assert report.reported == []
    assert report.counts["get_sloppy_ok"] == 1 and report.counts["get_strict_ok"] == 1


def test_a_sloppy_read_older_than_a_strict_read_is_reported_not_asserted():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1", strict=False),
           op("put", "a", 0, 1, hlc=20, value="a2", strict=False),
           op("get", "a", 2, 3, hlc=20, value="a2", strict=True),
           op("get", "a", 4, 5, hlc=10, value="a1")]
    report = checker.check(ops)
    assert report.ok(), report.text()
    assert kinds(report.reported) == [("quorum_reads", "non_monotonic_read", "a")]


def test_a_sloppy_write_missing_after_healing_is_counted_not_asserted():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, hlc=20, value="a2", strict=False),
           op("get", "a", 10, 11, hlc=10, value="a1", final=True)]
    report = checker.check(ops)
    assert report.ok(), report.text()
    assert kinds(report.reported) == [("sloppy_writes", "lost_write", "a")]
    assert report.counts["sloppy_acked_writes_unseen_at_end"] == 1
    assert not checker.check(ops, sloppy_writes=True).ok()


def test_values_nobody_wrote_or_with_another_version_are_found_on_any_read():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 2, 3, outcome="unavailable", value="a2"),
           op("get", "a", 4, 5, hlc=11, value="zz"),
           op("get", "a", 6, 7, hlc=12, value="a2"),
           op("get", "a", 8, 9, hlc=13, value="a1")]
    report = checker.check(ops)
    assert kinds(report.strict) == [("asserted", "phantom_value", "a"),
                                    ("asserted", "phantom_value", "a"),
                                    ("asserted", "version_mismatch", "a")]


def test_operations_that_overlap_the_read_set_no_floor():
    # The put ends after the read began: the read may or may not see it.
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"),
           op("put", "a", 5, 8, hlc=20, value="a2"),
           op("get", "a", 6, 7, hlc=10, value="a1", final=True),
           op("get", "a", 7.5, 9, hlc=20, value="a2", final=True)]
    assert checker.check(ops).ok()


def test_versions_not_wall_clocks_order_writes():
    # A write made later in real time with an older version (a clock behind) loses to
    # the earlier one; a read returning the earlier one is right.
    ops = [op("put", "a", 0, 1, hlc=50, value="fast-clock"),
           op("put", "a", 2, 3, hlc=20, value="slow-clock"),
           op("get", "a", 10, 11, hlc=50, value="fast-clock", final=True)]
    assert checker.check(ops).ok()
    stale = ops[:2] + [op("get", "a", 10, 11, hlc=20, value="slow-clock", final=True)]
    assert kinds(checker.check(stale).strict) == [("asserted", "lost_write", "a")]


def test_load_reads_operations_and_skips_other_records(tmp_path):
    path = tmp_path / "history.jsonl"
    records = [{"type": "fault", "fault": "kill", "phase": "begin"},
               {"type": "placement", "key": "a", "home": ["node1"]},
               dict(op("put", "a", 0, 1, hlc=10, value="a1"), type="op")]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ops = checker.load(path)
    assert len(ops) == 1 and ops[0]["kind"] == "put"
    assert checker.check(ops).ok()


def test_writes_at_all_count_as_quorum_and_one_counts_for_nothing():
    at_all = op("put", "a", 2, 3, hlc=20, value="a2")
    at_all["consistency"] = "ALL"
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"), at_all,
           op("get", "a", 10, 11, hlc=10, value="a1", final=True)]
    assert kinds(checker.check(ops).strict) == [("asserted", "lost_write", "a")]
    at_all["consistency"] = "ONE"
    assert checker.check(ops).ok()


# ---------------------------------------------------------------------------- feeds

def ev(at, seq, key="a", hlc=10, op_=1, partition=3):
    return checker.FeedEvent(at, partition, seq, key, (hlc, ORIGIN), op_)


def feeds(received, last, baseline=0, kills=(), ops=(), synced_at=1.0, now=100.0):
    return checker.check_feeds({"node1": received}, {"node1": {3: baseline}},
                               {"node1": {3: last}}, synced_at, now, list(kills), list(ops))


def test_feeds_every_number_received_once_is_clean():
    rep = feeds([ev(2, 5, hlc=10), ev(3, 6, hlc=11), ev(4, 7, "b", hlc=11)], 7, baseline=4)
    assert (rep["missed_events"], rep["duplicated_seqs"], rep["duplicated_changes"]) == \
        (0, 0, 0), rep
    assert rep["events"] == 3


def test_feeds_numbers_never_received_are_missed_in_the_middle_and_at_the_end():
    rep = feeds([ev(2, 1, hlc=10), ev(3, 4, hlc=11)], 6)
    assert rep["missed_events"] == 4, rep  # 2, 3, then 5, 6 never arrived
    assert rep["missed_examples"] == [{"node": "node1", "partition": 3, "seqs": [2, 3]},
                                      {"node": "node1", "partition": 3, "seqs": [5, 6]}]


def test_feeds_what_came_before_the_subscription_is_not_judged():
    rep = feeds([ev(0.5, 2), ev(2, 4, hlc=11)], 4, baseline=3)
    assert rep["missed_events"] == 0 and rep["events"] == 2, rep


def test_feeds_a_gap_around_a_kill_of_the_node_is_put_down_to_the_restart():
    kills = checker.kills_of(
        [{"fault": "kill", "what": "kill node1", "phase": "begin", "at": 5.0,
          "nodes": ["node1"]},
         {"fault": "kill", "what": "kill node1", "phase": "end", "at": 8.0},
         {"fault": "kill", "what": "kill node1", "phase": "agreed", "at": 9.0}], now=100.0)
    assert kills == [("node1", 5.0, 9.0)]
    received = [ev(4, 1, hlc=10), ev(10, 4, hlc=11)]
    rep = feeds(received, 4, kills=kills)
    assert (rep["missed_events"], rep["missed_at_a_restart"]) == (0, 2), rep
    # The same gap while another node was killed, or well after the restart, is missed.
    assert feeds(received, 4, kills=[("node2", 5.0, 9.0)])["missed_events"] == 2
    late = [ev(4, 1, hlc=10), ev(10, 2, hlc=11), ev(12, 5, hlc=12)]
    rep = feeds(late, 5, kills=kills)
    assert (rep["missed_events"], rep["missed_at_a_restart"]) == (2, 0), rep


def test_feeds_a_number_or_a_change_received_twice_is_a_duplicate():
    rep = feeds([ev(2, 1, hlc=10), ev(3, 1, hlc=10)], 1)
    assert (rep["duplicated_seqs"], rep["duplicated_changes"]) == (1, 1), rep
    # The same change published again under a new number.
    rep = feeds([ev(2, 1, hlc=10), ev(3, 2, hlc=10)], 2)
    assert (rep["duplicated_seqs"], rep["duplicated_changes"]) == (0, 1), rep
    assert rep["duplicated_examples"][0]["seqs"] == [1, 2]
    # A put and the expiry that ended it share a version: two changes.
    rep = feeds([ev(2, 1, hlc=10, op_=1), ev(3, 2, hlc=10, op_=3)], 2)
    assert rep["duplicated_changes"] == 0, rep


def test_feeds_final_versions_must_have_been_published_acked_writes_need_not():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"), op("put", "a", 2, 3, hlc=20, value="a2"),
           op("get", "a", 5, 6, hlc=20, value="a2", strict=True, final=True)]
    rep = feeds([ev(2, 1, hlc=20)], 1, ops=ops)
    assert rep["acked_strict_writes_never_published"] == 1  # a1, superseded
    assert rep["final_versions_never_published"] == 0
    rep = feeds([ev(2, 1, hlc=10)], 1, ops=ops)
    assert rep["final_versions_never_published"] == 1


def test_feeds_an_unpublished_write_no_newer_one_explains_is_counted():
    ops = [op("put", "a", 0, 1, hlc=10, value="a1"), op("put", "a", 0.5, 2, hlc=20, value="a2"),
           op("put", "b", 3, 4, hlc=30, value="b1")]
    rep = feeds([ev(2, 1, hlc=20)], 1, ops=ops)
    assert rep["acked_strict_writes_never_published"] == 2  # a1 and b1
    assert rep["of_them_not_superseded"] == 1, rep  # a2 began before a1 was acknowledged
    assert rep["not_superseded_examples"][0]["key"] == "b"


def test_home_replicas_differ_only_where_a_key_could_read_differently():
    live = ("n1", "live", (5, 1))
    assert not checker.home_replicas_differ([live, ("n2", "live", (5, 1))])
    assert checker.home_replicas_differ([live, ("n2", "live", (4, 1))])
    # An expiry's tombstone and a delete's at one version are one state.
    assert not checker.home_replicas_differ([("n1", "expired", (5, 1)),
                                             ("n2", "deleted", (5, 1))])
    # Purged on one replica, not yet on another: the same, whatever the tombstone's version.
    assert not checker.home_replicas_differ([("n1", "absent", (0, 0)),
                                             ("n2", "deleted", (5, 1)),
                                             ("n3", "absent", (0, 0))])
    assert not checker.home_replicas_differ([("n1", "absent", (0, 0)),
                                             ("n2", "absent", (0, 0))])
    # But not against a live value, nor two tombstones of different versions.
    assert checker.home_replicas_differ([("n1", "absent", (0, 0)), live])
    assert checker.home_replicas_differ([("n1", "absent", (0, 0)), ("n2", "deleted", (5, 1)),
                                         ("n3", "deleted", (4, 1))])
