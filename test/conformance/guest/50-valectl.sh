# valectl (netmap's C vale-ctl) and vale-ctl-ts against each other on the same module:
# what one creates/attaches/detaches/removes the other sees; read-only commands print
# the same bytes (stdout and stderr) and exit with the same status.
both() {  # both NAME ARGS...: run both tools; $W/NAME.{c,ts}.{out,err,rc}
  local n=$1; shift
  timeout -k 5 60 $VC "$@" >"$W/$n.c.out" 2>"$W/$n.c.err"; echo $? >"$W/$n.c.rc"
  timeout -k 5 60 $VCT "$@" >"$W/$n.ts.out" 2>"$W/$n.ts.err"; echo $? >"$W/$n.ts.rc"
}
same() {  # same NAME ARGS...: both tools, outputs and statuses identical
  local n=$1; shift; both "$n" "$@"
  local why=""
  cmp -s "$W/$n.c.out" "$W/$n.ts.out" || why="stdout differs;"
  cmp -s "$W/$n.c.err" "$W/$n.ts.err" || why="$why stderr differs;"
  cmp -s "$W/$n.c.rc" "$W/$n.ts.rc" || why="$why exit status $(cat "$W/$n.c.rc") (valectl) vs $(cat "$W/$n.ts.rc") (vale-ctl-ts);"
  if [ -z "$why" ]; then pass "valectl-same-$n: valectl $* (rc $(cat "$W/$n.c.rc"), $(wc -l <"$W/$n.c.out") lines)"
  else
    fail "valectl-same-$n" "valectl $*: $why"
    for f in c.out ts.out c.err ts.err; do [ -s "$W/$n.$f" ] && { echo "    $f:"; sed 's/^/    | /' "$W/$n.$f"; }; done
  fi
}
act() {  # act NAME TOOL ARGS...: a state change by one tool, which must succeed
  local n=$1 tool=$2; shift 2
  timeout -k 5 60 $tool "$@" >"$W/$n.log" 2>&1; local st=$?
  [ "$st" = 0 ]; ok "valectl-$n" $? "$(basename "${tool##* }") $* exited $st: $(head -c 300 "$W/$n.log")"
}
lists() {  # lists NAME WANT(yes|no) PORT: the full listing, by both tools, shows PORT or not
  local n=$1 want=$2 port=$3; both "$n" 
  local c=no ts=no
  grep -q "^$port " "$W/$n.c.out" && c=yes
  grep -q "^$port " "$W/$n.ts.out" && ts=yes
  [ "$c" = "$want" ] && [ "$ts" = "$want" ]; ok "valectl-$n: $port listed=$want by both" $? "valectl listed=$c, vale-ctl-ts listed=$ts"
}
iface() { ip link show "$1" >/dev/null 2>&1 && echo yes || echo no; }

same list-empty
# valectl creates and attaches, vale-ctl-ts observes, detaches and removes
act c-create "$VC" -n cp0
[ "$(iface cp0)" = yes ]; ok "valectl-c-create-is-an-interface" $? "no interface cp0 after valectl -n cp0"
act c-attach "$VC" -a vale3:cp0
lists c-attached yes vale3:cp0
same list-one
same l-one -l vale3:cp0
act ts-detach "$VCT" -d vale3:cp0
lists ts-detached no vale3:cp0
act ts-remove "$VCT" -r cp0
[ "$(iface cp0)" = no ]; ok "valectl-ts-remove-gone" $? "interface cp0 still there after vale-ctl-ts -r cp0"
same remove-missing -r cp0
# vale-ctl-ts creates and attaches, valectl observes, detaches and removes
act ts-create "$VCT" -n tp0
[ "$(iface tp0)" = yes ]; ok "valectl-ts-create-is-an-interface" $? "no interface tp0 after vale-ctl-ts -n tp0"
act ts-attach "$VCT" -a vale4:tp0
lists ts-attached yes vale4:tp0
same list-ts-made
same l-ts-made -l vale4:tp0
act c-detach "$VC" -d vale4:tp0
lists c-detached no vale4:tp0
act c-remove "$VC" -r tp0
[ "$(iface tp0)" = no ]; ok "valectl-c-remove-gone" $? "interface tp0 still there after valectl -r tp0"
# a NIC with its host rings (-h), attached by one, detached by the other
ip link set eth1 up
act c-attach-host "$VC" -h vale5:eth1
lists c-attached-host yes 'vale5:eth1\^'
same list-host
act ts-detach-host "$VCT" -d vale5:eth1
lists ts-detached-host no vale5:eth1
act ts-attach-host "$VCT" -h vale5:eth1
same list-host-ts
act c-detach-host2 "$VC" -d vale5:eth1
# read-only queries and errors
same l-missing -l vale0:nosuch
same g-ephemeral -g vale0:eph1
same d-missing -d vale0:nosuch
same a-missing -a vale0:nosuchif
same p-no-conf -p vale0:x
same P-no-conf -P vale0:x
# -g on an attached persistent port: a fresh port for each tool (netmap 89607e1 renames such
# a port in the bridge to its bare ifname after the first PORT_INFO_GET, and a second one
# then fails with EINVAL, so the same port cannot serve both tools)
"$VC" -n gc0 && "$VC" -a vale9:gc0 && "$VC" -n gt0 && "$VC" -a vale10:gt0
timeout -k 5 60 $VC -g vale9:gc0 >"$W/g.c.out" 2>&1; c=$?
timeout -k 5 60 $VCT -g vale10:gt0 >"$W/g.ts.out" 2>&1; t=$?
grep -v '^mem_id:' "$W/g.c.out" >"$W/g.c.cut"; grep -v '^mem_id:' "$W/g.ts.out" >"$W/g.ts.cut"
cmp -s "$W/g.c.cut" "$W/g.ts.cut" && [ "$c" = 0 ] && [ "$t" = 0 ] && grep -q '^mem_id: *[1-9]' "$W/g.ts.out"
ok "valectl-g-attached: same geometry, a real mem_id" $? "valectl rc $c: $(tr '\n' ' ' <"$W/g.c.out"); vale-ctl-ts rc $t: $(tr '\n' ' ' <"$W/g.ts.out")"
same g-again -g vale9:gc0
same list-end
