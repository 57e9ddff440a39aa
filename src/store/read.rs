//! Reading the hit log for `metaguard devices`, `log` and `status`, on a read-only
//! connection that works while `serve` writes (WAL).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{StoreError, action_from_code, schema};
use crate::bypass::BYPASS;
use crate::policy::Action;

/// Open the database read-only; a missing file is an error naming the path.
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    schema::open_ro(path)
}

/// One row of `metaguard devices`: a device as the hit log knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DeviceRow {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) name: Option<String>,
    pub(crate) mac: Option<String>,
    /// Addresses, most recently seen first.
    pub addrs: Vec<String>,
    pub group: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Logged and blocked Meta hits (not allowed ones, not `bypass`) in the last 7
    /// days, today included.
    pub meta_hits_7d: i64,
    /// All queries counted in the last 7 days (hourly totals).
    pub queries_7d: i64,
    /// "May bypass metaguard": the `bypass` names it looked up in the last 7 days and
    /// how often, most first (empty: none).
    pub bypass_7d: Vec<(String, i64)>,
}

/// The devices, most recently seen first.
pub(crate) fn devices(conn: &Connection, now: i64) -> rusqlite::Result<Vec<DeviceRow>> {
    // From the rollups rather than raw hits, which the size cap may have trimmed.
    let since_day = now.div_euclid(86400) - 6;
    let since_hour = now.div_euclid(3600) - 7 * 24;
    let mut stmt = conn.prepare(
        "SELECT d.id, d.key, d.name, d.mac, d.grp, d.first_seen, d.last_seen,
           (SELECT coalesce(sum(r.hits), 0) FROM daily_rollups r
             WHERE r.device_id = d.id AND r.day >= ?1 AND r.action != 2
               AND r.category_id NOT IN (SELECT id FROM categories WHERE name = ?3)),
           (SELECT coalesce(sum(t.queries), 0) FROM query_totals t
             WHERE t.device_id = d.id AND t.hour > ?2)
         FROM devices d ORDER BY d.last_seen DESC, d.id",
    )?;
    let mut rows = stmt
        .query_map(params![since_day, since_hour, BYPASS], |r| {
            Ok(DeviceRow {
                id: r.get(0)?,
                key: r.get(1)?,
                name: r.get(2)?,
                mac: r.get(3)?,
                addrs: Vec::new(),
                group: r.get(4)?,
                first_seen: r.get(5)?,
                last_seen: r.get(6)?,
                meta_hits_7d: r.get(7)?,
                queries_7d: r.get(8)?,
                bypass_7d: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut addrs = conn.prepare(
        "SELECT addr FROM device_addrs WHERE device_id = ?1 ORDER BY last_seen DESC, addr",
    )?;
    let mut bypass = conn.prepare(
        "SELECT n.name, count(*) FROM hits h JOIN names n ON n.id = h.name_id
         WHERE h.device_id = ?1 AND h.ts >= ?2
           AND h.category_id IN (SELECT id FROM categories WHERE name = ?3)
         GROUP BY n.name ORDER BY count(*) DESC, n.name",
    )?;
    for row in &mut rows {
        row.addrs = addrs
            .query_map([row.id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        row.bypass_7d = bypass
            .query_map(params![row.id, since_day * 86400, BYPASS], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(rows)
}

/// Which hits `metaguard log` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HitFilter {
    /// Device id, name, MAC or key.
    pub(crate) device: Option<String>,
    pub(crate) category: Option<String>,
    /// Unix seconds.
    pub(crate) since: Option<i64>,
    /// Only rows after this id, oldest first (`--follow`); without it, the newest rows.
    pub(crate) after_id: Option<i64>,
    pub(crate) limit: usize,
}

/// A hit as `metaguard log` reads it back: one line of its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct HitRow {
    pub(crate) id: i64,
    pub(crate) ts: i64,
    pub(crate) device_id: i64,
    /// The device's name, else its key.
    pub(crate) device: String,
    pub(crate) name: String,
    pub(crate) qtype: u16,
    pub(crate) category: String,
    pub(crate) action: Option<Action>,
    pub(crate) rule: Option<String>,
    pub(crate) cname_origin: Option<String>,
}

/// The id of the newest hit (0 when there is none): `log --follow` shows hits after it.
pub(crate) fn last_hit_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM hits", [], |r| r.get(0))
}

/// Hits matching `f`, oldest first.
pub(crate) fn hits(conn: &Connection, f: &HitFilter) -> rusqlite::Result<Vec<HitRow>> {
    let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT h.id, h.ts, h.device_id, coalesce(d.name, d.key), n.name, h.qtype, c.name,
                h.action, r.text, o.name
         FROM hits h
         JOIN devices d ON d.id = h.device_id
         JOIN names n ON n.id = h.name_id
         JOIN categories c ON c.id = h.category_id
         LEFT JOIN rules r ON r.id = h.rule_id
         LEFT JOIN names o ON o.id = h.cname_origin_id
         WHERE (?1 IS NULL OR h.device_id IN
                 (SELECT id FROM devices WHERE CAST(id AS TEXT) = ?1 OR name = ?1
                    OR mac = lower(?1) OR key = ?1))
           AND (?2 IS NULL OR c.name = ?2)
           AND (?3 IS NULL OR h.ts >= ?3)
           AND (?4 IS NULL OR h.id > ?4)
         ORDER BY h.id {order} LIMIT ?5"
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query_map(
            params![f.device, f.category, f.since, f.after_id, limit],
            |r| {
                Ok(HitRow {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    device_id: r.get(2)?,
                    device: r.get(3)?,
                    name: r.get(4)?,
                    qtype: r.get(5)?,
                    category: r.get(6)?,
                    action: action_from_code(r.get(7)?),
                    rule: r.get(8)?,
                    cname_origin: r.get(9)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if f.after_id.is_none() {
        rows.reverse();
    }
    Ok(rows)
}

/// What `metaguard status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StatusInfo {
    pub(crate) db: String,
    /// The database file plus its WAL.
    pub(crate) db_bytes: u64,
    pub(crate) schema_version: i64,
    /// The server's last counters (JSON it wrote), and when (unix seconds).
    pub(crate) server: Option<serde_json::Value>,
    pub(crate) server_updated: Option<i64>,
    /// The writer's own counters: written, dropped.
    pub(crate) writer: Option<serde_json::Value>,
    /// Other `server_status` rows as stored.
    pub(crate) other: BTreeMap<String, String>,
    pub(crate) devices: i64,
    pub(crate) hits: i64,
    pub(crate) names: i64,
    pub(crate) queries: i64,
    pub(crate) daily_rollups: i64,
    pub(crate) oldest_hit: Option<i64>,
    pub(crate) newest_hit: Option<i64>,
    /// Whether the server that wrote the status runs (set by `metaguard status`).
    pub(crate) running: bool,
}

/// Status rows, size and row counts.
pub(crate) fn status(conn: &Connection) -> rusqlite::Result<StatusInfo> {
    let db = conn.path().unwrap_or("").to_string();
    let size = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
    let db_bytes = if db.is_empty() {
        0
    } else {
        size(&db) + size(&format!("{db}-wal"))
    };
    let mut rows: BTreeMap<String, String> = conn
        .prepare("SELECT key, value FROM server_status")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let json = |v: Option<String>| v.and_then(|s| serde_json::from_str(&s).ok());
    let count = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
    };
    let (oldest_hit, newest_hit) = conn
        .query_row("SELECT min(ts), max(ts) FROM hits", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((None, None));
    Ok(StatusInfo {
        db,
        db_bytes,
        schema_version: schema::version(conn)?,
        server: json(rows.remove("server")),
        server_updated: rows.remove("server_updated").and_then(|s| s.parse().ok()),
        writer: json(rows.remove("writer")),
        other: rows,
        devices: count("devices")?,
        hits: count("hits")?,
        names: count("names")?,
        queries: count("queries")?,
        daily_rollups: count("daily_rollups")?,
        oldest_hit,
        newest_hit,
        running: false,
    })
}
