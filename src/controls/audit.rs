//! The audit log: every control change and device edit, with its time, who made it
//! (a dashboard session, the API token, the command line), what changed, and the value
//! before and after. One row in the hit log's database (`audit` table), written in the
//! same transaction as the edit, so a change that could not be recorded is not made.

use rusqlite::{Connection, params};
use serde::Serialize;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    /// Unix seconds.
    pub(crate) ts: i64,
    pub(crate) actor: String,
    pub(crate) what: String,
    pub(crate) old: String,
    pub(crate) new: String,
}

/// Add `e` (inside the caller's transaction).
pub(crate) fn record(conn: &Connection, e: &Entry) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (ts, actor, what, old, new) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.ts, e.actor, e.what, e.old, e.new],
    )
    .map(drop)
}

/// The changes made in `[since, until)`, newest first, at most `limit`. A database from
/// before the audit log has none.
pub(crate) fn read(
    conn: &Connection,
    since: i64,
    until: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = match conn.prepare(
        "SELECT ts, actor, what, old, new FROM audit WHERE ts >= ?1 AND ts < ?2
         ORDER BY ts DESC, id DESC LIMIT ?3",
    ) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    stmt.query_map(params![since, until, limit as i64], |r| {
        Ok(Entry {
            ts: r.get(0)?,
            actor: r.get(1)?,
            what: r.get(2)?,
            old: r.get(3)?,
            new: r.get(4)?,
        })
    })?
    .collect()
}

/// Who runs this command, for the audit log: `command line (USER)`.
pub(crate) fn cli_actor() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", unsafe_uid()));
    format!("command line ({user})")
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid has no arguments and cannot fail.
    unsafe { libc::getuid() }
}
