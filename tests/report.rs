//! `metaguard report` on fixture databases written through the real store: totals
//! against the generator's own counts, escaping in HTML/CSV, formats, merging, errors,
//! `--out`, `--deliver`, e-mail and webhook delivery to sinks on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use metaguard::policy::Action;
use metaguard::report::fixture::{self, FixtureDevice, FixtureSpec};
use metaguard::report::{
    EmailConfig, Format, Period, ReportConfig, ReportRequest, Security, When, model, render,
};
use support::BIN;

const XSS: &str = "<script>alert(1)</script>";
const FORMULA: &str = "=HYPERLINK(\"x\")";
/// ISO week 13 of 2025: Berlin moves its clocks forward on Sunday 30 March.
const WEEK: &str = "2025-W13";

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

fn spec(seed: u64) -> FixtureSpec {
    let tz = berlin();
    let week = Period::parse_week(WEEK, &tz).unwrap();
    let prev = week.previous().unwrap();
    let dev = |name: &str, mac: Option<&str>, weight: f64| FixtureDevice {
        name: Some(name.to_string()),
        mac: mac.map(str::to_string),
        weight,
    };
    FixtureSpec {
        seed,
        devices: vec![
            dev("living-room-tv", Some("02:00:00:00:00:01"), 1.0),
            dev(XSS, Some("02:00:00:00:00:02"), 0.7),
            dev(FORMULA, None, 0.4),
            dev("kids-tablet", Some("02:00:00:00:00:04"), 1.5),
        ],
        start: prev.start().unwrap(),
        end: week.end().unwrap(),
        hits_per_day: 60.0,
        other_queries_per_hit: 4,
    }
}

fn request(dbs: Vec<PathBuf>, when: When) -> ReportRequest {
    ReportRequest {
        dbs,
        config: ReportConfig::default(),
        when,
        tz: berlin(),
        now: "2025-04-02T10:00:00Z".parse().unwrap(),
        device: None,
        format: Format::Text,
        out: None,
        email: false,
        deliver: false,
        webhook: None,
        tls: Default::default(),
        color: false,
    }
}

fn fixture_db(dir: &Path, seed: u64) -> PathBuf {
    let db = dir.join(format!("f{seed}.db"));
    let w = fixture::write(&db, &spec(seed)).unwrap();
    assert!(w.hits > 1000, "{w:?}");
    db
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    total: i64,
    blocked: i64,
    logged: i64,
    ai: i64,
}

/// The generator's own counts per device name within `[start, end)`.
fn expected(spec: &FixtureSpec, start: i64, end: i64) -> BTreeMap<String, Count> {
    let mut m: BTreeMap<String, Count> = BTreeMap::new();
    for h in fixture::events(spec).filter(|h| h.ts >= start && h.ts < end) {
        let c = m
            .entry(h.device.name.as_deref().unwrap().to_string())
            .or_default();
        c.total += 1;
        match h.action {
            Action::Block => c.blocked += 1,
            Action::Log => c.logged += 1,
            Action::Allow => {}
        }
        if h.category == "meta-ai" {
            c.ai += 1;
        }
    }
    m
}

