#!/usr/bin/env bash
# Alternates bench/packet-tx-ring.c's send modes into a veth whose peer, in
# a namespace of its own, counts and drops the frames with the nftables
# ingress sink of bench/linux-if.bench.ts; prints each run's line, the sink's
# count, then the medians. Needs root, gcc and nft. Removes the namespace and
# the veth also on failure.
#   bash bench/packet-tx-ring.sh [PAIRS=7] [FRAMES=2000000] [MODES="mmsg ring"] [CPU=1]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-7} frames=${2:-2000000} modes=${3:-mmsg ring} cpu=${4:-1}
ns=ptxr24n1 a=ptxr1a b=ptxr1b bin=$(mktemp /tmp/packet-tx-ring.XXXXXX)
cleanup() { ip link del "$a" 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; rm -f "$bin"; }
trap cleanup EXIT
gcc -O2 -Wall -Wextra bench/packet-tx-ring.c -o "$bin"
ip netns add "$ns"
ip link add "$a" type veth peer name "$b" netns "$ns"
ip link set "$a" up
ip -n "$ns" link set "$b" up
ip netns exec "$ns" /usr/sbin/nft -f - <<NFT
table netdev ptxr_sink {
 chain in {
  type filter hook ingress device "$b" priority -500; policy accept;
  ether type ip udp dport 9 counter drop
 }
}
NFT
mac=$(ip netns exec "$ns" cat "/sys/class/net/$b/address")
sink() { ip netns exec "$ns" /usr/sbin/nft list table netdev ptxr_sink | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
echo "# $(date -u +%FT%TZ) $(uptime)"
out=$(mktemp)
for ((p = 0; p < pairs; p++)); do
  for m in $modes; do
    before=$(sink)
    line=$("$bin" "$a" "$mac" "$m" "$frames" "$cpu")
    echo "$line sink=$(($(sink) - before))" | tee -a "$out"
  done
done
echo "# $(date -u +%FT%TZ) $(uptime)"
for m in $modes; do
  for k in cpu_ns_per_frame wall_ns_per_frame; do
    vals=$(grep "^$m " "$out" | sed -n "s/.*$k=\([0-9.]*\).*/\1/p" | sort -n | tr '\n' ' ')
    echo "$m $k median $(echo "$vals" | awk '{print NF % 2 ? $((NF + 1) / 2) : ($(NF / 2) + $(NF / 2 + 1)) / 2}') [${vals% }]"
  done
done
rm -f "$out"
