"""RESP and the native ZeroMQ API serve one store: what one protocol writes the other reads,
with the same TTLs, and RESP writes reach the change feed like native ones."""

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def test_resp_set_is_seen_by_kvcli_and_kvcli_put_by_resp(node):
    ep = node.client_endpoint
    with h.RespConn(node.resp_port) as c:
        assert c.command("SET", "from-resp", "hello \u2713") == "OK"
        r = kvcli("get", "from-resp", endpoint=ep)
        assert (r.returncode, r.stdout) == (h.EXIT_OK, "hello \u2713".encode()), describe(r)

        r = kvcli("put", "from-kvcli", "bonjour", endpoint=ep)
        assert r.returncode == h.EXIT_OK, describe(r)
        assert c.command("GET", "from-kvcli") == b"bonjour"
        assert c.command("EXISTS", "from-kvcli", "from-resp") == 2

        # Overwrites either way.
        assert c.command("SET", "from-kvcli", "changed over resp") == "OK"
        r = kvcli("get", "from-kvcli", endpoint=ep)
        assert r.stdout == b"changed over resp", describe(r)
        r = kvcli("put", "from-resp", "changed over kvcli", endpoint=ep)
        assert r.returncode == h.EXIT_OK, describe(r)
        assert c.command("GET", "from-resp") == b"changed over kvcli"


def test_resp_del_shows_as_not_found_via_kvcli(node):
    ep = node.client_endpoint
    r = kvcli("put", "doomed", "v", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    with h.RespConn(node.resp_port) as c:
        assert c.command("DEL", "doomed") == 1
        r = kvcli("get", "doomed", endpoint=ep)
        assert r.returncode == h.EXIT_NOT_FOUND, describe(r)
        assert r.stdout == b"", describe(r)
        # And a native delete shows as nil over RESP.
        assert c.command("SET", "doomed2", "v") == "OK"
        r = kvcli("del", "doomed2", endpoint=ep)
        assert r.returncode == h.EXIT_OK, describe(r)
        assert c.command("GET", "doomed2") is None
        assert c.command("DEL", "doomed2") == 0


def test_binary_values_and_ttls_cross_protocols(node):
    value = bytes(range(256)) + b"\r\n\x00"
    with node.client() as native, h.RespConn(node.resp_port) as c:
        assert native.put(b"bin\x00key", value).code == h.pb.OK
        assert c.command("GET", b"bin\x00key") == value
        assert c.command("MSET", b"m\xff", value[::-1], "m2", "") == "OK"
        assert native.get(b"m\xff").get.value == value[::-1]
        resp = native.get(b"m2")
        assert resp.code == h.pb.OK and resp.get.value == b"", resp

        assert c.command("SET", "ttl-resp", "v", "EX", "100") == "OK"
        resp = native.get(b"ttl-resp")
        assert resp.code == h.pb.OK and resp.get.expiry_ms > 0, resp
        assert native.put(b"ttl-native", b"v", ttl_ms=50_000).code == h.pb.OK
        assert 0 < c.command("PTTL", "ttl-native") <= 50_000
        assert c.command("PERSIST", "ttl-native") == 1
        assert native.get(b"ttl-native").get.expiry_ms == 0


def test_resp_writes_reach_the_change_feed(node):
    with node.client() as native, h.FeedSubscriber(node.feed_endpoint, b"feed:") as feed, \
            h.RespConn(node.resp_port) as c:
        feed.sync(native, b"feed:marker")
        assert c.command("SET", "feed:k", "v1") == "OK"
        assert c.command("DEL", "feed:k") == 1
        put = feed.wait_event(lambda e: e.key == b"feed:k" and e.op == h.pb.PUT, 10,
                              "the PUT of feed:k")
        assert put.value == b"v1"
        feed.wait_event(lambda e: e.key == b"feed:k" and e.op == h.pb.DELETE, 10,
                        "the DELETE of feed:k")


def test_native_stats_count_resp_traffic(node):
    with node.client() as native:
        before = native.stats()
        assert before["resp_connections"] == 0, before
        with h.RespConn(node.resp_port) as c:
            for _ in range(5):
                assert c.command("PING") == "PONG"
            stats = native.stats()
            assert stats["resp_connections"] == 1, stats
            assert stats["resp_commands"] - before["resp_commands"] == 5, stats
            assert stats["resp_connections_received"] - before["resp_connections_received"] == 1
        h.wait_for(lambda: native.stats()["resp_connections"] == 0, 10,
                   "the closed RESP connection to be counted gone")
