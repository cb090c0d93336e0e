"""Bursts of pipelined writes whose every key keeps its history, for crash tests.

Writer threads (each its own DEALER connection, pipelined) put and delete keys of their
own; each key's History records the operations sent, in order, and which of them the node
acknowledged and when. After the node is killed (test_crash_recovery.py) or its power is
cut (test_power_cut.py) and restarted, a test compares what each key holds with its
history. A Workload says what the writes look like, so that each test keeps its own.
"""

import dataclasses
import threading
import time

import zmq

import edgekv_harness as h
from edgekv_harness import pb


class History:
    """What one key was sent, in order, with each acknowledgement's time."""

    def __init__(self, initial=None):
        # Entries are values (bytes) or None for a delete. `initial` is what the previous
        # recovery found: acknowledged by definition, at no particular time.
        self.sent: list = [initial]
        self.acked_at: dict[int, float] = {0: 0.0}
        self.acked = 0  # index of the last acknowledged entry

    def allowed(self) -> list:
        """What the key may hold after a crash: the last acknowledged entry or a later one."""
        return self.sent[self.acked:]

    def found_index(self, value) -> int:
        """The newest entry holding `value`, or -1 if the key was never sent it."""
        for i in range(len(self.sent) - 1, -1, -1):
            if self.sent[i] == value:
                return i
        return -1


class ReadBack:
    """Every key of `histories` (one dict key -> History per writer) read once from the
    node after a recovery, for a test to compare with what the key was sent."""

    def __init__(self, client, histories: list[dict]):
        self.got = client.get_many([key for keys in histories for key in keys], window=128)
        self.problems: list[str] = []  # keys that could not be read; the test adds its own
        self.found: list = []  # (key, History, value held or None) for every key read
        self.live = 0  # keys that hold a value
        for keys in histories:
            for key, history in keys.items():
                resp = self.got[key]
                if resp.code == pb.OK:
                    self.found.append((key, history, resp.get.value))
                    self.live += 1
                elif resp.code == pb.NOT_FOUND:
                    self.found.append((key, history, None))
                else:
                    self.problems.append(f"{key!r}: {h.code_name(resp.code)} {resp.message}")
        self.fresh = [{key: History(self.got[key].get.value
                                    if self.got[key].code == pb.OK else None)
                       for key in keys} for keys in histories]  # to check the next round


@dataclasses.dataclass(frozen=True)
class Workload:
    """The writes one writer sends: its n-th write goes to key
    b"<prefix><writer>:<(n * 7) % keys>"; every `delete_every`-th one is a delete, the
    others put a value naming round, writer and n, padded with `filler` to `small_pad`
    bytes, or to `large_pad` for every tenth write (above the compression threshold)."""

    prefix: bytes
    keys: int           # fewer than the writes per round: keys are overwritten
    delete_every: int
    filler: bytes
    small_pad: int
    large_pad: int
    window: int = 8     # pipelined requests in flight per client


class Writer(threading.Thread):
    """One client: pipelined puts and deletes of its own keys until told to stop."""

    def __init__(self, endpoint, index, round_no, histories, stop, workload: Workload):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.index = index
        self.round_no = round_no
        self.histories = histories  # key -> History, this thread's keys only
        self.stop_event = stop
        self.workload = workload
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
        w = self.workload
        n = self.sent
        self.sent += 1
        key = b"%s%d:%03d" % (w.prefix, self.index, (n * 7) % w.keys)
        history = self.histories.setdefault(key, History())
        if n % w.delete_every == w.delete_every - 1:
            req = client.new_request()
            getattr(req, "del").key = key
            history.sent.append(None)
        else:
            value = b"r%d:%s%d:n%07d:" % (self.round_no, w.prefix, self.index, n)
            value += w.filler * (w.large_pad if n % 10 == 0 else w.small_pad)
            req = client.put_request(key, value)
            history.sent.append(value)
        return req, key, len(history.sent) - 1

    def _run(self):
        client = h.NativeClient(self.endpoint, timeout=2.0)
        in_flight: dict[int, tuple[bytes, int]] = {}
        try:
            while True:
                while not self.stop_event.is_set() and len(in_flight) < self.workload.window:
                    req, key, pos = self._next_request(client)
                    in_flight[client.send(req)] = (key, pos)
                if not in_flight:
                    return
                if not client.sock.poll(200, zmq.POLLIN):
                    if self.stop_event.is_set():
                        return  # the node is gone: these stay unacknowledged
                    continue
                resp = client.recv_response()
                now = time.monotonic()
                key, pos = in_flight.pop(resp.id)
                if resp.code == pb.OK:
                    history = self.histories[key]
                    history.acked_at[pos] = now
                    history.acked = max(history.acked, pos)
                    self.acked += 1
                else:
                    self.unexpected.append(f"{key!r}: {h.code_name(resp.code)} {resp.message}")
        finally:
            client.close()


class Burst:
    """One Writer per entry of `histories` (each a dict key -> History it extends), started
    at once. Call stop() in a finally block, then check() for what went wrong."""

    def __init__(self, endpoint, round_no, histories: list[dict], workload: Workload):
        self.stop_event = threading.Event()
        self.writers = [Writer(endpoint, i, round_no, histories[i], self.stop_event, workload)
                        for i in range(len(histories))]
        for w in self.writers:
            w.start()

    def acked(self) -> int:
        """Writes acknowledged so far; raises if a writer failed."""
        for w in self.writers:
            if w.failure:
                raise AssertionError(f"writer {w.index} failed: {w.failure!r}")
        return sum(w.acked for w in self.writers)

    def sent(self) -> int:
        return sum(w.sent for w in self.writers)

    def stop(self):
        """Tells the writers to stop sending; they return once nothing is in flight or the
        node stops answering."""
        self.stop_event.set()
        for w in self.writers:
            w.join(30)

    def check(self):
        for w in self.writers:
            assert not w.is_alive(), f"writer {w.index} did not stop"
            assert w.failure is None, f"writer {w.index}: {w.failure!r}"
            assert not w.unexpected, w.unexpected[:5]
