"""Memory in flight is bounded in bytes and handed back: clients that send large values
faster than the store takes them, without reading their replies, make the node stop
reading them (RESP) or refuse their writes OVERLOADED (ZeroMQ) instead of growing, every
write it took is answered and stored, and once the load ends the resident set falls back
near where it started.

The store is made slow on purpose (--sync full, one write per commit) so that writes pile
up in front of it; the bounds are set small on the command line so that the test needs a
few hundred MiB of load, not gigabytes."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import struct
import threading
from pathlib import Path

import edgekv_harness as h
from edgekv_harness import pb

MiB = 1 << 20

MAX_INFLIGHT = 32 * MiB      # --max-inflight-bytes
CLIENT_BUFFER = 8 * MiB      # --resp-client-buffer-bytes
STAGE_MAX = 8 * MiB          # --stage-max-bytes: staged values per database file
DB_FILES = 2                 # the store's default for a new directory
# What the node may hold beyond the counted bytes: the command being parsed and the one
# admitted just below a bound (a few values), the writers' compression buffers, SQLite's
# page caches, libzmq's and the kernel's socket buffers, allocator slack.
SLACK = 24 * MiB
# Peak growth allowed: the counted bytes in flight, once more for values on their way
# between the parser and the request path (a value is counted where it is held, but a
# copy can be transient), the staged values of every file, and the slack above.
PEAK_GROWTH_MAX = 2 * MAX_INFLIGHT + DB_FILES * STAGE_MAX + SLACK
# The ZeroMQ API has one more place for requests: libzmq receives them on its own thread,
# ahead of the node reading them (and answering OVERLOADED), up to its receive high-water
# mark, a count: 64 (the least the node sets) of the largest requests, here 1 MiB.
ZMQ_VALUE = MiB
ZMQ_QUEUE_SLACK = 64 * ZMQ_VALUE
# After the load: what the node may keep of it (SQLite's caches, allocator metadata).
AFTER_GROWTH_MAX = 24 * MiB
# What the node keeps for good once a partition was written to and read from, whatever the
# load, is in the baseline instead (warmed_up_baseline): a partition's tables are created
# on its first write, which adds them to the schema that every connection to its file
# parses and keeps, and each connection prepares the partition's statements once and keeps
# them. Measured from a fresh node, that state was counted as the load's, and how much of
# it depended on which partitions the load's keys reached (in the ZeroMQ test, on which
# PUTs were shed, so on timing): 12 to 35 MiB of growth after the load, over the bound on
# a loaded machine, of which SQLite's live allocations were 16 MiB (heaptrack at the
# check); every value was freed, and malloc_trim found nothing more to return. A few
# partitions keep the warm-up short: 64, with keys enough to reach each of them (checked).
PARTITIONS = 64
WARM_UP_KEYS = 1024
# The address space glibc reserves for each malloc arena (a thread's first allocation
# may create one), on 64-bit systems.
ARENA = 64 * MiB
# AddressSanitizer keeps freed memory in a quarantine of up to 256 MiB, by design: it
# raises the peak by that much, and what it holds is not handed back.
SANITIZE = bool(os.environ.get("EDGEKV_SANITIZE"))
QUARANTINE = 256 * MiB if SANITIZE else 0

ARGS = ["--max-inflight-bytes", str(MAX_INFLIGHT),
        "--resp-client-buffer-bytes", str(CLIENT_BUFFER),
        "--stage-max-bytes", str(STAGE_MAX),
        # The cache would keep the last values written, by design: not what is measured.
        "--read-cache-bytes", "0",
        "--sync", "full", "--group-commit-max", "1",
        "--partitions", str(PARTITIONS)]


def start(daemons, extra=(), log_level="error") -> h.Daemon:
    return daemons.start("node1", args=[*ARGS, "--log-level", log_level, *extra])


def memory(node: h.Daemon) -> dict[str, int]:
    kib = h.process_memory_kib(node.pid)
    return {k: v * 1024 for k, v in kib.items()}


def partitions_with_tables(node: h.Daemon) -> int:
    total = 0
    for path in node.data_dir.glob("data-*.db"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            total += db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                " AND name LIKE 'kv\\_%' ESCAPE '\\'").fetchone()[0]
        finally:
            db.close()
    return total


def warmed_up_baseline(node: h.Daemon, size: int) -> int:
    """The node's resident set once every partition was written to and read from, and a
    few values of `size` bytes were written and read: what the node keeps per partition
    (see PARTITIONS) and per value size (the writers' zstd contexts and output buffers, a
    reader's decompression buffer), whatever the load, is not the load's to hand back."""
    keys = [b"warm-up-%d" % i for i in range(WARM_UP_KEYS)]
    with node.client(timeout=60) as c:
        c.put_many(((key, b"w" * 64) for key in keys), window=64)
        h.wait_for(lambda: partitions_with_tables(node) == PARTITIONS, 30,
                   f"the warm-up keys to reach all {PARTITIONS} partitions")
        got = c.get_many(keys, window=4)
        assert all(got[key].code == pb.OK for key in keys)
        big = keys[:4]
        # One at a time: a value is counted more than once in flight, and 4 of 4 MiB together
        # would pass max-inflight-bytes.
        c.put_many(((key, bytes([i]) * size) for i, key in enumerate(big)), window=1)
        got = c.get_many(big, window=4)
        assert all(got[key].code == pb.OK for key in big)
        h.wait_for(lambda: c.stats()["inflight_bytes"] == 0, 60, "the warm-up to finish")
    return memory(node)["VmRSS"]


def assert_peak_bounded(node: h.Daemon, baseline: int, load: str, extra: int = 0) -> None:
    peak = memory(node)["VmHWM"]
    allowed = PEAK_GROWTH_MAX + extra + QUARANTINE
    assert peak - baseline < allowed, (
        f"{load}: the node's peak resident set grew by {(peak - baseline) / MiB:.0f} MiB, "
        f"over the {allowed / MiB:.0f} MiB its bounds allow")


def assert_memory_handed_back(node: h.Daemon, baseline: int, load: str) -> None:
    with node.client() as c:
        h.wait_for(lambda: c.stats()["inflight_bytes"] == 0, 60, "the writes in flight to finish")
        if SANITIZE:
            return
        last = [0]

        def back_near_baseline():
            last[0] = memory(node)["VmRSS"]
            return last[0] - baseline < AFTER_GROWTH_MAX
        try:
            h.wait_for(back_near_baseline, 30, "the memory of the load to be handed back",
                       interval=0.1)
        except AssertionError:
            raise AssertionError(
                f"{load}: 30 s after the load the node still holds "
                f"{(last[0] - baseline) / MiB:.0f} MiB more than before it (allowed: "
                f"{AFTER_GROWTH_MAX / MiB:.0f} MiB)") from None


HOT_KEYS = 4  # keys each connection writes in turn


def value_of(n: int, i: int, size: int) -> bytes:
    return bytes([0x41 + n * 26 // 4 + i % 26]) * size


def pipeline_sets(node: h.Daemon, conns: int, count: int, size: int) -> None:
    """Each of `conns` connections sends `count` SETs of `size` bytes to a few hot keys
    before reading any reply, then reads them all: each must be OK, and the last value of
    each key stored. A key takes one write at a time, so writes pile up in the node."""
    socks = [h.RespConn(node.resp_port, timeout=120) for _ in range(conns)]
    try:
        # Encoded before the stage files are locked: on a loaded machine, building hundreds
        # of MiB took longer than the wait for the node to pause below.
        payloads = [b"".join(h.resp_encode("SET", f"c{n}:k{i % HOT_KEYS}", value_of(n, i, size))
                             for i in range(count))
                    for n in range(conns)]

        def send(n: int) -> None:
            socks[n].send(payloads[n])

        senders = [threading.Thread(target=send, args=(n,)) for n in range(conns)]
        # A store as fast as the clients would never make the node pause: it takes no
        # write while its stage files are locked, so the bounds are reached for sure.
        with writes_held(node), node.client() as c:
            for t in senders:
                t.start()
            # The node stops reading: it reports the connections paused for a bound. Well
            # within the store's 5 s busy timeout, after which the writes would fail.
            h.wait_for(lambda: c.stats()["resp_pauses"] > 0, 3,
                       "the node to pause reading a connection")
        for t in senders:
            t.join(120)
            assert not t.is_alive(), "a client could not send its SETs within 120 s"
        for n, s in enumerate(socks):
            got = s.replies(count, timeout=120)
            assert got == ["OK"] * count, (n, [g for g in got if g != "OK"][:3])
        for n in range(conns):
            for i in range(count - HOT_KEYS, count):
                got = socks[0].command("GET", f"c{n}:k{i % HOT_KEYS}")
                assert got == value_of(n, i, size), (n, i)
    finally:
        for s in socks:
            s.close()


def test_one_connection_pipelining_1mib_sets_is_bounded_and_handed_back(daemons):
    node = start(daemons)
    baseline = warmed_up_baseline(node, MiB)
    pipeline_sets(node, conns=1, count=400, size=MiB)
    assert_peak_bounded(node, baseline, "400 pipelined SETs of 1 MiB")
    assert_memory_handed_back(node, baseline, "400 pipelined SETs of 1 MiB")
    with node.client() as c:
        stats = c.stats()
        assert stats["resp_connections_paused"] == 0, stats["resp_connections_paused"]
        assert stats["resp_held_bytes"] == 0, stats["resp_held_bytes"]


def test_four_connections_pipelining_4mib_sets_are_bounded_and_handed_back(daemons):
    node = start(daemons)
    baseline = warmed_up_baseline(node, 4 * MiB)
    pipeline_sets(node, conns=4, count=40, size=4 * MiB)
    assert_peak_bounded(node, baseline, "4 connections x 40 pipelined SETs of 4 MiB")
    assert_memory_handed_back(node, baseline, "4 connections x 40 pipelined SETs of 4 MiB")


def test_zeromq_flood_of_1mib_puts_is_refused_overloaded_not_buffered(daemons):
    node = start(daemons, ["--max-value-bytes", str(ZMQ_VALUE)])
    baseline = warmed_up_baseline(node, ZMQ_VALUE)
    count = 300
    with node.client(timeout=120) as c:
        sent = {}
        for i in range(count):  # all sent before any reply is read
            key = b"z%d" % i
            sent[c.send(c.put_request(key, bytes([i % 251]) * ZMQ_VALUE))] = key
        outcome = {}
        for req_id, key in sent.items():
            resp = c.wait(req_id)
            assert resp.code in (pb.OK, pb.OVERLOADED), \
                (key, h.code_name(resp.code), resp.message)
            if resp.code == pb.OVERLOADED:
                assert "max-inflight-bytes" in resp.message, resp.message
            outcome[key] = resp.code
        assert_peak_bounded(node, baseline, f"{count} PUTs of 1 MiB", ZMQ_QUEUE_SLACK)
        shed = sum(1 for code in outcome.values() if code == pb.OVERLOADED)
        assert shed > 0, "no PUT was refused, though the flood was 9 times max-inflight-bytes"
        assert c.stats()["requests_shed"] == shed
        # Acknowledged writes are stored, refused ones are not.
        got = c.get_many(list(outcome), window=4)
        for i, key in enumerate(outcome):
            if outcome[key] == pb.OK:
                want = bytes([i % 251]) * ZMQ_VALUE
                assert got[key].code == pb.OK and got[key].get.value == want, key
            else:
                assert got[key].code == pb.NOT_FOUND, (key, h.code_name(got[key].code))
    assert_memory_handed_back(node, baseline, f"{count} PUTs of 1 MiB")


def vm_size(node: h.Daemon) -> int:
    """The node's address space in bytes (VmSize): what it allocated, touched or not."""
    for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_huge_bulk_headers_cost_what_arrives_not_what_they_announce(daemons):
    """Clients that announce 64 MiB values and send a few bytes of each make the node hold
    those few bytes: neither its address space nor its resident set grows by the announced
    sizes, and the bytes held are counted in inflight_bytes."""
    conns, announced, sent = 48, 64 * MiB - 1024, 4096
    node = start(daemons, ["--max-value-bytes", str(64 * MiB)])
    # Threads that serve the requests below allocate once before the baseline, so that
    # glibc's per-thread arenas (64 MiB of address space each) are not counted.
    with node.client() as c, h.RespConn(node.resp_port) as warm:
        c.stats()
        assert warm.command("PING") == "PONG"
    before = {"VmSize": vm_size(node), **memory(node)}
    socks = [h.RespConn(node.resp_port) for _ in range(conns)]
    try:
        for n, s in enumerate(socks):
            s.send(b"*3\r\n$3\r\nSET\r\n$3\r\nh%02d\r\n$%d\r\n" % (n % 100, announced)
                   + b"x" * sent)
        with node.client() as c:
            # Every connection's bytes were read: the node counts them as held.
            h.wait_for(lambda: c.stats()["resp_held_bytes"] >= conns * sent, 30,
                       "the node to read the partial commands")
            held = c.stats()["resp_held_bytes"]
        grown_vm = vm_size(node) - before["VmSize"]
        grown_rss = memory(node)["VmRSS"] - before["VmRSS"]
        # Each connection may hold a 64 KiB read buffer and a 64 KiB growth chunk.
        allowed = conns * 256 * 1024 + SLACK
        # Before, each header reserved its announced size: 3 GiB of address space here.
        # An arena made for a thread that allocated for the first time may add 64 MiB.
        assert grown_vm < allowed + 2 * ARENA, (
            f"{conns} headers announcing {announced >> 20} MiB each grew the address space "
            f"by {grown_vm / MiB:.0f} MiB (allowed {(allowed + 2 * ARENA) / MiB:.0f} MiB)")
        assert grown_rss < allowed, grown_rss
        assert held < conns * 256 * 1024, held
        with h.RespConn(node.resp_port) as other:
            assert other.command("PING") == "PONG"
    finally:
        for s in socks:
            s.close()


def test_clients_that_never_read_are_evicted_and_the_others_served(daemons):
    """Connections that pipeline GETs of a 4 MiB value and never read the replies fill
    their buffers up to resp-client-buffer-bytes each, together past max-inflight-bytes.
    Before, every connection then paused until they read, which they never do; now the
    ones holding the most are closed and counted, and another client keeps being
    served, each of its requests within a deadline."""
    hogs, value = 10, 4 * MiB
    node = start(daemons, log_level="warning")
    with h.RespConn(node.resp_port) as good:
        assert good.command("SET", "big", b"v" * value) == "OK"
        socks = [h.RespConn(node.resp_port) for _ in range(hogs)]
        try:
            for s in socks:
                s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                s.send(b"".join(h.resp_encode("GET", "big") for _ in range(64)))
            with node.client() as c:
                h.wait_for(lambda: c.stats()["resp_clients_evicted"] > 0, 60,
                           "the node to close a connection that does not read its replies")
                for i in range(20):
                    good.send(h.resp_encode("SET", f"g{i}", b"%d" % i))
                    assert good.reply(timeout=10) == "OK", i
                    good.send(h.resp_encode("GET", f"g{i}"))
                    assert good.reply(timeout=10) == b"%d" % i, i
                stats = c.stats()
                evicted = stats["resp_clients_evicted"]
                assert 1 <= evicted <= hogs, evicted
                assert stats["resp_connections"] == 1 + hogs - evicted, stats["resp_connections"]
                assert stats["inflight_bytes"] < MAX_INFLIGHT, stats["inflight_bytes"]
            text = node.stderr_text()
            assert "max-inflight-bytes" in text and "closed" in text, text[-2000:]
        finally:
            for s in socks:
                s.close()


@contextlib.contextmanager
def writes_held(node: h.Daemon):
    """Holds every stage file's write lock, as another SQLite process would: the node's
    commits wait on it (its busy timeout is 5 s), so its writes stay in flight until the
    lock is let go."""
    dbs = []
    try:
        for path in sorted(node.data_dir.glob("stage-*.db")):
            db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
            db.execute("BEGIN IMMEDIATE")
            dbs.append(db)
        assert dbs, f"no stage file in {node.data_dir}"
        yield
    finally:
        for db in dbs:
            db.execute("ROLLBACK")
            db.close()


def test_a_paused_connection_reset_by_its_peer_is_closed_at_once(daemons):
    """A connection paused at resp-client-buffer-bytes with its writes in flight and
    nothing to send, reset by its client: the node closes it at once, while the writes
    are still held. It used to keep it until they completed, and since epoll reports a
    reset at every wait, read interest or not, its event loop spun all that time."""
    node = start(daemons)
    with writes_held(node):
        s = h.RespConn(node.resp_port)
        value = b"r" * MiB
        # Just over resp-client-buffer-bytes of SETs: the node pauses reading it, and the
        # last one fits in the sockets' buffers, so that sending does not wait for the store.
        s.send(b"".join(h.resp_encode("SET", f"r{i}", value)
                        for i in range(CLIENT_BUFFER // MiB + 1)))
        with node.client() as c:
            h.wait_for(lambda: c.stats()["resp_connections_paused"] == 1, 10,
                       "the node to pause the connection")
            assert c.stats()["inflight_bytes"] > 0
            taken = c.stats()["resp_commands"]  # the SETs the node read before pausing
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # sends a reset
            h.wait_for(lambda: c.stats()["resp_connections"] == 0, 3,
                       "the node to close the reset connection while its writes are held")
            stats = c.stats()
            assert stats["inflight_bytes"] > 0, "the writes were not held"
            assert stats["resp_connections_paused"] == 0, stats["resp_connections_paused"]
    with node.client() as c:
        h.wait_for(lambda: c.stats()["inflight_bytes"] == 0, 60, "the writes to complete")
    # The writes the closed connection submitted completed and are stored.
    with h.RespConn(node.resp_port) as check:
        assert taken > 0
        for i in range(taken):
            assert check.command("GET", f"r{i}") == value, i


def test_clients_that_stop_inside_large_commands_are_evicted_and_the_others_served(daemons):
    """Connections that each send three quarters of a 4 MiB SET and stop hold partial
    commands that together exceed max-inflight-bytes. They are counted in the node's
    bound, the ones holding the most are closed until the node is under it, and another
    client keeps being served."""
    conns, value, part = 12, 4 * MiB, 3 * MiB
    node = start(daemons)
    socks = [h.RespConn(node.resp_port) for _ in range(conns)]
    try:
        for n, s in enumerate(socks):
            s.send(b"*3\r\n$3\r\nSET\r\n$3\r\np%02d\r\n$%d\r\n" % (n, value) + b"p" * part)
        with node.client() as c, h.RespConn(node.resp_port) as good:
            h.wait_for(lambda: c.stats()["resp_clients_evicted"] > 0, 60,
                       "the node to close a connection stopped inside a command")
            for i in range(20):
                good.send(h.resp_encode("SET", f"q{i}", b"%d" % i))
                assert good.reply(timeout=10) == "OK", i
            stats = c.stats()
            evicted = stats["resp_clients_evicted"]
            # 12 x 3 MiB is 36 MiB: closing one or two brings the node under 32 MiB.
            assert 1 <= evicted < conns, evicted
            assert stats["resp_connections"] == 1 + conns - evicted, stats["resp_connections"]
            assert stats["inflight_bytes"] < MAX_INFLIGHT, stats["inflight_bytes"]
            assert stats["resp_held_bytes"] >= (conns - evicted) * part, stats["resp_held_bytes"]
    finally:
        for s in socks:
            s.close()
