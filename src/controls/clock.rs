//! The time the controls are judged at: the system clock, or, when the environment
//! variable `METAGUARD_CLOCK` names a file, the time written in it (RFC 3339 or Unix
//! seconds). Tests set it to end a pause or cross a schedule's edge without waiting;
//! `serve` watches the file and judges the controls again when it changes.

use std::path::PathBuf;

/// The variable that names the clock file.
pub(crate) const VAR: &str = "METAGUARD_CLOCK";

/// The clock file, when one is set.
pub(crate) fn file() -> Option<PathBuf> {
    std::env::var_os(VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    file()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| {
            let t = t.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<jiff::Timestamp>().ok().map(|ts| ts.as_second()))
        })
        .unwrap_or_else(crate::store::unix_now)
}
