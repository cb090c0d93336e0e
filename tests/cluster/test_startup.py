"""edgekvd start-up: bad configuration and unusable resources fail at once with exit 1
and one stderr line naming the option or resource; --help and --version exit 0."""

import re
import socket
import subprocess
from pathlib import Path

import pytest

import edgekv_harness as h

REPO = Path(__file__).resolve().parents[2]


def _assert_one_line_naming(rc, stderr, *names):
    assert rc == 1, f"exit status {rc}, stderr:\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("edgekvd: "), lines[0]
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("extra,names", [
    pytest.param(["--colour", "red"], ["colour"], id="unknown-option"),
    pytest.param(["--partitions", "100"], ["--partitions", "100"], id="partitions-not-power-of-2"),
    pytest.param(["--partitions", "0"], ["--partitions"], id="partitions-zero"),
    pytest.param(["--partitions", "131072"], ["--partitions"], id="partitions-too-many"),
    pytest.param(["--sync", "sometimes"], ["--sync", "sometimes"], id="sync"),
    pytest.param(["--log-level", "loud"], ["--log-level", "loud"], id="log-level"),
    pytest.param(["--max-key-bytes", "-1"], ["--max-key-bytes"], id="negative-size"),
    pytest.param(["--max-value-bytes", "12abc"], ["--max-value-bytes"], id="trailing-garbage"),
    pytest.param(["--ttl-sweep-interval-ms", "0"], ["--ttl-sweep-interval-ms"],
                 id="sweep-interval-zero"),
    pytest.param(["--write-queue-max"], ["--write-queue-max"], id="missing-value"),
    pytest.param(["stray-argument"], ["stray-argument"], id="positional-argument"),
])
def test_bad_option_fails_with_one_line(daemons, extra, names):
    node = daemons.new("node1")
    rc, stderr = node.run_to_exit(extra=extra)
    _assert_one_line_naming(rc, stderr, *names)
    assert not node.data_dir.exists(), "a refused configuration must not create the data dir"


def test_bad_endpoint_fails_with_one_line(tmp_path):
    data = tmp_path / "data"
    r = subprocess.run([h.EDGEKVD, "--config", "/dev/null", "--node-id", "n", "--data-dir",
                        str(data), "--client-endpoint", "udp://127.0.0.1:1",
                        "--feed-endpoint", h.tcp_endpoint(h.free_port())],
                       capture_output=True, text=True, timeout=30)
    _assert_one_line_naming(r.returncode, r.stderr, "--client-endpoint", "udp://127.0.0.1:1")


def test_missing_config_file_fails_with_one_line(tmp_path):
    missing = tmp_path / "no-such.conf"
    r = subprocess.run([h.EDGEKVD, "--config", str(missing)], capture_output=True, text=True,
                       timeout=30)
    _assert_one_line_naming(r.returncode, r.stderr, str(missing))


def test_config_file_settings_apply_and_flags_override_them(daemons):
    node = daemons.new("node1")
    node.config_path.write_text("partitions = 4\nsync = full\nmax-key-bytes = 8\n")
    node.start(extra=["--max-key-bytes", "32"])
    with node.client() as c:
        status = c.status().status
        assert status.partitions == 4 and status.sync == "full", status
        assert c.put(b"k" * 32, b"v").code == h.pb.OK  # the flag's 32 won over the file's 8
        assert c.put(b"k" * 33, b"v").code == h.pb.INVALID_ARGUMENT


def test_unknown_option_in_config_file_fails_with_one_line(daemons):
    node = daemons.new("node1")
    node.config_path.write_text("colour = red\n")
    rc, stderr = node.run_to_exit()
    _assert_one_line_naming(rc, stderr, "colour", str(node.config_path))


def test_client_port_in_use_fails_with_one_line(daemons):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        node = daemons.new("node1")
        node.client_port = busy.getsockname()[1]
        node.feed_port = h.free_port()
        rc, stderr = node.run_to_exit()
    _assert_one_line_naming(rc, stderr, "client-endpoint", str(node.client_port))


def test_feed_port_in_use_fails_with_one_line(daemons):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        node = daemons.new("node1")
        node.client_port = h.free_port()
        node.feed_port = busy.getsockname()[1]
        rc, stderr = node.run_to_exit()
    _assert_one_line_naming(rc, stderr, "feed-endpoint", str(node.feed_port))


def test_port_held_by_another_edgekvd_fails_with_one_line(daemons):
    first = daemons.start("node1")
    second = daemons.new("node2")
    second.client_port, second.feed_port = first.client_port, h.free_port()
    rc, stderr = second.run_to_exit()
    _assert_one_line_naming(rc, stderr, "client-endpoint", str(first.client_port))
    with first.client() as c:  # the first one is unaffected
        assert c.put(b"k", b"v").code == h.pb.OK


