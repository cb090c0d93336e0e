"""A quick run of the load generator (bench/edgekv_load) against a real node: it completes
the requested number of requests without errors, reports sane figures, and what it wrote is
really stored. `make bench` runs it for real; this keeps it working."""
import json
import os
import subprocess
import time

import edgekv_harness as h

EDGEKV_LOAD = os.environ.get("EDGEKV_LOAD", "")


def run_load(node, *args):
    """The generator's JSON report, and the seconds its whole run took as seen from here."""
    cmd = [EDGEKV_LOAD, "--endpoint", node.client_endpoint, "--json", *args]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    wall_s = time.monotonic() - started
    assert done.returncode == 0, f"{cmd} -> {done.returncode}\n{done.stderr.decode()}"
    return json.loads(done.stdout), wall_s


def test_load_generator_mixed_pipelined_run(daemons):
    node = daemons.start("node1")
    keys = 500
    report, wall_s = run_load(node, "--clients", "4", "--pipeline", "8", "--requests", "4000",
                              "--keys", str(keys), "--get-ratio", "0.5", "--value-bytes", "64",
                              "--preload")
    assert report["ops"] == 4000
    assert report["errors"] == 0
    assert report["gets"] + report["puts"] == 4000
    assert report["gets"] > 0 and report["puts"] > 0
    assert report["not_found"] == 0  # every key was preloaded
    # The rate is the operations over the measured seconds (printed to the millisecond and
    # the rate to the unit), and the measured part is within the process's whole run.
    assert 0 < report["seconds"] <= wall_s, (report, wall_s)
    low = report["ops"] / (report["seconds"] + 0.0005) - 0.5
    high = report["ops"] / max(report["seconds"] - 0.0005, 1e-9) + 0.5
    assert low <= report["ops_per_s"] <= high, report
    assert 0 < report["p50_us"] <= report["p99_us"] <= report["p999_us"]
    assert report["p999_us"] <= report["seconds"] * 1e6, report
    # The node counted what the generator says it did: the preload wrote every key once,
    # then each of its gets found a key.
    with node.client() as native:
        stats = native.stats()
    assert stats["puts"] == keys + report["puts"], (stats, report)
    assert stats["gets"] == stats["get_hits"] == report["gets"], (stats, report)
    assert stats["get_misses"] == 0 and stats["errors"] == 0, stats
    assert stats["keys"] == keys, stats


def test_load_generator_rejects_bad_options():
    done = subprocess.run([EDGEKV_LOAD, "--clients", "0"], capture_output=True, timeout=30)
    assert done.returncode == 2
    assert b"--clients" in done.stderr
