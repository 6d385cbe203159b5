# ping/pong both ways over a kernel VALE switch of their own (vale1).
# pkt-gen-ts's ping counts the replies it saw (netmap's C ping prints its sent count
# whatever came back, and its `poll error ... timeout` line is the only sign of a lost
# reply), so a missing round trip fails either way. netmap's C pong with -n queues its
# last reply and exits without a sync (pong_body has no final txsync): that reply is never
# sent, so the C pong runs without a count until the ping is done, and is then stopped.
# pkt-gen-ts's pong with -n answers all N and pushes the last reply out before exiting.
N=200
pingpong() {  # NAME PONGCMD... -- PINGCMD...
  local n=$1; shift; local po=() pi=() counted=false a
  while [ "$1" != -- ]; do po+=("$1"); [ "$1" = -n ] && counted=true; shift; done; shift; pi=("$@")
  start "$n-pong" 180 "${po[@]}"
  wait_lines "$n-pong" 'Ready' 1 120 || { stop "$n-pong"; fail "$n" "pong did not start"; show "$n-pong"; return; }
  runq "$n-ping" 180 "${pi[@]}"; local st=$?
  local pst; if $counted; then finish "$n-pong"; pst=$?; else stop "$n-pong"; pst=$?; fi
  local got lost; got=$(sed -n 's/.*RTT over \([0-9]*\) packets.*/\1/p' "$W/$n-ping.log" | tail -1)
  lost=$(grep -c 'poll error.*timeout' "$W/$n-ping.log")
  if [ "$st" = 0 ] && [ "$pst" = 0 ] && [ "$got" = "$N" ] && [ "$lost" = 0 ]; then pass "$n: $got round trips"
  else fail "$n" "want $N round trips, no reply timeout, both exiting 0; ping rc $st, pong rc $pst, round trips '${got}', reply timeouts $lost"; show "$n-ping"; show "$n-pong"; fi
}
pingpong pingpong-c-ping-ts-pong  $PGT -i vale1:po1 -f pong -n $N  --  $PG -i vale1:pi1 -f ping -n $N -w 0
pingpong pingpong-ts-ping-c-pong  $PG -i vale1:po2 -f pong -w 0  --  $PGT -i vale1:pi2 -f ping -n $N
# the reason, shown on netmap's own tools: C ping -n against C pong -n, the pong's last
# reply never comes back (C ping waits its 3 s and says `poll error ... timeout`)
start pingpong-c-c-pong 60 $PG -i vale1:po3 -f pong -n 20 -w 0
if wait_lines pingpong-c-c-pong 'Ready' 1 60; then
  runq pingpong-c-c-ping 60 $PG -i vale1:pi3 -f ping -n 20 -w 0; finish pingpong-c-c-pong
  grep -q 'poll error.*timeout' "$W/pingpong-c-c-ping.log"
  ok "pingpong-c-c-reference: netmap's C pong -n 20 leaves its 20th reply unsent" $? "C ping saw every reply: $(tail -3 "$W/pingpong-c-c-ping.log" | tr '\n' ' ')"
else stop pingpong-c-c-pong; fail pingpong-c-c-reference "C pong did not start"; fi
