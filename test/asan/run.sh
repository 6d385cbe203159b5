#!/usr/bin/env bash
# Builds both addons (netmap.node, the library; netmap_tools.node, pkt-gen and
# the benchmark loops) with AddressSanitizer + UBSan into build-asan/ and runs
# the tests that exercise the native code (regions, pipes, the switch
# datapath, fd passing, pkt-gen's loops against hostile rings) with them.
# Node itself is not instrumented, so the sanitizer runtime is preloaded. Any
# report fails the run.
#
#   bash test/asan/run.sh [AVA ARGS]   build (or reuse), then run the tests
#   bash test/asan/run.sh --build-only build (or reuse) build-asan/ and stop: test/stages.sh
#                                      runs this in the background beside the ava stage
#   bash test/asan/run.sh --no-build [AVA ARGS]
#                                      run the tests on build-asan/ as it is (after a
#                                      --build-only); it must hold instrumented builds
#
# ASAN_REUSE=1 reuses build-asan/*.node when they are newer than every file
# in cpp/ and binding.gyp (the build takes minutes on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
mode=all
case "${1:-}" in --build-only) mode=build; shift ;; --no-build) mode=test; shift ;; esac
TIMEFORMAT='asan: build took %0R s (CPU %0U s user, %0S s sys)'
if [ "$mode" = test ]; then
  echo "asan: testing build-asan/ as it is (--no-build)"
elif [ "${ASAN_REUSE:-0}" = 1 ] && [ -f build-asan/netmap.node ] && [ -f build-asan/netmap_tools.node ] \
  && [ -f build-asan/libvale-ts-netmap.so ] \
  && [ -z "$(find cpp binding.gyp -newer build-asan/netmap.node -print -quit)" ] \
  && [ -z "$(find cpp binding.gyp -newer build-asan/netmap_tools.node -print -quit)" ]; then
  echo "asan: reusing build-asan/*.node (ASAN_REUSE=1, no source newer)"
else
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r binding.gyp cpp "$work/"
ln -s "$root/node_modules" "$work/node_modules"
echo '{"name":"netmap-asan","version":"0.0.0"}' >"$work/package.json"
# build against the installed Node headers when there are any (no download)
nodedir=()
[ -f /usr/include/node/node_api.h ] && nodedir=(--nodedir=/usr)
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
time (cd "$work" && CXXFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" \
  "$root/node_modules/.bin/node-gyp" rebuild -j 2 "${nodedir[@]}" >"$work/build.log" 2>&1) || { cat "$work/build.log"; exit 1; }
mkdir -p build-asan
for addon in netmap netmap_tools; do cp "$work/build/Release/$addon.node" "build-asan/$addon.node"; done
cp "$work/build/Release/libvale-ts-netmap.so" build-asan/libvale-ts-netmap.so
fi
for addon in netmap netmap_tools; do
  # refuse to report a clean run of an uninstrumented build
  if [ "$(nm -D "build-asan/$addon.node" | grep -c __asan_report)" = 0 ]; then
    echo "asan: $addon.node was built without AddressSanitizer instrumentation" >&2
    exit 1
  fi
done
# the preload library, instrumented too: the preload tests load it into C programs
if [ ! -f build-asan/libvale-ts-netmap.so ] || [ "$(nm -D build-asan/libvale-ts-netmap.so | grep -c __asan_report)" = 0 ]; then
  echo "asan: libvale-ts-netmap.so was built without AddressSanitizer instrumentation" >&2
  exit 1
fi
if [ "$mode" = build ]; then echo "asan: build-asan/ ready (--build-only)"; exit 0; fi
export VALE_TS_PRELOAD="$root/build-asan/libvale-ts-netmap.so"
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
echo "asan: both addons built with -fsanitize=address,undefined; running native-heavy tests under them"
export NETMAP_ADDON_PATH="$root/build-asan/netmap.node"
export NETMAP_TOOLS_ADDON_PATH="$root/build-asan/netmap_tools.node"
export LD_PRELOAD="$asan:$ubsan"
# Node's own allocations are not instrumented and V8 leaks by design at exit
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allow_user_segv_handler=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# ASan+UBSan run the native code several times slower, and this stage runs beside the
# conformance guest: ava's inactivity timeout (120 s in package.json) fired once on the
# 4400 register/close cycles of hostile-proc on a loaded machine; the tests themselves
# wait for events, so a longer limit only bounds a hang
node_modules/.bin/ava --timeout 10m --concurrency 1 dist/test/integration/pipe.test.js dist/test/integration/switch.test.js dist/test/integration/backpressure.test.js dist/test/unit/abi.test.js \
  dist/test/integration/pktgen-native.test.js dist/test/integration/control-api.test.js dist/test/integration/hostile.test.js dist/test/integration/hostile-bells.test.js dist/test/integration/hostile-persistent.test.js \
  dist/test/integration/hostile-proc.test.js dist/test/integration/preload.test.js dist/test/integration/preload-netmap-apps.test.js dist/test/integration/preload-hostile.test.js \
  dist/test/unit/offload.test.js dist/test/integration/socket-netdev.test.js dist/test/integration/socket-netdev-stream-loss.test.js dist/test/integration/slot-fill.test.js dist/test/integration/tap-port.test.js \
  dist/test/integration/linux-if.test.js dist/test/integration/linux-if-hostile.test.js \
  dist/test/integration/vhost-user-hostile.test.js dist/test/integration/monitor.test.js dist/test/unit/capture-pcapng.test.js \
  dist/test/integration/vxlan.test.js dist/test/integration/vxlan-hostile.test.js dist/test/integration/switch-vnet.test.js \
  dist/test/unit/shortcut-ring.test.js dist/test/unit/shortcut-peer.test.js dist/test/integration/vxlan-shortcut.test.js dist/test/integration/vxlan-shortcut-hostile.test.js \
  dist/test/integration/switch-scan.test.js dist/test/integration/hostile-core.test.js dist/test/integration/rx-chains.test.js dist/test/integration/linux-if-direct.test.js \
  dist/test/integration/socket-netdev-inline.test.js dist/test/integration/socket-netdev-stream-loss-inline.test.js dist/test/integration/direct-sink.test.js "$@"
