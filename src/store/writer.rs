//! The hit log writer: a `Logger` the query path calls without ever blocking, and one
//! thread that owns the SQLite connection, writes in batches, keeps the file within its
//! retention and size limits, and survives a failing disk without stopping DNS.

// FxHash: the keys are ours (device keys, names we already answered), and SipHash was
// a tenth of the writer's time.
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::batch::{Counters, Db, write_batch};
use super::retention::Maintenance;
use super::retry::{Failure, Retry};
use super::{StoreConfig, StoreError, schema, unix_now};
use crate::policy::Action;

/// A device's identity in the log: `mac:aa:bb:cc:dd:ee:ff` when its MAC is known, else
/// `ip:192.168.1.5`.
pub type DeviceKey = String;

/// Who asked, as far as the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub key: DeviceKey,
    pub mac: Option<String>,
    pub addr: IpAddr,
    /// Name from the config or DHCP; it only fills an empty name, so a rename by the
    /// user (`metaguard devices rename`) sticks.
    pub name: Option<String>,
    pub group: Option<String>,
}

impl DeviceInfo {
    /// A device known only by its address.
    pub fn from_addr(addr: IpAddr) -> Self {
        DeviceInfo {
            key: format!("ip:{addr}"),
            mac: None,
            addr,
            name: None,
            group: None,
        }
    }

    /// A device known by its MAC (lower-cased), currently at `addr`.
    pub fn from_mac(mac: &str, addr: IpAddr) -> Self {
        let mac = mac.to_ascii_lowercase();
        DeviceInfo {
            key: format!("mac:{mac}"),
            mac: Some(mac),
            addr,
            name: None,
            group: None,
        }
    }

    /// The MAC column: taken from the key so two keys can never claim one MAC.
    pub(super) fn mac_column(&self) -> Option<&str> {
        self.key.strip_prefix("mac:")
    }
}

/// One query that a rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitEvent {
    /// Unix seconds.
    pub ts: i64,
    pub device: DeviceInfo,
    pub name: String,
    pub qtype: u16,
    pub category: String,
    pub action: Action,
    pub rule: Option<String>,
    /// The CNAME target that matched, when the match came from the answer's chain.
    pub cname_origin: Option<String>,
}

/// Where an answer came from, for the optional full query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredFrom {
    Upstream = 0,
    Cache = 1,
    Blocked = 2,
    Error = 3,
}

/// One query, for `log_all_queries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent {
    pub ts: i64,
    pub device: DeviceInfo,
    pub name: String,
    pub qtype: u16,
    pub answered_from: AnsweredFrom,
}

/// Events are boxed: the queue's ring holds `channel_capacity` slots and every slot gets
/// touched as it turns, so a slot the size of an event cost 16 MiB of RSS at the default
/// capacity; a pointer costs 1 MiB.
pub(super) enum Msg {
    Hit(Box<HitEvent>),
    Query(Box<QueryEvent>),
    Flush(SyncSender<()>),
    Shutdown,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) queries: i64,
    pub(super) meta: i64,
    pub(super) blocked: i64,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.queries += o.queries;
        self.meta += o.meta;
        self.blocked += o.blocked;
    }
}

type TotalsMap = HashMap<DeviceKey, HashMap<i64, Totals>>;

/// State the loggers and the writer thread share.
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    /// Events accepted and neither written nor dropped yet, in the channel or held by
    /// the writer; never more than `capacity`, so only overflow is ever dropped.
    queued: AtomicU64,
    capacity: u64,
    totals: Mutex<TotalsMap>,
    status: Mutex<Option<String>>,
    log_all_queries: bool,
    /// Told how long each batch write took (the metrics endpoint's histogram).
    on_write: Mutex<Option<WriteObserver>>,
}

