//! Unit tests of the hit log writer: exact row counts, the queue bound, a failing disk,
//! corruption, retention and the size cap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::*;
use crate::clients::Device;
use crate::policy::Action;
use crate::store::unix_now;
use crate::store::{AnsweredFrom, HitEvent, QueryEvent};

fn key(text: &str) -> DeviceKey {
    DeviceKey::parse(text).unwrap()
}

pub(crate) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        db: dir.join("sub").join("m.db"),
        batch_interval: Duration::from_millis(10),
        ..StoreConfig::default()
    }
}

pub(crate) fn hit(ts: i64, device: &Device, name: &str) -> HitEvent {
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

fn tv() -> Device {
    Device::from_addr("192.168.1.5".parse().unwrap())
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
        batch_size: std::num::NonZeroUsize::new(7).unwrap(),
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
        batch_size: std::num::NonZeroUsize::new(500).unwrap(),
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
    let mut a = Device::from_mac(
        "AA:BB:CC:DD:EE:FF".parse().unwrap(),
        "192.168.1.7".parse().unwrap(),
    );
    a.name = Some("phone".into());
    let b = Device::from_mac(
        "aa:bb:cc:dd:ee:ff".parse().unwrap(),
        "fd00::7".parse().unwrap(),
    );
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
    logger.query_at(h + 5, &key("ip:10.0.0.2"), false, false);
    logger.query_at(h + 60, &key("ip:10.0.0.2"), true, true);
    logger.query_at(h + 3599, &key("ip:10.0.0.2"), true, false);
    assert!(handle.flush());
    // Totals from a later batch add to the same hour's row.
    logger.query_at(h + 100, &key("ip:10.0.0.2"), false, false);
    logger.query_at(h + 3600, &key("ip:10.0.0.2"), false, false);
    logger.query_at(h + 10, &key("mac:aa:bb:cc:dd:ee:ff"), true, true);
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
        channel_capacity: std::num::NonZeroUsize::new(1).unwrap(),
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

/// A failing disk: the tests run as root, which ignores a read-only directory's mode,
/// so a regular file is put where the database's directory should be (creating the
/// directory fails with ENOTDIR for root too). Removing the returned file is the disk
/// "recovering".
fn failing_disk(dir: &Path) -> (PathBuf, StoreConfig) {
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let cfg = StoreConfig {
        db: blocker.join("m.db"),
        ..config(dir)
    };
    (blocker, cfg)
}

#[test]
fn unusable_path_delays_events_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (blocker, cfg) = failing_disk(dir.path());
    let (logger, handle) = start(&cfg);
    for i in 0..10 {
        logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
    }
    logger.query_at(unix_now(), &tv().key, true, true);
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
    let (blocker, cfg) = failing_disk(dir.path());
    let cfg = StoreConfig {
        channel_capacity: std::num::NonZeroUsize::new(8).unwrap(),
        batch_size: std::num::NonZeroUsize::new(3).unwrap(),
        ..cfg
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
    // Noon (UTC) of a day 100 days back, and the old hits within the hour before it: one
    // day in every time zone, whatever the time of day the test runs at (it used to
    // spread 12,000 hits over 3.3 hours back from now and failed after midnight).
    let old = (now - 100 * 86400).div_euclid(86400) * 86400 + 43_200;
    let ancient = now - 400 * 86400;
    for i in 0..12_000 {
        logger.hit(hit(old - i % 3600, &tv(), "old.facebook.com"));
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
        batch_size: std::num::NonZeroUsize::new(5000).unwrap(),
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
    let devices: Vec<Device> = (0..10)
        .map(|i| {
            let mut d = Device::from_mac(
                format!("aa:bb:cc:dd:ee:{i:02x}").parse().unwrap(),
                format!("192.168.1.{}", 10 + i).parse().unwrap(),
            );
            d.name = Some(format!("device-{i}").into());
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

/// A channel told of every batch the writer commits: what the tests below await.
fn writes(logger: &Logger) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    logger.on_write(Arc::new(move |_| {
        let _ = tx.try_send(());
    }));
    rx
}

#[test]
fn idle_writer_is_woken_by_totals_and_status() {
    // No timer runs on an empty writer: the first count (or status) must wake it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (logger, handle) = start(&cfg);
    let wrote = writes(&logger);
    logger.query_at(unix_now(), &key("ip:10.0.0.2"), false, false);
    wrote.recv_timeout(Duration::from_secs(10)).unwrap();
    let sql = "SELECT COALESCE(SUM(queries), 0) FROM query_totals";
    assert_eq!(count(&cfg.db, sql), 1);
    logger.status(r#"{"queries": 1}"#.into());
    wrote.recv_timeout(Duration::from_secs(10)).unwrap();
    let sql = "SELECT COUNT(*) FROM server_status WHERE key = 'server'";
    assert_eq!(count(&cfg.db, sql), 1);
    handle.shutdown();
}

/// The status a stopping server leaves stays: a tick after it (the ticker runs on
/// another thread) does not replace it.
#[test]
fn the_last_status_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (logger, handle) = start(&cfg);
    logger.status(r#"{"queries": 1}"#.into());
    logger.last_status(r#"{"queries": 2, "stopped": 1}"#.into());
    logger.status(r#"{"queries": 3}"#.into());
    assert!(handle.flush());
    let conn = rusqlite::Connection::open(&cfg.db).unwrap();
    let value: String = conn
        .query_row(
            "SELECT value FROM server_status WHERE key = 'server'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, r#"{"queries": 2, "stopped": 1}"#);
    handle.shutdown();
}

#[test]
fn a_full_batch_or_a_flush_wakes_the_writer_before_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        batch_interval: Duration::from_secs(3600),
        batch_size: std::num::NonZeroUsize::new(3).unwrap(),
        ..config(dir.path())
    };
    let (logger, handle) = start(&cfg);
    let wrote = writes(&logger);
    let now = unix_now();
    for i in 0..3 {
        logger.hit(hit(now, &tv(), &format!("{i}.facebook.net")));
    }
    // The third event fills the batch: written now, not in an hour.
    wrote.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(count(&cfg.db, "SELECT COUNT(*) FROM hits"), 3);
    // One event waits for the deadline, unless a flush asks.
    logger.hit(hit(now, &tv(), "x.facebook.net"));
    let started = Instant::now();
    assert!(handle.flush());
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(count(&cfg.db, "SELECT COUNT(*) FROM hits"), 4);
    handle.shutdown();
}

#[tokio::test]
async fn a_counted_query_is_activity() {
    let dir = tempfile::tempdir().unwrap();
    let (logger, handle) = start(&config(dir.path()));
    logger.query_at(unix_now(), &key("ip:10.0.0.2"), false, false);
    tokio::time::timeout(Duration::from_secs(10), logger.activity())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

/// The live feed's hook: every queued hit is shown to it once, on the writer's thread
/// (never the caller's), also while the disk fails and nothing can be written.
#[test]
fn hits_reach_the_observer_on_the_writer_thread_while_the_disk_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (_blocker, cfg) = failing_disk(dir.path());
    let (logger, handle) = start(&cfg);
    let (tx, seen) = std::sync::mpsc::sync_channel(64);
    logger.on_hit(Box::new(move |e| {
        let _ = tx.try_send((e.name.clone(), std::thread::current().id()));
    }));
    for i in 0..5 {
        logger.hit(hit(unix_now(), &tv(), &format!("n{i}.facebook.com")));
    }
    assert!(handle.flush());
    let got: Vec<_> = seen.try_iter().collect();
    let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "n0.facebook.com",
            "n1.facebook.com",
            "n2.facebook.com",
            "n3.facebook.com",
            "n4.facebook.com"
        ]
    );
    assert!(got.iter().all(|(_, t)| *t != std::thread::current().id()));
    assert_eq!(logger.written(), 0, "the disk still fails");
    handle.shutdown();
}
