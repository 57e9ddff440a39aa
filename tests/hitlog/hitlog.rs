//! The hit log end to end: real server, real queries, real SQLite file.

use crate::support::{self, *};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use metaguard::clients::{DeviceConfig, DeviceMatch};
use rusqlite::Connection;

/// A query with dnsmasq's MAC option (`code` 65001 raw or 65073 text/base64).
fn query_with_mac(qname: &str, code: u16, data: Vec<u8>) -> Vec<u8> {
    query_with_option(qname, EdnsOption::Unknown(code, data))
}

/// A query with one EDNS option.
fn query_with_option(qname: &str, option: EdnsOption) -> Vec<u8> {
    let mut m = Message::new(99, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut().insert(option);
    m.set_edns(e);
    m.to_vec().unwrap()
}

#[tokio::test]
async fn every_meta_query_answered_is_in_sqlite_exactly_once() {
    let up = Upstream::start().await;
    let c = config(&up);
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut expected = 0;
    for i in 0..40u16 {
        let o = Q {
            id: i,
            ..Q::default()
        };
        udp(addr, "connect.facebook.net.", RecordType::A, o).await; // block
        tcp(addr, "www.facebook.com.", RecordType::AAAA, o).await; // log
        udp(addr, &format!("site{i}.example."), RecordType::A, o).await; // not Meta
        expected += 2;
    }
    let stats = srv.stats();
    srv.stop().await;
    assert_eq!(count(&db, "SELECT count(*) FROM hits"), expected);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hits h JOIN names n ON n.id = h.name_id WHERE n.name = 'connect.facebook.net' AND h.action = 1"
        ),
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hits h JOIN names n ON n.id = h.name_id WHERE n.name = 'www.facebook.com' AND h.action = 0"
        ),
        40
    );
    assert_eq!(
        stats.blocked as i64,
        count(&db, "SELECT count(*) FROM hits WHERE action = 1")
    );
    assert_eq!(stats.events_dropped, 0);
    // Hourly totals count every query of the device, Meta or not.
    assert_eq!(count(&db, "SELECT sum(queries) FROM query_totals"), 120);
    assert_eq!(count(&db, "SELECT sum(meta) FROM query_totals"), 80);
    assert_eq!(count(&db, "SELECT sum(blocked) FROM query_totals"), 40);
}

#[tokio::test]
async fn cname_hits_record_their_origin() {
    let up = Upstream::start().await;
    up.set(
        "shop.example",
        Behaviour::Records(vec![
            cname("shop.example.", "connect.facebook.net.", 60),
            a("connect.facebook.net.", [1, 2, 3, 4], 60),
        ]),
    );
    let c = config(&up);
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let m = udp(srv.addrs()[0], "shop.example.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    srv.stop().await;
    let c = Connection::open(&db).unwrap();
    let (qname, origin): (String, String) = c
        .query_row(
            "SELECT n.name, o.name FROM hits h JOIN names n ON n.id = h.name_id JOIN names o ON o.id = h.cname_origin_id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (qname.as_str(), origin.as_str()),
        ("shop.example", "connect.facebook.net")
    );
}

#[tokio::test]
async fn mac_from_each_edns_form_and_two_addresses_make_one_device() {
    let up = Upstream::start().await;
    let c = config(&up);
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let raw = vec![0xd2, 0x16, 0x0a, 0x0b, 0x0c, 0x0d];
    let text = b"d2:16:0a:0b:0c:0d".to_vec();
    let b64 = b"0hYKCwwN".to_vec();
    udp_from(
        "127.0.0.1:0",
        addr,
        &query_with_mac("pixel.facebook.com.", 65001, raw),
    )
    .await;
    udp_from(
        "127.0.0.2:0",
        addr,
        &query_with_mac("pixel.facebook.com.", 65073, text),
    )
    .await;
    udp_from(
        "127.0.0.3:0",
        addr,
        &query_with_mac("pixel.facebook.com.", 65073, b64),
    )
    .await;
    // A different device without a MAC.
    udp_from(
        "127.0.0.4:0",
        addr,
        &query_bytes("pixel.facebook.com.", RecordType::A, Q::default()),
    )
    .await;
    srv.stop().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM devices WHERE key = 'mac:d2:16:0a:0b:0c:0d'"
        ),
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM devices"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM device_addrs a JOIN devices d ON d.id = a.device_id WHERE d.key = 'mac:d2:16:0a:0b:0c:0d'"
        ),
        3
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hits h JOIN devices d ON d.id = h.device_id WHERE d.key = 'mac:d2:16:0a:0b:0c:0d'"
        ),
        3
    );
}

