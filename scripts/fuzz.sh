#!/usr/bin/env bash
# Runs libFuzzer targets for a while each, starting from the committed seed corpus.
# Usage: scripts/fuzz.sh FUZZ_BIN_DIR SECONDS [TARGET...]   (default: every *_fuzz there)
#
# New corpus entries go to a scratch directory that is removed afterwards (the committed
# seeds stay small). What a failing run finds is kept: libFuzzer writes the input that
# crashed, leaked or timed out (crash-*, leak-*, timeout-*, oom-*) to
# $FUZZ_ARTIFACT_DIR/<target>/ (default FUZZ_BIN_DIR/artifacts/<target>/), and the script
# names it and exits non-zero once every target ran. A UBSan report is fatal, as an ASan
# one is (the fuzz build has -fno-sanitize-recover; halt_on_error below is for builds
# without it). Reproduce with: FUZZ_BIN_DIR/<target> <artifact>
set -euo pipefail
bin_dir=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
artifact_root=${FUZZ_ARTIFACT_DIR:-$bin_dir/artifacts}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$bin_dir"/*_fuzz; do targets+=("$(basename "$f")"); done
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  exe="$bin_dir/$t"
  [ -x "$exe" ] || { echo "fuzz: $exe is not built (make fuzz-build)" >&2; exit 1; }
  artifacts="$artifact_root/$t"
  mkdir -p "$artifacts" "$work/$t"
  echo "fuzz: $t for ${seconds}s"
  touch "$work/$t.start"
  # A dictionary of the tokens a target's input is made of, where it has one.
  dict=()
  [ -f "$src/tests/fuzz/$t.dict" ] && dict=(-dict="$src/tests/fuzz/$t.dict")
  # An input taking over FUZZ_TIMEOUT seconds (inputs take milliseconds) is a hang: it is
  # kept as timeout-*, well within ctest's limit for the run.
  if ! "$exe" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-30}" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" \
    "$work/$t" "$src/tests/fuzz/corpus/$t"; then
    failed+=("$t")
    echo "fuzz: $t FAILED; what it found is in $artifacts/:" >&2
    find "$artifacts" -maxdepth 1 -type f -newer "$work/$t.start" -printf '  %f\n' >&2
  fi
  rm -rf "${work:?}/$t"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (artifacts under $artifact_root/)" >&2
  exit 1
fi
echo "fuzz: every target ran clean"
