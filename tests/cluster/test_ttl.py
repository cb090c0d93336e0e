"""TTL expiry: the sweeper deletes an expired key and announces it on the feed as `expire`;
reads stop returning it at its expiry, and keys without a TTL stay."""

import json
import time

import pytest

import edgekv_harness as h
from edgekv_harness import describe, kvcli

SWEEP = ["--ttl-sweep-interval-ms", "50"]


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
        put_at = time.monotonic()
        r = kvcli("put", "ttl:short", "brief", "--ttl", "1", endpoint=ep)
        assert r.returncode == h.EXIT_OK, describe(r)
        resp = c.get(b"ttl:short")
        if time.monotonic() - put_at < 0.8:  # not expired yet unless the machine stalled
            assert resp.code == h.pb.OK and resp.get.value == b"brief", resp
            assert resp.get.expiry_ms > 0

        line = plain.wait_line(lambda l: b"ttl:short" in l and b"expire" in l, 15,
                               "the plain expire event of ttl:short")
        expired_after = time.monotonic() - put_at
        assert expired_after >= 0.9, (
            f"ttl:short was announced expired {expired_after:.2f} s after a 1 s TTL put: {line!r}")

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
        assert stats["expired_events"] >= 1, stats
        assert stats["store_expired"] >= 1, stats
        # Markers and ttl:stays are live; ttl:short is gone.
        assert c.status().status.keys == 3

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
        assert c.put(b"k", b"temporary", ttl_ms=300).code == h.pb.OK
        resp = c.put(b"k", b"permanent")
        assert resp.code == h.pb.OK and resp.put.expiry_ms == 0
        deadline_ms = time.time() * 1000 + 600
        h.wait_for(lambda: time.time() * 1000 > deadline_ms, 5, "the old expiry to pass")
        # Several sweeps (every 50 ms) have run since the old expiry: none removed it.
        resp = c.get(b"k")
        assert resp.code == h.pb.OK and resp.get.value == b"permanent", resp
        assert resp.get.expiry_ms == 0


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