/// `[clients] trust_edns_from`: the MAC option and a full-length client subnet name the
/// device only when a trusted forwarder sent them; from anyone else they are ignored, so
/// a device cannot pass for the kids' tablet, or escape its group, by claiming a MAC.
#[tokio::test]
async fn edns_identity_is_believed_only_from_trusted_forwarders() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.clients.trust_edns_from = vec!["127.0.0.1/32".parse().unwrap()];
    c.devices = vec![
        DeviceConfig {
            name: Some("kids tablet".into()),
            matches: vec!["d2:16:0a:0b:0c:0d".parse::<DeviceMatch>().unwrap()],
            group: Some("kids".into()),
            categories: Default::default(),
            paused: false,
        },
        DeviceConfig {
            name: Some("kids phone".into()),
            matches: vec!["192.168.1.77".parse::<DeviceMatch>().unwrap()],
            group: Some("kids".into()),
            categories: Default::default(),
            paused: false,
        },
    ];
    c.groups.insert(
        "kids".into(),
        [("meta-ai".to_string(), metaguard::policy::Action::Block)]
            .into_iter()
            .collect(),
    );
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mac = || EdnsOption::Unknown(65001, vec![0xd2, 0x16, 0x0a, 0x0b, 0x0c, 0x0d]);
    let ecs = |a: &str, len| EdnsOption::Subnet(ClientSubnet::new(a.parse().unwrap(), len, 0));
    let ask = |from: &'static str, option: EdnsOption| async move {
        ips(&udp_from(from, addr, &query_with_option("www.meta.ai.", option)).await)
    };
    let blocked = ["0.0.0.0"];
    let answered = ["192.0.2.1"];
    assert_eq!(ask("127.0.0.1:0", mac()).await, blocked);
    assert_eq!(
        ask("127.0.0.5:0", mac()).await,
        answered,
        "MAC from an untrusted source"
    );
    assert_eq!(ask("127.0.0.1:0", ecs("192.168.1.77", 32)).await, blocked);
    assert_eq!(
        ask("127.0.0.1:0", ecs("192.168.1.0", 24)).await,
        answered,
        "a /24 is a network, not a device"
    );
    assert_eq!(ask("127.0.0.5:0", ecs("192.168.1.77", 32)).await, answered);
    srv.stop().await;
    let keys = |sql: &str| -> Vec<String> {
        let c = Connection::open(&db).unwrap();
        let mut st = c.prepare(sql).unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        keys("SELECT d.key FROM hits h JOIN devices d ON d.id = h.device_id ORDER BY h.id"),
        [
            "mac:d2:16:0a:0b:0c:0d",
            "ip:127.0.0.5",
            "ip:192.168.1.77",
            "ip:127.0.0.1",
            "ip:127.0.0.5"
        ]
    );
}

#[tokio::test]
async fn groups_change_the_verdict_per_device() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.devices = vec![DeviceConfig {
        name: Some("kids tablet".into()),
        matches: vec!["127.0.0.9".parse::<DeviceMatch>().unwrap()],
        group: Some("kids".into()),
        categories: Default::default(),
        paused: false,
    }];
    c.groups.insert(
        "kids".into(),
        [("meta-ai".to_string(), metaguard::policy::Action::Block)]
            .into_iter()
            .collect(),
    );
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let q = query_bytes("www.meta.ai.", RecordType::A, Q::default());
    assert_eq!(ips(&udp_from("127.0.0.9:0", addr, &q).await), ["0.0.0.0"]);
    assert_eq!(ips(&udp_from("127.0.0.1:0", addr, &q).await), ["192.0.2.1"]);
    srv.stop().await;
    let c = Connection::open(&db).unwrap();
    let (dev, grp, action): (String, String, i64) = c
        .query_row(
            "SELECT d.name, d.grp, h.action FROM hits h JOIN devices d ON d.id = h.device_id WHERE d.grp IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (dev.as_str(), grp.as_str(), action),
        ("kids tablet", "kids", 1)
    );
}

