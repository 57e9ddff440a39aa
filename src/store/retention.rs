//! Retention and the size cap of the hit log: old rows deleted a bounded step at a time
//! between batches, so hits keep flowing while it catches up.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::{StoreConfig, unix_now};

/// How often old rows are deleted.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);
/// Rows per DELETE, so retention never holds the write lock for long.
const DELETE_CHUNK: i64 = 5000;
/// Retention work per writer loop turn, so hits keep flowing while it catches up.
const MAINTENANCE_BUDGET: Duration = Duration::from_millis(100);

/// Retention work in progress, one step per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    OldHits,
    OldQueries,
    OldRollups,
    SizeCap,
    Vacuum,
}

/// When retention runs next and where it is.
pub(super) struct Maintenance {
    next: Instant,
    phase: Option<Phase>,
}

impl Maintenance {
    pub(super) fn new(now: Instant) -> Maintenance {
        Maintenance {
            next: now,
            phase: None,
        }
    }

    /// Run retention at the next turn (a database just opened).
    pub(super) fn due_now(&mut self) {
        self.next = Instant::now();
    }

    /// When [`Maintenance::run`] has work next: at the next interval, or `step` from
    /// now while a pass is under way (one budget per writer turn, as between batches).
    pub(super) fn due(&self, step: Duration) -> Instant {
        match self.phase {
            Some(_) => Instant::now() + step,
            None => self.next,
        }
    }

    /// Retention and the size cap, a little at a time (all of it when `urgent`).
    pub(super) fn run(&mut self, conn: &Connection, cfg: &StoreConfig, urgent: bool) {
        let now = Instant::now();
        if self.phase.is_none() && now >= self.next {
            self.next = now + MAINTENANCE_INTERVAL;
            self.phase = Some(Phase::OldHits);
        }
        if self.phase.is_none() && over_cap(conn, cfg.max_db_size_mb).unwrap_or(false) {
            self.phase = Some(Phase::SizeCap);
        }
        let start = Instant::now();
        while let Some(phase) = self.phase {
            match step(conn, cfg, phase) {
                Ok(next) => self.phase = next,
                Err(e) => {
                    self.phase = None;
                    tracing::warn!("hit log retention failed: {e}");
                    break;
                }
            }
            if !urgent && start.elapsed() >= MAINTENANCE_BUDGET {
                break;
            }
        }
    }
}

fn page_counts(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok((pages, free, size))
}

fn cap_bytes(max_db_size_mb: u64) -> Option<i64> {
    (max_db_size_mb > 0).then(|| (max_db_size_mb as i64).saturating_mul(1024 * 1024))
}

fn over_cap(conn: &Connection, max_db_size_mb: u64) -> rusqlite::Result<bool> {
    let Some(cap) = cap_bytes(max_db_size_mb) else {
        return Ok(false);
    };
    let (pages, _, size) = page_counts(conn)?;
    Ok(pages * size > cap)
}

/// One bounded piece of retention work; the phase to continue with.
fn step(conn: &Connection, cfg: &StoreConfig, phase: Phase) -> rusqlite::Result<Option<Phase>> {
    let now = unix_now();
    let raw_cutoff = now - i64::from(cfg.retention_days) * 86400;
    let rollup_cutoff = now - i64::from(cfg.rollup_retention_days) * 86400;
    let delete_old = |table: &str| -> rusqlite::Result<bool> {
        let n = conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE id IN
                   (SELECT id FROM {table} WHERE ts < ?1 ORDER BY ts LIMIT ?2)"
            ))?
            .execute(params![raw_cutoff, DELETE_CHUNK])?;
        Ok(n as i64 >= DELETE_CHUNK)
    };
    Ok(match phase {
        // A retention of 0 days means keep forever.
        Phase::OldHits if cfg.retention_days > 0 && delete_old("hits")? => Some(Phase::OldHits),
        Phase::OldHits => Some(Phase::OldQueries),
        Phase::OldQueries if cfg.retention_days > 0 && delete_old("queries")? => {
            Some(Phase::OldQueries)
        }
        Phase::OldQueries => Some(Phase::OldRollups),
        Phase::OldRollups => {
            if cfg.rollup_retention_days > 0 {
                conn.execute(
                    "DELETE FROM daily_rollups WHERE day < ?1",
                    [rollup_cutoff.div_euclid(86400)],
                )?;
                conn.execute(
                    "DELETE FROM query_totals WHERE hour < ?1",
                    [rollup_cutoff.div_euclid(3600)],
                )?;
            }
            Some(Phase::SizeCap)
        }
        Phase::SizeCap => {
            let Some(cap) = cap_bytes(cfg.max_db_size_mb) else {
                return Ok(Some(Phase::Vacuum));
            };
            // Aim below the cap so the next few batches do not trigger it again.
            let (pages, free, size) = page_counts(conn)?;
            if (pages - free) * size <= cap / 10 * 9 {
                return Ok(Some(Phase::Vacuum));
            }
            let mut n = 0;
            for table in ["queries", "hits"] {
                n += conn
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE id IN
                           (SELECT id FROM {table} ORDER BY id LIMIT ?1)"
                    ))?
                    .execute([DELETE_CHUNK])?;
            }
            // Nothing raw left to delete: rollups and devices stay, whatever the size.
            if n == 0 {
                Some(Phase::Vacuum)
            } else {
                Some(Phase::SizeCap)
            }
        }
        Phase::Vacuum => {
            let (_, free, _) = page_counts(conn)?;
            if free > 0 {
                conn.pragma_query(None, "incremental_vacuum", |_| Ok(()))?;
                // The file only shrinks once the WAL is checkpointed; a busy reader just
                // postpones that to the next automatic checkpoint.
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            }
            None
        }
    })
}
