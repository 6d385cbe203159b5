#!/usr/bin/env bash
# Conformance suite against the real netmap kernel module.
#
# Builds (or reuses) a netmap lab from the netmap-lab kit (netmap.ko and
# netmap's C pkt-gen/valectl from its source snapshot, a Debian 6.1 kernel,
# a busybox initramfs; docs/conformance.md says what it is and where it is
# found), boots it under QEMU, runs the job scripts of
# test/conformance/guest/ in the guest against a copy of this checkout, and
# prints one PASS/FAIL line per check and a last line `N passed, N failed`.
#
#   bash test/conformance/run.sh            # after `npm run build`
#   bash test/conformance/run.sh --prepare  # only build (or check) the lab, then exit:
#                                           # test/stages.sh runs this in the background
#                                           # while the other stages run
#
# Environment:
#   NETMAP_LAB_KIT   the kit's directory; a run that is given it keeps a copy in the lab
#                    cache, ${XDG_CACHE_HOME:-~/.cache}/netmap-lab/kit, which later runs
#                    use when it is not set (docs/conformance.md: where the kit is found)
#   NETMAP_LAB       lab directory to build into / reuse (default: a cache dir
#                    per kit version under ${XDG_CACHE_HOME:-~/.cache}/netmap-lab)
#   NETMAP_CONFORMANCE=0   skip (not allowed when CI=true)
#   CONFORMANCE_JOBS "10-vale 20-pipes ..."  run only these job scripts (guest/NAME.sh); a name that is no job fails at once
#   CONFORMANCE_QEMU_NICE=N  run the guest at niceness N instead of the kit's 15 (test/stages.sh
#                    sets its own, 0 under npm test: the suite runs beside other stages there,
#                    and a nice-15 guest beside a compile gets a few % of a CPU)
#   CI=true          a missing kit or an unusable host is a failure, not a skip
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/test/conformance
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/netmap-lab
CACHED_KIT=$CACHE/kit
KIT=${NETMAP_LAB_KIT:-$CACHED_KIT}
CI=${CI:-false}
T0=$(date +%s)

PREPARE=false
[ "${1:-}" = --prepare ] && PREPARE=true
say() { echo "conformance: $*"; }
# not runnable here: a skip outside CI, a failure in CI
unavailable() {
  if [ "$CI" = true ]; then
    echo "FAIL setup: $*"; echo "0 passed, 1 failed"; exit 1
  fi
  say "skipped: $*"; echo "0 passed, 0 failed"; exit 0
}

if [ "${NETMAP_CONFORMANCE:-1}" = 0 ]; then unavailable "NETMAP_CONFORMANCE=0"; fi
# a misspelt job fails now, not after the lab is built and booted
for j in ${CONFORMANCE_JOBS:-}; do
  if [ ! -f "$HERE/guest/$j.sh" ]; then
    echo "FAIL setup: CONFORMANCE_JOBS names '$j', which is no job; the jobs: $(cd "$HERE/guest" && ls [0-9]*.sh | sed 's/\.sh$//' | tr '\n' ' ')"
    echo "0 passed, 1 failed"; exit 1
  fi
done
if [ ! -f "$KIT/04-boot.sh" ]; then
  if [ -n "${NETMAP_LAB_KIT:-}" ]; then unavailable "NETMAP_LAB_KIT=$NETMAP_LAB_KIT is not a netmap lab kit (it has no 04-boot.sh)"; fi
  unavailable "no netmap lab kit: NETMAP_LAB_KIT is not set and the lab cache has none ($CACHED_KIT); set NETMAP_LAB_KIT to the kit's directory once (docs/conformance.md: where the kit is found)"