/// Called with the duration of each batch write, on the writer thread.
pub type WriteObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// A poisoned lock only means another thread panicked mid-increment; the counts are
/// still usable, and the query path must not panic over a log.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The query path's side of the log. Cheap to clone; no method blocks or touches SQLite.
#[derive(Clone)]
pub struct Logger {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Logger {
    /// Queue a hit; when the queue is full it is dropped and counted.
    pub fn hit(&self, event: HitEvent) {
        self.send(Msg::Hit(Box::new(event)));
    }

    /// Count one query of `device` in this hour's totals.
    pub fn query(&self, device: &str, meta: bool, blocked: bool) {
        self.query_at(unix_now(), device, meta, blocked);
    }

    /// [`Logger::query`] at a given time (unix seconds).
    pub fn query_at(&self, ts: i64, device: &str, meta: bool, blocked: bool) {
        let add = Totals {
            queries: 1,
            meta: meta as i64,
            blocked: blocked as i64,
        };
        let hour = ts.div_euclid(3600);
        let mut totals = lock(&self.shared.totals);
        // Look up by &str first so the common case allocates nothing.
        match totals.get_mut(device) {
            Some(hours) => hours.entry(hour).or_default().add(add),
            None => {
                totals.insert(device.to_string(), [(hour, add)].into_iter().collect());
            }
        }
    }

    /// Queue a query for the full query log; does nothing unless `log_all_queries` is on.
    pub fn log_query(&self, event: QueryEvent) {
        if self.shared.log_all_queries {
            self.send(Msg::Query(Box::new(event)));
        }
    }

    /// Whether [`Logger::log_query`] records anything.
    pub fn logs_all_queries(&self) -> bool {
        self.shared.log_all_queries
    }

    /// The server's counters as JSON, for `metaguard status`; the latest call wins.
    pub fn status(&self, json: String) {
        *lock(&self.shared.status) = Some(json);
    }

    /// Call `f` with the duration of every batch written from now on.
    pub fn on_write(&self, f: WriteObserver) {
        *lock(&self.shared.on_write) = Some(f);
    }

