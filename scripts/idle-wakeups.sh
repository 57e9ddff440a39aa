#!/usr/bin/env bash
# Idle wakeups (issue 16): how often metaguard wakes with nothing to do, next to dnsmasq.
#   scripts/idle-wakeups.sh [BINARY] [SECONDS]   (default target/release/metaguard, 60)
# Starts an upstream dnsmasq, then metaguard `serve` with the built-in defaults except
# loopback addresses: it listens on 127.0.0.1:<free port>, logs hits to a temporary
# database, and takes its upstream from a temporary resolv.conf (so the resolv.conf
# watch runs, as with the defaults). A dnsmasq forwarder reading the same resolv.conf is
# the reference. Each gets a few queries (blocked, forwarded, cached), settles for
# SETTLE seconds (default 15: past the hit log's batch and the blocking pool's 10 s
# keep-alive), then its threads' context switches (voluntary + nonvoluntary, from
# /proc/PID/task/*/status) are summed over the window; a thread that starts or ends in
# the window is counted from its start or to its last sample (every second).
# Prints wakeups per 10 s by thread name, and the total.
# WATCHDOG_USEC=30000000 (the shipped unit's WatchdogSec=30s) makes metaguard ping a
# systemd watchdog as under systemd (WATCHDOG_PID is set to its pid; with no
# NOTIFY_SOCKET a ping sends nothing, but the pinging thread runs).
# As root the upstream listens on $IDLE_UPSTREAM (default 127.0.0.2) port 53, the only
# port resolv.conf can name; otherwise metaguard gets it through [upstream] servers and
# the resolv.conf watch is not exercised (said in the output). The dashboard runs as by
# default, on a free loopback port; WEB=0 turns it off (`[web] enabled = false`), to
# compare. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/metaguard}
SECS=${2:-60}
SETTLE=${SETTLE:-15}
. scripts/loopback-upstream.sh
# The state directory apart too: serve watches it for controls.json (inotify), and the
# samples written below into $tmp must not wake it either.
mkdir "$tmp/state"
# resolv.conf alone in its directory: dnsmasq (and metaguard) watch that directory, and
# the samples written below must not wake them.
mkdir "$tmp/etc"
resolv=$tmp/etc/resolv.conf

up_addr=${IDLE_UPSTREAM:-127.0.0.2}
if [[ $(id -u) == 0 ]]; then
    dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
        --listen-address="$up_addr" --bind-interfaces --port 53 \
        --address=/#/192.0.2.1 --pid-file="$tmp/up.pid" --user=root 2>"$tmp/up.log" &
    pids+=($!)
    echo "nameserver $up_addr" >"$resolv"
    upstream="resolv_conf = \"$resolv\""
    dm_upstream=(--resolv-file="$resolv")
else
    start_upstream
    up_addr=127.0.0.1
    echo "nameserver 127.0.0.1" >"$resolv"
    upstream="servers = [\"127.0.0.1:$UPPORT\"]"
    dm_upstream=(--no-resolv --server="127.0.0.1#$UPPORT")
    echo "# not root: upstream through [upstream] servers, resolv.conf watch not exercised"
fi

PORT=$(free_port)
if [[ ${WEB:-1} == 0 ]]; then web="enabled = false"; else web="listen = \"127.0.0.1:$(free_port)\""; fi
cat >"$tmp/metaguard.toml" <<EOF
[server]
listen = ["127.0.0.1:$PORT"]
[upstream]
$upstream
[store]
db = "$tmp/metaguard.db"
[remote]
state_dir = "$tmp/state"
[web]
$web
EOF
if [[ -n ${WATCHDOG_USEC:-} ]]; then
    # shellcheck disable=SC2016 # $$ is the pid of the shell that execs metaguard
    WATCHDOG_USEC=$WATCHDOG_USEC bash -c 'WATCHDOG_PID=$$ exec "$0" "$@"' \
        "$BIN" serve --config "$tmp/metaguard.toml" 2>"$tmp/metaguard.log" &
else
    "$BIN" serve --config "$tmp/metaguard.toml" 2>"$tmp/metaguard.log" &
fi
mg=$!
pids+=($mg)

DPORT=$(free_port)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts "${dm_upstream[@]}" \
    --listen-address=127.0.0.1 --bind-interfaces --port "$DPORT" --cache-size=10000 \
    --pid-file="$tmp/dnsmasq.pid" --user="$(id -un)" 2>"$tmp/dnsmasq.log" &
dm=$!
pids+=($dm)

# A few queries of each kind, so every path has run once before the window.
for port in "$PORT" "$DPORT"; do
    for _ in $(seq 100); do
        dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 example.com A >/dev/null 2>&1 && break
        sleep 0.1
    done
    for name in connect.facebook.net example.com example.org example.com; do
        dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$name" A >/dev/null || true
    done
done
sleep "$SETTLE"

# Every second, for every thread of $1: "tid comm voluntary nonvoluntary" into $2 (the
# last line of a thread wins).
sample() {
    local pid=$1 out=$2 t
    for t in /proc/"$pid"/task/*; do
        [[ -r $t/status ]] || continue
        awk -v tid="${t##*/}" '
            /^Name:/ { $1 = ""; sub(/^ /, ""); gsub(/ /, "_"); name = $0 }
            /^voluntary_ctxt_switches:/ { v = $2 }
            /^nonvoluntary_ctxt_switches:/ { n = $2 }
            END { if (name != "") print tid, name, v + 0, n + 0 }' "$t/status" 2>/dev/null || true
    done >>"$out"
}
: >"$tmp/mg.first"
: >"$tmp/dm.first"
sample "$mg" "$tmp/mg.first"
sample "$dm" "$tmp/dm.first"
: >"$tmp/mg.all"
: >"$tmp/dm.all"
for _ in $(seq "$SECS"); do
    sleep 1
    sample "$mg" "$tmp/mg.all"
    sample "$dm" "$tmp/dm.all"
done

# Per thread name: switches in the window (a thread absent at the start counts from 0).
report() {
    local label=$1 first=$2 all=$3
    awk -v label="$label" -v secs="$SECS" '
        FNR == NR { bv[$1] = $3; bn[$1] = $4; next }
        { lv[$1] = $3; ln[$1] = $4; name[$1] = $2 }
        END {
            for (t in lv) {
                v = lv[t] - (t in bv ? bv[t] : 0); n = ln[t] - (t in bn ? bn[t] : 0)
                byv[name[t]] += v; byn[name[t]] += n; tv += v; tn += n
                if (!(t in bv)) started++
            }
            for (t in bv) if (!(t in lv)) ended++
            for (k in byv) printf "%-10s %-16s %5d switches (%d vol, %d nonvol)  %6.2f per 10 s\n", label, k, byv[k] + byn[k], byv[k], byn[k], (byv[k] + byn[k]) * 10 / secs
            printf "%-10s %-16s %5d switches (%d vol, %d nonvol)  %6.2f per 10 s  threads started %d, ended %d\n", label, "TOTAL", tv + tn, tv, tn, (tv + tn) * 10 / secs, started + 0, ended + 0
        }' "$first" "$all" | LC_ALL=C sort -k2,2
}
echo "# idle window ${SECS} s after ${SETTLE} s settling; WATCHDOG_USEC=${WATCHDOG_USEC:-unset}; metaguard: $BIN; dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}')"
report metaguard "$tmp/mg.first" "$tmp/mg.all"
report dnsmasq "$tmp/dm.first" "$tmp/dm.all"
