//! The `metaguard` binary as a user runs it: `serve` with signals, `check`, `config check`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::process::Serve;
use crate::support::*;
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn serve_reloads_on_sighup_and_exits_cleanly_on_sigterm() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("metaguard.toml");
    std::fs::write(&cfg, "[filter]\nlists_dir = \"/nonexistent\"\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = Serve::start(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &listen,
        "--upstream",
        &up.spec(),
        "--db",
        dir.path().join("m.db").to_str().unwrap(),
    ]);
    let loaded = serve.wait_for("rules from");
    assert!(loaded.contains("pixel"), "{loaded}");
    serve.wait_for("listening on 127.0.0.1");
    let addr = listen.parse().unwrap();
    assert_eq!(
        ips(&udp(addr, "ads.example.", RecordType::A, Q::default()).await),
        ["192.0.2.1"]
    );

    // A new list entry takes effect on SIGHUP.
    std::fs::write(
        &cfg,
        "[filter]\nlists_dir = \"/nonexistent\"\nblock = [\"ads.example\"]\n",
    )
    .unwrap();
    serve.signal("HUP");
    serve.wait_for("reloaded");
    assert_eq!(
        ips(&udp(addr, "x.ads.example.", RecordType::A, Q::default()).await),
        ["0.0.0.0"]
    );

    // A broken config is reported with its location and the old one keeps running.
    std::fs::write(
        &cfg,
        "[filter]\nlists_dir = \"/nonexistent\"\nbloc = [\"ads.example\"]\n",
    )
    .unwrap();
    serve.signal("HUP");
    let err = serve.wait_for("reload failed");
    assert!(err.contains(&format!("{}:3:1", cfg.display())), "{err}");
    assert_eq!(
        ips(&udp(addr, "ads.example.", RecordType::A, Q::default()).await),
        ["0.0.0.0"]
    );

    // SIGTERM: exit 0 within 2 s.
    let mut serve = serve;
    serve.signal("TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn config_check_reports_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = [\"127.0.0.1:53\"]\n\n[cache]\nsize = \"big\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:8", bad.display())), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[filter]\nblock_response = \"nxdomain\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("block_response = \"nxdomain\""), "{text}");
    assert!(
        text.contains("[upstream]"),
        "prints the whole effective config: {text}"
    );
}

#[test]
fn check_prints_json_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(&cfg, "[filter]\nlists_dir = \"/nonexistent\"\n").unwrap();
    let extra = dir.path().join("extra.hosts");
    std::fs::write(&extra, "# mine\n0.0.0.0 tracker.example\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--blocklist",
            extra.to_str().unwrap(),
        ])
        .args([
            "--format",
            "json",
            "connect.facebook.net",
            "WWW.Facebook.com.",
            "a.tracker.example",
            "example.org",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["action"], "block");
    assert_eq!(lines[0]["category"], "pixel");
    assert_eq!(lines[0]["rule"], "connect.facebook.net");
    assert_eq!(lines[0]["list"], "pixel.txt");
    assert!(lines[0]["line"].as_u64().unwrap() > 1);
    assert_eq!(lines[1]["action"], "log");
    assert_eq!(lines[1]["category"], "first-party");
    assert_eq!(lines[2]["action"], "block");
    assert_eq!(lines[2]["category"], "custom");
    assert_eq!(lines[2]["line"], 2);
    assert_eq!(lines[3]["action"], "allow");
    assert!(lines[3]["category"].is_null());
    for l in &lines {
        for key in ["name", "action", "category", "rule", "list", "line"] {
            assert!(l.get(key).is_some(), "missing {key} in {l}");
        }
    }
}

#[tokio::test]
async fn kill_9_during_heavy_logging_leaves_a_sound_database() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("metaguard.toml");
    std::fs::write(
        &cfg,
        "[filter]\nlists_dir = \"/nonexistent\"\n[server.rate_limit]\nqps = 0\n[store]\nbatch_size = 500\nbatch_interval = \"100ms\"\n",
    )
    .unwrap();
    let db = dir.path().join("hits.db");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = Serve::start(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &listen,
        "--upstream",
        &up.spec(),
        "--db",
        db.to_str().unwrap(),
    ]);
    serve.wait_for("listening on");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    // Waves of blocked queries; count the answers we got back.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 2048];
    // One hit first, and wait until it is on disk: the kill below must land on a writer
    // that has its database open. Under a loaded CI machine the writer thread could still
    // be creating the schema when the flood ended, and the kill left no `hits` table.
    let first = query_bytes("connect.facebook.net.", RecordType::A, Q::default());
    sock.send_to(&first, addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("the first query is answered")
        .unwrap();
    let mut answered = 1i64;
    let on_disk = || -> bool {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        rusqlite::Connection::open_with_flags(&db, flags)
            .and_then(|c| c.query_row("SELECT count(*) FROM hits", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n >= 1)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !on_disk() {
        assert!(
            Instant::now() < deadline,
            "the first hit never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for wave in 1..41u16 {
        for i in 0..100u16 {
            let q = query_bytes(
                "connect.facebook.net.",
                RecordType::A,
                Q {
                    id: wave * 100 + i,
                    ..Q::default()
                },
            );
            sock.send_to(&q, addr).await.unwrap();
        }
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
                Ok(Ok(_)) => answered += 1,
                _ => break,
            }
        }
    }
    assert!(answered > 3000, "answered {answered}");
    serve.child.kill().unwrap(); // SIGKILL: no flush, no clean close
    serve.child.wait().unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = c
        .query_row("SELECT count(*) FROM hits", [], |r| r.get(0))
        .unwrap();
    assert!(rows <= answered, "{rows} rows for {answered} answers");
    // Lost: the batch being gathered and what arrived during the writer's last nap,
    // about one batch on a quiet machine; on a busy one the writer thread lags more (2 of
    // ~30 runs lost 741 and 1000 while builds ran), so the bound here is loose: most
    // answers must be on disk.
    assert!(
        answered - rows <= answered / 2,
        "lost {} of {answered}",
        answered - rows
    );
}
