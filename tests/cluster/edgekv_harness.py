"""Process-level test harness for edgekv: real edgekvd processes, kvcli runs, a native client.

Environment (set by tests/cluster/CMakeLists.txt):
  EDGEKVD        path of the edgekvd binary
  KVCLI          path of the kvcli binary
  EDGEKV_PB_DIR  directory holding the generated edgekv_pb2.py

Rules the suite follows:
  - every daemon runs in its own pytest tmp_path, on free loopback ports, with an empty
    --config file (a config installed on the machine cannot change results);
  - nothing waits by sleeping: wait_for() polls a condition against a deadline, and
    daemon readiness is READY=1 on a NOTIFY_SOCKET the test binds (sd_notify protocol);
  - every process started here is stopped (or killed, by PID) in a finalizer.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import zmq


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run the cluster tests through ctest (ctest -L cluster) or set "
            "EDGEKVD, KVCLI and EDGEKV_PB_DIR yourself")
    return value


EDGEKVD = _required_env("EDGEKVD")
KVCLI = _required_env("KVCLI")
_PB_DIR = _required_env("EDGEKV_PB_DIR")
if _PB_DIR not in sys.path:
    sys.path.insert(0, _PB_DIR)
import edgekv_pb2 as pb  # noqa: E402  (needs EDGEKV_PB_DIR on sys.path)

# kvcli exit codes (cli/): 0 ok, 1 not found, 2 usage, 3 unavailable/timeout, 4 other.
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_OTHER = 0, 1, 2, 3, 4

# Largest TTL the node accepts (common/limits.h kMaxTtlMs): 100 years of 365 days.
MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000

# How long a daemon may take to become ready or to stop; generous for a loaded CI machine.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# How long one kvcli run may take before the test gives up on it.
KVCLI_TIMEOUT = 30.0


# ---------------------------------------------------------------------------- waiting

def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.005):
    """Polls cond() every `interval` s until it returns a truthy value, which is returned.

    Raises AssertionError naming `what` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        # The interval only paces the polling: the loop ends when cond() holds.
        threading.Event().wait(min(interval, left))


# ---------------------------------------------------------------------------- ports

