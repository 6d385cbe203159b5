#!/usr/bin/env bash
# Runs the datapath, VM, interface and VXLAN benchmarks one after the other,
# each with `uptime` before and after, into one log (BENCH_LOG, default
# /tmp/bench-quiet-HHMM.log). Meant for an otherwise idle machine: these
# benchmarks measure sender, switch and receiver sharing the CPUs.
#   bash bench/quiet-run.sh [rtt switch switch-core contention idle pktgen vhost linux-if tap vxlan]
set -uo pipefail
cd "$(dirname "$0")/.."
list=${*:-rtt switch switch-core contention idle pktgen vhost linux-if tap vxlan}
log=${BENCH_LOG:-/tmp/bench-quiet-$(date +%H%M).log}
for b in $list; do
  [ -f "dist/bench/$b.bench.js" ] || { echo "no dist/bench/$b.bench.js (npm install builds dist/)" >&2; exit 2; }
  echo "=== $b  $(date -u +%FT%TZ)  $(uptime)" | tee -a "$log"
  echo "\$ node dist/bench/$b.bench.js" >>"$log"
  timeout 600 node "dist/bench/$b.bench.js" 2>&1 | tee -a "$log"
  echo "--- exit ${PIPESTATUS[0]}  $(uptime)" | tee -a "$log"
done
echo "log: $log"
