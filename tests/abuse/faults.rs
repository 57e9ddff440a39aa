//! Faults around the resolver, on real loopback sockets: upstreams that answer garbage,
//! wrong IDs, cut or reset TCP, one slow name; a locked and a corrupt hit-log database
//! (a full disk, a read-only one and a 30 s lock: tests/hitlog_outage.rs).

use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rusqlite::Connection;

#[tokio::test]
async fn garbage_and_wrong_ids_from_upstream_give_servfail_within_the_deadline() {
    let up = Upstream::start().await;
    up.set("garbage.example", Behaviour::Garbage);
    up.set("wrongid.example", Behaviour::WrongId);
    let mut c = config(&up);
    c.upstream.deadline = Duration::from_millis(600);
    c.upstream.attempt_timeout = Duration::from_millis(400);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let t = Instant::now();
    let (garbage, wrong, fine) = tokio::join!(
        udp(addr, "garbage.example.", RecordType::A, q(1)),
        udp(addr, "wrongid.example.", RecordType::A, q(2)),
        udp(addr, "fine.example.", RecordType::A, q(3)),
    );
    let took = t.elapsed();
    assert_eq!(garbage.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(wrong.metadata.response_code, ResponseCode::ServFail);
    assert!(garbage.answers.is_empty() && wrong.answers.is_empty());
    assert_eq!(ede(&garbage).map(|e| e.0), Some(22));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(ips(&fine), ["192.0.2.1"]);
    assert!(up.hits("garbage.example") >= 1 && up.hits("wrongid.example") >= 1);
    // Still serving afterwards, over both transports.
    assert_eq!(
        ips(&tcp(addr, "after.example.", RecordType::A, q(4)).await),
        ["192.0.2.1"]
    );
    assert!(srv.stats().upstream_failures >= 2);
    srv.stop().await;
}

#[tokio::test]
async fn truncated_or_reset_tcp_from_upstream_gives_servfail_without_hanging() {
    let up = Upstream::start().await;
    up.set("cut.example", Behaviour::TruncatedTcp);
    up.set("reset.example", Behaviour::ResetTcp);
    let mut c = config(&up);
    c.upstream.deadline = Duration::from_millis(800);
    c.upstream.attempt_timeout = Duration::from_millis(600);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for (i, n) in ["cut.example.", "reset.example."].iter().enumerate() {
        let t = Instant::now();
        let m = udp(addr, n, RecordType::A, q(i as u16)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{n}");
        assert!(m.answers.is_empty(), "{n}");
        assert!(
            t.elapsed() < Duration::from_millis(2000),
            "{n}: {:?}",
            t.elapsed()
        );
        let m = tcp(addr, n, RecordType::A, q(10 + i as u16)).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "{n} over TCP"
        );
    }
    // The upstream was asked over UDP and then over TCP (after TC=1).
    assert!(up.hits("cut.example") >= 2, "{}", up.hits("cut.example"));
    assert_eq!(
        ips(&udp(addr, "fine.example.", RecordType::A, q(99)).await),
        ["192.0.2.1"]
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_slow_name_does_not_hold_up_other_udp_queries() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(1500)));
    let mut c = config(&up);
    c.upstream.deadline = Duration::from_secs(4);
    c.upstream.attempt_timeout = Duration::from_secs(3);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    // Several slow queries in flight first, then many quick ones.
    let slow = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..4u16 {
            set.spawn(udp(addr, "slow.example.", RecordType::A, q(i)));
        }
        let mut n = 0;
        while let Some(m) = set.join_next().await {
            assert_eq!(ips(&m.unwrap()), ["192.0.2.1"]);
            n += 1;
        }
        n
    });
    let t = Instant::now();
    for i in 0..30u16 {
        let m = udp(
            addr,
            &format!("quick{i}.example."),
            RecordType::A,
            q(100 + i),
        )
        .await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    let quick = t.elapsed();
    assert!(
        quick < Duration::from_millis(1200),
        "30 quick answers took {quick:?} while a slow name was pending"
    );
    assert!(!slow.is_finished(), "the slow answers were not yet due");
    assert_eq!(slow.await.unwrap(), 4);
    srv.stop().await;
}

#[tokio::test]
async fn a_locked_database_delays_the_log_but_not_dns() {
    let up = Upstream::start().await;
    let c = config(&up);
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    // The schema exists once the first event is written.
    udp(addr, "connect.facebook.net.", RecordType::A, q(1)).await;
    assert!(srv.flush_log().await);
    assert_eq!(count(&db, "SELECT count(*) FROM hits"), 1);

    // Another connection takes the write lock and holds it until told to let go.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let db = db.clone();
        move || {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
    });
    locked_rx.recv().unwrap();

    // DNS answers at once while the writer waits for the lock.
    for i in 0..20u16 {
        let t = Instant::now();
        let m = udp(addr, "connect.facebook.net.", RecordType::A, q(10 + i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        let m = tcp(addr, "www.facebook.com.", RecordType::A, q(50 + i)).await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    // Give the writer time to run into the lock (its batch interval), then let go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release_tx.send(()).unwrap();
    holder.join().unwrap();

    assert!(srv.flush_log().await);
    assert_eq!(count(&db, "SELECT count(*) FROM hits"), 41);
    assert_eq!(srv.stats().events_dropped, 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_corrupt_database_at_start_is_moved_aside_and_dns_answers() {
    let up = Upstream::start().await;
    let c = config(&up);
    let db = c.store.db.clone();
    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &junk).unwrap();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for i in 0..5u16 {
        let m = udp(addr, "connect.facebook.net.", RecordType::A, q(i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        let m = udp(addr, "ok.example.", RecordType::A, q(100 + i)).await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    assert!(srv.flush_log().await);
    srv.stop().await;
    assert_eq!(count(&db, "SELECT count(*) FROM hits"), 5);
    let aside: Vec<_> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("metaguard.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(db.parent().unwrap().join(&aside[0])).unwrap();
    assert_eq!(kept, junk, "the corrupt file is kept as it was");
}
