"""The RESP listener on raw sockets: inline commands as telnet users type them, pipelining,
Redis 7's error texts for bad commands (the connection stays usable), and protocol errors
(answered `-ERR Protocol error: ...`, then the connection is closed; the node goes on
serving and nothing of the bad request is stored)."""

import random
import socket

import pytest

import edgekv_harness as h

MAX_KEY = 16
MAX_VALUE = 1024
LIMITS = ["--max-key-bytes", str(MAX_KEY), "--max-value-bytes", str(MAX_VALUE)]
# The parser refuses a bulk longer than max-value-bytes plus 64 KiB from its header.
MAX_BULK = MAX_VALUE + 64 * 1024


@pytest.fixture
def limited(daemons):
    return daemons.start("node1", args=LIMITS)


def _stored_keys(node) -> int:
    with node.client() as native:
        return native.stats()["keys"]


def test_inline_commands_work_as_with_telnet(limited):
    with h.RespConn(limited.resp_port) as c:
        c.send(b"SET k v\r\n")
        assert c.reply() == "OK"
        c.send(b"GET k\r\n")
        assert c.reply() == b"v"
        c.send(b'SET k2 "a b"\r\n')
        assert c.reply() == "OK"
        c.send(b"GET k2\r\n")
        assert c.reply() == b"a b"
        c.send(b'SET k3 "tab\\there\\x00\\r\\n"\r\n')
        assert c.reply() == "OK"
        c.send(b"GET 'k3'\r\n")
        assert c.reply() == b"tab\there\x00\r\n"
        c.send(b"SET k4 'it\\'s'\r\n")
        assert c.reply() == "OK"
        assert c.command("GET", "k4") == b"it's"
        c.send(b"PING\n")  # a bare LF ends a line too, as telnet users may send
        assert c.reply() == "PONG"
        c.send(b"\r\n\r\n   \r\nECHO  spaced    out \r\n")  # blank lines are no command
        got = c.reply()
        assert isinstance(got, h.RespError), got
        assert got == "ERR wrong number of arguments for 'echo' command"
        c.send(b"get k\r\n")
        assert c.reply() == b"v"


def test_pipelined_inline_and_multibulk_commands_in_one_send(limited):
    with h.RespConn(limited.resp_port) as c:
        c.send(b"SET a 1\r\n" + h.resp_encode("GET", "a") + b"SET a 2\r\nGET a\r\n"
               + h.resp_encode("SET", "b", "x y") + b"MGET a b missing\r\n"
               + h.resp_encode("DEL", "a", "b") + b"EXISTS a b\r\nPING\r\n"
               + h.resp_encode("ECHO", "end"))
        assert c.replies(10) == ["OK", b"1", "OK", b"2", "OK", [b"2", b"x y", None], 2, 0,
                                 "PONG", b"end"]
        # A command split over many sends is one command.
        for byte in h.resp_encode("SET", "split", "value"):
            c.send(bytes([byte]))
        assert c.reply() == "OK"
        assert c.command("GET", "split") == b"value"


