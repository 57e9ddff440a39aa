#!/usr/bin/env bash
# CPU per query at a fixed rate (default 2000 qps) of the bare responder's shapes, next to
# metaguard and dnsmasq (both blocking the bench's 100k list, a warm cache), all started
# at once and measured in turns: each round runs dnsperf against every server in a
# rotating order and reads the server's CPU from /proc/PID/task/*/schedstat (ns).
#   scripts/udp-skeleton/run.sh            (SERVERS="A T O E P D" ROUNDS=6 SECS=10 QPS=2000)
# Letters: A metaguard (MG_BIN, default target/release/metaguard), B a second metaguard
# (MG_BIN_B), D dnsmasq, and the skeleton's shapes T tokio, X t1, Y t2, O tokio1, C ct1,
# I io1, E epoll, P poll, M pollm (see src/main.rs). Needs dnsperf, dnsmasq and the bench
# workload (/tmp/dnsbench-data, ../shared/bench/gen-workload.py). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release --manifest-path scripts/udp-skeleton/Cargo.toml --target-dir target/udp-skeleton
SK=target/udp-skeleton/release/udp-skeleton
A=${MG_BIN:-target/release/metaguard}
DATA=${BENCH_DATA:-/tmp/dnsbench-data}
SECS=${SECS:-10}
QPS=${QPS:-2000}
SERVERS=${SERVERS:-"A T O E P D"}
. scripts/loopback-upstream.sh
UPPORT=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.1 \
    --bind-interfaces --port "$UPPORT" --local-ttl=3600 --address=/#/192.0.2.1 --address=/#/2001:db8::1 \
    --user="$(id -un)" 2>/dev/null &
pids+=($!)
start_mg() { # letter binary
    mkdir -p "$tmp/$1"
    printf '[server]\nthreads = 1\n[clients]\nneighbours = false\nleases = []\n[remote]\nstate_dir = "%s"\n' \
        "$tmp/$1" >"$tmp/$1/m.toml"
    local p
    p=$(free_port)
    "$2" serve --config "$tmp/$1/m.toml" --listen "127.0.0.1:$p" --upstream "127.0.0.1:$UPPORT" \
        --blocklist "$DATA/blocklist.hosts" --db "$tmp/$1/m.db" 2>"$tmp/$1/log" &
    pids+=($!)
    eval "pid_$1=$!; port_$1=$p"
}
for s in $SERVERS; do
    case $s in
    A) start_mg A "$A" ;;
    B) start_mg B "${MG_BIN_B:?MG_BIN_B: the second metaguard}" ;;
    D)
        awk '$1 == "0.0.0.0" && NF >= 2 { print "address=/" $2 "/" }' "$DATA/blocklist.hosts" >"$tmp/b.conf"
        port_D=$(free_port)
        dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
            --listen-address=127.0.0.1 --bind-interfaces --port "$port_D" --server="127.0.0.1#$UPPORT" \
            --cache-size=10000 --cache-rr=HTTPS --dns-forward-max=1000 --conf-file="$tmp/b.conf" \
            --user="$(id -un)" 2>/dev/null &
        pid_D=$!
        pids+=($!)
        ;;
    *)
        declare -A shape=([T]=tokio [X]=t1 [Y]=t2 [O]=tokio1 [C]=ct1 [I]=io1 [E]=epoll [P]=poll [M]=pollm)
        p=$(free_port)
        "$SK" "${shape[$s]}" "127.0.0.1:$p" &
        pids+=($!)
        eval "pid_$s=$!; port_$s=$p"
        ;;
    esac
done
cpuns() { local s=0 t; for t in /proc/$1/task/*; do s=$((s + $(cut -d' ' -f1 "$t/schedstat"))); done; echo $s; }
for s in $SERVERS; do
    p=port_$s
    for _ in $(seq 100); do
        dig +short +time=1 +tries=1 -p "${!p}" @127.0.0.1 example.com >/dev/null 2>&1 && break
        sleep 0.1
    done
    dnsperf -s 127.0.0.1 -p "${!p}" -d "$DATA/queries.txt" -n 1 -Q 20000 >/dev/null 2>&1 || true
done
read -r -a list <<<"$SERVERS"
k=${#list[@]}
for r in $(seq "${ROUNDS:-6}"); do
    line="round $r:"
    for i in $(seq 0 $((k - 1))); do
        s=${list[$(((i + r) % k))]}
        p=port_$s
        pid=pid_$s
        c0=$(cpuns "${!pid}")
        dnsperf -s 127.0.0.1 -p "${!p}" -d "$DATA/queries.txt" -l "$SECS" -Q "$QPS" >"$tmp/dp" 2>&1 || true
        c1=$(cpuns "${!pid}")
        n=$(awk '/Queries completed:/ { print $3; exit }' "$tmp/dp")
        us=$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN { printf "%.2f", c / 1000 / n }')
        echo "$us" >>"$tmp/$s.us"
        line="$line $s $us"
    done
    echo "$line"
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
out="medians (us per query):"
for s in $SERVERS; do out="$out $s $(median "$tmp/$s.us")"; done
echo "$out"
