//! Bench: the dashboard's household and device pages over a year of data for 20
//! devices (about 10 million hit rows), each from opening the read-only connection to
//! the finished HTML, as `serve` renders them (target: <= 150 ms, and <= 150 kB).
//! The database is the report bench's (`$TMPDIR/metaguard-bench-report/year.db`,
//! generated through the real store's writer when missing).
//!
//! `cargo bench --bench web` (set `METAGUARD_BENCH_DB` to use another file).

use std::path::PathBuf;
use std::time::Instant;

use jiff::tz::TimeZone;
use metaguard::report::Period;
use metaguard::report::fixture::{self, FixtureSpec};

fn stats(name: &str, mut t: Vec<f64>, bytes: usize) {
    t.sort_by(f64::total_cmp);
    println!(
        "{name}: min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs; {} bytes",
        t[0] * 1e3,
        t[t.len() / 2] * 1e3,
        t[t.len() - 1] * 1e3,
        t.len(),
        bytes
    );
}

fn main() {
    let tz = TimeZone::get("Europe/Berlin").expect("tz database");
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
        // The same spec as benches/report.rs, so both share the file.
        let dir = db.parent().expect("parent");
        std::fs::create_dir_all(dir).expect("bench dir");
        let tmp = dir.join("year.db.partial");
        let _ = std::fs::remove_file(&tmp);
        let mut spec = FixtureSpec::household(42, 20, start, end, 1100.0);
        spec.other_queries_per_hit = 3;
        eprintln!("generating {} (about 10M hits)...", db.display());
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
    let rows: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM hits", [], |r| r.get(0)))
        .unwrap_or(-1);
    println!("{} hit rows, week {}", rows, week.label);
    let runs = 15;
    let (mut t, mut bytes) = (Vec::new(), 0);
    for _ in 0..runs {
        let s = Instant::now();
        let html = metaguard::web::bench::household(&db, &week.label, &tz, now).expect("page");
        t.push(s.elapsed().as_secs_f64());
        bytes = html.len();
    }
    stats("household page", t, bytes);
    let (mut t, mut bytes) = (Vec::new(), 0);
    for _ in 0..runs {
        let s = Instant::now();
        let html = metaguard::web::bench::device(&db, 1, &week.label, &tz, now).expect("page");
        t.push(s.elapsed().as_secs_f64());
        bytes = html.len();
    }
    stats("device page", t, bytes);
}
