#!/usr/bin/python3
"""edgekv side by side with Redis, on this machine, in one run (`make bench`).

For every case, fresh servers are started on free loopback ports with their data in a
temporary directory on the build directory's disk: one edgekvd (A) and one redis-server
(B). Both get the same key space preloaded; then the case's measurements alternate A and
B (A B A B A B with three repetitions), so slow drifts of a noisy machine hit both alike.
Throughput is measured with redis-benchmark over RESP for both servers, and for edgekv
also with bench/edgekv_load over its native ZeroMQ protocol (the same shape, run in the
same alternation, reported as a ratio to the Redis figure of that shape). The report is a
table of medians, ratios edgekv/Redis and the raw figures, printed as text and as
markdown (also written to BUILD/bench/bench-results.md, for docs/performance.md).

Run it through bench/run.sh (which installs redis-server and redis-tools if missing) with
Debian's /usr/bin/python3; the standard library is all it needs. `--help` lists options.
Every server started here is stopped when the script ends, however it ends (and, through
PR_SET_PDEATHSIG, if the script is killed outright).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import dataclasses
import datetime
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent

START_TIMEOUT = 30.0   # s for a server to accept requests
STOP_TIMEOUT = 60.0    # s for a server to exit after SIGTERM (edgekvd flushes its store)
CLIENTS = 50


class BenchError(Exception):
    """A failure with a message meant for the person running the bench."""


class ServerDied(BenchError):
    """A server under test exited: the rest of its case cannot run."""


# ------------------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this script dies, so no server outlives it."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Runs a client program; raises BenchError naming `what` if it fails or hangs."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: no result after {timeout:.0f} s (command: {' '.join(cmd)})") from e
    except OSError as e:
        raise BenchError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip())[-800:]
        raise BenchError(f"{what}: {Path(cmd[0]).name} exited with {p.returncode}: {tail}")
    return p


def dir_bytes(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, apparent bytes) of every file under path."""
    disk = apparent = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            disk += st.st_blocks * 512
            apparent += st.st_size
    return disk, apparent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for pid {pid}")


def vm_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


# ------------------------------------------------------------------------------ RESP

class RespError(Exception):
    pass


