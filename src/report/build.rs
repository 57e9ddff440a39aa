//! Aggregating one or more hit logs into a [`ReportModel`]: SQL over the period's raw
//! hits (one indexed range scan, grouped in SQL by device, category, action, name and
//! quarter hour), the previous period's counts and the hourly query totals; devices of
//! several databases are joined by MAC, else by name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::ReportError;
use super::model::*;
use super::period::{Period, rfc3339};
use crate::store::{DeviceKey, DeviceRow, StoreError, read};

/// What to build.
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions {
    pub(crate) dbs: Vec<PathBuf>,
    pub(crate) period: Period,
    /// Only this device: name, MAC, key or id (id only with one database).
    pub(crate) device: Option<String>,
    pub(crate) top_domains: usize,
    pub(crate) now: Timestamp,
}

/// Quarter hours: every time zone offset in use is a multiple of 15 minutes, so a
/// bucket never straddles a local hour or day.
const BUCKET: i64 = 900;

/// One device's figures, possibly merged from several databases.
#[derive(Debug, Default)]
struct Acc {
    name: Option<String>,
    mac: Option<String>,
    keys: BTreeSet<String>,
    group: Option<String>,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    first_hit: Option<i64>,
    last_hit: Option<i64>,
    counts: Counts,
    categories: BTreeMap<String, Counts>,
    /// (day index, category)
    days: BTreeMap<(usize, String), Counts>,
    grid: [[i64; 24]; 7],
    domains: HashMap<(String, String), i64>,
    all_lookups: i64,
    prev: i64,
    /// `bypass` lookups, not Meta: by (name, category), and by day index.
    bypass: HashMap<(String, String), i64>,
    bypass_days: BTreeMap<usize, i64>,
    /// Other trackers' lookups, not Meta: as `categories`, `days` and `domains`.
    other: BTreeMap<String, Counts>,
    other_days: BTreeMap<(usize, String), Counts>,
    other_domains: HashMap<(String, String), i64>,
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> ReportError + '_ {
    move |source| {
        ReportError::Store(StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn matches(d: &DeviceRow, want: &str) -> bool {
    d.name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(want))
        || d.mac
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(want))
        || d.key == want
        || d.id.to_string() == want
}

/// Where a device's figures go: by MAC across databases, else by name, else per database.
fn ident(db: usize, d: &DeviceRow) -> String {
    // The MAC column holds the MAC part of a MAC key (store/batch.rs).
    let mac = d.mac.as_deref().and_then(|m| m.parse().ok());
    match (mac, &d.name) {
        (Some(mac), _) => DeviceKey::from_mac(mac).to_string(),
        (None, Some(n)) => format!("name:{n}"),
        (None, None) => format!("key:{db}:{}", d.key),
    }
}

/// Local (day index, weekday, hour) of each quarter hour of the period.
struct LocalClock<'a> {
    period: &'a Period,
    cache: HashMap<i64, (usize, usize, usize)>,
}

impl LocalClock<'_> {
    fn at(&mut self, bucket: i64) -> Result<(usize, usize, usize), ReportError> {
        if let Some(v) = self.cache.get(&bucket) {
            return Ok(*v);
        }
        let ts = Timestamp::from_second(bucket * BUCKET)?;
        let dt = self.period.tz.to_datetime(ts);
        let day = self.period.first.until(dt.date())?.get_days().max(0) as usize;
        let v = (
            day,
            dt.date().weekday().to_monday_zero_offset() as usize,
            dt.hour() as usize,
        );
        self.cache.insert(bucket, v);
        Ok(v)
    }
}

