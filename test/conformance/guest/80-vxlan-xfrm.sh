# VXLAN between two vale-ts over the kernel's IPsec ESP (xfrm), which the lab's
# kernel has and the test machines' kernels lack (test/integration/vxlan-ipsec.test.ts
# does ESP in userspace there). Two "host" namespaces xh1/xh2 on a veth underlay
# (xu1 - xu2), static SAs and policies from `ip xfrm` (AES-GCM, transport mode, keys
# and SPIs from /dev/urandom per run) for the UDP 4789 traffic between the two VTEP
# addresses; a vale-ts in each with a VXLAN port to the other and a veth (xv1/xv2,
# as `vale-ctl-ts -a` attaches it) to an end namespace xe1/xe2. Checks: plaintext
# VXLAN reaches a VTEP before the policies and is dropped by the kernel after
# them; ping and a TCP transfer both ways; the SAs' counters grew on both hosts; a
# capture of the underlay holds ESP and nothing else of IPv4 (no UDP 4789, no payload
# byte), while a capture in the end namespace holds the payload (the control).
U1=10.77.0.1 U2=10.77.0.2 O1=192.168.77.1 O2=192.168.77.2 ATK=10.78.0.66 VNI=77
VTS="node $APP/dist/tools/vale-ts.js"
VCU="node $APP/dist/tools/vale-ctl-ts.js"
T0=$SECONDS
nsx() { local n=$1; shift; ip netns exec "$n" "$@"; }

# ESP and its AEAD (rfc4106(gcm(aes)): gcm, ghash, ctr and seqiv are modules here, and the
# kernel's own request for them would look in the host's /lib/modules); seqiv draws its IV
# salt from the kernel's stdrng, which is drbg (a module, with sha512 and jitterentropy, which
# fails to load without sha3: "Unknown symbol" is modprobe's word for its ENOENT):
# without it every `ip xfrm state add` of ESP, AEAD or not, answers "Kernel was unable to
# initialize cryptographic operations". Then the netlink interface of `ip xfrm`, and veth.
mods=(xfrm_algo xfrm_user esp4 gf128mul ghash_generic ctr gcm seqiv sha512_generic sha3_generic jitterentropy_rng drbg veth)
bad=""
for m in "${mods[@]}"; do modprobe -d "$LAB/kernel" -S "$KVER" "$m" 2>>"$W/modprobe.log" || bad="$bad $m"; done
[ -z "$bad" ]; ok "xfrm-modules: ${mods[*]}" $? "modprobe failed for:$bad ($(tail -3 "$W/modprobe.log" | tr '\n' ' '))"

cleanup() {
  # what is still running of this job's own (each a `timeout`, which passes SIGTERM on)
  local p
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  wait
  for n in xh1 xh2 xe1 xe2 xa; do ip netns del $n 2>/dev/null; done
}
cleanup
for n in xh1 xh2 xe1 xe2 xa; do ip netns add $n && ip -n $n link set lo up; done
ip link add xu1 netns xh1 type veth peer name xu2 netns xh2
ip -n xh1 addr add $U1/24 dev xu1; ip -n xh1 link set xu1 up
ip -n xh2 addr add $U2/24 dev xu2; ip -n xh2 link set xu2 up
# the ends: 1400 fits an inner frame, VXLAN's 50 and ESP's at most 37 (GCM) in the underlay's 1500
for i in 1 2; do
  ip link add xv$i netns xh$i type veth peer name xt$i netns xe$i
  ip -n xh$i link set xv$i mtu 1400 up
  o=O$i; ip -n xe$i addr add ${!o}/24 dev xt$i; ip -n xe$i link set xt$i mtu 1400 up
done
# an attacker on a second wire into xh1, sending to the VTEP's address in the clear
ip link add xg1 netns xh1 type veth peer name xg2 netns xa
ip -n xh1 addr add 10.78.0.1/24 dev xg1; ip -n xh1 link set xg1 up
ip -n xa addr add $ATK/24 dev xg2; ip -n xa link set xg2 up; ip -n xa route add $U1/32 via 10.78.0.1

# one vale-ts per host, its two ports from a config file (what vale-ctl-ts -n ... --vxlan
# and -a make): one node process per side instead of three
for i in 1 2; do
  me=U$i; peer=U$((3 - i))
  cat >"$W/vale$i.json" <<END
{ "switches": { "valex": { "ports": {
  "vx": { "driver": { "kind": "vxlan", "vni": $VNI, "local": "${!me}", "remote": ["${!peer}"], "shortcut": false } },
  "xv$i": { "driver": { "kind": "linux-if", "ifname": "xv$i" } }
} } } }
END
  # shortcut off: both vale-ts share this kernel and would otherwise bypass the tunnel under test
  start vale$i 600 env NETMAP_BACKEND=user ip netns exec xh$i $VTS --socket "$W/vale$i.sock" --config "$W/vale$i.json"
