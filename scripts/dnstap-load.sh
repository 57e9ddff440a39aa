#!/usr/bin/env bash
# dnstap under load, issue 20's targets, loopback only and bounded in time.
#
#   scripts/dnstap-load.sh outage [BIN]    fixed-rate dnsperf (RATE, default 2000 qps) for
#       BEFORE + GONE + AFTER seconds (10 + 60 + 20) with a warm cache; fstrm_capture is
#       stopped after BEFORE and started again GONE later. Prints per phase the latency
#       percentiles, losses, dnstap frames and drops (from /metrics), the server's largest
#       VmRSS, its VmHWM at the end, and the messages each capture file holds.
#   scripts/dnstap-load.sh compare [BIN] [harness options...]   the shared compare.sh
#       with metaguard's bench command line plus a config with dnstap on (hits only) to an
#       fstrm_capture started outside the target's process group (its CPU is not the
#       server's); /metrics is read every second to find the frames and drops of each rep.
#   scripts/dnstap-load.sh callgrind [BIN]   scripts/callgrind-query.sh (instructions per
#       query) with the same dnstap config and capture; compare with that script run alone.
#
# BIN: target/release/metaguard. MESSAGES=hits|all. DNSTAP=off (outage, callgrind): the
# same run with no [export] and no capture, the control. The shared harness (BENCH_DIR)
# gives the fake upstream, the 100k list and the 50k-query workload. Everything stays on
# 127.0.0.1 and in a fresh /tmp/dnstap-load.* directory; every process started here is
# stopped by its pid on exit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$repo/.git")
bench=${BENCH_DIR:-$(dirname "$common")/../shared/bench}
[[ -x $bench/compare.sh ]] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 1; }
mode=${1:?usage: $0 outage|compare [BIN] [harness options...]}
bin=${2:-$repo/target/release/metaguard}
shift $(($# < 2 ? $# : 2))
for tool in fstrm_capture dnstap-ldns dnsperf curl; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
RATE=${RATE:-2000} BEFORE=${BEFORE:-10} GONE=${GONE:-60} AFTER=${AFTER:-20}
MESSAGES=${MESSAGES:-hits} DNSTAP=${DNSTAP:-on}
data=${BENCH_DATA_DIR:-/tmp/dnsbench-data}
[[ -f $data/queries.txt ]] || "$bench/gen-workload.py" "$data" >/dev/null
dir=$(mktemp -d /tmp/dnstap-load.XXXXXX)
base=${BENCH_PORT_BASE:-5600}
mport=$((base + 20))
sock=$dir/dnstap.sock

cat >"$dir/metaguard.toml" <<EOF
[metrics]
listen = "127.0.0.1:$mport"

[export]
dnstap = "unix:$sock"
dnstap_messages = "$MESSAGES"
EOF
if [[ $DNSTAP == off ]]; then
    sed -i '/^\[export\]/,$d' "$dir/metaguard.toml"
fi

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $mode == outage ]]; then peer_stop upstream 2>/dev/null || true; fi
}
trap cleanup EXIT

capture_pid=""
capture() { # FILE: start fstrm_capture writing FILE; wait for its socket
    [[ $DNSTAP == on ]] || return 0
    rm -f "$sock"
    fstrm_capture -t protobuf:dnstap.Dnstap -u "$sock" -w "$1" >>"$dir/capture.log" 2>&1 &
    capture_pid=$!
    pids+=("$capture_pid")
    for _ in $(seq 100); do [[ -S $sock ]] && return; sleep 0.1; done
    echo "fstrm_capture made no socket" >&2
    exit 1
}
uncapture() { [[ -z $capture_pid ]] || { kill "$capture_pid" && wait "$capture_pid" 2>/dev/null; } || true; }
metric() { # NAME: its value on /metrics now (0 when the server is not up)
    curl -s --max-time 2 "http://127.0.0.1:$mport/metrics" | awk -v n="metaguard_$1_total" '$1 == n {print $2}' | grep . || echo 0
}
messages() { if [[ -f $1 ]]; then dnstap-ldns -q -r "$1" 2>/dev/null | wc -l; else echo none; fi; }

