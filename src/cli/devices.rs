//! `metaguard devices` and `devices rename|merge|forget` (a device given by id, name or MAC).

use std::path::Path;

use crate::store::{StoreError, edit, read};

use jiff::tz::TimeZone;

use super::table::{Table, json_lines, local};

/// `metaguard devices`: every device seen, most recently seen first.
pub(crate) fn devices(
    db: &Path,
    now: i64,
    tz: &TimeZone,
    json: bool,
) -> Result<String, StoreError> {
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
            local(d.last_seen, tz),
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

/// `metaguard devices rename D NAME`.
pub(crate) fn rename(db: &Path, device: &str, name: &str) -> Result<String, StoreError> {
    let d = edit::rename(db, device, name, &crate::controls::audit::cli_actor())?;
    Ok(format!("device {} ({}) is now {name}\n", d.id, d.label))
}

/// `metaguard devices merge KEEP OTHER`.
pub(crate) fn merge(db: &Path, keep: &str, other: &str) -> Result<String, StoreError> {
    let (a, b) = edit::merge(db, keep, other, &crate::controls::audit::cli_actor())?;
    Ok(format!(
        "device {} ({}) is merged into device {} ({}): its hits, totals and addresses are \
         {}'s, and its next queries count for it\n",
        b.id, b.label, a.id, a.label, a.label
    ))
}

/// `metaguard devices forget D`.
pub(crate) fn forget(db: &Path, device: &str) -> Result<String, StoreError> {
    let (d, hits) = edit::forget(db, device, &crate::controls::audit::cli_actor())?;
    Ok(format!(
        "device {} ({}) is forgotten: {hits} hits deleted with its totals and addresses\n",
        d.id, d.label
    ))
}
