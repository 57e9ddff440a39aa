//! `metaguard log`: the hit log, newest last, once or following new hits.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use jiff::tz::TimeZone;
use rusqlite::Connection;

use crate::store::read::{self, HitFilter, HitRow};
use crate::store::{StoreError, edit};

use super::table::{json_lines, local};

/// Rows `metaguard log` prints before following or when not following.
pub(crate) const LOG_TAIL: usize = 50;

/// `--since`: a duration back from `now` (`1h`, `2d`), an RFC 3339 time, or a date.
pub(crate) fn parse_since(s: &str, now: i64) -> Result<i64, StoreError> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| StoreError::BadTime(s.to_string()))
}

/// `metaguard log`: print the last rows, then with `follow` new ones every half second.
pub(crate) fn run(
    db: &Path,
    filter: &HitFilter,
    follow: bool,
    tz: &TimeZone,
    json: bool,
) -> Result<(), StoreError> {
    if follow {
        self::follow(
            db,
            filter,
            tz,
            json,
            Duration::from_millis(500),
            &mut std::io::stdout(),
        )
    } else {
        print!("{}", log(db, filter, tz, json)?.0);
        Ok(())
    }
}

/// `filter` with its device (id, name, MAC or key) made the device's id: a device that
/// does not exist is an error, not an empty log.
fn by_id(conn: &Connection, filter: &HitFilter) -> Result<HitFilter, StoreError> {
    let mut f = filter.clone();
    if let Some(spec) = &filter.device {
        f.device = Some(edit::find(conn, spec)?.id.to_string());
    }
    Ok(f)
}

/// `metaguard log` once: the text and the id of the last row shown.
pub(crate) fn log(
    db: &Path,
    filter: &HitFilter,
    tz: &TimeZone,
    json: bool,
) -> Result<(String, Option<i64>), StoreError> {
    let conn = read::open(db)?;
    let filter = by_id(&conn, filter)?;
    let rows = read::hits(&conn, &filter).map_err(StoreError::sqlite(db))?;
    Ok((render(&rows, tz, json), rows.last().map(|r| r.id)))
}

/// `metaguard log --follow`: the last rows, then new ones every `poll`, until writing
/// to `out` fails (the reader went away).
pub(crate) fn follow(
    db: &Path,
    filter: &HitFilter,
    tz: &TimeZone,
    json: bool,
    poll: Duration,
    out: &mut dyn std::io::Write,
) -> Result<(), StoreError> {
    let (text, mut last) = log(db, filter, tz, json)?;
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Ok(());
    }
    let conn = read::open(db)?;
    let filter = &by_id(&conn, filter)?;
    loop {
        std::thread::sleep(poll);
        let f = HitFilter {
            // Nothing shown yet: start after whatever exists now, not from the beginning.
            after_id: Some(match last {
                Some(id) => id,
                None => read::last_hit_id(&conn).map_err(StoreError::sqlite(db))?,
            }),
            limit: 1000,
            ..filter.clone()
        };
        let rows = read::hits(&conn, &f).map_err(StoreError::sqlite(db))?;
        last = rows.last().map(|r| r.id).or(f.after_id);
        if out
            .write_all(render(&rows, tz, json).as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}

fn render(rows: &[HitRow], tz: &TimeZone, json: bool) -> String {
    if json {
        json_lines(rows)
    } else {
        rows.iter().map(|h| hit_line(h, tz)).collect()
    }
}

/// One hit a line, fixed columns (a followed log cannot align to rows not yet seen).
fn hit_line(h: &HitRow, tz: &TimeZone) -> String {
    let mut line = format!(
        "{}  {:<20}  {:<5}  {:<5}  {:<14}  {}",
        local(h.ts, tz),
        h.device,
        h.action.map_or("?", |a| a.as_str()),
        qtype_name(h.qtype),
        h.category,
        h.name,
    );
    if let Some(o) = &h.cname_origin {
        let _ = write!(line, "  via CNAME {o}");
    }
    if let Some(r) = &h.rule {
        let _ = write!(line, "  [{r}]");
    }
    line.push('\n');
    line
}

fn qtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        n => format!("TYPE{n}"),
    }
}
