# Multi-ring ports and threads (-p), @conf: parameters, /T and /R ring flags, -p validation.
norm() { qline "$1" | sed -E 's/(vale[0-9]*:[a-z0-9]*|netmap:pipe[{}][0-9]*)//'; }
# VALE delivers every frame to the receiver's ring 0, so several sender threads
# meet one receiver bound to all rings; 800 frames fit its ring: exact
rx_tx vale-p2-c-tx-ts-rx  $PGT -i vale11:r1@conf:rings=2 -f rx -n 800  --  $PG -i vale11:t1@conf:rings=2 -f tx -p 2 -n 800 -w 0
exact vale-p2-c-tx-ts-rx 800
rx_tx vale-p2-ts-tx-c-rx  $PG -i vale12:r2@conf:rings=2 -f rx -n 800 -w 0  --  $PGT -i vale12:t2@conf:rings=2 -f tx -p 2 -n 800
exact vale-p2-ts-tx-c-rx 800
# pipes keep ring i to ring i: a thread per ring on both ends
rx_tx pipe-p2-c-tx-ts-rx  $PGT -i 'netmap:pipe{7@conf:rings=2' -f rx -n 800 -p 2  --  $PG -i 'netmap:pipe}7@conf:rings=2' -f tx -p 2 -n 800 -w 0
exact pipe-p2-c-tx-ts-rx 800
rx_tx pipe-p2-ts-tx-c-rx  $PG -i 'netmap:pipe{8@conf:rings=2' -f rx -p 2 -w 0  --  $PGT -i 'netmap:pipe}8@conf:rings=2' -f tx -p 2 -n 800
exact pipe-p2-ts-tx-c-rx 800
for d in vale-tx:vale-p2-c-tx-ts-rx-tx:vale-p2-ts-tx-c-rx-tx vale-rx:vale-p2-ts-tx-c-rx-rx:vale-p2-c-tx-ts-rx-rx \
         pipe-tx:pipe-p2-c-tx-ts-rx-tx:pipe-p2-ts-tx-c-rx-tx pipe-rx:pipe-p2-ts-tx-c-rx-rx:pipe-p2-c-tx-ts-rx-rx; do
  IFS=: read -r dir c ts <<<"$d"
  a=$(norm $c); b=$(norm $ts)
  [ -n "$a" ] && [ "$a" = "$b" ]; ok "rings-startup-line-$dir: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
done
# @conf:rings=3 seen the same way by both
runq conf-c 60 $PG -i vale13:c1@conf:rings=3 -f tx -n 1 -w 0
runq conf-ts 60 $PGT -i vale13:c2@conf:rings=3 -f tx -n 1
a=$(norm conf-c); b=$(norm conf-ts)
[ -n "$a" ] && [ "$a" = "$b" ]; ok "conf-rings3-startup-line: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
# -p beyond the port's rings: refused by both, with pkt-gen's message, never a hang
runq badp-c 60 $PG -i vale14:b1 -f rx -p 2 -w 0; c=$?
runq badp-ts 60 $PGT -i vale14:b2 -f rx -p 2; t=$?
[ "$c" != 0 ] && [ "$t" != 0 ] && [ "$t" != 124 ] && grep -q 'bad nthreads 2, have 1 queues' "$W/badp-ts.log"
ok "bad-p-refused: C rc $c, pkt-gen-ts rc $t" $? "want both non-zero (no timeout) and pkt-gen-ts printing 'bad nthreads 2, have 1 queues': $(tail -2 "$W/badp-ts.log" | tr '\n' ' ')"
# /T (tx rings only) and /R (rx rings only)
rx_tx flagT-ts-tx  $PG -i vale15:r1 -f rx -n 500 -w 0  --  $PGT -i vale15:t1/T -f tx -n 500
exact flagT-ts-tx 500
rx_tx flagR-ts-rx  $PGT -i vale15:r2/R -f rx -n 500  --  $PG -i vale15:t2/T -f tx -n 500 -w 0
exact flagR-ts-rx 500
a=$(norm flagR-ts-rx-tx); b=$(norm flagT-ts-tx-tx)
[ -n "$a" ] && [ "$a" = "$b" ]; ok "flagT-startup-line: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
