//! The commands that read the hit log (`devices`, `log`, `status`) and the reads under
//! them, on a database written through the real writer.

use std::path::Path;

use crate::store::read::{self, HitFilter};
use crate::store::{StoreError, unix_now};

use jiff::tz::TimeZone;

use super::devices::{devices, forget, merge, rename};
use super::log::{LOG_TAIL, log, parse_since};
use super::status::status;
use crate::clients::Device;
use crate::policy::Action;
use crate::store::writer::tests::{config, hit};
use crate::store::{StoreConfig, start};

/// A database with two devices and a few hits, written through the writer.
fn sample(dir: &Path) -> (StoreConfig, i64) {
    let cfg = config(dir);
    let now = unix_now();
    let (logger, handle) = start(&cfg);
    let mut phone = Device::from_mac(
        "aa:bb:cc:dd:ee:ff".parse().unwrap(),
        "192.168.1.7".parse().unwrap(),
    );
    phone.name = Some("phone".into());
    phone.group = Some("kids".into());
    let tv = Device::from_addr("192.168.1.5".parse().unwrap());
    logger.hit(hit(now - 7200, &phone, "graph.facebook.com"));
    let mut via = hit(now - 60, &phone, "cdn.example.net");
    via.cname_origin = Some("star.c10r.facebook.com".into());
    via.category = "cdn".into();
    via.action = Action::Log;
    via.rule = None;
    logger.hit(via);
    logger.hit(hit(now - 30, &tv, "connect.facebook.net"));
    // Counted in the hour of the phone's first hit: a device's hourly totals mark it seen
    // at the hour's start, which within 30 s of a full hour would be after the tv's hit
    // and put the phone first (a test run at 16:00:05 failed so).
    for _ in 0..24 {
        logger.query_at(now - 7200, &phone.key, false, false);
    }
    logger.query_at(now - 7200, &phone.key, true, true);
    logger.status(r#"{"queries": 42, "blocked": 7}"#.into());
    handle.shutdown();
    (cfg, now)
}

#[test]
fn readers_return_what_the_writer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(devs.len(), 2);
    let phone = devs.iter().find(|d| d.mac.is_some()).unwrap();
    assert_eq!(phone.name.as_deref(), Some("phone"));
    assert_eq!(phone.group.as_deref(), Some("kids"));
    assert_eq!(phone.addrs, vec!["192.168.1.7".to_string()]);
    assert_eq!(phone.meta_hits_7d, 2);
    assert_eq!(phone.queries_7d, 25);
    assert_eq!(devs[0].key, "ip:192.168.1.5", "most recently seen first");

    let all = read::hits(
        &conn,
        &HitFilter {
            limit: 100,
            ..HitFilter::default()
        },
    )
    .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].name, "graph.facebook.com", "oldest first");
    assert_eq!(all[0].rule.as_deref(), Some("||facebook.net^"));
    assert_eq!(
        all[1].cname_origin.as_deref(),
        Some("star.c10r.facebook.com")
    );
    assert_eq!(all[1].action, Some(Action::Log));
    assert_eq!(all[2].device, "ip:192.168.1.5");

    let by = |device: &str| {
        read::hits(
            &conn,
            &HitFilter {
                device: Some(device.into()),
                limit: 100,
                ..HitFilter::default()
            },
        )
        .unwrap()
        .len()
    };
    assert_eq!(by("phone"), 2);
    assert_eq!(by("AA:BB:CC:DD:EE:FF"), 2);
    assert_eq!(by(&phone.id.to_string()), 2);
    assert_eq!(by("ip:192.168.1.5"), 1);
    assert_eq!(by("nobody"), 0);

    let f = |category: Option<&str>, since: Option<i64>, after_id: Option<i64>, limit| {
        read::hits(
            &conn,
            &HitFilter {
                device: None,
                category: category.map(String::from),
                since,
                after_id,
                limit,
            },
        )
        .unwrap()
    };
    assert_eq!(f(Some("cdn"), None, None, 100).len(), 1);
    assert_eq!(f(None, Some(now - 3600), None, 100).len(), 2);
    let newest = f(None, None, None, 1);
    assert_eq!(
        newest[0].name, "connect.facebook.net",
        "limit keeps the newest"
    );
    let after = f(None, None, Some(all[0].id), 100);
    assert_eq!(
        after.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![all[1].id, all[2].id]
    );

    let s = read::status(&conn).unwrap();
    assert_eq!((s.devices, s.hits, s.names), (2, 3, 4));
    assert_eq!(s.server.as_ref().unwrap()["queries"], 42);
    assert!(s.server_updated.is_some());
    assert_eq!(s.writer.as_ref().unwrap()["written"], 3);
    assert!(s.db_bytes > 0);
}

