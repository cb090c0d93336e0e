#!/usr/bin/env bash
# The package under a real systemd (ctest package.nspawn).
#
#   nspawn_test.sh DEBDIR VERSION ROOT
#
# Boots a container with systemd-nspawn from ROOT (a cached Debian root, made once by
# test-root.sh; --volatile=overlay, so every boot starts from it unchanged) with a
# private network (its own loopback only), installs DEBDIR/edgekv_VERSION_ARCH.deb with
# apt-get and checks, in order: files, owners, modes, the edgekv user; the units with
# systemd-analyze verify; start, kvcli put/get, the journal with priorities; restart after
# kill -9; the watchdog killing a stopped (hung) daemon; a clean stop keeping the data;
# two edgekv@ instances (joining one cluster when the daemon has gossip options); remove
# keeping the data; purge deleting it.
#
# Needs root and systemd-nspawn: without them it says so and exits 77 (ctest: skipped).
# Every wait polls a condition against a deadline. The container, its propagation
# directory and the temporary files are removed on every exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
debdir=${1:?usage: nspawn_test.sh DEBDIR VERSION ROOT}
version=${2:?usage: nspawn_test.sh DEBDIR VERSION ROOT}
root=${3:?usage: nspawn_test.sh DEBDIR VERSION ROOT}

