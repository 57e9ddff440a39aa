#!/usr/bin/env bash
# Memory under TCP hoarding (issue 14 target: < 64 MiB). Starts dnsmasq on loopback
# with a 50 kB TXT answer (200 records) and the release binary, then 256 connections
# from 127.0.0.2-9 that ask for it and never read (scripts/tcp-hoard.py), then times a
# query from a ninth address and prints the server's RSS. Needs dnsmasq and python3.
# The hoarders are treated as LAN devices: loopback is exempt from [server.rate_limit]
# by default, here it is not (EXEMPT=1 keeps the exemption: then nothing bounds the
# CPU the large answers cost, and on a busy 2-core box the ninth client waits).
#   scripts/tcp-hoard-rss.sh [BINARY] [QUERIES_PER_CONNECTION]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/metaguard}
PER=${2:-200}
. scripts/loopback-upstream.sh
UPPORT=$(free_port)
txt=()
long=$(printf 'x%.0s' $(seq 1 250))
for i in $(seq 1 200); do txt+=("--txt-record=big.test,$i$long"); done
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces --port "$UPPORT" --local-ttl=300 \
    --address=/other.test/192.0.2.1 "${txt[@]}" \
    --pid-file="$tmp/dnsmasq.pid" --user="$(id -un)" 2>"$tmp/dnsmasq.log" &
pids+=($!)
PORT=$(free_port)
if [ "${EXEMPT:-0}" = 1 ]; then : >"$tmp/c.toml"; else
    printf '[server.rate_limit]\nexempt = []\n' >"$tmp/c.toml"
fi
"$BIN" serve --config "$tmp/c.toml" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPPORT" --db "$tmp/x.db" 2>"$tmp/log" &
pid=$!
pids+=($pid)
until grep -q "listening on" "$tmp/log"; do sleep 0.01; done
ulimit -n 4096 2>/dev/null || true
python3 scripts/tcp-hoard.py "$PORT" "$pid" "$PER"
grep -iE "warn|error" "$tmp/log" | head -5 || true
