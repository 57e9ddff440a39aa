#!/usr/bin/env bash
# Make a seeded hit log for the dashboard's scripts (web-pages.sh, dashboard-load.sh) with
# sqlite3: the store's own migrations, then ROWS generated hits (12 Meta names in 9
# categories, spread evenly over the 365 days up to tomorrow's UTC midnight and over 20
# devices device-1..device-20 at 192.168.1.11..30), with the daily rollups and hourly
# totals computed from them as the writer would. Writes DB.partial, then renames it.
# Usage: scripts/seed-hit-log.sh DB [ROWS]   (ROWS: 10,000,000 by default, a year for 20
# devices as in the issue's page target)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
db=${1:?usage: seed-hit-log.sh DB [ROWS]}
rows=${2:-10000000}
end=$(( $(date +%s) / 86400 * 86400 + 86400 ))
start=$(( end - 365 * 86400 ))
echo "generating $db ($rows hits)..." >&2
t0=$(date +%s)
rm -f "$db.partial"
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