#[test]
fn report_totals_match_the_generator_across_a_dst_week() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 1);
    let s = spec(1);
    let m = model(&request(vec![db], When::Week(WEEK.into()))).unwrap();
    assert_eq!(m.period.hours, 167, "DST week");
    assert_eq!(m.period.days.len(), 7);
    assert_eq!(m.period.start, "2025-03-24T00:00:00+01:00");
    let week = Period::parse_week(WEEK, &berlin()).unwrap();
    let prev = week.previous().unwrap();
    let want = expected(&s, week.start().unwrap(), week.end().unwrap());
    let want_prev = expected(&s, prev.start().unwrap(), prev.end().unwrap());
    let total: i64 = want.values().map(|c| c.total).sum();
    assert_eq!(m.household.meta_lookups, total);
    assert_eq!(
        m.household.counts.blocked,
        want.values().map(|c| c.blocked).sum::<i64>()
    );
    assert_eq!(
        m.household.counts.logged,
        want.values().map(|c| c.logged).sum::<i64>()
    );
    assert_eq!(m.household.devices_seen, 4);
    // Every hit came with 4 other queries; Berlin's offsets are whole hours, so the
    // hourly totals split exactly at local midnight.
    assert_eq!(m.household.all_lookups, total * 5);
    assert_eq!(m.household.meta_share_pct, Some(20.0));
    let prev_total: i64 = want_prev.values().map(|c| c.total).sum();
    assert_eq!(m.household.previous_meta_lookups, prev_total);
    for d in &m.devices {
        let w = want[&d.name];
        assert_eq!(
            (d.meta_lookups, d.counts.blocked, d.counts.logged),
            (w.total, w.blocked, w.logged),
            "{}",
            d.name
        );
        assert_eq!(d.previous_meta_lookups, want_prev[&d.name].total);
        let grid: i64 = d.hour_grid.iter().flatten().sum();
        assert_eq!(grid, w.total, "grid of {}", d.name);
        let days: i64 = d.days.iter().map(|x| x.counts.total()).sum();
        assert_eq!(days, w.total);
        assert!(d.top_domains.len() <= 5 && !d.top_domains.is_empty());
    }
    let daily: i64 = m.daily.iter().map(|d| d.total).sum();
    assert_eq!(daily, total);
    let ai: i64 = want.values().map(|c| c.ai).sum();
    assert_eq!(m.meta_ai.lookups, ai);
    assert!(m.meta_ai.note.contains("16 December 2025"));
    // Only one device.
    let mut r = request(vec![dir.path().join("f1.db")], When::Week(WEEK.into()));
    r.device = Some("02:00:00:00:00:04".into());
    let one = model(&r).unwrap();
    assert_eq!(one.devices.len(), 1);
    assert_eq!(one.household.meta_lookups, want["kids-tablet"].total);
}

#[test]
fn report_html_is_escaped_self_contained_and_has_the_sections() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 2);
    let m = model(&request(vec![db], When::Week(WEEK.into()))).unwrap();
    let html = render(&m, Format::Html, false).unwrap();
    assert!(!html.contains(XSS), "raw tag in HTML");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let doc = scraper::Html::parse_document(&html);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    assert_eq!(doc.select(&sel("script")).count(), 0, "no <script> element");
    for id in ["#summary", "#devices", "#meta-ai", "#dns-limits"] {
        assert_eq!(doc.select(&sel(id)).count(), 1, "section {id}");
    }
    assert!(doc.select(&sel("meta[name=viewport]")).count() == 1);
    assert!(doc.select(&sel("svg")).count() >= 3, "charts");
    // The device name is text, in the table and beside its bar in the chart.
    let names: Vec<String> = doc
        .select(&sel("td"))
        .map(|e| e.text().collect::<String>())
        .collect();
    assert!(names.iter().any(|n| n == XSS));
    assert!(
        doc.select(&sel(".bar-name"))
            .any(|e| e.text().collect::<String>() == XSS)
    );
    for bad in ["src=", "href=\"http", "url(", "@import"] {
        assert!(!html.contains(bad), "external asset: {bad}");
    }
}

#[test]
fn report_csv_neutralises_formulas_and_has_a_row_per_device_category_day() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 3);
    let m = model(&request(vec![db], When::Week(WEEK.into()))).unwrap();
    let out = render(&m, Format::Csv, false).unwrap();
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let expect: usize = m.devices.iter().map(|d| d.categories.len() * 7).sum();
    assert_eq!(rows.len(), expect);
    for row in &rows {
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell}"
            );
        }
    }
    assert!(rows.iter().any(|r| &r[1] == "'=HYPERLINK(\"x\")"));
    let total: i64 = rows.iter().map(|r| r[8].parse::<i64>().unwrap()).sum();
    assert_eq!(total, m.household.meta_lookups);
}

#[test]
fn report_json_text_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 4);
    let m = model(&request(vec![db], When::Week(WEEK.into()))).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&render(&m, Format::Json, false).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["period"]["label"], WEEK);
    assert_eq!(v["household"]["meta_lookups"], m.household.meta_lookups);
    assert_eq!(v["devices"][0]["hour_grid"].as_array().unwrap().len(), 7);
    let text = render(&m, Format::Text, false).unwrap();
    assert!(text.contains("Household") && text.contains("What DNS cannot see"));
    assert!(!text.contains('\x1b'), "no colour when not asked");
    assert!(render(&m, Format::Text, true).unwrap().contains('\x1b'));
    let md = render(&m, Format::Markdown, false).unwrap();
    assert!(md.contains("## Meta AI"));
    assert!(!md.contains(XSS));
}