def test_data_dir_under_a_regular_file_fails_with_one_line(daemons, tmp_path):
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory\n")
    node = daemons.new("node1", data_dir=blocker / "data")
    rc, stderr = node.run_to_exit()
    line = _assert_one_line_naming(rc, stderr)
    assert str(blocker) in line, f"the data directory is not named in: {line}"


def test_data_dir_that_is_a_regular_file_fails_with_one_line(daemons, tmp_path):
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory\n")
    node = daemons.new("node1", data_dir=blocker)
    rc, stderr = node.run_to_exit()
    line = _assert_one_line_naming(rc, stderr)
    assert str(blocker) in line, f"the data directory is not named in: {line}"


OPTIONS = ["node-id", "data-dir", "client-endpoint", "feed-endpoint", "partitions", "sync",
           "max-key-bytes", "max-value-bytes", "compress-threshold-bytes",
           "ttl-sweep-interval-ms", "ttl-sweep-batch-max", "write-queue-max",
           "group-commit-max", "changelog-keep", "tombstone-grace-ms", "log-level",
           "config", "help", "version"]


def test_help_lists_every_option_and_exits_0(tmp_path):
    data = tmp_path / "never-created"
    r = subprocess.run([h.EDGEKVD, "--help", "--data-dir", str(data)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r
    assert r.stderr == "", r.stderr
    for option in OPTIONS:
        assert f"--{option}" in r.stdout, f"--help does not list --{option}:\n{r.stdout}"
    assert "default" in r.stdout
    assert not data.exists(), "--help must not start the daemon"


def test_version_prints_the_project_version_and_exits_0():
    project = (REPO / "CMakeLists.txt").read_text()
    version = re.search(r"project\(edgekv\s+VERSION\s+([0-9.]+)", project).group(1)
    r = subprocess.run([h.EDGEKVD, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    assert r.stdout.strip() == f"edgekvd {version}", r.stdout
    assert r.stderr == ""


def _raw_args(tmp_path, **overrides):
    """A full edgekvd command line with one or more options replaced."""
    options = {
        "config": "/dev/null",
        "node-id": "n1",
        "data-dir": str(tmp_path / "data"),
        "client-endpoint": h.tcp_endpoint(h.free_port()),
        "feed-endpoint": h.tcp_endpoint(h.free_port()),
    }
    options.update({k.replace("_", "-"): v for k, v in overrides.items()})
    args = [h.EDGEKVD]
    for name, value in options.items():
        args += [f"--{name}", value]
    return args


def _run(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


@pytest.mark.parametrize("node_id", ["has space", "", "x" * 65, "caf\u00e9"],
                         ids=["space", "empty", "too-long", "non-ascii"])
def test_bad_node_id_fails_with_one_line(tmp_path, node_id):
    rc, stderr = _run(_raw_args(tmp_path, node_id=node_id))
    _assert_one_line_naming(rc, stderr, "node-id")


def test_same_client_and_feed_endpoint_fails_with_one_line(tmp_path):
    ep = h.tcp_endpoint(h.free_port())
    rc, stderr = _run(_raw_args(tmp_path, client_endpoint=ep, feed_endpoint=ep))
    _assert_one_line_naming(rc, stderr, "client-endpoint", "feed-endpoint", ep)


def test_option_given_twice_fails_with_one_line(tmp_path):
    rc, stderr = _run(_raw_args(tmp_path) + ["--node-id", "again"])
    _assert_one_line_naming(rc, stderr, "--node-id")


def test_option_value_that_looks_like_an_option_fails_with_one_line(tmp_path):
    args = [a for a in _raw_args(tmp_path) if a != "/dev/null" and a != "--config"]
    i = args.index("--data-dir")
    del args[i + 1]  # `--data-dir --client-endpoint ...`: the value is missing
    rc, stderr = _run(args)
    _assert_one_line_naming(rc, stderr, "--data-dir")
    assert not any(p.name.startswith("--") for p in Path.cwd().iterdir())


def test_data_dir_in_use_by_another_edgekvd_fails_with_one_line(daemons):
    first = daemons.start("node1")
    second = daemons.new("node2", data_dir=first.data_dir)
    second.node_id = first.node_id  # the same node, started twice: its placement names it
    rc, stderr = second.run_to_exit()
    _assert_one_line_naming(rc, stderr, str(first.data_dir))
    with first.client() as c:  # the first one is unaffected
        assert c.put(b"k", b"v").code == h.pb.OK
    assert first.stop() == 0
    second.start()  # free once the first one stopped
    with second.client() as c:
        assert c.get(b"k").get.value == b"v"
