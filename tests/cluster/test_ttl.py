"""TTL expiry: the sweeper deletes an expired key and announces it on the feed as `expire`;
reads stop returning it at its expiry, and keys without a TTL stay."""

import json
import time

import pytest

import edgekv_harness as h
from edgekv_harness import describe, kvcli

SWEEP = ["--ttl-sweep-interval-ms", "50"]


def now_ms() -> int:
    """Wall time in ms, the clock TTL expiry is measured on."""
    return time.time_ns() // 1_000_000


@pytest.fixture
def ttl_node(daemons):
    return daemons.start("ttl-node", args=SWEEP)


def test_expiry_is_seen_by_watch_and_get(ttl_node, watches):
    ep = ttl_node.client_endpoint
    plain = watches.start(ep, "ttl:", name="plain")
    as_json = watches.start(ep, "ttl:", global_args=["--json"], name="json")
    with ttl_node.client() as c:
        plain.sync(c, b"ttl:marker-plain")
        as_json.sync(c, b"ttl:marker-json")

        assert c.put(b"ttl:stays", b"forever").code == h.pb.OK
        # An hour-long TTL: the read right after the write certainly finds the key.
        r = kvcli("put", "ttl:long", "hour", "--ttl", "3600", endpoint=ep)
        assert r.returncode == h.EXIT_OK, describe(r)
        resp = c.get(b"ttl:long")
        assert resp.code == h.pb.OK and resp.get.value == b"hour", resp
        left_ms = resp.get.expiry_ms - now_ms()
        assert 3500_000 < left_ms <= 3600_000, resp

        put_at = time.monotonic()
        before_ms = now_ms()
        r = kvcli("put", "ttl:short", "brief", "--ttl", "1", endpoint=ep, global_args=["--json"])
        after_ms = now_ms()
        assert r.returncode == h.EXIT_OK, describe(r)
        expiry_ms = json.loads(r.stdout)["expiry_ms"]
        # Expiry is absolute wall time: 1 s after the node took the write.
        assert before_ms + 1000 - 1 <= expiry_ms <= after_ms + 1000 + 1, (before_ms, r.stdout)
        # Whether a read finds the key depends on when it comes, on either side of expiry_ms
        # (the 1 ms either side covers the node reading its clock at another moment).
        asked_ms = now_ms()
        resp = c.get(b"ttl:short")
        answered_ms = now_ms()
        if answered_ms < expiry_ms - 1:
            assert resp.code == h.pb.OK and resp.get.value == b"brief", resp
            assert resp.get.expiry_ms == expiry_ms, resp
        elif asked_ms > expiry_ms + 1:
            assert resp.code == h.pb.NOT_FOUND, resp
        else:
            assert resp.code == h.pb.NOT_FOUND or (
                resp.code == h.pb.OK and resp.get.expiry_ms == expiry_ms), resp

        line = plain.wait_line(lambda l: b"ttl:short" in l and b"expire" in l, 15,
                               "the plain expire event of ttl:short")
        expired_after = time.monotonic() - put_at
        assert expired_after >= 0.9, (
            f"ttl:short was announced expired {expired_after:.2f} s after a 1 s TTL put: {line!r}")
        assert now_ms() >= expiry_ms - 1, f"announced before its expiry time: {line!r}"

        def json_expire():
            for event in as_json.json_lines():
                if event.get("key") == "ttl:short" and event.get("op") == "expire":
                    return event
            return None
        event = h.wait_for(json_expire, 15, "the JSON expire event of ttl:short")
        assert isinstance(event["seq"], int) and event["seq"] > 0, event

        r = kvcli("get", "ttl:short", endpoint=ep)
        assert r.returncode == h.EXIT_NOT_FOUND, describe(r)
        assert c.get(b"ttl:short").code == h.pb.NOT_FOUND

        r = kvcli("get", "ttl:stays", endpoint=ep)
        assert (r.returncode, r.stdout) == (h.EXIT_OK, b"forever"), describe(r)

        stats = c.stats()
        assert stats["expired_events"] == 1, stats
        assert stats["store_expired"] == 1, stats
        # Markers, ttl:stays and ttl:long are live; ttl:short is gone.
        assert c.status().status.keys == 4

    # The key that was not given a TTL was never announced as expiring.
    for raw in as_json.lines():
        event = json.loads(raw)
        assert not (event.get("key") == "ttl:stays" and event.get("op") == "expire"), event


def test_read_hides_expired_key_before_the_sweep(daemons):
    # A sweep interval of an hour: only the read path can hide the expired key.
    node = daemons.start("lazy", args=["--ttl-sweep-interval-ms", "3600000"])
    with node.client() as c:
        resp = c.put(b"k", b"v", ttl_ms=200)
        assert resp.code == h.pb.OK
        expiry_ms = resp.put.expiry_ms
        assert expiry_ms > 0
        h.wait_for(lambda: time.time() * 1000 > expiry_ms + 20, 5, "the expiry time to pass")
        assert c.get(b"k").code == h.pb.NOT_FOUND
    r = kvcli("get", "k", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_NOT_FOUND, describe(r)


def test_overwrite_without_ttl_cancels_expiry(ttl_node):
    with ttl_node.client() as c:
        first = c.put(b"k", b"temporary", ttl_ms=300)
        assert first.code == h.pb.OK
        resp = c.put(b"k", b"permanent")
        assert resp.code == h.pb.OK and resp.put.expiry_ms == 0
        # A canary with the same TTL, written after: it expires no sooner than k would
        # have, and one sweep covers every partition, so the sweep that removes the canary
        # would have removed k too had the overwrite kept its old expiry.
        canary = c.put(b"canary", b"v", ttl_ms=300)
        assert canary.code == h.pb.OK
        assert canary.put.expiry_ms >= first.put.expiry_ms
        h.wait_for(lambda: c.stats()["store_expired"] >= 1, 10, "the sweeper to expire the canary")
        assert c.get(b"canary").code == h.pb.NOT_FOUND
        resp = c.get(b"k")
        assert resp.code == h.pb.OK and resp.get.value == b"permanent", resp
        assert resp.get.expiry_ms == 0
        assert c.stats()["store_expired"] == 1, "the sweeper expired more than the canary"


def test_key_count_excludes_expired_keys_before_the_sweep(daemons):
    # status/stats "keys" counts live keys: a key whose TTL ran out is not live, whether
    # or not the sweeper removed it yet and whether or not anyone read it since.
    node = daemons.start("lazy", args=["--ttl-sweep-interval-ms", "3600000"])
    with node.client() as c:
        assert c.put(b"stays", b"v").code == h.pb.OK
        resp = c.put(b"goes", b"v", ttl_ms=200)
        assert resp.code == h.pb.OK
        expiry_ms = resp.put.expiry_ms
        assert c.status().status.keys == 2
        h.wait_for(lambda: time.time() * 1000 > expiry_ms + 20, 5, "the expiry time to pass")
        # No read of any key in between: the count must not depend on one.
        assert c.status().status.keys == 1, "status counts a key whose TTL ran out"
        assert c.stats()["keys"] == 1, "stats counts a key whose TTL ran out"
    r = kvcli("status", endpoint=node.client_endpoint, global_args=["--json"])
    assert json.loads(r.stdout)["keys"] == 1
