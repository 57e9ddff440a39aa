//! `metaguard controls` against the real `serve` process: a change reaches the answers
//! within a second and is in the audit log, `config check` and the weekly report; a
//! schedule follows the (injected) clock across its edges; mistakes are refused with
//! the reason and change nothing, also when the audit log cannot be written.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::support::process::Serve;
use crate::support::*;

/// `metaguard ARGS --config CFG` with the clock file; (success, stdout, stderr).
fn mg(cfg: &Path, clock: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--config", cfg.to_str().unwrap()])
        .env("METAGUARD_CLOCK", clock)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ask for www.meta.ai until the answer is `want`, at most `limit`; how long it took.
async fn until_answer(addr: SocketAddr, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = ips(&udp(addr, "www.meta.ai.", RecordType::A, Q::default()).await);
        if got.iter().any(|a| a == want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {got:?}, not {want}");
    }
}

const BLOCKED: &str = "0.0.0.0";
const ANSWERED: &str = "192.0.2.1";
/// Sunday 2026-12-06, in UTC (the test's TZ).
const SUNDAY_1959: i64 = 1_796_587_140;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_change_reaches_dns_within_a_second_and_a_schedule_follows_the_clock() {
    let up = Upstream::start().await;
    let dir = up.dir.path().to_path_buf();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.join("metaguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{addr}\"]\n[upstream]\nservers = [\"{}\"]\n\
             [filter]\nlists_dir = \"/nonexistent\"\n[store]\ndb = {:?}\nbatch_interval = \"10ms\"\n\
             [remote]\nstate_dir = {:?}\n[web]\nenabled = false\n\
             [clients]\nneighbours = false\nleases = []\n\
             [groups.kids]\nmeta-ai = \"block\"\n[groups.school]\npixel = \"log\"\n",
            up.spec(),
            dir.join("m.db"),
            dir.join("state"),
        ),
    )
    .unwrap();
    let clock = dir.join("clock");
    std::fs::write(&clock, SUNDAY_1959.to_string()).unwrap();
    let serve = Serve::start_env(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("METAGUARD_CLOCK", &clock), ("TZ", Path::new("UTC"))],
    );
    serve.wait_for("listening on");
    until_answer(addr, ANSWERED, Duration::from_secs(5)).await;

    // Into kids: blocked within a second of the command's return, and no query goes
    // unanswered meanwhile (a stream of them runs across the change and the reload).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut asked, mut unanswered) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let q = query_bytes("www.meta.ai.", RecordType::A, Q::default());
                asked += 1;
                if udp_raw(addr, &q).await.is_none() {
                    unanswered += 1;
                }
            }
            (asked, unanswered)
        })
    };
    let (ok, out, err) = mg(&cfg, &clock, &["controls", "group", "127.0.0.1", "kids"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "group of 127.0.0.1: none → kids");
    let took = until_answer(addr, BLOCKED, Duration::from_secs(10)).await;
    assert!(
        took <= Duration::from_secs(1),
        "blocked {took:?} after the change"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, unanswered) = stream.await.unwrap();
    assert!(asked > 0);
    assert_eq!(unanswered, 0, "of {asked} queries across the change");
    eprintln!(
        "blocked {took:?} after the command returned; {asked} queries across the change, all answered"
    );

    // Mistakes: refused with the reason, nothing changed.
    let file = dir.join("state/controls.json");
    let before = std::fs::read_to_string(&file).unwrap();
    for (args, says) in [
        (
            &["controls", "group", "127.0.0.1", "kdis"][..],
            "no group \"kdis\"",
        ),
        (
            &["controls", "action", "meta-aj", "block"],
            "unknown category \"meta-aj\"",
        ),
        (&["controls", "action", "meta-ai", "blok"], "not an action"),
        (&["controls", "block", "not a name"], "not a domain name"),
        (&["controls", "pause", "5 fortnights"], "not a pause length"),
        (
            &[
                "controls", "schedule", "school", "meta-ai", "block", "sun-thr", "20:00", "07:00",
            ],
            "not a day",
        ),
        (
            &[
                "controls", "schedule", "school", "meta-ai", "block", "sun-thu", "20:00", "25:00",
            ],
            "not a time of day",
        ),
        (&["controls", "unschedule", "3"], "no schedule 3"),
        (&["controls", "grup", "127.0.0.1", "kids"], "not a control"),
        (
            &["controls", "group", "127.0.0.1"],
            "usage: metaguard controls group",
        ),
    ] {
        let (ok, _, err) = mg(&cfg, &clock, args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    // A school-night schedule on another group: off at 19:59, on from 20:00 to 07:00.
    for args in [
        &["controls", "group", "127.0.0.1", "school"][..],
        &[
            "controls", "schedule", "school", "meta-ai", "block", "sun-thu", "20:00", "07:00",
        ],
    ] {
        let (ok, _, err) = mg(&cfg, &clock, args);
        assert!(ok, "{args:?}: {err}");
    }
    until_answer(addr, ANSWERED, Duration::from_secs(10)).await;
    std::fs::write(&clock, (SUNDAY_1959 + 90).to_string()).unwrap();
    until_answer(addr, BLOCKED, Duration::from_secs(10)).await;
    std::fs::write(&clock, (SUNDAY_1959 + 11 * 3600 + 90).to_string()).unwrap();
    until_answer(addr, ANSWERED, Duration::from_secs(10)).await;

    // Where it shows: the controls, config check (with the origin), the audit log.
    let (_, shown, _) = mg(&cfg, &clock, &["controls"]);
    assert!(shown.contains("group school"), "{shown}");
    assert!(
        shown.contains("schedule 1: group school: meta-ai block, mon,tue,wed,thu,sun 20:00–07:00"),
        "{shown}"
    );
    let out = Command::new(BIN)
        .args(["config", "check", cfg.to_str().unwrap()])
        .env("METAGUARD_CLOCK", &clock)
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&out.stdout);
    assert!(checked.contains("household controls from"), "{checked}");
    assert!(checked.contains("group = \"school\""), "{checked}");
    let (ok, audit, err) = mg(&cfg, &clock, &["controls", "audit"]);
    assert!(ok, "{err}");
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(audit.contains("command line ("), "{audit}");
    drop(serve);
}

#[test]
fn a_change_the_audit_log_cannot_record_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    // The database's directory is a file: SQLite cannot open it.
    std::fs::write(dir.path().join("nodir"), "").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[filter]\nlists_dir = \"/nonexistent\"\n[store]\ndb = {:?}\n[remote]\nstate_dir = {:?}\n",
            dir.path().join("nodir/m.db"),
            dir.path().join("state"),
        ),
    )
    .unwrap();
    let clock = dir.path().join("clock");
    let (ok, _, err) = mg(&cfg, &clock, &["controls", "block", "example.com"]);
    assert!(!ok && err.contains("audit log"), "{err}");
    assert!(
        !dir.path().join("state/controls.json").exists(),
        "nothing written"
    );
}