#[test]
fn report_empty_week_says_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 5);
    let m = model(&request(vec![db], When::Week("2024-W10".into()))).unwrap();
    assert!(m.empty);
    assert_eq!(m.household.meta_lookups, 0);
    for f in [Format::Text, Format::Markdown, Format::Html] {
        let out = render(&m, f, false).unwrap();
        assert!(out.contains("No data"), "{f:?}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&render(&m, Format::Json, false).unwrap()).unwrap();
    assert_eq!(v["empty"], true);
}

#[test]
fn report_refuses_newer_schema_and_names_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    let e = model(&request(vec![missing.clone()], When::LastWeek))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    let newer = dir.path().join("newer.db");
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = model(&request(vec![newer], When::LastWeek))
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer"), "{e}");
}

#[test]
fn report_merges_databases_joining_devices_by_mac_else_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixture_db(dir.path(), 6);
    let b = fixture_db(dir.path(), 7);
    let one = |db: &PathBuf| model(&request(vec![db.clone()], When::Week(WEEK.into()))).unwrap();
    let (ma, mb) = (one(&a), one(&b));
    let m = model(&request(vec![a, b], When::Week(WEEK.into()))).unwrap();
    assert_eq!(m.devices.len(), 4, "same MACs and names join");
    assert_eq!(
        m.household.meta_lookups,
        ma.household.meta_lookups + mb.household.meta_lookups
    );
    let f = m.devices.iter().find(|d| d.name == FORMULA).unwrap();
    let fa = ma.devices.iter().find(|d| d.name == FORMULA).unwrap();
    let fb = mb.devices.iter().find(|d| d.name == FORMULA).unwrap();
    assert_eq!(f.meta_lookups, fa.meta_lookups + fb.meta_lookups);
    assert_eq!(m.sources.len(), 2);
}

#[test]
fn report_out_is_written_atomically_with_mode_0640() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 8);
    let out = dir.path().join("week.html");
    std::fs::write(&out, "old").unwrap();
    let mut r = request(vec![db], When::Week(WEEK.into()));
    r.format = Format::Html;
    r.out = Some(out.clone());
    assert_eq!(metaguard::report::run(&r).unwrap(), "");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary file left behind");
}

/// What the weekly unit runs (`report --deliver`): the week's HTML file in `[report] dir`
/// (made if missing), a line saying so instead of the report, and e-mail only when a
/// server is set; with neither a dir nor a server it refuses, naming both settings.
#[test]
fn report_deliver_writes_the_week_to_the_dir_and_mails_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 11);
    let reports = dir.path().join("state").join("reports");
    let mut r = request(vec![db.clone()], When::LastWeek);
    r.config.dir = reports.clone();
    r.deliver = true;
    let said = metaguard::report::run(&r).unwrap();
    let file = reports.join(format!("{WEEK}.html"));
    assert_eq!(said, format!("wrote {}\n", file.display()));
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains(WEEK));

    // No dir and no mail server: nowhere to deliver.
    r.config.dir = PathBuf::new();
    let e = metaguard::report::run(&r).unwrap_err().to_string();
    assert!(
        e.contains("[report] dir") && e.contains("[report.email] server"),
        "{e}"
    );

    // No dir, a mail server: e-mailed only.
    let (smtp, smtp_t) = smtp_sink();
    r.config.email = local_smtp(smtp, &["me@example.org"]);
    let said = metaguard::report::run(&r).unwrap();
    assert_eq!(said, "e-mailed to me@example.org\n");
    assert!(
        smtp_t
            .join()
            .unwrap()
            .contains("Subject: metaguard report 2025-W13")
    );

    // The CLI: the config's dir, the last complete week, one line on stdout.
    let config = dir.path().join("metaguard.toml");
    let cli_reports = dir.path().join("cli-reports");
    std::fs::write(
        &config,
        format!("[report]\ndir = {:?}\n", cli_reports.display().to_string()),
    )
    .unwrap();
    let stdout = support::stdout_ok(
        Command::new(BIN)
            .env("TZ", "Europe/Berlin")
            .args(["report", "--deliver", "--week", WEEK, "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&db),
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        cli_reports.join(format!("{WEEK}.html")).is_file(),
        "{stdout}"
    );
}

/// `[report.email]` for a sink on 127.0.0.1:`port`, without TLS or login.
fn local_smtp(port: u16, to: &[&str]) -> EmailConfig {
    EmailConfig {
        server: "127.0.0.1".into(),
        port,
        security: Security::None,
        from: "metaguard <router@example.org>".into(),
        to: to.iter().map(|t| t.to_string()).collect(),
        username: None,
        password_file: None,
    }
}

/// A tiny SMTP server: enough of RFC 5321 for lettre without TLS. Returns the DATA.
fn smtp_sink() -> (u16, std::thread::JoinHandle<String>) {
    support::http::accept_once(|s| smtp_session(s).unwrap())
}

/// One SMTP session on `s` (plain, or TLS from the first byte); returns the DATA.
fn smtp_session(s: impl Read + Write) -> std::io::Result<String> {
    let mut r = BufReader::new(s);
    let mut data = String::new();
    let say = |r: &mut BufReader<_>, b: &[u8]| -> std::io::Result<()> {
        let w: &mut dyn Write = r.get_mut();
        w.write_all(b)?;
        w.flush()
    };
    say(&mut r, b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let cmd = line.to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            say(&mut r, b"250-sink\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("DATA") {
            say(&mut r, b"354 go on\r\n")?;
            loop {
                line.clear();
                r.read_line(&mut line)?;
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            say(&mut r, b"250 queued\r\n")?;
        } else if cmd.starts_with("QUIT") {
            say(&mut r, b"221 bye\r\n")?;
            break;
        } else {
            say(&mut r, b"250 ok\r\n")?;
        }
    }
    Ok(data)
}

/// [`smtp_sink`] over TLS from the first byte (port 465 style), with a certificate for
/// 127.0.0.1 from `ca`. Returns the DATA, or why the session failed.
fn smtps_sink(
    ca: &support::pki::PrivateCa,
) -> (u16, std::thread::JoinHandle<Result<String, String>>) {
    let cfg = ca.server_config(&["127.0.0.1"], &[]);
    support::http::accept_once(move |s| {
        let tls = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg).unwrap(), s);
        smtp_session(tls).map_err(|e| e.to_string())
    })
}

