//! Bench: a weekly report over a year of data for 20 devices (about 10 million hit rows).
//! The database is generated once, through the real store's writer
//! (`report::fixture::write`), into `$TMPDIR/metaguard-bench-report/year.db` and reused
//! on later runs; then the report for the last week is built a few times and timed.
//!
//! `cargo bench --bench report` (set `METAGUARD_BENCH_DB` to use another file).

use std::path::PathBuf;
use std::time::Instant;

use jiff::tz::TimeZone;
use metaguard::report::fixture::{self, FixtureSpec};
use metaguard::report::{Format, Period, ReportConfig, ReportRequest, When, model, render};

fn main() {
    let tz = TimeZone::get("Europe/Berlin").expect("bundled tz database");
    let now: jiff::Timestamp = "2026-03-04T12:00:00Z".parse().expect("time");
    let week = Period::last_complete_week(now, &tz).expect("week");
    let end = week.end().expect("end");
    let start = end - 365 * 86400;
    let db = std::env::var_os("METAGUARD_BENCH_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir()
                .join("metaguard-bench-report")
                .join("year.db")
        });
    if !db.exists() {
        let dir = db.parent().expect("parent");
        std::fs::create_dir_all(dir).expect("bench dir");
        let tmp = dir.join("year.db.partial");
        let _ = std::fs::remove_file(&tmp);
        // 20 devices, weights 0.5..2.0 (mean 1.25) × 1100 hits a day × 365 days ≈ 10M.
        let mut spec = FixtureSpec::household(42, 20, start, end, 1100.0);
        spec.other_queries_per_hit = 3;
        eprintln!(
            "generating {} (about 10M hits, through the store's writer)...",
            db.display()
        );
        let t = Instant::now();
        let w = fixture::write(&tmp, &spec).expect("fixture");
        std::fs::rename(&tmp, &db).expect("rename");
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("year.db.partial{ext}")));
        }
        eprintln!(
            "generated {} hits in {:.1} s",
            w.hits,
            t.elapsed().as_secs_f64()
        );
    }
    let req = ReportRequest {
        dbs: vec![db.clone()],
        config: ReportConfig::default(),
        when: When::LastWeek,
        tz,
        now,
        device: None,
        format: Format::Html,
        out: None,
        email: false,
        deliver: false,
        webhook: None,
        tls: Default::default(),
        color: false,
    };
    let rows: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM hits", [], |r| r.get(0)))
        .unwrap_or(-1);
    let mut times = Vec::new();
    let mut lookups = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let m = model(&req).expect("report");
        let html = render(&m, Format::Html, false).expect("html");
        times.push(t.elapsed().as_secs_f64());
        lookups = m.household.meta_lookups;
        std::hint::black_box(html);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "report {}: {} hit rows in the database, {} Meta lookups in the week; build + HTML: min {:.3} s, median {:.3} s, max {:.3} s",
        week.label,
        rows,
        lookups,
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
