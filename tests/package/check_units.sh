#!/usr/bin/env bash
# The systemd units as written (ctest package.units): the settings the service protocol
# depends on, and the sandbox's exposure by `systemd-analyze security --offline=true`
# (at most 1.2). `systemd-analyze verify` runs on the installed units (package.deb and,
# under a real systemd, package.nspawn).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
max_exposure=12  # tenths

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# `Key=value` lines of a unit, exactly as given (comments and blank lines dropped).
settings() { grep -E '^[A-Za-z]+=' "$1"; }

need() {  # need UNIT LINE: the unit has exactly this line
  settings "$1" | grep -qxF -- "$2" || fail "$(basename "$1"): missing '$2'"
}

for unit in "$top/systemd/edgekv.service" "$top/systemd/edgekv@.service"; do
  name=$(basename "$unit")
  [ -f "$unit" ] || { fail "$unit is missing"; continue; }
  for line in Type=notify Restart=on-failure User=edgekv Group=edgekv \
      NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
      PrivateDevices=yes ProtectKernelTunables=yes ProtectKernelModules=yes \
      ProtectKernelLogs=yes ProtectControlGroups=yes RestrictNamespaces=yes \
      LockPersonality=yes MemoryDenyWriteExecute=yes SystemCallFilter=@system-service \
      CapabilityBoundingSet= WantedBy=multi-user.target; do
    need "$unit" "$line"
  done
  settings "$unit" | grep -q '^WatchdogSec=[1-9]' || fail "$name: no WatchdogSec"
  settings "$unit" | grep -q '^LimitNOFILE=[1-9]' || fail "$name: no LimitNOFILE"
  settings "$unit" | grep -q '^RestrictAddressFamilies=' || fail "$name: no RestrictAddressFamilies"
  # The daemon does not reload on SIGHUP (it stops): a reload command would lie.
  settings "$unit" | grep -q '^ExecReload=' && fail "$name: ExecReload= but edgekvd cannot reload"

  report=$(systemd-analyze security --offline=true --threshold=$max_exposure "$unit" 2>&1) ||
    fail "$name: exposure above $max_exposure tenths:"$'\n'"$(grep -E '✗|Overall' <<<"$report")"
  grep -E '^→ Overall' <<<"$report" || fail "$name: no exposure level in: $report"
done

need "$top/systemd/edgekv.service" "ExecStart=/usr/sbin/edgekvd --config /etc/edgekv/edgekv.conf"
need "$top/systemd/edgekv.service" "StateDirectory=edgekv"
need "$top/systemd/edgekv@.service" \
  "ExecStart=/usr/sbin/edgekvd --config /etc/edgekv/%i.conf --data-dir /var/lib/edgekv/%i"
need "$top/systemd/edgekv@.service" "StateDirectory=edgekv/%i"

if [ "$failures" -gt 0 ]; then
  echo "$failures problem(s) in the units"
  exit 1
fi
echo "units: OK"
