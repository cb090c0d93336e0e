#!/usr/bin/env bash
# Prints edgekv's version as one source states it:
#   version.sh cmake       project(edgekv VERSION ...) in CMakeLists.txt (the one source)
#   version.sh changelog   the latest entry of packaging/deb/debian/changelog
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

case "${1:-}" in
  cmake)
    version=$(sed -n 's/^project(edgekv VERSION \([0-9][0-9.]*\)[ )].*/\1/p' "$top/CMakeLists.txt")
    ;;
  changelog)
    version=$(dpkg-parsechangelog -l "$top/packaging/deb/debian/changelog" -S Version)
    ;;
  *)
    echo "usage: $0 cmake|changelog" >&2
    exit 2
    ;;
esac
if [ -z "$version" ]; then
  echo "$0: no version found ($1)" >&2
  exit 1
fi
echo "$version"
