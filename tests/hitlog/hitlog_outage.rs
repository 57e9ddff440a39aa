//! The hit log through an outage, with the real server on loopback and real SQLite files:
//! a 30 s `BEGIN EXCLUSIVE` held by a real `sqlite3` process, a queue too small for the
//! lock, a full disk and a read-only file system. Each delays the log; only the queue's
//! overflow is dropped, DNS keeps answering, and "writable again" follows a real write.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::rr::RecordType;
use metaguard::server::Running;
use rusqlite::{Connection, OpenFlags};

fn count(db: &Path, sql: &str) -> i64 {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn hits(db: &Path) -> i64 {
    count(db, "SELECT count(*) FROM hits")
}

/// Everything logged at INFO and above by any test in this binary; each test picks its
/// own lines by its database's path, which the writer's messages name.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
}

/// The log lines about `db`, in order.
fn log_lines(db: &Path) -> Vec<String> {
    let needle = db.display().to_string();
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

fn said(lines: &[String], what: &str) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| lines[i].contains(what))
        .collect()
}

/// A real `sqlite3` holding `BEGIN EXCLUSIVE` on the database until told to commit.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Holder {
    /// `None` (with a message) where sqlite3 is not installed.
    fn lock(db: &Path) -> Option<Holder> {
        let child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: sqlite3 not installed ({e})");
                return None;
            }
        };
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut h = Holder { child, stdin, out };
        assert_eq!(h.ask("BEGIN EXCLUSIVE; SELECT 'locked';"), "locked");
        Some(h)
    }

    /// Run `sql` and return the one line it prints.
    fn ask(&mut self, sql: &str) -> String {
        writeln!(self.stdin, "{sql}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    fn release(&mut self) {
        assert_eq!(self.ask("COMMIT; SELECT 'released';"), "released");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait (at most `within`) until the database holds `n` hits; the time it took.
async fn until_hits(db: &Path, n: i64, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let now = hits(db);
        if now == n {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "{now} hits of {n} after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server, with its first hit written so the schema exists.
async fn serve_with_one_hit(c: metaguard::config::Config) -> (Running, PathBuf) {
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let m = udp(srv.addrs()[0], "connect.facebook.net.", RecordType::A, q(1)).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert!(srv.flush_log().await);
    assert_eq!(hits(&db), 1);
    (srv, db)
}

/// The probe: 30 s of `BEGIN EXCLUSIVE` from another process while clients
/// send 100 blocked queries a second. The old writer gave up after its 5 s busy timeout,
/// dropped the batch, and then every batch for 10 s with "database not open".
#[tokio::test]
async fn a_30_second_lock_by_sqlite3_loses_no_hit_at_100_hits_per_second() {
    capture_logs();
    let up = Upstream::start().await;
    let (srv, db) = serve_with_one_hit(config(&up)).await;
    let addr = srv.addrs()[0];
    let Some(mut holder) = Holder::lock(&db) else {
        return;
    };
    let locked = Instant::now();
    let sent = 3000u16;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut slowest = Duration::ZERO;
    for i in 0..sent {
        tick.tick().await;
        let t = Instant::now();
        let m = udp(
            addr,
            &format!("h{i}.connect.facebook.net."),
            RecordType::A,
            q(i),
        )
        .await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        slowest = slowest.max(t.elapsed());
    }
    // 3000 ticks 10 ms apart span 29.99 s; the lock is let go at the 3001st.
    tick.tick().await;
    let held = locked.elapsed();
    assert!(held >= Duration::from_secs(30), "lock held {held:?}");
    assert_eq!(hits(&db), 1, "nothing could be written under the lock");
    assert_eq!(srv.stats().events_dropped, 0);
    holder.release();
    let caught_up = until_hits(&db, 1 + i64::from(sent), Duration::from_secs(15)).await;
    // The third-party tool counts them too.
    assert_eq!(holder.ask("SELECT count(*) FROM hits;"), "3001");
    let dropped = srv.stats().events_dropped;
    srv.stop().await;
    assert_eq!(dropped, 0);
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let lines = log_lines(&db);
    assert!(
        !said(&lines, "hit log unavailable").is_empty(),
        "{lines:#?}"
    );
    assert_eq!(said(&lines, "writable again").len(), 1, "{lines:#?}");
    eprintln!(
        "30 s lock ({held:?}) at 100 hits/s: {sent} hits sent, {} written, {dropped} dropped; \
         slowest answer {slowest:?}; all written {caught_up:?} after the release",
        hits(&db) - 1
    );
}

/// A queue of 100 and 300 hits under the lock: exactly 200 are dropped, and the first 100
/// are written once the lock goes.
#[tokio::test]
async fn under_a_lock_only_the_overflow_of_a_small_queue_is_dropped() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.store.channel_capacity = std::num::NonZeroUsize::new(100).unwrap();
    let (srv, db) = serve_with_one_hit(c).await;
    let addr = srv.addrs()[0];
    let Some(mut holder) = Holder::lock(&db) else {
        return;
    };
    for i in 0..300u16 {
        let m = udp(
            addr,
            &format!("o{i}.connect.facebook.net."),
            RecordType::A,
            q(i),
        )
        .await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    assert_eq!(hits(&db), 1);
    assert_eq!(srv.stats().events_dropped, 200);
    holder.release();
    assert!(srv.flush_log().await);
    assert_eq!(hits(&db), 101);
    let first_100 = count(
        &db,
        "SELECT count(*) FROM hits h JOIN names n ON n.id = h.name_id
         WHERE n.name GLOB 'o[0-9].connect.facebook.net'
            OR n.name GLOB 'o[0-9][0-9].connect.facebook.net'",
    );
    assert_eq!(first_100, 100, "the oldest events are the ones kept");
    assert_eq!(srv.stats().events_dropped, 200);
    srv.stop().await;
}

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop; `None` (with a
/// message) where mounting is not allowed (no root, a container without CAP_SYS_ADMIN).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount to make a small disk: {e}");
                None
            }
        }
    }

    /// Remount read-only (`false`) or read-write (`true`).
    fn writable(&self, rw: bool) {
        let opt = if rw { "remount,rw" } else { "remount,ro" };
        let out = Command::new("mount")
            .args(["-o", opt])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -o {opt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_delays_the_log_not_dns_and_writable_again_follows_a_write() {
    capture_logs();
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.store.db = disk.dir.path().join("metaguard.db");
    let (srv, db) = serve_with_one_hit(c).await;
    let addr = srv.addrs()[0];
    // Fill the disk to the last byte.
    let filler = disk.dir.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0u8; 1]);
        let _ = f.sync_all();
    }
    // DNS is unaffected while the log cannot grow.
    for i in 0..300u16 {
        let n = format!("n{i}.connect.facebook.net.");
        let m = udp(addr, &n, RecordType::A, q(10 + i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    let m = tcp(addr, "fine.example.", RecordType::A, q(2)).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    // Two tries at once (a flush does not wait for the backoff), both on the full disk.
    assert!(srv.flush_log().await);
    assert!(srv.flush_log().await);
    assert_eq!(hits(&db), 1, "the disk was not full");
    assert_eq!(srv.stats().events_dropped, 0, "a full disk delays the log");
    let lines = log_lines(&db);
    assert!(
        !said(&lines, "hit log unavailable").is_empty(),
        "{lines:#?}"
    );
    assert!(
        said(&lines, "writable again").is_empty(),
        "said while the disk is still full: {lines:#?}"
    );
    // Space again: everything waiting is written, and only now is it said.
    std::fs::remove_file(&filler).unwrap();
    assert!(srv.flush_log().await, "the writer recovers");
    assert_eq!(hits(&db), 301);
    assert_eq!(srv.stats().events_dropped, 0);
    let lines = log_lines(&db);
    let again = said(&lines, "writable again");
    assert_eq!(again.len(), 1, "{lines:#?}");
    assert!(
        said(&lines, "hit log unavailable")
            .iter()
            .all(|&i| i < again[0]),
        "{lines:#?}"
    );
    srv.stop().await;
    drop(disk);
}

/// The file system is read-only when the server starts (a Pi whose SD card was remounted
/// read-only after errors, then fixed). A file open for writing makes a live remount
/// fail with EBUSY, so the server is restarted on the read-only mount.
#[tokio::test]
async fn a_read_only_file_system_delays_the_log_until_it_is_writable() {
    capture_logs();
    let Some(disk) = SmallDisk::mount("8m") else {
        return;
    };
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.store.db = disk.dir.path().join("metaguard.db");
    let (srv, db) = serve_with_one_hit(c.clone()).await;
    srv.stop().await;
    disk.writable(false);

    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for i in 0..50u16 {
        let n = format!("r{i}.connect.facebook.net.");
        let m = udp(addr, &n, RecordType::A, q(10 + i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    assert!(srv.flush_log().await);
    assert_eq!(srv.stats().events_dropped, 0, "read-only delays the log");
    let lines = log_lines(&db);
    assert!(
        !said(&lines, "hit log unavailable").is_empty(),
        "{lines:#?}"
    );
    assert!(said(&lines, "writable again").is_empty(), "{lines:#?}");

    disk.writable(true);
    assert!(srv.flush_log().await);
    assert_eq!(hits(&db), 51);
    assert_eq!(srv.stats().events_dropped, 0);
    assert_eq!(said(&log_lines(&db), "writable again").len(), 1);
    srv.stop().await;
    drop(disk);
}
