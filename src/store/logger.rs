//! The query path's side of the hit log: a [`Logger`] that queues events on a bounded
//! channel for the writer thread and never blocks, never touches SQLite, and counts what
//! it has to drop.

// FxHash: the keys are ours (device keys), and SipHash was a tenth of the writer's time.
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use super::event::{DeviceKey, HitEvent, QueryEvent, Totals};

/// Events are boxed: the queue's ring holds `channel_capacity` slots and every slot gets
/// touched as it turns, so a slot the size of an event cost 16 MiB of RSS at the default
/// capacity; a pointer costs 1 MiB.
pub(super) enum Msg {
    Hit(Box<HitEvent>),
    Query(Box<QueryEvent>),
    Flush(SyncSender<()>),
    Shutdown,
    /// Hourly totals or a status wait in [`LogState`]: an idle writer waits on the
    /// channel with no timeout, and this brings it to write them (within its batch
    /// interval, as an event).
    Wake,
}

/// Hourly totals per device, as the query path adds them up for the writer.
pub(super) type TotalsMap = HashMap<DeviceKey, HashMap<i64, Totals>>;

/// The counters, totals and status the loggers and the writer thread both see.
pub(super) struct LogState {
    pub(super) dropped: AtomicU64,
    pub(super) written: AtomicU64,
    /// Events accepted and neither written nor dropped yet, in the channel or held by
    /// the writer; never more than `capacity`, so only overflow is ever dropped.
    pub(super) queued: AtomicU64,
    capacity: u64,
    pub(super) totals: Mutex<TotalsMap>,
    pub(super) status: Mutex<Option<String>>,
    /// Set with the last status (the server stopped): later ones are ignored. Read
    /// and set under the `status` lock.
    status_closed: AtomicBool,
    log_all_queries: bool,
    /// Told how long each batch write took (the metrics endpoint's histogram).
    pub(super) on_write: Mutex<Option<WriteObserver>>,
    /// Shown each hit as the writer takes it off the queue (the dashboard's live feed):
    /// on the writer thread, so the query path never pays for it.
    pub(super) on_hit: OnceLock<HitObserver>,
    /// Queued events that make a batch: the sender that brings the queue to it wakes
    /// the writer, which otherwise sleeps until its batch deadline.
    batch_size: u64,
    /// The writer thread, to wake it (set once it runs).
    pub(super) writer: OnceLock<Thread>,
    /// Notified at the first query counted after the writer took the totals: the
    /// status ticker waits on it while the server is idle.
    activity: tokio::sync::Notify,
    /// Hit events the writer is done with, for the query path to fill again: once
    /// their strings have grown to fit, a hit costs no allocation (nor a free on the
    /// writer). At most a batch of them. Boxed: the boxes are what is reused, as
    /// [`Msg::Hit`] carries them.
    #[allow(clippy::vec_box)]
    spare: Mutex<Vec<Box<HitEvent>>>,
}

