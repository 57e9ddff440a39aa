#!/usr/bin/env bash
# DNS under a dashboard load (issue 18: "20 page views per second: CPU per query and p99
# within 5 % of no dashboard load"). One release `metaguard serve` on loopback with the
# bench's 100k-domain blocklist, a dnsmasq upstream on loopback (every name 192.0.2.1 /
# 2001:db8::1, TTL 1 h, so a warm cache answers most queries, as at home) and a seeded
# hit log (the 10M-row year of scripts/web-pages.sh, made by scripts/seed-hit-log.sh if
# missing, copied so the runs do not change it). After one warm-up pass and one login,
# dnsperf asks QPS queries a second (the bench workload: ~22 % blocked, 20 % Meta names
# that are logged) for SECONDS, ROUNDS times in each of two modes, interleaved (idle,
# load, load, idle, idle, load, ...):
#   idle  no HTTP client at all;
#   load  four curl processes (not metaguard's CPU) fetching VIEWS pages a second between
#         them, each with its stylesheet as a browser does (the dashboard sends no-store),
#         cycling household, device 1..20, live, lists and status (household and device
#         of last week), on four keep-alive connections with the session cookie;
#         plus one open live feed (`/live/events`, a browser tab on the live page), so the
#         query path hands every logged hit to the feed.
# Per run: metaguard's CPU per answered query, for the whole process (utime+stime of all
# threads, /proc/PID/stat: this includes rendering the pages) and for the DNS worker
# thread(s) alone (/proc/PID/task/TID/stat: the DNS runtime's tokio-rt-worker threads that
# were busiest during the warm-up pass; the dashboard runs on metaguard-web threads, and
# the DNS runtime's idle blocking threads share the workers' name); dnsperf's p50 and
# p99 from its per-query latencies (-v); and the pages fetched in the window. At the end,
# the median of each mode and the ratio load / idle.
#   scripts/dashboard-load.sh [ROUNDS] [QPS] [SECONDS] [VIEWS]
#   (defaults 4, 2000, 20, 20; MG_BIN: the binary, target/release/metaguard; DB: the hit
#   log to copy, /tmp/metaguard-web-pages/year.db, made again when missing or older; THREADS: [server] threads, 1;
#   LIVE=0: no live feed open during the load runs; LOADER_NICE=N: the curl processes
#   at nice N (they stand for phones elsewhere on the network: a diagnostic of how much
#   of the difference is the loaders' own CPU on these 2 cores);
#   BENCH_DATA: the bench workload, /tmp/dnsbench-data, from ../shared/bench/gen-workload.py)
# Needs dnsperf, dnsmasq, sqlite3, curl >= 7.84 (--rate). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MG_BIN:-target/release/metaguard}
ROUNDS=${1:-4}
QPS=${2:-2000}
SECS=${3:-20}
VIEWS=${4:-20}
THREADS=${THREADS:-1}
LIVE=${LIVE:-1}
SRC_DB=${DB:-/tmp/metaguard-web-pages/year.db}
DATA=${BENCH_DATA:-/tmp/dnsbench-data}
[[ -f $DATA/queries.txt ]] || { echo "no workload in $DATA (run ../shared/bench/gen-workload.py $DATA)" >&2; exit 1; }
if [[ ! -f $SRC_DB || $(sqlite3 "$SRC_DB" 'PRAGMA user_version') != $(ls src/store/migrations/*.sql | wc -l) ]]; then
    mkdir -p "$(dirname "$SRC_DB")"
    scripts/seed-hit-log.sh "$SRC_DB"
fi
. scripts/loopback-upstream.sh
start_upstream --address=/#/2001:db8::1 --local-ttl=3600

db=$tmp/hits.db
sqlite3 "$SRC_DB" ".backup '$db'"
PORT=$(free_port)
WEB=$(free_port)
cat >"$tmp/metaguard.toml" <<EOF
[server]
threads = $THREADS
[clients]
neighbours = false
leases = []
[store]
retention_days = 0
rollup_retention_days = 0
max_db_size_mb = 0
[remote]
state_dir = "$tmp/state"
[web]
listen = "127.0.0.1:$WEB"
EOF
echo 'load password 1234' | "$BIN" web password --config "$tmp/metaguard.toml" --stdin >/dev/null
"$BIN" serve --config "$tmp/metaguard.toml" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPPORT" \
    --blocklist "$DATA/blocklist.hosts" --db "$db" 2>"$tmp/metaguard.log" &
mg=$!
pids+=($mg)
for _ in $(seq 100); do
    dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 example.com A >/dev/null 2>&1 && break
    sleep 0.1
done
grep -q "dashboard on" "$tmp/metaguard.log" || { cat "$tmp/metaguard.log" >&2; exit 1; }

hz=$(getconf CLK_TCK)
stat_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "$1"; }
# Warm-up: one pass through the workload fills the caches; the busiest tokio threads
# during it are the DNS workers.
dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/queries.txt" -n 1 -Q 20000 >/dev/null 2>&1 || true
workers=$(for t in /proc/$mg/task/*; do
    if [[ $(cat "$t/comm") == tokio-rt-worker ]]; then echo "$(stat_ticks "$t/stat") ${t##*/}"; fi
done | sort -nr | head -n "$THREADS" | awk '{ print $2 }' | tr '\n' ' ')
worker_ticks() { local s=0 t; for t in $workers; do s=$((s + $(stat_ticks "/proc/$mg/task/$t/stat"))); done; echo $s; }

# Settle: wait (up to 2 min) until metaguard is quiet (under 2 % of a core for a second):
# the writer's first work on the copied log is not the runs'.
for _ in $(seq 120); do
    a=$(stat_ticks "/proc/$mg/stat"); sleep 1; b=$(stat_ticks "/proc/$mg/stat")
    (( (b - a) * 50 < hz )) && break
done

url=http://127.0.0.1:$WEB
jar=$tmp/cookies
csrf=$(curl -s -c "$jar" "$url/login" | grep -o 'name="csrf" value="[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')
curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&password=load+password+1234" "$url/login"
[[ $(curl -s -b "$jar" -o /dev/null -w "%{http_code}" "$url/status") == 200 ]] || { echo "login failed" >&2; cat "$tmp/metaguard.log" >&2; exit 1; }

# The loaders' lists: VIEWS pages a second, each followed by the stylesheet, for longer
# than a run, split over four curl processes (four connections, as a browser opens): one
# alone falls behind its rate when a page takes longer than its slot on a loaded machine.
week=$(date -u -d '7 days ago' +%G-W%V)
n=$(( VIEWS * (SECS + 30) ))
for i in $(seq 0 $((n - 1))); do
    case $((i % 5)) in
        0) p="/?week=$week" ;;
        1) p="/device/$(( (i / 5) % 20 + 1 ))?week=$week" ;;
        2) p=/live ;;
        3) p=/lists ;;
        4) p=/status ;;
    esac
    printf 'url = "%s%s"\noutput = "/dev/null"\nurl = "%s/static/style.css"\noutput = "/dev/null"\n' \
        "$url" "$p" "$url" >>"$tmp/loader$((i % 4)).cfg"