if [[ $mode == compare ]]; then
    capture "$dir/compare.fstrm"
    # The harness restarts the target each rep: the counters start again from 0.
    (while sleep 1; do
        printf '%s %s %s\n' "$(date +%s)" "$(metric dnstap_frames)" "$(metric dnstap_dropped)"
    done >"$dir/metrics.log") &
    pids+=($!)
    (cd "$bench" && ./compare.sh --target-name metaguard-dnstap --json "$dir/compare.json" "$@" --target \
        "$bin serve --config $dir/metaguard.toml --listen \$BENCH_LISTEN_ADDR:\$BENCH_LISTEN_PORT --upstream \$BENCH_UPSTREAM --blocklist \$BENCH_BLOCKLIST_HOSTS --db \$BENCH_RUN_DIR/metaguard.db")
    uncapture
    echo "# dnstap frames and drops, the last reading before each restart (frames dropped):"
    awk 'NF == 3 { if ($2 + 0 < last + 0) print last, drop; last = $2; drop = $3 }
         END { print last, drop }' "$dir/metrics.log"
    echo "# messages in the capture: $(messages "$dir/compare.fstrm")   (files in $dir)"
    exit 0
fi
if [[ $mode == callgrind ]]; then
    capture "$dir/callgrind.fstrm"
    MG_CONFIG=$dir/metaguard.toml BENCH_DIR=$bench BENCH_RUN_DIR=$dir/callgrind \
        "$repo/scripts/callgrind-query.sh" "$bin"
    uncapture
    echo "# messages in the capture: $(messages "$dir/callgrind.fstrm")   (files in $dir)"
    exit 0
fi
[[ $mode == outage ]] || { echo "unknown mode $mode" >&2; exit 2; }

export BENCH_PORT_BASE=$base BENCH_DATA_DIR=$data BENCH_RUN_DIR=$dir
# shellcheck source=/dev/null
source "$bench/peers.sh"
peer_start upstream 0 >/dev/null
port=$((base + 10))
capture "$dir/before.fstrm"
"$bin" serve --config "$dir/metaguard.toml" --listen "127.0.0.1:$port" \
    --upstream "127.0.0.1:$(peer_port upstream)" --blocklist "$data/blocklist.hosts" \
    --db "$dir/metaguard.db" >"$dir/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 300); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 www.example.test >/dev/null 2>&1 && break
    sleep 0.1
done
# One pass of the workload first: every phase then sees the same warm cache.
dnsperf -s 127.0.0.1 -p "$port" -d "$data/queries.txt" -n 1 -Q 20000 >"$dir/warm.dnsperf" 2>&1
(while sleep 1; do
    printf '%s %s\n' "$(date +%s)" "$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")"
done >"$dir/rss.log") &
pids+=($!)

phase() { # NAME SECONDS
    local f0 d0 t0 t1 n lat lost rss
    f0=$(metric dnstap_frames) d0=$(metric dnstap_dropped) t0=$(date +%s)
    dnsperf -s 127.0.0.1 -p "$port" -d "$data/queries.txt" -Q "$RATE" -l "$2" -v >"$dir/$1.dnsperf" 2>&1
    t1=$(date +%s)
    lat=$dir/$1.lat
    awk '/^> / { printf "%.3f\n", $NF * 1000 }' "$dir/$1.dnsperf" | sort -g >"$lat"
    n=$(wc -l <"$lat")
    at() { sed -n "$(((n * $1 + 999) / 1000))p" "$lat"; } # per mille, nearest rank
    lost=$(awk '/Queries lost:/ { print $3 }' "$dir/$1.dnsperf")
    rss=$(awk -v t0="$t0" -v t1="$t1" '$1 >= t0 && $1 <= t1 && $2 > m { m = $2 } END { printf "%.1f", m / 1024 }' "$dir/rss.log")
    printf '%-7s %3d s  %7d answers  lost %s  p50 %s  p99 %s  p99.9 %s ms  dnstap frames %d  dropped %d  max VmRSS %s MiB\n' \
        "$1" $((t1 - t0)) "$n" "$lost" "$(at 500)" "$(at 990)" "$(at 999)" \
        $(($(metric dnstap_frames) - f0)) $(($(metric dnstap_dropped) - d0)) "$rss"
}
echo "# $RATE qps, dnstap $DNSTAP, dnstap_messages = $MESSAGES, queue $(grep -o 'dnstap_queue = [0-9]*' "$dir/metaguard.toml" || echo 'default (4096)')"
phase before "$BEFORE"
uncapture
phase gone "$GONE"
capture "$dir/after.fstrm"
phase after "$AFTER"
sleep 2
echo "# VmHWM $(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server/status")," \
    "dnstap frames $(metric dnstap_frames), dropped $(metric dnstap_dropped) in all"
kill "$server" && wait "$server" 2>/dev/null || true
uncapture
echo "# messages captured: before $(messages "$dir/before.fstrm"), after $(messages "$dir/after.fstrm")   (files in $dir)"
