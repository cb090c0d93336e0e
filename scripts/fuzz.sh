#!/usr/bin/env bash
# Runs libFuzzer targets for a while each, starting from the committed seed corpus.
# Usage: scripts/fuzz.sh FUZZ_BIN_DIR SECONDS [TARGET...]   (default: every *_fuzz there)
set -euo pipefail
bin_dir=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$bin_dir"/*_fuzz; do targets+=("$(basename "$f")"); done
fi
for t in "${targets[@]}"; do
  exe="$bin_dir/$t"
  [ -x "$exe" ] || { echo "fuzz: $exe is not built (make fuzz-build)" >&2; exit 1; }
  # A scratch corpus: new inputs found here are not written into the source tree.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "fuzz: $t for ${seconds}s"
  "$exe" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/" \
    "$work" "$src/tests/fuzz/corpus/$t"
  rm -rf "$work"
  trap - EXIT
done
