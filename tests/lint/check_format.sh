#!/usr/bin/env bash
# Every C++ file of the project is as clang-format leaves it (.clang-format at the top:
# Google style, 100 columns). Prints each file that is not; exits 1 if there is any.
# To fix: git ls-files '*.cc' '*.h' | xargs clang-format -i
# Usage: tests/lint/check_format.sh [SOURCE_DIR]
set -uo pipefail
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 2
command -v clang-format >/dev/null || {
  echo "clang-format is missing: run scripts/install-deps.sh"
  exit 1
}
mapfile -t files < <(find . \( -path ./build -o -path ./.git \) -prune -o \
                       -type f \( -name '*.cc' -o -name '*.h' \) -print | sort)
[ "${#files[@]}" -gt 0 ] || { echo "no C++ files under $src"; exit 2; }
status=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not clang-formatted: ${f#./}"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "${#files[@]} files clang-formatted"
exit "$status"
