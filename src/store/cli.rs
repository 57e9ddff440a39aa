//! The work of `metaguard devices`, `devices rename`, `log` and `status`: each returns
//! the text to print, so `src/cli.rs` only parses flags and tests can call these.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::read::{self, HitFilter, HitRow};
use super::{StoreError, unix_now};

/// Rows `metaguard log` prints before following or when not following.
pub const LOG_TAIL: usize = 50;

/// `metaguard devices`.
pub fn devices(db: &Path, now: i64, json: bool) -> Result<String, StoreError> {
    let conn = read::open(db)?;
    let rows = read::devices(&conn, now).map_err(StoreError::sqlite(db))?;
    if json {
        return Ok(json_lines(&rows));
    }
    let mut table = vec![row([
        "ID",
        "NAME",
        "MAC",
        "ADDRESSES",
        "GROUP",
        "LAST SEEN",
        "META 7D",
        "QUERIES 7D",
    ])];
    for d in &rows {
        table.push(vec![
            d.id.to_string(),
            d.name.clone().unwrap_or_else(|| "-".into()),
            d.mac.clone().unwrap_or_else(|| "-".into()),
            if d.addrs.is_empty() {
                "-".into()
            } else {
                d.addrs.join(",")
            },
            d.group.clone().unwrap_or_else(|| "-".into()),
            format_ts(d.last_seen),
            d.meta_hits_7d.to_string(),
            d.queries_7d.to_string(),
        ]);
    }
    Ok(align(&table))
}

/// `metaguard devices rename ID NAME`.
pub fn rename(db: &Path, id: i64, name: &str) -> Result<String, StoreError> {
    read::rename_device(db, id, name)?;
    Ok(format!("device {id} is now {name}\n"))
}

/// `--since`: a duration back from `now` (`1h`, `2d`), an RFC 3339 time, or a date.
pub fn parse_since(s: &str, now: i64) -> Result<i64, StoreError> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| StoreError::BadTime(s.to_string()))
}

/// `metaguard log` once: the text and the id of the last row shown.
pub fn log(db: &Path, filter: &HitFilter, json: bool) -> Result<(String, Option<i64>), StoreError> {
    let conn = read::open(db)?;
    let rows = read::hits(&conn, filter).map_err(StoreError::sqlite(db))?;
    let last = rows.last().map(|r| r.id);
    let text = if json {
        json_lines(&rows)
    } else {
        rows.iter().map(hit_line).collect()
    };
    Ok((text, last))
}

/// `metaguard log --follow`: the last rows, then new ones every `poll`, until writing
/// to `out` fails (the reader went away).
pub fn follow(
    db: &Path,
    filter: &HitFilter,
    json: bool,
    poll: Duration,
    out: &mut dyn std::io::Write,
) -> Result<(), StoreError> {
    let (text, mut last) = log(db, filter, json)?;
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Ok(());
    }
    let conn = read::open(db)?;
    loop {
        std::thread::sleep(poll);
        let f = HitFilter {
            // Nothing shown yet: start after whatever exists now, not from the beginning.
            after_id: Some(match last {
                Some(id) => id,
                None => conn
                    .query_row("SELECT coalesce(max(id), 0) FROM hits", [], |r| r.get(0))
                    .map_err(StoreError::sqlite(db))?,
            }),
            limit: 1000,
            ..filter.clone()
        };
        let rows = read::hits(&conn, &f).map_err(StoreError::sqlite(db))?;
        last = rows.last().map(|r| r.id).or(f.after_id);
        let text: String = if json {
            json_lines(&rows)
        } else {
            rows.iter().map(hit_line).collect()
        };
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}

/// `metaguard status`.
pub fn status(db: &Path, json: bool) -> Result<String, StoreError> {
    let conn = read::open(db)?;
    let s = read::status(&conn).map_err(StoreError::sqlite(db))?;
    if json {
        return Ok(json_lines(std::slice::from_ref(&s)));
    }
    let now = unix_now();
    let opt_ts = |t: Option<i64>| t.map_or_else(|| "-".to_string(), format_ts);
    let mut table = vec![
        row(["database", &s.db]),
        row(["size", &format!("{:.1} MB", s.db_bytes as f64 / 1e6)]),
        row(["schema version", &s.schema_version.to_string()]),
        row(["devices", &s.devices.to_string()]),
        row(["hits", &s.hits.to_string()]),
        row(["names", &s.names.to_string()]),
        row(["queries logged", &s.queries.to_string()]),
        row(["daily rollups", &s.daily_rollups.to_string()]),
        row(["oldest hit", &opt_ts(s.oldest_hit)]),
        row(["newest hit", &opt_ts(s.newest_hit)]),
    ];
    match s.server_updated {
        Some(t) => table.push(row([
            "server updated",
            &format!("{} ({}s ago)", format_ts(t), now - t),
        ])),
        None => table.push(row(["server", "no status written yet"])),
    }
    for (prefix, value) in [("server", &s.server), ("writer", &s.writer)] {
        if let Some(serde_json::Value::Object(map)) = value {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                table.push(vec![format!("{prefix}.{k}"), v]);
            }
        }
    }
    for (k, v) in &s.other {
        table.push(vec![k.clone(), v.clone()]);
    }
    Ok(align(&table))
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Columns padded to their widest cell (in characters); the last one is not padded.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn json_lines<T: serde::Serialize>(rows: &[T]) -> String {
    let mut out = String::new();
    for r in rows {
        // Serializing these plain structs cannot fail; an empty line would show if it did.
        let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
    }
    out
}

fn hit_line(h: &HitRow) -> String {
    let mut line = format!(
        "{}  {:<20}  {:<5}  {:<5}  {:<14}  {}",
        format_ts(h.ts),
        h.device,
        h.action.map_or("?", |a| a.as_str()),
        qtype_name(h.qtype),
        h.category,
        h.name,
    );
    if let Some(o) = &h.cname_origin {
        let _ = write!(line, "  via CNAME {o}");
    }
    if let Some(r) = &h.rule {
        let _ = write!(line, "  [{r}]");
    }
    line.push('\n');
    line
}

/// UTC, to the second.
fn format_ts(ts: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn qtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        n => format!("TYPE{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Identity;
    use crate::policy::Action;
    use crate::store::writer::tests::{config, hit};
    use crate::store::{StoreConfig, start};

    /// A database with two devices and a few hits, written through the writer.
    fn sample(dir: &Path) -> (StoreConfig, i64) {
        let cfg = config(dir);
        let now = unix_now();
        let (logger, handle) = start(&cfg);
        let mut phone = Identity::from_mac(
            "aa:bb:cc:dd:ee:ff".parse().unwrap(),
            "192.168.1.7".parse().unwrap(),
        );
        phone.name = Some("phone".into());
        phone.group = Some("kids".into());
        let tv = Identity::from_addr("192.168.1.5".parse().unwrap());
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
        let mut d = Identity::from_addr("192.168.1.5".parse().unwrap());
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
}
