"""The RESP listener through a Redis client library (python3-redis): binary-safe values,
SET's options with Redis's documented semantics, pipelines that keep order (read-your-writes
within one pipeline), large values, and the multi-key and TTL commands."""

import time

import pytest
import redis

import edgekv_harness as h


@pytest.fixture
def r(node):
    client = h.redis_client(node)
    yield client
    client.close()


def test_binary_values_and_keys_round_trip(r):
    values = {
        b"nul": b"a\x00b\x00",
        b"crlf": b"line one\r\nline two\r\n",
        b"resp-lookalike": b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"every-byte": bytes(range(256)),
        b"key\x00with\r\nbytes\xff": b"v",
    }
    for key, value in values.items():
        assert r.set(key, value) is True
    for key, value in values.items():
        assert r.get(key) == value, key
    assert r.mget(list(values)) == list(values.values())


def test_empty_value_is_a_value(r):
    # Redis stores empty strings; GET then answers "" (not nil), EXISTS 1.
    assert r.set("empty", b"") is True
    assert r.get("empty") == b""
    assert r.exists("empty") == 1


def test_set_options_follow_redis_semantics(r):
    # NX: only when absent; XX: only when present. A refused SET answers nil.
    assert r.set("k", "1", nx=True) is True
    assert r.set("k", "2", nx=True) is None
    assert r.get("k") == b"1"
    assert r.set("absent", "x", xx=True) is None
    assert r.exists("absent") == 0, "SET XX must not create the key"
    assert r.set("k", "2", xx=True) is True
    assert r.get("k") == b"2"

    # GET: the old value (nil when absent), and the write still happens.
    assert r.set("k", "3", get=True) == b"2"
    assert r.get("k") == b"3"
    assert r.set("fresh", "f", get=True) is None
    assert r.get("fresh") == b"f"
    # NX with GET (Redis 7): the old value comes back and nothing is written.
    assert r.set("k", "4", nx=True, get=True) == b"3"
    assert r.get("k") == b"3"
    assert r.set("nx-get", "v", nx=True, get=True) is None
    assert r.get("nx-get") == b"v"
    assert r.set("absent", "v", xx=True, get=True) is None
    assert r.exists("absent") == 0

    # EX / PX set a TTL; KEEPTTL keeps it; a plain SET (or XX) discards it.
    assert r.set("t", "a", ex=100) is True
    assert 0 < r.ttl("t") <= 100
    assert r.set("t", "b", keepttl=True) is True
    assert 0 < r.ttl("t") <= 100, "KEEPTTL dropped the TTL"
    assert r.get("t") == b"b"
    assert r.set("t", "c", xx=True) is True
    assert r.ttl("t") == -1, "SET without KEEPTTL must discard the TTL"
    assert r.set("t", "d", px=5000) is True
    assert 0 < r.pttl("t") <= 5000
    assert r.set("t", "e", ex=100, get=True) == b"d"
    assert 0 < r.ttl("t") <= 100
    assert r.set("t", "f") is True
    assert r.ttl("t") == -1
    assert r.set("no-ttl-yet", "x", keepttl=True) is True
    assert r.ttl("no-ttl-yet") == -1

    # EXAT / PXAT: absolute times; one already past lands expired.
    assert r.set("at", "v", exat=int(time.time()) + 100) is True
    assert 0 < r.ttl("at") <= 100
    assert r.set("at", "v", pxat=int(time.time() * 1000) + 50_000) is True
    assert 0 < r.pttl("at") <= 50_000
    assert r.set("past", "v", exat=1) is True
    assert r.get("past") is None and r.ttl("past") == -2

    # Refused option combinations and values.
    for args, message in [
        (("SET", "k", "v", "EX", "0"), "invalid expire time in 'set' command"),
        (("SET", "k", "v", "PX", "-5"), "invalid expire time in 'set' command"),
        (("SET", "k", "v", "EX", "ten"), "value is not an integer or out of range"),
        (("SET", "k", "v", "NX", "XX"), "syntax error"),
        (("SET", "k", "v", "EX", "10", "PX", "100"), "syntax error"),
        (("SET", "k", "v", "KEEPTTL", "EX", "10"), "syntax error"),
        (("SET", "k", "v", "EX"), "syntax error"),
    ]:
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command(*args)
        assert str(e.value) == message, args
    assert r.get("k") == b"3", "a refused SET must not write"


