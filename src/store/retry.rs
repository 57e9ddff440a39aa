//! The hit log writer's failure policy: when the database cannot be written (locked, disk
//! full, read-only) the events are kept and the write is tried again with backoff; a
//! warning goes out at most once a minute, and "writable again" only after a write that
//! succeeded.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

/// The first wait after a failure, and the only one after a lock: the busy timeout has
/// already waited, and a released lock should let the log through at once.
pub(super) const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest wait between two tries (a full or read-only disk).
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);
/// At most one warning per this interval while the disk fails.
pub(super) const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Why a try failed, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Another connection holds the lock past the busy timeout: try again soon.
    Locked,
    /// Anything else (full, read-only, gone): back off.
    Other,
}

impl Failure {
    pub(super) fn of(e: &rusqlite::Error) -> Failure {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Failure::Locked,
            _ => Failure::Other,
        }
    }
}

/// When to try next, and what has been said about it.
#[derive(Debug)]
pub(super) struct Retry {
    failing: bool,
    delay: Duration,
    next: Instant,
    last_warn: Option<Instant>,
    failures_since_warn: u64,
}

impl Retry {
    pub(super) fn new(now: Instant) -> Retry {
        Retry {
            failing: false,
            delay: RETRY_MIN,
            next: now,
            last_warn: None,
            failures_since_warn: 0,
        }
    }

    /// Whether the last try failed and none has succeeded since.
    pub(super) fn failing(&self) -> bool {
        self.failing
    }

    /// No try before this (unless a flush or shutdown asks).
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A try failed at `now` with `queued` events waiting: schedule the next one and warn,
    /// at most once per [`WARN_INTERVAL`]. Returns whether it warned.
    pub(super) fn failed(
        &mut self,
        now: Instant,
        failure: Failure,
        db: &Path,
        queued: u64,
        why: &str,
    ) -> bool {
        let wait = match failure {
            Failure::Locked => RETRY_MIN,
            Failure::Other if self.failing => (self.delay * 2).min(RETRY_MAX),
            Failure::Other => RETRY_MIN,
        };
        self.delay = wait;
        self.next = now + wait;
        self.failing = true;
        self.failures_since_warn += 1;
        let warn = self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL);
        if warn {
            tracing::warn!(
                db = %db.display(),
                queued,
                failures = self.failures_since_warn,
                "hit log unavailable, events wait in the queue (DNS unaffected), retrying: {why}"
            );
            self.last_warn = Some(now);
            self.failures_since_warn = 0;
        }
        warn
    }

    /// A write was committed. Returns whether this ended a failure (and said so).
    pub(super) fn succeeded(&mut self, now: Instant, db: &Path) -> bool {
        self.delay = RETRY_MIN;
        self.next = now;
        if !std::mem::take(&mut self.failing) {
            return false;
        }
        tracing::info!(db = %db.display(), "hit log writable again");
        // The next failure warns at once: it is a new outage.
        self.last_warn = None;
        self.failures_since_warn = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> &'static Path {
        Path::new("/x/m.db")
    }

    #[test]
    fn other_failures_back_off_doubling_up_to_the_max() {
        let t0 = Instant::now();
        let mut r = Retry::new(t0);
        assert!(r.due(t0) && !r.failing());
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            r.failed(now, Failure::Other, db(), 5, "disk full");
            waits.push(r.next() - now);
            assert!(!r.due(now));
            now = r.next();
            assert!(r.due(now));
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn a_lock_is_tried_again_soon_and_success_resets_the_backoff() {
        let t0 = Instant::now();
        let mut r = Retry::new(t0);
        for _ in 0..5 {
            r.failed(t0, Failure::Other, db(), 1, "full");
        }
        r.failed(t0, Failure::Locked, db(), 1, "locked");
        assert_eq!(r.next() - t0, RETRY_MIN);
        assert!(r.succeeded(t0, db()));
        r.failed(t0, Failure::Other, db(), 1, "full");
        assert_eq!(r.next() - t0, RETRY_MIN);
    }

    #[test]
    fn writable_again_only_after_a_success_that_ends_a_failure() {
        let t0 = Instant::now();
        let mut r = Retry::new(t0);
        assert!(!r.succeeded(t0, db()), "nothing had failed");
        r.failed(t0, Failure::Other, db(), 1, "full");
        // Retries that fail again never count as recovery.
        r.failed(r.next(), Failure::Other, db(), 1, "full");
        assert!(r.failing());
        assert!(r.succeeded(r.next(), db()));
        assert!(!r.failing());
        assert!(!r.succeeded(r.next(), db()), "said once");
    }

    #[test]
    fn warns_at_most_once_a_minute_and_at_once_after_a_recovery() {
        let t0 = Instant::now();
        let mut r = Retry::new(t0);
        assert!(r.failed(t0, Failure::Locked, db(), 1, "busy"));
        assert!(!r.failed(
            t0 + Duration::from_secs(30),
            Failure::Locked,
            db(),
            1,
            "busy"
        ));
        assert!(r.failed(t0 + WARN_INTERVAL, Failure::Locked, db(), 1, "busy"));
        r.succeeded(t0 + WARN_INTERVAL, db());
        assert!(r.failed(t0 + WARN_INTERVAL, Failure::Locked, db(), 1, "busy"));
    }
}
