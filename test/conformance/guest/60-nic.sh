# NICs through netmap's emulated (generic) adapter: a dummy interface, the two virtio NICs
# on QEMU's hub (eth0 -> eth1), and host rings. No IPv6: its neighbour discovery would add
# frames of its own to the interface counters.
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip link add dummy0 type dummy 2>/dev/null
for i in dummy0 eth0 eth1; do ip link set "$i" up; done
stat() { cat "/sys/class/net/$1/statistics/$2"; }
norm() { qline "$1" | sed 's/netmap:[a-z0-9]*\^*//'; }

# dummy0: every frame pkt-gen sends is counted by the interface
for who in c ts; do
  if [ $who = c ]; then cmd=($PG -w 0); else cmd=($PGT -w 0); fi
  b=$(stat dummy0 tx_packets)
  runq dummy-$who-tx 120 "${cmd[@]}" -i netmap:dummy0 -f tx -n 1000
  d=$(( $(stat dummy0 tx_packets) - b )); s=$(sent dummy-$who-tx)
  [ "$s" = 1000 ] && [ "$d" = 1000 ]; ok "dummy0-$who-tx: sent ${s:-?}, tx_packets +$d" $? "want 1000 sent and counted; rc $(cat "$W/dummy-$who-tx.rc")"
  [ "$s" = 1000 ] || show dummy-$who-tx
done
a=$(norm dummy-c-tx); b=$(norm dummy-ts-tx)
[ -n "$a" ] && [ "$a" = "$b" ]; ok "dummy0-startup-line: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"

# eth0 -> eth1 over the hub: C/C as the reference, then pkt-gen-ts on either side.
# The emulated adapter drops, uncounted, what arrives while its rx queue holds a ring's
# worth (virtio: 256 slots), so 250 frames is the most that must all arrive.
N=250
eth() {  # eth NAME RXCMD... -- TXCMD...
  local n=$1; shift
  local t0 r0; t0=$(stat eth0 tx_packets); r0=$(stat eth1 rx_packets)
  rx_tx "$n" "$@"
  local s r dt dr; s=$(sent "$n-tx"); r=$(received "$n-rx")
  dt=$(( $(stat eth0 tx_packets) - t0 )); dr=$(( $(stat eth1 rx_packets) - r0 ))
  [ "$s" = $N ] && [ "$r" = $N ] && [ "$dt" = $N ] && [ "$dr" = $N ]
  ok "$n: sent ${s:-?}, received ${r:-?}, eth0 tx +$dt, eth1 rx +$dr" $? "want $N everywhere"
  [ "$r" = $N ] || { show "$n-tx"; show "$n-rx"; }
}
eth eth-c-tx-c-rx   $PG -i netmap:eth1 -f rx -n $N -w 0  --  $PG -i netmap:eth0 -f tx -n $N -w 0
eth eth-c-tx-ts-rx  $PGT -i netmap:eth1 -f rx -n $N -w 0  --  $PG -i netmap:eth0 -f tx -n $N -w 0
eth eth-ts-tx-c-rx  $PG -i netmap:eth1 -f rx -n $N -w 0  --  $PGT -i netmap:eth0 -f tx -n $N -w 0
for d in tx:eth-c-tx-c-rx-tx:eth-ts-tx-c-rx-tx rx:eth-c-tx-c-rx-rx:eth-c-tx-ts-rx-rx; do
  IFS=: read -r dir c ts <<<"$d"
  a=$(norm $c); b=$(norm $ts)
  [ -n "$a" ] && [ "$a" = "$b" ]; ok "eth-startup-line-$dir: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
done

# host rings. tx on netmap:eth0^ hands frames to the stack as if eth0 had received them
# (counted by the stack's Ip InReceives, not by the driver)
inrx() { awk '/^Ip: [0-9]/{print $4}' /proc/net/snmp; }
for who in c ts; do
  if [ $who = c ]; then cmd=($PG -w 0); else cmd=($PGT -w 0); fi
  b=$(inrx)
  runq host-$who-tx 120 "${cmd[@]}" -i 'netmap:eth0^' -f tx -n 100
  d=$(( $(inrx) - b )); s=$(sent host-$who-tx)
  [ "$s" = 100 ] && [ "$d" = 100 ]; ok "host-ring-$who-tx: sent ${s:-?} on netmap:eth0^, Ip InReceives +$d" $? "want 100 sent and received by the stack"
  [ "$s" = 100 ] || show host-$who-tx
done
a=$(norm host-c-tx); b=$(norm host-ts-tx)
[ -n "$a" ] && [ "$a" = "$b" ]; ok "host-ring-startup-line: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
# and the other way: what the stack sends on eth0 (ARP requests) reaches the host rx ring of
# netmap:eth0* (NIC and host rings); bound alone (netmap:eth0^), the emulated adapter
# leaves the stack's traffic alone: C and pkt-gen-ts must see the same there
ip addr add 10.99.0.1/24 dev eth0
hostrx() {  # hostrx NAME PORT CMD...: receive while ping makes the stack send an ARP request
  local n=$1 port=$2; shift 2
  local counted=false a; for a in "$@"; do [ "$a" = -n ] && counted=true; done
  start "$n" 120 "$@" -i "$port" -f rx
  if wait_lines "$n" 'reading from' 1 120; then
    ip neigh flush dev eth0; ping -c 1 -W 1 -I eth0 10.99.0.2 >/dev/null 2>&1
    # a receiver counting to 1 ends by itself once the ARP request is in; one without a
    # count (where nothing must arrive) is stopped once ping has given up
    if $counted; then finish "$n"; else stop "$n"; fi
  else stop "$n"; fi
}
for who in c ts; do
  if [ $who = c ]; then cmd=($PG -w 0); else cmd=($PGT -w 0); fi
  hostrx host-star-$who-rx 'netmap:eth0*' "${cmd[@]}" -n 1; r=$(received host-star-$who-rx)
  [ "${r:-0}" -ge 1 ]; ok "host-ring-$who-rx: ${r:-0} frames from the stack on netmap:eth0*" $? "nothing received (rc $(cat "$W/host-star-$who-rx.rc"))"
  [ "${r:-0}" -ge 1 ] || show host-star-$who-rx
  hostrx host-caret-$who-rx 'netmap:eth0^' "${cmd[@]}"
done
a=$(grep -E '^Received' "$W/host-caret-c-rx.log"); b=$(grep -E '^Received' "$W/host-caret-ts-rx.log")
[ -n "$a" ] && [ "$a" = "$b" ]; ok "host-ring-caret-rx-same: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
