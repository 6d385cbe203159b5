# C pkt-gen <-> pkt-gen-ts over kernel VALE ports.
# 500 frames fit an empty 1024-slot rx ring, so nothing can be dropped: exact counts.
rx_tx vale-c-tx-ts-rx  $PGT -i vale0:r1 -f rx -W  --  $PG -i vale0:t1 -f tx -n 500 -w 0
exact vale-c-tx-ts-rx 500
rx_tx vale-ts-tx-c-rx  $PG -i vale0:r2 -f rx -W -w 0  --  $PGT -i vale0:t2 -f tx -n 500
exact vale-ts-tx-c-rx 500
# startup lines: the same queue count as pkt-gen
for d in tx:vale-c-tx-ts-rx-tx:vale-ts-tx-c-rx-tx rx:vale-ts-tx-c-rx-rx:vale-c-tx-ts-rx-rx; do
  IFS=: read -r dir c ts <<<"$d"
  a=$(qline $c | sed 's/vale0:[a-z0-9]*/PORT/'); b=$(qline $ts | sed 's/vale0:[a-z0-9]*/PORT/')
  [ -n "$a" ] && [ "$a" = "$b" ]; ok "vale-startup-line-$dir: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
done
# VALE drops when a receiver's ring is full: larger runs compare counts (0 < received <= sent)
rx_tx vale-big-c-tx  $PGT -i vale0:r3 -f rx -W  --  $PG -i vale0:t3 -f tx -n 20000 -w 0
s=$(sent vale-big-c-tx-tx); r=$(received vale-big-c-tx-rx)
[ "${s:-0}" = 20000 ] && [ "${r:-0}" -gt 0 ] && [ "$r" -le "$s" ]; ok "vale-big-c-tx-ts-rx: sent ${s:-?}, received ${r:-?}" $? "want sent 20000, 0 < received <= sent"
rx_tx vale-big-ts-tx  $PG -i vale0:r4 -f rx -W -w 0  --  $PGT -i vale0:t4 -f tx -n 20000
s=$(sent vale-big-ts-tx-tx); r=$(received vale-big-ts-tx-rx)
[ "${s:-0}" = 20000 ] && [ "${r:-0}" -gt 0 ] && [ "$r" -le "$s" ]; ok "vale-big-ts-tx-c-rx: sent ${s:-?}, received ${r:-?}" $? "want sent 20000, 0 < received <= sent"