/// A tiny HTTP server taking one POST; returns (request head, body).
fn http_sink() -> (u16, std::thread::JoinHandle<(String, String)>) {
    support::http::accept_once(|s| {
        let mut w = s.try_clone().unwrap();
        let (head, body) = support::http::read_request(&mut BufReader::new(s)).unwrap();
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        (head, String::from_utf8(body).unwrap())
    })
}

/// SMTP over TLS and an HTTPS webhook whose certificates come from a private CA: refused
/// for their issuer without `[tls] ca_file`, delivered with it.
#[test]
fn report_is_mailed_and_posted_over_tls_trusting_ca_file() {
    let ca = support::pki::PrivateCa::new();
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 9);
    let mut r = request(vec![db], When::Week(WEEK.into()));
    r.email = true;
    let tls_email = |r: &mut ReportRequest, port| {
        r.config.email = EmailConfig {
            security: Security::Tls,
            ..local_smtp(port, &["me@example.org"])
        };
    };

    // Without ca_file: both refused.
    let (smtp, smtp_t) = smtps_sink(&ca);
    tls_email(&mut r, smtp);
    let e = metaguard::report::run(&r).unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(smtp_t.join().unwrap().is_err());
    r.email = false;
    let (http, http_t) = support::pki::https_once(&ca, b"ok".to_vec());
    r.webhook = Some(format!("https://127.0.0.1:{http}/hook"));
    let e = metaguard::report::run(&r).unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(http_t.join().unwrap().is_err());

    // With it: mailed and posted.
    r.tls = ca.tls_config();
    r.email = true;
    let (smtp, smtp_t) = smtps_sink(&ca);
    tls_email(&mut r, smtp);
    let (http, http_t) = support::pki::https_once(&ca, b"ok".to_vec());
    r.webhook = Some(format!("https://127.0.0.1:{http}/hook"));
    metaguard::report::run(&r).unwrap();
    let data = smtp_t.join().unwrap().expect("mail over TLS");
    assert!(
        data.contains("Subject: metaguard report 2025-W13"),
        "{data}"
    );
    let (head, body) = http_t.join().unwrap().expect("webhook over TLS");
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["schema_version"], 1);
}

