#!/usr/bin/env bash
# CPU and system calls per query at a fixed household-like rate (issue 16), metaguard
# next to dnsmasq in the same run, both blocking the bench's 100k-domain list and
# forwarding to a dnsmasq upstream on loopback (every name 192.0.2.1, TTL 1 h, so a
# warm cache answers most of the workload, as at home).
#   scripts/per-query-cost.sh [BINARY] [QPS] [SECONDS] [THREADS]
#   (defaults: target/release/metaguard, 2000, 20, 1; THREADS is [server] threads;
#   environment: ROUNDS=N interleaved CPU rounds, STRACE=0 to skip the system calls,
#   UPSTREAM_TTL=0 for an upstream whose answers neither server caches, so every query
#   that is not blocked is forwarded: the forwarding path's cost, as a household with a
#   cold cache or short TTLs sees it)
# Needs dnsperf and dnsmasq (../shared/bench/setup.sh) and the bench workload
# (/tmp/dnsbench-data, made by ../shared/bench/gen-workload.py). Both servers are started,
# each gets one warm-up pass through the workload (fills the caches), then
#   1. CPU, ROUNDS times (default 1), the servers taking turns (metaguard first in odd
#      rounds, dnsmasq first in even ones, so a drift of the machine hits both alike):
#      dnsperf -Q QPS -l SECONDS; the server's utime+stime (/proc/PID/stat, all threads)
#      over the run divided by the queries answered: µs per query; with ROUNDS > 1 the
#      median of each and the ratio at the end, then each round's own ratio, their
#      median and a 95 % bootstrap interval of it (is the gap wider than the noise?);
#   2. system calls (unless STRACE=0): the same run again with `strace -f -c` attached:
#      calls per answered query, in total and for the top calls (strace slows the
#      server; the CPU figures are from step 1 only).
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/metaguard}
QPS=${2:-2000}
SECS=${3:-20}
THREADS=${4:-1}
DATA=${BENCH_DATA:-/tmp/dnsbench-data}
[[ -f $DATA/queries.txt ]] || { echo "no workload in $DATA (run ../shared/bench/gen-workload.py $DATA)" >&2; exit 1; }
. scripts/loopback-upstream.sh
UPPORT=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces --port "$UPPORT" --local-ttl="${UPSTREAM_TTL:-3600}" \
    --address=/#/192.0.2.1 --address=/#/2001:db8::1 --pid-file="$tmp/up.pid" --user="$(id -un)" 2>"$tmp/up.log" &
pids+=($!)

cat >"$tmp/metaguard.toml" <<EOF
[server]
threads = $THREADS
[clients]
neighbours = false
leases = []
[remote]
state_dir = "$tmp"
EOF
awk '$1 == "0.0.0.0" && NF >= 2 { print "address=/" $2 "/" }' "$DATA/blocklist.hosts" >"$tmp/dnsmasq-block.conf"

ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# dnsperf's "Queries completed" from its output file $1.
completed() { awk '/Queries completed:/ { print $3; exit }' "$1"; }

wait_up() {
    for _ in $(seq 100); do
        dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 example.com A >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not answer" >&2
    exit 1
}

warm() { # port
    dnsperf -s 127.0.0.1 -p "$1" -d "$DATA/queries.txt" -n 1 -Q 20000 >/dev/null 2>&1 || true
}

cpu() { # label pid port round: prints "label cpu us/query ..." and appends us/query to $tmp/label.us
    local label=$1 pid=$2 port=$3 round=$4 t0 t1 n us
    t0=$(ticks "$pid")
    dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/queries.txt" -l "$SECS" -Q "$QPS" >"$tmp/$label.cpu" 2>&1 || true
    t1=$(ticks "$pid")
    n=$(completed "$tmp/$label.cpu")
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
    echo "$us" >>"$tmp/$label.us"
    printf '%-10s cpu  %6.1f us/query  (round %d: %d ticks, %d queries; load %s)\n' \
        "$label" "$us" "$round" $((t1 - t0)) "$n" "$(cut -d" " -f1 /proc/loadavg)"
}

