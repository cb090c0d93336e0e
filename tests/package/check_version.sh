#!/usr/bin/env bash
# The version has one source, CMake's project(VERSION); debian/changelog must agree.
#   check_version.sh PROJECT_VERSION
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

expected=${1:?usage: check_version.sh PROJECT_VERSION}
cmake_version=$("$top/packaging/deb/version.sh" cmake)
changelog_version=$("$top/packaging/deb/version.sh" changelog)

# The script's own reading of CMakeLists.txt must match what CMake configured.
if [ "$cmake_version" != "$expected" ]; then
  echo "FAIL: packaging/deb/version.sh reads $cmake_version from CMakeLists.txt, CMake says $expected" >&2
  exit 1
fi
if [ "$changelog_version" != "$expected" ]; then
  echo "FAIL: packaging/deb/debian/changelog is at $changelog_version, project(VERSION) is $expected: add a changelog entry for $expected" >&2
  exit 1
fi
echo "version $expected: CMakeLists.txt and debian/changelog agree"