done
up=0
for i in 1 2; do
  if wait_lines vale$i 'listening on' 1 180 && grep -q 'loaded:' "$W/vale$i.log" && ! grep -q 'valex.*error\|: error' "$W/vale$i.log"; then up=$((up + 1)); else show vale$i; fi
done
[ $up = 2 ]; ok "xfrm-vale-ts-up: two vale-ts, each with a VXLAN port and an attached veth" $? "see the output above"
note "setup: $((SECONDS - T0)) s"

# stats N: xh$N's vale-ts's counters into $W/stats$N.json (a node process: seconds under TCG)
stats() { NETMAP_BACKEND=user $VCU --socket "$W/vale$1.sock" --stats=valex --json >"$W/stats$1.json" 2>"$W/stats.err"; }
# vtep N NAME: the VTEP's counter NAME (e.g. 'remote 10.77.0.2 txFrames') in the last stats N, 0 if absent
vtep() {
  local k=$2
  grep -o -E "\"${k//./\\.}\": *[0-9]+" "$W/stats$1.json" | grep -o -E '[0-9]+$' | head -1 | grep . || echo 0
}
# one plaintext VXLAN datagram (VNI 77, a broadcast frame from 02:00:00:00:66:66) from the attacker to the VTEP
inject() {
  nsx xa bash -c "printf '\\x08\\x00\\x00\\x00\\x00\\x00\\x4d\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\x02\\x00\\x00\\x00\\x66\\x66\\x88\\xb5%046d' 0 > /dev/udp/$U1/4789"
}
xstat() { nsx xh1 awk -v k="$1" '$1 == k { print $2 }' /proc/net/xfrm_stat; }

# the threat xfrm's inbound policy closes: Linux delivers VXLAN for the VTEP's address whatever
# the wire, and VXLAN authenticates nothing
seen=0
for try in 1 2 3; do
  inject; stats 1
  seen=$(vtep 1 "remote $ATK rxFrames")
  [ "${seen:-0}" -ge 1 ] && break
done
[ "${seen:-0}" -ge 1 ]; ok "xfrm-plaintext-reaches-vtep-before-policies: remote $ATK rxFrames $seen" $? "the injected datagram did not reach the VTEP ($(cat "$W/stats.err"))"

# --- the SAs and policies: ESP, AES-GCM with a 128-bit ICV, transport mode ---------------
rnd() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
K12=0x$(rnd 36) K21=0x$(rnd 36)   # AES-256 key + 4-byte salt (RFC 4106), one per direction
S12=0x$(rnd 4) S21=0x$(rnd 4)
x=0
for i in 1 2; do
  for d in 12 21; do
    s=U${d:0:1} t=U${d:1:1} k=K$d spi=S$d
    ip -n xh$i xfrm state add src ${!s} dst ${!t} proto esp spi ${!spi} reqid $d mode transport \
      replay-window 64 aead 'rfc4106(gcm(aes))' ${!k} 128 2>>"$W/xfrm.log" || x=1
  done
  me=U$i peer=U$((3 - i)) out=$i$((3 - i)) in=$((3 - i))$i
  # out: UDP to the peer goes into ESP. Not `dport 4789`: the VTEP sends from per-flow source
  # ports through a raw socket, whose policy lookup sees no ports, so a port selector would
  # miss every datagram (sent in the clear, then dropped by the peer's `in` policy)
  ip -n xh$i xfrm policy add src ${!me}/32 dst ${!peer}/32 proto udp dir out \
    tmpl src ${!me} dst ${!peer} proto esp reqid $out mode transport 2>>"$W/xfrm.log" || x=1
  # in: VXLAN to this VTEP from anywhere must have come out of ESP (the kernel drops the rest,
  # counted in XfrmInTmplMismatch): the guard the userspace-ESP setup needs nft for
  ip -n xh$i xfrm policy add src 0.0.0.0/0 dst ${!me}/32 proto udp dport 4789 dir in \
    tmpl src ${!peer} dst ${!me} proto esp reqid $in mode transport 2>>"$W/xfrm.log" || x=1
done
[ $x = 0 ]; ok "xfrm-states-and-policies: 2 SAs and 2 policies on each host" $? "$(cat "$W/xfrm.log")"
# without the SAs nothing below can pass, and each check would wait for its limit
if [ $x != 0 ]; then cleanup; job_end; exit 0; fi

drop0=$(xstat XfrmInTmplMismatch)
inject
drop1=$(xstat XfrmInTmplMismatch)
[ "$((drop1 - drop0))" -ge 1 ]; ok "xfrm-plaintext-dropped-by-inbound-policy: XfrmInTmplMismatch +$((drop1 - drop0))" $? "$(nsx xh1 cat /proc/net/xfrm_stat | grep -v ' 0$' | tr '\n' ' ')"

