#!/usr/bin/env bash
# `make bench`: edgekv measured side by side with Redis on this machine, in one run.
# Installs what the comparison needs (redis-server, redis-tools) if it is missing, without
# ever starting the system Redis service, then runs bench/compare.py, which starts its own
# servers on free loopback ports in a temporary directory and removes them on any exit.
#
# Usage: bench/run.sh [BUILD_DIR] [compare.py options...]   e.g. bench/run.sh build/release --quick
# BUILD_DIR (default build/release) is relative to the repository's top directory.
# bench/compare.py --help lists the options (--quick, --cases, --reps, --seconds, ...); then
# bench/cluster_bench.py runs the cluster case (three nodes, N=3, against one, N=1),
# bench/handoff_bench.py hinted handoff's drain, bench/hand_over_bench.py a join and a
# removal under a write load, and anti_entropy_bench (built here) what anti-entropy
# exchanges between two replicas of 1 M keys at 0 %, 0.1 % and 1 % divergence.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=build/release
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a first argument that is not an option
  build=$1
  shift
fi

packages=(redis-server redis-tools python3)
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "edgekv bench: installing missing packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "edgekv bench: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  # Installing redis-server would start the system service (and take port 6379). A
  # policy-rc.d that answers 101 ("action forbidden") stops invoke-rc.d and
  # deb-systemd-invoke from starting anything; one already in place is left alone.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from edgekv bench/run.sh: start no service while installing\nexit 101\n' |
      $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    made_policy=1
  fi
  cleanup_policy() { if [ "$made_policy" = 1 ]; then $sudo rm -f "$policy"; fi; }
  trap cleanup_policy EXIT
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
  cleanup_policy
  made_policy=0
  trap - EXIT
fi

cd "$top"
status=0
/usr/bin/python3 "$top/bench/compare.py" --build "$build" "$@" || status=$?
# The cluster case: three nodes with N=3 against one with N=1 (bench/cluster_bench.py).
/usr/bin/python3 "$top/bench/cluster_bench.py" --build "$build" || status=$?
# Hinted handoff's drain after a node missed 100 000 writes (bench/handoff_bench.py).
/usr/bin/python3 "$top/bench/handoff_bench.py" --build "$build" || status=$?
# A join and a removal under a write load, against the same load with none
# (bench/hand_over_bench.py).
/usr/bin/python3 "$top/bench/hand_over_bench.py" --build "$build" || status=$?
# Anti-entropy's bytes and time on two replicas of 1 M keys (bench/anti_entropy_bench.cc).
if cmake --build "$build" --target anti_entropy_bench; then
  "$build/bench/anti_entropy_bench" || status=$?
else
  status=1
fi
exit $status
