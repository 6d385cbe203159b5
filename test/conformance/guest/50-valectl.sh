# valectl (netmap's C vale-ctl) and vale-ctl-ts against each other on the same module:
# what one creates/attaches/detaches/removes the other sees; read-only commands print
# the same bytes (stdout and stderr) and exit with the same status.
# The steps run in order in one node process (dist/test/conformance/valectl-steps.js:
# vale-ctl-ts in-process, valectl and shell commands as processes; `tsproc` runs
# vale-ctl-ts as a process of its own), then the checks below judge their outputs.
S=$W/steps; : >"$S"
step() { echo "$*" >>"$S"; }                                   # step NAME TOOL ARGS...
both() { local n=$1; shift; step "$n c $*"; step "$n ts $*"; }  # both NAME ARGS...

both list-empty; sed -i '$ s/ ts$/ tsproc/' "$S"   # the entry script as a process: exit 1 after a listing
# valectl creates and attaches, vale-ctl-ts observes, detaches and removes
step c-create c -n cp0
step c-create-if sh ip link show cp0
step c-attach c -a vale3:cp0
both list-one
both l-one -l vale3:cp0
step ts-detach ts -d vale3:cp0
both ts-detached
step ts-remove ts -r cp0
step ts-remove-if sh ip link show cp0
both remove-missing -r cp0
# vale-ctl-ts creates and attaches, valectl observes, detaches and removes
step ts-create ts -n tp0
step ts-create-if sh ip link show tp0
step ts-attach ts -a vale4:tp0
both list-ts-made
both l-ts-made -l vale4:tp0
step c-detach c -d vale4:tp0
both c-detached
step c-remove c -r tp0
step c-remove-if sh ip link show tp0
# a NIC with its host rings (-h), attached by one, detached by the other
step eth1-up sh ip link set eth1 up
step c-attach-host c -h vale5:eth1
both list-host
step ts-detach-host ts -d vale5:eth1
both ts-detached-host
step ts-attach-host ts -h vale5:eth1
both list-host-ts
step c-detach-host2 c -d vale5:eth1
# read-only queries and errors
both l-missing -l vale0:nosuch
both g-ephemeral -g vale0:eph1
both d-missing -d vale0:nosuch
both a-missing -a vale0:nosuchif
both p-no-conf -p vale0:x
both P-no-conf -P vale0:x
# -g on an attached persistent port: a fresh port for each tool (netmap 89607e1 renames such
# a port in the bridge to its bare ifname after the first PORT_INFO_GET, and a second one
# then fails with EINVAL, so the same port cannot serve both tools)
step gc0-create c -n gc0; step gc0-attach c -a vale9:gc0; step gt0-create c -n gt0; step gt0-attach c -a vale10:gt0
step g-attached c -g vale9:gc0
step g-attached ts -g vale10:gt0
both g-again -g vale9:gc0
both list-end; sed -i '$ s/ ts$/ tsproc/' "$S"

VALECTL=$VC VALECTL_TS=$APP/dist/tools/vale-ctl-ts.js timeout -k 10 600 node "$APP/dist/test/conformance/valectl-steps.js" "$S" "$W" >"$W/steps.log" 2>&1
st=$?
[ "$st" = 0 ]; ok valectl-steps-ran $? "valectl-steps.js exited $st: $(tail -5 "$W/steps.log" | tr '\n' ' ')"

rc() { cat "$W/$1.rc" 2>/dev/null || echo none; }
same() {  # same NAME: both tools' outputs and statuses identical
  local n=$1 why=""
  cmp -s "$W/$n.c.out" "$W/$n.ts.out" || why="stdout differs;"
  cmp -s "$W/$n.c.err" "$W/$n.ts.err" || why="$why stderr differs;"
  [ "$(rc $n.c)" = "$(rc $n.ts)" ] || why="$why exit status $(rc $n.c) (valectl) vs $(rc $n.ts) (vale-ctl-ts);"
  if [ -z "$why" ]; then pass "valectl-same-$n: (rc $(rc $n.c), $(wc -l <"$W/$n.c.out") lines)"
  else
    fail "valectl-same-$n" "$why"
    for f in c.out ts.out c.err ts.err; do [ -s "$W/$n.$f" ] && { echo "    $f:"; sed 's/^/    | /' "$W/$n.$f"; }; done
  fi
}
act() {  # act NAME TOOL: a state change by one tool, which must succeed
  [ "$(rc $1.$2)" = 0 ]; ok "valectl-$1" $? "exited $(rc $1.$2): $(cat "$W/$1.$2.out" "$W/$1.$2.err" 2>/dev/null | head -c 300)"
}
lists() {  # lists NAME WANT(yes|no) PORT: the full listings (step NAME, both tools) show PORT or not
  local n=$1 want=$2 port=$3 c=no ts=no
  grep -q "^$port " "$W/$n.c.out" && c=yes
  grep -q "^$port " "$W/$n.ts.out" && ts=yes
  [ "$c" = "$want" ] && [ "$ts" = "$want" ]; ok "valectl-$n: $port listed=$want by both" $? "valectl listed=$c, vale-ctl-ts listed=$ts"
  same "$n"
}
iface() {  # iface NAME WANT(yes|no): the sh step NAME (ip link show IF) found the interface or not
  local got=no; [ "$(rc $1.sh)" = 0 ] && got=yes
  [ "$got" = "$2" ]; ok "valectl-$1: interface exists=$2" $? "ip link show says exists=$got"
}

same list-empty
act c-create c; iface c-create-if yes
act c-attach c
lists list-one yes vale3:cp0
same l-one
act ts-detach ts
lists ts-detached no vale3:cp0
act ts-remove ts; iface ts-remove-if no
same remove-missing
act ts-create ts; iface ts-create-if yes
act ts-attach ts
lists list-ts-made yes vale4:tp0
same l-ts-made
act c-detach c
lists c-detached no vale4:tp0
act c-remove c; iface c-remove-if no
act c-attach-host c
lists list-host yes 'vale5:eth1\^'
act ts-detach-host ts
lists ts-detached-host no 'vale5:eth1\^*'
act ts-attach-host ts
lists list-host-ts yes 'vale5:eth1\^'
act c-detach-host2 c
for n in l-missing g-ephemeral d-missing a-missing p-no-conf P-no-conf; do same $n; done
for n in gc0-create gc0-attach gt0-create gt0-attach; do act $n c; done
grep -v '^mem_id:' "$W/g-attached.c.out" >"$W/g.c.cut"; grep -v '^mem_id:' "$W/g-attached.ts.out" >"$W/g.ts.cut"
cmp -s "$W/g.c.cut" "$W/g.ts.cut" && [ "$(rc g-attached.c)" = 0 ] && [ "$(rc g-attached.ts)" = 0 ] && grep -q '^mem_id: *[1-9]' "$W/g-attached.ts.out"
ok "valectl-g-attached: same geometry, a real mem_id" $? "valectl rc $(rc g-attached.c): $(cat "$W/g-attached.c.out" "$W/g-attached.c.err" | tr '\n' ' '); vale-ctl-ts rc $(rc g-attached.ts): $(cat "$W/g-attached.ts.out" "$W/g-attached.ts.err" | tr '\n' ' ')"
same g-again
same list-end
