"""Replication between real edgekvd processes on loopback: five nodes, N = 3.

A write through one node is read through another at QUORUM; with a home replica killed
(kill -9), QUORUM writes keep succeeding through a fallback that holds a hint, which
`replicas` shows; strict writes and reads with two of three home replicas down are
refused as UNAVAILABLE naming how many were reached (libedgekv and kvcli pass strict on
get; the node's strict-quorum makes every read strict, the Redis listener's too), while
sloppy ones are answered by fallbacks; a replica that missed a write holds it after a
QUORUM read of the key; the Redis protocol works through any node; a TTL'd key carries one
absolute expiry on every replica and expires on all of them.
"""

from __future__ import annotations

import pytest

import edgekv_harness as h
from edgekv_harness import pb

# Anti-entropy is off in these clusters: the mechanisms under test (read repair, hints)
# are the only ones that may move data, so a stale replica stays stale until they act.
PRESET = ["--gossip-preset", "local", "--request-timeout-ms", "1000",
          "--anti-entropy-interval-ms", "0"]
SIZE = 5


# ---------------------------------------------------------------------------- helpers

def start_cluster(daemons, size: int = SIZE, extra=()) -> list[h.Daemon]:
    seed = daemons.new("node1", args=[*PRESET, *extra]).start()
    nodes = [seed]
    for i in range(2, size + 1):
        nodes.append(daemons.new(f"node{i}",
                                 args=[*PRESET, *extra, "--seeds", seed.gossip_endpoint]).start())
    return nodes


def replicas(client: h.NativeClient, key: bytes) -> "pb.ReplicasResponse":
    req = client.new_request()
    req.replicas.key = key
    resp = client.call(req)
    assert resp.code == pb.OK, resp.message
    return resp.replicas


def home_of(table: "pb.RingResponse", key: bytes, client: h.NativeClient) -> list[str]:
    partition = replicas(client, key).partition
    return list(table.table[partition].home)


def key_with_home(table, client, want_in: set[str], want_out: set[str]) -> tuple[bytes, list[str]]:
    for i in range(5000):
        key = b"key-%d" % i
        home = home_of(table, key, client)
        if want_in <= set(home) and not (want_out & set(home)):
            return key, home
    raise AssertionError(f"no key with home replicas including {want_in}, excluding {want_out}")


def put(client: h.NativeClient, key: bytes, value: bytes, ttl_ms: int = 0,
        consistency: int = pb.CONSISTENCY_DEFAULT, strict: bool = False) -> "pb.Response":
    req = client.put_request(key, value, ttl_ms)
    req.consistency = consistency
    req.strict = strict
    return client.call(req)


def get(client: h.NativeClient, key: bytes,
        consistency: int = pb.CONSISTENCY_DEFAULT, strict: bool = False) -> "pb.Response":
    req = client.get_request(key)
    req.consistency = consistency
    req.strict = strict
    return client.call(req)


def states_by_node(rs: "pb.ReplicasResponse") -> dict[str, "pb.ReplicaOfKey"]:
    return {r.node_id: r for r in rs.replicas}


def wait_dead_everywhere(view, observers, member: str, timeout: float = 30.0):
    def seen():
        states = view.states(observers)
        return all(states.get(o.name, {}).get(member) in ("dead", None) and
                   member in states.get(o.name, {}) for o in observers) or None
    h.wait_for(seen, timeout, f"{member} declared dead", interval=0.05)


@pytest.fixture
def cluster(daemons):
    nodes = start_cluster(daemons)
    view = h.ClusterView(nodes)
    table = h.wait_agreed(view, nodes)
    yield nodes, view, table
    view.close()


def by_name(nodes, name: str) -> h.Daemon:
    return next(n for n in nodes if n.name == name)


# ---------------------------------------------------------------------------- tests

def test_every_partition_has_three_distinct_home_replicas(cluster):
    nodes, view, table = cluster
    assert table.partitions == len(table.table)
    assert table.replication_factor == 3
    counts = {n.name: 0 for n in nodes}
    for row in table.table:
        assert len(row.home) == 3 and len(set(row.home)) == 3, row
        for node in row.home:
            counts[node] += 1
    fair = table.partitions * 3 / len(nodes)
    assert max(counts.values()) <= 1.1 * fair + 1, counts


def test_a_write_through_one_node_is_read_through_every_other(cluster):
    nodes, view, table = cluster
    resp = put(view.client(nodes[0]), b"shared", b"v1")
    assert resp.code == pb.OK, resp.message
    for n in nodes[1:]:
        got = get(view.client(n), b"shared", pb.QUORUM)
        assert got.code == pb.OK, (n.name, got.message)
        assert got.get.value == b"v1"
        assert (got.get.version.hlc, got.get.version.origin) == \
            (resp.put.version.hlc, resp.put.version.origin)
    # Each home replica holds it (QUORUM answered after two; the third follows).
    home = home_of(table, b"shared", view.client(nodes[0]))

    def all_hold():
        rs = states_by_node(replicas(view.client(nodes[1]), b"shared"))
        return all(rs[n].state == pb.REPLICA_LIVE and rs[n].version.hlc == resp.put.version.hlc
                   for n in home) or None
    h.wait_for(all_hold, 10, "every home replica holds the write")