fi
KIT=$(cd "$KIT" && pwd)
if ! $PREPARE; then
  { [ -f "$REPO/dist/tools/pkt-gen-ts.js" ] && ls "$REPO"/build/Release/*.node >/dev/null 2>&1; } \
    || unavailable "the checkout is not built (dist/, build/Release/*.node): run npm run build first"
fi

# --- the lab: reuse a built one, else build it -------------------------------
KITID=$( (cd "$KIT" && cat 00-host-setup.sh 01-build-netmap.sh 03-initramfs.sh netmap-*.tar.gz guest/*) | sha256sum | cut -c1-12)
LAB=${NETMAP_LAB:-$CACHE/$KITID}

# a kit given by NETMAP_LAB_KIT is copied into the lab cache (unless the copy there is
# this kit already), so that later runs, and the tests that build netmap's C tools from
# its snapshot (test/fixtures/preload/apps.ts), find it without the variable. The copy
# is made beside the old one and moved into place, under a lock: never seen half-copied.
keep_kit() {
  [ -n "${NETMAP_LAB_KIT:-}" ] && [ "$KIT" != "$(cd "$CACHED_KIT" 2>/dev/null && pwd)" ] || return 0
  [ "$(cat "$CACHED_KIT/.kit-id" 2>/dev/null)" = "$KITID" ] && return 0
  mkdir -p "$CACHE" && (
    flock 8 || exit 1
    [ "$(cat "$CACHED_KIT/.kit-id" 2>/dev/null)" = "$KITID" ] && exit 0
    tmp=$(mktemp -d "$CACHE/.kit.XXXXXX") || exit 1
    cp -r "$KIT/." "$tmp/" && chmod -R u+w,go+rX "$tmp" && echo "$KITID" > "$tmp/.kit-id" || { rm -rf "$tmp"; exit 1; }
    rm -rf "$CACHED_KIT.old"
    [ -e "$CACHED_KIT" ] && mv "$CACHED_KIT" "$CACHED_KIT.old"
    mv "$tmp" "$CACHED_KIT" && rm -rf "$CACHED_KIT.old"
  ) 8>"$CACHE/.kit.lock"
}
keep_kit || say "note: could not keep a copy of the kit in $CACHED_KIT (later runs need NETMAP_LAB_KIT)"
mkdir -p "$LAB" || unavailable "cannot create the lab directory $LAB"
LAB=$(cd "$LAB" && pwd)
export LAB
LOGS=$LAB/logs; mkdir -p "$LOGS"

# one run per lab at a time: the guest, its queue and its outputs are the lab's
exec 9>"$LAB/.lock"
if ! flock -n 9; then say "waiting for another run using $LAB"; flock 9; fi

RUN=""          # this run's copy of the checkout, under $LAB
BOOTED=false
cleanup() {
  if $BOOTED; then bash "$KIT/stop.sh" >>"$LOGS/stop.log" 2>&1; fi
  [ -n "$RUN" ] && rm -rf "$RUN"
  rm -f "$LAB"/queue/*.sh "$LAB"/queue/.*.tmp 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() {  # step NAME SCRIPT: a kit step, its output in $LOGS/NAME.log
  local t=$(date +%s)
  say "$1 ($2) ..."
  local run=(bash "$KIT/$2")
  # apt-get: one at a time with the system tests' ensurePackages (test/fixtures/system-packages.ts),
  # which may run meanwhile (npm test prepares the lab beside the ava stage)
  [ "$2" = 00-host-setup.sh ] && command -v flock >/dev/null && run=(flock /tmp/x-netmap-apt.lock "${run[@]}")
  if ! "${run[@]}" >"$LOGS/$1.log" 2>&1; then
    tail -25 "$LOGS/$1.log"
    echo "FAIL setup: kit step $2 failed (log: $LOGS/$1.log)"; echo "0 passed, 1 failed"; exit 1
  fi
  say "$1 done in $(( $(date +%s) - t )) s"
}

KVER=$(cat "$LAB/kver" 2>/dev/null || true)
built() { [ -n "$KVER" ] && [ -f "$LAB/kernel/boot/vmlinuz-$KVER" ] && [ -f "$LAB/netmap/netmap.ko" ] \
  && [ -x "$LAB/bin/pkt-gen" ] && [ -x "$LAB/bin/valectl" ] && [ -f "$LAB/initramfs.cpio.gz" ] \
  && [ "$(cat "$LAB/.kit-id" 2>/dev/null)" = "$KITID" ]; }
if built && command -v qemu-system-x86_64 >/dev/null; then
  say "reusing the lab in $LAB (kernel $KVER)"
else
  [ "$(id -u)" = 0 ] || unavailable "building the lab installs packages (apt-get): run as root, or point NETMAP_LAB at a built lab"
  command -v apt-get >/dev/null || unavailable "building the lab needs apt-get (Debian)"
  rm -f "$LAB/.kit-id"
  if [ -z "$KVER" ] || [ ! -f "$LAB/kernel/boot/vmlinuz-$KVER" ] || ! command -v qemu-system-x86_64 >/dev/null \
     || [ ! -d "/usr/src/linux-headers-$KVER" ]; then
    step host-setup 00-host-setup.sh
  fi
  KVER=$(cat "$LAB/kver"); export KVER
  [ -f "$LAB/netmap/netmap.ko" ] && [ -x "$LAB/bin/pkt-gen" ] || step build-netmap 01-build-netmap.sh
  step initramfs 03-initramfs.sh
  echo "$KITID" > "$LAB/.kit-id"
fi
export KVER
if $PREPARE; then say "lab ready in $LAB ($(( $(date +%s) - T0 )) s)"; exit 0; fi

# --- this checkout, as the guest will run it ---------------------------------
RUN=$(mktemp -d "$LAB/run.XXXXXX")
mkdir -p "$RUN/app/build/Release" "$RUN/app/node_modules" "$RUN/app/dist/test"
cp -r "$REPO/dist/src" "$REPO/dist/tools" "$RUN/app/dist/"
[ -d "$REPO/dist/test/conformance" ] && cp -r "$REPO/dist/test/conformance" "$RUN/app/dist/test/"
cp "$REPO"/build/Release/*.node "$RUN/app/build/Release/"
cp "$REPO/package.json" "$RUN/app/"
# the package's runtime dependencies and theirs (package.json "dependencies",
# transitively), as npm installed them: what the library and tools import
deps=$(cd "$REPO" && node -e '
  const fs = require("fs"), path = require("path");
  const seen = new Set(), todo = Object.keys(require("./package.json").dependencies || {});
  while (todo.length) {
    const d = todo.pop();
    if (seen.has(d)) continue;
    const pj = path.join("node_modules", d, "package.json");
    if (!fs.existsSync(pj)) { console.error("missing " + d); process.exit(1); }
    seen.add(d);
    todo.push(...Object.keys(JSON.parse(fs.readFileSync(pj, "utf8")).dependencies || {}));
  }
  console.log([...seen].join("\n"));') || unavailable "node_modules lacks a runtime dependency: run npm install"
for d in $deps; do
  mkdir -p "$RUN/app/node_modules/$(dirname "$d")"
  cp -rL "$REPO/node_modules/$d" "$RUN/app/node_modules/$d"
done
cp -r "$HERE/guest" "$RUN/guest"

# the emulator's CPU seconds so far: about what the guest's work takes on an idle machine,
# whatever the load now (TCG is CPU-bound; QEMU runs niced)
qcpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) / hz}' "/proc/$(cat "$LAB/qemu.pid")/stat" 2>/dev/null || echo '?'; }

# --- boot --------------------------------------------------------------------
# a stop request or job left in the queue by an interrupted run would be the
# new guest's first order (a left-over POWEROFF turns it off as it boots)
rm -f "$LAB/queue/POWEROFF" "$LAB"/queue/*.sh "$LAB"/queue/.*.tmp 2>/dev/null
BOOTED=true
t=$(date +%s)
say "booting the guest ..."
boot=(bash "$KIT/04-boot.sh")
if [ -n "${CONFORMANCE_QEMU_NICE:-}" ]; then
  # the kit starts QEMU with `nice -n 15`: run the kit's script that much lower, so that QEMU
  # boots at CONFORMANCE_QEMU_NICE already (a lower niceness needs root: nice warns in boot.log and QEMU stays at 15)
  adj=$((CONFORMANCE_QEMU_NICE - 15 - $(nice)))
  boot=(nice -n "$adj" "${boot[@]}")
fi
# boot: the kit's script waits for the agent for up to 20 min, even when QEMU has gone (a
# kernel panic: panic=-1 with -no-reboot ends QEMU): run it in the background and stop
# waiting when the agent is up, QEMU is gone, or 600 s have passed
boot_guest() {
  : >"$LAB/console.log"; rm -f "$LAB/qemu.pid"   # nothing of the last boot's may answer for this one
  "${boot[@]}" >>"$LOGS/boot.log" 2>&1 &
  local bp=$! i
  for ((i = 0; i < 600; i++)); do
    grep -q "AGENT READY" "$LAB/console.log" && break
    [ -s "$LAB/qemu.pid" ] && ! kill -0 "$(cat "$LAB/qemu.pid")" 2>/dev/null && break
    sleep 1
  done
  kill "$bp" 2>/dev/null; wait "$bp" 2>/dev/null
  grep -q "AGENT READY" "$LAB/console.log"
}
: >"$LOGS/boot.log"
if ! boot_guest; then
  # a TCG guest starved of CPU early in its boot can fail the kernel's timer check ("IO-APIC +
  # timer doesn't work!") and panic: the host's load, not netmap or this checkout. Once more.
  if grep -q "Kernel panic" "$LAB/console.log" && ! kill -0 "$(cat "$LAB/qemu.pid" 2>/dev/null)" 2>/dev/null; then
    say "the guest panicked while booting: $(grep -m1 -o 'Kernel panic.*' "$LAB/console.log" | cut -c1-120); booting once more"
    cp "$LAB/console.log" "$LOGS/console-panic.log"
    boot_guest
  fi
fi
if ! grep -q "AGENT READY" "$LAB/console.log"; then
  tail -30 "$LAB/console.log"
  echo "FAIL setup: the guest did not come up (console: $LAB/console.log)"; echo "0 passed, 1 failed"; exit 1
fi
say "guest up in $(( $(date +%s) - t )) s (QEMU CPU $(qcpu) s)"
# the guest's niceness, when asked for: checked, and set again on every QEMU thread if the kit
# started it elsewhere (niceness is per thread on Linux: the vCPU thread is the one that counts)
if [ -n "${CONFORMANCE_QEMU_NICE:-}" ]; then
  qpid=$(cat "$LAB/qemu.pid")
  for task in /proc/"$qpid"/task/*; do
    [ "$(awk '{print $19}' "$task/stat" 2>/dev/null)" = "$CONFORMANCE_QEMU_NICE" ] && continue
    renice -n "$CONFORMANCE_QEMU_NICE" -p "${task##*/}" >/dev/null 2>&1 \
      || { say "note: could not renice QEMU to $CONFORMANCE_QEMU_NICE (not root?): it stays at the kit's niceness"; break; }
  done
  say "QEMU at nice $(awk '{print $19}' "/proc/$qpid/stat" 2>/dev/null)"
