//! `metaguard status`: what the running server last reported, and the database's size
//! and rows.

use std::path::Path;

use crate::store::{StoreError, read, unix_now};

use super::table::{Table, json_lines, utc};

/// `metaguard status`.
pub(crate) fn status(db: &Path, json: bool) -> Result<String, StoreError> {
    let conn = read::open(db)?;
    let s = read::status(&conn).map_err(StoreError::sqlite(db))?;
    if json {
        return Ok(json_lines(std::slice::from_ref(&s)));
    }
    let now = unix_now();
    let opt_ts = |t: Option<i64>| t.map_or_else(|| "-".to_string(), utc);
    let mut table = Table::new("  ");
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
    match s.server_updated {
        Some(t) => table.row(["server updated", &format!("{} ({}s ago)", utc(t), now - t)]),
        None => table.row(["server", "no status written yet"]),
    }
    for (prefix, value) in [("server", &s.server), ("writer", &s.writer)] {
        if let Some(serde_json::Value::Object(map)) = value {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
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
