# Sourced at the top of every conformance job, in the guest (as root, cwd $LAB).
# Set by the job header: RUN (this run's directory under $LAB), JOB (its name).
# A check prints `PASS name` or `FAIL name: why`; the host counts those lines.
set -u
export NETMAP_BACKEND=kernel
PG=$LAB/bin/pkt-gen
VC=$LAB/bin/valectl
KVER=$(cat "$LAB/kver")

# once per boot: the module, the NIC and dummy drivers, a private copy of the checkout
if [ ! -c /dev/netmap ]; then
  insmod "$LAB/netmap/netmap.ko" || echo "FAIL $JOB: insmod netmap.ko"
fi
# the guest's devtmpfs has no /dev/fd (udev would add it): bash's <(...) needs it
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
modprobe -d "$LAB/kernel" -S "$KVER" virtio_net 2>/dev/null
modprobe -d "$LAB/kernel" -S "$KVER" dummy 2>/dev/null
# node reads hundreds of files at startup: from tmpfs, not over 9p
APP=/tmp/app-$(basename "$RUN")
[ -d "$APP" ] || cp -r "$RUN/app" "$APP"
PGT="node $APP/dist/tools/pkt-gen-ts.js"
VCT="node $APP/dist/tools/vale-ctl-ts.js"
W=/tmp/w-$JOB; rm -rf "$W"; mkdir -p "$W"
NPASS=0; NFAIL=0

pass() { echo "PASS $1"; NPASS=$((NPASS + 1)); }
fail() { local n=$1; shift; echo "FAIL $n: $*"; NFAIL=$((NFAIL + 1)); }
# ok NAME CONDITION-STATUS WHY: pass or fail on the status of the last test
ok() { local n=$1 st=$2; shift 2; if [ "$st" = 0 ]; then pass "$n"; else fail "$n" "$*"; fi; }
note() { echo "  $*"; }

# start NAME LIMIT CMD...: run CMD in the background, output in $W/NAME.log; pid in $W/NAME.pid.
# LIMIT bounds it (SIGINT first, so pkt-gen prints its totals, then SIGKILL).
start() {
  local n=$1 lim=$2; shift 2
  ( exec timeout -s INT -k 10 "$lim" "$@" ) >"$W/$n.log" 2>&1 &
  echo $! >"$W/$n.pid"
}
# finish NAME: wait for a started command; its status is returned and saved in $W/NAME.rc
finish() { local st; wait "$(cat "$W/$1.pid")"; st=$?; echo $st >"$W/$1.rc"; return $st; }
# stop NAME: interrupt a started command (pkt-gen prints its totals) and wait for it
stop() { kill -INT "$(cat "$W/$1.pid")" 2>/dev/null; finish "$1"; }
# runq NAME LIMIT CMD...: run in the foreground, output in $W/NAME.log, status returned
runq() { local n=$1 lim=$2; shift 2; timeout -s INT -k 10 "$lim" "$@" >"$W/$n.log" 2>&1; local st=$?; echo $st >"$W/$n.rc"; return $st; }
# tick SECONDS: a sleep without a fork: a read with a timeout on a pipe nobody writes to.
# The guest has one emulated CPU, on which a fork+exec costs tens of ms: a poll loop that
# forks (grep, sleep) ten times a second took about half of it away from the node process
# it waited for, and the checks whose pkt-gen-ts side is waited for ran twice as long.
exec {TICK_FD}<> <(:)
tick() { read -r -t "$1" -u "$TICK_FD" _ || true; }
# count_lines FILE REGEX: sets NLINES to the number of FILE's lines matching REGEX (ERE), in
# bash alone (no fork); a last line without its newline yet counts too
count_lines() {
  local line; NLINES=0
  while IFS= read -r line || [ -n "$line" ]; do [[ $line =~ $2 ]] && NLINES=$((NLINES + 1)); done <"$1"
}
# wait_lines NAME REGEX [COUNT] [LIMIT]: until NAME's output has COUNT lines matching REGEX.
# Fails early if the command exits first. Polls ten times a second, without forking (see
# tick). (A version sleeping on `tail -f` instead of a poll loop saw both 2-ring pipe checks
# of 70-rings stall in one run; the poll loop passed every check: kept until that is understood.)
wait_lines() {
  local n=$1 re=$2 c=${3:-1} lim=${4:-120} i pid
  read -r pid <"$W/$n.pid"
  for ((i = 0; i < lim * 10; i++)); do
    count_lines "$W/$n.log" "$re"; [ "$NLINES" -ge "$c" ] && return 0
    kill -0 "$pid" 2>/dev/null || { count_lines "$W/$n.log" "$re"; [ "$NLINES" -ge "$c" ] && return 0; note "$n exited before printing '$re'"; return 1; }
    tick 0.1
  done
  note "$n: no '$re' within ${lim}s"; return 1
}
# counts from pkt-gen's summary lines
sent() { sed -n 's/^Sent \([0-9]*\) packets.*/\1/p' "$W/$1.log" | tail -1; }
received() { sed -n 's/^Received \([0-9]*\) packets.*/\1/p' "$W/$1.log" | tail -1; }
# the startup line `Sending on ...: N queues, N threads and N cpus.` (or Receiving from / Working on)
qline() { grep -E '^(Sending on|Receiving from|Working on) ' "$W/$1.log" | head -1; }
show() { sed 's/^/    | /' "$W/$1.log" | grep -v -E 'main_thread .* pps|waiting for initial' | tail -${2:-12}; }

