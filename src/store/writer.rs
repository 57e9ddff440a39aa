//! The hit log writer: one thread that owns the SQLite connection, takes what the
//! [`Logger`]s queue, writes it in batches, keeps the file within its retention and size
//! limits, and survives a failing disk without stopping DNS.

// FxHash: the keys are ours (device keys, names we already answered), and SipHash was
// a tenth of the writer's time.
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::ErrorCode;

use super::StoreConfig;
use super::StoreError;
use super::batch::{Counters, Db, write_batch};
use super::event::{DeviceKey, Totals};
use super::logger::{LogState, Logger, Msg, lock};
use super::recover::{is_corruption, open_db};
use super::retention::Maintenance;
use super::retry::{Failure, Retry};

/// Owns the writer thread; [`WriterHandle::shutdown`] writes what is queued and joins it.
pub struct WriterHandle {
    tx: SyncSender<Msg>,
    state: Arc<LogState>,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable handle that can ask the writer to flush (see [`WriterHandle::flush`]).
#[derive(Clone)]
pub(crate) struct Flusher {
    tx: SyncSender<Msg>,
    state: Arc<LogState>,
}

impl Flusher {
    /// Blocks until everything queued before the call is written (false if the thread is gone).
    pub(crate) fn flush(&self) -> bool {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        // The writer may be asleep until its batch deadline.
        self.state.wake_writer();
        done.recv().is_ok()
    }
}

impl WriterHandle {
    /// Write everything queued so far, retry opening a failed database at once and
    /// finish pending retention work; returns when done (false if the thread is gone).
    pub fn flush(&self) -> bool {
        self.flusher().flush()
    }

    /// A handle for flushing from another thread.
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher {
            tx: self.tx.clone(),
            state: self.state.clone(),
        }
    }

    /// Write everything queued and stop the thread. Events logged afterwards are dropped.
    pub(crate) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Blocking is fine here: the writer is draining, so the queue has room soon.
            let _ = self.tx.send(Msg::Shutdown);
            self.state.wake_writer();
            if thread.join().is_err() {
                tracing::error!("hit log writer thread panicked");
            }
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the writer thread for `cfg.db`. Never fails: a database that cannot be opened
/// is retried in the background while events wait in the queue.
pub fn start(cfg: &StoreConfig) -> (Logger, WriterHandle) {
    let capacity = cfg.channel_capacity.get();
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity + CONTROL_SLOTS);
    let state = Arc::new(LogState::new(
        capacity,
        cfg.batch_size.get(),
        cfg.log_all_queries,
    ));
    let writer = Writer::new(cfg.clone(), state.clone());
    let thread = std::thread::Builder::new()
        .name("metaguard-store".into())
        .spawn(move || writer.run(rx));
    let thread = match thread {
        Ok(t) => {
            let _ = state.writer.set(t.thread().clone());
            Some(t)
        }
        Err(e) => {
            // Without the thread the queue fills and every later event counts as dropped.
            tracing::error!("cannot start the hit log writer: {e}");
            None
        }
    };
    let handle = WriterHandle {
        tx: tx.clone(),
        state: state.clone(),
        thread,
    };
    (Logger::new(tx, state), handle)
}

/// Hourly totals held while the disk fails; past it they are discarded.
const PENDING_TOTALS_LIMIT: usize = 100_000;
/// Room in the channel beyond the queue's capacity, for flush and shutdown requests.
const CONTROL_SLOTS: usize = 64;

struct Writer {
    cfg: StoreConfig,
    state: Arc<LogState>,
    db: Option<Db>,
    /// Events taken from the channel and not yet written, oldest first: a batch that
    /// failed stays here and is tried again. Counted in `LogState::queued`.
    pending: VecDeque<Msg>,
    retry: Retry,
    /// Whether the file passed `quick_check` since the writer started; a reopen after a
    /// failed write does not read the whole file again.
    checked: bool,
    pending_totals: HashMap<(DeviceKey, i64), Totals>,
    pending_status: Option<String>,
    maintenance: Maintenance,
}