    /// Events lost so far: the queue was full (while the disk failed or the writer fell
    /// behind), or the writer was gone.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events waiting to be written now (at most `channel_capacity`).
    pub fn queued(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Events committed to the database so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// A slot in the queue first, then the channel: the count of slots, not the
    /// channel's room, is the bound, since the writer holds events it could not write.
    fn send(&self, msg: Msg) {
        let s = &self.shared;
        if s.queued.fetch_add(1, Ordering::Relaxed) >= s.capacity || self.tx.try_send(msg).is_err()
        {
            s.queued.fetch_sub(1, Ordering::Relaxed);
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Owns the writer thread; [`WriterHandle::shutdown`] writes what is queued and joins it.
pub struct WriterHandle {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable handle that can ask the writer to flush (see [`WriterHandle::flush`]).
#[derive(Clone)]
pub struct Flusher {
    tx: SyncSender<Msg>,
}

impl Flusher {
    /// Blocks until everything queued before the call is written (false if the thread is gone).
    pub fn flush(&self) -> bool {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
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
    pub fn flusher(&self) -> Flusher {
        Flusher {
            tx: self.tx.clone(),
        }
    }

    /// Write everything queued and stop the thread. Events logged afterwards are dropped.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Blocking is fine here: the writer is draining, so the queue has room soon.
            let _ = self.tx.send(Msg::Shutdown);
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
    let shared = Arc::new(Shared {
        dropped: AtomicU64::new(0),
        written: AtomicU64::new(0),
        queued: AtomicU64::new(0),
        capacity: capacity as u64,
        totals: Mutex::new(HashMap::default()),
        status: Mutex::new(None),
        log_all_queries: cfg.log_all_queries,
        on_write: Mutex::new(None),
    });
    let writer = Writer::new(cfg.clone(), shared.clone());
    let thread = std::thread::Builder::new()
        .name("metaguard-store".into())
        .spawn(move || writer.run(rx));
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            // Without the thread the queue fills and every later event counts as dropped.
            tracing::error!("cannot start the hit log writer: {e}");
            None
        }
    };
    (
        Logger {
            tx: tx.clone(),
            shared,
        },
        WriterHandle { tx, thread },
    )
}

/// How long the writer naps between looks at the channel while it gathers a batch:
/// the shortest while events arrive, growing to the longest (also the most a flush
/// waits) while none do.
const GATHER_NAP_MIN: Duration = Duration::from_millis(1);
const GATHER_NAP_MAX: Duration = Duration::from_millis(32);
/// Hourly totals held while the disk fails; past it they are discarded.
const PENDING_TOTALS_LIMIT: usize = 100_000;
/// Room in the channel beyond the queue's capacity, for flush and shutdown requests.
const CONTROL_SLOTS: usize = 64;

struct Writer {
    cfg: StoreConfig,
    shared: Arc<Shared>,
    db: Option<Db>,
    /// Events taken from the channel and not yet written, oldest first: a batch that
    /// failed stays here and is tried again. Counted in `Shared::queued`.
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
    fn new(cfg: StoreConfig, shared: Arc<Shared>) -> Self {
        let now = Instant::now();
        Writer {
            cfg,
            shared,
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
            m => {
                self.pending.push_back(m);
                Control::More
            }
        }
    }

    /// Gather events until a batch is full, the batch interval is over, or (while the
    /// disk fails) the next retry is due; a flush or shutdown ends it at once.
    ///
    /// The channel is drained between short naps rather than waited on: a waiting
    /// receiver costs every sender a futex wake-up (one syscall per event on the query
    /// path), a napping one costs nobody. The nap is short while events keep coming (the
    /// queue stays near empty, so a kill -9 loses little beyond the batch at hand) and
    /// grows while none do. Only an empty writer waits on the channel.
    fn gather(&mut self, rx: &Receiver<Msg>) -> Control {
        let interval = self.cfg.batch_interval;
        let batch_size = self.cfg.batch_size.get();
        if self.pending.is_empty() {
            match rx.recv_timeout(interval) {
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
        let mut nap = GATHER_NAP_MIN;
        loop {
            let before = self.pending.len();
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
            nap = if self.pending.len() > before {
                GATHER_NAP_MIN
            } else {
                (nap * 2).min(GATHER_NAP_MAX)
            };
            std::thread::sleep(left.min(nap));
        }
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
        let queued = self.shared.queued.load(Ordering::Relaxed);
        self.retry
            .failed(Instant::now(), failure, &self.cfg.db, queued, why);
    }

    /// Take the hourly totals and the status the query path left for the writer.
    fn collect_totals(&mut self) {
        let drained = std::mem::take(&mut *lock(&self.shared.totals));
        for (key, hours) in drained {
            for (hour, t) in hours {
                self.pending_totals
                    .entry((key.clone(), hour))
                    .or_default()
                    .add(t);
            }
        }
        if let Some(s) = lock(&self.shared.status).take() {
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
            let written = self.shared.written.load(Ordering::Relaxed) + n as u64;
            let dropped = self.shared.dropped.load(Ordering::Relaxed);
            let queued = (self.shared.queued.load(Ordering::Relaxed)).saturating_sub(n as u64);
            let counters = Counters {
                written,
                dropped,
                queued,
            };
            let began = Instant::now();
            let result = write_batch(db, batch, &self.pending_totals, status, counters);
            if let Some(f) = lock(&self.shared.on_write).clone() {
                f(began.elapsed());
            }
            match result {
                Ok(()) => {
                    self.pending.drain(..n);
                    self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.shared.queued.fetch_sub(n as u64, Ordering::Relaxed);
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
        self.shared.queued.fetch_sub(lost, Ordering::Relaxed);
        self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
        tracing::warn!(
            db = %self.cfg.db.display(),
            lost,
            "hit log events could not be written before shutdown"
        );
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Open for writing: create the directory, check integrity, move a corrupt file aside.
fn open_db(path: &Path, check: bool) -> Result<Connection, StoreError> {
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

#[cfg(test)]
#[path = "writer_tests.rs"]
pub(crate) mod tests;
