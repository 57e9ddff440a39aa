//! The dashboard's reads: per-page aggregate queries on a read-only connection. Whole
//! UTC days come from `daily_rollups` and the hourly shapes from `query_totals` (both
//! small, read by their primary keys); only the partial days at a week's edges and one
//! device's names read raw `hits`, through their indexes. Never the whole report model.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::report::Period;
use crate::report::build::category_list;
use crate::report::model::{
    CategoryCount, Counts, DayCount, DomainCount, Household, Kind, META_AI, change_pct, kind,
    share_pct,
};

/// Why a page's data could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum DataError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// The week a page shows, in local time.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Week {
    /// `2026-W10`.
    pub(super) label: String,
    pub(super) previous: String,
    /// None for the current week (nothing after it yet).
    pub(super) next: Option<String>,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) time_zone: String,
    pub(super) days: Vec<String>,
    #[serde(skip)]
    period: Period,
}

fn iso_label(d: Date) -> String {
    let w = d.iso_week_date();
    format!("{}-W{:02}", w.year(), w.week())
}

impl Week {
    /// `week` (`YYYY-Www`) or, when absent or unreadable, the current week.
    pub(super) fn pick(
        week: Option<&str>,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Result<Week, DataError> {
        let today = tz.to_datetime(now).date();
        let current = Period::parse_week(&iso_label(today), tz)?;
        let period = match week.map(|w| Period::parse_week(w, tz)) {
            Some(Ok(p)) => p,
            _ => current.clone(),
        };
        let prev = period.previous()?;
        let next_first = period.first.checked_add(jiff::Span::new().days(7)).ok();
        let next = next_first.filter(|d| *d <= current.first).map(iso_label);
        Ok(Week {
            label: period.label.clone(),
            previous: prev.label.clone(),
            next,
            start: period.start()?,
            end: period.end()?,
            time_zone: period.tz_name(),
            days: period.dates()?.iter().map(|d| d.to_string()).collect(),
            period,
        })
    }

    fn prev_period(&self) -> Result<Period, DataError> {
        Ok(self.period.previous()?)
    }

    /// (day index, weekday, hour) of a unix hour, local; None outside the week.
    fn local(&self, hour: i64) -> Option<(usize, usize, usize)> {
        let ts = Timestamp::from_second(hour * 3600).ok()?;
        let dt = self.period.tz.to_datetime(ts);
        let day = i64::from(self.period.first.until(dt.date()).ok()?.get_days());
        if day < 0 || day >= self.period.days {
            return None;
        }
        Some((
            day as usize,
            dt.date().weekday().to_monday_zero_offset() as usize,
            dt.hour() as usize,
        ))
    }
}

/// A device as the devices table has it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DeviceInfo {
    pub(super) id: i64,
    /// Its name, else its MAC, else its key.
    pub(super) name: String,
    pub(super) key: String,
    pub(super) mac: Option<String>,
    pub(super) group: Option<String>,
    pub(super) first_seen: i64,
    pub(super) last_seen: i64,
}

pub(super) fn devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceInfo>> {
    conn.prepare_cached(
        "SELECT id, key, name, mac, grp, first_seen, last_seen FROM devices ORDER BY id",
    )?
    .query_map([], |r| {
        let key: String = r.get(1)?;
        let name: Option<String> = r.get(2)?;
        let mac: Option<String> = r.get(3)?;
        Ok(DeviceInfo {
            id: r.get(0)?,
            name: name.or_else(|| mac.clone()).unwrap_or_else(|| key.clone()),
            key,
            mac,
            group: r.get(4)?,
            first_seen: r.get(5)?,
            last_seen: r.get(6)?,
        })
    })?
    .collect()
}