enum Control {
    More,
    Flush(SyncSender<()>),
    Stop,
}

impl Writer {
    fn new(cfg: StoreConfig, state: Arc<LogState>) -> Self {
        let now = Instant::now();
        Writer {
            cfg,
            state,
            db: None,
            pending: VecDeque::new(),
            retry: Retry::new(now),
            checked: false,
            pending_totals: HashMap::default(),
            pending_status: None,
            maintenance: Maintenance::new(now),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        self.try_open();
        loop {
            let control = self.gather(&rx);
            let urgent = !matches!(control, Control::More);
            self.write_pending(urgent);
            // Not while failing: retention would only wait on the same lock or disk.
            if let Some(db) = self.db.as_ref().filter(|_| !self.retry.failing()) {
                self.maintenance.run(&db.conn, &self.cfg, urgent);
            }
            match control {
                Control::More => {}
                Control::Flush(ack) => {
                    let _ = ack.send(());
                }
                Control::Stop => {
                    // Whatever arrived between the last batch and Shutdown is written too.
                    for m in rx.try_iter().collect::<Vec<_>>() {
                        if let Control::Flush(ack) = self.take(m) {
                            let _ = ack.send(());
                        }
                    }
                    self.write_pending(true);
                    self.give_up();
                    return;
                }
            }
        }
    }

    /// Move a message into `pending`, or say what it asks for.
    fn take(&mut self, m: Msg) -> Control {
        match m {
            Msg::Flush(ack) => Control::Flush(ack),
            Msg::Shutdown => Control::Stop,
            Msg::Wake => Control::More,
            m => {
                if let (Msg::Hit(e), Some(f)) = (&m, self.state.on_hit.get()) {
                    f(e);
                }
                self.pending.push_back(m);
                Control::More
            }
        }
    }

    /// Gather events until a batch is full, the batch interval is over, or (while the
    /// disk fails) the next retry is due; a flush or shutdown ends it at once.
    ///
    /// Only an empty writer waits on the channel, and with no timeout unless it has
    /// work due (retention, a retry of held totals): an idle server does not wake it.
    /// Once it holds something, it sleeps until the deadline rather than wait on the
    /// channel: a waiting receiver costs every sender a futex wake-up (one syscall per
    /// event on the query path), a sleeping one costs nobody. The sender that fills a
    /// batch, a flush and a shutdown wake it early (`LogState::wake_writer`).
    fn gather(&mut self, rx: &Receiver<Msg>) -> Control {
        let interval = self.cfg.batch_interval;
        let batch_size = self.cfg.batch_size.get();
        if self.pending.is_empty() {
            let got = match self.idle_until() {
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(m) => match self.take(m) {
                    Control::More => {}
                    c => return c,
                },
                Err(RecvTimeoutError::Timeout) => return Control::More,
                Err(RecvTimeoutError::Disconnected) => return Control::Stop,
            }
        }
        let deadline = if self.retry.failing() {
            self.retry.next()
        } else {
            Instant::now() + interval
        };
        loop {
            loop {
                if !self.retry.failing() && self.pending.len() >= batch_size {
                    return Control::More;
                }
                match rx.try_recv() {
                    Ok(m) => match self.take(m) {
                        Control::More => {}
                        c => return c,
                    },
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Control::Stop,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Control::More;
            }
            std::thread::park_timeout(left);
        }
    }

    /// When an empty writer has work of its own: the next retry while totals wait for
    /// a failing disk, else the next retention step while the database is open.
    fn idle_until(&self) -> Option<Instant> {
        if self.retry.failing() {
            let held = !self.pending_totals.is_empty() || self.pending_status.is_some();
            return held.then(|| self.retry.next());
        }
        self.db.as_ref()?;
        Some(self.maintenance.due(self.cfg.batch_interval))
    }

    /// Open the database (moving a corrupt one aside); true when it is open.
    fn try_open(&mut self) -> bool {
        if self.db.is_some() {
            return true;
        }
        match open_db(&self.cfg.db, !self.checked) {
            Ok(conn) => {
                self.checked = true;
                self.db = Some(Db::new(conn));
                self.maintenance.due_now();
                true
            }
            Err(e) => {
                let failure = match &e {
                    StoreError::Sqlite { source, .. } => Failure::of(source),
                    _ => Failure::Other,
                };
                self.failed(failure, &e.to_string());
                false
            }
        }
    }

    fn failed(&mut self, failure: Failure, why: &str) {
        let queued = self.state.queued.load(Ordering::Relaxed);
        self.retry
            .failed(Instant::now(), failure, &self.cfg.db, queued, why);
    }

    /// Take the hourly totals and the status the query path left for the writer.
    fn collect_totals(&mut self) {
        let drained = std::mem::take(&mut *lock(&self.state.totals));
        for (key, hours) in drained {
            for (hour, t) in hours {
                self.pending_totals
                    .entry((key.clone(), hour))
                    .or_default()
                    .add(t);
            }
        }
        if let Some(s) = lock(&self.state.status).take() {
            self.pending_status = Some(s);
        }
    }

    /// Write what is pending, one batch per transaction, until it is all written or a
    /// try fails. Not before the next retry is due unless `urgent` (flush, shutdown),
    /// and then one failed try ends it.
    fn write_pending(&mut self, urgent: bool) {
        self.collect_totals();
        let batch_size = self.cfg.batch_size.get();
        loop {
            if self.pending.is_empty()
                && self.pending_totals.is_empty()
                && self.pending_status.is_none()
            {
                return;
            }
            if !urgent && !self.retry.due(Instant::now()) {
                return;
            }
            if !self.try_open() {
                if self.pending_totals.len() > PENDING_TOTALS_LIMIT {
                    self.pending_totals.clear();
                }
                return;
            }
            let Some(db) = self.db.as_mut() else { return };
            let n = self.pending.len().min(batch_size);
            let batch = &self.pending.make_contiguous()[..n];
            let status = self.pending_status.as_deref();
            let written = self.state.written.load(Ordering::Relaxed) + n as u64;
            let dropped = self.state.dropped.load(Ordering::Relaxed);
            let queued = (self.state.queued.load(Ordering::Relaxed)).saturating_sub(n as u64);
            let counters = Counters {
                written,
                dropped,
                queued,
            };
            let began = Instant::now();
            let result = write_batch(db, batch, &self.pending_totals, status, counters);
            if let Some(f) = lock(&self.state.on_write).clone() {
                f(began.elapsed());
            }
            match result {
                Ok(()) => {
                    self.state.recycle(self.pending.drain(..n));
                    self.state.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.state.queued.fetch_sub(n as u64, Ordering::Relaxed);
                    self.pending_totals.clear();
                    self.pending_status = None;
                    self.retry.succeeded(Instant::now(), &self.cfg.db);
                }
                Err(e) => {
                    let failure = Failure::of(&e);
                    db.forget_ids();
                    // A lock or a full disk leaves the file as it was; anything else
                    // (read-only, vanished, replaced) is recovered by opening it again.
                    if failure != Failure::Locked
                        && e.sqlite_error_code() != Some(ErrorCode::DiskFull)
                    {
                        self.db = None;
                    }
                    if is_corruption(&e) {
                        self.checked = false;
                    }
                    self.failed(failure, &e.to_string());
                    return;
                }
            }
        }
    }

    /// At shutdown: what could not be written is lost, and counted.
    fn give_up(&mut self) {
        let lost = self.pending.len() as u64;
        if lost == 0 {
            return;
        }
        self.pending.clear();
        self.state.queued.fetch_sub(lost, Ordering::Relaxed);
        self.state.dropped.fetch_add(lost, Ordering::Relaxed);
        tracing::warn!(
            db = %self.cfg.db.display(),
            lost,
            "hit log events could not be written before shutdown"
        );
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
pub(crate) mod tests;
