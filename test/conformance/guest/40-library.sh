# The library (open/poll/inject/dispatch/close) against the module, C pkt-gen on the other side.
PKTGEN=$PG VALECTL=$VC timeout -k 10 300 node "$APP/dist/test/conformance/library.js" > "$W/lib.log" 2>&1
st=$?
cat "$W/lib.log"
[ "$st" = 0 ]; ok library-script-exit $? "library.js exited $st"