/// Read one database into `accs`.
fn read_db(
    idx: usize,
    path: &Path,
    o: &BuildOptions,
    accs: &mut BTreeMap<String, Acc>,
    notes: &mut Vec<String>,
    changes: &mut Vec<crate::controls::audit::Entry>,
) -> Result<(), ReportError> {
    let conn = read::open(path)?;
    let e = sql(path);
    let (start, end) = (o.period.start()?, o.period.end()?);
    changes.extend(crate::controls::audit::read(&conn, start, end, 1000).map_err(&e)?);
    let prev = o.period.previous()?;
    let (pstart, pend) = (prev.start()?, prev.end()?);

    let devices: HashMap<i64, DeviceRow> = read::devices(&conn, o.now.as_second())
        .map_err(&e)?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let wanted = |id: i64| -> Option<&DeviceRow> {
        let d = devices.get(&id)?;
        match &o.device {
            Some(w) if !matches(d, w) => None,
            _ => Some(d),
        }
    };
    let categories: HashMap<i64, String> =
        table(&conn, "SELECT id, name FROM categories").map_err(&e)?;

    let acc_for = |d: &DeviceRow, accs: &mut BTreeMap<String, Acc>| -> String {
        let id = ident(idx, d);
        let a = accs.entry(id.clone()).or_default();
        if a.name.is_none() {
            a.name = d.name.clone();
        }
        if a.mac.is_none() {
            a.mac = d.mac.clone();
        }
        if a.group.is_none() {
            a.group = d.group.clone();
        }
        a.keys.insert(d.key.clone());
        a.first_seen = Some(a.first_seen.map_or(d.first_seen, |f| f.min(d.first_seen)));
        a.last_seen = Some(a.last_seen.map_or(d.last_seen, |l| l.max(d.last_seen)));
        id
    };

    // The period's hits, grouped by SQL; names resolved afterwards, once each.
    let mut clock = LocalClock {
        period: &o.period,
        cache: HashMap::new(),
    };
    let mut stmt = conn
        .prepare(
            "SELECT device_id, category_id, action, name_id, ts / 900, count(*), min(ts), max(ts)
             FROM hits WHERE ts >= ?1 AND ts < ?2
             GROUP BY device_id, category_id, action, name_id, ts / 900",
        )
        .map_err(&e)?;
    let mut rows = stmt.query(params![start, end]).map_err(&e)?;
    let mut idents: HashMap<i64, String> = HashMap::new();
    let mut domain_ids: HashMap<(String, i64, String), i64> = HashMap::new();
    while let Some(r) = rows.next().map_err(&e)? {
        let (dev, cat, action, name, bucket, n, lo, hi): (i64, i64, i64, i64, i64, i64, i64, i64) = (
            r.get(0).map_err(&e)?,
            r.get(1).map_err(&e)?,
            r.get(2).map_err(&e)?,
            r.get(3).map_err(&e)?,
            r.get(4).map_err(&e)?,
            r.get(5).map_err(&e)?,
            r.get(6).map_err(&e)?,
            r.get(7).map_err(&e)?,
        );
        let Some(d) = wanted(dev) else { continue };
        let id = match idents.get(&dev) {
            Some(id) => id.clone(),
            None => {
                let id = acc_for(d, accs);
                idents.insert(dev, id.clone());
                id
            }
        };
        let Some(a) = accs.get_mut(&id) else { continue };
        let category = categories
            .get(&cat)
            .cloned()
            .unwrap_or_else(|| format!("category-{cat}"));
        let (day, wd, hour) = clock.at(bucket)?;
        let mut c = Counts::default();
        c.add_action(action, n);
        // Only Meta lookups count as Meta: the others are kept apart from every Meta count.
        match kind(&category) {
            Kind::Meta => {}
            Kind::Bypass => {
                *a.bypass_days.entry(day).or_default() += n;
                *domain_ids.entry((id, name, category)).or_default() += n;
                continue;
            }
            Kind::Other => {
                a.other.entry(category.clone()).or_default().add(&c);
                a.other_days
                    .entry((day, category.clone()))
                    .or_default()
                    .add(&c);
                *domain_ids.entry((id, name, category)).or_default() += n;
                continue;
            }
        }
        a.counts.add(&c);
        a.categories.entry(category.clone()).or_default().add(&c);
        a.days.entry((day, category.clone())).or_default().add(&c);
        if day < o.period.days as usize {
            a.grid[wd][hour] += n;
        }
        a.first_hit = Some(a.first_hit.map_or(lo, |f| f.min(lo)));
        a.last_hit = Some(a.last_hit.map_or(hi, |l| l.max(hi)));
        *domain_ids.entry((id, name, category)).or_default() += n;
    }
    drop(rows);
    drop(stmt);
    let mut name_of = conn
        .prepare("SELECT name FROM names WHERE id = ?1")
        .map_err(&e)?;
    let mut names: HashMap<i64, String> = HashMap::new();
    for ((id, name_id, category), n) in domain_ids {
        let name = match names.get(&name_id) {
            Some(s) => s.clone(),
            None => {
                let s: String = name_of
                    .query_row([name_id], |r| r.get(0))
                    .unwrap_or_else(|_| format!("name-{name_id}"));
                names.insert(name_id, s.clone());
                s
            }
        };
        if let Some(a) = accs.get_mut(&id) {
            let into = match kind(&category) {
                Kind::Meta => &mut a.domains,
                Kind::Bypass => &mut a.bypass,
                Kind::Other => &mut a.other_domains,
            };
            *into.entry((name, category)).or_default() += n;
        }
    }

    // The previous period, for the change.
    let mut stmt = conn
        .prepare(
            "SELECT device_id, category_id, count(*) FROM hits WHERE ts >= ?1 AND ts < ?2
             GROUP BY device_id, category_id",
        )
        .map_err(&e)?;
    let prev_rows: Vec<(i64, i64, i64)> = stmt
        .query_map(params![pstart, pend], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(&e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(&e)?;
    // All lookups from the hourly totals (whole unix hours inside the period).
    let mut stmt = conn
        .prepare(
            "SELECT device_id, sum(queries) FROM query_totals
             WHERE hour >= ?1 AND hour < ?2 GROUP BY device_id",
        )
        .map_err(&e)?;
    let totals: Vec<(i64, i64)> = stmt
        .query_map(params![start.div_euclid(3600), end.div_euclid(3600)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(&e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(&e)?;
    for (dev, n) in totals {
        let Some(d) = wanted(dev) else { continue };
        if n == 0 {
            continue;
        }
        let id = acc_for(d, accs);
        if let Some(a) = accs.get_mut(&id) {
            a.all_lookups += n;
        }
    }
    for (dev, cat, n) in prev_rows {
        let Some(d) = wanted(dev) else { continue };
        if categories.get(&cat).is_none_or(|c| kind(c) != Kind::Meta) {
            continue;
        }
        // Only devices of this period get a change; others did not show up this time.
        let id = ident(idx, d);
        if let Some(a) = accs.get_mut(&id) {
            a.prev += n;
        }
    }

    // Raw hits trimmed by retention or the size cap make the counts too low: say so.
    let oldest: Option<i64> = conn
        .query_row("SELECT min(ts) FROM hits", [], |r| r.get(0))
        .map_err(&e)?;
    if let Some(oldest) = oldest
        && oldest > pstart
    {
        let rolled: i64 = conn
            .query_row(
                "SELECT count(*) FROM daily_rollups WHERE day >= ?1 AND day < ?2",
                params![pstart.div_euclid(86400), oldest.div_euclid(86400)],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if rolled > 0 {
            notes.push(format!(
            "{}: raw hits only go back to {}; lookups before that (retention or size cap) are not counted.",
            path.display(),
                rfc3339(oldest, &o.period.tz)
            ));
        }
    }
    Ok(())
}

fn table(conn: &Connection, q: &str) -> rusqlite::Result<HashMap<i64, String>> {
    conn.prepare(q)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Categories with their counts, most first; the dashboard's too.
pub(crate) fn category_list(m: &BTreeMap<String, Counts>) -> Vec<CategoryCount> {
    let mut v: Vec<CategoryCount> = m
        .iter()
        .map(|(c, n)| CategoryCount {
            category: c.clone(),
            default_action: default_action(c).to_string(),
            counts: *n,
            total: n.total(),
        })
        .collect();
    // A total order (the key ends in a unique field): an unstable sort gives the same order with less code (the 8 MiB gate).
    v.sort_unstable_by(|a, b| b.total.cmp(&a.total).then(a.category.cmp(&b.category)));
    v
}

/// The (day, category) counts of the period's days, by date.
fn day_categories(
    days: &BTreeMap<(usize, String), Counts>,
    dates: &[jiff::civil::Date],
) -> Vec<DayCategoryCount> {
    days.iter()
        .filter_map(|((day, c), n)| {
            Some(DayCategoryCount {
                date: dates.get(*day)?.to_string(),
                category: c.clone(),
                counts: *n,
            })
        })
        .collect()
}

fn top(domains: &HashMap<(String, String), i64>, n: usize, only: Option<&str>) -> Vec<DomainCount> {
    let mut v: Vec<DomainCount> = domains
        .iter()
        .filter(|((_, c), _)| only.is_none_or(|o| o == c))
        .map(|((d, c), n)| DomainCount {
            domain: d.clone(),
            category: c.clone(),
            lookups: *n,
        })
        .collect();
    v.sort_by(|a, b| b.lookups.cmp(&a.lookups).then(a.domain.cmp(&b.domain)));
    v.truncate(n);
    v
}

/// Build the report.
pub(crate) fn build(o: &BuildOptions) -> Result<ReportModel, ReportError> {
    let tz = &o.period.tz;
    let dates = o.period.dates()?;
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    for (i, path) in o.dbs.iter().enumerate() {
        read_db(i, path, o, &mut accs, &mut notes, &mut changes)?;
    }
    changes.sort_by_key(|c| c.ts);

    let mut household = Counts::default();
    let mut all_lookups = 0;
    let mut prev_total = 0;
    let mut categories: BTreeMap<String, Counts> = BTreeMap::new();
    let mut daily = vec![Counts::default(); dates.len()];
    let mut grid = vec![vec![0i64; 24]; 7];
    let mut devices = Vec::new();
    let mut ai_devices = Vec::new();
    let mut bypass_devices = Vec::new();
    let mut other: BTreeMap<String, Counts> = BTreeMap::new();
    for (id, a) in &accs {
        household.add(&a.counts);
        all_lookups += a.all_lookups;
        prev_total += a.prev;
        for (c, n) in &a.categories {
            categories.entry(c.clone()).or_default().add(n);
        }
        for (c, n) in &a.other {
            other.entry(c.clone()).or_default().add(n);
        }
        for ((day, _), n) in &a.days {
            if let Some(d) = daily.get_mut(*day) {
                d.add(n);
            }
        }
        for (w, row) in a.grid.iter().enumerate() {
            for (h, n) in row.iter().enumerate() {
                grid[w][h] += n;
            }
        }
        let name = a
            .name
            .clone()
            .or_else(|| a.mac.clone())
            .or_else(|| a.keys.iter().next().cloned())
            .unwrap_or_else(|| id.clone());
        let ai = a.categories.get(META_AI).map_or(0, Counts::total);
        if ai > 0 {
            ai_devices.push(MetaAiDevice {
                device: name.clone(),
                lookups: ai,
                domains: top(&a.domains, usize::MAX, Some(META_AI)),
            });
        }
        let bypassed: i64 = a.bypass.values().sum();
        if bypassed > 0 {
            bypass_devices.push(BypassDevice {
                device: name.clone(),
                mac: a.mac.clone(),
                lookups: bypassed,
                names: top(&a.bypass, usize::MAX, None),
                days: dates
                    .iter()
                    .enumerate()
                    .map(|(i, d)| DayLookups {
                        date: d.to_string(),
                        lookups: a.bypass_days.get(&i).copied().unwrap_or(0),
                    })
                    .collect(),
            });
        }
        let total = a.counts.total();
        devices.push(DeviceReport {
            name,
            mac: a.mac.clone(),
            keys: a.keys.iter().cloned().collect(),
            group: a.group.clone(),
            meta_lookups: total,
            counts: a.counts,
            all_lookups: a.all_lookups,
            meta_share_pct: share_pct(total, a.all_lookups),
            previous_meta_lookups: a.prev,
            change_pct: change_pct(total, a.prev),
            first_seen: a.first_seen.map(|t| rfc3339(t, tz)),
            last_seen: a.last_seen.map(|t| rfc3339(t, tz)),
            first_hit: a.first_hit.map(|t| rfc3339(t, tz)),
            last_hit: a.last_hit.map(|t| rfc3339(t, tz)),
            categories: category_list(&a.categories),
            top_domains: top(&a.domains, o.top_domains, None),
            days: day_categories(&a.days, &dates),
            hour_grid: a.grid.iter().map(|r| r.to_vec()).collect(),
            other_lookups: a.other.values().map(Counts::total).sum(),
            other_categories: category_list(&a.other),
            other_top_domains: top(&a.other_domains, o.top_domains, None),
            other_days: day_categories(&a.other_days, &dates),
        });
    }
    devices.sort_by(|a, b| {
        b.meta_lookups
            .cmp(&a.meta_lookups)
            .then(b.all_lookups.cmp(&a.all_lookups))
            .then(a.name.cmp(&b.name))
    });
    ai_devices.sort_by(|a, b| b.lookups.cmp(&a.lookups).then(a.device.cmp(&b.device)));
    bypass_devices.sort_by(|a, b| b.lookups.cmp(&a.lookups).then(a.device.cmp(&b.device)));
    let total = household.total();
    let prev = o.period.previous()?;
    Ok(ReportModel {
        schema_version: SCHEMA_VERSION,
        generated_at: rfc3339(o.now.as_second(), tz),
        period: PeriodInfo {
            label: o.period.label.clone(),
            start: rfc3339(o.period.start()?, tz),
            end: rfc3339(o.period.end()?, tz),
            time_zone: o.period.tz_name(),
            hours: o.period.hours()?,
            days: dates.iter().map(|d| d.to_string()).collect(),
            previous_label: prev.label,
        },
        sources: o.dbs.iter().map(|p| p.display().to_string()).collect(),
        empty: devices.is_empty(),
        household: Household {
            devices_seen: devices.len(),
            meta_lookups: total,
            counts: household,
            all_lookups,
            meta_share_pct: share_pct(total, all_lookups),
            previous_meta_lookups: prev_total,
            change_pct: change_pct(total, prev_total),
        },
        categories: category_list(&categories),
        daily: dates
            .iter()
            .zip(daily)
            .map(|(d, c)| DayCount {
                date: d.to_string(),
                counts: c,
                total: c.total(),
            })
            .collect(),
        hour_grid: grid,
        devices,
        meta_ai: MetaAi {
            note: META_AI_NOTE.to_string(),
            lookups: ai_devices.iter().map(|d| d.lookups).sum(),
            devices: ai_devices,
        },
        other: {
            let mut counts = Counts::default();
            other.values().for_each(|n| counts.add(n));
            OtherTrackers {
                note: OTHER_NOTE.to_string(),
                counts,
                lookups: counts.total(),
                categories: category_list(&other),
            }
        },
        bypass: Bypass {
            note: BYPASS_NOTE.to_string(),
            lookups: bypass_devices.iter().map(|d| d.lookups).sum(),
            devices: bypass_devices,
        },
        blind_spots: BLIND_SPOTS.iter().map(|s| s.to_string()).collect(),
        notes,
        settings_changed: changes
            .into_iter()
            .map(|c| super::model::SettingChange {
                at: rfc3339(c.ts, tz),
                by: c.actor,
                what: c.what,
                old: c.old,
                new: c.new,
            })
            .collect(),
    })
}
