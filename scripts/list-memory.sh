#!/usr/bin/env bash
# Memory and load time of metaguard with a large hosts list (issue 16): RSS at rest,
# peak (VmHWM) during a SIGHUP reload that changes another (small) list, and the time
# from exec to the list's last name answered blocked, cold (no compiled cache) and warm;
# for a reload, from SIGHUP to serve's READY=1 on NOTIFY_SOCKET.
# Optionally dnsmasq and unbound loading the same list (PEERS=1).
#
#   cargo build --release
#   scripts/list-memory.sh [RULES...]        # default: 100000 1000000 2000000
#
# Lists come from ../shared/bench/gen-workload.py (deterministic; cached in
# /tmp/list-memory/N/). Everything stays on 127.0.0.1; the upstream is 127.0.0.1:1
# (never asked: only listed names are queried).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/release/metaguard}
gen=${GEN:-$here/../shared/bench/gen-workload.py}
port=${PORT:-5391}
base=/tmp/list-memory
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000 2000000)

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# Wait until NAME is answered blocked (0.0.0.0) on the port; prints seconds since $2.
wait_blocked() {
    local name=$1 t0=$2
    for _ in $(seq 1 6000); do
        if dig +short +tries=1 +time=1 -p "$port" @127.0.0.1 "$name" A 2>/dev/null | grep -qx '0.0.0.0'; then
            awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'
            return 0
        fi
        sleep 0.01
    done
    echo "timeout"
    return 1
}

# The same for a peer that answers blocked names NXDOMAIN (dnsmasq, unbound).
wait_nx() {
    local name=$1 t0=$2
    for _ in $(seq 1 6000); do
        if dig +tries=1 +time=1 -p "$port" @127.0.0.1 "$name" A 2>/dev/null | grep -q 'status: NXDOMAIN'; then
            awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'
            return 0
        fi
        sleep 0.01
    done
    echo "timeout"
    return 1
}

printf '%-8s %-7s %9s %9s %9s %9s\n' rules moment rss_MiB hwm_MiB load_s cache_MiB
for n in "${sizes[@]}"; do
    dir=$base/$n
    if [ ! -s "$dir/blocklist.hosts" ]; then
        mkdir -p "$dir"
        python3 "$gen" "$dir" --blocklist-size "$n" --queries 1000 >/dev/null
    fi
    list=$dir/blocklist.hosts
    last=$(tail -n 1 "$list" | awk '{ print $2 }')
    run=$(mktemp -d /tmp/list-memory-run.XXXXXX)
    printf '[remote]\nstate_dir = "%s/state"\n' "$run" >"$run/m.toml"
    echo "first.small.example" >"$run/small.txt"
    # The end of a reload is the READY=1 that serve sends to $NOTIFY_SOCKET after it.
    python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    d = s.recv(4096).decode()
    print("%.6f %s" % (time.time(), d.replace("\n", " ")), flush=True)
' "$run/notify.sock" >"$run/notify.log" &
    listener=$!
    for start in cold warm; do
        t0=$(date +%s.%N)
        NOTIFY_SOCKET=$run/notify.sock "$bin" serve --config "$run/m.toml" --listen "127.0.0.1:$port" --upstream 127.0.0.1:1 \
            --db "$run/m.db" --blocklist "$list" --blocklist "$run/small.txt" \
            >"$run/serve-$start.log" 2>&1 &
        pid=$!
        load=$(wait_blocked "$last" "$t0")
        printf '%-8s %-7s %9s %9s %9s %9s\n' "$n" "$start" "$(mib "$(status $pid VmRSS)")" \
            "$(mib "$(status $pid VmHWM)")" "$load" \
            "$(du -sk "$run/state/compiled" 2>/dev/null | awk '{ printf "%.1f", $1 / 1024 }')"
        if [ "$start" = warm ]; then
            for r in 1 2; do
                echo "reload$r.small.example" >>"$run/small.txt"
                echo 5 >"/proc/$pid/clear_refs" # VmHWM := VmRSS, so the peak is the reload's
                ready=$(grep -c 'READY=1' "$run/notify.log" || true)
                t0=$(date +%s.%N)
                kill -HUP "$pid"
                until [ "$(grep -c 'READY=1' "$run/notify.log" || true)" -gt "$ready" ]; do sleep 0.005; done
                load=$(awk -v a="$t0" '/READY=1/ { t = $1 } END { printf "%.3f", t - a }' "$run/notify.log")
                wait_blocked "reload$r.small.example" "$t0" >/dev/null
                printf '%-8s %-7s %9s %9s %9s\n' "$n" "hup$r" "$(mib "$(status $pid VmRSS)")" \
                    "$(mib "$(status $pid VmHWM)")" "$load"
            done
        fi
        kill "$pid"
        wait "$pid" || true
    done
    if [ "${PEERS:-0}" = 1 ]; then
        # As ../shared/bench/peers.sh runs them (one thread for unbound here).
        t0=$(date +%s.%N)
        dnsmasq -k --conf-file=/dev/null --port="$port" --listen-address=127.0.0.1 --bind-interfaces \
            --no-resolv --no-hosts --no-poll --server=127.0.0.1#1 --pid-file= \
            --log-facility="$run/dnsmasq.log" --conf-file="$dir/blocklist.dnsmasq.conf" &
        pid=$!
        load=$(wait_nx "$last" "$t0" || true)
        printf '%-8s %-7s %9s %9s %9s\n' "$n" dnsmasq "$(mib "$(status $pid VmRSS)")" \
            "$(mib "$(status $pid VmHWM)")" "$load"
        kill "$pid"
        wait "$pid" || true
        cat >"$run/unbound.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $port
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$run"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  include: "$dir/blocklist.unbound.conf"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@1
  forward-first: no
remote-control:
  control-enable: no
EOF
        t0=$(date +%s.%N)
        unbound -d -c "$run/unbound.conf" >"$run/unbound.log" 2>&1 &
        pid=$!
        load=$(wait_nx "$last" "$t0" || true)
        printf '%-8s %-7s %9s %9s %9s\n' "$n" unbound "$(mib "$(status $pid VmRSS)")" \
            "$(mib "$(status $pid VmHWM)")" "$load"
        kill "$pid"
        wait "$pid" || true
    fi
    kill "$listener"
    rm -rf "$run"
done
