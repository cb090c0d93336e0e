#!/usr/bin/env bash
# Makes (once) and updates the Debian root that the package tests boot with systemd-nspawn.
#
#   test-root.sh ROOT DEB
#
# ROOT (e.g. /var/cache/edgekv-test-root) is made with debootstrap if it is not there yet:
# a minimal Debian of the host's release with systemd, from the host's apt mirror (about
# 90 s and 250 MB, once). Then every dependency of DEB is installed into it if missing, so
# that the package installs in a container without network. The caller holds the lock.
# Containers boot from ROOT with --volatile=overlay and never change it.
set -euo pipefail

root=${1:?usage: test-root.sh ROOT DEB}
deb=${2:?usage: test-root.sh ROOT DEB}
marker="$root/.edgekv-test-root"

say() { echo "test-root: $*"; }
die() { echo "test-root: $*" >&2; exit 1; }

# The first Debian mirror of the host's apt sources (deb822 or one-line format).
host_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    case "$uri" in *security*|"") ;; *) echo "$uri"; return 0 ;; esac
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

# apt inside the root as on the host: the same sources, and the host's settings about
# the Release files' dates (a snapshot mirror's Release files may be past Valid-Until).
copy_apt_config() {
  local f
  mkdir -p "$root/etc/apt/sources.list.d" "$root/etc/apt/apt.conf.d"
  rm -f "$root/etc/apt/sources.list"
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && cp "$f" "$root/etc/apt/sources.list.d/"
  done
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -qiE 'Check-Valid-Until|Check-Date' "$f" &&
      cp "$f" "$root/etc/apt/apt.conf.d/"
  done
  return 0
}

# Runs a command in the root (not booted), with the host's network, for apt.
# nspawn may leave its propagation directory behind: removed after each run.
in_root() {
  local name="edgekv-root-prep-$$" rc=0
  systemd-nspawn -q -D "$root" -M "$name" --register=no --keep-unit --pipe \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@" || rc=$?
  rm -rf "/run/systemd/nspawn/propagate/$name"
  return $rc
}

if [ ! -f "$marker" ]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/install-deps.sh"
  . /etc/os-release
  suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
  mirror=${EDGEKV_TEST_MIRROR:-$(host_mirror)} || die "no Debian mirror in the host's apt sources; set EDGEKV_TEST_MIRROR"
  say "making $root with debootstrap ($suite from $mirror; once, about 90 s)"
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  if ! debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,libsystemd0,iproute2 \
        "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    die "debootstrap failed (log: $root.log)"
  fi
  copy_apt_config
  # No network inside the test containers: nothing to wait for at boot.
  in_root systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true
  in_root apt-get update -qq || die "apt-get update failed in $root"
  touch "$marker"
  say "made $root"
fi

# The package's dependencies, installed when missing (a no-op once they are there).
depends=$(dpkg-deb -f "$deb" Depends)
if ! in_root apt-get satisfy -s -qq "$depends" 2>/dev/null | grep -q '^Inst '; then
  exit 0
fi
say "installing the package's dependencies into $root"
copy_apt_config
in_root apt-get update -qq || die "apt-get update failed in $root"
in_root apt-get -o DPkg::Lock::Timeout=600 satisfy -y -qq --no-install-recommends "$depends" \
  >/dev/null || die "cannot install the dependencies of $(basename "$deb") in $root: $depends"
in_root apt-get clean
