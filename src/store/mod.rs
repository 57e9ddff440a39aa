//! The hit log: events (`event`) queued by the query path (`logger`), written by one
//! background thread (`writer`: `batch` SQL, `retry` policy, `recover`, `retention`),
//! read by the `devices`, `log` and `status` commands (`read`; the commands are in
//! `crate::cli`), edited by hand through `edit`. See docs/store.md.

mod batch;
pub(crate) mod edit;
mod event;
mod logger;
pub(crate) mod read;
mod recover;
mod retention;
mod retry;
pub(crate) mod schema;
pub(crate) mod writer;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use event::HitEvent;
pub(crate) use event::{AnsweredFrom, DeviceKey, QueryEvent};
pub(crate) use logger::Logger;
pub(crate) use read::{DeviceRow, HitFilter};
pub(crate) use writer::WriterHandle;
pub use writer::start;

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
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub batch_size: NonZeroUsize,
    /// Events wait at most this long before they are written.
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Events waiting to be written at most, also while the disk fails or another
    /// process holds the lock; past it they are dropped and counted.
    #[serde(deserialize_with = "queue_size")]
    pub channel_capacity: NonZeroUsize,
}

/// The most events `channel_capacity` may hold: about 400 MB of events when full.
pub(crate) const MAX_CHANNEL_CAPACITY: usize = 1 << 20;

fn queue_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroUsize, D::Error> {
    let n: NonZeroUsize = crate::config::at_least_one(d)?;
    if n.get() > MAX_CHANNEL_CAPACITY {
        return Err(serde::de::Error::custom(format_args!(
            "must be at most {MAX_CHANNEL_CAPACITY} (each waiting event takes memory)"
        )));
    }
    Ok(n)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            db: PathBuf::from("/var/lib/metaguard/metaguard.db"),
            log_all_queries: false,
            retention_days: 90,
            rollup_retention_days: 730,
            max_db_size_mb: 512,
            batch_size: const { NonZeroUsize::new(2000).unwrap() },
            batch_interval: Duration::from_secs(1),
            channel_capacity: const { NonZeroUsize::new(65536).unwrap() },
        }
    }
}

/// Why the database could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file does not exist.
    #[error("no database at {}: has `metaguard serve` run with this [store] db?", .0.display())]
    Missing(PathBuf),
    #[error(
        "database {} has schema version {found}, newer than this metaguard knows ({known}); upgrade metaguard",
        .path.display()
    )]
    /// The database was made by a newer metaguard.
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest schema version this metaguard knows.
        known: i64,
    },
    #[error(
        "database {} has schema version {found}; run `metaguard serve` once to upgrade it",
        .path.display()
    )]
    /// The database has an older schema; `serve` upgrades it.
    Outdated {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// SQLite failed on the database.
    #[error("database {}: {source}", .path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file next to the database could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A device named by id, name, MAC or key that no device has.
    #[error("no device is {0:?} (give an id, a name or a MAC that `metaguard devices` lists)")]
    NoSuchDevice(String),
    /// A name that several devices carry.
    #[error("{spec:?} names {} devices (ids {}): give the id", .ids.len(), .ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))]
    AmbiguousDevice {
        /// What was given.
        spec: String,
        /// The devices it names.
        ids: Vec<i64>,
    },
    /// `devices merge` given the same device twice.
    #[error("cannot merge {0:?} into itself")]
    MergeSelf(String),
    #[error(
        "cannot read time {0:?}: give a duration like 1h or 2d, or a date like 2024-05-01T12:00:00Z"
    )]
    /// A `--since`/`--until` that is neither a duration nor a date.
    BadTime(String),
}

impl StoreError {
    pub(crate) fn sqlite(
        path: &std::path::Path,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    #[test]
    fn queue_and_batch_sizes_that_cannot_work_are_refused_with_their_location() {
        let cases = [
            ("[store]\nchannel_capacity = 0\n", 2, 20, "at least 1"),
            (
                "[store]\nchannel_capacity = 2000000\n",
                2,
                20,
                "at most 1048576",
            ),
            ("[store]\n\nbatch_size = 0\n", 3, 14, "at least 1"),
        ];
        for (text, line, col, says) in cases {
            match Config::parse(text, Path::new("/etc/m.toml")).unwrap_err() {
                ConfigError::Invalid {
                    line: l,
                    column: c,
                    message,
                    ..
                } => {
                    assert_eq!((l, c), (line, col), "{text}: {message}");
                    assert!(message.contains(says), "{text}: {message}");
                }
                other => panic!("{other}"),
            }
        }
        let ok = Config::parse("[store]\nchannel_capacity = 1\n", Path::new("c")).unwrap();
        assert_eq!(ok.store.channel_capacity, std::num::NonZeroUsize::MIN);
    }
}
