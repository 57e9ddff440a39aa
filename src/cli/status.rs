//! `metaguard status`: whether a server is running, what it last reported, and the
//! database's size and rows.

use std::path::Path;

use jiff::tz::TimeZone;

use crate::server::STATUS_IDLE;
use crate::store::StoreError;
use crate::store::read::{self, StatusInfo};

use super::table::{Table, ago, json_lines, local};

/// Whether the server that wrote the status is running: it did not write its last
/// status on the way out, its process exists, and it reported within its heartbeat (an
/// idle server writes every `STATUS_IDLE`), so a pid reused by another program long
/// after a crash does not count.
pub(crate) fn running(s: &StatusInfo, now: i64) -> bool {
    let fresh = s
        .server_updated
        .is_some_and(|t| now - t <= STATUS_IDLE.as_secs() as i64 + 60);
    fresh && stopped(s).is_none() && pid(s).is_some_and(alive)
}

/// When the server stopped, if it stopped cleanly.
fn stopped(s: &StatusInfo) -> Option<i64> {
    s.server.as_ref()?.get("stopped")?.as_i64()
}

fn pid(s: &StatusInfo) -> Option<i32> {
    let pid = s.server.as_ref()?.get("pid")?.as_i64()?;
    i32::try_from(pid).ok().filter(|p| *p > 0)
}

/// Signal 0 checks the process exists; EPERM means it does, under another user.
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The server line in words (after `running` was set): running or not, since when, its
/// last report.
fn server_words(s: &StatusInfo, now: i64, tz: &TimeZone) -> String {
    let Some(updated) = s.server_updated else {
        return "not running: no server has written to this database yet".into();
    };
    let num = |k: &str| {
        s.server
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_i64())
    };
    let last = format!(
        "last report {} ago ({})",
        ago(now - updated),
        local(updated, tz)
    );
    if s.running {
        let started = num("started").map_or_else(String::new, |t| {
            format!(", started {} (up {})", local(t, tz), ago(now - t))
        });
        let pid = pid(s).map_or_else(String::new, |p| format!(" as pid {p}"));
        format!("running{pid}{started}; {last}")
    } else if let Some(t) = stopped(s) {
        format!(
            "not running: stopped {} ago ({})",
            ago(now - t),
            local(t, tz)
        )
    } else {
        format!("not running; {last}")
    }
}

/// `metaguard status`, at `now`, with times in `tz`.
pub(crate) fn status(db: &Path, now: i64, tz: &TimeZone, json: bool) -> Result<String, StoreError> {
    let conn = read::open(db)?;
    let mut s = read::status(&conn).map_err(StoreError::sqlite(db))?;
    s.running = running(&s, now);
    if json {
        return Ok(json_lines(std::slice::from_ref(&s)));
    }
    let opt_ts = |t: Option<i64>| t.map_or_else(|| "-".to_string(), |t| local(t, tz));
    let mut table = Table::new("  ");
    table.row(["server", &server_words(&s, now, tz)]);
    table.row(["database", &s.db]);
    table.row(["size", &format!("{:.1} MB", s.db_bytes as f64 / 1e6)]);
    table.row(["schema version", &s.schema_version.to_string()]);
    table.row(["devices", &s.devices.to_string()]);
    table.row(["hits", &s.hits.to_string()]);
    table.row(["names", &s.names.to_string()]);
    table.row(["queries logged", &s.queries.to_string()]);
    table.row(["daily rollups", &s.daily_rollups.to_string()]);
    table.row(["oldest hit", &opt_ts(s.oldest_hit)]);
    table.row(["newest hit", &opt_ts(s.newest_hit)]);
    for (prefix, value) in [("server", &s.server), ("writer", &s.writer)] {
        if let Some(serde_json::Value::Object(map)) = value {
            for (k, v) in map {
                let v = match (k.as_str(), v) {
                    ("started" | "updated" | "stopped", serde_json::Value::Number(n)) => {
                        n.as_i64().map_or_else(|| n.to_string(), |t| local(t, tz))
                    }
                    (_, serde_json::Value::String(s)) => s.clone(),
                    (_, other) => other.to_string(),
                };
                table.row([format!("{prefix}.{k}"), v]);
            }
        }
    }
    for (k, v) in &s.other {
        table.row([k.as_str(), v.as_str()]);
    }
    Ok(table.render())
}
