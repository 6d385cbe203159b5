#!/usr/bin/env bash
# Installs the Debian packages in test/system-packages.txt that are missing,
# as root, one apt-get at a time across everything that installs packages for
# the tests (flock /tmp/x-netmap-apt.lock, shared with the fixtures and the
# netmap lab). Not root: names what is missing and exits 0 (the tests that
# need it then fail naming it). Exits non-zero if apt-get could not install.
set -uo pipefail
cd "$(dirname "$0")/.."
list=test/system-packages.txt
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')
missing() {
  local p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
mapfile -t need < <(missing)
[ "${#need[@]}" = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-packages: not root; the tests that need them will fail: apt-get install ${need[*]}"
  exit 0
fi
log=/tmp/x-netmap-system-packages.log
echo "system-packages: installing ${need[*]} (log: $log)"
t=$SECONDS
# shellcheck disable=SC2016
flock /tmp/x-netmap-apt.lock bash -c '
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" || { apt-get update && apt-get install -y --no-install-recommends "$@"; }' \
  apt "${need[@]}" >"$log" 2>&1
mapfile -t need < <(missing)
if [ "${#need[@]}" != 0 ]; then
  echo "system-packages: still missing after apt-get: ${need[*]}; the log's tail:"
  tail -15 "$log" | sed 's/^/  | /'
  exit 1
fi
echo "system-packages: installed in $((SECONDS - t)) s"
