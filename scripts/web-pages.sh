#!/usr/bin/env bash
# Time the dashboard's pages through the real release server over a year of hits for 20
# devices (10 million rows). The database is made once by scripts/seed-hit-log.sh, then
# `metaguard serve` reads it (retention off) and curl fetches each page.
# Usage: scripts/web-pages.sh [runs]   (MG_BIN: the binary; WORK: where the files go)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MG_BIN:-$repo/target/release/metaguard}
work=${WORK:-/tmp/metaguard-web-pages}
runs=${1:-10}
mkdir -p "$work"
db=$work/year.db
# Made again when missing or from an older schema.
[[ -f $db && $(sqlite3 "$db" 'PRAGMA user_version') == $(ls "$repo"/src/store/migrations/*.sql | wc -l) ]] ||
    "$repo/scripts/seed-hit-log.sh" "$db" 10000000
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
web=$(port); dns=$(port)
cat > "$work/cfg.toml" <<TOML
[server]
listen = ["127.0.0.1:$dns"]
[upstream]
servers = ["127.0.0.1:9"]
[store]
db = "$db"
retention_days = 0
rollup_retention_days = 0
max_db_size_mb = 0
[remote]
state_dir = "$work/state"
[web]
listen = "127.0.0.1:$web"
TOML
echo 'bench password 1234' | "$bin" web password --config "$work/cfg.toml" --stdin >/dev/null
"$bin" serve --config "$work/cfg.toml" 2>"$work/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "dashboard on" "$work/serve.log" && break; sleep 0.1; done
url=http://127.0.0.1:$web
jar=$work/cookies
rm -f "$jar"
csrf=$(curl -s -c "$jar" "$url/login" | grep -o 'name="csrf" value="[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')
curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&password=bench+password+1234" "$url/login"
week=$(date -u -d '7 days ago' +%G-W%V)
echo "$(sqlite3 "$db" 'SELECT count(*) FROM hits') hit rows; week $week; $runs runs per page"
for page in "/?week=$week" "/device/1?week=$week" "/live" "/status" "/api/v1/household?week=$week"; do
    times=()
    for _ in $(seq "$runs"); do
        out=$(curl -s -b "$jar" -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "$url$page")
        times+=("$(echo "$out" | cut -d' ' -f2)")
        code=$(echo "$out" | cut -d' ' -f1); size=$(echo "$out" | cut -d' ' -f3)
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -g)
    printf '%-32s HTTP %s  %7s bytes  min %.1f ms  median %.1f ms  max %.1f ms\n' "$page" "$code" "$size" \
        "$(echo "$sorted" | head -1 | awk '{print $1*1000}')" \
        "$(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p" | awk '{print $1*1000}')" \
        "$(echo "$sorted" | tail -1 | awk '{print $1*1000}')"
done