# --- ping and TCP across, both ways ------------------------------------------------------
for d in 1:$O2 2:$O1; do
  i=${d%%:*} to=${d#*:}
  runq ping$i 60 ip netns exec xe$i ping -c 3 -i 0.2 -w 50 "$to"
  # with -w, ping sends until 3 are answered: late answers make it more than 3
  got=$(grep -oE '[0-9]+ received' "$W/ping$i.log" | tail -1 | cut -d' ' -f1)
  [ "${got:-0}" -ge 3 ]; ok "xfrm-ping-xe$i-to-$to" $? "$(grep -E 'received|unreachable' "$W/ping$i.log" | tail -2 | tr '\n' ' ')"
done

# the payload: 800 kB of random data as base64 lines, each behind this run's token, so a
# capture can be searched for it without a byte-by-byte search (1.4 MB each way)
TOK=XFRM$(rnd 8)
head -c 800000 /dev/urandom | base64 -w 64 | sed "s/^/$TOK/" >"$W/payload"
SUM=$(sha256sum <"$W/payload" | cut -d' ' -f1)
SIZE=$(stat -c %s "$W/payload")
start cap-underlay 300 ip netns exec xh1 tcpdump -Z root -U -n -i xu1 -w "$W/underlay.pcap"
start cap-end 300 ip netns exec xe1 tcpdump -Z root -U -n -i xt1 -w "$W/end.pcap"
wait_lines cap-underlay 'listening on' 1 60 && wait_lines cap-end 'listening on' 1 60
tcp() {  # tcp FROM TO ADDR PORT: the payload from xeFROM to xeTO, checksum compared
  local f=$1 t=$2 a=$3 p=$4 i
  start nc$t 200 ip netns exec xe$t busybox nc -l -p "$p"
  for ((i = 0; i < 300; i++)); do nsx xe$t ss -Hltn "sport = :$p" | grep -q . && break; sleep 0.1; done
  runq send$f 200 ip netns exec xe$f bash -c "cat '$W/payload' > /dev/tcp/$a/$p"
  finish nc$t
  local got; got=$(sha256sum <"$W/nc$t.log" | cut -d' ' -f1)
  [ "$got" = "$SUM" ]; ok "xfrm-tcp-xe$f-to-xe$t: $SIZE bytes, sha256 equal" $? "received $(stat -c %s "$W/nc$t.log") bytes, sha256 $got (sender rc $(cat "$W/send$f.rc"))"
}
t=$SECONDS
tcp 1 2 $O2 5001
tcp 2 1 $O1 5002
note "tcp: $((SECONDS - t)) s for 2 x $SIZE bytes"
stop cap-underlay; stop cap-end
count() { tcpdump -n -r "$1" "$2" 2>/dev/null | wc -l; }
esp=$(count "$W/underlay.pcap" 'ip proto 50')
clear=$(count "$W/underlay.pcap" 'ip and not ip proto 50')
vx=$(count "$W/underlay.pcap" 'udp port 4789')
[ "$esp" -gt 1000 ] && [ "$clear" = 0 ] && [ "$vx" = 0 ]
ok "xfrm-underlay-esp-only: $esp ESP packets, $clear other IPv4 packets, $vx UDP 4789" $? "want > 1000 ESP and nothing else"
inner=$(grep -a -o -F "$TOK" "$W/end.pcap" | wc -l)
outer=$(grep -a -o -F "$TOK" "$W/underlay.pcap" | wc -l)
[ "$inner" -gt 1000 ]; ok "xfrm-control-payload-in-end-capture: the token $inner times" $? "the control failed: the payload is not in the end namespace's capture"
[ "$outer" = 0 ]; ok "xfrm-no-payload-on-underlay: the token $outer times" $? "payload in the clear on the underlay"

# --- the counters: both SAs on both hosts carried the traffic; the VTEPs forwarded it --------
sa_packets() {  # sa_packets HOST SRC DST: packets of that SA (ip -s xfrm state's 'lifetime current')
  ip -n xh$1 -s xfrm state list src "$2" dst "$3" proto esp |
    awk '/lifetime current:/ { getline; sub(/.*\(bytes\), */, ""); sub(/\(packets\).*/, ""); print }'
}
for i in 1 2; do
  a=$(sa_packets $i $U1 $U2); b=$(sa_packets $i $U2 $U1)
  [ "${a:-0}" -gt 1000 ] && [ "${b:-0}" -gt 1000 ]
  ok "xfrm-sa-counters-xh$i: $U1->$U2 ${a:-?} packets, $U2->$U1 ${b:-?} packets" $? "want > 1000 each: $(ip -n xh$i -s xfrm state | tr '\n\t' '  ')"
done
for i in 1 2; do
  stats $i; peer=U$((3 - i)); n=$(vtep $i "remote ${!peer} txFrames")
  [ "${n:-0}" -gt 1000 ]; ok "xfrm-vtep$i-tx: remote ${!peer} txFrames $n" $? "the frames did not go through vale-ts's VTEP"
done
n=$(vtep 1 "remote $ATK rxFrames")
[ "$n" = "$seen" ]; ok "xfrm-vtep-attacker-unchanged: remote $ATK rxFrames $n" $? "was $seen before the policies"
cleanup
note "80-vxlan-xfrm: $((SECONDS - T0)) s"