#[test]
fn rename_sticks_and_commands_render() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let conn = read::open(&cfg.db).unwrap();
    let tv = read::devices(&conn, now).unwrap()[0].id;
    drop(conn);
    assert_eq!(
        rename(&cfg.db, &tv.to_string(), "living room tv").unwrap(),
        format!("device {tv} (ip:192.168.1.5) is now living room tv\n")
    );
    assert!(matches!(
        rename(&cfg.db, "999", "x"),
        Err(StoreError::NoSuchDevice(s)) if s == "999"
    ));
    // By name (any case) and by MAC (any case and separator) as well as by id.
    assert!(rename(&cfg.db, "Living Room TV", "tv").is_ok());
    assert!(rename(&cfg.db, "AA-BB-CC-DD-EE-FF", "phone").is_ok());
    assert!(rename(&cfg.db, "tv", "living room tv").is_ok());

    // The server's own name for the device does not undo the rename.
    let (logger, handle) = start(&cfg);
    let mut d = Device::from_addr("192.168.1.5".parse().unwrap());
    d.name = Some("dhcp-name".into());
    logger.hit(hit(now, &d, "graph.facebook.com"));
    handle.shutdown();

    let text = devices(&cfg.db, now, &TimeZone::UTC, false).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ID  NAME"), "{text}");
    assert!(lines[1].contains("living room tv"), "{text}");
    // Aligned: the MAC column starts at the same place on every line.
    let col = lines[0].find("MAC").unwrap();
    assert_eq!(&lines[2][col..col + 17], "aa:bb:cc:dd:ee:ff", "{text}");

    let json = devices(&cfg.db, now, &TimeZone::UTC, true).unwrap();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "living room tv");

    let (log_text, last) = log(
        &cfg.db,
        &HitFilter {
            limit: LOG_TAIL,
            ..HitFilter::default()
        },
        &TimeZone::UTC,
        false,
    )
    .unwrap();
    assert_eq!(log_text.lines().count(), 4, "{log_text}");
    assert!(
        log_text.contains("via CNAME star.c10r.facebook.com"),
        "{log_text}"
    );
    assert!(last.is_some());

    let st = status(&cfg.db, now, &TimeZone::UTC, false).unwrap();
    assert!(st.contains("server.queries"), "{st}");
    assert!(st.contains("writer.dropped"), "{st}");
}

#[test]
fn commands_on_a_missing_database_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let want = db.display().to_string();
    for err in [
        devices(&db, 0, &TimeZone::UTC, false).unwrap_err(),
        status(&db, 0, &TimeZone::UTC, false).unwrap_err(),
        rename(&db, "1", "x").unwrap_err(),
        merge(&db, "1", "2").unwrap_err(),
        forget(&db, "1").unwrap_err(),
        log(&db, &HitFilter::default(), &TimeZone::UTC, false).unwrap_err(),
    ] {
        assert!(err.to_string().contains(&want), "{err}");
    }
}

#[test]
fn since_takes_durations_and_dates() {
    let now = 1_700_000_000;
    assert_eq!(parse_since("1h", now).unwrap(), now - 3600);
    assert_eq!(parse_since("2d", now).unwrap(), now - 2 * 86400);
    assert_eq!(
        parse_since("2023-11-14T22:13:20Z", now).unwrap(),
        1_700_000_000
    );
    assert_eq!(parse_since("2023-11-14", now).unwrap(), 1_699_920_000);
    assert!(matches!(
        parse_since("yesterday", now),
        Err(StoreError::BadTime(_))
    ));
}