done

echo "# $QPS qps for $SECS s, $ROUNDS rounds; load: $VIEWS page views/s + $LIVE live feed; $BIN ($(stat -c %s "$BIN") B), [server] threads = $THREADS, DNS worker thread(s) $workers; hit log $(sqlite3 "$db" 'SELECT max(id) FROM hits') rows; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$tmp/results"
run() { # mode round
    local mode=$1 round=$2 loaders=() p0 p1 w0 w1 l0=0 l1=0 ev
    if [[ $mode == load ]]; then
        : >"$tmp/loader.out"
        for k in 0 1 2 3; do
            ${LOADER_NICE:+nice -n "$LOADER_NICE"} curl -s -b "$jar" --rate "$((VIEWS * 30))/m" -K "$tmp/loader$k.cfg" \
                -w '%{http_code} %{time_total} %{size_download} %{url_effective}\n' >>"$tmp/loader.out" 2>/dev/null &
            loaders+=($!)
        done
        : >"$tmp/sse.out"
        if [[ $LIVE == 1 ]]; then
            ${LOADER_NICE:+nice -n "$LOADER_NICE"} curl -s -N -b "$jar" -o "$tmp/sse.out" "$url/live/events" 2>/dev/null &
            loaders+=($!)
        fi
        pids+=("${loaders[@]}")
        for _ in $(seq 50); do [[ ( -s $tmp/sse.out || $LIVE != 1 ) && -s $tmp/loader.out ]] && break; sleep 0.1; done
        l0=$(grep -vc '/static/' "$tmp/loader.out" || true)
    fi
    p0=$(stat_ticks "/proc/$mg/stat"); w0=$(worker_ticks)
    dnsperf -s 127.0.0.1 -p "$PORT" -d "$DATA/queries.txt" -l "$SECS" -Q "$QPS" -v >"$tmp/dnsperf.out" 2>&1 || true
    p1=$(stat_ticks "/proc/$mg/stat"); w1=$(worker_ticks)
    if [[ $mode == load ]]; then
        l1=$(grep -vc '/static/' "$tmp/loader.out" || true)
        kill "${loaders[@]}" 2>/dev/null || true
        wait "${loaders[@]}" 2>/dev/null || true
        bad=$(awk '$1 != 200' "$tmp/loader.out" | wc -l)
        [[ $bad == 0 ]] || echo "loader: $bad answers not 200: $(awk '$1 != 200' "$tmp/loader.out" | head -3)" >&2
    fi
    ev=0
    [[ $mode == load ]] && ev=$(grep -c '^event: hit' "$tmp/sse.out" || true)
    awk '/^> / { print $NF * 1000 }' "$tmp/dnsperf.out" | sort -g >"$tmp/lat"
    local k p50 p99
    k=$(wc -l <"$tmp/lat")
    p50=$(sed -n "$(( (k + 1) / 2 ))p" "$tmp/lat")
    p99=$(sed -n "$(( (k * 99 + 99) / 100 ))p" "$tmp/lat")
    awk -v mode="$mode" -v round="$round" -v p=$((p1 - p0)) -v w=$((w1 - w0)) -v hz="$hz" \
        -v views=$((l1 - l0)) -v secs="$SECS" -v ev="$ev" -v load="$(cut -d' ' -f1 /proc/loadavg)" \
        -v p50="$p50" -v p99="$p99" '
        /^[[:space:]]*Queries completed:/ { n = $3 }
        /^[[:space:]]*Queries lost:/ { lost = $3 }
        END {
            printf "%s %d %.2f %.2f %.3f %.3f %d %d %.1f %d %s\n", mode, round, p * 1e6 / hz / n,
                w * 1e6 / hz / n, p50, p99, n, lost, views / secs, ev, load
        }' "$tmp/dnsperf.out" | tee -a "$tmp/results" | awk '{
        printf "round %d %-4s  process %6.2f us/q  worker %6.2f us/q  p50 %.3f ms  p99 %.3f ms  (%d answered, %d lost; %.1f page views/s, %d live events; load %s)\n",
            $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
}
for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then run idle "$r"; run load "$r"; else run load "$r"; run idle "$r"; fi
done
awk '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { m = $1; k = ++c[m]; P[m, k] = $3; W[m, k] = $4; Q[m, k] = $6 }
    END {
        for (mi = 1; mi <= 2; mi++) {
            m = mi == 1 ? "idle" : "load"
            for (i = 1; i <= c[m]; i++) { a[i] = P[m, i]; b[i] = W[m, i]; d[i] = Q[m, i] }
            pm[m] = median(a, c[m]); wm[m] = median(b, c[m]); qm[m] = median(d, c[m])
            printf "median %-4s  process %6.2f us/q  worker %6.2f us/q  p99 %.3f ms  (%d runs)\n", m, pm[m], wm[m], qm[m], c[m]
        }
        printf "load/idle     process %+.1f %%  worker %+.1f %%  p99 %+.1f %%\n",
            (pm["load"] / pm["idle"] - 1) * 100, (wm["load"] / wm["idle"] - 1) * 100, (qm["load"] / qm["idle"] - 1) * 100
    }' "$tmp/results"
