//! One batch of the hit log in one SQLite transaction: the devices and their addresses,
//! the interned names, categories and rules, the hit rows, the daily rollups, the hourly
//! totals and the status row.

// FxHash: the keys are ours (device keys, names we already answered).
use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::event::{DeviceKey, Totals};
use super::logger::Msg;
use super::{action_code, unix_now};
use crate::clients::Device;

/// The writer's counters as the status row records them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counters {
    pub(crate) written: u64,
    pub(crate) dropped: u64,
    pub(crate) queued: u64,
}

/// Interned ids kept in memory; past it the cache starts over.
const CACHE_LIMIT: usize = 100_000;

/// A device known only by an address that was first seen at most this long before the
/// address showed up under a MAC is that MAC's device (a phone's new IPv6 privacy address,
/// queried before the neighbour tables knew it), and is folded into it with its hits. An
/// older one may have been another device that had the address before, and stays.
pub(crate) const FOLD_WINDOW_S: i64 = 3600;

/// The open database and its interned ids, valid only for this connection (a fresh
/// database after corruption numbers everything anew).
pub(super) struct Db {
    pub(super) conn: Connection,
    names: HashMap<String, i64>,
    categories: HashMap<String, i64>,
    rules: HashMap<String, i64>,
    devices: HashMap<DeviceKey, DeviceId>,
    /// (MAC device, address) pairs already checked for an address-only device to fold.
    folded: rustc_hash::FxHashSet<(i64, IpAddr)>,
    /// `PRAGMA data_version` at the last batch: it moves when another connection
    /// (`devices merge`, `forget`, `rename`) commits, and the device ids are read anew.
    data_version: i64,
}

/// A device key's row id, and whether the key was merged into another device's row.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeviceId {
    id: i64,
    merged: bool,
}

impl Db {
    pub(super) fn new(conn: Connection) -> Db {
        Db {
            conn,
            names: HashMap::default(),
            categories: HashMap::default(),
            rules: HashMap::default(),
            devices: HashMap::default(),
            folded: Default::default(),
            data_version: 0,
        }
    }

    /// Drop the device ids when another connection changed the database since the last
    /// batch: a merged or forgotten device's id is gone.
    fn notice_outside_edits(&mut self) -> rusqlite::Result<()> {
        // Prepared once: parsing the pragma each batch cost 3.5 % of the writer's time.
        let v: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if v != self.data_version {
            self.devices.clear();
            self.folded.clear();
            self.data_version = v;
        }
        Ok(())
    }

    /// After a rollback the cached ids may name rows that are gone.
    pub(super) fn forget_ids(&mut self) {
        self.names.clear();
        self.categories.clear();
        self.rules.clear();
        self.devices.clear();
        self.folded.clear();
    }
}

fn intern(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    table: &str,
    column: &str,
    value: &str,
) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(value) {
        return Ok(id);
    }
    tx.prepare_cached(&format!(
        "INSERT INTO {table}({column}) VALUES (?1) ON CONFLICT({column}) DO NOTHING"
    ))?
    .execute([value])?;
    let id: i64 = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE {column} = ?1"))?
        .query_row([value], |r| r.get(0))?;
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(value.to_string(), id);
    Ok(id)
}