#[test]
fn report_is_emailed_and_posted_to_local_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 9);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let (smtp, smtp_t) = smtp_sink();
    let (http, http_t) = http_sink();
    let mut r = request(vec![db], When::Week(WEEK.into()));
    r.config.email = local_smtp(smtp, &["me@example.org", "you@example.org"]);
    r.email = true;
    r.webhook = Some(format!("http://127.0.0.1:{http}/hook"));
    let out = metaguard::report::run(&r).unwrap();
    assert!(out.contains("Household"));
    let data = smtp_t.join().unwrap();
    assert!(
        data.contains("Subject: metaguard report 2025-W13"),
        "{data}"
    );
    assert!(data.contains("text/html") && data.contains("text/plain"));
    assert!(
        data.contains("To: me@example.org, you@example.org"),
        "{data}"
    );
    let (head, body) = http_t.join().unwrap();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["schema_version"], 1);
    // A username without a password file is refused before connecting.
    r.webhook = None;
    r.config.email.username = Some("me".into());
    let e = metaguard::report::run(&r).unwrap_err().to_string();
    assert!(e.contains("password_file"), "{e}");
    let _ = pw;
}

#[test]
fn report_cli_json_for_a_week_in_berlin() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 10);
    let out = support::stdout_ok(
        Command::new(BIN)
            .env("TZ", "Europe/Berlin")
            .args(["report", "--week", WEEK, "--format", "json", "--db"])
            .arg(&db),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["period"]["hours"], 167);
    assert_eq!(v["period"]["time_zone"], "Europe/Berlin");
    let out = Command::new(BIN)
        .args(["report", "--week", "2025-W99", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-Www"));
    let _ = Timestamp::now();
}

/// A time zone the system tz database does not know (the binary bundles none): the
/// report still runs, in UTC, and says so on stderr.
#[test]
fn report_cli_falls_back_to_utc_for_an_unknown_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 10);
    let out = Command::new(BIN)
        .env("TZ", "Nowhere/Atlantis")
        .env("TZDIR", dir.path())
        .args(["report", "--week", WEEK, "--format", "json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the report uses UTC"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["period"]["time_zone"], "UTC");
    assert_eq!(v["period"]["hours"], 168);
}

/// Writes an example HTML report (for docs/report-example.png) to
/// `$METAGUARD_EXAMPLE_HTML`: `cargo test --test report -- --ignored example`.
#[test]
#[ignore]
fn report_example_html() {
    let Some(out) = std::env::var_os("METAGUARD_EXAMPLE_HTML") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("example.db");
    let mut s = spec(11);
    let names = [
        ("Living room TV", Some("02:00:00:00:00:01"), 1.2),
        ("Anna's phone", Some("02:00:00:00:00:02"), 1.6),
        ("Kids' tablet", Some("02:00:00:00:00:03"), 0.9),
        ("Quest 3", Some("02:00:00:00:00:04"), 0.5),
        ("Work laptop", None, 0.3),
    ];
    s.devices = names
        .iter()
        .map(|(n, m, w)| FixtureDevice {
            name: Some(n.to_string()),
            mac: m.map(str::to_string),
            weight: *w,
        })
        .collect();
    fixture::write(&db, &s).unwrap();
    let mut r = request(vec![db], When::Week(WEEK.into()));
    r.format = Format::Html;
    r.out = Some(PathBuf::from(out));
    metaguard::report::run(&r).unwrap();
}

/// An SMTP server that offers AUTH, records the AUTH exchange and rejects it.
fn smtp_auth_sink() -> (u16, std::thread::JoinHandle<String>) {
    support::http::accept_once(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut auth = String::new();
        w.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let cmd = line.to_ascii_uppercase();
            if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                w.write_all(b"250-sink\r\n250 AUTH PLAIN\r\n").unwrap();
            } else if cmd.starts_with("AUTH") {
                auth.push_str(&line);
                w.write_all(b"535 5.7.8 authentication failed\r\n").unwrap();
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                w.write_all(b"250 ok\r\n").unwrap();
            }
        }
        auth
    })
}

#[test]
fn smtp_password_comes_from_its_file_and_never_shows_in_errors() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path(), 9);
    let pw = dir.path().join("pw");
    // Only the first line is the password.
    std::fs::write(&pw, "s3cret-Pa55\nnot-the-password\n").unwrap();
    let (smtp, smtp_t) = smtp_auth_sink();
    let mut r = request(vec![db], When::Week(WEEK.into()));
    r.config.email = EmailConfig {
        username: Some("router".into()),
        password_file: Some(pw),
        ..local_smtp(smtp, &["me@example.org"])
    };
    r.email = true;
    let e = metaguard::report::run(&r).unwrap_err();
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let auth = smtp_t.join().unwrap();
    let b64 = auth.split_whitespace().last().unwrap_or("");
    let plain = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    assert_eq!(plain, b"\0router\0s3cret-Pa55", "{auth}");
}