fi

# --- jobs --------------------------------------------------------------------
JOBS=${CONFORMANCE_JOBS:-$(cd "$HERE/guest" && ls [0-9]*.sh | sed 's/\.sh$//')}
RESULTS=$RUN/results; : > "$RESULTS"
for j in $JOBS; do
  f=$HERE/guest/$j.sh
  [ -f "$f" ] || { echo "FAIL $j: no job script $f" >>"$RESULTS"; continue; }
  t=$(date +%s)
  say "job $j ..."
  # the job: guest/lib.sh (with this run's paths), then the checks
  { echo "RUN=$RUN JOB=$j"; echo ". \$RUN/guest/lib.sh"; cat "$f"; echo; echo 'job_end'; } >"$RUN/$j.job"
  if ! kill -0 "$(cat "$LAB/qemu.pid")" 2>/dev/null; then
    echo "FAIL $j: the guest is gone (console: $LAB/console.log)" >>"$RESULTS"; continue
  fi
  out=$(bash "$KIT/run-job.sh" "$j" "$RUN/$j.job" 900)
  printf '%s\n' "$out" >"$LOGS/job-$j.log"
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' >>"$RESULTS"
  rc=$(printf '%s\n' "$out" | sed -n 's/^\[job .* rc=\(.*\)\]$/\1/p' | tail -1)
  [ "$rc" = 0 ] || echo "FAIL $j: job ended with rc=$rc (log: $LOGS/job-$j.log)" >>"$RESULTS"
  say "job $j done in $(( $(date +%s) - t )) s (QEMU CPU $(qcpu) s so far)"
done

# --- report ------------------------------------------------------------------
echo
cat "$RESULTS"
failed=$(grep -c '^FAIL ' "$RESULTS")
passed=$(grep -c '^PASS ' "$RESULTS")
if [ "$failed" -gt 0 ]; then say "job logs in $LOGS"; fi
say "$(( $(date +%s) - T0 )) s in all (QEMU used $(qcpu) s of CPU; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