fn categories(conn: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    conn.prepare_cached("SELECT id, name FROM categories")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Lookups by (device, category id, action) in `start..end`: whole UTC days from the
/// daily rollups, the partial days at the edges from raw hits.
fn counts(
    conn: &Connection,
    start: i64,
    end: i64,
    device: Option<i64>,
) -> rusqlite::Result<HashMap<(i64, i64, i64), i64>> {
    let (d0, d1) = ((start + 86399).div_euclid(86400), end.div_euclid(86400));
    let mut out: HashMap<(i64, i64, i64), i64> = HashMap::new();
    let mut add = |rows: &mut rusqlite::Rows<'_>| -> rusqlite::Result<()> {
        while let Some(r) = rows.next()? {
            *out.entry((r.get(0)?, r.get(1)?, r.get(2)?)).or_default() += r.get::<_, i64>(3)?;
        }
        Ok(())
    };
    let raw = |a: i64, b: i64| (a, b);
    let edges = if d0 < d1 {
        let mut s = conn.prepare_cached(
            "SELECT device_id, category_id, action, sum(hits) FROM daily_rollups
             WHERE device_id IN (SELECT id FROM devices WHERE ?3 IS NULL OR id = ?3)
               AND day >= ?1 AND day < ?2
             GROUP BY device_id, category_id, action",
        )?;
        add(&mut s.query(params![d0, d1, device])?)?;
        vec![raw(start, d0 * 86400), raw(d1 * 86400, end)]
    } else {
        vec![raw(start, end)]
    };
    let mut s = conn.prepare_cached(
        "SELECT device_id, category_id, action, count(*) FROM hits
         WHERE ts >= ?1 AND ts < ?2 AND (?3 IS NULL OR device_id = ?3)
         GROUP BY device_id, category_id, action",
    )?;
    for (a, b) in edges {
        if a < b {
            add(&mut s.query(params![a, b, device])?)?;
        }
    }
    Ok(out)
}

/// One row of the hourly totals: device, unix hour, queries, matched, blocked.
type HourRow = (i64, i64, i64, i64, i64);

/// Hourly totals in `start..end`.
fn hourly(
    conn: &Connection,
    start: i64,
    end: i64,
    device: Option<i64>,
) -> rusqlite::Result<Vec<HourRow>> {
    conn.prepare_cached(
        "SELECT device_id, hour, queries, meta, blocked FROM query_totals
         WHERE device_id IN (SELECT id FROM devices WHERE ?3 IS NULL OR id = ?3)
           AND hour >= ?1 AND hour < ?2",
    )?
    .query_map(
        params![start.div_euclid(3600), end.div_euclid(3600), device],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?
    .collect()
}

/// One device's line on the household page.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DeviceLine {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) mac: Option<String>,
    pub(super) meta_lookups: i64,
    #[serde(flatten)]
    pub(super) counts: Counts,
    pub(super) previous_meta_lookups: i64,
    pub(super) change_pct: Option<f64>,
    pub(super) all_lookups: i64,
    pub(super) meta_share_pct: Option<f64>,
    /// Its category with the most Meta lookups.
    pub(super) top_category: Option<String>,
    pub(super) categories: Vec<CategoryCount>,
    /// Meta AI lookups.
    pub(super) meta_ai: i64,
    /// `bypass` lookups (evidence it may resolve around metaguard; not Meta).
    pub(super) bypass: i64,
}

/// The household page.
#[derive(Debug, Clone, Serialize)]
pub(super) struct HouseholdPage {
    pub(super) week: Week,
    pub(super) household: Household,
    /// Household Meta lookups by category.
    pub(super) categories: Vec<CategoryCount>,
    /// Lookups that matched a list (Meta, bypass and other lists), per local day,
    /// from the hourly totals: blocked, and logged (the rest).
    pub(super) daily: Vec<DayCount>,
    /// Most Meta lookups first; devices with none in the week are left out.
    pub(super) devices: Vec<DeviceLine>,
}

