//! The HTML report in Chromium at 360 and 1280 px: no horizontal scrolling of the page,
//! no SVG text outside its chart or too small to read, no name column squeezed to a
//! character a line, and a device named `<script>` shown as text.

use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use metaguard::report::fixture::{self, FixtureDevice, FixtureSpec};
use metaguard::report::{Format, Period, ReportConfig, ReportRequest, When, model, render};
use serde_json::json;

use crate::driver::{self, WIDTHS};

/// A device name that must be shown as text.
pub const XSS: &str = "<script>alert(1)</script>";
const WEEK: &str = "2025-W13";

/// Devices with short, long and unbroken names, over the week before `WEEK` and `WEEK`.
pub fn spec(seed: u64) -> FixtureSpec {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let week = Period::parse_week(WEEK, &tz).unwrap();
    let dev = |name: &str, mac: Option<&str>, weight: f64| FixtureDevice {
        name: Some(name.to_string()),
        mac: mac.map(str::to_string),
        weight,
    };
    FixtureSpec {
        seed,
        devices: vec![
            dev("Living room TV", Some("02:00:00:00:00:01"), 1.2),
            dev("Anna's phone", Some("02:00:00:00:00:02"), 1.6),
            dev(XSS, Some("02:00:00:00:00:03"), 0.7),
            dev(
                "Grandma's Samsung Galaxy Tab S9 FE+ in the living room",
                Some("02:00:00:00:00:04"),
                0.9,
            ),
            dev("android-7f3a9c2e1b4d5a6f8e9c0b1a2d3e4f5a", None, 0.4),
            dev("Quest 3", Some("02:00:00:00:00:06"), 0.5),
        ],
        start: week.previous().unwrap().start().unwrap(),
        end: week.end().unwrap(),
        hits_per_day: 60.0,
        other_queries_per_hit: 4,
    }
}

/// The report of `WEEK` over a fixture database in `dir`, as an HTML file.
fn report_file(dir: &Path) -> PathBuf {
    let db = dir.join("report.db");
    fixture::write(&db, &spec(21)).unwrap();
    let r = ReportRequest {
        dbs: vec![db],
        config: ReportConfig::default(),
        when: When::Week(WEEK.into()),
        tz: TimeZone::get("Europe/Berlin").unwrap(),
        now: "2025-04-02T10:00:00Z".parse().unwrap(),
        device: None,
        format: Format::Html,
        out: None,
        email: false,
        deliver: false,
        webhook: None,
        tls: Default::default(),
        color: false,
    };
    let html = render(&model(&r).unwrap(), Format::Html, false).unwrap();
    let file = dir.join("report.html");
    std::fs::write(&file, html).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_fits_a_phone_and_a_desktop() {
    let Some(b) = driver::browser().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = report_file(dir.path());
    b.client
        .goto(&format!("file://{}", file.display()))
        .await
        .unwrap();
    for width in WIDTHS {
        b.set_width(width).await;
        let problems = b.layout_problems().await;
        assert!(
            problems.is_empty(),
            "at {width} px:\n{}",
            problems.join("\n")
        );
        if let Some(dir) = driver::screenshot_dir() {
            b.screenshot(&dir, "report", width, 16_000).await;
        }
    }
    // The `<script>` device is text: in the table, and no script ran.
    let shown = b
        .eval(&format!(
            "return [...document.querySelectorAll('td')].some(td => td.textContent === {})",
            json!(XSS)
        ))
        .await;
    assert_eq!(shown, json!(true));
    assert_eq!(
        b.eval("return document.scripts.length").await,
        json!(0),
        "no script element"
    );
    b.close().await;
}
