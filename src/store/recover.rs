//! Opening the database for writing, and recovering from corruption: a file that fails
//! `quick_check` or is not a database is moved aside (kept, not deleted) and a new one
//! started.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode};

use super::{StoreError, schema, unix_now};

/// Whether `e` says the file is damaged (rather than locked, full or gone).
pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Open for writing: create the directory, check integrity, move a corrupt file aside.
pub(super) fn open_db(path: &Path, check: bool) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if check && path.exists() && !intact(path)? {
        move_aside(path)?;
    }
    match schema::open_rw(path) {
        Err(StoreError::Sqlite { source, .. }) if is_corruption(&source) => {
            move_aside(path)?;
            schema::open_rw(path)
        }
        other => other,
    }
}

/// `PRAGMA quick_check` on an existing file; Err only when it could not be read at all.
fn intact(path: &Path) -> Result<bool, StoreError> {
    let conn = Connection::open(path).map_err(StoreError::sqlite(path))?;
    conn.busy_timeout(schema::BUSY_TIMEOUT)
        .map_err(StoreError::sqlite(path))?;
    let result: rusqlite::Result<String> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match result {
        Ok(s) => Ok(s == "ok"),
        Err(e) if is_corruption(&e) => Ok(false),
        Err(e) => Err(StoreError::sqlite(path)(e)),
    }
}

/// Rename a corrupt database (and its WAL files) to `<db>.corrupt-<unix ts>`.
fn move_aside(path: &Path) -> Result<(), StoreError> {
    let suffix = format!(".corrupt-{}", unix_now());
    let with = |ext: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let target = with(&suffix);
    std::fs::rename(path, &target).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for ext in ["-wal", "-shm"] {
        let f = with(ext);
        if f.exists() {
            let _ = std::fs::rename(&f, with(&format!("{suffix}{ext}")));
        }
    }
    tracing::error!(
        db = %path.display(),
        moved_to = %target.display(),
        "hit log database is corrupt; moved it aside and started a new one"
    );
    Ok(())
}
