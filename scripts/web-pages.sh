#!/usr/bin/env bash
# Time the dashboard's pages through the real release server over a year of hits for 20
# devices (10 million rows). The database is made once with sqlite3 (the store's own
# migrations, then generated rows: 12 Meta names in 9 categories, spread evenly over the
# year and the devices; daily rollups and hourly totals computed from them as the writer
# would), then `metaguard serve` reads it (retention off) and curl fetches each page.
# Usage: scripts/web-pages.sh [runs]   (MG_BIN: the binary; WORK: where the files go)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MG_BIN:-$repo/target/release/metaguard}
work=${WORK:-/tmp/metaguard-web-pages}
runs=${1:-10}
rows=10000000
mkdir -p "$work"
db=$work/year.db
end=$(( $(date +%s) / 86400 * 86400 + 86400 ))
start=$(( end - 365 * 86400 ))
if [[ ! -f $db ]]; then
    echo "generating $db ($rows hits)..." >&2
    t0=$(date +%s)
    {
        echo "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;"
        cat "$repo"/src/store/migrations/*.sql
        echo "PRAGMA user_version = $(ls "$repo"/src/store/migrations/*.sql | wc -l);"
        cat <<SQL
BEGIN;
INSERT INTO categories(id, name) VALUES (1,'pixel'),(2,'audience-network'),(3,'sdk-telemetry'),
  (4,'ads-measurement'),(5,'app-telemetry'),(6,'first-party'),(7,'social-widgets'),(8,'meta-ai'),(9,'quest');
INSERT INTO names(id, name) VALUES (1,'connect.facebook.net'),(2,'pixel.facebook.com'),(3,'an.facebook.com'),
  (4,'graph.accountkit.com'),(5,'atdmt.com'),(6,'dit.whatsapp.net'),(7,'graph.facebook.com'),
  (8,'www.facebook.com'),(9,'i.instagram.com'),(10,'staticxx.facebook.com'),(11,'www.meta.ai'),(12,'graph.oculus.com');
WITH RECURSIVE d(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM d WHERE i < 20)
INSERT INTO devices(id, key, mac, name, first_seen, last_seen)
  SELECT i, printf('mac:02:00:00:00:00:%02x', i), printf('02:00:00:00:00:%02x', i), 'device-' || i, $start, $end FROM d;
INSERT INTO device_addrs SELECT id, '192.168.1.' || (10 + id), $end FROM devices;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $rows - 1),
  h(i, nid, dev) AS (SELECT i, 1 + (i * 7919 + i / 13) % 12, 1 + (i * 31 + i / 7) % 20 FROM n)
INSERT INTO hits(id, ts, device_id, name_id, qtype, category_id, action)
  SELECT i + 1, $start + i * (365 * 86400) / $rows, dev, nid, 1,
    CASE nid WHEN 1 THEN 1 WHEN 2 THEN 1 WHEN 3 THEN 2 WHEN 4 THEN 3 WHEN 5 THEN 4 WHEN 6 THEN 5
      WHEN 7 THEN 6 WHEN 8 THEN 6 WHEN 9 THEN 6 WHEN 10 THEN 7 WHEN 11 THEN 8 ELSE 9 END,
    CASE WHEN nid <= 6 THEN 1 ELSE 0 END
  FROM h;
INSERT INTO daily_rollups SELECT device_id, ts / 86400, category_id, action, count(*) FROM hits GROUP BY 1, 2, 3, 4;
INSERT INTO query_totals SELECT device_id, ts / 3600, 4 * count(*), count(*), sum(action = 1) FROM hits GROUP BY 1, 2;
COMMIT;
SQL
    } | sqlite3 "$db.partial" >/dev/null
    mv "$db.partial" "$db"
    echo "generated in $(( $(date +%s) - t0 )) s" >&2
fi
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
