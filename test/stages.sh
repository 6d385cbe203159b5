#!/usr/bin/env bash
# `npm test`: every stage of the test suite, each run even when an earlier one
# failed, then a per-stage summary and a final "N passed, N failed" line. Exits
# non-zero if any stage failed.
#
# TEST_STAGES (space-separated) picks stages; default: all, in this order.
#   tsc    compile TypeScript (src, tools, tests) into dist/
#   ava    unit and integration tests
#   asan   the native-heavy tests again under AddressSanitizer + UBSan
# .ci/run uses TEST_STAGES for its second pass under CPU hogs, so a stage that
# must run only once (a long conformance run in a VM, say) is simply left out
# of that list there. To add a stage: a function stage_NAME and NAME in ALL.
set -uo pipefail
cd "$(dirname "$0")/.."

ALL="tsc ava asan"

stage_tsc() { node_modules/.bin/tsc -p tsconfig.json; }
stage_ava() { node_modules/.bin/ava; }
stage_asan() { bash test/asan/run.sh; }

stages=${TEST_STAGES:-$ALL}
for s in $stages; do
  if ! declare -F "stage_$s" >/dev/null; then
    echo "test/stages.sh: unknown stage '$s' in TEST_STAGES (known: $ALL)" >&2
    exit 2
  fi
done

passed=0
failed=0
summary=()
for s in $stages; do
  echo "=== stage $s ==="
  start=$SECONDS
  # the dist/ a later stage runs is only what tsc built: a failed compile
  # leaves the previous dist/, so say so rather than test stale code silently
  if [ "$s" != tsc ] && [ "${tsc_failed:-0}" = 1 ]; then
    echo "note: the tsc stage failed; stage $s runs the previously built dist/"
  fi
  if "stage_$s"; then
    passed=$((passed + 1))
    summary+=("  ok    $s ($((SECONDS - start)) s)")
  else
    rc=$?
    failed=$((failed + 1))
    summary+=("  FAIL  $s (exit $rc, $((SECONDS - start)) s)")
    [ "$s" = tsc ] && tsc_failed=1
  fi
done

echo "=== test summary${TEST_LABEL:+ ($TEST_LABEL)} ==="
printf '%s\n' "${summary[@]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" = 0 ]