#[test]
fn log_of_a_device_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = sample(dir.path());
    let f = |device: &str| HitFilter {
        device: Some(device.into()),
        limit: LOG_TAIL,
        ..HitFilter::default()
    };
    let err = log(&cfg.db, &f("nosuch"), &TimeZone::UTC, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::NoSuchDevice(s) if s == "nosuch"),
        "{err}"
    );
    assert!(err.to_string().contains("metaguard devices"), "{err}");
    let (text, _) = log(&cfg.db, &f("aa:bb:cc:dd:ee:ff"), &TimeZone::UTC, false).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    // Local time, with its offset, as the report writes it.
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let (text, _) = log(&cfg.db, &f("phone"), &berlin, false).unwrap();
    assert!(
        text.lines()
            .all(|l| l[19..].starts_with("+01:00") || l[19..].starts_with("+02:00")),
        "{text}"
    );
}

#[test]
fn two_devices_of_one_name_must_be_named_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let conn = read::open(&cfg.db).unwrap();
    let ids: Vec<i64> = read::devices(&conn, now)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    drop(conn);
    for id in &ids {
        rename(&cfg.db, &id.to_string(), "tablet").unwrap();
    }
    let err = rename(&cfg.db, "tablet", "x").unwrap_err();
    assert!(
        matches!(&err, StoreError::AmbiguousDevice { ids: got, .. } if got.len() == 2),
        "{err}"
    );
    assert!(err.to_string().contains("give the id"), "{err}");
}

#[test]
fn merge_folds_hits_totals_and_addresses_and_later_hits_count_for_the_kept_device() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let out = merge(&cfg.db, "phone", "ip:192.168.1.5").unwrap();
    assert!(out.contains("merged into"), "{out}");
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(devs.len(), 1, "{devs:?}");
    let phone = &devs[0];
    assert_eq!(phone.name.as_deref(), Some("phone"));
    assert_eq!(phone.meta_hits_7d, 3, "the tv's hit is the phone's now");
    assert_eq!(phone.addrs.len(), 2, "{:?}", phone.addrs);
    let all = |c: &rusqlite::Connection| {
        read::hits(
            c,
            &HitFilter {
                device: Some(phone.id.to_string()),
                limit: 100,
                ..HitFilter::default()
            },
        )
        .unwrap()
        .len()
    };
    assert_eq!(all(&conn), 3);
    drop(conn);
    assert!(matches!(
        merge(&cfg.db, "phone", "phone"),
        Err(StoreError::MergeSelf(_))
    ));

    // A writer that cached the merged device's id before the merge, and one that
    // starts after it: both count the merged key's next hits for the phone.
    let (logger, handle) = start(&cfg);
    let tv = Device::from_addr("192.168.1.5".parse().unwrap());
    logger.hit(hit(now, &tv, "graph.facebook.com"));
    handle.shutdown();
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(
        devs.len(),
        1,
        "the merged key came back as a device: {devs:?}"
    );
    assert_eq!(all(&conn), 4);
    // Still found under its old key.
    drop(conn);
    assert!(rename(&cfg.db, "ip:192.168.1.5", "phone").is_ok());
}

#[test]
fn a_running_writer_sees_a_merge_made_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let (logger, handle) = start(&cfg);
    let tv = Device::from_addr("192.168.1.5".parse().unwrap());
    logger.hit(hit(now, &tv, "graph.facebook.com"));
    assert!(handle.flush());
    merge(&cfg.db, "phone", "ip:192.168.1.5").unwrap();
    logger.hit(hit(now, &tv, "connect.facebook.net"));
    handle.shutdown();
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(devs[0].meta_hits_7d, 5);
}

#[test]
fn forget_deletes_the_device_and_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, now) = sample(dir.path());
    let out = forget(&cfg.db, "phone").unwrap();
    assert!(out.contains("2 hits deleted"), "{out}");
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].key, "ip:192.168.1.5");
    let left: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM hits) + (SELECT count(*) FROM query_totals)
               + (SELECT count(*) FROM daily_rollups) + (SELECT count(*) FROM device_addrs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The tv's hit, its rollup and its address (it has no hourly totals).
    assert_eq!(left, 3);
    assert!(matches!(
        forget(&cfg.db, "phone"),
        Err(StoreError::NoSuchDevice(_))
    ));
}

