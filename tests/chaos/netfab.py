"""The fault harness's network: network namespaces joined to one bridge, and the faults
made in them.

Owns, for one run: a bridge in the root namespace holding the address .254 of a private
10.213.X.0/24 subnet (a /24 no route of the machine overlaps, chosen at create time), one
network namespace per node, each joined to the bridge by a veth pair and holding .1, .2,
... of the subnet, and the iptables rules inside those namespaces that make partitions.
The namespaces have no default route, so nothing they send leaves the subnet; the root
namespace only gains the subnet's route on the bridge, and its own iptables are never
touched.

Guarantees: teardown() removes everything create() made (namespaces, with their veth ends
and rules, the bridge, the host veth ends), is idempotent, and runs from whatever state a
failed create() left. Names carry the creating process's PID (ekc<PID>...), so that
remove_stale() can remove what a run killed before its teardown left behind, and only
that.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Optional, Sequence

PREFIX = "ekc"
SUBNET_BASE = "10.213"


class FabricError(RuntimeError):
    pass


def run(*cmd: str, check: bool = True, netns: Optional[str] = None,
        timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Runs a command (in `netns` when given); raises FabricError naming it on failure."""
    full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    result = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise FabricError(f"{' '.join(full)} -> exit {result.returncode}: "
                          f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def unavailable_reason() -> Optional[str]:
    """Why this machine cannot run the harness (not root, no `ip netns`, no iptables), or
    None when it can."""
    if os.geteuid() != 0:
        return "the fault harness needs root (network namespaces, iptables, tmpfs mounts)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if shutil.which("iptables") is None:
        return "`iptables` is not installed (scripts/install-deps.sh installs it)"
    probe = f"{PREFIX}{os.getpid()}probe"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        rules = run("iptables", "-S", netns=probe, check=False)
        if rules.returncode != 0:
            return f"iptables does not work inside a network namespace: {rules.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def remove_stale() -> list[str]:
    """Removes the namespaces and bridges of earlier runs whose process is gone (killed
    before its teardown), with the processes still running inside those namespaces.
    Returns what it removed."""
    removed = []
    pattern = re.compile(rf"^{PREFIX}(\d+)")
    listed = run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0].strip()
        m = pattern.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        pids = run("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", name, check=False)
        removed.append(name)
    links = run("ip", "-o", "link", "show", check=False).stdout.split("\n")
    for line in links:
        parts = line.split(": ")
        if len(parts) < 2:
            continue
        name = parts[1].split("@")[0]
        m = pattern.match(name)
        if m and not _pid_alive(int(m.group(1))):
            run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Fabric:
    """`size` namespaces on one bridge. Call create(), then teardown() (always)."""

    size: int
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    subnet: str = ""          # "10.213.X", chosen by create()
    namespaces: list[str] = field(default_factory=list)
    created: bool = False
    # Rules added, per namespace index, for the record (heal() flushes them all).
    rules: dict[int, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.254"

    def address(self, i: int) -> str:
        """The address of node index i (0-based) inside its namespace."""
        return f"{self.subnet}.{i + 1}"

    def _pick_subnet(self) -> str:
        routes = run("ip", "-4", "route", "show", "table", "all", check=False).stdout
        addrs = run("ip", "-4", "-o", "addr", "show", check=False).stdout
        start = os.getpid() % 250
        for step in range(250):
            candidate = f"{SUBNET_BASE}.{(start + step) % 250}"
            if f"{candidate}." not in routes and f"{candidate}." not in addrs:
                return candidate
        raise FabricError(f"every {SUBNET_BASE}.X.0/24 is already routed on this machine")

    def create(self) -> "Fabric":
        self.created = True  # from here on teardown() has something to do
        remove_stale()
        self.subnet = self._pick_subnet()
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i in range(self.size):
            ns = f"{self.tag}n{i + 1}"
            host_end, ns_end = f"{self.tag}h{i + 1}", f"{self.tag}v{i + 1}"
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            run("ip", "link", "set", host_end, "master", self.bridge)
            run("ip", "link", "set", host_end, "up")
            run("ip", "link", "set", ns_end, "netns", ns)
            run("ip", "addr", "add", f"{self.address(i)}/24", "dev", ns_end, netns=ns)
            run("ip", "link", "set", ns_end, "up", netns=ns)
            run("ip", "link", "set", "lo", "up", netns=ns)
            self.rules[i] = []
        return self

    def teardown(self) -> list[str]:
        """Removes everything; returns the problems met (empty when all went)."""
        if not self.created:
            return []
        problems = []
        for ns in self.namespaces:
            # Deleting a namespace deletes its veth end (and so the pair) and its rules.
            r = run("ip", "netns", "del", ns, check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self.namespaces = []
        for i in range(self.size):
            run("ip", "link", "del", f"{self.tag}h{i + 1}", check=False)
        r = run("ip", "link", "del", self.bridge, check=False)
        if r.returncode != 0 and "Cannot find" not in r.stderr:
            problems.append(f"ip link del {self.bridge}: {r.stderr.strip()}")
        self.created = False
        return problems

    # -- partitions (iptables inside the namespaces)

    def _drop(self, i: int, chain: str, match: str, peer: int) -> None:
        run("iptables", "-w", "-A", chain, match, self.address(peer), "-j", "DROP",
            netns=self.namespaces[i])
        self.rules[i].append((chain, self.address(peer)))

    def cut(self, side_a: Sequence[int], side_b: Sequence[int]) -> None:
        """A symmetric partition: nothing passes between the two sides, either way."""
        for a in side_a:
            for b in side_b:
                self._drop(a, "INPUT", "-s", b)
                self._drop(a, "OUTPUT", "-d", b)
                self._drop(b, "INPUT", "-s", a)
                self._drop(b, "OUTPUT", "-d", a)

    def cut_one_way(self, deaf: int, unheard: Sequence[int]) -> None:
        """A one-way partition: node `deaf` receives nothing from `unheard`, which still
        receive what it sends."""
        for b in unheard:
            self._drop(deaf, "INPUT", "-s", b)

    def heal(self) -> None:
        """Removes every rule: the network is whole again."""
        for i, ns in enumerate(self.namespaces):
            if self.rules.get(i):
                run("iptables", "-w", "-F", "INPUT", netns=ns)
                run("iptables", "-w", "-F", "OUTPUT", netns=ns)
                self.rules[i] = []

    def rule_count(self) -> int:
        return sum(len(r) for r in self.rules.values())