/// Read the household page for `week`.
pub(super) fn household(conn: &Connection, week: Week) -> Result<HouseholdPage, DataError> {
    let devs: HashMap<i64, DeviceInfo> = devices(conn)?.into_iter().map(|d| (d.id, d)).collect();
    let cats = categories(conn)?;
    let cat_name = |id: i64| {
        cats.get(&id)
            .cloned()
            .unwrap_or_else(|| format!("category-{id}"))
    };
    let mut per: BTreeMap<i64, (Counts, BTreeMap<String, Counts>, i64)> = BTreeMap::new();
    let mut household_cats: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for ((dev, cat, action), n) in counts(conn, week.start, week.end, None)? {
        let name = cat_name(cat);
        let e = per.entry(dev).or_default();
        match kind(&name) {
            Kind::Meta => {
                let mut c = Counts::default();
                c.add_action(action, n);
                e.0.add(&c);
                e.1.entry(name.clone()).or_default().add(&c);
                household_cats.entry(name).or_default().add(&c);
                total.add(&c);
            }
            Kind::Bypass => e.2 += n,
            Kind::Other => {}
        }
    }
    let prev = week.prev_period()?;
    let mut prev_per: HashMap<i64, i64> = HashMap::new();
    for ((dev, cat, _), n) in counts(conn, prev.start()?, prev.end()?, None)? {
        if kind(&cat_name(cat)) == Kind::Meta {
            *prev_per.entry(dev).or_default() += n;
        }
    }
    let mut all: HashMap<i64, i64> = HashMap::new();
    let mut daily = vec![Counts::default(); week.days.len()];
    for (dev, hour, queries, matched, blocked) in hourly(conn, week.start, week.end, None)? {
        *all.entry(dev).or_default() += queries;
        if let Some((day, _, _)) = week.local(hour)
            && let Some(d) = daily.get_mut(day)
        {
            d.blocked += blocked;
            d.logged += matched - blocked;
        }
    }
    let mut lines: Vec<DeviceLine> = per
        .into_iter()
        .filter_map(|(id, (counts, cats, bypass))| {
            let d = devs.get(&id)?;
            let categories = category_list(&cats);
            let meta = counts.total();
            let all_lookups = all.get(&id).copied().unwrap_or(0);
            let prev = prev_per.get(&id).copied().unwrap_or(0);
            Some(DeviceLine {
                id,
                name: d.name.clone(),
                mac: d.mac.clone(),
                meta_lookups: meta,
                counts,
                previous_meta_lookups: prev,
                change_pct: change_pct(meta, prev),
                all_lookups,
                meta_share_pct: share_pct(meta, all_lookups),
                top_category: categories.first().map(|c| c.category.clone()),
                meta_ai: cats.get(META_AI).map_or(0, Counts::total),
                categories,
                bypass,
            })
        })
        .filter(|l| l.meta_lookups > 0 || l.bypass > 0)
        .collect();
    lines.sort_by(|a, b| {
        b.meta_lookups
            .cmp(&a.meta_lookups)
            .then(a.name.cmp(&b.name))
    });
    let all_lookups: i64 = all.values().sum();
    let previous: i64 = prev_per.values().sum();
    let seen = lines.len().max(all.values().filter(|n| **n > 0).count());
    let daily = daily
        .into_iter()
        .zip(&week.days)
        .map(|(counts, date)| DayCount {
            date: date.clone(),
            total: counts.total(),
            counts,
        })
        .collect();
    Ok(HouseholdPage {
        household: Household {
            devices_seen: seen,
            meta_lookups: total.total(),
            counts: total,
            all_lookups,
            meta_share_pct: share_pct(total.total(), all_lookups),
            previous_meta_lookups: previous,
            change_pct: change_pct(total.total(), previous),
        },
        categories: category_list(&household_cats),
        daily,
        devices: lines,
        week,
    })
}

/// A name one device looked up, with what was done.
#[derive(Debug, Clone, Serialize)]
pub(super) struct NameLine {
    pub(super) domain: String,
    pub(super) category: String,
    #[serde(flatten)]
    pub(super) counts: Counts,
    pub(super) lookups: i64,
}

/// The device page.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DevicePage {
    pub(super) week: Week,
    pub(super) device: DeviceInfo,
    /// Addresses, most recently seen first.
    pub(super) addrs: Vec<String>,
    pub(super) meta_lookups: i64,
    #[serde(flatten)]
    pub(super) counts: Counts,
    pub(super) all_lookups: i64,
    pub(super) categories: Vec<CategoryCount>,
    /// Meta names, most looked up first.
    pub(super) names: Vec<NameLine>,
    /// Lookups that matched a list, by local weekday (0 = Monday) and hour.
    pub(super) hour_grid: Vec<Vec<i64>>,
    /// Meta AI names.
    pub(super) meta_ai: Vec<DomainCount>,
    /// `bypass` names: evidence it may resolve around metaguard.
    pub(super) bypass: Vec<DomainCount>,
    /// Raw hits of the week were trimmed (retention, size cap): names are partial.
    pub(super) names_partial: bool,
}

