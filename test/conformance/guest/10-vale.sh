# C pkt-gen <-> pkt-gen-ts over kernel VALE ports.
# 500 frames fit an empty 1024-slot rx ring, so nothing can be dropped: exact counts, and
# the receiver stops at its count (-n), never on a silence.
rx_tx vale-c-tx-ts-rx  $PGT -i vale0:r1 -f rx -n 500  --  $PG -i vale0:t1 -f tx -n 500 -w 0
exact vale-c-tx-ts-rx 500
rx_tx vale-ts-tx-c-rx  $PG -i vale0:r2 -f rx -n 500 -w 0  --  $PGT -i vale0:t2 -f tx -n 500
exact vale-ts-tx-c-rx 500
# startup lines: the same queue count as pkt-gen
for d in tx:vale-c-tx-ts-rx-tx:vale-ts-tx-c-rx-tx rx:vale-ts-tx-c-rx-rx:vale-c-tx-ts-rx-rx; do
  IFS=: read -r dir c ts <<<"$d"
  a=$(qline $c | sed 's/vale0:[a-z0-9]*/PORT/'); b=$(qline $ts | sed 's/vale0:[a-z0-9]*/PORT/')
  [ -n "$a" ] && [ "$a" = "$b" ]; ok "vale-startup-line-$dir: '$a'" $? "C: '$a', pkt-gen-ts: '$b'"
done
# VALE drops when a receiver's ring is full: 20000 frames at full speed overflow it. The
# first 1023 always fit the receiver's empty ring (VALE delivers in order), so a receiver
# counting to 1000 always ends; the sender must get all 20000 out whatever is dropped.
big() {  # big NAME RXCMD... -- TXCMD...
  local n=$1; shift
  rx_tx "$n" "$@"
  local s r; s=$(sent "$n-tx"); r=$(received "$n-rx")
  [ "${s:-0}" = 20000 ] && [ "${r:-0}" -ge 1000 ] && [ "$r" -le "$s" ] && [ "$(cat "$W/$n-tx.rc")" = 0 ] && [ "$(cat "$W/$n-rx.rc")" = 0 ]
  ok "$n: sent ${s:-?}, received ${r:-?}" $? "want sent 20000, 1000 <= received <= sent, both exiting 0 (tx rc $(cat "$W/$n-tx.rc"), rx rc $(cat "$W/$n-rx.rc"))"
}
big vale-big-c-tx-ts-rx  $PGT -i vale0:r3 -f rx -n 1000  --  $PG -i vale0:t3 -f tx -n 20000 -w 0
big vale-big-ts-tx-c-rx  $PG -i vale0:r4 -f rx -n 1000 -w 0  --  $PGT -i vale0:t4 -f tx -n 20000