/// Upsert a device seen in a hit or query; returns its id.
fn upsert_device(
    tx: &Transaction<'_>,
    cache: &mut HashMap<DeviceKey, DeviceId>,
    d: &Device,
    first: i64,
    last: i64,
) -> rusqlite::Result<i64> {
    if let Some(id) = merged_into(tx, cache, &d.key)? {
        seen_merged(tx, id, first, last)?;
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO devices(key, mac, name, grp, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(key) DO UPDATE SET
           name = coalesce(devices.name, excluded.name),
           grp = excluded.grp,
           first_seen = min(devices.first_seen, excluded.first_seen),
           last_seen = max(devices.last_seen, excluded.last_seen)",
    )?
    // The MAC column comes from the key, so two keys can never claim one MAC.
    .execute(params![
        d.key.as_str(),
        d.key.mac(),
        d.name.as_deref(),
        d.group.as_deref(),
        first,
        last
    ])?;
    device_id(tx, cache, &d.key)
}

/// A device known only from the totals: create it if new, never change its details.
fn touch_device(
    tx: &Transaction<'_>,
    cache: &mut HashMap<DeviceKey, DeviceId>,
    key: &DeviceKey,
    ts: i64,
) -> rusqlite::Result<i64> {
    if let Some(id) = merged_into(tx, cache, key)? {
        seen_merged(tx, id, ts, ts)?;
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO devices(key, mac, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(key) DO UPDATE SET last_seen = max(devices.last_seen, excluded.last_seen)",
    )?
    .execute(params![key.as_str(), key.mac(), ts])?;
    device_id(tx, cache, key)
}

fn device_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<DeviceKey, DeviceId>,
    key: &DeviceKey,
) -> rusqlite::Result<i64> {
    if let Some(d) = cache.get(key) {
        return Ok(d.id);
    }
    if let Some(id) = merged_into(tx, cache, key)? {
        return Ok(id);
    }
    let id: i64 = tx
        .prepare_cached("SELECT id FROM devices WHERE key = ?1")?
        .query_row([key.as_str()], |r| r.get(0))?;
    remember(cache, key, DeviceId { id, merged: false });
    Ok(id)
}

/// The device a key was merged into (`metaguard devices merge`), if it was.
fn merged_into(
    tx: &Transaction<'_>,
    cache: &mut HashMap<DeviceKey, DeviceId>,
    key: &DeviceKey,
) -> rusqlite::Result<Option<i64>> {
    if let Some(d) = cache.get(key) {
        return Ok(d.merged.then_some(d.id));
    }
    let id = super::edit::alias(tx, key.as_str())?;
    if let Some(id) = id {
        remember(cache, key, DeviceId { id, merged: true });
    }
    Ok(id)
}

/// The device known only as `addr`, new within [`FOLD_WINDOW_S`] of `ts`, becomes MAC
/// device `id`'s, with its hits, totals and address.
fn fold_address(
    tx: &Transaction<'_>,
    cache: &mut HashMap<DeviceKey, DeviceId>,
    id: i64,
    addr: IpAddr,
    ts: i64,
) -> rusqlite::Result<()> {
    let key = DeviceKey::from_addr(addr);
    let other: Option<i64> = tx
        .prepare_cached("SELECT id FROM devices WHERE key = ?1 AND first_seen >= ?2")?
        .query_row(params![key.as_str(), ts - FOLD_WINDOW_S], |r| r.get(0))
        .optional()?;
    if let Some(other) = other.filter(|o| *o != id) {
        super::edit::fold(tx, id, other, false)?;
        cache.remove(&key);
    }
    Ok(())
}

/// A merged key was seen: its device's times move, its details stay as merged.
fn seen_merged(tx: &Transaction<'_>, id: i64, first: i64, last: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE devices SET first_seen = min(first_seen, ?2), last_seen = max(last_seen, ?3)
         WHERE id = ?1",
    )?
    .execute(params![id, first, last])?;
    Ok(())
}

fn remember(cache: &mut HashMap<DeviceKey, DeviceId>, key: &DeviceKey, d: DeviceId) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key.clone(), d);
}

/// A `hits` row: ts, device_id, name_id, qtype, category_id, action, rule_id,
/// cname_origin_id.
type HitParams = [Option<i64>; 8];

/// Rows per multi-row INSERT: one statement step for many rows.
const HITS_PER_INSERT: usize = 32;

// `OR IGNORE`: a statement that can abort after changing some rows of a transaction
// needs a statement journal to undo them (SQLite copies every page it touches there
// first: 8 % of the writer's instructions). A hit row cannot conflict (its id is new,
// its NOT NULL columns are always given), so no row is ever ignored, and with nothing
// that can abort, SQLite keeps no statement journal.
const INSERT_HITS: &str = "INSERT OR IGNORE INTO hits(ts, device_id, name_id, qtype, category_id, action, rule_id, cname_origin_id) VALUES ";

/// Insert `rows` into `hits`, [`HITS_PER_INSERT`] at a time.
fn insert_hits(tx: &Transaction<'_>, rows: &[HitParams]) -> rusqlite::Result<()> {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{INSERT_HITS}{}", vec![ROW; HITS_PER_INSERT].join(", "))
    });
    static ONE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{INSERT_HITS}{ROW}"));
    let mut chunks = rows.chunks_exact(HITS_PER_INSERT);
    for chunk in &mut chunks {
        let mut stmt = tx.prepare_cached(&MANY)?;
        for (i, v) in chunk.iter().flatten().enumerate() {
            stmt.raw_bind_parameter(i + 1, v)?;
        }
        stmt.raw_execute()?;
    }
    for row in chunks.remainder() {
        tx.prepare_cached(&ONE)?
            .execute(rusqlite::params_from_iter(row))?;
    }
    Ok(())
}

