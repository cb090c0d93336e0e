#!/usr/bin/env bash
# Installs the Debian packages edgekv needs to build and test, if any are missing.
# Idempotent: prints what it installs, or nothing to do. Usage: scripts/install-deps.sh
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  libzmq3-dev cppzmq-dev libsqlite3-dev libzstd-dev libssl-dev
  libboost-program-options-dev libsystemd-dev libgtest-dev libgmock-dev
  protobuf-compiler libprotobuf-dev libxxhash-dev
  python3-pytest python3-zmq python3-protobuf
  redis-tools python3-redis
  debhelper lintian mandoc man-db systemd-container debootstrap procps
  iptables faketime
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "edgekv: installing missing build dependencies: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "edgekv: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
