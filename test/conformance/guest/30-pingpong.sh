# ping/pong both ways over a kernel VALE switch of their own (vale1).
N=200
pingpong() {  # NAME PONGCMD... -- PINGCMD...
  local n=$1; shift; local po=() pi=()
  while [ "$1" != -- ]; do po+=("$1"); shift; done; shift; pi=("$@")
  start "$n-pong" 180 "${po[@]}"
  wait_lines "$n-pong" 'Ready' 1 120 || { stop "$n-pong"; fail "$n" "pong did not start"; show "$n-pong"; return; }
  runq "$n-ping" 180 "${pi[@]}"; local st=$?
  finish "$n-pong"; local pst=$?
  local got; got=$(sed -n 's/.*RTT over \([0-9]*\) packets.*/\1/p' "$W/$n-ping.log" | tail -1)
  if [ "$st" = 0 ] && [ "$pst" = 0 ] && [ "$got" = "$N" ]; then pass "$n: $got round trips"
  else fail "$n" "want $N round trips and both exiting 0; ping rc $st, pong rc $pst, round trips '${got}'"; show "$n-ping"; show "$n-pong"; fi
}
pingpong pingpong-c-ping-ts-pong  $PGT -i vale1:po1 -f pong -n $N  --  $PG -i vale1:pi1 -f ping -n $N -w 0
pingpong pingpong-ts-ping-c-pong  $PG -i vale1:po2 -f pong -n $N -w 0  --  $PGT -i vale1:pi2 -f ping -n $N
