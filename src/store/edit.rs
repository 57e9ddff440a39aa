//! Edits of the device table by hand (`metaguard devices rename|merge|forget`): a device
//! named by id, name, MAC or key, and each edit in one transaction, so nothing half
//! applies. A running `serve` sees them at its next batch (`PRAGMA data_version`).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{StoreError, schema};
use crate::clients::Mac;

/// A device as an edit found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) id: i64,
    /// Its name, else its key: what the commands print.
    pub(crate) label: String,
}

/// The device `spec` names: an id, a name (any case), a MAC (`aa:bb:..`, `AA-BB-..`),
/// a key (`ip:192.168.1.5`), or the key of a device merged into it. A name two devices
/// share is refused with their ids.
pub(crate) fn find(conn: &Connection, spec: &str) -> Result<Found, StoreError> {
    let spec = spec.trim();
    let mac = spec.parse::<Mac>().ok().map(|m| m.to_string());
    let key = mac.as_ref().map(|m| format!("mac:{m}"));
    let mut stmt = conn
        .prepare(
            "SELECT id, coalesce(name, key) FROM devices
             WHERE CAST(id AS TEXT) = ?1 OR key = ?1 OR lower(name) = lower(?1)
                OR mac = ?2 OR key = ?3
                OR id IN (SELECT device_id FROM device_aliases WHERE key = ?1 OR key = ?3)
             ORDER BY id",
        )
        .map_err(|e| sqlite_err(conn, e))?;
    let found: Vec<Found> = stmt
        .query_map(params![spec, mac, key], |r| {
            Ok(Found {
                id: r.get(0)?,
                label: r.get(1)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite_err(conn, e))?;
    // An id or a key names one device outright, whatever names others carry.
    if let Some(exact) = found.iter().find(|f| f.id.to_string() == spec) {
        return Ok(exact.clone());
    }
    match found.len() {
        0 => Err(StoreError::NoSuchDevice(spec.to_string())),
        1 => Ok(found.into_iter().next().expect("one row")),
        _ => Err(StoreError::AmbiguousDevice {
            spec: spec.to_string(),
            ids: found.iter().map(|f| f.id).collect(),
        }),
    }
}

/// The label, MAC and addresses of the device `spec` names (see [`find`]), with those
/// of the devices merged into it: how the controls recognise it.
pub(crate) fn identity(
    conn: &Connection,
    spec: &str,
) -> Result<(String, Option<Mac>, Vec<std::net::IpAddr>), StoreError> {
    let d = find(conn, spec)?;
    let err = |e| sqlite_err(conn, e);
    let mut keys: Vec<String> = conn
        .prepare(
            "SELECT key FROM devices WHERE id = ?1 UNION ALL
             SELECT key FROM device_aliases WHERE device_id = ?1 UNION ALL
             SELECT 'ip:' || addr FROM device_addrs WHERE device_id = ?1",
        )
        .and_then(|mut s| s.query_map([d.id], |r| r.get(0))?.collect())
        .map_err(err)?;
    keys.dedup();
    let mac = keys
        .iter()
        .find_map(|k| k.strip_prefix("mac:")?.parse::<Mac>().ok());
    let mut addrs: Vec<std::net::IpAddr> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("ip:")?.parse().ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok((d.label, mac, addrs))
}

/// `devices rename D NAME`: later names from the server do not overwrite it.
pub(crate) fn rename(db: &Path, spec: &str, name: &str, actor: &str) -> Result<Found, StoreError> {
    let mut conn = schema::open_existing_rw(db)?;
    let d = find(&conn, spec)?;
    let tx = conn.transaction().map_err(StoreError::sqlite(db))?;
    tx.execute(
        "UPDATE devices SET name = ?1 WHERE id = ?2",
        params![name, d.id],
    )
    .map_err(StoreError::sqlite(db))?;
    audit(
        &tx,
        actor,
        format!("name of device {}", d.id),
        &d.label,
        name,
    )
    .map_err(StoreError::sqlite(db))?;
    tx.commit().map_err(StoreError::sqlite(db))?;
    Ok(d)
}

/// The audit row of an edit, in its transaction.
fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    what: String,
    old: &str,
    new: &str,
) -> rusqlite::Result<()> {
    crate::controls::audit::record(
        tx,
        &crate::controls::audit::Entry {
            ts: crate::controls::clock::now(),
            actor: actor.to_string(),
            what,
            old: old.to_string(),
            new: new.to_string(),
        },
    )
}

/// `devices merge KEEP OTHER`: `other`'s hits, totals, rollups and addresses become
/// `keep`'s, and `other`'s key (and every key already merged into it) names `keep` from
/// now on, so the server's next hit from it counts for `keep`. Returns (keep, other).
pub(crate) fn merge(
    db: &Path,
    keep: &str,
    other: &str,
    actor: &str,
) -> Result<(Found, Found), StoreError> {
    let mut conn = schema::open_existing_rw(db)?;
    let a = find(&conn, keep)?;
    let b = find(&conn, other)?;
    if a.id == b.id {
        return Err(StoreError::MergeSelf(a.label));
    }
    let tx = conn.transaction().map_err(StoreError::sqlite(db))?;
    fold(&tx, a.id, b.id, true).map_err(StoreError::sqlite(db))?;
    let what = format!("device {} ({})", b.id, b.label);
    let into = format!("merged into device {} ({})", a.id, a.label);
    audit(&tx, actor, what, "a device of its own", &into).map_err(StoreError::sqlite(db))?;
    tx.commit().map_err(StoreError::sqlite(db))?;
    Ok((a, b))
}

/// Move device `b`'s rows to `a` and delete `b`; with `alias`, `b`'s key names `a` from
/// now on (the writer's own folds of a new address leave it out: an address may later
/// belong to another device, a merge by hand is for good).
pub(super) fn fold(tx: &Transaction<'_>, a: i64, b: i64, alias: bool) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE hits SET device_id = ?1 WHERE device_id = ?2",
        [a, b],
    )?;
    tx.execute(
        "UPDATE queries SET device_id = ?1 WHERE device_id = ?2",
        [a, b],
    )?;
    tx.execute(
        "INSERT INTO daily_rollups(device_id, day, category_id, action, hits)
         SELECT ?1, day, category_id, action, hits FROM daily_rollups WHERE device_id = ?2
         ON CONFLICT(device_id, day, category_id, action) DO UPDATE SET
           hits = daily_rollups.hits + excluded.hits",
        [a, b],
    )?;
    tx.execute(
        "INSERT INTO query_totals(device_id, hour, queries, meta, blocked)
         SELECT ?1, hour, queries, meta, blocked FROM query_totals WHERE device_id = ?2
         ON CONFLICT(device_id, hour) DO UPDATE SET
           queries = query_totals.queries + excluded.queries,
           meta = query_totals.meta + excluded.meta,
           blocked = query_totals.blocked + excluded.blocked",
        [a, b],
    )?;
    tx.execute(
        "INSERT INTO device_addrs(device_id, addr, last_seen)
         SELECT ?1, addr, last_seen FROM device_addrs WHERE device_id = ?2
         ON CONFLICT(device_id, addr) DO UPDATE SET
           last_seen = max(device_addrs.last_seen, excluded.last_seen)",
        [a, b],
    )?;
    let (key, mac, name, grp, first, last): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
    ) = tx.query_row(
        "SELECT key, mac, name, grp, first_seen, last_seen FROM devices WHERE id = ?1",
        [b],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    for table in ["daily_rollups", "query_totals", "device_addrs"] {
        tx.execute(&format!("DELETE FROM {table} WHERE device_id = ?1"), [b])?;
    }
    // The MAC is unique: it leaves with `b` before `a` may take it.
    tx.execute("DELETE FROM devices WHERE id = ?1", [b])?;
    tx.execute(
        "UPDATE devices SET mac = coalesce(mac, ?2), name = coalesce(name, ?3),
           grp = coalesce(grp, ?4), first_seen = min(first_seen, ?5),
           last_seen = max(last_seen, ?6)
         WHERE id = ?1",
        params![a, mac, name, grp, first, last],
    )?;
    tx.execute(
        "UPDATE device_aliases SET device_id = ?1 WHERE device_id = ?2",
        [a, b],
    )?;
    if alias {
        tx.execute(
            "INSERT INTO device_aliases(key, device_id) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET device_id = excluded.device_id",
            params![key, a],
        )?;
    }
    Ok(())
}

/// `devices forget D`: the device, its hits, queries, totals, rollups, addresses and
/// merged keys are deleted. If it asks again it comes back as a new device. Returns the
/// device and how many hits went with it.
pub(crate) fn forget(db: &Path, spec: &str, actor: &str) -> Result<(Found, usize), StoreError> {
    let mut conn = schema::open_existing_rw(db)?;
    let d = find(&conn, spec)?;
    let tx = conn.transaction().map_err(StoreError::sqlite(db))?;
    let hits = tx
        .execute("DELETE FROM hits WHERE device_id = ?1", [d.id])
        .map_err(StoreError::sqlite(db))?;
    for table in [
        "queries",
        "daily_rollups",
        "query_totals",
        "device_addrs",
        "device_aliases",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE device_id = ?1"), [d.id])
            .map_err(StoreError::sqlite(db))?;
    }
    tx.execute("DELETE FROM devices WHERE id = ?1", [d.id])
        .map_err(StoreError::sqlite(db))?;
    let what = format!("device {} ({})", d.id, d.label);
    let gone = format!("forgotten with {hits} hits");
    audit(&tx, actor, what, "kept", &gone).map_err(StoreError::sqlite(db))?;
    tx.commit().map_err(StoreError::sqlite(db))?;
    Ok((d, hits))
}

/// The id a merged key now names, if it was merged (the writer asks once per key).
pub(super) fn alias(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT device_id FROM device_aliases WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

fn sqlite_err(conn: &Connection, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: conn.path().unwrap_or_default().into(),
        source,
    }
}
