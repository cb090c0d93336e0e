#!/usr/bin/env bash
# Builds the Debian package from a staging copy of the tree.
#
#   packaging/deb/build.sh [OUTDIR]      (make deb: OUTDIR = build/deb)
#
# Copies the source tree (without build outputs) to OUTDIR/src, adds packaging/deb/debian
# as its debian/ folder and runs dpkg-buildpackage there, so the .deb files land in OUTDIR:
# OUTDIR/edgekv_<version>_<arch>.deb and OUTDIR/libedgekv-dev_<version>_<arch>.deb. The version is CMake's project(VERSION); the build
# stops if debian/changelog says otherwise. JOBS sets the parallelism (default: nproc).
# The full log is OUTDIR/build.log.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$top/build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jobs=${JOBS:-$(nproc)}

die() { echo "packaging/deb/build.sh: $*" >&2; exit 1; }

for tool in dpkg-buildpackage dpkg-parsechangelog dh; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done

version=$("$top/packaging/deb/version.sh" cmake)
changelog_version=$("$top/packaging/deb/version.sh" changelog)
if [ "$version" != "$changelog_version" ]; then
  die "debian/changelog is at version $changelog_version but CMakeLists.txt's project(VERSION) is $version: add a changelog entry for $version (dch -v $version in packaging/deb)"
fi

arch=$(dpkg --print-architecture)
deb="$out/edgekv_${version}_${arch}.deb"
devdeb="$out/libedgekv-dev_${version}_${arch}.deb"
src="$out/src"
log="$out/build.log"

rm -rf "$src" "$deb" "$devdeb"
mkdir -p "$src"
# Everything but build outputs (OUTDIR too, wherever it is), local runs and caches;
# packaging/ is not part of the source proper (its debian/ folder is added below).
excludes=(--exclude=./build --exclude=./run --exclude=./Testing --exclude=./.git
          --exclude=./packaging --exclude=__pycache__ --exclude='*.pyc')
case "$out/" in "$top"/*) excludes+=("--exclude=./${out#"$top"/}") ;; esac
tar -C "$top" -cf - "${excludes[@]}" . | tar -C "$src" -xf -
cp -r "$top/packaging/deb/debian" "$src/debian"

echo "edgekv: building $(basename "$deb") (log: $log)"
start=$(date +%s)
if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=$jobs" \
        dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "dpkg-buildpackage failed; the full log is $log"
fi
[ -f "$deb" ] || die "dpkg-buildpackage succeeded but $deb is missing (see $log)"
[ -f "$devdeb" ] || die "dpkg-buildpackage succeeded but $devdeb is missing (see $log)"
echo "edgekv: built $deb and $(basename "$devdeb") in $(( $(date +%s) - start )) s"