/// Read one device's page; None when there is no such device.
pub(super) fn device(
    conn: &Connection,
    id: i64,
    week: Week,
) -> Result<Option<DevicePage>, DataError> {
    let Some(dev) = devices(conn)?.into_iter().find(|d| d.id == id) else {
        return Ok(None);
    };
    let cats = categories(conn)?;
    let cat_name = |id: i64| {
        cats.get(&id)
            .cloned()
            .unwrap_or_else(|| format!("category-{id}"))
    };
    let mut by_cat: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for ((_, cat, action), n) in counts(conn, week.start, week.end, Some(id))? {
        let name = cat_name(cat);
        if kind(&name) == Kind::Meta {
            let mut c = Counts::default();
            c.add_action(action, n);
            total.add(&c);
            by_cat.entry(name).or_default().add(&c);
        }
    }
    let mut grid = vec![vec![0i64; 24]; 7];
    let mut all_lookups = 0;
    for (_, hour, queries, matched, _) in hourly(conn, week.start, week.end, Some(id))? {
        all_lookups += queries;
        if let Some((_, wd, h)) = week.local(hour) {
            grid[wd][h] += matched;
        }
    }
    let mut names: HashMap<(i64, String), Counts> = HashMap::new();
    {
        let mut s = conn.prepare_cached(
            "SELECT name_id, category_id, action, count(*) FROM hits
             WHERE device_id = ?1 AND ts >= ?2 AND ts < ?3
             GROUP BY name_id, category_id, action",
        )?;
        let mut rows = s.query(params![id, week.start, week.end])?;
        while let Some(r) = rows.next()? {
            let (name, cat, action, n): (i64, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            names
                .entry((name, cat_name(cat)))
                .or_default()
                .add_action(action, n);
        }
    }
    let mut name_of = conn.prepare_cached("SELECT name FROM names WHERE id = ?1")?;
    let mut lines = Vec::new();
    let (mut meta_ai, mut bypass) = (Vec::new(), Vec::new());
    for ((name_id, category), c) in names {
        let domain: String = name_of
            .query_row([name_id], |r| r.get(0))
            .unwrap_or_else(|_| format!("name-{name_id}"));
        let dc = || DomainCount {
            domain: domain.clone(),
            category: category.clone(),
            lookups: c.total(),
        };
        match kind(&category) {
            Kind::Bypass => bypass.push(dc()),
            Kind::Other => {}
            Kind::Meta => {
                if category == META_AI {
                    meta_ai.push(dc());
                }
                lines.push(NameLine {
                    lookups: c.total(),
                    domain,
                    category,
                    counts: c,
                });
            }
        }
    }
    lines.sort_by(|a, b| b.lookups.cmp(&a.lookups).then(a.domain.cmp(&b.domain)));
    for v in [&mut meta_ai, &mut bypass] {
        v.sort_by(|a, b| b.lookups.cmp(&a.lookups).then(a.domain.cmp(&b.domain)));
    }
    let addrs: Vec<String> = conn
        .prepare_cached(
            "SELECT addr FROM device_addrs WHERE device_id = ?1 ORDER BY last_seen DESC, addr",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let oldest: Option<i64> = conn.query_row("SELECT min(ts) FROM hits", [], |r| r.get(0))?;
    Ok(Some(DevicePage {
        names_partial: oldest.is_none_or(|o| o > week.start) && total.total() > 0,
        week,
        device: dev,
        addrs,
        meta_lookups: total.total(),
        counts: total,
        all_lookups,
        categories: category_list(&by_cat),
        names: lines,
        hour_grid: grid,
        meta_ai,
        bypass,
    }))
}

/// The categories seen in the log (for the live page's filter).
pub(super) fn category_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut v: Vec<String> = categories(conn)?.into_values().collect();
    v.sort();
    Ok(v)
}

/// The database as the status page shows it: only reads that do not scan the hit log
/// (`metaguard status` counts every row, seconds over millions).
#[derive(Debug, Clone, Serialize)]
pub(super) struct DbStatus {
    pub(super) path: String,
    /// The file plus its WAL.
    pub(super) bytes: u64,
    pub(super) devices: i64,
    /// The newest hit's id: hits ever written, less those of a deleted tail.
    pub(super) last_hit_id: i64,
    pub(super) oldest_hit: Option<i64>,
    pub(super) newest_hit: Option<i64>,
}

pub(super) fn db_status(conn: &Connection) -> rusqlite::Result<DbStatus> {
    let path = conn.path().unwrap_or("").to_string();
    let size = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes = if path.is_empty() {
        0
    } else {
        size(&path) + size(&format!("{path}-wal"))
    };
    // Two queries: SQLite answers a lone min() or max() from the index, both at once by
    // a scan of every row.
    let oldest_hit = conn.query_row("SELECT min(ts) FROM hits", [], |r| r.get(0))?;
    let newest_hit = conn.query_row("SELECT max(ts) FROM hits", [], |r| r.get(0))?;
    Ok(DbStatus {
        path,
        bytes,
        devices: conn.query_row("SELECT count(*) FROM devices", [], |r| r.get(0))?,
        last_hit_id: crate::store::read::last_hit_id(conn)?,
        oldest_hit,
        newest_hit,
    })
}
