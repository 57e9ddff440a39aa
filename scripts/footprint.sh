#!/usr/bin/env bash
# Measure the release binary: stripped size, time from exec to the "listening on" log
# line and to the first answered query, and idle RSS once ready. Needs dnsmasq and dig.
#   scripts/footprint.sh [BINARY]     (default target/release/metaguard)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/metaguard}
. scripts/loopback-upstream.sh
start_upstream
PORT=$(free_port)
sleep 0.3

echo "size: $(stat -c %s "$BIN") bytes ($(ls -l "$BIN"))"
t0=$(date +%s%N)
"$BIN" serve --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPPORT" --db "$tmp/x.db" 2>"$tmp/log" &
pid=$!
pids+=($pid)
until grep -q "listening on" "$tmp/log"; do sleep 0.002; done
t1=$(date +%s%N)
until dig +short +time=1 +tries=1 @127.0.0.1 -p "$PORT" connect.facebook.net A | grep -q 0.0.0.0; do sleep 0.002; done
t2=$(date +%s%N)
echo "exec -> 'listening on' log line: $(((t1 - t0) / 1000000)) ms"
echo "exec -> first answered query:    $(((t2 - t0) / 1000000)) ms"
sleep 2
echo "idle $(grep VmRSS /proc/$pid/status)"
echo "allowed: example.com -> $(dig +short @127.0.0.1 -p "$PORT" example.com A)"
