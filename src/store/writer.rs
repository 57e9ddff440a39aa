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
    let capacity = cfg.channel_capacity.max(1);
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
        let interval = self.cfg.batch_interval.max(Duration::from_millis(1));
        let batch_size = self.cfg.batch_size.max(1);
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
        let batch_size = self.cfg.batch_size.max(1);
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            db: dir.join("sub").join("m.db"),
            batch_interval: Duration::from_millis(10),
            ..StoreConfig::default()
        }
    }

    pub(crate) fn hit(ts: i64, device: &DeviceInfo, name: &str) -> HitEvent {
        HitEvent {
            ts,
            device: device.clone(),
            name: name.to_string(),
            qtype: 1,
            category: "pixel".into(),
            action: Action::Block,
            rule: Some("||facebook.net^".into()),
            cname_origin: None,
        }
    }

    fn count(db: &Path, sql: &str) -> i64 {
        let c = Connection::open(db).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn tv() -> DeviceInfo {
        DeviceInfo::from_addr("192.168.1.5".parse().unwrap())
    }

    #[test]
    fn logger_can_be_shared_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Logger>();
    }

    #[test]
    fn n_hits_then_shutdown_writes_exactly_n_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            batch_size: 7,
            ..config(dir.path())
        };
        let (logger, handle) = start(&cfg);
        let now = unix_now();
        for i in 0..1000 {
            logger.hit(hit(now, &tv(), &format!("n{}.facebook.com", i % 37)));
        }
        handle.shutdown();
        assert_eq!(logger.dropped(), 0);
        assert_eq!(logger.written(), 1000);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 1000);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM names"), 37);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM devices"), 1);
        assert_eq!(
            count(&cfg.db, "SELECT sum(hits) FROM daily_rollups"),
            1000,
            "rollups follow the raw rows"
        );
        // Logging after shutdown neither panics nor blocks.
        logger.hit(hit(now, &tv(), "late.facebook.com"));
        assert_eq!(logger.dropped(), 1);
    }

    /// Big batches go through the multi-row INSERT: every column of every row must land
    /// where it belongs.
    #[test]
    fn many_rows_per_statement_keep_each_rows_values() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            batch_size: 500,
            batch_interval: Duration::from_secs(1),
            ..config(dir.path())
        };
        let (logger, handle) = start(&cfg);
        let now = unix_now();
        for i in 0..1000u16 {
            let mut h = hit(now - i64::from(i), &tv(), &format!("n{i}.facebook.com"));
            h.qtype = i;
            if i % 3 == 0 {
                h.rule = None;
                h.action = Action::Log;
                h.cname_origin = Some(format!("o{i}.example"));
            }
            logger.hit(h);
        }
        handle.shutdown();
        assert_eq!(logger.written(), 1000);
        let rows = "FROM hits h JOIN names n ON n.id = h.name_id";
        let exact = format!(
            "SELECT count(*) {rows} WHERE n.name = 'n' || h.qtype || '.facebook.com'
               AND h.ts = {now} - h.qtype
               AND (h.qtype % 3 = 0) = (h.rule_id IS NULL)
               AND (h.qtype % 3 = 0) = (h.action = 0)
               AND (h.qtype % 3 = 0) = (h.cname_origin_id IS NOT NULL)"
        );
        assert_eq!(count(&cfg.db, &exact), 1000);
        let origins = format!(
            "SELECT count(*) {rows} JOIN names o ON o.id = h.cname_origin_id
               WHERE o.name = 'o' || h.qtype || '.example'"
        );
        assert_eq!(count(&cfg.db, &origins), 334);
    }

    #[test]
    fn mac_device_with_two_addresses_is_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (logger, handle) = start(&cfg);
        let mut a = DeviceInfo::from_mac("AA:BB:CC:DD:EE:FF", "192.168.1.7".parse().unwrap());
        a.name = Some("phone".into());
        let b = DeviceInfo::from_mac("aa:bb:cc:dd:ee:ff", "fd00::7".parse().unwrap());
        logger.hit(hit(100, &a, "graph.facebook.com"));
        assert!(handle.flush());
        logger.hit(hit(200, &b, "graph.facebook.com"));
        handle.shutdown();
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM devices"), 1);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM device_addrs"), 2);
        let c = Connection::open(&cfg.db).unwrap();
        let (mac, name, first, last): (String, String, i64, i64) = c
            .query_row(
                "SELECT mac, name, first_seen, last_seen FROM devices",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (mac.as_str(), name.as_str(), first, last),
            ("aa:bb:cc:dd:ee:ff", "phone", 100, 200),
            "a later event without a name keeps the name"
        );
    }

    #[test]
    fn query_totals_are_per_device_and_hour() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (logger, handle) = start(&cfg);
        // Recent hours: rollup retention would delete old ones at the first flush.
        let hour = unix_now() / 3600 - 2;
        let h = hour * 3600;
        logger.query_at(h + 5, "ip:10.0.0.2", false, false);
        logger.query_at(h + 60, "ip:10.0.0.2", true, true);
        logger.query_at(h + 3599, "ip:10.0.0.2", true, false);
        assert!(handle.flush());
        // Totals from a later batch add to the same hour's row.
        logger.query_at(h + 100, "ip:10.0.0.2", false, false);
        logger.query_at(h + 3600, "ip:10.0.0.2", false, false);
        logger.query_at(h + 10, "mac:aa:bb:cc:dd:ee:ff", true, true);
        handle.shutdown();
        let c = Connection::open(&cfg.db).unwrap();
        let mut s = c
            .prepare(
                "SELECT d.key, t.hour, t.queries, t.meta, t.blocked
                 FROM query_totals t JOIN devices d ON d.id = t.device_id
                 ORDER BY d.key, t.hour",
            )
            .unwrap();
        let rows: Vec<(String, i64, i64, i64, i64)> = s
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("ip:10.0.0.2".into(), hour, 4, 2, 1),
                ("ip:10.0.0.2".into(), hour + 1, 1, 0, 0),
                ("mac:aa:bb:cc:dd:ee:ff".into(), hour, 1, 1, 1),
            ]
        );
        let mac: String = c
            .query_row("SELECT mac FROM devices WHERE key LIKE 'mac:%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(mac, "aa:bb:cc:dd:ee:ff");
    }

    #[test]
    fn full_channel_counts_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            channel_capacity: 1,
            ..config(dir.path())
        };
        let (logger, handle) = start(&cfg);
        let sent = 20_000;
        let started = Instant::now();
        for i in 0..sent {
            logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
        }
        // Sending never waits for SQLite: 20k events in far less than it takes to write them.
        assert!(started.elapsed() < Duration::from_secs(5));
        handle.shutdown();
        assert!(logger.dropped() > 0, "a queue of 1 must overflow");
        assert_eq!(logger.dropped() + logger.written(), sent);
        assert_eq!(
            count(&cfg.db, "SELECT count(*) FROM hits") as u64,
            logger.written()
        );
    }

    /// The tests run as root, which ignores a read-only directory's mode, so the disk
    /// failure is made by putting a regular file where the database's directory should
    /// be: creating the directory fails with ENOTDIR for root too. Removing the file is
    /// the disk "recovering".
    #[test]
    fn unusable_path_delays_events_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let cfg = StoreConfig {
            db: blocker.join("m.db"),
            ..config(dir.path())
        };
        let (logger, handle) = start(&cfg);
        for i in 0..10 {
            logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
        }
        logger.query(&tv().key, true, true);
        assert!(handle.flush());
        assert_eq!(
            logger.dropped(),
            0,
            "a failing disk delays, it does not drop"
        );
        assert_eq!(logger.written(), 0);
        assert_eq!(logger.queued(), 10);

        std::fs::remove_file(&blocker).unwrap();
        for i in 10..15 {
            logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
        }
        // flush retries at once instead of waiting for the backoff.
        assert!(handle.flush());
        assert_eq!(logger.written(), 15);
        assert_eq!(logger.queued(), 0);
        handle.shutdown();
        assert_eq!(logger.dropped(), 0);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 15);
        assert_eq!(
            count(&cfg.db, "SELECT sum(queries) FROM query_totals"),
            1,
            "totals counted while the disk failed are kept and written later"
        );
    }

    /// A queue of 8 while the disk fails: exactly the events past 8 are dropped, the 8
    /// are written once it works again, and the status row says so.
    #[test]
    fn only_the_overflow_of_a_full_queue_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let cfg = StoreConfig {
            db: blocker.join("m.db"),
            channel_capacity: 8,
            batch_size: 3,
            ..config(dir.path())
        };
        let (logger, handle) = start(&cfg);
        for i in 0..30 {
            logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
            if i % 5 == 0 {
                assert!(handle.flush());
            }
        }
        assert_eq!((logger.queued(), logger.dropped()), (8, 22));
        std::fs::remove_file(&blocker).unwrap();
        assert!(handle.flush());
        handle.shutdown();
        assert_eq!((logger.written(), logger.dropped()), (8, 22));
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 8);
        let c = Connection::open(&cfg.db).unwrap();
        let kept: String = c
            .query_row(
                "SELECT group_concat(name, ' ') FROM
                   (SELECT n.name FROM hits h JOIN names n ON n.id = h.name_id ORDER BY h.id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let first8: Vec<String> = (0..8).map(|i| format!("n{i}.facebook.com")).collect();
        assert_eq!(
            kept,
            first8.join(" "),
            "the oldest events are kept, in order"
        );
        let status: String = c
            .query_row(
                "SELECT value FROM server_status WHERE key = 'writer'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(
            (&status["written"], &status["dropped"], &status["queued"]),
            (&8.into(), &22.into(), &0.into())
        );
    }

    #[test]
    fn corrupt_database_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(cfg.db.parent().unwrap()).unwrap();
        std::fs::write(&cfg.db, vec![0xA5u8; 8192]).unwrap();
        let (logger, handle) = start(&cfg);
        logger.hit(hit(unix_now(), &tv(), "graph.facebook.com"));
        handle.shutdown();
        assert_eq!(logger.written(), 1);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 1);
        let aside: Vec<_> = std::fs::read_dir(cfg.db.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("m.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(cfg.db.parent().unwrap().join(&aside[0])).unwrap();
        assert_eq!(
            kept,
            vec![0xA5u8; 8192],
            "the corrupt file is kept as it was"
        );
    }

    #[test]
    fn retention_deletes_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            retention_days: 90,
            rollup_retention_days: 365,
            log_all_queries: true,
            ..config(dir.path())
        };
        let now = unix_now();
        // Written with retention off (0 = keep forever), as retention also runs mid-way.
        let (logger, handle) = start(&StoreConfig {
            retention_days: 0,
            rollup_retention_days: 0,
            ..cfg.clone()
        });
        let old = now - 100 * 86400;
        let ancient = now - 400 * 86400;
        for i in 0..12_000 {
            logger.hit(hit(old - i, &tv(), "old.facebook.com"));
        }
        logger.hit(hit(ancient, &tv(), "ancient.facebook.com"));
        logger.hit(hit(now, &tv(), "new.facebook.com"));
        logger.log_query(QueryEvent {
            ts: old,
            device: tv(),
            name: "example.com".into(),
            qtype: 1,
            answered_from: AnsweredFrom::Upstream,
        });
        logger.query_at(ancient, &tv().key, true, false);
        handle.shutdown();
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 12_002);

        // Retention runs when the writer starts.
        let (_logger, handle) = start(&cfg);
        assert!(handle.flush());
        handle.shutdown();
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM hits"), 1);
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM queries"), 0);
        assert_eq!(
            count(&cfg.db, "SELECT count(*) FROM daily_rollups"),
            2,
            "rollups of old raw rows stay, the ancient one goes"
        );
        assert_eq!(count(&cfg.db, "SELECT count(*) FROM query_totals"), 0);
    }

    #[test]
    fn size_cap_deletes_oldest_rows_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            max_db_size_mb: 0,
            batch_size: 5000,
            ..config(dir.path())
        };
        let now = unix_now();
        let (logger, handle) = start(&cfg);
        for i in 0..60_000u32 {
            let mut h = hit(now, &tv(), &format!("n{}.facebook.com", i % 3000));
            h.rule = Some(format!("||n{}.facebook.com^", i % 3000));
            logger.hit(h);
            if i.is_multiple_of(5000) {
                handle.flush();
            }
        }
        handle.shutdown();
        let before = std::fs::metadata(&cfg.db).unwrap().len();
        assert!(
            before > 2 * 1024 * 1024,
            "test needs a file over the cap: {before}"
        );

        let capped = StoreConfig {
            max_db_size_mb: 1,
            ..cfg.clone()
        };
        let (_logger, handle) = start(&capped);
        assert!(handle.flush());
        handle.shutdown();
        let after = std::fs::metadata(&cfg.db).unwrap().len();
        assert!(after <= 1024 * 1024, "{before} -> {after}");
        let left = count(&cfg.db, "SELECT count(*) FROM hits");
        assert!(left > 0 && left < 60_000, "{left}");
        assert_eq!(
            count(&cfg.db, "SELECT min(id) FROM hits"),
            60_001 - left,
            "the oldest rows go first"
        );
    }

    /// Measures docs/store.md's bytes per hit: 100k hits, ~2k names, 10 devices.
    /// `cargo test --lib store::writer::tests::measure_bytes_per_hit -- --ignored --nocapture`
    /// (set METAGUARD_MEASURE_DB=/path/x.db to keep the database).
    #[test]
    #[ignore]
    fn measure_bytes_per_hit() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::env::var_os("METAGUARD_MEASURE_DB")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("m.db"));
        let cfg = StoreConfig {
            db: db.clone(),
            ..StoreConfig::default()
        };
        let devices: Vec<DeviceInfo> = (0..10)
            .map(|i| {
                let mut d = DeviceInfo::from_mac(
                    &format!("aa:bb:cc:dd:ee:{i:02x}"),
                    format!("192.168.1.{}", 10 + i).parse().unwrap(),
                );
                d.name = Some(format!("device-{i}"));
                d
            })
            .collect();
        let categories = ["pixel", "graph", "cdn", "meta-ai", "whatsapp"];
        let make = |i: usize, now: i64| {
            let name = format!("edge-{:04}.xx-fbcdn{}.facebook.com", i % 2000, i % 2000 % 7);
            HitEvent {
                ts: now - 86400 + (i as i64) % 86400,
                device: devices[i % 10].clone(),
                qtype: if i.is_multiple_of(3) { 28 } else { 1 },
                category: categories[i % 5].into(),
                action: if i.is_multiple_of(4) {
                    Action::Block
                } else {
                    Action::Log
                },
                rule: Some(format!("||xx-fbcdn{}.facebook.com^", i % 7)),
                cname_origin: i
                    .is_multiple_of(10)
                    .then(|| "star.c10r.facebook.com".to_string()),
                name,
            }
        };
        let now = unix_now();
        // Warm up so the schema and the interned names are not counted.
        let (logger, handle) = start(&cfg);
        for i in 0..2000 {
            logger.hit(make(i, now));
        }
        handle.shutdown();
        let before = std::fs::metadata(&db).unwrap().len();
        let n = 100_000;
        let (logger, handle) = start(&cfg);
        for i in 0..n {
            logger.hit(make(i, now));
            if i.is_multiple_of(10_000) {
                handle.flush();
            }
        }
        handle.shutdown();
        assert_eq!(logger.dropped(), 0);
        let after = std::fs::metadata(&db).unwrap().len();
        println!(
            "{n} hits: {before} -> {after} bytes, {:.1} bytes/hit",
            (after - before) as f64 / n as f64
        );
    }
}