impl LogState {
    pub(super) fn new(capacity: usize, batch_size: usize, log_all_queries: bool) -> LogState {
        LogState {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            capacity: capacity as u64,
            totals: Mutex::new(HashMap::default()),
            status: Mutex::new(None),
            status_closed: AtomicBool::new(false),
            log_all_queries,
            on_write: Mutex::new(None),
            on_hit: OnceLock::new(),
            batch_size: batch_size as u64,
            writer: OnceLock::new(),
            activity: tokio::sync::Notify::new(),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// Give the hit events of `written` back for [`Logger::blank_hit`] (the rest are
    /// dropped), as many as make a batch at most. What is dropped is dropped outside
    /// the lock, which the query path takes for each hit.
    pub(super) fn recycle(&self, written: impl Iterator<Item = Msg>) {
        let cap = self.batch_size as usize;
        let mut back: Vec<Box<HitEvent>> = written
            .filter_map(|m| match m {
                Msg::Hit(e) => Some(e),
                _ => None,
            })
            .take(cap)
            .collect();
        let have = lock(&self.spare).len();
        back.truncate(cap.saturating_sub(have));
        lock(&self.spare).append(&mut back);
    }

    /// Wake the writer from its wait for the batch deadline (a flush, a full batch).
    pub(super) fn wake_writer(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// Called with the duration of each batch write, on the writer thread.
pub(crate) type WriteObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Called with each hit as the writer takes it, on the writer thread.
pub(crate) type HitObserver = Box<dyn Fn(&HitEvent) + Send + Sync>;

/// A poisoned lock only means another thread panicked mid-increment; the counts are
/// still usable, and the query path must not panic over a log.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The query path's side of the log. Cheap to clone; no method blocks or touches SQLite.
#[derive(Clone)]
pub struct Logger {
    tx: SyncSender<Msg>,
    state: Arc<LogState>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Logger {
    pub(super) fn new(tx: SyncSender<Msg>, state: Arc<LogState>) -> Logger {
        Logger { tx, state }
    }

    /// Queue a hit; when the queue is full it is dropped and counted.
    pub fn hit(&self, event: HitEvent) {
        self.send(Msg::Hit(Box::new(event)));
    }

    /// A hit event to fill in and queue with [`Logger::send_hit`]: one the writer is
    /// done with (each field still holds its last value) when there is one, else new.
    pub(crate) fn blank_hit(&self) -> Box<HitEvent> {
        lock(&self.state.spare)
            .pop()
            .unwrap_or_else(|| Box::new(HitEvent::blank()))
    }

    /// [`Logger::hit`] for an event from [`Logger::blank_hit`].
    pub(crate) fn send_hit(&self, event: Box<HitEvent>) {
        self.send(Msg::Hit(event));
    }

    /// Count one query of `device`, asked at `ts` (unix seconds), in that hour's totals.
    pub(crate) fn query_at(&self, ts: i64, device: &DeviceKey, meta: bool, blocked: bool) {
        let add = Totals {
            queries: 1,
            meta: meta as i64,
            blocked: blocked as i64,
        };
        let hour = ts.div_euclid(3600);
        let mut totals = lock(&self.state.totals);
        // The first count since the writer took the totals: tell it (an idle writer has
        // no timer). Once per batch interval at most.
        let first = totals.is_empty();
        // Look up before inserting so the common case allocates nothing.
        match totals.get_mut(device) {
            Some(hours) => hours.entry(hour).or_default().add(add),
            None => {
                totals.insert(device.clone(), [(hour, add)].into_iter().collect());
            }
        }
        drop(totals);
        if first {
            self.wake();
            self.state.activity.notify_one();
        }
    }

    /// Returns once a query is counted (at once if one was since the last call, or
    /// since the writer last took the totals before it): what an idle ticker waits on.
    pub async fn activity(&self) {
        self.state.activity.notified().await;
    }

    /// Bring an idle writer to look at the totals and status. A full channel needs no
    /// message: the writer is busy and takes them with its next batch.
    fn wake(&self) {
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Queue a query for the full query log; does nothing unless `log_all_queries` is on.
    pub(crate) fn log_query(&self, event: QueryEvent) {
        if self.state.log_all_queries {
            self.send(Msg::Query(Box::new(event)));
        }
    }

    /// Whether [`Logger::log_query`] records anything.
    pub(crate) fn logs_all_queries(&self) -> bool {
        self.state.log_all_queries
    }

    /// The server's counters as JSON, for `metaguard status`; the latest call wins,
    /// until [`Logger::last_status`].
    pub(crate) fn status(&self, json: String) {
        self.set_status(json, false);
    }

    /// The status the server leaves when it stops: no later call replaces it.
    pub(crate) fn last_status(&self, json: String) {
        self.set_status(json, true);
    }

    fn set_status(&self, json: String, last: bool) {
        let mut status = lock(&self.state.status);
        if self.state.status_closed.load(Ordering::Relaxed) {
            return;
        }
        self.state.status_closed.store(last, Ordering::Relaxed);
        let first = status.replace(json).is_none();
        drop(status);
        if first {
            self.wake();
        }
    }

    /// Call `f` with the duration of every batch written from now on.
    pub(crate) fn on_write(&self, f: WriteObserver) {
        *lock(&self.state.on_write) = Some(f);
    }

    /// Show `f` every hit the writer takes from now on (once: a second call is ignored).
    /// A hit reaches it within `[store] batch_interval` of being logged, at once when
    /// the writer was idle; hits dropped on a full queue never do.
    pub(crate) fn on_hit(&self, f: HitObserver) {
        let _ = self.state.on_hit.set(f);
    }

    /// Events lost so far: the queue was full (while the disk failed or the writer fell
    /// behind), or the writer was gone.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Events waiting to be written now (at most `channel_capacity`).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> u64 {
        self.state.queued.load(Ordering::Relaxed)
    }

    /// Events committed to the database so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// A slot in the queue first, then the channel: the count of slots, not the
    /// channel's room, is the bound, since the writer holds events it could not write.
    fn send(&self, msg: Msg) {
        let s = &self.state;
        let before = s.queued.fetch_add(1, Ordering::Relaxed);
        if before >= s.capacity || self.tx.try_send(msg).is_err() {
            s.queued.fetch_sub(1, Ordering::Relaxed);
            s.dropped.fetch_add(1, Ordering::Relaxed);
        } else if before + 1 == s.batch_size {
            // A batch is ready: no need to wait for the deadline. Once per batch, so
            // the query path pays one wake-up per `batch_size` events at most.
            s.wake_writer();
        }
    }
}
