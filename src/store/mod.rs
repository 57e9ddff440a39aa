//! The hit log: a SQLite database written by one background thread (`writer`), read by
//! the `devices`, `log` and `status` commands (`read`, `cli`). See docs/store.md.

pub mod cli;
pub mod read;
pub mod schema;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use read::{DeviceRow, HitFilter, HitRow, StatusInfo};
pub use writer::{
    AnsweredFrom, DeviceInfo, DeviceKey, HitEvent, Logger, QueryEvent, WriterHandle, start,
};

/// `[store]`: where the hit log lives and how much of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Also record every query (not only Meta hits) in the `queries` table.
    pub log_all_queries: bool,
    /// Raw rows (hits, queries) older than this are deleted.
    pub retention_days: u32,
    /// Daily rollups and hourly totals older than this are deleted.
    pub rollup_retention_days: u32,
    /// Past this size the oldest raw rows are deleted and the file shrunk (SD cards).
    pub max_db_size_mb: u64,
    /// Events written per transaction at most.
    pub batch_size: usize,
    /// Events wait at most this long before they are written.
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Events queued for the writer; past it they are dropped and counted.
    pub channel_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            db: PathBuf::from("/var/lib/metaguard/metaguard.db"),
            log_all_queries: false,
            retention_days: 90,
            rollup_retention_days: 730,
            max_db_size_mb: 512,
            batch_size: 500,
            batch_interval: Duration::from_secs(1),
            channel_capacity: 65536,
        }
    }
}

/// Why the database could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database at {}: has `metaguard serve` run with this [store] db?", .0.display())]
    Missing(PathBuf),
    #[error(
        "database {} has schema version {found}, newer than this metaguard knows ({known}); upgrade metaguard",
        .path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "database {} has schema version {found}; run `metaguard serve` once to upgrade it",
        .path.display()
    )]
    Outdated { path: PathBuf, found: i64 },
    #[error("database {}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no device with id {0}")]
    NoSuchDevice(i64),
    #[error(
        "cannot read time {0:?}: give a duration like 1h or 2d, or a date like 2024-05-01T12:00:00Z"
    )]
    BadTime(String),
}

impl StoreError {
    fn sqlite(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Action as stored in `hits.action` and `daily_rollups.action`.
pub(crate) fn action_code(a: crate::policy::Action) -> i64 {
    use crate::policy::Action;
    match a {
        Action::Log => 0,
        Action::Block => 1,
        Action::Allow => 2,
    }
}

pub(crate) fn action_from_code(c: i64) -> Option<crate::policy::Action> {
    use crate::policy::Action;
    match c {
        0 => Some(Action::Log),
        1 => Some(Action::Block),
        2 => Some(Action::Allow),
        _ => None,
    }
}

/// Seconds since the Unix epoch (0 when the clock is before it).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
