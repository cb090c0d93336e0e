"""Real edgekvd processes, one per network namespace of a netfab.Fabric, and the process
and clock faults made to them.

Owns: the ChaosNode (edgekv_harness.Daemon started through `ip netns exec`, listening on
its namespace's address) and the ChaosCluster (the fabric, the five nodes gossiping with
each other, replication factor 3). Guarantees: close() stops every node it started (by
PID: SIGCONT first if stopped, SIGTERM, then SIGKILL), unmounts what it mounted and tears
the fabric down, also after a failure half-way through start().

Clock jumps: when Debian's libfaketime is installed, every node runs with it preloaded,
reading its offset from a file of its own (FAKETIME_TIMESTAMP_FILE, re-read every
second), with CLOCK_MONOTONIC left alone: set_clock_offset() moves the node's wall clock
(what its hybrid logical clock and expiry read) while its timers run on. Not in sanitizer
builds (EDGEKV_SANITIZE set), whose runtime must be the first library loaded.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cluster"))

import edgekv_harness as h  # noqa: E402
from edgekv_harness import pb  # noqa: E402,F401

import netfab  # noqa: E402

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

# Fixed ports: each node has a network namespace, hence a port space, of its own.
CLIENT_PORT, FEED_PORT, RESP_PORT, GOSSIP_PORT, PEER_PORT = 7400, 7403, 7379, 7402, 7401

# The timing the cluster tests use, so that failures are seen within seconds.
BASE_ARGS = ["--gossip-preset", "local", "--request-timeout-ms", "1000",
             "--replication-factor", "3", "--log-level", "notice"]


def faketime_available() -> bool:
    return os.path.exists(LIBFAKETIME)


class ChaosNode(h.Daemon):
    """An edgekvd in network namespace `netns`, on address `address`."""

    def __init__(self, workdir: Path, name: str, netns: str, address: str,
                 args: Sequence[str] = (), data_dir: Optional[Path] = None,
                 clock_file: Optional[Path] = None):
        super().__init__(workdir, name=name, args=args, data_dir=data_dir)
        self.netns = netns
        self.address = address
        self.clock_file = clock_file
        self.stopped = False  # SIGSTOP sent and no SIGCONT since
        if clock_file is not None:
            clock_file.write_text("+0\n")
            self.env.update({
                "LD_PRELOAD": LIBFAKETIME,
                "FAKETIME_TIMESTAMP_FILE": str(clock_file),
                "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_DONT_RESET": "1",
            })

    def _ep(self, port: int) -> str:
        return f"tcp://{self.address}:{port}"

    @property
    def client_endpoint(self) -> str:
        return self._ep(CLIENT_PORT)

    @property
    def feed_endpoint(self) -> str:
        return self._ep(FEED_PORT)

    @property
    def resp_endpoint(self) -> str:
        return self._ep(RESP_PORT)

    @property
    def gossip_endpoint(self) -> str:
        return self._ep(GOSSIP_PORT)

    @property
    def peer_endpoint(self) -> str:
        return self._ep(PEER_PORT)

    def _pick_ports(self) -> None:
        (self.client_port, self.feed_port, self.resp_port, self.gossip_port,
         self.peer_port) = CLIENT_PORT, FEED_PORT, RESP_PORT, GOSSIP_PORT, PEER_PORT

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        # `ip netns exec` execs the daemon: the PID the harness holds is edgekvd's own.
        return ["ip", "netns", "exec", self.netns, *super().command(extra)]

    # -- faults

    def kill9(self) -> None:
        self.kill()
        self.stopped = False

    def pause(self) -> None:
        if self.running() and not self.stopped:
            os.kill(self.pid, signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.stopped and self.running():
            os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def set_clock_offset(self, offset_s: float) -> None:
        """Moves the node's wall clock `offset_s` seconds from the real one (takes effect
        within a second)."""
        assert self.clock_file is not None, "clock jumps need libfaketime"
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.3f}\n")
        os.replace(tmp, self.clock_file)

    def shutdown(self) -> Optional[int]:
        """Stops the node whatever its state (SIGCONT, SIGTERM, then SIGKILL by PID);
        returns its status, or None when it was not running."""
        if not self.running():
            return None
        self.resume()
        try:
            return self.stop(timeout=h.STOP_TIMEOUT)
        except AssertionError:
            self.kill()
            return -9


class ChaosCluster:
    """`size` nodes, one per namespace of a fabric it creates, gossiping with node1 as
    their seed. Use as a context manager, or call close() in a finally."""

    def __init__(self, workdir: Path, size: int = 5, extra_args: Sequence[str] = (),
                 data_dirs: Optional[dict[int, Path]] = None, clock_jumps: bool = True):
        self.workdir = Path(workdir)
        self.size = size
        self.extra_args = list(extra_args)
        self.data_dirs = data_dirs or {}
        # A sanitized edgekvd must load its sanitizer runtime first: no preloading there.
        self.clock_jumps = (clock_jumps and faketime_available() and
                            not os.environ.get("EDGEKV_SANITIZE"))
        self.fabric = netfab.Fabric(size)
        self.nodes: list[ChaosNode] = []
        self.view: Optional[h.ClusterView] = None

    def __enter__(self) -> "ChaosCluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.fabric.create()
        for i in range(self.size):
            name = f"node{i + 1}"
            args = [*BASE_ARGS, *self.extra_args]
            if i > 0:
                args += ["--seeds", self.nodes[0].gossip_endpoint]
            node = ChaosNode(self.workdir, name, self.fabric.namespaces[i],
                             self.fabric.address(i), args=args,
                             data_dir=self.data_dirs.get(i),
                             clock_file=(self.workdir / f"{name}.faketime"
                                         if self.clock_jumps else None))
            self.nodes.append(node)
            node.start()
        self.view = h.ClusterView(self.nodes)

    def wait_agreed(self, timeout: float = 60.0):
        """Every node alive in every node's view, one placement everywhere."""
        assert self.view is not None
        self.view.close()  # fresh sockets: old ones may hold requests to a dead process
        return h.wait_agreed(self.view, self.nodes, timeout=timeout)

    def index(self, name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.name == name)

    def close(self) -> list[str]:
        problems = []
        if self.view is not None:
            self.view.close()
        for node in self.nodes:
            rc = node.shutdown()
            if rc not in (None, 0):
                problems.append(f"edgekvd {node.name} exited with {rc} at shutdown")
            node.close()
        problems += self.fabric.teardown()
        return problems