def test_quorum_writes_go_on_through_a_fallback_with_a_home_replica_killed(cluster):
    nodes, view, table = cluster
    key, home = key_with_home(table, view.client(nodes[0]), set(), {"node1"})
    victim = by_name(nodes, home[0])
    victim.kill()
    others = [n for n in nodes if n is not victim]
    wait_dead_everywhere(view, others, victim.name)
    coordinator = view.client(nodes[0])
    for i in range(5):
        resp = put(coordinator, key, b"while-down-%d" % i, consistency=pb.QUORUM)
        assert resp.code == pb.OK, resp.message
    # ALL needs three: two home replicas and a fallback holding a hint for the dead one.
    resp = put(coordinator, key, b"all", consistency=pb.ALL)
    assert resp.code == pb.OK, resp.message
    rs = replicas(coordinator, key)
    states = states_by_node(rs)
    assert not states[victim.name].up and states[victim.name].state == pb.REPLICA_UNREACHABLE
    fallbacks = [r for r in rs.replicas if not r.home]
    assert len(fallbacks) == 1, rs
    fb = fallbacks[0]
    assert fb.node_id not in home
    assert fb.state == pb.REPLICA_LIVE and fb.hinted, fb
    assert fb.version.hlc == resp.put.version.hlc
    # The CLI shows the same.
    r = h.kvcli("replicas", key.decode(), endpoint=nodes[0].client_endpoint)
    assert r.returncode == h.EXIT_OK, h.describe(r)
    assert fb.node_id.encode() in r.stdout and victim.name.encode() in r.stdout, h.describe(r)


def test_strict_writes_with_two_home_replicas_down_are_unavailable(cluster):
    nodes, view, table = cluster
    key, home = key_with_home(table, view.client(nodes[0]), set(), {"node1"})
    kill_two_home_replicas(nodes, view, home)
    resp = put(view.client(nodes[0]), key, b"strict", consistency=pb.QUORUM, strict=True)
    assert resp.code == pb.UNAVAILABLE, (h.code_name(resp.code), resp.message)
    assert "1 of 3 home replicas" in resp.message, resp.message
    r = h.kvcli("put", "--strict", key.decode(), "strict", endpoint=nodes[0].client_endpoint)
    assert r.returncode == 3, h.describe(r)
    # Sloppy, the same write is taken: one home replica and two fallbacks.
    resp = put(view.client(nodes[0]), key, b"sloppy", consistency=pb.QUORUM)
    assert resp.code == pb.OK, resp.message


STRICT_SHORT = "reached 1 of 3 home replicas, 2 required (strict)"


def kill_two_home_replicas(nodes, view, home) -> list[h.Daemon]:
    down = [by_name(nodes, home[0]), by_name(nodes, home[1])]
    for d in down:
        d.kill()
    others = [n for n in nodes if n not in down]
    for d in down:
        wait_dead_everywhere(view, others, d.name)
    return others


def test_strict_reads_with_two_home_replicas_down_are_unavailable(cluster):
    nodes, view, table = cluster
    key, home = key_with_home(table, view.client(nodes[0]), set(), {"node1"})
    before = put(view.client(nodes[0]), key, b"before", consistency=pb.QUORUM, strict=True)
    assert before.code == pb.OK, before.message
    kill_two_home_replicas(nodes, view, home)
    coordinator = view.client(nodes[0])
    resp = get(coordinator, key, pb.QUORUM, strict=True)
    assert resp.code == pb.UNAVAILABLE, (h.code_name(resp.code), resp.message)
    assert resp.message == STRICT_SHORT, resp.message
    # kvcli passes --strict on through libedgekv, and says what the node said.
    r = h.kvcli("get", "--strict", key.decode(), endpoint=nodes[0].client_endpoint)
    assert r.returncode == h.EXIT_UNAVAILABLE, h.describe(r)
    assert STRICT_SHORT.encode() in r.stderr, h.describe(r)
    # Sloppy, the same read is answered by the one home replica up and two fallbacks. The
    # fallbacks hold nothing of the key, and a not-found counts toward the quorum (as Riak's
    # notfound_ok), so the answer is the value or no key, depending on which two answer first.
    resp = get(coordinator, key, pb.QUORUM)
    assert resp.code in (pb.OK, pb.NOT_FOUND), (h.code_name(resp.code), resp.message)
    if resp.code == pb.OK:
        assert resp.get.value == b"before"
    r = h.kvcli("get", key.decode(), endpoint=nodes[0].client_endpoint)
    assert r.returncode in (h.EXIT_OK, h.EXIT_NOT_FOUND), h.describe(r)
    assert r.stdout in (b"before", b""), h.describe(r)


