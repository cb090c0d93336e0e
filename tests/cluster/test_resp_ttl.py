"""TTLs set over RESP expire like any other: reads stop returning the key at its expiry,
TTL answers -2, the sweeper removes it and the change feed (kvcli watch) announces it."""

import time

import pytest

import edgekv_harness as h

SWEEP = ["--ttl-sweep-interval-ms", "50"]


def now_ms() -> int:
    """Wall time in ms, the clock TTL expiry is measured on."""
    return time.time_ns() // 1_000_000


@pytest.fixture
def ttl_node(daemons):
    return daemons.start("ttl-node", args=SWEEP)


def test_set_px_expires_and_the_feed_announces_it(ttl_node, watches):
    watch = watches.start(ttl_node.client_endpoint, "rttl:")
    with ttl_node.client() as native, h.RespConn(ttl_node.resp_port) as c:
        watch.sync(native, b"rttl:marker")
        assert c.command("SET", "rttl:stays", "forever") == "OK"
        # A minute-long TTL: reads right after the write certainly find the key.
        before_ms = now_ms()
        assert c.command("SET", "rttl:long", "minute", "PX", "60000") == "OK"
        pttl = c.command("PTTL", "rttl:long")
        assert 60000 - (now_ms() - before_ms) - 1 <= pttl <= 60000, pttl
        assert c.command("GET", "rttl:long") == b"minute"

        # A 200 ms TTL: the key expires at a wall time between 200 ms after the SET was
        # sent and 200 ms after its reply came. PTTL and GET are each checked against when
        # they were asked and answered: before that span the key must be there, after it
        # gone, within it either (1 ms either side for the node reading its clock at
        # another moment).
        set_at = time.monotonic()
        sent_ms = now_ms()
        assert c.command("SET", "rttl:k", "brief", "PX", "200") == "OK"
        expiry_span = (sent_ms + 200, now_ms() + 200)

        def timed(*command):
            asked_ms = now_ms()
            reply = c.command(*command)
            answered_ms = now_ms()
            if answered_ms < expiry_span[0] - 1:
                return "live", reply, answered_ms
            if asked_ms > expiry_span[1] + 1:
                return "gone", reply, asked_ms
            return "either", reply, asked_ms

        state, pttl, at_ms = timed("PTTL", "rttl:k")
        if state == "live":
            assert expiry_span[0] - at_ms - 1 <= pttl <= 200, (pttl, at_ms, expiry_span)
        elif state == "gone":
            assert pttl == -2, (pttl, at_ms, expiry_span)
        else:
            assert pttl == -2 or 0 < pttl <= 200, (pttl, at_ms, expiry_span)
        state, got, at_ms = timed("GET", "rttl:k")
        want = {"live": [b"brief"], "gone": [None], "either": [b"brief", None]}[state]
        assert got in want, (state, got, at_ms, expiry_span)

        h.wait_for(lambda: c.command("GET", "rttl:k") is None, 10, "GET rttl:k to answer nil")
        assert time.monotonic() - set_at >= 0.19, "the key expired before its 200 ms TTL"
        assert c.command("TTL", "rttl:k") == -2
        assert c.command("PTTL", "rttl:k") == -2
        assert c.command("EXISTS", "rttl:k") == 0
        assert c.command("MGET", "rttl:k", "rttl:stays") == [None, b"forever"]

        line = watch.wait_line(lambda l: b"rttl:k" in l and b"expire" in l, 15,
                               "the expire event of rttl:k")
        assert b"rttl:stays" not in line
        assert native.get(b"rttl:k").code == h.pb.NOT_FOUND

        def expired_keys():
            info = c.command("INFO", "stats").decode()
            return int(info.split("expired_keys:")[1].split("\r\n")[0]) >= 1
        h.wait_for(expired_keys, 10, "INFO expired_keys to count the sweep")
        assert c.command("GET", "rttl:stays") == b"forever"
    assert not any(b"rttl:stays" in l and b"expire" in l for l in watch.lines())


def test_pexpire_on_an_existing_key_expires_it(ttl_node, watches):
    watch = watches.start(ttl_node.client_endpoint, "rttl:")
    with ttl_node.client() as native, h.RespConn(ttl_node.resp_port) as c:
        watch.sync(native, b"rttl:marker")
        assert c.command("SET", "rttl:later", "v") == "OK"
        assert c.command("PEXPIRE", "rttl:later", "150") == 1
        h.wait_for(lambda: c.command("EXISTS", "rttl:later") == 0, 10, "rttl:later to expire")
        assert c.command("TTL", "rttl:later") == -2
        watch.wait_line(lambda l: b"rttl:later" in l and b"expire" in l, 15,
                        "the expire event of rttl:later")


def test_persist_cancels_an_expiry(ttl_node):
    with h.RespConn(ttl_node.resp_port) as c, ttl_node.client() as native:
        assert c.command("SET", "rttl:kept", "v", "PX", "300") == "OK"
        assert c.command("PERSIST", "rttl:kept") == 1
        # A canary with the same TTL, set after: it expires no sooner than rttl:kept would
        # have, and one sweep covers every partition, so the sweep that removes the canary
        # would have removed rttl:kept too had PERSIST left its expiry.
        assert c.command("SET", "rttl:canary", "v", "PX", "300") == "OK"
        h.wait_for(lambda: native.stats()["store_expired"] >= 1, 10,
                   "the sweeper to expire the canary")
        assert c.command("EXISTS", "rttl:canary") == 0
        assert c.command("GET", "rttl:kept") == b"v"
        assert c.command("TTL", "rttl:kept") == -1
        assert native.stats()["store_expired"] == 1, "the sweeper expired more than the canary"


def test_set_with_an_absolute_time_in_the_past_lands_expired(ttl_node):
    with h.RespConn(ttl_node.resp_port) as c:
        assert c.command("SET", "rttl:new", "v", "EXAT", "1") == "OK"
        assert c.command("GET", "rttl:new") is None
        assert c.command("TTL", "rttl:new") == -2


def test_set_pxat_in_the_past_over_an_existing_key_leaves_no_value(ttl_node):
    # Redis: SET with an EXAT/PXAT already past answers OK and the key is gone. The old
    # value must not survive a SET that answered OK.
    with h.RespConn(ttl_node.resp_port) as c:
        assert c.command("SET", "rttl:old", "v") == "OK"
        assert c.command("SET", "rttl:old", "w", "PXAT", "1000") == "OK"
        assert c.command("GET", "rttl:old") is None
        assert c.command("TTL", "rttl:old") == -2
