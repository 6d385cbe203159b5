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
#
# What runs beside what (docs/ci.md): run one after the other, two of the
# long stages would each leave one of a 2-core machine's CPUs idle for minutes:
#   - the asan stage's instrumented build (node-gyp -j 2 of all of cpp/) starts with the ava
#     stage, niced, in the background (it takes the CPU the ava tests leave); the asan stage
#     waits for it, then runs its tests (one at a time: ava --concurrency 1);
#   - the conformance stage's guest (QEMU TCG: one CPU busy for ~10 min) starts in the
#     background as the first stage after ava (asan, soak) starts, beside them, and is
#     collected at its own place in the order: its output is printed there, in one piece,
#     and its time in the summary is its own, start to end.
# Both need what the tsc and ava stages leave (dist/; build/Release, which the ava stage may
# rebuild with AF_XDP), so neither starts before. The summary says which stages overlapped.
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
stage_ava() {
  # the Debian packages the tests use, before any test's timeout runs (a no-op when present)
  bash test/system-packages.sh || return 1
  ensure_afxdp_addon
  case " $stages " in *" asan "*) bg_start asan-build nice -n 10 bash test/asan/run.sh --build-only ;; esac
  # A hang guard for the whole stage, not a test's clock: a worker that never
  # ends keeps ava waiting for ever (seen once, session 26: a failed test's
  # poll, which test/fixtures/wait.ts now stops once ava is done with the
  # worker). The stage takes 12-14 min here.
  local rc=0
  timeout --kill-after=30 "${AVA_STAGE_LIMIT_S:-2700}" node_modules/.bin/ava || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "ava: still running after ${AVA_STAGE_LIMIT_S:-2700} s: a worker hung (the tests above that reported last name the file); stopped"
  fi
  return "$rc"
}
stage_asan() {
  if bg_started asan-build; then
    bg_running asan-build && echo "asan: waiting for its build (started beside the ava stage) ..."
    if ! bg_collect asan-build; then echo "asan: the build failed"; return 1; fi
    bash test/asan/run.sh --no-build
  else
    bash test/asan/run.sh
  fi
}
stage_soak() { node dist/bench/soak.js --minutes 1; }   # issue 9: a minute of honest + hostile clients; no crash, every honest frame accounted for
# the real netmap.ko in a QEMU guest (README: Conformance suite): first the lab preparation
# started at the top, then the suite (which boots the guest on the prepared lab). Run in the
# background (see the top): the guest runs at the other stages' priority (the kit starts
# QEMU at nice 15, which beside a compile leaves the guest a few % of a CPU and its
# in-guest limits, 120 s for a node to start, would fire)
conformance_run() {
  if [ -n "${prep_pid:-}" ]; then
    echo "conformance: waiting for the lab preparation (log: $prep_log) ..."
    # the preparation is the main shell's child, not this one's: its exit status comes in a file
    while [ ! -s "$prep_log.rc" ]; do sleep 1; done
    echo "conformance: lab preparation exit $(cat "$prep_log.rc") after $((SECONDS - prep_start)) s since its start:"
    sed 's/^/  | /' "$prep_log"
  fi
  CONFORMANCE_QEMU_NICE=$(nice) bash test/conformance/run.sh
}
stage_conformance() {
  if bg_started conformance; then
    bg_running conformance && echo "conformance: waiting for the suite (running since the start of stage $conformance_beside) ..."
    bg_collect conformance
  else
    conformance_run
  fi
}

# --- background stages: bg_start NAME CMD..., later bg_collect NAME --------------------------
# Each in a process group of its own (killed as a group if this script exits first), its
# output in a file that bg_collect prints in one piece, with its exit status and end time.
bg_dir=$(mktemp -d "${TMPDIR:-/tmp}/netmap-stages.XXXXXX")
declare -A bg_pid=()
bg_start() {
  local n=$1; shift
  echo "$SECONDS" >"$bg_dir/$n.start"
  set -m
  ( "$@" >"$bg_dir/$n.log" 2>&1; rc=$?; echo "$SECONDS" >"$bg_dir/$n.end"; exit "$rc" ) &
  bg_pid[$n]=$!
  set +m
}
bg_started() { [ -n "${bg_pid[$1]:-}" ]; }
bg_running() { [ ! -e "$bg_dir/$1.end" ]; }
bg_collect() {
  local n=$1 rc
  wait "${bg_pid[$n]}"; rc=$?
  unset "bg_pid[$n]"
  cat "$bg_dir/$n.log"
  bg_took="$(($(cat "$bg_dir/$n.end") - $(cat "$bg_dir/$n.start")))"
  return "$rc"
}
bg_stop() {
  local n
  for n in "${!bg_pid[@]}"; do kill -TERM -- "-${bg_pid[$n]}" 2>/dev/null; done
  for n in "${!bg_pid[@]}"; do wait "${bg_pid[$n]}" 2>/dev/null; done
  rm -rf "$bg_dir"
  # the lab preparation is left to finish (a lab half built is rebuilt by the next run anyway,
  # but an apt-get killed midway leaves dpkg to repair); only its log is removed
  [ -n "${prep_log:-}" ] && rm -f "$prep_log" "$prep_log.rc"
}
trap bg_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
    { nice -n 10 bash test/conformance/run.sh --prepare >"$prep_log" 2>&1; echo $? >"$prep_log.rc"; } &
    prep_pid=$!
    ;;
esac

passed=0
failed=0
summary=()
conformance_beside=
for s in $stages; do
  # the conformance guest starts beside the first stage after ava (see the top)
  if [ -z "$conformance_beside" ] && [[ " $stages " == *" conformance "* ]] && [[ " tsc ava conformance " != *" $s "* ]]; then
    conformance_beside=$s
    echo "=== stage conformance: starting in the background, beside stage $s ==="
    bg_start conformance conformance_run
  fi
  echo "=== stage $s ==="
  start=$SECONDS
  # the dist/ a later stage runs is only what tsc built: a failed compile
  # leaves the previous dist/, so say so rather than test stale code silently
  if [ "$s" != tsc ] && [ "${tsc_failed:-0}" = 1 ]; then
    echo "note: the tsc stage failed; stage $s runs the previously built dist/"
  fi
  bg_took=
  "stage_$s"; rc=$?
  took="$((SECONDS - start)) s"
  [ -n "$bg_took" ] && [ "$s" = conformance ] && took="$bg_took s, in the background from the start of stage $conformance_beside"
  if [ "$s" = asan ] && [ -n "$bg_took" ]; then took="$took; its build $bg_took s, in the background from the ava stage"; fi
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    summary+=("  ok    $s ($took)")
  else
    failed=$((failed + 1))
    summary+=("  FAIL  $s (exit $rc, $took)")
    [ "$s" = tsc ] && tsc_failed=1
  fi
done
if [ -n "${prep_pid:-}" ]; then wait "$prep_pid"; prep_pid=; fi

echo "=== test summary${TEST_LABEL:+ ($TEST_LABEL)} ==="
printf '%s\n' "${summary[@]}"
echo "stages: $passed passed, $failed failed (${SECONDS} s in all)"
[ "$failed" = 0 ]
