"""kill -9 in the middle of a burst of writes: every acknowledged write survives.

Eight client threads (each its own DEALER connection, pipelined) put and delete keys of
their own; each key's history of operations sent and acknowledged is recorded. The
daemon is SIGKILLed while the burst is running, restarted, and every key must hold the
outcome of its last acknowledged operation or of one sent after it (which may or may not
have committed): never an older one, never anything else. Three rounds per sync mode,
so recovery of a data directory that has already been recovered is covered too.
"""

import os
import signal
import threading

import pytest
import zmq

import edgekv_harness as h
from edgekv_harness import pb

THREADS = 8
WINDOW = 8              # pipelined requests in flight per client
KEYS_PER_THREAD = 300   # fewer than the writes per round: keys are overwritten
ACKED_PER_ROUND = 3000
ROUNDS = 3


class History:
    """What one key was sent, in order, and the index of its last acknowledged entry."""

    def __init__(self, initial=None):
        # Entries are values (bytes) or None for a delete; `initial` is the state found
        # after the previous recovery, acknowledged by definition.
        self.sent: list = [initial]
        self.acked = 0

    def allowed(self) -> list:
        return self.sent[self.acked:]


class Writer(threading.Thread):
    """One client: pipelined puts and deletes of its own keys until told to stop."""

    def __init__(self, endpoint, index, round_no, histories, stop):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.index = index
        self.round_no = round_no
        self.histories = histories  # key -> History, this thread's keys only
        self.stop_event = stop
        self.acked = 0
        self.sent = 0
        self.unexpected: list[str] = []
        self.failure = None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e

    def _next_request(self, client):
        n = self.sent
        self.sent += 1
        key = b"w%d:%03d" % (self.index, (n * 7) % KEYS_PER_THREAD)
        history = self.histories.setdefault(key, History())
        if n % 5 == 4:
            req = client.new_request()
            getattr(req, "del").key = key
            history.sent.append(None)
        else:
            value = b"r%d:w%d:n%07d:" % (self.round_no, self.index, n)
            value += b"x" * (1500 if n % 10 == 0 else 20)  # some above compress threshold
            req = client.put_request(key, value)
            history.sent.append(value)
        return req, key, len(history.sent) - 1

    def _run(self):
        client = h.NativeClient(self.endpoint, timeout=2.0)
        in_flight: dict[int, tuple[bytes, int]] = {}
        try:
            while True:
                while not self.stop_event.is_set() and len(in_flight) < WINDOW:
                    req, key, pos = self._next_request(client)
                    in_flight[client.send(req)] = (key, pos)
                if not in_flight:
                    return
                if not client.sock.poll(200, zmq.POLLIN):
                    if self.stop_event.is_set():
                        return  # the node is gone: these stay unacknowledged
                    continue
                resp = client.recv_response()
                key, pos = in_flight.pop(resp.id)
                if resp.code == pb.OK:
                    history = self.histories[key]
                    history.acked = max(history.acked, pos)
                    self.acked += 1
                else:
                    self.unexpected.append(f"{key!r}: {h.code_name(resp.code)} {resp.message}")
        finally:
            client.close()


def _burst_and_kill(node, round_no, histories):
    stop = threading.Event()
    writers = [Writer(node.client_endpoint, i, round_no, histories[i], stop)
               for i in range(THREADS)]
    for w in writers:
        w.start()
    try:
        def acked_so_far():
            for w in writers:
                if w.failure:
                    raise AssertionError(f"writer {w.index} failed: {w.failure!r}")
            return sum(w.acked for w in writers)
        h.wait_for(lambda: acked_so_far() >= ACKED_PER_ROUND, 90,
                   f"{ACKED_PER_ROUND} acknowledged writes")
        # The kill comes in the middle of the burst: right after the node acknowledged
        # another write, while the writers keep their windows of requests in flight.
        seen = acked_so_far()
        h.wait_for(lambda: acked_so_far() > seen, 10, "the node to acknowledge more writes",
                   interval=0.0005)
        os.kill(node.pid, signal.SIGKILL)
        assert node.proc.wait(h.STOP_TIMEOUT) == -signal.SIGKILL
    finally:
        stop.set()
        for w in writers:
            w.join(30)
    for w in writers:
        assert not w.is_alive(), f"writer {w.index} did not stop"
        assert w.failure is None, f"writer {w.index}: {w.failure!r}"
        assert not w.unexpected, w.unexpected[:5]
    return sum(w.acked for w in writers)


def _verify(node, histories, sync):
    """Checks every key against its history; returns histories reset to what was found."""
    keys = [(t, key) for t in range(THREADS) for key in histories[t]]
    with node.client(timeout=30.0) as c:
        got = c.get_many([key for _, key in keys], window=128)
        problems = []
        live = 0
        for t, key in keys:
            resp = got[key]
            if resp.code == pb.OK:
                found = resp.get.value
                live += 1
            elif resp.code == pb.NOT_FOUND:
                found = None
            else:
                problems.append(f"{key!r}: {h.code_name(resp.code)} {resp.message}")
                continue
            history = histories[t][key]
            if found not in history.allowed():
                last = history.sent[history.acked]
                problems.append(
                    f"{key!r}: found {found!r:.40}, but the last acknowledged operation "
                    f"(#{history.acked} of {len(history.sent) - 1}) left {last!r:.40}")
        assert not problems, (f"--sync {sync}: {len(problems)} keys lost acknowledged "
                              f"writes:\n" + "\n".join(problems[:10]))
        assert c.status().status.keys == live
    return [{key: History(got[key].get.value if got[key].code == pb.OK else None)
             for key in histories[t]} for t in range(THREADS)]


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_acknowledged_writes_survive_kill_9(daemons, sync):
    node = daemons.new("node1", args=["--sync", sync, "--partitions", "16"])
    histories = [dict() for _ in range(THREADS)]
    for round_no in range(ROUNDS):
        node.start()
        _burst_and_kill(node, round_no, histories)
        node.start()
        histories = _verify(node, histories, sync)
        assert node.stop() == 0
    # The directory is usable as ever: a clean restart after three crashes.
    node.start()
    with node.client() as c:
        assert c.put(b"after-crashes", b"ok").code == pb.OK
        assert c.get(b"after-crashes").get.value == b"ok"
