"""kvcli put/get/del against a real edgekvd, and kvcli's exit codes.

Exit codes (cli/): 0 ok, 1 not found, 2 usage, 3 unavailable/timeout, 4 other.
"""

import base64
import json
import os
import signal
import time

import pytest

import edgekv_harness as h
from edgekv_harness import describe, kvcli


def test_put_get_del_round_trip(node):
    ep = node.client_endpoint
    r = kvcli("put", "greeting", "hello world", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)

    r = kvcli("get", "greeting", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    assert r.stdout == b"hello world", describe(r)

    r = kvcli("put", "greeting", "bonjour", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "greeting", endpoint=ep)
    assert (r.returncode, r.stdout) == (h.EXIT_OK, b"bonjour"), describe(r)

    r = kvcli("del", "greeting", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "greeting", endpoint=ep)
    assert r.returncode == h.EXIT_NOT_FOUND, describe(r)
    assert r.stdout == b"", describe(r)

    # What kvcli wrote is what the wire protocol reads, and the other way round.
    with node.client() as c:
        assert c.get(b"greeting").code == h.pb.NOT_FOUND
        assert c.put(b"from-native", b"value \xe2\x9c\x93").code == h.pb.OK
    r = kvcli("get", "from-native", endpoint=ep)
    assert (r.returncode, r.stdout) == (h.EXIT_OK, "value \u2713".encode()), describe(r)


def test_get_of_missing_key_exits_1(node):
    r = kvcli("get", "never-written", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_NOT_FOUND, describe(r)
    assert r.stdout == b"", describe(r)


def test_put_with_ttl_sets_expiry(node):
    r = kvcli("put", "session", "abc", "--ttl", "3600", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)
    with node.client() as c:
        resp = c.get(b"session")
    assert resp.code == h.pb.OK and resp.get.value == b"abc"
    now_ms = int(time.time() * 1000)
    # Absolute wall-clock expiry about an hour from now (generous bounds for clock reads).
    assert now_ms + 3500_000 <= resp.get.expiry_ms <= now_ms + 3700_000, resp


@pytest.mark.parametrize("args", [
    pytest.param([], id="no-command"),
    pytest.param(["frobnicate"], id="unknown-command"),
    pytest.param(["put", "only-a-key"], id="put-missing-value"),
    pytest.param(["get"], id="get-missing-key"),
    pytest.param(["get", "a", "b"], id="get-extra-argument"),
    pytest.param(["put", "k", "v", "--ttl", "soon"], id="put-ttl-not-a-number"),
    pytest.param(["--no-such-flag", "status"], id="unknown-flag"),
])
def test_usage_errors_exit_2(node, args):
    r = kvcli(*args, endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_USAGE, describe(r)
    assert r.stderr.strip(), "a usage error says what is wrong on stderr\n" + describe(r)
    # A usage error must not have reached the node.
    with node.client() as c:
        assert c.stats()["puts"] == 0


def test_unreachable_endpoint_exits_3():
    with h.DeadEndpoint() as dead:
        start = time.monotonic()
        r = kvcli("get", "k", endpoint=dead, global_args=["--timeout", "300"])
        elapsed = time.monotonic() - start
        assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)
        assert r.stderr.startswith(b"kvcli: ") and r.stderr.count(b"\n") == 1, describe(r)
        assert r.stdout == b"", describe(r)
        assert elapsed < 10, f"--timeout 300 took {elapsed:.1f} s"

        for args in [("put", "k", "v"), ("del", "k")]:
            r = kvcli(*args, endpoint=dead, global_args=["--timeout", "300"])
            assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)


def test_endpoint_from_environment(node):
    env = {"EDGEKV_ENDPOINT": node.client_endpoint}
    r = kvcli("put", "env-key", "env-value", env=env)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "env-key", env=env)
    assert (r.returncode, r.stdout) == (h.EXIT_OK, b"env-value"), describe(r)
    # --endpoint wins over the environment.
    with h.DeadEndpoint() as dead:
        r = kvcli("get", "env-key", endpoint=node.client_endpoint,
                  env={"EDGEKV_ENDPOINT": dead})
    assert (r.returncode, r.stdout) == (h.EXIT_OK, b"env-value"), describe(r)