syscalls() { # label pid port
    local label=$1 pid=$2 port=$3 n
    strace -f -c -o "$tmp/$label.strace" -p "$pid" 2>/dev/null &
    local st=$!
    sleep 1
    dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/queries.txt" -l "$SECS" -Q "$QPS" >"$tmp/$label.sys" 2>&1 || true
    kill -INT "$st"
    wait "$st" || true
    n=$(completed "$tmp/$label.sys")
    local top
    top=$(awk -v n="$n" 'NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "%s %.2f\n", $NF, $4 / n }' \
        "$tmp/$label.strace" | sort -k2,2nr | head -6 | tr '\n' ' ')
    awk -v l="$label" -v n="$n" -v top="$top" '
        $NF == "total" { total = $4 }
        END { printf "%-10s sys  %6.2f calls/query  (%d calls, %d queries): %s\n", l, total / n, total, n, top }' \
        "$tmp/$label.strace"
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "# $QPS qps for $SECS s; upstream TTL ${UPSTREAM_TTL:-3600} s; metaguard $BIN, [server] threads = $THREADS; dnsmasq $(dnsmasq --version | awk 'NR == 1 { print $3 }'); $(nproc) cores; load $(cut -d" " -f1-3 /proc/loadavg)"
PORT=$(free_port)
"$BIN" serve --config "$tmp/metaguard.toml" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPPORT" \
    --blocklist "$DATA/blocklist.hosts" --db "$tmp/metaguard.db" 2>"$tmp/metaguard.log" &
mg=$!
pids+=($mg)
wait_up "$PORT"

DPORT=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --listen-address=127.0.0.1 --bind-interfaces --port "$DPORT" --server="127.0.0.1#$UPPORT" \
    --cache-size=10000 --cache-rr=HTTPS --dns-forward-max=1000 --conf-file="$tmp/dnsmasq-block.conf" \
    --pid-file="$tmp/dm.pid" --user="$(id -un)" 2>"$tmp/dm.log" &
dm=$!
pids+=($dm)
wait_up "$DPORT"

warm "$PORT"
warm "$DPORT"
ROUNDS=${ROUNDS:-1}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        cpu metaguard "$mg" "$PORT" "$r"
        cpu dnsmasq "$dm" "$DPORT" "$r"
    else
        cpu dnsmasq "$dm" "$DPORT" "$r"
        cpu metaguard "$mg" "$PORT" "$r"
    fi
done
if [ "$ROUNDS" -gt 1 ]; then
    m=$(median "$tmp/metaguard.us")
    d=$(median "$tmp/dnsmasq.us")
    awk -v m="$m" -v d="$d" -v r="$ROUNDS" 'BEGIN { printf "medians of %d rounds: metaguard %.1f us/query, dnsmasq %.1f, ratio %.2f\n", r, m, d, m / d }'
    # Each round's own ratio (the two servers measured back to back, so a drift of the
    # machine hits both), their median, and a 95 % bootstrap interval of that median:
    # whether the difference is larger than the spread from round to round.
    paste "$tmp/metaguard.us" "$tmp/dnsmasq.us" | awk '
        function med(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { q[++n] = $1 / $2; line = line sprintf(" %.2f", q[n]) }
        END {
            for (i = 1; i <= n; i++) c[i] = q[i]
            srand(1)
            for (b = 1; b <= 2000; b++) {
                for (i = 1; i <= n; i++) s[i] = q[int(rand() * n) + 1]
                m[b] = med(s, n)
            }
            med(m, 2000)
            printf "per-round ratios:%s; median %.3f, 95%% bootstrap interval %.3f-%.3f\n", line, med(c, n), m[50], m[1951]
        }'
fi
if [ "${STRACE:-1}" != 0 ]; then
    syscalls metaguard "$mg" "$PORT"
    syscalls dnsmasq "$dm" "$DPORT"
fi
