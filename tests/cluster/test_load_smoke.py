"""A quick run of the load generator (bench/edgekv_load) against a real node: it completes
the requested number of requests without errors, reports sane figures, and what it wrote is
really stored. `make bench` runs it for real; this keeps it working."""
import json
import os
import subprocess

import edgekv_harness as h

EDGEKV_LOAD = os.environ.get("EDGEKV_LOAD", "")


def run_load(node, *args):
    cmd = [EDGEKV_LOAD, "--endpoint", node.client_endpoint, "--json", *args]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    assert done.returncode == 0, f"{cmd} -> {done.returncode}\n{done.stderr.decode()}"
    return json.loads(done.stdout)


def test_load_generator_mixed_pipelined_run(daemons):
    node = daemons.start("node1")
    report = run_load(node, "--clients", "4", "--pipeline", "8", "--requests", "4000",
                      "--keys", "500", "--get-ratio", "0.5", "--value-bytes", "64",
                      "--preload")
    assert report["ops"] == 4000
    assert report["errors"] == 0
    assert report["gets"] + report["puts"] == 4000
    assert report["gets"] > 0 and report["puts"] > 0
    assert report["not_found"] == 0  # every key was preloaded
    assert report["ops_per_s"] > 0
    assert 0 < report["p50_us"] <= report["p99_us"] <= report["p999_us"]
    with node.client() as native:
        assert native.stats()["keys"] == 500


def test_load_generator_rejects_bad_options():
    done = subprocess.run([EDGEKV_LOAD, "--clients", "0"], capture_output=True, timeout=30)
    assert done.returncode == 2
    assert b"--clients" in done.stderr
