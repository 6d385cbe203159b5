# Kernel netmap pipes: both ends ({ master, } slave) in both roles, C pkt-gen on the other end.
# A pipe has no drops (a full ring stops the sender): every frame is accounted for.
# pkt-gen-ts receivers stop at their count (-n); C receivers run until the sender is done
# (see rx_tx in lib.sh).
N=20000
rx_tx pipe-c-master-tx-ts-slave-rx  $PGT -i 'netmap:pipe}1' -f rx -n $N  --  $PG -i 'netmap:pipe{1' -f tx -n $N -w 0
exact pipe-c-master-tx-ts-slave-rx $N
rx_tx pipe-ts-master-tx-c-slave-rx  $PG -i 'netmap:pipe}2' -f rx -w 0  --  $PGT -i 'netmap:pipe{2' -f tx -n $N
exact pipe-ts-master-tx-c-slave-rx $N
rx_tx pipe-c-slave-tx-ts-master-rx  $PGT -i 'netmap:pipe{3' -f rx -n $N  --  $PG -i 'netmap:pipe}3' -f tx -n $N -w 0
exact pipe-c-slave-tx-ts-master-rx $N
rx_tx pipe-ts-slave-tx-c-master-rx  $PG -i 'netmap:pipe{4' -f rx -w 0  --  $PGT -i 'netmap:pipe}4' -f tx -n $N
exact pipe-ts-slave-tx-c-master-rx $N