COMMAND_ERRORS = [
    (("foo", "a", "b"), "ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
    (("FOO",), "ERR unknown command 'FOO', with args beginning with: "),
    (("GET",), "ERR wrong number of arguments for 'get' command"),
    (("GET", "a", "b"), "ERR wrong number of arguments for 'get' command"),
    (("Set", "k"), "ERR wrong number of arguments for 'set' command"),
    (("PING", "a", "b"), "ERR wrong number of arguments for 'ping' command"),
    (("MSET", "a", "1", "b"), "ERR wrong number of arguments for 'mset' command"),
    (("SET", "k", "v", "FOO"), "ERR syntax error"),
    (("SET", "k", "v", "NX", "XX"), "ERR syntax error"),
    (("SET", "k", "v", "EX", "10", "PX", "10"), "ERR syntax error"),
    (("SET", "k", "v", "EX"), "ERR syntax error"),
    (("SET", "k", "v", "EX", "abc"), "ERR value is not an integer or out of range"),
    (("SET", "k", "v", "EX", "+5"), "ERR value is not an integer or out of range"),
    (("SET", "k", "v", "EX", "99999999999999999999"), "ERR value is not an integer or out of range"),
    (("SET", "k", "v", "EX", "0"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "EX", "-1"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "PX", "0"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "EX", "9223372036854775807"), "ERR invalid expire time in 'set' command"),
    (("EXPIRE", "k", "soon"), "ERR value is not an integer or out of range"),
    (("EXPIRE", "k", "10", "SOON"), "ERR Unsupported option SOON"),
    (("EXPIRE", "k", "10", "NX", "GT"),
     "ERR NX and XX, GT or LT options at the same time are not compatible"),
    (("PEXPIRE", "k", "10", "xx", "nx"),
     "ERR NX and XX, GT or LT options at the same time are not compatible"),
    (("EXPIRE", "k", "10", "GT", "lt"), "ERR GT and LT options at the same time are not compatible"),
    # Options are checked before the time, as Redis does.
    (("EXPIRE", "k", "soon", "FOO"), "ERR Unsupported option FOO"),
    (("SELECT", "1"), "ERR DB index is out of range"),
    (("SET", "k" * (MAX_KEY + 1), "v"), f"ERR key is {MAX_KEY + 1} bytes; max-key-bytes is {MAX_KEY}"),
    (("GET", "k" * (MAX_KEY + 1)), f"ERR key is {MAX_KEY + 1} bytes; max-key-bytes is {MAX_KEY}"),
    (("MSET", "ok", "v", "k" * 100, "v"), f"ERR key is 100 bytes; max-key-bytes is {MAX_KEY}"),
    (("MSET", "ok", "v" * (MAX_VALUE + 1)),
     f"ERR value is {MAX_VALUE + 1} bytes; max-value-bytes is {MAX_VALUE}"),
    (("SET", "", "v"), "ERR key is empty"),
    (("GET", ""), "ERR key is empty"),
    (("DEL", "ok", ""), "ERR key is empty"),
]


def test_command_errors_answer_redis_texts_and_keep_the_connection(limited):
    with h.RespConn(limited.resp_port) as c:
        failures = []
        for args, want in COMMAND_ERRORS:
            got = c.command(*args)
            if not isinstance(got, h.RespError) or got != want:
                failures.append(f"{args!r}: got {got!r}, want -{want}")
        assert not failures, "\n".join(failures)
        # The same connection still serves, and nothing was written.
        assert c.command("PING") == "PONG"
        assert c.command("EXISTS", "k", "ok") == 0
    assert _stored_keys(limited) == 0


def test_value_over_max_value_bytes_is_refused_as_a_value(limited):
    with h.RespConn(limited.resp_port) as c:
        got = c.command("SET", "k", "v" * (MAX_VALUE + 1))
        assert got == f"ERR value is {MAX_VALUE + 1} bytes; max-value-bytes is {MAX_VALUE}"
        assert c.command("PING") == "PONG", "the connection must stay usable"
        assert c.command("EXISTS", "k") == 0


def test_values_up_to_max_value_bytes_are_stored(limited):
    # A value is bounded by max-value-bytes, not by max-key-bytes.
    failures = []
    with h.RespConn(limited.resp_port) as c:
        for size in (0, 1, MAX_KEY, MAX_KEY + 1, MAX_VALUE):
            value = b"x" * size
            for args in [("SET", f"v{size}", value), ("SET", f"v{size}", value, "PX", "60000"),
                         ("SET", f"v{size}", value, "GET")]:
                got = c.command(*args)
                if got not in ("OK", value, None):
                    failures.append(f"{' '.join(map(str, args[3:]))} with a {size}-byte value: "
                                    f"{got!r}")
                elif c.command("GET", f"v{size}") != value:
                    failures.append(f"GET after SET of a {size}-byte value")
    assert not failures, "\n".join(failures)


def _garbage(seed: int, size: int, exclude: bytes) -> bytes:
    rng = random.Random(seed)
    return bytes(b for b in (rng.randrange(256) for _ in range(size * 2)) if b not in exclude)[:size]


PROTOCOL_ERRORS = [
    pytest.param(b"*abc\r\n", "ERR Protocol error: invalid multibulk length",
                 id="bad-multibulk-length"),
    pytest.param(b"*-5\r\n", "ERR Protocol error: invalid multibulk length",
                 id="negative-multibulk-length"),
    pytest.param(b"*1048577\r\n", "ERR Protocol error: invalid multibulk length",
                 id="multibulk-length-over-1M"),
    pytest.param(b"*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length",
                 id="bad-bulk-length"),
    pytest.param(b"*1\r\n+foo\r\n", "ERR Protocol error: expected '$', got '+'",
                 id="expected-dollar"),
    pytest.param(b"*2\r\n$3\r\nGET\r\n$99999999999\r\n", "ERR Protocol error: invalid bulk length",
                 id="bulk-over-the-limit"),
    pytest.param(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (MAX_BULK + 1),
                 "ERR Protocol error: invalid bulk length", id="bulk-just-over-the-limit"),
    pytest.param(b'SET "k v\r\n', "ERR Protocol error: unbalanced quotes in request",
                 id="unbalanced-quotes"),
    pytest.param(b"SET k 'a'b\r\n", "ERR Protocol error: unbalanced quotes in request",
                 id="text-after-closing-quote"),
    pytest.param(b"*1\r\n$3\r\nGETxx\r\n", "ERR Protocol error: expected CRLF after bulk data",
                 id="bulk-longer-than-announced"),
    pytest.param(b"*" + _garbage(1, 200, b"\r\n") + b"\r\n",
                 "ERR Protocol error: invalid multibulk length", id="random-garbage-multibulk"),
    pytest.param(b"G" + _garbage(2, 70_000, b"\n"),
                 "ERR Protocol error: too big inline request", id="random-garbage-no-newline"),
]


@pytest.mark.parametrize("data,want", PROTOCOL_ERRORS)
def test_protocol_error_is_answered_then_the_connection_closes(limited, data, want):
    with h.RespConn(limited.resp_port) as c:
        assert c.command("SET", "before", "ok") == "OK"
        c.send(data)
        got = c.reply()
        assert isinstance(got, h.RespError) and got == want, got
        assert c.closed_by_peer(5.0), "the connection stayed open after a protocol error"
        assert c.pending_bytes() == b"", "more was sent after the protocol error"

    with h.RespConn(limited.resp_port) as c:  # the node serves a new connection
        assert c.command("PING") == "PONG"
        assert c.command("GET", "before") == b"ok"
        assert c.command("EXISTS", "k", "GET", "foo") == 0
    with limited.client() as native:
        stats = native.stats()
        assert stats["keys"] == 1, "the bad request stored something"
        assert stats["resp_protocol_errors"] == 1, stats


def test_replies_before_a_protocol_error_are_sent_in_order(limited):
    with h.RespConn(limited.resp_port) as c:
        c.send(h.resp_encode("SET", "a", "1") + b"GET a\r\n" + h.resp_encode("SET", "b", "2")
               + b"*1\r\n$x\r\n" + h.resp_encode("SET", "after", "never"))
        assert c.replies(4) == ["OK", b"1", "OK",
                                h.RespError("ERR Protocol error: invalid bulk length")]
        assert c.closed_by_peer(5.0)
    with h.RespConn(limited.resp_port) as c:
        assert c.command("MGET", "a", "b", "after") == [b"1", b"2", None]


def test_garbage_without_a_star_is_an_unknown_command_as_in_redis(limited):
    # Bytes that do not start with '*' are an inline command: Redis answers "unknown
    # command" and keeps the connection.
    with h.RespConn(limited.resp_port) as c:
        c.send(b"\x00\xff\x13garbage here\r\n")
        got = c.reply()
        assert isinstance(got, h.RespError) and got.startswith("ERR unknown command"), got
        assert c.command("PING") == "PONG"
    assert _stored_keys(limited) == 0


def test_unknown_command_error_is_bounded_like_redis(limited):
    # Redis 7 quotes at most 128 bytes of the name and of the arguments together; an
    # error reply must not echo megabytes of a client's arguments.
    with h.RespConn(limited.resp_port) as c:
        got = c.command("nosuchcommand", b"a" * 60_000, b"b" * 60_000)
        assert isinstance(got, h.RespError), got
        assert got.startswith("ERR unknown command 'nosuchcommand', with args beginning with: 'aaa")
        assert len(got) < 400, f"the error reply is {len(got)} bytes long"


def test_quit_answers_ok_then_closes(limited):
    with h.RespConn(limited.resp_port) as c:
        c.send(h.resp_encode("SET", "q", "1") + b"QUIT\r\n" + h.resp_encode("SET", "q", "2"))
        assert c.replies(2) == ["OK", "OK"]
        assert c.closed_by_peer(5.0)
        assert c.pending_bytes() == b""
    with h.RespConn(limited.resp_port) as c:
        assert c.command("GET", "q") == b"1", "a command after QUIT was executed"


def test_half_closed_client_still_gets_its_replies(limited):
    # `printf 'SET k v\r\n...' | nc -N host port`: the client shuts down its sending side
    # after the last command, then reads. Redis answers every command it read.
    count = 3000
    with h.RespConn(limited.resp_port, timeout=3) as c:
        c.send(b"".join(h.resp_encode("SET", f"hc{i}", "v") for i in range(count))
               + h.resp_encode("GET", "hc0") + b"PING\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        got = []
        try:
            for _ in range(count + 2):
                got.append(c.reply())
        except AssertionError as e:
            raise AssertionError(f"{len(got)} of {count + 2} replies before the close: {e}") \
                from None
        assert got == ["OK"] * count + [b"v", "PONG"]
        assert c.closed_by_peer(5.0)


@pytest.mark.parametrize("partial,rest,want", [
    pytest.param(b"PIN", b"G\r\n", "PONG", id="inline-line"),
    pytest.param(b"*2\r\n$4\r\nEC", b"HO\r\n$2\r\nhi\r\n", b"hi", id="inside-a-bulk"),
    pytest.param(b"*1\r\n$4", b"\r\nPING\r\n", "PONG", id="bulk-header"),
    pytest.param(b"*", b"1\r\n$4\r\nPING\r\n", "PONG", id="count-header"),
])
def test_incomplete_command_waits_without_stalling_the_node(limited, partial, rest, want):
    # Commands arrive in pieces (TCP segments, a slow client): the node must wait for the
    # rest of this one while serving everybody else.
    with h.RespConn(limited.resp_port, timeout=3) as slow, \
            h.RespConn(limited.resp_port, timeout=3) as other:
        assert slow.command("SET", "k", "v") == "OK"
        slow.send(partial)
        assert other.command("PING") == "PONG", "another client was not served"
        assert other.command("GET", "k") == b"v"
        # The node kept the fragment and the connection: replies leave a connection in
        # request order, so an error or a close caused by the fragment alone would come
        # before the reply to the completed command and to the GET sent after it.
        slow.send(rest + h.resp_encode("GET", "k"))
        assert slow.replies(2) == [want, b"v"]
