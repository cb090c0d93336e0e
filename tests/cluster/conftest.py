"""pytest fixtures for the cluster tests (see edgekv_harness.py for the building blocks).

  daemons   a factory: daemons.new(name, args) -> a Daemon (not started); every daemon it
            made is stopped at teardown (SIGTERM, exit status 0 asserted), killed by PID if
            it does not stop, and its stderr is attached to the report of a failed test.
  node      one started daemon with default options.
  watches   a factory of running `kvcli watch` processes, stopped at teardown.
  timings   record(what, seconds, bound): a measured duration, printed at once (visible
            with -s) and again in the run's summary (visible in ctest's log).
"""

from __future__ import annotations

import pytest

import edgekv_harness as h


class DaemonFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.daemons: list[h.Daemon] = []

    def new(self, name: str = "node1", args=(), data_dir=None, endpoints=None,
            gossip_port: int = 0) -> h.Daemon:
        daemon = h.Daemon(self.tmp_path, name=name, args=args, data_dir=data_dir,
                          endpoints=endpoints, gossip_port=gossip_port)
        self.daemons.append(daemon)
        return daemon

    def start(self, name: str = "node1", args=(), data_dir=None) -> h.Daemon:
        return self.new(name, args, data_dir).start()

    def teardown(self) -> list[str]:
        problems = []
        for daemon in self.daemons:
            if daemon.running():
                try:
                    rc = daemon.stop()
                    if rc != 0:
                        problems.append(f"edgekvd {daemon.name} exited with {rc} on SIGTERM "
                                        f"at teardown")
                except AssertionError as e:
                    problems.append(str(e))
            daemon.kill()  # by PID, only if still running
            daemon.close()
        return problems


class WatchFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.watches: list[h.Watch] = []

    def start(self, endpoint: str, *args: str, global_args=(), name=None) -> h.Watch:
        watch = h.Watch(endpoint, args, self.tmp_path, global_args=global_args,
                        name=name or f"watch{len(self.watches) + 1}")
        self.watches.append(watch)
        return watch

    def teardown(self) -> None:
        for watch in self.watches:
            watch.stop()


@pytest.fixture
def daemons(request, tmp_path):
    factory = DaemonFactory(tmp_path)
    request.node._edgekv_daemons = factory.daemons
    yield factory
    problems = factory.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def node(daemons):
    return daemons.start("node1")


@pytest.fixture
def watches(request, tmp_path):
    factory = WatchFactory(tmp_path)
    request.node._edgekv_watches = factory.watches
    yield factory
    factory.teardown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach every daemon's stderr (all its runs) and every watch's stderr."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for daemon in getattr(item, "_edgekv_daemons", []):
        report.sections.append((f"edgekvd {daemon.name} stderr", daemon.all_stderr()))
    for watch in getattr(item, "_edgekv_watches", []):
        report.sections.append((f"kvcli watch stderr ({' '.join(watch.cmd[1:])})",
                                watch.stderr_text()))


_TIMINGS: list[str] = []


class Timings:
    def record(self, what: str, seconds: float, bound: float) -> None:
        line = f"{what}: {seconds:.3f} s (bound {bound:.1f} s)"
        _TIMINGS.append(line)
        print(f"TIMING {line}", flush=True)


@pytest.fixture
def timings():
    return Timings()


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.write_sep("-", "edgekv timings")
        for line in _TIMINGS:
            terminalreporter.write_line(line)