# rx_tx NAME RXCMD... -- TXCMD...: start the receiver, wait until it is reading, run the sender,
# wait for both. Logs: $W/NAME-rx.log, $W/NAME-tx.log. Every stop is count-based: a receiver
# with -n ends at its count; one without runs until the sender has exited and is then
# interrupted (SIGINT: pkt-gen prints its totals). Only for pipes, where the sender's end
# (its tx rings drained) means the receiver has taken, so counted, every frame: netmap's C
# receiver with -n exits without handing its last slots back, and the sender would wait for
# them forever.
rx_tx() {
  local n=$1; shift
  local rx=() tx=()
  while [ "$1" != -- ]; do rx+=("$1"); shift; done; shift; tx=("$@")
  local threads=1 counted=false a t0=$SECONDS
  for ((a = 0; a < ${#rx[@]}; a++)); do
    [ "${rx[a]}" = -p ] && threads=${rx[a + 1]}
    [ "${rx[a]}" = -n ] && counted=true
  done
  start "$n-rx" 120 "${rx[@]}"
  if ! wait_lines "$n-rx" 'reading from' "$threads" 120; then stop "$n-rx"; echo 1 >"$W/$n-tx.rc"; : >"$W/$n-tx.log"; return 1; fi
  runq "$n-tx" 120 "${tx[@]}"
  if $counted; then finish "$n-rx"; else stop "$n-rx"; fi
  note "$n: $((SECONDS - t0)) s"
  return 0
}
# exact NAME N: sender sent N and receiver received N
exact() {
  local n=$1 want=$2 s r
  s=$(sent "$n-tx"); r=$(received "$n-rx")
  if [ "$s" = "$want" ] && [ "$r" = "$want" ] && [ "$(cat "$W/$n-tx.rc")" = 0 ] && [ "$(cat "$W/$n-rx.rc")" = 0 ]; then
    pass "$n: sent $s, received $r"
  else
    fail "$n" "want $want sent and received; sent '${s}' (rc $(cat "$W/$n-tx.rc")), received '${r}' (rc $(cat "$W/$n-rx.rc"))"
    show "$n-tx"; show "$n-rx"
  fi
}

job_end() { note "$JOB: $NPASS passed, $NFAIL failed"; }
