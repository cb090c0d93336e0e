"""Power cuts: what edgekvd's data directory holds when the power fails.

The power-cut shim (tests/powercut/powercut_shim.cc), preloaded, keeps beside a watched
directory its "durable image": the writes that were fsync'd and the names an fsync
committed. Its own test here proves it drops what was not synced.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SHIM = os.environ.get("EDGEKV_POWERCUT_SHIM", "")


# ---------------------------------------------------------------------------- the shim

def shim_env(data_dir: Path, image_dir: Path, runtimes=()) -> dict[str, str]:
    assert SHIM and os.path.exists(SHIM), (
        "EDGEKV_POWERCUT_SHIM is not set or missing: run through ctest, or build the "
        "edgekv_powercut target and set it")
    return {
        "LD_PRELOAD": ":".join([*runtimes, SHIM]),
        "EDGEKV_POWERCUT_DIR": str(data_dir),
        "EDGEKV_POWERCUT_IMAGE": str(image_dir),
    }


# Run under the shim: each step changes files in the watched directory, then records what
# the image holds. Reading the image is not followed by the shim (it is outside the
# watched directory).
_SHIM_SCRIPT = r"""
import json, os, sys
d, image = sys.argv[1], sys.argv[2]
steps = []
def snap(label):
    files = {}
    for name in sorted(os.listdir(image)):
        with open(os.path.join(image, name), "rb") as f:
            files[name] = f.read().decode("latin-1")
    steps.append([label, files])

a = os.open(d + "/a", os.O_RDWR | os.O_CREAT, 0o644)
os.write(a, b"old")
snap("a written, not synced")
os.fsync(a)
snap("a synced")
os.pwrite(a, b"new", 0)
b = os.open(d + "/b", os.O_RDWR | os.O_CREAT, 0o644)
os.write(b, b"never synced")
os.close(b)
snap("a overwritten, b created, neither synced")
c = os.open(d + "/c", os.O_RDWR | os.O_CREAT, 0o644)
os.write(c, b"0123456789")
os.fdatasync(c)
snap("c synced")
os.ftruncate(c, 4)
os.pwrite(c, b"XY", 6)
os.rename(d + "/a", d + "/a2")
os.unlink(d + "/b")
snap("c truncated and written, a renamed, b unlinked, nothing synced")
os.fsync(a)
snap("a synced again")
os.fsync(c)
snap("c synced again")
w = os.open(d + "/wal", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(w, b"A" * 8192, 0)
os.fsync(w)
os.pwrite(w, b"B" * 4096, 0)
os.fsync(w)
os.pwrite(w, b"C" * 4096, 4096)
os.ftruncate(w, 4096 + 100)
snap("wal reset from 0 and synced, then written past it unsynced")
print(json.dumps(steps))
"""


def test_shim_keeps_only_synced_writes(tmp_path):
    data, image = tmp_path / "data", tmp_path / "image"
    data.mkdir()
    image.mkdir()
    env = dict(os.environ)
    env.update(shim_env(data, image))
    run = subprocess.run([sys.executable, "-I", "-S", "-c", _SHIM_SCRIPT, str(data), str(image)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    steps = dict((label, files) for label, files in json.loads(run.stdout))
    expected = {
        "a written, not synced": {},
        "a synced": {"a": "old"},
        # b's name was never committed by an fsync; the overwrite of a never synced.
        "a overwritten, b created, neither synced": {"a": "old"},
        # c's fsync commits every earlier name: b appears, empty (its data never synced).
        "c synced": {"a": "old", "b": "", "c": "0123456789"},
        "c truncated and written, a renamed, b unlinked, nothing synced":
            {"a": "old", "b": "", "c": "0123456789"},
        "a synced again": {"a2": "new", "c": "0123456789"},
        "c synced again": {"a2": "new", "c": "0123\0\0XY"},
        "wal reset from 0 and synced, then written past it unsynced":
            {"a2": "new", "c": "0123\0\0XY", "wal": "B" * 4096 + "A" * 4096},
    }
    assert steps == expected
    # Meanwhile the process saw every write, as without the shim.
    assert (data / "a2").read_bytes() == b"new"
    assert (data / "wal").read_bytes() == b"B" * 4096 + b"C" * 100