skip() {
  echo "######################################################################" >&2
  echo "## SKIPPED package.nspawn: $*" >&2
  echo "## The package was NOT tested under systemd." >&2
  echo "######################################################################" >&2
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root (systemd-nspawn, nsenter)"
for tool in systemd-nspawn nsenter flock; do
  command -v "$tool" >/dev/null || skip "$tool is missing (scripts/install-deps.sh installs it)"
done
[ -d "$root" ] || command -v debootstrap >/dev/null ||
  skip "no cached root at $root and no debootstrap to make one"

deb="$debdir/edgekv_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "FAIL: $deb is missing (package.deb builds it)" >&2; exit 1; }

name="edgekv-test-$$"
work=$(mktemp -d)
nspawn_pid=""
leader=""

step() { echo "== $*"; }
die() {
  echo "FAIL: $*" >&2
  if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
    echo "--- journal of the edgekv units in the container:" >&2
    in_ct journalctl --no-pager -n 60 -u 'edgekv*' >&2 || true
  fi
  exit 1
}

# Runs a command in the container (all its namespaces), with a clean environment and a
# time limit (T seconds, default 60). Never in the background: nothing of ours may be
# left running inside when the container shuts down.
in_ct() {
  timeout "${T:-60}" nsenter -t "$leader" -a -- env -i \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C SYSTEMD_PAGER= SYSTEMD_COLORS=0 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$(( $(date +%s%N) + seconds * 1000000000 ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || die "after ${seconds} s: $what"
    sleep 0.2
  done
}

cleanup() {
  local rc=$? deadline
  trap - EXIT
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    if [ -n "$leader" ]; then
      timeout 10 nsenter -t "$leader" -a -- systemctl poweroff >/dev/null 2>&1 || true
    fi
    deadline=$(( $(date +%s) + 30 ))
    while kill -0 "$nspawn_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "container $name did not power off: terminating systemd-nspawn ($nspawn_pid)" >&2
      kill -TERM "$nspawn_pid" 2>/dev/null || true
      deadline=$(( $(date +%s) + 15 ))
      while kill -0 "$nspawn_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
      kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "/run/systemd/nspawn/propagate/$name"
  [ "$rc" -ne 0 ] && [ -s "$work/boot.log" ] && { echo "--- container console:" >&2; tail -n 30 "$work/boot.log" >&2; }
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One test at a time uses (and may update) the cached root.
exec 9>"$root.lock"
flock -w 900 9 || die "$root.lock is held by another test for 15 minutes"
"$here/test-root.sh" "$root" "$deb" || die "cannot prepare the root $root"

step "boot a container from $root"
systemd-nspawn -q -D "$root" -M "$name" -b --register=no --keep-unit --volatile=overlay \
  --private-network --console=read-only --bind-ro="$debdir:/mnt/deb" \
  >"$work/boot.log" 2>&1 &
nspawn_pid=$!
find_leader() {
  local pid
  pid=$(ps -o pid= --ppid "$nspawn_pid" | head -n 1 | tr -d ' ')
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
}
wait_for 30 "the container's systemd did not start (see the console below)" find_leader
system_up() { in_ct systemctl is-system-running | grep -qxE 'running|degraded'; }
wait_for 90 "the container's systemd did not finish booting" system_up

step "install the package with apt-get"
T=300 in_ct apt-get install -y -q --no-install-recommends "/mnt/deb/$(basename "$deb")" \
  >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; die "apt-get install failed"; }

step "files, owners, modes, the edgekv user"
expect_stat() {  # expect_stat 'OWNER:GROUP MODE' PATH
  local got
  got=$(in_ct stat -c '%U:%G %a' "$2" 2>&1) || die "$2 is missing"
  [ "$got" = "$1" ] || die "$2 is $got, expected $1"
}
expect_stat "root:root 755" /usr/sbin/edgekvd
expect_stat "root:root 755" /usr/bin/kvcli
expect_stat "root:root 644" /etc/edgekv/edgekv.conf
expect_stat "root:root 644" /lib/systemd/system/edgekv.service
expect_stat "root:root 644" /lib/systemd/system/edgekv@.service
expect_stat "root:root 644" /usr/share/man/man8/edgekvd.8.gz
expect_stat "edgekv:edgekv 750" /var/lib/edgekv
passwd=$(in_ct getent passwd edgekv) || die "no edgekv user"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd"
[ "$uid" -lt 1000 ] || die "edgekv is not a system user (uid $uid)"
[ "$home" = /var/lib/edgekv ] || die "edgekv's home is $home"
[ "$shell" = /usr/sbin/nologin ] || die "edgekv's shell is $shell"
[ "$(in_ct getent group edgekv | cut -d: -f3)" = "$gid" ] || die "no edgekv group for gid $gid"
in_ct dpkg-query -W -f='${Conffiles}\n' edgekv | grep -q '^ /etc/edgekv/edgekv.conf ' ||
  die "/etc/edgekv/edgekv.conf is not a registered conffile"
[ "$(in_ct systemctl is-enabled edgekv)" = enabled ] || die "edgekv.service is not enabled"

step "systemd-analyze verify (installed units)"
# Documentation= is checked on the host (package.deb): this root has no man.
verify=$(in_ct systemd-analyze verify --man=no edgekv.service edgekv@node1.service 2>&1) ||
  die "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || die "systemd-analyze verify:"$'\n'"$verify"

step "systemctl start edgekv, kvcli put and get"
in_ct systemctl start edgekv || die "systemctl start edgekv failed"
[ "$(in_ct systemctl is-active edgekv)" = active ] || die "edgekv is not active"
main_pid() { in_ct systemctl show -p MainPID --value edgekv; }
pid=$(main_pid)
[ "$pid" -gt 0 ] || die "no main PID"
in_ct systemctl show -p StatusText --value edgekv | grep -q '^serving ' ||
  die "no STATUS= from the daemon (sd_notify)"
daemon_uid=$(in_ct awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$daemon_uid" = "$uid" ] || die "edgekvd runs as uid $daemon_uid, not edgekv ($uid)"
in_ct kvcli put greeting hello >/dev/null || die "kvcli put failed"
[ "$(in_ct kvcli get greeting)" = hello ] || die "kvcli get did not return the value put"
expect_stat "edgekv:edgekv 600" /var/lib/edgekv/data-0.db

step "journalctl -u edgekv: the daemon's lines with their priorities"
notice_line() { in_ct journalctl -u edgekv -p notice..notice -o cat | grep -q "^edgekvd $version node"; }
wait_for 10 "no start line at priority notice in the journal" notice_line
info_line() { in_ct journalctl -u edgekv -p info..info -o cat | grep -q '^store: opened /var/lib/edgekv'; }
wait_for 10 "no 'store: opened' line at priority info in the journal" info_line
in_ct journalctl -u edgekv -o cat _SYSTEMD_UNIT=edgekv.service | grep -q '^<[0-7]>' &&
  die "priority prefixes were not taken by journald"

step "kill -9 the main process: Restart= brings it back"
restarts=$(in_ct systemctl show -p NRestarts --value edgekv)
in_ct bash -c "kill -9 $pid"
restarted() {
  local now
  now=$(main_pid)
  [ "$now" != 0 ] && [ "$now" != "$pid" ] &&
    [ "$(in_ct systemctl is-active edgekv)" = active ] &&
    [ "$(in_ct systemctl show -p NRestarts --value edgekv)" -gt "$restarts" ]
}
wait_for 30 "edgekv was not restarted after kill -9" restarted
[ "$(in_ct kvcli get greeting)" = hello ] || die "the value is gone after kill -9 and restart"

step "a hung daemon (SIGSTOP) is killed by the watchdog and restarted"
in_ct mkdir -p /run/systemd/system/edgekv.service.d
in_ct bash -c 'printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=10s\nLimitCORE=0\n" \
  >/run/systemd/system/edgekv.service.d/50-watchdog-test.conf'
in_ct systemctl daemon-reload
in_ct systemctl restart edgekv || die "restart with WatchdogSec=2s failed"
[ "$(in_ct systemctl show -p WatchdogUSec --value edgekv)" = 2s ] || die "the drop-in did not apply"
pid=$(main_pid)
restarts=$(in_ct systemctl show -p NRestarts --value edgekv)
# While it runs, the daemon keeps the watchdog fed: systemd records each WATCHDOG=1.
fed_at=$(in_ct systemctl show -p WatchdogTimestampMonotonic --value edgekv)
fed_again() {
  [ "$(in_ct systemctl show -p WatchdogTimestampMonotonic --value edgekv)" != "$fed_at" ] &&
    [ "$(main_pid)" = "$pid" ]
}
wait_for 10 "systemd received no WATCHDOG=1 from the daemon" fed_again
in_ct bash -c "kill -STOP $pid"
wait_for 30 "the watchdog did not restart the stopped daemon" restarted
in_ct journalctl -u edgekv -o cat | grep -q 'Watchdog timeout' || die "no 'Watchdog timeout' in the journal"
[ "$(in_ct kvcli get greeting)" = hello ] || die "the value is gone after the watchdog restart"
in_ct rm /run/systemd/system/edgekv.service.d/50-watchdog-test.conf
in_ct systemctl daemon-reload
in_ct systemctl restart edgekv || die "restart without the drop-in failed"

step "systemctl stop: a clean exit, the data kept"
pid=$(main_pid)
in_ct systemctl stop edgekv || die "systemctl stop edgekv failed"
[ "$(in_ct systemctl is-active edgekv || true)" = inactive ] || die "edgekv is not inactive after stop"
[ "$(in_ct systemctl show -p Result --value edgekv)" = success ] || die "the stop did not end in success"
[ "$(in_ct systemctl show -p ExecMainStatus --value edgekv)" = 0 ] || die "edgekvd did not exit 0"
in_ct journalctl -u edgekv -o cat "_PID=$pid" | grep -q '^edgekvd stopped cleanly' ||
  die "no 'stopped cleanly' line from the daemon"
in_ct systemctl start edgekv || die "start after stop failed"
[ "$(in_ct kvcli get greeting)" = hello ] || die "the value is gone after stop and start"
in_ct systemctl stop edgekv

step "two edgekv@ instances"
gossip=no
daemon_help=$(in_ct edgekvd --help)
if grep -q -- '--seeds ' <<<"$daemon_help" && grep -q -- '--gossip-endpoint ' <<<"$daemon_help"; then
  gossip=yes
fi
write_instance() {  # write_instance NAME BASEPORT [SEEDS]
  local conf="node-id = $1
client-endpoint = tcp://127.0.0.1:$(($2))
feed-endpoint = tcp://127.0.0.1:$(($2 + 3))
resp-endpoint = tcp://127.0.0.1:$(($2 + 5))"
  if [ "$gossip" = yes ]; then
    conf+="
peer-endpoint = tcp://127.0.0.1:$(($2 + 1))
gossip-endpoint = tcp://127.0.0.1:$(($2 + 2))
gossip-preset = local"
    [ -n "${3:-}" ] && conf+="
seeds = $3"
  fi
  in_ct bash -c "cat >/etc/edgekv/$1.conf" <<<"$conf"
}
write_instance a 7410
write_instance b 7420 tcp://127.0.0.1:7412
in_ct systemctl start edgekv@a edgekv@b || die "systemctl start edgekv@a edgekv@b failed"
for i in a b; do
  [ "$(in_ct systemctl is-active "edgekv@$i")" = active ] || die "edgekv@$i is not active"
  expect_stat "edgekv:edgekv 750" "/var/lib/edgekv/$i"
  expect_stat "edgekv:edgekv 600" "/var/lib/edgekv/$i/data-0.db"
done
in_ct kvcli --endpoint tcp://127.0.0.1:7410 put k from-a >/dev/null || die "put on edgekv@a failed"
[ "$(in_ct kvcli --endpoint tcp://127.0.0.1:7410 get k)" = from-a ] || die "get on edgekv@a failed"
in_ct kvcli --endpoint tcp://127.0.0.1:7420 status | grep -q '/var/lib/edgekv/b' ||
  die "edgekv@b does not report /var/lib/edgekv/b as its data directory"
if [ "$gossip" = yes ]; then
  both_alive() {  # both_alive PORT: the node at PORT sees a and b alive
    [ "$(in_ct kvcli --endpoint "tcp://127.0.0.1:$1" members |
         awk 'NR > 1 && / alive / {print $1}' | sort | tr '\n' ' ')" = "a b " ]
  }
  wait_for 30 "edgekv@a does not list a and b alive" both_alive 7410
  wait_for 30 "edgekv@b does not list a and b alive" both_alive 7420
  echo "edgekv@a and edgekv@b formed one cluster"
else
  echo "NOTE: edgekvd has no --seeds/--gossip-endpoint: both instances run, no cluster checked"
fi
in_ct systemctl stop edgekv@a edgekv@b || die "systemctl stop of the instances failed"
for i in a b; do
  [ "$(in_ct systemctl show -p Result --value "edgekv@$i")" = success ] || die "edgekv@$i did not stop cleanly"
done

step "apt-get remove: programs gone, data, configuration and user kept"
T=120 in_ct apt-get remove -y -q edgekv >"$work/remove.log" 2>&1 ||
  { cat "$work/remove.log" >&2; die "apt-get remove failed"; }
in_ct test ! -e /usr/sbin/edgekvd || die "/usr/sbin/edgekvd is still there after remove"
in_ct test ! -e /lib/systemd/system/edgekv.service || die "the unit is still there after remove"
in_ct test -f /var/lib/edgekv/data-0.db || die "remove deleted the data"
in_ct test -f /var/lib/edgekv/a/data-0.db || die "remove deleted an instance's data"
in_ct test -f /etc/edgekv/edgekv.conf || die "remove deleted the conffile"
in_ct getent passwd edgekv >/dev/null || die "remove deleted the edgekv user"

step "apt-get purge: data and configuration deleted"
T=120 in_ct apt-get purge -y -q edgekv >"$work/purge.log" 2>&1 ||
  { cat "$work/purge.log" >&2; die "apt-get purge failed"; }
in_ct test ! -e /var/lib/edgekv || die "/var/lib/edgekv is still there after purge"
in_ct test ! -e /etc/edgekv/edgekv.conf || die "/etc/edgekv/edgekv.conf is still there after purge"
in_ct test ! -e /etc/systemd/system/multi-user.target.wants/edgekv.service ||
  die "the enablement symlink is still there after purge"
in_ct dpkg-query -W -f='${db:Status-Status}\n' edgekv 2>/dev/null | grep -qx 'installed\|config-files' &&
  die "dpkg still knows edgekv after purge"
# Documented in docs/packaging.md: the account stays, the administrator's files too.
in_ct getent passwd edgekv >/dev/null || die "purge deleted the edgekv user (documented as kept)"
in_ct test -f /etc/edgekv/a.conf || die "purge deleted an administrator's file"

echo "package.nspawn: OK"
