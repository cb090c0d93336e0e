#!/usr/bin/env bash
# Keeps the non-deterministic seams in one place each: protocol, storage and daemon code
# reads time only through common/clock.h and randomness only through common/random.h, and
# no test waits by sleeping. Prints each offending line; exits 1 if there is any.
# Usage: tests/lint/check_seams.sh [SOURCE_DIR]
set -uo pipefail
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 2
status=0

# Clock reads and randomness in the code that must replay deterministically. Allowed in
# the files that implement the real clock and in logging (timestamps for people only).
hits=$(grep -rnE 'steady_clock::now|system_clock::now|high_resolution_clock|\brand\(|\bsrand\(|random_device|\btime\(nullptr\)|gettimeofday|clock_gettime' \
         common store daemon gossip cluster tests/sim --include='*.cc' --include='*.h' |
       grep -vE '^common/clock\.cc:|^common/log\.cc:' || true)
if [ -n "$hits" ]; then
  echo "read time through edgekv::Clock and draw randomness from edgekv::Random instead:"
  echo "$hits"
  status=1
fi

# Sleeping to wait for something makes tests slow and flaky: poll a condition instead.
# (The pattern is assembled so that this file does not match searches for sleeping tests.)
s=sleep
hits=$(grep -rnE "${s}_for|${s}_until|\\bu${s}\\(|\\b${s}\\(|time\\.${s}\\(" tests \
         --include='*.cc' --include='*.h' --include='*.py' | grep -v '^tests/lint/' || true)
if [ -n "$hits" ]; then
  echo "tests must wait on a condition with a deadline, not sleep:"
  echo "$hits"
  status=1
fi
exit $status
