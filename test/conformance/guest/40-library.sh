# The library (open/poll/inject/dispatch/close) against the module, C pkt-gen on the other side.
# Up to 600 s: one run under a loaded host took 161 s; every check inside ends on a count.
PKTGEN=$PG VALECTL=$VC timeout -k 10 600 node "$APP/dist/test/conformance/library.js" > "$W/lib.log" 2>&1
st=$?
cat "$W/lib.log"
[ "$st" = 0 ]; ok library-script-exit $? "library.js exited $st"
