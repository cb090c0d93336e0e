"""libedgekv as applications use it: the build installed into a scratch DESTDIR, the
example program (client/example/put_get.cc) compiled with nothing but the flags
`pkg-config --cflags --libs edgekv` gives, then run against a live edgekvd and against an
endpoint where nothing listens."""

import os
import subprocess
from pathlib import Path

import pytest

import edgekv_harness as h

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = os.environ["EDGEKV_BUILD_DIR"]
CXX = os.environ["EDGEKV_CXX"]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["cmake", "--install", BUILD_DIR], env=dict(os.environ, DESTDIR=str(root)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pcs = list(root.rglob("pkgconfig/edgekv.pc"))
    assert len(pcs) == 1, f"edgekv.pc installed {len(pcs)} times: {pcs}"
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "edgekv"],
                       env=dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    flags = r.stdout.split()
    assert not any(str(REPO) in f for f in flags), f"flags point into the source tree: {flags}"
    # A sanitized build's library needs the program linked with the same runtime.
    sanitize = os.environ.get("EDGEKV_SANITIZE")
    extra = [f"-fsanitize={sanitize}"] if sanitize else []
    out = root / "put_get"
    r = subprocess.run([CXX, "-std=c++20", "-Wall", "-Wextra", "-Werror", *extra,
                        str(REPO / "client" / "example" / "put_get.cc"), *flags, "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"compiling against the installed library failed:\n{r.stderr}"
    return out


def test_the_example_writes_and_reads_back_through_a_live_node(daemons, program):
    node = daemons.new("node1").start()
    r = subprocess.run([str(program), node.client_endpoint, "greeting", "hello"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("greeting = hello (version "), r.stdout
    with node.client() as c:
        resp = c.get(b"greeting")
        assert resp.code == h.pb.OK and resp.get.value == b"hello", resp


def test_the_example_reports_a_node_that_does_not_answer(program):
    with h.DeadEndpoint() as endpoint:
        r = subprocess.run([str(program), endpoint, "k", "v"], capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 1
    assert "put: TIMEOUT: no answer from " + endpoint in r.stderr, r.stderr