def test_strict_quorum_makes_every_read_strict(daemons):
    nodes = start_cluster(daemons, extra=["--strict-quorum", "true"])
    view = h.ClusterView(nodes)
    try:
        table = h.wait_agreed(view, nodes)
        key, home = key_with_home(table, view.client(nodes[0]), set(), {"node1"})
        resp = put(view.client(nodes[0]), key, b"before", consistency=pb.QUORUM)
        assert resp.code == pb.OK, resp.message
        kill_two_home_replicas(nodes, view, home)
        # Neither the request nor the Redis listener asks for strict: the node's default does.
        resp = get(view.client(nodes[0]), key, pb.QUORUM)
        assert resp.code == pb.UNAVAILABLE, (h.code_name(resp.code), resp.message)
        assert resp.message == STRICT_SHORT, resp.message
        with h.RespConn(int(nodes[0].resp_endpoint.rsplit(":", 1)[1])) as c:
            reply = c.command("GET", key.decode())
        assert isinstance(reply, h.RespError) and STRICT_SHORT in reply, reply
    finally:
        view.close()


def test_a_replica_that_missed_a_write_holds_it_after_a_quorum_read(cluster):
    nodes, view, table = cluster
    key, home = key_with_home(table, view.client(nodes[0]), set(), {"node1"})
    lagging = by_name(nodes, home[2])
    lagging.kill()
    others = [n for n in nodes if n is not lagging]
    wait_dead_everywhere(view, others, lagging.name)
    resp = put(view.client(nodes[0]), key, b"missed", consistency=pb.QUORUM)
    assert resp.code == pb.OK, resp.message
    lagging.start()
    h.wait_for(lambda: all(view.states(nodes).get(o.name, {}).get(lagging.name) == "alive"
                           for o in nodes) or None, 30, f"{lagging.name} alive again")
    before = states_by_node(replicas(view.client(nodes[0]), key))[lagging.name]
    assert before.state == pb.REPLICA_ABSENT, before
    got = get(view.client(nodes[1]), key, pb.QUORUM)
    assert got.code == pb.OK and got.get.value == b"missed", got.message

    def repaired():
        r = states_by_node(replicas(view.client(nodes[0]), key))[lagging.name]
        return (r.state == pb.REPLICA_LIVE and r.version.hlc == resp.put.version.hlc) or None
    h.wait_for(repaired, 10, f"{lagging.name} repaired by the read")


def test_the_redis_protocol_works_through_any_node(cluster):
    nodes, view, table = cluster
    with h.RespConn(int(nodes[0].resp_endpoint.rsplit(":", 1)[1])) as a:
        assert a.command("SET", "rk", "rv") == "OK"
        assert a.command("SET", "rk", "other", "NX") is None
    for n in nodes[1:]:
        with h.RespConn(int(n.resp_endpoint.rsplit(":", 1)[1])) as c:
            assert c.command("GET", "rk") == b"rv", n.name
    with h.RespConn(int(nodes[3].resp_endpoint.rsplit(":", 1)[1])) as c:
        assert c.command("DEL", "rk") == 1
        assert c.command("GET", "rk") is None


def test_a_ttl_key_has_one_expiry_on_every_replica_and_expires_on_all(cluster):
    nodes, view, table = cluster
    resp = put(view.client(nodes[2]), b"ttl-key", b"soon", ttl_ms=1500, consistency=pb.ALL)
    assert resp.code == pb.OK, resp.message
    expiry = resp.put.expiry_ms
    home = home_of(table, b"ttl-key", view.client(nodes[0]))
    rs = states_by_node(replicas(view.client(nodes[0]), b"ttl-key"))
    for n in home:
        assert rs[n].state == pb.REPLICA_LIVE and rs[n].expiry_ms == expiry, rs[n]

    def expired_everywhere():
        rs = states_by_node(replicas(view.client(nodes[0]), b"ttl-key"))
        return all(rs[n].state == pb.REPLICA_EXPIRED and rs[n].expiry_ms == expiry and
                   rs[n].version.hlc == resp.put.version.hlc for n in home) or None
    h.wait_for(expired_everywhere, 15, "the key expired on every home replica")
    got = get(view.client(nodes[4]), b"ttl-key", pb.QUORUM)
    assert got.code == pb.NOT_FOUND, got.message


def test_a_cluster_watch_through_one_node_sees_writes_through_the_others_once(cluster, watches):
    nodes, view, table = cluster
    watch = watches.start(nodes[0].client_endpoint, "w-", global_args=["--json"])
    watch.sync(view.client(nodes[0]), b"w-marker")
    written = {}
    for i, n in enumerate(nodes[1:] * 3):
        key = "w-%d" % i
        resp = put(view.client(n), key.encode(), b"v%d" % i)
        assert resp.code == pb.OK, resp.message
        written[key] = resp.put.version.hlc
    end = put(view.client(nodes[4]), b"w-~end", b"done")
    assert end.code == pb.OK, end.message
    watch.wait_line(lambda line: b"w-~end" in line, 20, "the end marker")
    events = [e for e in watch.json_lines() if e["key"] in written]
    # Each write once, from whichever replica published it first, whatever node took it.
    assert sorted(e["key"] for e in events) == sorted(written), events
    for e in events:
        assert e["op"] == "put" and e["value"] == "v" + e["key"][2:], e