/// One transaction: devices and addresses once per batch, the rows, the rollups, the
/// hourly totals and the status.
pub(super) fn write_batch(
    db: &mut Db,
    batch: &[Msg],
    totals: &HashMap<(DeviceKey, i64), Totals>,
    status: Option<&str>,
    counters: Counters,
) -> rusqlite::Result<()> {
    db.notice_outside_edits()?;
    let Db {
        conn,
        names,
        categories,
        rules,
        devices,
        folded,
        ..
    } = db;
    let tx = conn.transaction()?;

    // Latest details, first/last time and addresses per device in this batch.
    let mut seen: HashMap<&DeviceKey, (&Device, i64, i64)> = HashMap::default();
    let mut addrs: HashMap<(&DeviceKey, IpAddr), i64> = HashMap::default();
    // Addresses that are the device's own, not a forwarder's: only those fold.
    let mut own: rustc_hash::FxHashSet<(&DeviceKey, IpAddr)> = Default::default();
    for m in batch {
        let (d, ts) = match m {
            Msg::Hit(h) => (&h.device, h.ts),
            Msg::Query(q) => (&q.device, q.ts),
            _ => continue,
        };
        let e = seen.entry(&d.key).or_insert((d, ts, ts));
        if ts >= e.2 {
            e.0 = d;
        }
        e.1 = e.1.min(ts);
        e.2 = e.2.max(ts);
        let a = addrs.entry((&d.key, d.addr)).or_insert(ts);
        *a = (*a).max(ts);
        if d.own_addr {
            own.insert((&d.key, d.addr));
        }
    }
    for (d, first, last) in seen.values() {
        upsert_device(&tx, devices, d, *first, *last)?;
    }
    // Folded after this batch's rows are in, so that they all find their devices.
    let mut to_fold = Vec::new();
    for ((key, addr), ts) in &addrs {
        let id = device_id(&tx, devices, key)?;
        if key.mac().is_some()
            && own.contains(&(*key, *addr))
            && folded.len() < CACHE_LIMIT
            && folded.insert((id, *addr))
        {
            to_fold.push((id, *addr, *ts));
        }
        tx.prepare_cached(
            "INSERT INTO device_addrs(device_id, addr, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT(device_id, addr) DO UPDATE
               SET last_seen = max(device_addrs.last_seen, excluded.last_seen)",
        )?
        .execute(params![id, addr.to_string(), ts])?;
    }

    let mut rollups: HashMap<(i64, i64, i64, i64), i64> = HashMap::default();
    let mut hits: Vec<HitParams> = Vec::with_capacity(batch.len());
    for m in batch {
        match m {
            Msg::Hit(h) => {
                let device = device_id(&tx, devices, &h.device.key)?;
                let name = intern(&tx, names, "names", "name", &h.name)?;
                let category = intern(&tx, categories, "categories", "name", &h.category)?;
                let rule = match &h.rule {
                    Some(r) => Some(intern(&tx, rules, "rules", "text", r)?),
                    None => None,
                };
                let origin = match &h.cname_origin {
                    Some(o) => Some(intern(&tx, names, "names", "name", o)?),
                    None => None,
                };
                let action = action_code(h.action);
                hits.push([
                    Some(h.ts),
                    Some(device),
                    Some(name),
                    Some(i64::from(h.qtype)),
                    Some(category),
                    Some(action),
                    rule,
                    origin,
                ]);
                *rollups
                    .entry((device, h.ts.div_euclid(86400), category, action))
                    .or_default() += 1;
            }
            Msg::Query(q) => {
                let device = device_id(&tx, devices, &q.device.key)?;
                let name = intern(&tx, names, "names", "name", &q.name)?;
                tx.prepare_cached(
                    "INSERT INTO queries(ts, device_id, name_id, qtype, answered_from)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    q.ts,
                    device,
                    name,
                    q.qtype,
                    q.answered_from as i64
                ])?;
            }
            Msg::Flush(_) | Msg::Shutdown | Msg::Wake => {}
        }
    }
    insert_hits(&tx, &hits)?;
    for ((device, day, category, action), n) in &rollups {
        tx.prepare_cached(
            "INSERT INTO daily_rollups(device_id, day, category_id, action, hits)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(device_id, day, category_id, action)
               DO UPDATE SET hits = daily_rollups.hits + excluded.hits",
        )?
        .execute(params![device, day, category, action, n])?;
    }
    for ((key, hour), t) in totals {
        let device = touch_device(&tx, devices, key, hour * 3600)?;
        tx.prepare_cached(
            "INSERT INTO query_totals(device_id, hour, queries, meta, blocked)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(device_id, hour) DO UPDATE SET
               queries = query_totals.queries + excluded.queries,
               meta = query_totals.meta + excluded.meta,
               blocked = query_totals.blocked + excluded.blocked",
        )?
        .execute(params![device, hour, t.queries, t.meta, t.blocked])?;
    }
    for (id, addr, ts) in to_fold {
        fold_address(&tx, devices, id, addr, ts)?;
    }
    let now = unix_now();
    let put = |key: &str, value: &str| -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO server_status(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )?
        .execute([key, value])?;
        Ok(())
    };
    if let Some(s) = status {
        put("server", s)?;
        put("server_updated", &now.to_string())?;
    }
    let Counters {
        written,
        dropped,
        queued,
    } = counters;
    let writer = serde_json::json!({
        "written": written, "dropped": dropped, "queued": queued, "updated": now
    });
    put("writer", &writer.to_string())?;
    tx.commit()
}
