//! `metaguard devices` and `devices rename`.

use std::path::Path;

use crate::store::StoreError;
use crate::store::read;

use super::table::{Table, json_lines, utc};

/// `metaguard devices`: every device seen, most recently seen first.
pub(crate) fn devices(db: &Path, now: i64, json: bool) -> Result<String, StoreError> {
    let conn = read::open(db)?;
    let rows = read::devices(&conn, now).map_err(StoreError::sqlite(db))?;
    if json {
        return Ok(json_lines(&rows));
    }
    let mut table = Table::new("  ");
    table.row([
        "ID",
        "NAME",
        "MAC",
        "ADDRESSES",
        "GROUP",
        "LAST SEEN",
        "META 7D",
        "QUERIES 7D",
        "MAY BYPASS METAGUARD (7D)",
    ]);
    for d in &rows {
        table.row([
            d.id.to_string(),
            d.name.clone().unwrap_or_else(|| "-".into()),
            d.mac.clone().unwrap_or_else(|| "-".into()),
            if d.addrs.is_empty() {
                "-".into()
            } else {
                d.addrs.join(",")
            },
            d.group.clone().unwrap_or_else(|| "-".into()),
            utc(d.last_seen),
            d.meta_hits_7d.to_string(),
            d.queries_7d.to_string(),
            if d.bypass_7d.is_empty() {
                "-".into()
            } else {
                d.bypass_7d
                    .iter()
                    .map(|(name, n)| format!("{name} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ]);
    }
    Ok(table.render())
}

/// `metaguard devices rename ID NAME`.
pub(crate) fn rename(db: &Path, id: i64, name: &str) -> Result<String, StoreError> {
    read::rename_device(db, id, name)?;
    Ok(format!("device {id} is now {name}\n"))
}
