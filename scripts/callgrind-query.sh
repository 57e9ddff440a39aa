#!/usr/bin/env bash
# Instructions per answered query, counted by callgrind (repeatable under load, unlike time).
# Starts the shared harness's fake upstream, runs BIN under callgrind with the harness's 100k
# hosts list and hit logging to SQLite, sends the 50k-query workload once to warm the cache,
# zeroes the counters, sends it again at 3000 qps, dumps, and prints instructions / 50,000.
# Usage: scripts/callgrind-query.sh [BIN] [extra serve args...]   (BIN: target/release/metaguard)
# MG_CONFIG: the config file serve reads (default /dev/null: the built-in defaults), e.g.
# one with [export] dnstap to a running fstrm_capture. The shared harness is found beside
# the main checkout (also from a git worktree) unless BENCH_DIR says where.
# Everything stays on 127.0.0.1.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$repo/.git")
bench=${BENCH_DIR:-$(dirname "$common")/../shared/bench}
bin=${1:-$repo/target/release/metaguard}
shift || true
data=${BENCH_DATA_DIR:-/tmp/dnsbench-data}
[[ -f $data/queries.txt ]] || "$bench/gen-workload.py" "$data" >/dev/null
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-5400} BENCH_DATA_DIR=$data
export BENCH_RUN_DIR=${BENCH_RUN_DIR:-$(mktemp -d /tmp/callgrind-query.XXXXXX)}
mkdir -p "$BENCH_RUN_DIR"
# shellcheck source=/dev/null
source "$bench/peers.sh"
up_port=$(peer_port upstream)
port=$((BENCH_PORT_BASE + 10))
head -n 50000 "$data/queries.txt" >"$BENCH_RUN_DIR/q50k.txt"

peer_start upstream 0 >/dev/null
cleanup() {
    [[ -n ${vg:-} ]] && kill "$vg" 2>/dev/null && wait "$vg" 2>/dev/null
    peer_stop upstream 2>/dev/null || true
}
trap cleanup EXIT

valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$BENCH_RUN_DIR/callgrind.out.%p" \
    "$bin" serve --config "${MG_CONFIG:-/dev/null}" --listen "127.0.0.1:$port" \
    --upstream "127.0.0.1:$up_port" --blocklist "$data/blocklist.hosts" \
    --db "$BENCH_RUN_DIR/metaguard.db" "$@" >"$BENCH_RUN_DIR/server.log" 2>&1 &
vg=$!
for _ in $(seq 600); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 www.example.test >/dev/null 2>&1 && break
    sleep 0.2
done
run() { dnsperf -s 127.0.0.1 -p "$port" -d "$BENCH_RUN_DIR/q50k.txt" -n 1 -Q 3000 -t 5 >"$BENCH_RUN_DIR/$1.dnsperf" 2>&1; }
run warm
callgrind_control -z "$vg" >/dev/null 2>&1
run measured
callgrind_control -d "$vg" >/dev/null 2>&1
grep -E 'Queries (sent|completed|lost)' "$BENCH_RUN_DIR/measured.dnsperf" | sed 's/^ */# /'
# One file per thread: the query path (tokio's worker), the hit-log writer, the rest.
total=0
for f in "$BENCH_RUN_DIR"/callgrind.out.*; do
    n=$(awk '/^summary:|^totals:/{print $2; exit}' "$f")
    [[ ${n:-0} -gt 0 ]] || continue
    echo "# thread ${f##*-}: $((n / 50000)) per query"
    total=$((total + n))
done
echo "instructions: $total  per query: $((total / 50000))"
