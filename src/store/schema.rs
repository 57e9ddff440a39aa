//! The database schema: connection settings and the append-only migrations, applied in
//! order under `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Migration `i` takes the database from version `i` to `i + 1`. Append only: a released
/// migration is never edited, since databases in the field already ran it.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_hits.sql"),
    include_str!("migrations/0002_totals.sql"),
    include_str!("migrations/0003_aliases.sql"),
    include_str!("migrations/0004_audit.sql"),
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Open (creating when missing) the database for writing, set it up and migrate it.
pub(crate) fn open_rw(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite(path))?;
    configure(&conn).map_err(StoreError::sqlite(path))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Pragmas for the writing connection. `auto_vacuum` only takes effect on a database
/// with no tables yet, so it comes before the first migration.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    // WAL lets `metaguard log` read while `serve` writes; NORMAL is durable enough for
    // a log (a power cut loses at most the last batches, never the file).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// When run as root, make `path` owned like its directory: a command run from a root
/// shell must not leave a file the service's own user cannot write.
pub(crate) fn give_to_dir_owner(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
        return;
    };
    let _ = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid()));
}

/// The database's `user_version`.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Apply the migrations the database has not seen, each in its own transaction.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = StoreError::sqlite(path);
    let found = version(conn).map_err(StoreError::sqlite(path))?;
    if found > LATEST {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: LATEST,
        });
    }
    let run = || -> rusqlite::Result<()> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    };
    run().map_err(err)
}

/// Open an existing database read-only, refusing one from a newer metaguard.
pub(crate) fn open_ro(path: &Path) -> Result<Connection, StoreError> {
    open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Open an existing database for a small edit (`devices rename`), never creating one.
pub(crate) fn open_existing_rw(path: &Path) -> Result<Connection, StoreError> {
    open_existing(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
}

/// Open a database that must already exist, with `mode`, and check its schema version.
fn open_existing(path: &Path, mode: OpenFlags) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(StoreError::sqlite(path))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite(path))?;
    check_version(&conn, path)?;
    Ok(conn)
}

/// Readers need the latest tables; an older file is migrated by the next `serve`.
fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = version(conn).map_err(StoreError::sqlite(path))?;
    if found > LATEST {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: LATEST,
        });
    }
    if found < LATEST {
        return Err(StoreError::Outdated {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut s = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn fresh_database_gets_latest_schema_and_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let conn = open_rw(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        let t = tables(&conn);
        for name in [
            "categories",
            "daily_rollups",
            "device_aliases",
            "device_addrs",
            "devices",
            "hits",
            "names",
            "queries",
            "query_totals",
            "rules",
            "server_status",
        ] {
            assert!(t.iter().any(|x| x == name), "{name} missing from {t:?}");
        }
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let av: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(av, 2, "auto_vacuum must be INCREMENTAL");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous must be NORMAL");
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let conn = open_rw(&path).unwrap();
        conn.execute("INSERT INTO names(name) VALUES ('facebook.com')", [])
            .unwrap();
        let before = tables(&conn);
        migrate(&conn, &path).unwrap();
        drop(conn);
        let conn = open_rw(&path).unwrap();
        assert_eq!(tables(&conn), before);
        assert_eq!(version(&conn).unwrap(), LATEST);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM names", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn version_1_database_migrates_to_latest_keeping_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            // A database as version 1 of metaguard left it, written with raw SQL.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA auto_vacuum = INCREMENTAL;
                 CREATE TABLE devices (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
                   mac TEXT UNIQUE, name TEXT, grp TEXT, first_seen INTEGER NOT NULL,
                   last_seen INTEGER NOT NULL);
                 CREATE TABLE device_addrs (device_id INTEGER NOT NULL, addr TEXT NOT NULL,
                   last_seen INTEGER NOT NULL, PRIMARY KEY (device_id, addr)) WITHOUT ROWID;
                 CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                 CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                 CREATE TABLE rules (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
                 CREATE TABLE hits (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                   device_id INTEGER NOT NULL, name_id INTEGER NOT NULL, qtype INTEGER NOT NULL,
                   category_id INTEGER NOT NULL, action INTEGER NOT NULL, rule_id INTEGER,
                   cname_origin_id INTEGER);
                 CREATE INDEX hits_ts ON hits (ts);
                 CREATE INDEX hits_device_ts ON hits (device_id, ts);
                 INSERT INTO devices VALUES (1, 'ip:10.0.0.2', NULL, 'tv', NULL, 100, 200);
                 INSERT INTO names VALUES (1, 'graph.facebook.com');
                 INSERT INTO categories VALUES (1, 'pixel');
                 INSERT INTO hits VALUES (1, 150, 1, 1, 1, 1, 1, NULL, NULL);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let conn = open_rw(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        assert!(tables(&conn).iter().any(|t| t == "query_totals"));
        let n: i64 = conn
            .query_row("SELECT count(*) FROM hits", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", LATEST + 1).unwrap();
        }
        match open_rw(&path) {
            Err(StoreError::TooNew { found, known, .. }) => {
                assert_eq!((found, known), (LATEST + 1, LATEST))
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(matches!(open_ro(&path), Err(StoreError::TooNew { .. })));
    }

    #[test]
    fn missing_database_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.db");
        let err = open_ro(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists(), "a reader must not create the database");
    }
}