# Daemons' ports come from below the system's ephemeral range, so that no outgoing
# connection (this test's or a parallel one's) takes the port of a stopped daemon that will
# bind it again when it restarts. Each port is reserved for the life of this process by a
# one-byte lock at its offset in a file every harness process shares: parallel tests never
# pick the same one, and the system drops the locks when the process ends, however it ends.
_PORT_LOCKS = Path(tempfile.gettempdir()) / f"edgekv-test-ports-{os.getuid()}.lock"
_PORTS_FROM = 10000
_port_locks_fd: Optional[int] = None
_reserved_ports: set[int] = set()
_port_rng = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, outside the ephemeral range, and
    reserved for this process: no parallel test is given it while this process runs."""
    global _port_locks_fd
    high = _ephemeral_low()
    if high - _PORTS_FROM < 4096:  # an unusual system: fall back to what the system hands out
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    if _port_locks_fd is None:
        _port_locks_fd = os.open(_PORT_LOCKS, os.O_RDWR | os.O_CREAT, 0o666)
    for _ in range(4096):
        port = _port_rng.randrange(_PORTS_FROM, high)
        if port in _reserved_ports:
            continue
        try:
            fcntl.lockf(_port_locks_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            continue  # a parallel test holds it
        if not _bindable(port):  # something outside the harness listens there
            fcntl.lockf(_port_locks_fd, fcntl.LOCK_UN, 1, port)
            continue
        _reserved_ports.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS_FROM}-{high - 1} after 4096 tries")


def tcp_endpoint(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


class DeadEndpoint:
    """A loopback endpoint where nothing answers: the port is bound but not listening, so
    connections are refused, and no other process (a parallel test's daemon) can take it
    while the context is open."""

    def __enter__(self) -> str:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        return tcp_endpoint(self.sock.getsockname()[1])

    def __exit__(self, *exc):
        self.sock.close()


# ---------------------------------------------------------------------------- sd_notify

def short_socket_path(directory: Path, name: str) -> Path:
    """AF_UNIX paths are limited to 107 bytes: fall back to a short temp dir when needed."""
    path = directory / name
    if len(os.fsencode(str(path))) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="ekv-")) / name


class NotifySocket:
    """The receiving end of the sd_notify protocol: an AF_UNIX datagram socket.

    Every datagram received is kept, in order, as a list of its `NAME=value` lines. A
    thread reads them as they come, as a service manager does: libsystemd's sd_notify
    blocks once the socket's queue is full (net.unix.max_dgram_qlen, often 10), and the
    daemon sends STATUS= every few seconds, so a test that ran for a minute without
    reading them would hang the daemon.
    """

    def __init__(self, directory: Path, name: str = "notify.sock"):
        self.path = short_socket_path(directory, name)
        if self.path.exists():
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[list[str]] = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read_forever, daemon=True,
                                        name=f"notify {name}")
        self._reader.start()

    def _read_available(self) -> int:
        """Keeps every datagram waiting now; the caller holds self._cond."""
        got = 0
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                return got
            self.messages.append(data.decode("utf-8", "replace").split("\n"))
            got += 1

    def _read_forever(self) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
            except (OSError, ValueError):
                return  # closed
            if ready:
                with self._cond:
                    if self._read_available():
                        self._cond.notify_all()

    def drain(self, timeout: float = 0.0) -> None:
        """Takes every datagram available, waiting up to `timeout` s for one if none is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            before = len(self.messages)
            self._read_available()
            while len(self.messages) == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def lines(self) -> list[str]:
        """Every line received so far, in arrival order."""
        self.drain()
        return [line for msg in self.messages for line in msg if line]

    def has(self, line: str) -> bool:
        return line in self.lines()

    def close(self) -> None:
        self._closing.set()
        self._reader.join()
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------- daemon

class DaemonStartError(AssertionError):
    pass


class Daemon:
    """One edgekvd process: its ports, data dir, stderr file and NOTIFY_SOCKET.

    start() waits for READY=1; stop() sends SIGTERM and returns the exit status. The same
    object can be started again (a restart: same data dir, new ports unless `keep_ports`).
    """

    def __init__(self, workdir: Path, name: str = "node1", args: Sequence[str] = (),
                 data_dir: Optional[Path] = None,
                 endpoints: Optional[tuple[str, str]] = None,
                 gossip_port: int = 0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        # The node's id; the name unless a test gives one (e.g. one node id across several
        # Daemon objects that start copies of one data directory).
        self.node_id = name
        self.args = list(args)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / f"{name}-data"
        self.config_path = self.workdir / f"{name}.conf"
        self.config_path.write_text("# empty: the tests pass every option on the command line\n")
        self.notify = NotifySocket(self.workdir, f"{name}.notify")
        self.client_port = 0
        self.feed_port = 0
        self.resp_port = 0
        # Membership: always loopback TCP, so a node with fixed (ipc://) endpoints joins too.
        self.gossip_port = gossip_port
        self.peer_port = 0
        # A gossip port given by the test (e.g. a seed's address known in advance) is kept
        # across starts; otherwise every start without keep_ports picks new ports.
        self.pinned_gossip_port = gossip_port
        # Fixed (client, feed) endpoints, e.g. ipc://; None: free loopback TCP ports.
        self.endpoints = endpoints
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.env: dict[str, str] = {}  # extra environment for the daemon
        self.stderr_paths: list[Path] = []
        self.returncodes: list[int] = []

    # -- addresses

    @property
    def client_endpoint(self) -> str:
        return self.endpoints[0] if self.endpoints else tcp_endpoint(self.client_port)

    @property
    def feed_endpoint(self) -> str:
        return self.endpoints[1] if self.endpoints else tcp_endpoint(self.feed_port)

    @property
    def resp_endpoint(self) -> str:
        # With fixed endpoints (ipc://) the RESP listener is off: it would need a TCP port.
        if self.endpoints:
            return ""
        if not self.resp_port:  # tests that set client/feed ports by hand
            self.resp_port = free_port()
        return tcp_endpoint(self.resp_port)

    @property
    def gossip_endpoint(self) -> str:
        if not self.gossip_port:  # tests that set the other ports by hand, fixed endpoints
            self.gossip_port = free_port()
        return tcp_endpoint(self.gossip_port)

    @property
    def peer_endpoint(self) -> str:
        if not self.peer_port:
            self.peer_port = free_port()
        return tcp_endpoint(self.peer_port)

    def _pick_ports(self) -> None:
        ports: set[int] = set()
        while len(ports) < 5:
            port = free_port()
            # A pinned gossip port is not listened on until the node starts: the system may
            # hand it out again, and two endpoints on one port are refused.
            if port != self.pinned_gossip_port:
                ports.add(port)
        (self.client_port, self.feed_port, self.resp_port, self.gossip_port,
         self.peer_port) = sorted(ports)
        if self.pinned_gossip_port:
            self.gossip_port = self.pinned_gossip_port

    @property
    def stderr_path(self) -> Path:
        return self.stderr_paths[-1]

    def stderr_text(self) -> str:
        if not self.stderr_paths:
            return ""
        return self.stderr_path.read_text("utf-8", "replace")

    def all_stderr(self) -> str:
        parts = []
        for i, path in enumerate(self.stderr_paths):
            text = path.read_text("utf-8", "replace") if path.exists() else "(missing)"
            parts.append(f"--- run {i + 1}: {path}\n{text}")
        return "\n".join(parts)

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        return [
            EDGEKVD,
            "--config", str(self.config_path),
            "--node-id", self.node_id,
            "--data-dir", str(self.data_dir),
            "--client-endpoint", self.client_endpoint,
            "--feed-endpoint", self.feed_endpoint,
            "--resp-endpoint", self.resp_endpoint,
            "--gossip-endpoint", self.gossip_endpoint,
            "--peer-endpoint", self.peer_endpoint,
            *self.args,
            *extra,
        ]

    # -- life cycle

    def _spawn(self, extra: Sequence[str]) -> subprocess.Popen:
        self.starts += 1
        path = self.workdir / f"{self.name}.stderr.{self.starts}.log"
        self.stderr_paths.append(path)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        env.update(self.env)
        with open(path, "wb") as err:
            return subprocess.Popen(self.command(extra), stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, env=env,
                                    cwd=str(self.workdir))

    def start(self, extra: Sequence[str] = (), keep_ports: bool = False,
              timeout: float = START_TIMEOUT) -> "Daemon":
        """Starts edgekvd and waits for READY=1; retries on a port collision."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        attempts = 1 if keep_ports or self.endpoints else 4
        for attempt in range(attempts):
            if not self.endpoints and (not keep_ports or not self.client_port):
                self._pick_ports()
            self.notify.drain()
            ready_before = len(self.notify.messages)
            self.proc = self._spawn(extra)

            def ready_or_exited():
                self.notify.drain()
                if any("READY=1" in m for m in self.notify.messages[ready_before:]):
                    return "ready"
                if self.proc.poll() is not None:
                    return "exited"
                return None

            try:
                state = wait_for(ready_or_exited, timeout, f"edgekvd {self.name} READY=1")
            except AssertionError:
                self.kill()
                raise DaemonStartError(
                    f"edgekvd {self.name} did not send READY=1 within {timeout} s\n"
                    f"command: {' '.join(self.command(extra))}\nstderr:\n{self.stderr_text()}")
            if state == "ready":
                return self
            rc = self.proc.returncode
            self.returncodes.append(rc)
            text = self.stderr_text()
            collision = "already in use" in text or "cannot bind" in text
            if collision and attempt + 1 < attempts:
                continue
            raise DaemonStartError(
                f"edgekvd {self.name} exited with {rc} before READY=1\n"
                f"command: {' '.join(self.command(extra))}\nstderr:\n{text}")
        raise AssertionError("unreachable")

    def run_to_exit(self, extra: Sequence[str] = (), timeout: float = START_TIMEOUT):
        """Runs edgekvd expecting it to exit by itself (bad configuration): (rc, stderr)."""
        if not self.client_port and not self.endpoints:
            self._pick_ports()
        self.proc = self._spawn(extra)
        rc = self._wait_exit(timeout, f"was expected to exit by itself but ran {timeout} s")
        return rc, self.stderr_text()

    def _wait_exit(self, timeout: float, failure: str) -> int:
        """Waits for the process to exit and records its status; kills it and fails with
        `failure` if it is still running after `timeout` seconds."""
        # Reads the notifications meanwhile, as a service manager does: sd_notify blocks
        # while the receiving socket's queue is full (net.unix.max_dgram_qlen, often 10).
        deadline = time.monotonic() + timeout
        while True:
            self.notify.drain()
            try:
                rc = self.proc.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self.kill()
                    raise AssertionError(
                        f"edgekvd {self.name} {failure}\nstderr:\n{self.stderr_text()}")
        self.returncodes.append(rc)
        return rc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Sends `sig` and waits for the exit; returns the exit status."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self._wait_exit(timeout, f"did not exit within {timeout} s of signal {sig}")

    def kill(self) -> None:
        """SIGKILL by PID (no-op when the process already exited) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(STOP_TIMEOUT)

    def client(self, **kwargs) -> "NativeClient":
        return NativeClient(self.client_endpoint, **kwargs)

    def close(self) -> None:
        self.notify.close()


# ---------------------------------------------------------------------------- native client

_ZMQ_CONTEXT: Optional[zmq.Context] = None
_ZMQ_LOCK = threading.Lock()


def zmq_context() -> zmq.Context:
    global _ZMQ_CONTEXT
    with _ZMQ_LOCK:
        if _ZMQ_CONTEXT is None:
            _ZMQ_CONTEXT = zmq.Context()
        return _ZMQ_CONTEXT


class NoReply(AssertionError):
    pass


class NativeClient:
    """A DEALER (or REQ) socket speaking docs/protocol.md directly with edgekv_pb2.

    One thread at a time. Ids start at 1 and are never reused; replies are matched by id
    (replies to earlier requests that were never collected are kept for later).
    """

    def __init__(self, endpoint: str, timeout: float = 10.0, socket_type: int = zmq.DEALER):
        self.endpoint = endpoint
        self.timeout = timeout
        self.socket_type = socket_type
        self.sock = zmq_context().socket(socket_type)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A send blocks while the socket has no way to the node (e.g. no reconnection):
        # bounded like a reply, so such a test fails instead of hanging.
        self.sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.sock.connect(endpoint)
        self.next_id = 1
        self.unclaimed: dict[int, "pb.Response"] = {}

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw frames

    def send_frames(self, frames: Sequence[bytes]) -> None:
        try:
            self.sock.send_multipart(list(frames))
        except zmq.Again:
            raise NoReply(f"could not send to {self.endpoint} within {self.timeout} s") from None

    def recv_frames(self, timeout: Optional[float] = None) -> list[bytes]:
        timeout = self.timeout if timeout is None else timeout
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise NoReply(f"no reply from {self.endpoint} within {timeout} s")
        return self.sock.recv_multipart()

    def recv_response(self, timeout: Optional[float] = None) -> "pb.Response":
        frames = self.recv_frames(timeout)
        assert len(frames) == 1, f"expected one reply frame, got {len(frames)}: {frames!r}"
        resp = pb.Response()
        resp.ParseFromString(frames[0])
        return resp

    # -- requests

    def new_request(self) -> "pb.Request":
        req = pb.Request(id=self.next_id)
        self.next_id += 1
        return req

    def send(self, req: "pb.Request") -> int:
        self.send_frames([req.SerializeToString()])
        return req.id

    def wait(self, req_id: int, timeout: Optional[float] = None) -> "pb.Response":
        """The reply to request `req_id`, keeping replies to other ids for later."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while req_id not in self.unclaimed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoReply(f"no reply to request {req_id} from {self.endpoint} "
                              f"within {timeout} s")
            resp = self.recv_response(left)
            self.unclaimed[resp.id] = resp
        return self.unclaimed.pop(req_id)

    def call(self, req: "pb.Request", timeout: Optional[float] = None) -> "pb.Response":
        return self.wait(self.send(req), timeout)

    def put_request(self, key: bytes, value: bytes, ttl_ms: int = 0) -> "pb.Request":
        req = self.new_request()
        req.put.key = key
        req.put.value = value
        req.put.ttl_ms = ttl_ms
        return req

    def put(self, key: bytes, value: bytes, ttl_ms: int = 0) -> "pb.Response":
        return self.call(self.put_request(key, value, ttl_ms))

    def get_request(self, key: bytes) -> "pb.Request":
        req = self.new_request()
        req.get.key = key
        return req

    def get(self, key: bytes) -> "pb.Response":
        return self.call(self.get_request(key))

    def delete(self, key: bytes) -> "pb.Response":
        req = self.new_request()
        getattr(req, "del").key = key  # `del` is a Python keyword
        return self.call(req)

    def status(self) -> "pb.Response":
        req = self.new_request()
        req.status.SetInParent()
        return self.call(req)

    def changes(self, partition: int, from_seq: int, max_events: int = 0) -> "pb.Response":
        req = self.new_request()
        req.changes.partition = partition
        req.changes.from_seq = from_seq
        req.changes.max_events = max_events
        return self.call(req)

    def change_log(self, partition: int) -> list:
        """Every change-log entry of `partition` the node still keeps, oldest first."""
        events, seq = [], 0
        while True:
            resp = self.changes(partition, seq + 1)
            assert resp.code == pb.OK, f"changes: {code_name(resp.code)} {resp.message}"
            if not resp.changes.events:
                return events
            events.extend(resp.changes.events)
            seq = events[-1].seq

    def members(self) -> dict[str, "pb.Member"]:
        """The node's membership view: node id -> pb.Member."""
        req = self.new_request()
        req.members.SetInParent()
        resp = self.call(req)
        assert resp.code == pb.OK, f"members failed: {code_name(resp.code)} {resp.message}"
        return {m.node_id: m for m in resp.members.members}

    def stats(self) -> dict[str, int]:
        req = self.new_request()
        req.stats.SetInParent()
        resp = self.call(req)
        assert resp.code == pb.OK, f"stats failed: {code_name(resp.code)} {resp.message}"
        return {s.name: s.value for s in resp.stats.stats}

    def put_many(self, items: Iterable[tuple[bytes, bytes]], window: int = 64) -> None:
        """Pipelined puts (at most `window` in flight); every one must answer OK."""
        in_flight: dict[int, bytes] = {}
        for key, value in items:
            in_flight[self.send(self.put_request(key, value))] = key
            if len(in_flight) >= window:
                self._reap_put(in_flight)
        while in_flight:
            self._reap_put(in_flight)

    def _reap_put(self, in_flight: dict[int, bytes]) -> None:
        resp = self.recv_response()
        key = in_flight.pop(resp.id)
        assert resp.code == pb.OK, f"put {key!r}: {code_name(resp.code)} {resp.message}"

    def get_many(self, keys: Sequence[bytes], window: int = 64) -> dict[bytes, "pb.Response"]:
        """Pipelined gets: key -> Response."""
        out: dict[bytes, pb.Response] = {}
        in_flight: dict[int, bytes] = {}
        pending = list(keys)
        while pending or in_flight:
            while pending and len(in_flight) < window:
                key = pending.pop()
                in_flight[self.send(self.get_request(key))] = key
            resp = self.recv_response()
            out[in_flight.pop(resp.id)] = resp
        return out


class FeedSubscriber:
    """A native SUB socket on a node's change feed: [key][ChangeEvent] messages."""

    def __init__(self, endpoint: str, prefix: bytes = b""):
        self.sock = zmq_context().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.sock.connect(endpoint)
        self.events: list = []

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def drain(self, timeout: float = 0.0) -> None:
        """Reads every message available, waiting up to `timeout` s for the first one."""
        wait_ms = int(timeout * 1000)
        while self.sock.poll(wait_ms, zmq.POLLIN):
            frames = self.sock.recv_multipart()
            assert len(frames) == 2, f"feed message of {len(frames)} frames: {frames!r}"
            event = pb.ChangeEvent()
            event.ParseFromString(frames[1])
            assert frames[0] == event.key, (frames[0], event)
            self.events.append(event)
            wait_ms = 0

    def wait_event(self, pred, timeout: float, what: str):
        def find():
            self.drain(0.005)
            for event in self.events:
                if pred(event):
                    return event
            return None
        return wait_for(find, timeout, what)

    def sync(self, client: "NativeClient", marker_key: bytes, timeout: float = 15.0) -> None:
        """Writes `marker_key` until its event arrives (beats the slow joiner)."""
        deadline = time.monotonic() + timeout
        while True:
            assert client.put(marker_key, b"marker").code == pb.OK
            try:
                self.wait_event(lambda e: e.key == marker_key, 0.1, "the marker")
                return
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise


def code_name(code: int) -> str:
    return pb.Code.Name(code)


# ---------------------------------------------------------------------------- membership

# Set by tests/cluster/CMakeLists.txt for sanitizer builds, which run several times slower.
SANITIZED = bool(os.environ.get("EDGEKV_SANITIZE"))
# Timing bounds in the membership tests are derived from the gossip settings the nodes
# report, multiplied by this: a loaded 2-core CI machine runs five daemons and the tests.
TIMING_SLACK = 4.0 if SANITIZED else 2.0

MEMBER_STATE = {pb.MEMBER_ALIVE: "alive", pb.MEMBER_SUSPECT: "suspect",
                pb.MEMBER_DEAD: "dead", pb.MEMBER_LEFT: "left"}


def state_name(member: "pb.Member") -> str:
    return MEMBER_STATE.get(member.state, f"unknown({member.state})")


class ClusterView:
    """One native client per daemon, for polling membership views quickly."""

    def __init__(self, daemons: Iterable[Daemon]):
        self.daemons = list(daemons)
        self.clients: dict[str, NativeClient] = {}

    def client(self, daemon: Daemon) -> NativeClient:
        c = self.clients.get(daemon.name)
        if c is None or c.endpoint != daemon.client_endpoint:
            if c is not None:
                c.close()
            c = daemon.client(timeout=5.0)
            self.clients[daemon.name] = c
        return c

    def views(self, among: Optional[Iterable[Daemon]] = None) -> dict[str, dict[str, "pb.Member"]]:
        """Each running daemon's view: observer name -> (member id -> pb.Member)."""
        out = {}
        for daemon in (among if among is not None else self.daemons):
            if daemon.running():
                out[daemon.name] = self.client(daemon).members()
        return out

    def states(self, among: Optional[Iterable[Daemon]] = None) -> dict[str, dict[str, str]]:
        return {observer: {mid: state_name(m) for mid, m in view.items()}
                for observer, view in self.views(among).items()}

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()


def ring(client: NativeClient) -> "pb.RingResponse":
    """The node's placement table (the `ring` request)."""
    req = client.new_request()
    req.ring.SetInParent()
    resp = client.call(req)
    assert resp.code == pb.OK, resp.message
    return resp.ring


def wait_agreed(view: ClusterView, nodes: Sequence[Daemon], timeout: float = 30.0):
    """Waits until every node is alive in every node's view and all hold one placement
    listing all of them; returns that placement."""
    names = sorted(n.name for n in nodes)

    def agreed():
        states = view.states(nodes)
        for n in nodes:
            if any(states.get(n.name, {}).get(m) != "alive" for m in names):
                return None
        rings = [ring(view.client(n)) for n in nodes]
        if any(list(r.members) != names for r in rings):
            return None
        if len({(r.epoch, r.digest) for r in rings}) != 1:
            return None
        return rings[0]
    return wait_for(agreed, timeout, "membership and placement agreed", interval=0.05)


# ---------------------------------------------------------------------------- kvcli

def kvcli_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env.pop("EDGEKV_ENDPOINT", None)
    if extra:
        env.update(extra)
    return env


def kvcli(*args: str, endpoint: Optional[str] = None, input: Optional[bytes] = None,
          env: Optional[dict] = None, timeout: float = KVCLI_TIMEOUT,
          global_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Runs kvcli [--endpoint E] GLOBAL_ARGS ARGS; stdout/stderr are bytes."""
    cmd = [KVCLI]
    if endpoint is not None:
        cmd += ["--endpoint", endpoint]
    cmd += list(global_args)
    cmd += list(args)
    return subprocess.run(cmd, input=input if input is not None else b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=kvcli_env(env), timeout=timeout)


def describe(result: subprocess.CompletedProcess) -> str:
    """For assertion messages: the command, its status and output."""
    out = result.stdout if len(result.stdout) < 2000 else result.stdout[:2000] + b"..."
    return (f"{' '.join(map(str, result.args))} -> exit {result.returncode}\n"
            f"stdout: {out!r}\nstderr: {result.stderr!r}")


class Watch:
    """A running `kvcli watch`: a thread collects its stdout lines as they arrive."""

    def __init__(self, endpoint: str, args: Sequence[str], workdir: Path,
                 global_args: Sequence[str] = (), name: str = "watch"):
        self.stderr_path = Path(workdir) / f"kvcli-{name}.stderr.log"
        self.cmd = [KVCLI, "--endpoint", endpoint, *global_args, "watch", *args]
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, env=kvcli_env())
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line.rstrip(b"\n"))

    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self._lines)

    def text_lines(self) -> list[str]:
        return [line.decode("utf-8", "replace") for line in self.lines()]

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    def stderr_text(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace") if self.stderr_path.exists() else ""

    def wait_line(self, pred: Callable[[bytes], bool], timeout: float, what: str) -> bytes:
        def find():
            for line in self.lines():
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kvcli watch exited with {self.proc.returncode} while waiting for {what}\n"
                    f"stdout: {self.lines()!r}\nstderr: {self.stderr_text()}")
            return None
        return wait_for(find, timeout, f"{what} (watch printed {self.lines()!r})")

    def sync(self, client: "NativeClient", marker_key: bytes, timeout: float = 15.0) -> None:
        """Beats the ZeroMQ slow joiner: writes `marker_key` until watch prints it.

        After this returns, every change committed later reaches the watcher.
        """
        deadline = time.monotonic() + timeout
        n = 0
        while True:
            n += 1
            resp = client.put(marker_key, b"marker-%d" % n)
            if resp.code in (pb.TIMEOUT, pb.UNAVAILABLE) and time.monotonic() < deadline:
                # A node that just joined or came back, whose peers' connections to it are
                # not up yet: the marker is written again (extra marker events are fine).
                continue
            assert resp.code == pb.OK, f"marker put: {code_name(resp.code)} {resp.message}"
            try:
                self.wait_line(lambda line: marker_key in line, 0.1, "the marker key")
                return
            except AssertionError:
                if self.proc.poll() is not None or time.monotonic() >= deadline:
                    raise

    def stop(self) -> Optional[int]:
        """Ends the watch process (SIGTERM by PID, then SIGKILL); returns its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(10)
        self._err.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------- RESP (Redis protocol)

REDIS_CLI = "/usr/bin/redis-cli"
# How long one RESP reply or one redis-cli run may take before the test gives up on it.
RESP_TIMEOUT = 15.0


class RespError(str):
    """An error reply ("-ERR ..."), as its text without the leading '-'."""


def resp_encode(*args) -> bytes:
    """A command as Redis clients send it: an array of bulk strings (str or bytes or int)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _NeedMore(Exception):
    pass


def _parse_reply(buf: bytes, pos: int):
    """(value, next position) of the RESP2 reply at buf[pos:]; raises _NeedMore."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _NeedMore
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    nxt = end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), nxt
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            raise _NeedMore
        assert buf[nxt + n:nxt + n + 2] == b"\r\n", f"bulk not ended by CRLF: {buf[pos:pos + 80]!r}"
        return buf[nxt:nxt + n], nxt + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, nxt
        items = []
        for _ in range(n):
            item, nxt = _parse_reply(buf, nxt)
            items.append(item)
        return items, nxt
    raise AssertionError(f"not a RESP2 reply: {buf[pos:pos + 80]!r}")


class RespConn:
    """A raw TCP connection to a RESP listener: send any bytes, read parsed replies.

    Replies: str (simple string), RespError, int, bytes (bulk), None (nil), list (array).
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = RESP_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.pos = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, *args):
        """Sends one multibulk command and returns its reply."""
        self.send(resp_encode(*args))
        return self.reply()

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False when the peer closed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete RESP reply within {self.timeout} s; "
                                 f"have {self.buf[self.pos:self.pos + 200]!r}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"no complete RESP reply within {self.timeout} s; "
                                 f"have {self.buf[self.pos:self.pos + 200]!r}") from None
        if not data:
            return False
        if self.pos > (1 << 20):
            self.buf, self.pos = self.buf[self.pos:], 0
        self.buf += data
        return True

    def reply(self, timeout: Optional[float] = None):
        """The next reply; AssertionError when none comes in time or the peer closes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                value, self.pos = _parse_reply(self.buf, self.pos)
                return value
            except _NeedMore:
                pass
            if not self._fill(deadline):
                raise AssertionError(f"connection closed before a complete reply; "
                                     f"have {self.buf[self.pos:self.pos + 200]!r}")

    def replies(self, count: int, timeout: Optional[float] = None) -> list:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return [self.reply(max(deadline - time.monotonic(), 0.001)) for _ in range(count)]

    def pending_bytes(self) -> bytes:
        return self.buf[self.pos:]

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` s (any unread
        bytes are kept); False when it stays open that long."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._fill(deadline):
                    return True
            except AssertionError:
                return False
            except ConnectionResetError:
                return True


def redis_cli(port: int, *args: str, input: Optional[bytes] = None,
              options: Sequence[str] = (), timeout: float = RESP_TIMEOUT
              ) -> subprocess.CompletedProcess:
    """Runs redis-cli -h 127.0.0.1 -p PORT OPTIONS ARGS; stdout/stderr are bytes."""
    cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *options, *args]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    env["REDISCLI_HISTFILE"] = "/dev/null"
    env["REDISCLI_RCFILE"] = "/dev/null"
    return subprocess.run(cmd, input=input if input is not None else b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=timeout)


def redis_client(daemon: "Daemon", **kwargs):
    """A redis-py client (python3-redis) on the daemon's RESP listener."""
    import redis  # python3-redis; imported here so the other tests do not need it
    kwargs.setdefault("socket_timeout", RESP_TIMEOUT)
    kwargs.setdefault("socket_connect_timeout", RESP_TIMEOUT)
    return redis.Redis(host="127.0.0.1", port=daemon.resp_port, **kwargs)


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports (IPv4 and IPv6) process `pid` is listening on, from /proc."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def process_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of process `pid`, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out
