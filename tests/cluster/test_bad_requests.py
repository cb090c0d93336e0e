"""Bad input over the wire: every malformed or out-of-limits request is answered
INVALID_ARGUMENT with a message, on the same connection, which keeps working; nothing
is stored; the node counts them."""

import json
import time

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

import edgekv_harness as h
from edgekv_harness import pb

MAX_KEY = 16
MAX_VALUE = 1024
LIMITS = ["--max-key-bytes", str(MAX_KEY), "--max-value-bytes", str(MAX_VALUE)]


@pytest.fixture
def limited(daemons):
    return daemons.start("node1", args=LIMITS)


def _put(req_id, key, value=b"v", ttl_ms=0) -> bytes:
    req = pb.Request(id=req_id)
    req.put.key = key
    req.put.value = value
    req.put.ttl_ms = ttl_ms
    return req.SerializeToString()


def _get(req_id, key) -> bytes:
    req = pb.Request(id=req_id)
    req.get.key = key
    return req.SerializeToString()


def _del(req_id, key) -> bytes:
    req = pb.Request(id=req_id)
    getattr(req, "del").key = key
    return req.SerializeToString()


def _truncated() -> bytes:
    body = _put(77, b"truncated", b"x" * 100)
    return body[: len(body) // 2]  # cut inside the put's length-delimited field


# (name, frames sent on a DEALER, id the answer must carry: the request's id when its body
# decoded, else 0)
BAD_CASES = [
    ("empty key in put", [_put(101, b"")], 101),
    ("empty key in get", [_get(102, b"")], 102),
    ("empty key in del", [_del(103, b"")], 103),
    ("key over max-key-bytes in put", [_put(104, b"k" * (MAX_KEY + 1))], 104),
    ("key over max-key-bytes in get", [_get(105, b"k" * (MAX_KEY + 1))], 105),
    ("key over max-key-bytes in del", [_del(106, b"k" * (MAX_KEY + 1))], 106),
    ("value over max-value-bytes", [_put(107, b"big", b"v" * (MAX_VALUE + 1))], 107),
    ("negative TTL", [_put(108, b"neg-ttl", ttl_ms=-1)], 108),
    ("very negative TTL", [_put(109, b"neg-ttl", ttl_ms=-(2 ** 63))], 109),
    ("TTL over 100 years", [_put(110, b"long-ttl", ttl_ms=h.MAX_TTL_MS + 1)], 110),
    ("TTL of INT64_MAX", [_put(111, b"long-ttl", ttl_ms=2 ** 63 - 1)], 111),
    ("unknown operation (only an id)", [pb.Request(id=112).SerializeToString()], 112),
    ("changes of a partition that does not exist",
     [pb.Request(id=113, changes=pb.ChangesRequest(partition=1 << 20)).SerializeToString()], 113),
    ("changes asking for more than 10000 events",
     [pb.Request(id=117, changes=pb.ChangesRequest(partition=0, max_events=10001))
      .SerializeToString()], 117),
    ("truncated protobuf body", [_truncated()], 0),
    ("garbage bytes", [b"\xff" * 32], 0),
    ("two body frames", [_get(114, b"a"), _get(115, b"b")], 0),
    ("empty body frame", [b""], 0),
    ("three frames after an empty delimiter", [b"", _get(116, b"a"), b"x"], 0),
]


def test_bad_requests_are_rejected_and_the_connection_keeps_working(limited):
    c = limited.client(timeout=5.0)
    failures = []
    for name, frames, want_id in BAD_CASES:
        c.send_frames(frames)
        try:
            reply = c.recv_frames()
        except h.NoReply as e:
            failures.append(f"{name}: no answer ({e})")
            continue
        if len(reply) != 1:
            failures.append(f"{name}: {len(reply)} reply frames {reply!r}")
            continue
        resp = pb.Response()
        try:
            resp.ParseFromString(reply[0])
        except Exception as e:  # noqa: BLE001 - any decoding error is a failure here
            failures.append(f"{name}: reply does not decode: {e}")
            continue
        if resp.code != pb.INVALID_ARGUMENT:
            failures.append(f"{name}: code {h.code_name(resp.code)} ({resp.message!r})")
        if not resp.message.strip():
            failures.append(f"{name}: empty message")
        if resp.id != want_id:
            failures.append(f"{name}: answered with id {resp.id}, expected {want_id}")
        if resp.WhichOneof("body") is not None:
            failures.append(f"{name}: an error answer carries a {resp.WhichOneof('body')} body")
    assert not failures, "\n".join(failures)

    # Nothing was stored, and the node counted every bad request.
    stats = c.stats()
    assert stats["invalid_requests"] == len(BAD_CASES), stats
    assert stats["keys"] == 0 and stats["store_puts_applied"] == 0, stats
    assert c.status().status.keys == 0
    for key in [b"neg-ttl", b"long-ttl", b"big", b"truncated"]:
        assert c.get(key).code == pb.NOT_FOUND, key

    # The same connection still serves valid requests, at the limits exactly.
    resp = c.put(b"k" * MAX_KEY, b"v" * MAX_VALUE, ttl_ms=h.MAX_TTL_MS)
    assert resp.code == pb.OK, (h.code_name(resp.code), resp.message)
    resp = c.get(b"k" * MAX_KEY)
    assert resp.code == pb.OK and resp.get.value == b"v" * MAX_VALUE
    assert c.put(b"\x00", b"").code == pb.OK  # one-byte key, empty value
    assert c.stats()["invalid_requests"] == len(BAD_CASES)
    c.close()

    # kvcli shows the counter too.
    r = h.kvcli("stats", endpoint=limited.client_endpoint, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, h.describe(r)
    assert json.loads(r.stdout)["invalid_requests"] == len(BAD_CASES), h.describe(r)


def test_kvcli_reports_invalid_argument_with_exit_4(limited):
    r = h.kvcli("put", "k" * (MAX_KEY + 1), "v", endpoint=limited.client_endpoint)
    assert r.returncode == h.EXIT_OTHER, h.describe(r)
    assert b"max-key-bytes" in r.stderr, h.describe(r)
    r = h.kvcli("put", "big", "-", endpoint=limited.client_endpoint,
                input=b"v" * (MAX_VALUE + 1))
    assert r.returncode == h.EXIT_OTHER, h.describe(r)
    assert b"max-value-bytes" in r.stderr, h.describe(r)


def test_req_socket_gets_its_envelope_back(limited):
    with limited.client(socket_type=zmq.REQ) as c:
        resp = c.put(b"via-req", b"value")
        assert resp.code == pb.OK, resp
        resp = c.get(b"via-req")
        assert resp.code == pb.OK and resp.get.value == b"value"
        resp = c.get(b"")  # an error answer takes the same envelope
        assert resp.code == pb.INVALID_ARGUMENT and resp.message
        resp = c.status()
        assert resp.code == pb.OK and resp.status.node_id == "node1"
        c.send_frames([b"\xff" * 8])  # undecodable: answered too, in the REQ envelope
        resp = c.recv_response()
        assert resp.code == pb.INVALID_ARGUMENT and resp.id == 0 and resp.message
    with limited.client() as dealer:  # and a DEALER sees what the REQ client wrote
        assert dealer.get(b"via-req").get.value == b"value"


def test_pipelined_requests_are_each_answered_once_by_id(limited):
    with limited.client() as c:
        ids = {}
        for i in range(300):
            key = b"p%03d" % i
            if i % 3 == 2:
                ids[c.send(pb.Request(id=c.next_id, get=pb.GetRequest(key=key)))] = ("get", key)
                c.next_id += 1
            else:
                ids[c.send(c.put_request(key, key + b"!"))] = ("put", key)
        seen = set()
        while len(seen) < len(ids):
            resp = c.recv_response()
            assert resp.id in ids and resp.id not in seen, resp.id
            seen.add(resp.id)
            assert resp.code in (pb.OK, pb.NOT_FOUND), (ids[resp.id], h.code_name(resp.code))
        # Nothing answered twice. One thread sends every reply on the ROUTER, and ZeroMQ
        # keeps one connection's messages in order, so a second answer to any of the 300
        # would arrive before the reply to a stats request made once none of their writes
        # is in flight; c.call() keeps any reply that is not the one it waits for.
        h.wait_for(lambda: c.stats()["writes_in_flight"] == 0, 10,
                   "the node to finish the pipelined writes")
        assert not c.unclaimed, f"answered twice: ids {sorted(c.unclaimed)}"


def _wait_monitor_event(monitor, event: int, timeout: float = 10.0) -> None:
    """Waits for `event` on a socket monitor; fails naming it after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        assert left_ms > 0 and monitor.poll(left_ms, zmq.POLLIN), \
            f"no socket event {event:#x} within {timeout} s"
        if recv_monitor_message(monitor)["event"] == event:
            return


def test_oversized_frame_drops_the_connection_but_not_the_node(limited):
    # Over max-value-bytes + max-key-bytes + 1 MiB: ZeroMQ refuses the frame and drops
    # the connection instead of reading it.
    with limited.client() as c:
        # Watched from before the frame is sent, so the drop it causes is reported.
        monitor = c.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            c.send_frames([b"\x00" * (MAX_VALUE + MAX_KEY + (1 << 20) + 4096)])
            _wait_monitor_event(monitor, zmq.EVENT_DISCONNECTED)
            # The client's I/O thread queues what it read on a connection before it reports
            # the disconnection, so anything the node sent before dropping it is here now.
            assert not c.sock.poll(0, zmq.POLLIN), f"answered: {c.sock.recv_multipart()!r}"
        finally:
            c.sock.disable_monitor()
            monitor.close(0)
    with limited.client() as c:
        assert c.put(b"after", b"oversized").code == pb.OK
        assert c.get(b"after").get.value == b"oversized"


def test_request_ids_are_echoed_whole(limited):
    with limited.client() as c:
        for req_id in [0, 1, 2 ** 32, 2 ** 63, 2 ** 64 - 1]:
            req = pb.Request(id=req_id)
            req.status.SetInParent()
            c.send(req)
            resp = c.recv_response()
            assert resp.id == req_id and resp.code == pb.OK