#[tokio::test]
async fn an_unusable_database_never_stops_dns() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    // The database's directory is a regular file: every open fails, even as root.
    let blocker = up.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    c.store.db = blocker.join("metaguard.db");
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for i in 0..20u16 {
        let m = udp(
            addr,
            "connect.facebook.net.",
            RecordType::A,
            Q {
                id: i,
                ..Q::default()
            },
        )
        .await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        let m = tcp(
            addr,
            "www.example.org.",
            RecordType::A,
            Q {
                id: i,
                ..Q::default()
            },
        )
        .await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    // The events wait for the disk (a flush tries at once and fails again).
    assert!(srv.flush_log().await);
    assert_eq!(srv.stats().events_dropped, 0, "{:?}", srv.stats());
    std::fs::remove_file(&blocker).unwrap();
    assert!(srv.flush_log().await);
    assert_eq!(
        count(&blocker.join("metaguard.db"), "SELECT count(*) FROM hits"),
        20
    );
    assert_eq!(srv.stats().events_dropped, 0);
    srv.stop().await;
}

#[tokio::test]
async fn cli_readers_show_what_serve_wrote() {
    let up = Upstream::start().await;
    let c = config(&up);
    let db = c.store.db.clone();
    let srv = serve(c).await;
    udp(
        srv.addrs()[0],
        "an.facebook.com.",
        RecordType::A,
        Q::default(),
    )
    .await;
    let bin = env!("CARGO_BIN_EXE_metaguard");
    let run = |args: &[&str]| {
        support::stdout_ok(
            std::process::Command::new(bin)
                .args(args)
                .arg("--db")
                .arg(&db),
        )
    };
    assert!(srv.flush_log().await);
    // The server runs in this test's process.
    let status = run(&["status"]);
    let first = |s: &str| s.lines().next().unwrap_or_default().to_string();
    let me = format!("running as pid {}", std::process::id());
    assert!(
        first(&status).starts_with("server") && first(&status).contains(&me),
        "{status}"
    );
    srv.stop().await;
    let status = run(&["status"]);
    assert!(
        first(&status).contains(" not running: stopped "),
        "{status}"
    );
    assert!(run(&["devices"]).contains("127.0.0.1"));
    let out = std::process::Command::new(bin)
        .args(["log", "--device", "nosuch", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no device is \"nosuch\""), "{err}");
    let log = run(&["log"]);
    assert!(
        log.contains("an.facebook.com") && log.contains("audience-network"),
        "{log}"
    );
    let status = run(&["status"]);
    assert!(status.contains("blocked"), "{status}");
}

/// `[store] log_all_queries`: every answered query lands in `queries` with where its
/// answer came from, whichever path (inline UDP or full) answered it.
#[tokio::test]
async fn log_all_queries_records_every_answer_and_its_source() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.store.log_all_queries = true;
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    udp(addr, "connect.facebook.net.", RecordType::A, Q::default()).await; // blocked
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await; // upstream
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await; // cache (inline)
    tcp(addr, "www.example.com.", RecordType::A, Q::default()).await; // cache (full)
    srv.stop().await;
    let c = Connection::open(&db).unwrap();
    let rows: Vec<(String, i64)> = c
        .prepare("SELECT n.name, q.answered_from FROM queries q JOIN names n ON n.id = q.name_id ORDER BY q.id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want = [
        ("connect.facebook.net", 2),
        ("www.example.com", 0),
        ("www.example.com", 1),
        ("www.example.com", 1),
    ];
    let want: Vec<(String, i64)> = want.iter().map(|(n, f)| (n.to_string(), *f)).collect();
    assert_eq!(rows, want);
}