def test_ttl_must_be_a_positive_whole_number_of_seconds(node):
    for ttl in ["0", "-1", "1.5", "3153600001"]:  # the last is over 100 years
        r = kvcli("put", "k", "v", "--ttl", ttl, endpoint=node.client_endpoint)
        assert r.returncode == h.EXIT_USAGE, describe(r)
    with node.client() as c:
        assert c.get(b"k").code == h.pb.NOT_FOUND


def test_keys_and_values_starting_with_a_dash(node):
    ep = node.client_endpoint
    r = kvcli("put", "--", "-dash-key", "-dash-value", endpoint=ep)
    assert r.returncode == h.EXIT_OK, describe(r)
    r = kvcli("get", "--", "-dash-key", endpoint=ep)
    assert (r.returncode, r.stdout) == (h.EXIT_OK, b"-dash-value"), describe(r)
    with node.client() as c:
        assert c.get(b"-dash-key").get.value == b"-dash-value"


def test_json_output_of_put_get_del(node):
    ep = node.client_endpoint
    with node.client() as c:
        assert c.put(b"bin", b"\x00\xff\xfe binary").code == h.pb.OK
        assert c.put(b"text", "caf\u00e9 \u2603".encode()).code == h.pb.OK

    r = kvcli("put", "j", "v", "--ttl", "60", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    put = json.loads(r.stdout)
    assert put["key"] == "j" and put["expiry_ms"] > 0 and put["version"], put

    r = kvcli("get", "bin", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    got = json.loads(r.stdout)
    assert "value" not in got, got
    assert base64.b64decode(got["value_base64"]) == b"\x00\xff\xfe binary"
    assert got["expiry_ms"] == 0

    r = kvcli("get", "text", endpoint=ep, global_args=["--json"])
    got = json.loads(r.stdout)
    assert got["value"] == "caf\u00e9 \u2603" and "value_base64" not in got, got

    r = kvcli("del", "j", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_OK, describe(r)
    deleted = json.loads(r.stdout)
    assert deleted["key"] == "j" and deleted["version"] != put["version"], deleted

    r = kvcli("get", "j", endpoint=ep, global_args=["--json"])
    assert r.returncode == h.EXIT_NOT_FOUND, describe(r)
    assert r.stdout == b""


def test_unresponsive_node_times_out_with_exit_3(node):
    # A node that accepted the connection but does not answer (stopped with SIGSTOP).
    os.kill(node.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        r = kvcli("get", "k", endpoint=node.client_endpoint, global_args=["--timeout", "500"])
        elapsed = time.monotonic() - start
        assert r.returncode == h.EXIT_UNAVAILABLE, describe(r)
        assert b"500" in r.stderr, describe(r)  # says how long it waited
        assert 0.4 <= elapsed < 10, elapsed
    finally:
        os.kill(node.pid, signal.SIGCONT)
    r = kvcli("put", "k", "v", endpoint=node.client_endpoint)
    assert r.returncode == h.EXIT_OK, describe(r)


@pytest.mark.parametrize("env_endpoint", ["127.0.0.1:7400", "localhost"])
def test_malformed_endpoint_from_environment_is_a_usage_error(env_endpoint):
    r = kvcli("status", env={"EDGEKV_ENDPOINT": env_endpoint})
    assert r.returncode == h.EXIT_USAGE, describe(r)
    assert b"EDGEKV_ENDPOINT" in r.stderr, describe(r)


@pytest.mark.parametrize("args", [["--timeout", "0"], ["--timeout", "-5"],
                                  ["--timeout", "soon"], ["--endpoint", "127.0.0.1:1"]])
def test_bad_global_flag_values_are_usage_errors(args):
    r = kvcli("status", global_args=args)
    assert r.returncode == h.EXIT_USAGE, describe(r)
