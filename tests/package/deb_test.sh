#!/usr/bin/env bash
# Builds the Debian packages and checks them without installing them (ctest package.deb):
# lintian, contents with owners and modes, conffiles, maintainer scripts, the packaged
# configuration and man pages against the packaged binaries, `systemd-analyze verify`;
# libedgekv-dev: its contents, and its example compiled against the extracted package and
# run against the extracted daemon.
#   deb_test.sh OUTDIR VERSION
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: deb_test.sh OUTDIR VERSION}
version=${2:?usage: deb_test.sh OUTDIR VERSION}

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# EDGEKV_DEB_PREBUILT=1 checks the package already in OUTDIR (when working on this test).
if [ "${EDGEKV_DEB_PREBUILT:-0}" != 1 ]; then
  JOBS=${JOBS:-$(nproc)} "$top/packaging/deb/build.sh" "$out"
fi
deb="$out/edgekv_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "FAIL: $deb was not built"; exit 1; }
devdeb="$out/libedgekv-dev_${version}_$(dpkg --print-architecture).deb"
[ -f "$devdeb" ] || { echo "FAIL: $devdeb was not built"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- lintian, and a written reason for every override -------------------------------
echo "== lintian"
if ! lintian --fail-on error,warning "$deb" "$devdeb" >"$work/lintian" 2>&1; then
  fail "lintian --fail-on error,warning:"$'\n'"$(cat "$work/lintian")"
fi
cat "$work/lintian"
for overrides in "$top"/packaging/deb/debian/*lintian-overrides; do
  [ -f "$overrides" ] || continue
  awk 'NF && !/^#/ && prev !~ /^#/ {print FILENAME ": override without a reason: " $0; bad = 1}
       {prev = $0} END {exit bad}' "$overrides" || fail "an override in $overrides has no comment"
done

# --- contents: path, mode, owner -------------------------------------------------------
echo "== contents"
dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}' >"$work/contents"
expect() {  # expect MODE PATH
  grep -qxF -e "$1 root/root ./$2" "$work/contents" || fail "not in the package as $1 root/root: /$2"
}
expect -rwxr-xr-x usr/sbin/edgekvd
expect -rwxr-xr-x usr/bin/kvcli
expect -rw-r--r-- etc/edgekv/edgekv.conf
expect -rw-r--r-- lib/systemd/system/edgekv.service
expect -rw-r--r-- lib/systemd/system/edgekv@.service
expect -rw-r--r-- usr/lib/sysusers.d/edgekv.conf
expect -rw-r--r-- usr/lib/tmpfiles.d/edgekv.conf
expect -rw-r--r-- usr/share/man/man8/edgekvd.8.gz
expect -rw-r--r-- usr/share/man/man1/kvcli.1.gz
expect -rw-r--r-- usr/share/man/man5/edgekv.conf.5.gz
expect -rw-r--r-- usr/share/doc/edgekv/copyright
expect -rw-r--r-- usr/share/doc/edgekv/changelog.gz
expect -rw-r--r-- usr/share/doc/edgekv/packaging.md.gz
# The lintian overrides for the maintainer's placeholder address (debian/*.lintian-overrides).
expect -rw-r--r-- usr/share/lintian/overrides/edgekv
# Nothing but directories, and files of those places.
grep -vE ' \./(usr/(sbin|bin)/|etc/edgekv/|lib/systemd/system/|usr/lib/(sysusers|tmpfiles)\.d/|usr/share/(man|doc)/|usr/share/lintian/overrides/edgekv$)' \
  "$work/contents" | grep -v '^d' | sed 's/^/unexpected: /' | grep . && fail "unexpected files in the package"
grep -q ' \./var/lib' "$work/contents" && fail "/var/lib/edgekv must not be shipped (made at install)"

# --- control data -------------------------------------------------------------------------
echo "== control"
[ "$(dpkg-deb -f "$deb" Package)" = edgekv ] || fail "Package is not edgekv"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is not $version"
dpkg-deb -f "$deb" Depends | grep -q 'systemd' || fail "Depends lacks systemd (for systemd-sysusers)"
dpkg-deb -I "$deb" conffiles | grep -qxF /etc/edgekv/edgekv.conf ||
  fail "/etc/edgekv/edgekv.conf is not a conffile"
dpkg-deb -e "$deb" "$work/control"
grep -q 'systemd-sysusers' "$work/control/postinst" || fail "postinst does not create the user"
grep -q 'systemd-tmpfiles .*--create edgekv.conf' "$work/control/postinst" || fail "postinst does not create /var/lib/edgekv"
grep -q 'deb-systemd-helper' "$work/control/postinst" || fail "postinst does not enable the service"
awk '/"\$1" = "purge"/ {p = 1} p && /rm -rf \/var\/lib\/edgekv$/ {found = 1} END {exit !found}' \
  "$work/control/postrm" || fail "postrm does not delete /var/lib/edgekv on purge"
grep -rq '/var/lib/edgekv' "$work/control/prerm" 2>/dev/null && fail "prerm touches the data"

# --- files ---------------------------------------------------------------------------
echo "== files"
dpkg-deb -x "$deb" "$work/root"
r="$work/root"
grep -qxE 'u edgekv - "[^"]+" /var/lib/edgekv /usr/sbin/nologin' "$r/usr/lib/sysusers.d/edgekv.conf" ||
  fail "sysusers.d: no system user edgekv with home /var/lib/edgekv"
grep -qxF 'd /var/lib/edgekv 0750 edgekv edgekv -' "$r/usr/lib/tmpfiles.d/edgekv.conf" ||
  fail "tmpfiles.d: /var/lib/edgekv is not 0750 edgekv:edgekv"
for unit in edgekv.service edgekv@.service; do
  cmp -s "$top/systemd/$unit" "$r/lib/systemd/system/$unit" || fail "$unit differs from systemd/$unit"
done
[ "$("$r/usr/sbin/edgekvd" --version)" = "edgekvd $version" ] ||
  fail "edgekvd --version says '$("$r/usr/sbin/edgekvd" --version)', not 'edgekvd $version'"
[ "$("$r/usr/bin/kvcli" --version)" = "kvcli $version" ] || fail "kvcli --version is not $version"
# The conffile documents every option of the packaged daemon, commented out.
options=$("$r/usr/sbin/edgekvd" --help | sed -n '/^Options:$/,$ s/^  --\([a-z0-9-]*\) (default: .*)$/\1/p')
[ "$(wc -w <<<"$options")" -ge 5 ] || fail "cannot read the options of edgekvd --help"
for option in $options; do
  grep -qE "^#$option =( |$)" "$r/etc/edgekv/edgekv.conf" ||
    fail "/etc/edgekv/edgekv.conf does not document the option $option (regenerate etc/edgekv.conf)"
done
grep -qE '^[a-z]' "$r/etc/edgekv/edgekv.conf" && fail "/etc/edgekv/edgekv.conf sets something: every option must be commented out"

# --- the packaged man pages ------------------------------------------------------------
echo "== man pages"
mkdir "$work/man"
for page in man8/edgekvd.8 man1/kvcli.1 man5/edgekv.conf.5; do
  gzip -dc "$r/usr/share/man/$page.gz" >"$work/man/$(basename "$page")"
done
grep -q "edgekv $version" "$work/man/edgekvd.8" || fail "edgekvd(8) does not carry version $version"
/usr/bin/python3 "$here/check_man.py" --pages "$work/man" \
  --edgekvd "$r/usr/sbin/edgekvd" --kvcli "$r/usr/bin/kvcli" || fail "packaged man pages"

# --- systemd-analyze verify on the units as installed ----------------------------------
# Without installing anything: the units point at the extracted binary, and man finds the
# extracted pages (Documentation=). Any output is a problem (it exits 0 on bad keys).
echo "== systemd-analyze verify"
mkdir "$work/units"
for unit in edgekv.service edgekv@.service; do
  sed "s|/usr/sbin/edgekvd|$r/usr/sbin/edgekvd|" "$r/lib/systemd/system/$unit" >"$work/units/$unit"
done
verify=$(cd "$work" && MANPATH="$r/usr/share/man" SYSTEMD_LOG_COLOR=0 \
  systemd-analyze verify "$work/units/edgekv.service" "$work/units/edgekv@node1.service" 2>&1) ||
  fail "systemd-analyze verify failed"
[ -z "$verify" ] || fail "systemd-analyze verify:"$'\n'"$verify"

# --- libedgekv-dev ----------------------------------------------------------------------
echo "== libedgekv-dev"
[ "$(dpkg-deb -f "$devdeb" Version)" = "$version" ] || fail "libedgekv-dev: Version is not $version"
for dep in libprotobuf-dev libxxhash-dev libzmq3-dev; do
  dpkg-deb -f "$devdeb" Depends | grep -qw "$dep" || fail "libedgekv-dev does not depend on $dep"
done
dpkg-deb --contents "$devdeb" | awk '{print $1, $2, $6}' >"$work/dev-contents"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for path in usr/include/edgekv/client/client.h usr/include/edgekv/client/subscription.h \
            usr/include/edgekv/client/types.h usr/include/edgekv/common/status.h \
            "usr/lib/$multiarch/libedgekv.a" "usr/lib/$multiarch/pkgconfig/edgekv.pc" \
            usr/share/doc/libedgekv-dev/examples/put_get.cc usr/share/doc/libedgekv-dev/copyright \
            usr/share/lintian/overrides/libedgekv-dev; do
  grep -qxF -e "-rw-r--r-- root/root ./$path" "$work/dev-contents" ||
    fail "not in libedgekv-dev as -rw-r--r-- root/root: /$path"
done
grep -vE ' \./usr/(include/edgekv/|lib/'"$multiarch"'/|share/doc/libedgekv-dev/|share/lintian/overrides/libedgekv-dev$)' "$work/dev-contents" |
  grep -v '^d' | sed 's/^/unexpected in libedgekv-dev: /' | grep . && fail "unexpected files in libedgekv-dev"
# An application's build: the extracted package, its pkg-config file and nothing else of
# this tree; then the program against the extracted daemon, over ipc:// endpoints.
dpkg-deb -x "$devdeb" "$work/dev"
example="$work/dev/usr/share/doc/libedgekv-dev/examples/put_get.cc"
if ! flags=$(PKG_CONFIG_PATH="$work/dev/usr/lib/$multiarch/pkgconfig" pkg-config --cflags --libs edgekv); then
  fail "pkg-config --cflags --libs edgekv fails on the packaged edgekv.pc"
elif ! (cd "$work" && g++ -std=c++20 -Wall -Wextra -Werror "$example" $flags -o "$work/put_get") \
        >"$work/compile.log" 2>&1; then
  fail "the example does not build against libedgekv-dev:"$'\n'"$(cat "$work/compile.log")"
else
  "$r/usr/sbin/edgekvd" --config /dev/null --node-id deb-test --data-dir "$work/data" \
    --client-endpoint "ipc://$work/client.sock" --feed-endpoint "ipc://$work/feed.sock" \
    --resp-endpoint "" --gossip-endpoint "ipc://$work/gossip.sock" \
    --peer-endpoint "ipc://$work/peer.sock" >"$work/edgekvd.log" 2>&1 &
  daemon=$!
  for _ in $(seq 300); do [ -S "$work/client.sock" ] && break; sleep 0.1; done
  if ! got=$("$work/put_get" "ipc://$work/client.sock" greeting hello 2>&1); then
    fail "the example against the packaged edgekvd: $got"$'\n'"$(cat "$work/edgekvd.log")"
  fi
  case "$got" in "greeting = hello (version "*) ;; *) fail "the example printed: $got" ;; esac
  kill "$daemon"
  wait "$daemon" || fail "edgekvd did not stop cleanly:"$'\n'"$(cat "$work/edgekvd.log")"
  if got=$("$work/put_get" "ipc://$work/nobody.sock" k v 2>&1) ||
     [[ "$got" != "put: TIMEOUT: "* ]]; then
    fail "the example against no daemon did not time out: $got"
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures problem(s) in $deb or $devdeb"
  exit 1
fi
echo "$(basename "$deb"), $(basename "$devdeb"): OK"
