//! The commands that read the hit log (`devices`, `log`, `status`) and the reads under
//! them, on a database written through the real writer.

use std::path::Path;

use crate::store::read::{self, HitFilter};
use crate::store::{StoreError, unix_now};

use super::devices::{devices, rename};
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
    for _ in 0..24 {
        logger.query(&phone.key, false, false);
    }
    logger.query(&phone.key, true, true);
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
        rename(&cfg.db, tv, "living room tv").unwrap(),
        format!("device {tv} is now living room tv\n")
    );
    assert!(matches!(
        rename(&cfg.db, 999, "x"),
        Err(StoreError::NoSuchDevice(999))
    ));

    // The server's own name for the device does not undo the rename.
    let (logger, handle) = start(&cfg);
    let mut d = Device::from_addr("192.168.1.5".parse().unwrap());
    d.name = Some("dhcp-name".into());
    logger.hit(hit(now, &d, "graph.facebook.com"));
    handle.shutdown();

    let text = devices(&cfg.db, now, false).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ID  NAME"), "{text}");
    assert!(lines[1].contains("living room tv"), "{text}");
    // Aligned: the MAC column starts at the same place on every line.
    let col = lines[0].find("MAC").unwrap();
    assert_eq!(&lines[2][col..col + 17], "aa:bb:cc:dd:ee:ff", "{text}");

    let json = devices(&cfg.db, now, true).unwrap();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "living room tv");

    let (log_text, last) = log(
        &cfg.db,
        &HitFilter {
            limit: LOG_TAIL,
            ..HitFilter::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(log_text.lines().count(), 4, "{log_text}");
    assert!(
        log_text.contains("via CNAME star.c10r.facebook.com"),
        "{log_text}"
    );
    assert!(last.is_some());

    let st = status(&cfg.db, false).unwrap();
    assert!(st.contains("server.queries"), "{st}");
    assert!(st.contains("writer.dropped"), "{st}");
}

#[test]
fn commands_on_a_missing_database_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let want = db.display().to_string();
    for err in [
        devices(&db, 0, false).unwrap_err(),
        status(&db, false).unwrap_err(),
        rename(&db, 1, "x").unwrap_err(),
        log(&db, &HitFilter::default(), false).unwrap_err(),
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