#[test]
fn status_says_in_words_whether_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let now = unix_now();
    let (logger, handle) = start(&cfg);
    // This test process stands for the server: its pid is alive.
    let me = std::process::id();
    logger.status(format!(
        r#"{{"pid": {me}, "started": {}, "queries": 1}}"#,
        now - 7200
    ));
    handle.shutdown();
    let st = status(&cfg.db, now, &TimeZone::UTC, false).unwrap();
    let first = st.lines().next().unwrap();
    assert!(first.starts_with("server"), "{st}");
    assert!(first.contains(&format!("running as pid {me}")), "{st}");
    assert!(
        first.contains("(up 2 h)") && first.contains("+00:00"),
        "{st}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&status(&cfg.db, now, &TimeZone::UTC, true).unwrap()).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["server"]["queries"], 1, "the numbers stay numbers");
    // An hour later without a report (a server writes at least every 10 min): stopped.
    // A minute more: the writer stamps the report with its own clock, which may have
    // passed into the next second (then 3,599 s read "59 min").
    let later = status(&cfg.db, now + 3660, &TimeZone::UTC, false).unwrap();
    assert!(
        later
            .lines()
            .next()
            .unwrap()
            .contains("not running; last report 1 h ago"),
        "{later}"
    );
    // A pid that no process has.
    let (logger, handle) = start(&cfg);
    logger.status(r#"{"pid": 2147483646}"#.into());
    handle.shutdown();
    let st = status(&cfg.db, now, &TimeZone::UTC, false).unwrap();
    assert!(st.lines().next().unwrap().contains("not running"), "{st}");
}

#[test]
fn a_new_address_seen_under_a_mac_is_folded_into_that_device_with_its_hits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let now = unix_now();
    let mac: crate::clients::Mac = "aa:bb:cc:dd:ee:01".parse().unwrap();
    let v6 = "2001:db8::77".parse().unwrap();
    let old_v4 = "192.168.1.9".parse().unwrap();
    let (logger, handle) = start(&cfg);
    // Asked from the address before its MAC was known, then under the MAC.
    logger.hit(hit(now - 20, &Device::from_addr(v6), "graph.facebook.com"));
    // Another device had this address two hours ago: it stays its own.
    logger.hit(hit(
        now - 7200,
        &Device::from_addr(old_v4),
        "graph.facebook.com",
    ));
    assert!(handle.flush());
    logger.hit(hit(now, &Device::from_mac(mac, v6), "connect.facebook.net"));
    logger.hit(hit(
        now,
        &Device::from_mac(mac, old_v4),
        "connect.facebook.net",
    ));
    handle.shutdown();
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    let keys: Vec<&str> = devs.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        ["mac:aa:bb:cc:dd:ee:01", "ip:192.168.1.9"],
        "{devs:?}"
    );
    assert_eq!(
        devs[0].meta_hits_7d, 3,
        "the address's earlier hit is the MAC's"
    );
    assert!(
        devs[0].addrs.contains(&"2001:db8::77".to_string()),
        "{devs:?}"
    );
    assert_eq!(devs[1].meta_hits_7d, 1);
}

#[test]
fn a_forwarders_address_is_never_folded_into_the_devices_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let now = unix_now();
    let forwarder = "127.0.0.1".parse().unwrap();
    let (logger, handle) = start(&cfg);
    // The router's own lookup, then a phone behind its dnsmasq (MAC option, no subnet).
    logger.hit(hit(
        now - 5,
        &Device::from_addr(forwarder),
        "graph.facebook.com",
    ));
    let mut phone = Device::from_mac("aa:bb:cc:dd:ee:07".parse().unwrap(), forwarder);
    phone.own_addr = false;
    logger.hit(hit(now, &phone, "graph.facebook.com"));
    handle.shutdown();
    let conn = read::open(&cfg.db).unwrap();
    let devs = read::devices(&conn, now).unwrap();
    assert_eq!(devs.len(), 2, "{devs:?}");
}
