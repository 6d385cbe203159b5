#!/usr/bin/env bash
# `npm test`: every stage of the test suite, each run even when an earlier one
# failed, then a per-stage summary and a final "N passed, N failed" line. Exits
# non-zero if any stage failed.
#
# TEST_STAGES (space-separated) picks stages; default: tsc ava asan soak conformance, in this order.
#   tsc    compile TypeScript (src, tools, tests) into dist/
#   ava    unit and integration tests
#   asan   the native-heavy tests again under AddressSanitizer + UBSan
#   soak   bench/soak.ts for one minute: honest and hostile clients, crashes, reconnects
#   conformance  the real netmap.ko in a QEMU guest (test/conformance/run.sh); its lab
#                (apt packages, guest kernel, netmap.ko, initramfs: ~8-12 min on a clean
#                machine, cached in ~/.cache/netmap-lab after) is prepared in the
#                background, niced, from the start, while the other stages run
# .ci/run uses TEST_STAGES for its second pass under CPU hogs, so a stage that
# must run only once (a long conformance run in a VM, say) is simply left out
# of that list there. To add a stage: a function stage_NAME and NAME in ALL.
set -uo pipefail
cd "$(dirname "$0")/.."

DEFAULT="tsc ava asan soak conformance"
ALL="tsc ava asan soak conformance"

stage_tsc() { node_modules/.bin/tsc -p tsconfig.json; }
# AF_XDP (issue 12) needs libxdp/libbpf when the addon is compiled: binding.gyp
# finds them with pkg-config and builds without AF_XDP where they are absent
# (a clean Debian has neither). Under CI the AF_XDP tests must run, never skip:
# install the packages and rebuild the addon here, before any test process has
# loaded it. Elsewhere the linux-if test says what to install.
ensure_afxdp_addon() {
  [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] || return 0
  # build/Release is what the loader tries first (src/netmap/native-loader.ts)
  has_afxdp() { node -e 'process.exit(require("./build/Release/netmap.node").afxdpBuiltIn ? 0 : 1)' 2>/dev/null; }
  has_afxdp && return 0
  echo "ava: the addon was built without AF_XDP; installing libxdp-dev libbpf-dev pkg-config and rebuilding it"
  flock /tmp/x-netmap-apt.lock bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get install -y --no-install-recommends libxdp-dev libbpf-dev pkg-config || { apt-get update && apt-get install -y --no-install-recommends libxdp-dev libbpf-dev pkg-config; }' >/tmp/ci-afxdp-apt.log 2>&1 \
    || { echo "ava: apt-get failed (log: /tmp/ci-afxdp-apt.log)"; return 1; }
  nice node_modules/.bin/node-gyp rebuild -j 2 >/tmp/ci-afxdp-build.log 2>&1 || { tail -30 /tmp/ci-afxdp-build.log; return 1; }
  has_afxdp || { echo "ava: rebuilt, still without AF_XDP (pkg-config --exists libxdp libbpf: $(pkg-config --exists libxdp libbpf && echo yes || echo no))"; return 1; }
}
stage_ava() { ensure_afxdp_addon; node_modules/.bin/ava; }
stage_asan() { bash test/asan/run.sh; }
stage_soak() { node dist/bench/soak.js --minutes 1; }   # issue 9: a minute of honest + hostile clients; no crash, every honest frame accounted for
# the real netmap.ko in a QEMU guest (README: Conformance suite): first the lab preparation
# started at the top, then the suite (which boots the guest on the prepared lab)
stage_conformance() {
  if [ -n "${prep_pid:-}" ]; then
    echo "conformance: waiting for the lab preparation (log: $prep_log) ..."
    wait "$prep_pid"; echo "conformance: lab preparation exit $? after $((SECONDS - prep_start)) s since its start:"
    sed 's/^/  | /' "$prep_log"; rm -f "$prep_log"; prep_pid=
  fi
  bash test/conformance/run.sh
}

stages=${TEST_STAGES:-$DEFAULT}
for s in $stages; do
  if ! declare -F "stage_$s" >/dev/null; then
    echo "test/stages.sh: unknown stage '$s' in TEST_STAGES (known: $ALL)" >&2
    exit 2
  fi
done

# the conformance lab takes minutes to build on a clean machine: start it now, beside the
# other stages (nice: they are the ones being timed), and let stage_conformance wait for it
prep_pid=
case " $stages " in
  *" conformance "*)
    prep_log=$(mktemp "${TMPDIR:-/tmp}/netmap-lab-prepare.XXXXXX")
    prep_start=$SECONDS
    nice -n 10 bash test/conformance/run.sh --prepare >"$prep_log" 2>&1 &
    prep_pid=$!
    ;;
esac

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