def test_pipeline_of_1000_mixed_commands_in_one_round_trip(r, monkeypatch):
    # Every request is written before the first reply is read: one round trip.
    events = []
    conn_class = redis.connection.Connection
    real_send, real_read = conn_class.send_packed_command, conn_class.read_response

    def send(self, *args, **kwargs):
        events.append("send")
        return real_send(self, *args, **kwargs)

    def read(self, *args, **kwargs):
        events.append("read")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(conn_class, "send_packed_command", send)
    monkeypatch.setattr(conn_class, "read_response", read)

    pipe = r.pipeline(transaction=False)
    expected = []
    model: dict[bytes, bytes] = {}
    # Read-your-writes, in order, on one key inside the pipeline.
    for cmd in (("set", "same", "a"), ("get", "same"), ("set", "same", "b"), ("get", "same")):
        getattr(pipe, cmd[0])(*cmd[1:])
    expected += [True, b"a", True, b"b"]
    model[b"same"] = b"b"
    i = 0
    while len(expected) < 1000:
        key = f"p{i % 37}".encode()
        kind = i % 7
        if kind in (0, 3):
            value = f"v{i}".encode()
            pipe.set(key, value)
            expected.append(True)
            model[key] = value
        elif kind in (1, 4):
            pipe.get(key)
            expected.append(model.get(key))
        elif kind == 2:
            pipe.exists(key, b"same", b"never")
            expected.append((key in model) + 1)
        elif kind == 5:
            pipe.delete(key)
            expected.append(1 if model.pop(key, None) is not None else 0)
        else:
            pipe.echo(f"e{i}")
            expected.append(f"e{i}".encode())
        i += 1
    events.clear()
    results = pipe.execute()
    assert len(results) == 1000
    assert results[:4] == [True, b"a", True, b"b"], results[:4]
    mismatches = [(n, got, want) for n, (got, want) in enumerate(zip(results, expected))
                  if got != want]
    assert not mismatches, f"{len(mismatches)} results differ, first: {mismatches[:5]}"
    first_read = events.index("read")
    assert "send" not in events[first_read:], "the pipeline waited for a reply mid-way"
    assert events.count("read") == 1000


def test_one_mib_value(r):
    big = bytes(range(256)) * 4096  # 1 MiB
    assert r.set("big", big) is True
    assert r.get("big") == big
    assert r.set("big", big[::-1], get=True) == big
    assert r.get("big") == big[::-1]


def test_one_mib_value_through_mset(r):
    # The same value through MSET, whose values are checked against max-value-bytes only.
    big = bytes(range(256)) * 4096  # 1 MiB
    assert r.mset({"big": big, "small": b"s"}) is True
    assert r.get("big") == big
    assert r.mget("small", "big") == [b"s", big]


def test_mset_mget_delete_exists(r):
    assert r.mset({"a": "1", "b": "2", "c": b"\x00"}) is True
    assert r.mget("a", "missing", "c", "b") == [b"1", None, b"\x00", b"2"]
    assert r.exists("a", "a", "missing", "b") == 3
    assert r.delete("a", "missing", "a") == 1
    assert r.unlink("b", "c", "b") == 2
    assert r.delete("a", "b", "c") == 0
    assert r.exists("a", "b", "c") == 0
    assert r.mget("a", "b") == [None, None]


def test_ttl_pttl_expire_persist(r):
    assert r.set("k", "v") is True
    assert r.ttl("k") == -1 and r.pttl("k") == -1
    assert r.ttl("missing") == -2 and r.pttl("missing") == -2
    assert r.expire("k", 100) is True
    assert 0 < r.ttl("k") <= 100
    assert r.pexpire("k", 30_000) is True
    assert 0 < r.pttl("k") <= 30_000
    assert r.persist("k") is True
    assert r.ttl("k") == -1
    assert r.persist("k") is False
    assert r.expire("missing", 10) is False
    assert r.persist("missing") is False
    assert r.get("k") == b"v"
    assert r.expire("k", 0) is True
    assert r.exists("k") == 0


def test_expire_options_nx_xx_gt_lt(r):
    assert r.set("k", "v") is True
    # No expiry yet: XX and GT refuse (GT counts "never" as the latest), NX and LT apply.
    assert r.expire("k", 100, xx=True) is False
    assert r.expire("k", 100, gt=True) is False
    assert r.ttl("k") == -1
    assert r.expire("k", 100, nx=True) is True
    assert 0 < r.ttl("k") <= 100
    assert r.expire("k", 50, nx=True) is False  # has one now
    assert r.expire("k", 200, lt=True) is False  # later than 100 s
    assert r.expire("k", 200, gt=True) is True
    assert 100 < r.ttl("k") <= 200
    assert r.pexpire("k", 150_000, gt=True) is False
    assert r.pexpire("k", 150_000, lt=True) is True
    assert 100_000 < r.pttl("k") <= 150_000
    assert r.expire("k", 300, xx=True) is True
    assert 200 < r.ttl("k") <= 300
    assert r.persist("k") is True
    assert r.expire("k", 10, lt=True) is True  # "never" is later than anything
    assert 0 < r.ttl("k") <= 10
    assert r.get("k") == b"v"
    assert r.expire("missing", 10, nx=True) is False
    # A condition that fails changes nothing, even with a TTL that would delete the key.
    assert r.expire("k", 0, gt=True) is False
    assert r.exists("k") == 1
    assert r.expire("k", 0, lt=True) is True
    assert r.exists("k") == 0


def test_connection_commands(r):
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.client_setname("py-client") is True
    assert r.client_getname() == "py-client"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("SELECT", 0) in (True, b"OK", "OK")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 1)
    with pytest.raises(redis.ResponseError, match="unknown command 'FLUSHALL'"):
        r.execute_command("FLUSHALL")
    info = r.info()
    assert info["redis_version"] and info["connected_clients"] >= 1


def test_info_keyspace_parses_as_redis_does(r):
    # Redis writes `db0:keys=N,expires=M,avg_ttl=T`; client libraries parse that into a
    # mapping (redis-py: info()["db0"]["keys"]).
    assert r.mset({"x": "1", "y": "2"}) is True
    assert r.set("z", "3", ex=100) is True
    db0 = r.info("keyspace").get("db0")
    assert isinstance(db0, dict), f"INFO keyspace db0 is {db0!r}, not key=value pairs"
    assert db0["keys"] == 3, db0
    assert db0.get("expires") == 1, db0
