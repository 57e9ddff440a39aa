//! The household controls on the dashboard of the real `metaguard serve` process: a
//! device put in `kids` on its page has its next `dig` blocked within a second; a pause
//! of 5 min lets it through, and once the (injected) clock passes the pause it is
//! blocked again; from the live page a blocked name is explained and allowed; after a
//! restart the controls are still there, and the audit log names the dashboard session
//! that made each change.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::dashboard::{check_page, login, text};
use crate::driver;
use crate::support::process::Serve;
use crate::support::{self, Upstream, free_port, tools};

const PASSWORD: &str = "correct horse battery";

/// `dig +short` for www.meta.ai from 127.0.0.1.
fn dig(port: u16) -> String {
    let out = Command::new("dig")
        .args(["+short", "+time=2", "+tries=1", "-p", &port.to_string()])
        .args(["@127.0.0.1", "www.meta.ai", "A"])
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Ask until `want(answer)`, for at most `limit`; how long it took.
fn dig_until(port: u16, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let a = dig(port);
        if want(&a) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: still {a:?} after {limit:?}"
        );
    }
}

const BLOCKED: &str = "0.0.0.0";

/// Click the first element `css` selects.
async fn click(b: &driver::Browser, css: &str) {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Wait (a page loads after a form's POST) until `script` returns `want`.
async fn wait_js(b: &driver::Browser, script: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = b.client.execute(script, vec![]).await;
        if matches!(&got, Ok(v) if v == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{script}: {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(cfg: &Path, clock: &Path) -> Serve {
    let serve = Serve::start_env(
        &["serve", "--config", cfg.to_str().unwrap()],
        &[("METAGUARD_CLOCK", clock), ("TZ", Path::new("UTC"))],
    );
    serve.wait_for("dashboard on");
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_set_on_the_dashboard_blocks_at_once_a_pause_lets_through_until_it_ends() {
    if !tools::installed(&["dig"]) {
        return;
    }
    let Some(b) = driver::browser().await else {
        return;
    };
    let up = Upstream::start().await;
    let state = up.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (dns, web) = (free_port(), free_port());
    let mut c = support::config(&up);
    c.server.listen = vec![format!("127.0.0.1:{dns}").parse().unwrap()];
    c.web.enabled = true;
    c.web.listen = format!("127.0.0.1:{web}").parse().unwrap();
    c.remote.state_dir = state.clone();
    c.groups.insert(
        "kids".into(),
        [("meta-ai".to_string(), metaguard::policy::Action::Block)]
            .into_iter()
            .collect(),
    );
    let cfg = up.dir.path().join("metaguard.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    metaguard::web::set_password(&metaguard::web::password_path(&state), PASSWORD).unwrap();
    // The controls' clock: now, until the test moves it.
    let clock = state.join("clock");
    let t0 = jiff::Timestamp::now().as_second();
    std::fs::write(&clock, t0.to_string()).unwrap();
    let serve = start(&cfg, &clock);
    let base = format!("http://127.0.0.1:{web}");

    // Not in a group: Meta AI is logged and answered.
    let first = dig(dns);
    assert!(!first.is_empty() && first != BLOCKED, "answered: {first:?}");
    let db = c.store.db.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let devices = || {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM devices", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
    };
    while devices() == 0 {
        assert!(Instant::now() < deadline, "the device is in the log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = support::count(&db, "SELECT id FROM devices");

    login(&b, &base, PASSWORD).await.unwrap();
    let page = format!("{base}/device/{id}");
    b.client.goto(&page).await.unwrap();
    let Ok(kids) = b
        .client
        .find(Locator::Css("#group-select option[value='kids']"))
        .await
    else {
        panic!("no kids option: {}", b.client.source().await.unwrap());
    };
    kids.click().await.unwrap();
    click(&b, "#group-save").await;
    b.client
        .wait()
        .for_element(Locator::Css("#device-title"))
        .await
        .unwrap();
    let took = dig_until(dns, Duration::from_secs(10), "blocked in kids", |a| {
        a == BLOCKED
    });
    assert!(
        took <= Duration::from_secs(1),
        "blocked {took:?} after the change"
    );
    wait_js(
        &b,
        "let s = document.querySelector('#group-select'); return s ? s.value : ''",
        "kids",
    )
    .await;

    // Paused for 5 minutes: answered again, and the page says until when.
    click(&b, "#pause-5m").await;
    wait_js(
        &b,
        "return document.querySelector('#device-paused') ? 'yes' : 'no'",
        "yes",
    )
    .await;
    let paused = text(&b, "#device-paused").await;
    assert!(
        paused.contains("Paused until") && paused.contains("min left"),
        "{paused}"
    );
    dig_until(dns, Duration::from_secs(10), "answered while paused", |a| {
        !a.is_empty() && a != BLOCKED
    });
    // The pause is over once the clock passes it: blocked again, no waiting.
    std::fs::write(&clock, (t0 + 301).to_string()).unwrap();
    dig_until(
        dns,
        Duration::from_secs(10),
        "blocked after the pause",
        |a| a == BLOCKED,
    );

    // Renamed on its page.
    b.client.goto(&page).await.unwrap();
    let name = b.client.find(Locator::Css("#rename-name")).await.unwrap();
    name.send_keys("kids tablet").await.unwrap();
    click(&b, "#rename-form button").await;
    wait_js(
        &b,
        "let e = document.querySelector('#device-title'); return e ? e.textContent : ''",
        "kids tablet",
    )
    .await;
    check_page(&b, &page, "device-controls").await;

    // From the live page: why was it blocked, and allow it. Answered although in kids.
    b.client.goto(&format!("{base}/live")).await.unwrap();
    // Follow the first hit's own link rather than click where it is: the hit writer
    // streams hits of the last second in above it, and a row inserted while clicking
    // moves the link from under the pointer.
    let link = b
        .client
        .find(Locator::Css("#live-feed .hit-name"))
        .await
        .unwrap();
    let href = link
        .prop("href")
        .await
        .unwrap()
        .expect("a hit links to its check");
    b.client.goto(&href).await.unwrap();
    let action = "let e = document.querySelector('#check-action'); return e ? e.textContent : ''";
    wait_js(&b, action, "block").await;
    click(&b, "#check-controls button[value='allow']").await;
    wait_js(&b, action, "allow").await;
    dig_until(dns, Duration::from_secs(10), "answered once allowed", |a| {
        !a.is_empty() && a != BLOCKED
    });

    check_page(&b, &format!("{base}/controls"), "controls").await;
    let audit = text(&b, "#audit").await;
    assert!(audit.contains("dashboard (session"), "{audit}");
    assert!(audit.contains("group of"), "{audit}");
    assert!(audit.contains("pause for"), "{audit}");
    assert!(audit.contains("name www.meta.ai"), "{audit}");
    assert!(audit.contains("name of device"), "{audit}");

    // A restart keeps the controls: still allowed, still in kids.
    drop(serve);
    let _serve = start(&cfg, &clock);
    dig_until(
        dns,
        Duration::from_secs(10),
        "allowed after a restart",
        |a| !a.is_empty() && a != BLOCKED,
    );
    // Sessions live in memory: log in again.
    login(&b, &base, PASSWORD).await.unwrap();
    b.client.goto(&page).await.unwrap();
    wait_js(
        &b,
        "let s = document.querySelector('#group-select'); return s ? s.value : ''",
        "kids",
    )
    .await;
    b.close().await;
}