class Resp:
    """A minimal blocking RESP2 client: enough to ping, preload, check and read INFO."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RespError("connection closed by the server")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RespError(f"unexpected reply line {line[:80]!r}")

    def command(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def set_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """Pipelined SETs; every reply must be +OK."""
        self.sock.sendall(b"".join(self.encode(b"SET", k, v) for k, v in items))
        expect = b"+OK\r\n" * len(items)
        got = self._exact(len(expect))
        if got != expect:  # parse the replies one by one to report the first error whole
            self.buf = got + self.buf
            for key, value in items:
                try:
                    answer = self.reply()
                except RespError as e:
                    answer = f"-{e}"
                if answer != "OK":
                    raise RespError(f"SET {key[:40].decode(errors='replace')} "
                                    f"<{len(value)} bytes> answered {answer!r}")


def wait_resp_ping(port: int, deadline: float, alive: Callable[[], None]) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        alive()
        try:
            with Resp(port, timeout=2) as r:
                if r.command("PING") == "PONG":
                    return
        except (OSError, RespError) as e:
            last = str(e)
        time.sleep(0.02)
    raise BenchError(f"no PONG on 127.0.0.1:{port} within {START_TIMEOUT:.0f} s ({last})")


class TextValues:
    """Values that compress like ordinary text (as edgekv_load's do): windows of one random
    buffer over the alphabet a-z0-9 and space, a different window for each key."""

    ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "

    def __init__(self, size: int, seed: int = 0x5eed):
        rng = random.Random(seed)
        self.size = size
        self.buf = "".join(rng.choices(self.ALPHABET, k=max(1 << 20, 4 * size))).encode()

    def get(self, i: int) -> bytes:
        off = (i * 7919) % (len(self.buf) - self.size)
        return self.buf[off:off + self.size]


def resp_preload(port: int, keys: int, key_fmt: str, values: TextValues) -> None:
    batch = max(16, min(1000, (1 << 20) // (values.size + 64)))
    with Resp(port, timeout=120) as r:
        for start in range(0, keys, batch):
            end = min(keys, start + batch)
            r.set_many([((key_fmt % i).encode(), values.get(i)) for i in range(start, end)])


def resp_check_values(port: int, key_fmt: str, keys: int, size: int, who: str) -> None:
    """A few preloaded keys must read back with the right length (so GETs hit)."""
    with Resp(port) as r:
        for i in (0, keys // 2, keys - 1):
            v = r.command("GET", key_fmt % i)
            if v is None or len(v) != size:
                got = "nil" if v is None else f"{len(v)} bytes"
                raise BenchError(f"{who}: GET {key_fmt % i} after preload gave {got}, "
                                 f"expected {size} bytes")


# ------------------------------------------------------------------------------ servers

class Server:
    name = "server"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "server.log"

    def _spawn(self, cmd: list[str], env: Optional[dict] = None) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_die_with_parent)

    def log_tail(self, n: int = 8) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n    ".join(lines[-n:])

    def check_alive(self) -> None:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        rc = self.proc.poll()
        if rc is not None:
            raise ServerDied(f"{self.name} exited with status {rc}; its log ends:\n    "
                             f"{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL if it does not exit in time (and say so)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.log.close()
                raise BenchError(f"{self.name} did not exit within {STOP_TIMEOUT:.0f} s of "
                                 "SIGTERM; killed it")
        self.log.close()

    def kill(self) -> None:
        """For cleanup after a failure: stop politely if possible, never raise."""
        try:
            self.stop()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            print(f"bench: while stopping {self.name}: {e}", file=sys.stderr)


class Edgekvd(Server):
    name = "edgekvd"

    # resp: wait for and use the RESP listener. has_resp_option: edgekvd has
    # --resp-endpoint (on by default there, so it always gets a free port of its own).
    # more_endpoints: other endpoint options of this edgekvd (gossip, peer) that bind by
    # default, so each gets a free port too.
    def __init__(self, workdir: Path, binary: Path, sync: str, resp: bool,
                 has_resp_option: bool, more_endpoints: Sequence[str] = ()):
        super().__init__(workdir)
        self.more_endpoints = list(more_endpoints)
        self.binary = binary
        self.sync = sync
        self.resp = resp
        self.has_resp_option = has_resp_option
        self.data_dir = workdir / "data"
        self.config = workdir / "empty.conf"
        self.config.write_text("# empty: bench/compare.py passes every option as a flag\n")
        self.client_port = self.feed_port = self.resp_port = 0

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        last = ""
        for _ in range(3):  # a free port can be taken between choosing and binding it
            self.client_port, self.feed_port, self.resp_port = free_port(), free_port(), free_port()
            cmd = [str(self.binary), "--config", str(self.config), "--node-id", "bench",
                   "--data-dir", str(self.data_dir), "--client-endpoint", self.endpoint,
                   "--feed-endpoint", f"tcp://127.0.0.1:{self.feed_port}", "--sync", self.sync]
            if self.has_resp_option:
                cmd += ["--resp-endpoint", f"tcp://127.0.0.1:{self.resp_port}"]
            for option in self.more_endpoints:
                cmd += [option, f"tcp://127.0.0.1:{free_port()}"]
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = f"edgekv-bench-{os.getpid()}-{time.monotonic_ns()}"
            notify.bind("\0" + name)  # abstract address: no path length limit, no file
            try:
                env = dict(os.environ, NOTIFY_SOCKET="@" + name)
                self._spawn(cmd, env)
                deadline = time.monotonic() + START_TIMEOUT
                ready = False
                while time.monotonic() < deadline and not ready:
                    if self.proc.poll() is not None:
                        break
                    notify.settimeout(0.05)
                    try:
                        ready = b"READY=1" in notify.recv(65536)
                    except socket.timeout:
                        pass
            finally:
                notify.close()
            if ready:
                if self.resp:
                    wait_resp_ping(self.resp_port, deadline, self.check_alive)
                return
            if self.proc.poll() is None:
                self.kill()
                raise BenchError(f"edgekvd did not become ready within {START_TIMEOUT:.0f} s; "
                                 f"its log ends:\n    {self.log_tail()}")
            last = self.log_tail()
            self.proc = None
            self.log.close()
            if "in use" not in last:
                break
        raise BenchError(f"edgekvd failed to start; its log ends:\n    {last}")


class Redis(Server):
    name = "redis-server"

    # persistence: "none" (a cache), "everysec" or "always" (AOF with that fsync policy)
    def __init__(self, workdir: Path, persistence: str):
        super().__init__(workdir)
        self.persistence = persistence
        self.port = 0

    def start(self) -> None:
        last = ""
        for _ in range(3):
            self.port = free_port()
            conf = self.workdir / "redis.conf"
            lines = [
                "bind 127.0.0.1", f"port {self.port}", "protected-mode yes",
                "daemonize no", "supervised no", f'dir "{self.workdir}"',
                f'logfile "{self.log_path}"', 'save ""', "dbfilename dump.rdb",
            ]
            if self.persistence == "none":
                lines += ["appendonly no"]
            else:
                lines += ["appendonly yes", f"appendfsync {self.persistence}",
                          "appenddirname appendonlydir"]
            conf.write_text("\n".join(lines) + "\n")
            self._spawn(["redis-server", str(conf)])
            try:
                wait_resp_ping(self.port, time.monotonic() + START_TIMEOUT, self.check_alive)
                return
            except BenchError as e:
                last = str(e)
                self.kill()
                if "in use" not in last:
                    break
        raise BenchError(f"redis-server failed to start: {last}")

    def info_memory(self) -> dict[str, str]:
        with Resp(self.port) as r:
            text = r.command("INFO", "memory").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# ------------------------------------------------------------------------------ load tools

@dataclasses.dataclass
class Tools:
    edgekvd: Path
    edgekv_load: Path
    redis_benchmark: str = "redis-benchmark"


def redis_benchmark(tools: Tools, port: int, test: str, n: int, clients: int, pipeline: int,
                    keyspace: int, value_bytes: int, timeout: float) -> float:
    """ops/s of one redis-benchmark run of `test` (get or set)."""
    cmd = [tools.redis_benchmark, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(n), "-r", str(keyspace), "-d", str(value_bytes), "-P", str(pipeline),
           "-t", test, "--csv"]
    p = run(cmd, timeout, f"redis-benchmark -t {test} on port {port}")
    for line in p.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0] == test.upper():
            if cells[1] == "inf":
                return float("inf")
            return float(cells[1])
    raise BenchError(f"redis-benchmark -t {test}: no {test.upper()} line in its output:\n"
                     f"{p.stdout[-500:]}{p.stderr[-500:]}")


def edgekv_load(tools: Tools, endpoint: str, *, clients: int, pipeline: int, get_ratio: float,
                value_bytes: int, keys: int, seconds: float, preload: bool = False) -> dict:
    cmd = [str(tools.edgekv_load), "--endpoint", endpoint, "--clients", str(clients),
           "--pipeline", str(pipeline), "--get-ratio", str(get_ratio),
           "--value-bytes", str(value_bytes), "--keys", str(keys), "--seconds", str(seconds),
           "--json"]
    if preload:
        cmd.append("--preload")
    timeout = seconds * 10 + (600 if preload else 60)
    p = run(cmd, timeout, "edgekv_load" + (" --preload" if preload else ""))
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise BenchError(f"edgekv_load: unreadable output: {p.stdout[-300:]!r}") from e
    if out.get("errors"):
        raise BenchError(f"edgekv_load: {out['errors']} errors: {p.stderr.strip()[-300:]}")
    if get_ratio == 1 and not preload and out.get("not_found"):
        raise BenchError(f"edgekv_load: {out['not_found']} GETs found no key after preload")
    return out


# ------------------------------------------------------------------------------ results

@dataclasses.dataclass
class Row:
    id: str
    shape: str
    unit: str = "ops/s"            # ops/s, MiB or B/key
    goal: Optional[float] = None   # least ratio edgekv/Redis aimed for
    a: list[float] = dataclasses.field(default_factory=list)   # edgekv figures
    b: list[float] = dataclasses.field(default_factory=list)   # Redis figures
    a_cpu: list[float] = dataclasses.field(default_factory=list)  # server CPU us/op
    b_cpu: list[float] = dataclasses.field(default_factory=list)
    a_note: str = ""               # why A has no figure (e.g. no RESP listener)
    error: str = ""                # the whole row failed (e.g. a server did not start)
    failed: dict = dataclasses.field(default_factory=dict)  # side ("a"/"b") -> why
    b_from: str = ""               # the row whose Redis figures this row reuses

    def ratio(self) -> Optional[float]:
        if not self.a or not self.b or self.failed or self.error:
            return None
        mb = statistics.median(self.b)
        return statistics.median(self.a) / mb if mb else None


def fmt_value(v: float, unit: str) -> str:
    if v == float("inf"):
        return "inf"
    if unit == "ops/s":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    if unit == "B/key":
        return f"{v:.0f} B"
    return f"{v:g}"


def row_cells(r: Row) -> list[str]:
    med = lambda xs: fmt_value(statistics.median(xs), r.unit) if xs else ""  # noqa: E731
    raw = lambda xs: " ".join(fmt_value(x, r.unit) for x in xs)  # noqa: E731
    a = "FAILED" if r.error or "a" in r.failed else (med(r.a) or r.a_note or "-")
    b = "FAILED" if r.error or "b" in r.failed else (med(r.b) or "-")
    ratio = r.ratio()
    rs = f"{ratio:.2f}" if ratio is not None else "-"
    goal = ""
    if r.goal is not None:
        goal = f">= {r.goal:g}"
        if ratio is not None:
            goal += " met" if ratio >= r.goal else " MISSED"
    b_raw = raw(r.b) + (f" (= {r.b_from})" if r.b_from and r.b else "")
    return [r.id, r.shape, a, b, rs, goal, raw(r.a), b_raw]


HEADERS = ["case", "shape", "edgekv", "Redis", "edgekv/Redis", "goal", "edgekv runs",
           "Redis runs"]


def text_cells(headers: list[str], body: list[list[str]]) -> str:
    """A plain-text table: columns padded to their widest cell, a rule under the header."""
    cells = [headers] + body
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    out = []
    for i, c in enumerate(cells):
        out.append("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def text_table(rows: list[Row]) -> str:
    return text_cells(HEADERS, [row_cells(r) for r in rows])


def markdown_table(rows: list[Row]) -> str:
    return markdown_cells(HEADERS, [row_cells(r) for r in rows],
                          ["---", "---", "---:", "---:", "---:", "---", "---", "---"])


def markdown_cells(headers: list[str], cells: list[list[str]], align: list[str]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for c in cells:
        out.append("| " + " | ".join(esc(x) for x in c) + " |")
    return "\n".join(out)


CPU_HEADERS = ["case", "shape", "edgekv us/op", "Redis us/op", "edgekv/Redis",
               "edgekv runs", "Redis runs"]


def cpu_cells(rows: list[Row]) -> list[list[str]]:
    """Server CPU time per operation: the server's user+system time over a run divided by
    the operations of the run. Less sensitive than ops/s to CPU taken by other processes."""
    out = []
    for r in rows:
        if not (r.a_cpu or r.b_cpu):
            continue
        med = lambda xs: f"{statistics.median(xs):.1f}" if xs else "-"  # noqa: E731
        raw = lambda xs: " ".join(f"{x:.1f}" for x in xs)  # noqa: E731
        ratio = "-"
        if r.a_cpu and r.b_cpu and statistics.median(r.b_cpu) > 0:
            ratio = f"{statistics.median(r.a_cpu) / statistics.median(r.b_cpu):.2f}"
        out.append([r.id, r.shape, med(r.a_cpu), med(r.b_cpu), ratio, raw(r.a_cpu),
                    raw(r.b_cpu)])
    return out


def cpu_text_table(rows: list[Row]) -> str:
    return text_cells(CPU_HEADERS, cpu_cells(rows))


def cpu_markdown_table(rows: list[Row]) -> str:
    return markdown_cells(CPU_HEADERS, cpu_cells(rows),
                          ["---", "---", "---:", "---:", "---:", "---", "---"])


# ------------------------------------------------------------------------------ cases

@dataclasses.dataclass
class Test:
    row: Row
    op: str                      # "get" or "set"
    pipeline: int = 1
    native: Optional[Row] = None  # the edgekv_load row of the same shape


@dataclasses.dataclass
class Case:
    key: str                     # for --cases
    title: str
    edgekv_sync: str
    redis_persistence: str
    value_bytes: int
    keys: int
    tests: list[Test]


def build_cases(rows: dict[str, Row]) -> list[Case]:
    def t(row_id: str, op: str, pipeline: int = 1, native: Optional[str] = None) -> Test:
        return Test(rows[row_id], op, pipeline, rows[native] if native else None)
    return [
        Case("1", "GET 100 B", "normal", "none", 100, 100_000, [t("1", "get", native="6a")]),
        # Pipelined SETs against Redis with appendfsync everysec, the same durability class
        # as sync=normal (acknowledged writes survive a crash of the process); pipelined
        # GETs against Redis without persistence, which does not change what a GET costs.
        Case("2", "SET pipelined", "normal", "everysec", 100, 100_000,
             [t("2a", "set", 16, "6b")]),
        Case("2", "GET pipelined", "normal", "none", 100, 100_000,
             [t("2b", "get", 16, "6c")]),
        Case("3", "durable SET", "full", "always", 100, 100_000, [t("3", "set", native="6d")]),
        Case("4", "SET", "normal", "everysec", 100, 100_000, [t("4", "set", native="6e")]),
        Case("5a", "GET 4 KiB", "normal", "none", 4096, 50_000, [t("5a", "get", native="6f")]),
        Case("5b", "SET 4 KiB", "normal", "everysec", 4096, 50_000,
             [t("5b", "set", native="6g")]),
    ]


def make_rows() -> dict[str, Row]:
    c = CLIENTS
    rows = [
        Row("1", f"GET 100 B, {c} clients (edgekv sync=normal; Redis no persistence)", goal=0.75),
        Row("2a", f"SET 100 B, {c} clients, pipeline 16: sync=normal vs appendfsync everysec",
            goal=0.5),
        Row("2b", f"GET 100 B, {c} clients, pipeline 16 (as 1)", goal=0.5),
        Row("3", f"durable SET 100 B, {c} clients: sync=full vs appendfsync always", goal=1.5),
        Row("4", f"SET 100 B, {c} clients: sync=normal vs appendfsync everysec", goal=0.75),
        Row("5a", f"GET 4 KiB text-like values, {c} clients (as 1)"),
        Row("5b", f"SET 4 KiB redis-benchmark values, {c} clients (as 4)"),
        Row("6a", "native: GET 100 B, 50 clients"),
        Row("6b", "native: SET 100 B, 50 clients, pipeline 16"),
        Row("6c", "native: GET 100 B, 50 clients, pipeline 16"),
        Row("6d", "native: SET 100 B, 50 clients, sync=full"),
        Row("6e", "native: SET 100 B, 50 clients, sync=normal"),
        Row("6f", "native: GET 4 KiB text-like, 50 clients"),
        Row("6g", "native: SET 4 KiB text-like, 50 clients, sync=normal"),
        Row("7a", "RSS after loading N keys of 100 B", unit="MiB"),
        Row("7b", "disk per key: edgekv data dir vs Redis RDB", unit="B/key"),
        Row("7c", "disk per key: edgekv data dir vs Redis AOF", unit="B/key"),
    ]
    refs = {"6a": "1", "6b": "2a", "6c": "2b", "6d": "3", "6e": "4", "6f": "5a", "6g": "5b"}
    out = {r.id: r for r in rows}
    for native, ref in refs.items():
        out[native].b_from = ref
    return out


class Bench:
    def __init__(self, args, tools: Tools, root: Path, resp: bool, has_resp_option: bool,
                 more_endpoints: Sequence[str] = ()):
        self.has_resp_option = has_resp_option
        self.more_endpoints = list(more_endpoints)
        self.args = args
        self.tools = tools
        self.root = root
        self.resp = resp
        self.rows = make_rows()
        self.failures: list[str] = []
        self.notes: list[str] = []

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # -- calibration: choose -n so that one run lasts about --seconds

    def calibrate(self, port: int, test: Test, case: Case) -> int:
        n = 2000
        while True:
            t0 = time.monotonic()
            rps = redis_benchmark(self.tools, port, test.op, n, CLIENTS, test.pipeline,
                                  case.keys, case.value_bytes, timeout=120)
            took = time.monotonic() - t0
            if took >= 0.25 or n >= 2_000_000:
                break
            n = int(n * min(16.0, max(2.0, 0.4 / max(took, 0.001))))
        if rps == float("inf"):
            rps = n / took
        return max(1000, min(50_000_000, int(rps * self.args.seconds)))

    def side(self, row: Row, side: str, what: str, fn: Callable[[], object],
             record: bool = True) -> bool:
        """Runs one step for `side` ("a": edgekv, "b": Redis) of `row`; on failure marks that
        side of the row failed (its later steps are skipped) and carries on. A server that
        died fails the whole case (ServerDied propagates)."""
        if side in row.failed:
            return False
        try:
            value = fn()
        except ServerDied:
            raise
        except (BenchError, RespError, OSError) as e:
            row.failed[side] = f"{what}: {e}"
            who = "edgekv" if side == "a" else "Redis"
            self.failures.append(f"{row.id} ({who}): {what}: {e}")
            self.log(f"  FAILED {row.id} {who}: {what}: {e}")
            return False
        if record and isinstance(value, tuple):  # (ops/s, server CPU us per op)
            getattr(row, side).append(value[0])
            getattr(row, side + "_cpu").append(value[1])
        return True

    def run_case(self, case: Case) -> None:
        self.log(f"case {case.key}: {case.title} (edgekv sync={case.edgekv_sync}, Redis "
                 f"persistence={case.redis_persistence}, {case.keys} keys of "
                 f"{case.value_bytes} B)")
        casedir = Path(tempfile.mkdtemp(prefix=f"case{case.key}-", dir=self.root))
        ekv = Edgekvd(casedir / "edgekv", self.tools.edgekvd, case.edgekv_sync, self.resp,
                      self.has_resp_option, self.more_endpoints)
        red = Redis(casedir / "redis", case.redis_persistence)
        rows = [t.row for t in case.tests]
        natives = [t.native for t in case.tests if t.native]
        try:
            ekv.start()
            red.start()
            values = TextValues(case.value_bytes)
            # redis-benchmark's -r keys are key:%012d; edgekv_load's are key:%010d.
            fmt = "key:%012d"

            def preload_check(port: int, who: str) -> None:
                resp_preload(port, case.keys, fmt, values)
                resp_check_values(port, fmt, case.keys, case.value_bytes, who)

            if not self.side(rows[0], "b", "preload over RESP",
                             lambda: preload_check(red.port, "Redis")):
                for r in rows[1:]:
                    r.failed["b"] = rows[0].failed["b"]
            if self.resp and not self.side(rows[0], "a", "preload over RESP",
                                           lambda: preload_check(ekv.resp_port, "edgekv")):
                for r in rows[1:]:
                    r.failed["a"] = rows[0].failed["a"]
            if natives and not self.side(
                    natives[0], "a", "edgekv_load --preload",
                    lambda: edgekv_load(self.tools, ekv.endpoint, clients=16, pipeline=1,
                                        get_ratio=1, value_bytes=case.value_bytes,
                                        keys=case.keys, seconds=0.01, preload=True)):
                for r in natives[1:]:
                    r.failed["a"] = natives[0].failed["a"]
            self.alive(ekv, red)
            self.log(f"  preloaded {case.keys} keys")

            n_a, n_b = {}, {}
            for test in case.tests:
                row = test.row
                if self.resp:
                    self.side(row, "a", "calibration run", lambda: n_a.__setitem__(
                        row.id, self.calibrate(ekv.resp_port, test, case)))
                    self.alive(ekv, red)
                self.side(row, "b", "calibration run", lambda: n_b.__setitem__(
                    row.id, self.calibrate(red.port, test, case)))
                if test.native:  # warm-up, not recorded
                    self.side(test.native, "a", "edgekv_load warm-up",
                              lambda: self.native(ekv, test, case, min(0.5, self.args.seconds)),
                              record=False)
                self.alive(ekv, red)
            timeout = self.args.seconds * 20 + 60
            for rep in range(self.args.reps):
                for test in case.tests:
                    row = test.row
                    if self.resp:
                        self.side(row, "a", "redis-benchmark", lambda: self.rb(
                            ekv, ekv.resp_port, test, case, n_a[row.id], timeout))
                        self.alive(ekv, red)
                    self.side(row, "b", "redis-benchmark", lambda: self.rb(
                        red, red.port, test, case, n_b[row.id], timeout))
                    self.alive(ekv, red)
                    if test.native:
                        self.side(test.native, "a", "edgekv_load", lambda: self.native(
                            ekv, test, case, self.args.seconds))
                        test.native.b = row.b
                        test.native.b_cpu = row.b_cpu
                        test.native.failed.pop("b", None)
                        if "b" in row.failed:
                            test.native.failed["b"] = row.failed["b"]
                        self.alive(ekv, red)
                    last = lambda r, s: fmt_value(getattr(r, s)[-1], "ops/s") if (  # noqa: E731
                        getattr(r, s) and s not in r.failed) else "-"
                    self.log(f"  rep {rep + 1}: {row.id} edgekv {last(row, 'a')}, Redis "
                             f"{last(row, 'b')}"
                             + (f", native {last(test.native, 'a')}" if test.native else ""))
            ekv.stop()
            red.stop()
        except (BenchError, RespError, OSError) as e:
            self.failures.append(f"case {case.key}: {e}")
            self.log("  FAILED: " + str(e))
            for r in rows + natives:
                r.error = str(e)
        finally:
            ekv.kill()
            red.kill()
            shutil.rmtree(casedir, ignore_errors=True)

    @staticmethod
    def alive(*servers: Server) -> None:
        for s in servers:
            s.check_alive()

    def rb(self, server: Server, port: int, test: Test, case: Case, n: int,
           timeout: float) -> tuple[float, float]:
        """One redis-benchmark run: (ops/s, server CPU us per operation)."""
        cpu0 = cpu_seconds(server.pid)
        rps = redis_benchmark(self.tools, port, test.op, n, CLIENTS, test.pipeline, case.keys,
                              case.value_bytes, timeout)
        cpu = cpu_seconds(server.pid) - cpu0
        return rps, cpu * 1e6 / n

    def native(self, ekv: Edgekvd, test: Test, case: Case,
               seconds: float) -> tuple[float, float]:
        cpu0 = cpu_seconds(ekv.pid)
        out = edgekv_load(self.tools, ekv.endpoint, clients=CLIENTS, pipeline=test.pipeline,
                          get_ratio=1.0 if test.op == "get" else 0.0,
                          value_bytes=case.value_bytes, keys=case.keys, seconds=seconds)
        cpu = cpu_seconds(ekv.pid) - cpu0
        ekv.check_alive()
        return float(out["ops_per_s"]), cpu * 1e6 / max(1, int(out["ops"]))

    def run_memory(self) -> None:
        keys = self.args.memory_keys
        for r in ("7a", "7b", "7c"):
            self.rows[r].shape = self.rows[r].shape.replace("N keys", f"{keys:,} keys")
        self.log(f"case 7: memory and disk after loading {keys} keys of 100 B")
        casedir = Path(tempfile.mkdtemp(prefix="case7-", dir=self.root))
        ekv = Edgekvd(casedir / "edgekv", self.tools.edgekvd, "normal", self.resp,
                      self.has_resp_option, self.more_endpoints)
        red = Redis(casedir / "redis", "everysec")
        try:
            ekv.start()
            t0 = time.monotonic()
            edgekv_load(self.tools, ekv.endpoint, clients=16, pipeline=1, get_ratio=1,
                        value_bytes=100, keys=keys, seconds=0.01, preload=True)
            ekv_load_s = time.monotonic() - t0
            ekv.check_alive()
            ekv_rss = vm_rss_bytes(ekv.pid)
            ekv_hwm = vm_hwm_bytes(ekv.pid)
            ekv_live, _ = dir_bytes(ekv.data_dir)
            ekv.stop()
            ekv_rest, ekv_rest_apparent = dir_bytes(ekv.data_dir)

            red.start()
            t0 = time.monotonic()
            resp_preload(red.port, keys, "key:%010d", TextValues(100))
            red_load_s = time.monotonic() - t0
            mem = red.info_memory()
            red_rss = int(mem["used_memory_rss"])
            red_used = int(mem["used_memory"])
            red_peak = int(mem.get("used_memory_peak", 0))
            with Resp(red.port, timeout=300) as r:
                r.command("SAVE")
            rdb = (red.workdir / "dump.rdb").stat().st_size
            aof, _ = dir_bytes(red.workdir / "appendonlydir")
            red.stop()

            mib = 1 << 20
            self.rows["7a"].a = [ekv_rss / mib]
            self.rows["7a"].b = [red_rss / mib]
            self.rows["7b"].a = [ekv_rest / keys]
            self.rows["7b"].b = [rdb / keys]
            self.rows["7c"].a = [ekv_rest / keys]
            self.rows["7c"].b = [aof / keys]
            self.notes.append(
                f"Case 7 ({keys:,} keys of 100 B): edgekv loaded natively by edgekv_load "
                f"--preload (16 clients) in {ekv_load_s:.1f} s, Redis over RESP (pipelined SETs "
                f"from one connection, appendfsync everysec) in {red_load_s:.1f} s. edgekvd "
                f"VmRSS {ekv_rss / mib:.0f} MiB (peak VmHWM {ekv_hwm / mib:.0f} MiB); Redis used_memory_rss {red_rss / mib:.0f} MiB "
                f"(used_memory {red_used / mib:.0f} MiB, peak {red_peak / mib:.0f} MiB). edgekv data dir "
                f"{ekv_live / mib:.0f} MiB while running (WAL not yet checkpointed), "
                f"{ekv_rest / mib:.0f} MiB on disk after a clean stop ({ekv_rest_apparent / mib:.0f} "
                f"MiB apparent), which includes the change log (every write is kept until "
                f"changelog-keep); Redis RDB {rdb / mib:.0f} MiB, AOF {aof / mib:.0f} MiB. "
                "Lower is better in these rows.")
        except (BenchError, RespError, OSError, KeyError) as e:
            msg = f"case 7: {e}"
            self.failures.append(msg)
            self.log("  FAILED: " + str(e))
            for r in ("7a", "7b", "7c"):
                self.rows[r].error = str(e)
        finally:
            ekv.kill()
            red.kill()
            shutil.rmtree(casedir, ignore_errors=True)


# ------------------------------------------------------------------------------ main

def machine_summary(tools: Tools) -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    redis_v = version(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", redis_v)
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
            f"{version([str(tools.edgekvd), '--version'])}; "
            f"redis-server {m.group(1) if m else redis_v}")


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(
        description="edgekv vs Redis on this machine (see docs/performance.md).")
    p.add_argument("--build", default="build/release",
                   help="build directory holding daemon/edgekvd and bench/edgekv_load")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: one repetition, 1 s runs, cases 1, 2, 3 and a 100k-key 7")
    p.add_argument("--reps", type=int, help="repetitions per server (default 3)")
    p.add_argument("--seconds", type=float, help="length of one measurement (default 5)")
    p.add_argument("--cases", help="comma-separated subset of 1,2,3,4,5a,5b,7 (default all)")
    p.add_argument("--memory-keys", type=int, help="keys loaded for case 7 (default 1000000)")
    p.add_argument("--no-resp", action="store_true",
                   help="do not use edgekv's RESP listener even if edgekvd has one")
    p.add_argument("--workdir", help="where the temporary server directories go (default: "
                   "the build directory, so fsync hits a real disk)")
    p.add_argument("--markdown", help="write the markdown table here "
                   "(default BUILD/bench/bench-results.md)")
    a = p.parse_args(argv)
    a.reps = a.reps or (1 if a.quick else 3)
    a.seconds = a.seconds or (1.0 if a.quick else 5.0)
    a.memory_keys = a.memory_keys or (100_000 if a.quick else 1_000_000)
    all_cases = ["1", "2", "3", "4", "5a", "5b", "7"]
    if a.cases:
        a.cases = [c.strip() for c in a.cases.split(",") if c.strip()]
        if "5" in a.cases:
            a.cases = [c for c in a.cases if c != "5"] + ["5a", "5b"]
        bad = [c for c in a.cases if c not in all_cases]
        if bad:
            p.error(f"unknown case(s) {', '.join(bad)}; choose from {', '.join(all_cases)}")
    else:
        a.cases = ["1", "2", "3", "7"] if a.quick else all_cases
    if a.reps < 1 or a.seconds <= 0 or a.memory_keys < 1:
        p.error("--reps, --seconds and --memory-keys must be positive")
    return a


def fsync_rate(directory: Path, seconds: float = 0.5) -> float:
    """4 KiB write + fdatasync round trips per second in `directory`: what a durable
    commit costs on this disk right now (cases 3 and 4 depend on it)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block, n, start = b"\0" * 4096, 0, time.monotonic()
        while time.monotonic() - start < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        os.close(fd)
        path.unlink()


def load_after() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    build = Path(args.build)
    if not build.is_absolute():
        build = (Path.cwd() / build).resolve()
    tools = Tools(build / "daemon" / "edgekvd", build / "bench" / "edgekv_load")
    missing = [str(p) for p in (tools.edgekvd, tools.edgekv_load) if not os.access(p, os.X_OK)]
    if missing:
        print(f"bench: not built: {', '.join(missing)} (run `make build`, or pass --build DIR)",
              file=sys.stderr)
        return 2
    for prog in ("redis-server", "redis-benchmark"):
        if shutil.which(prog) is None:
            print(f"bench: {prog} not found (bench/run.sh installs redis-server and "
                  "redis-tools)", file=sys.stderr)
            return 2
    help_text = subprocess.run([str(tools.edgekvd), "--help"], capture_output=True,
                               text=True).stdout
    has_resp = "--resp-endpoint" in help_text
    more_endpoints = [o for o in ("--gossip-endpoint", "--peer-endpoint") if o in help_text]
    resp = has_resp and not args.no_resp

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    workdir = Path(args.workdir).resolve() if args.workdir else build
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-tmp-", dir=workdir))
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(root)], capture_output=True,
                        text=True).stdout.strip()

    bench = Bench(args, tools, root, resp, has_resp, more_endpoints)
    load_before = load_after()
    fsync_before = fsync_rate(root)
    started = time.monotonic()
    summary = machine_summary(tools)
    print(f"edgekv vs Redis: {summary}")
    print(f"{args.reps} repetition(s) of ~{args.seconds:g} s per server and shape, "
          f"{CLIENTS} clients, temp dir {root} ({fs})")
    if fs in ("tmpfs", "ramfs"):
        print("bench: WARNING: the temp dir is in memory, so fsync costs nothing; pass "
              "--workdir on a disk for cases 3 and 4 to mean anything", file=sys.stderr)
    if not resp:
        why = "--no-resp given" if has_resp else "this edgekvd has no --resp-endpoint yet"
        print(f"edgekv over RESP: skipped ({why}); native edgekv_load figures only")
        for r in bench.rows.values():
            if r.id[0] in "12345":
                r.a_note = "no RESP"
    interrupted = False
    fsync_after = 0.0
    try:
        for case in build_cases(bench.rows):
            if case.key in args.cases:
                bench.run_case(case)
        if "7" in args.cases:
            bench.run_memory()
        fsync_after = fsync_rate(root)
    except KeyboardInterrupt as e:
        interrupted = True
        bench.failures.append(f"interrupted ({e or 'SIGINT'})")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    wanted = set()
    for c in args.cases:
        wanted |= {"1": {"1", "6a"}, "2": {"2a", "2b", "6b", "6c"}, "3": {"3", "6d"},
                   "4": {"4", "6e"}, "5a": {"5a", "6f"}, "5b": {"5b", "6g"},
                   "7": {"7a", "7b", "7c"}}[c]
    rows = [r for r in bench.rows.values() if r.id in wanted]
    elapsed = time.monotonic() - started
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    notes = [
        "Throughput in operations per second (k = 1000), median of the runs; edgekv/Redis is "
        "the ratio of medians (higher is better for ops/s, lower is better for MiB and B/key).",
        "Rows 1-5: redis-benchmark against edgekv's RESP listener and against redis-server, "
        "-c 50, -r <keys>, -d <value size>, keys preloaded with text-like values. Rows 6: "
        "edgekv_load over edgekv's native ZeroMQ protocol (50 client threads), next to the "
        "Redis figure of the same shape measured in the same alternation.",
        "Redis ran with `save \"\"`; cases 1, 2b, 5a without AOF (a cache), 3 with appendfsync "
        "always, 2a, 4 and 5b with appendfsync everysec (AOF rewrite at its defaults). edgekvd "
        "ran with its defaults (sync as stated, compression above 1 KiB, 512 partitions).",
        "Servers and load generators share the machine's CPUs; load average "
        f"{load_before} before the run, {load_after()} after it (other work on the machine "
        "shows up here and in the spread of the runs). The disk under the temp dir did "
        f"{fsync_before:,.0f} 4 KiB write+fdatasync/s before the run, "
        + (f"{fsync_after:,.0f} after it." if fsync_after else "(run interrupted).")
    ] + bench.notes
    if "5b" in args.cases:
        notes.append("Row 5b: redis-benchmark -d 4096 writes pseudo-random characters from "
                     "a 64-character alphabet, which edgekv's zstd (on above 1 KiB) only "
                     "shrinks to ~76% (3,115 of 4,096 bytes in the stored rows); 6g writes "
                     "text-like values (edgekv_load), as do all preloads.")
    if not resp:
        notes.append("edgekv over RESP was not measured: " +
                     ("--no-resp given." if has_resp else
                      "this edgekvd has no --resp-endpoint yet."))
    md = [f"Measured {stamp} by `make bench` ({args.reps} repetition(s) of ~{args.seconds:g} s; "
          f"{elapsed / 60:.1f} min in all) on {summary}.", "", markdown_table(rows), ""]
    md += [f"- {n}" for n in notes]
    if cpu_cells(rows):
        md += ["", "Server CPU time per operation (user + system time of the server process, "
               "all threads, over a run, divided by the run's operations; in microseconds, "
               "lower is better). It is less disturbed than ops/s by CPU taken by the load "
               "generator and by other work on the machine:", "", cpu_markdown_table(rows)]
    if bench.failures:
        md += ["", "Failures:"] + [f"- {f}" for f in bench.failures]
    md_text = "\n".join(md) + "\n"

    print()
    print(text_table(rows))
    print()
    for n in notes:
        print(f"* {n}")
    if cpu_cells(rows):
        print("\nServer CPU time per operation (us; lower is better):\n")
        print(cpu_text_table(rows))
    print("\nMarkdown (for docs/performance.md):\n")
    print(md_text)
    md_path = Path(args.markdown) if args.markdown else build / "bench" / "bench-results.md"
    try:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md_text)
        print(f"(also written to {md_path})")
    except OSError as e:
        print(f"bench: cannot write {md_path}: {e}", file=sys.stderr)
    if bench.failures:
        print("\nbench: FAILED:", file=sys.stderr)
        for f in bench.failures:
            print(f"  {f}", file=sys.stderr)
        return 130 if interrupted else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
