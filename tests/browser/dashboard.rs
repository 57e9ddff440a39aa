//! The dashboard of the real `serve` (loopback, seeded SQLite) in Chromium: login with a
//! wrong and the right password, the household numbers against the generator's counts, a
//! device page with its names, a `<script>` device name shown as text, a POST without its
//! CSRF token rejected, every page within a 360 px viewport (and at 1280 px), and the
//! live page showing a `dig` for a blocked name within 2 s.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use metaguard::policy::Action;
use metaguard::report::Period;
use metaguard::report::fixture::{self, FixtureDevice, FixtureSpec};
use metaguard::server::Running;
use serde_json::json;

use crate::driver::{self, Browser, WIDTHS};
use crate::report::XSS;
use crate::support::{self, Upstream, tools};

const PASSWORD: &str = "correct horse battery";

struct Setup {
    _up: Upstream,
    _state: tempfile::TempDir,
    srv: Running,
    base: String,
    spec: FixtureSpec,
    week: Period,
}

/// `serve` with the dashboard on 127.0.0.1:0, a known password and a seeded hit log
/// around the last complete week.
async fn setup() -> Setup {
    let up = Upstream::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut c = support::config(&up);
    c.web.enabled = true;
    c.web.listen = "127.0.0.1:0".parse().unwrap();
    c.remote.state_dir = state.path().to_path_buf();
    metaguard::web::set_password(&metaguard::web::password_path(state.path()), PASSWORD).unwrap();
    let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let week = Period::last_complete_week(jiff::Timestamp::now(), &tz).unwrap();
    let dev = |name: &str, mac: &str, weight: f64| FixtureDevice {
        name: Some(name.into()),
        mac: Some(mac.into()),
        weight,
    };
    let spec = FixtureSpec {
        seed: 31,
        devices: vec![
            dev("phone", "02:00:00:00:00:01", 1.0),
            dev(XSS, "02:00:00:00:00:02", 0.5),
            dev(
                "Grandma's Samsung Galaxy Tab S9 FE+ in the living room",
                "02:00:00:00:00:03",
                1.5,
            ),
        ],
        start: week.start().unwrap() - 9 * 86400,
        end: week.end().unwrap() + 2 * 86400,
        hits_per_day: 30.0,
        other_queries_per_hit: 2,
    };
    fixture::write(&c.store.db, &spec).unwrap();
    let srv = support::serve(c).await;
    let base = format!("http://{}", srv.web_addr().expect("the dashboard is on"));
    Setup {
        _up: up,
        _state: state,
        srv,
        base,
        spec,
        week,
    }
}

/// The text of the first element `css` selects.
pub(crate) async fn text(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Log in through the form; `Ok` when the household page came.
pub(crate) async fn login(b: &Browser, base: &str, password: &str) -> Result<(), String> {
    b.client.goto(&format!("{base}/login")).await.unwrap();
    let pw = b.client.find(Locator::Css("#password")).await.unwrap();
    pw.send_keys(password).await.unwrap();
    b.client
        .find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let found = b
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#login-error, #household-total, #message"))
        .await;
    let Ok(found) = found else {
        panic!("after the login: {}", b.client.source().await.unwrap());
    };
    match found.attr("id").await.unwrap().as_deref() {
        Some("household-total") => Ok(()),
        _ => Err(found.text().await.unwrap()),
    }
}

/// Check the layout of the page at `path` at both widths, with screenshots as `name`.
pub(crate) async fn check_page(b: &Browser, url: &str, name: &str) {
    b.client.goto(url).await.unwrap();
    for width in WIDTHS {
        b.set_width(width).await;
        let problems = b.layout_problems().await;
        assert!(
            problems.is_empty(),
            "{name} at {width} px:\n{}",
            problems.join("\n")
        );
        if let Some(dir) = driver::screenshot_dir() {
            // The live page lists 100 hits: its first screen and a half tell enough.
            let max = if name == "live" { 1_400 } else { 16_000 };
            b.screenshot(&dir, name, width, max).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_login_numbers_escaping_csrf_and_layout() {
    let Some(b) = driver::browser().await else {
        return;
    };
    let s = setup().await;
    let base = s.base.clone();

    // A wrong password is refused, the right one opens the household page.
    let err = login(&b, &base, "wrong password").await.unwrap_err();
    assert!(!err.is_empty(), "the login error says something");
    login(&b, &base, PASSWORD).await.unwrap();

    // The household numbers of the week are the generator's.
    let (start, end) = (s.week.start().unwrap(), s.week.end().unwrap());
    let (mut total, mut blocked, mut logged) = (0i64, 0i64, 0i64);
    for h in fixture::events(&s.spec).filter(|h| h.ts >= start && h.ts < end) {
        total += 1;
        match h.action {
            Action::Block => blocked += 1,
            Action::Log => logged += 1,
            Action::Allow => {}
        }
    }
    let household = format!("{base}/?week={}", s.week.label);
    b.client.goto(&household).await.unwrap();
    assert_eq!(text(&b, "#household-total").await, total.to_string());
    assert_eq!(text(&b, "#household-blocked").await, blocked.to_string());
    assert_eq!(text(&b, "#household-logged").await, logged.to_string());

    // The device named <script> is a link text; no inline script exists or ran.
    let v = b
        .eval(&format!(
            "return [[...document.querySelectorAll('td.device-name a')].some(a => a.textContent === {}),
                     [...document.scripts].every(s => s.src !== '')]",
            json!(XSS)
        ))
        .await;
    assert_eq!(v, json!([true, true]), "<script> shown as text");
    check_page(&b, &household, "household").await;

    // A device page shows its names.
    let link = b
        .client
        .find(Locator::XPath(
            "//td[contains(@class,'device-name')]/a[text()='phone']",
        ))
        .await
        .unwrap();
    let device = format!("{base}{}", link.attr("href").await.unwrap().unwrap());
    let device = if device.contains("week=") {
        device
    } else {
        format!("{device}?week={}", s.week.label)
    };
    b.client.goto(&device).await.unwrap();
    assert_eq!(text(&b, "#device-title").await, "phone");
    let names = text(&b, "table#device-names").await;
    for n in ["connect.facebook.net", "graph.facebook.com"] {
        assert!(names.contains(n), "{n} in {names}");
    }
    check_page(&b, &device, "device").await;
    check_page(&b, &format!("{base}/live"), "live").await;
    check_page(
        &b,
        &format!("{base}/lists?name=connect.facebook.net"),
        "lists",
    )
    .await;
    check_page(&b, &format!("{base}/status"), "status").await;

    // Logging out without the CSRF token is refused, and the session stays.
    b.eval(
        "document.querySelector('#logout-form input[name=csrf]').remove();
         document.getElementById('logout-form').submit();",
    )
    .await;
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url_of(&base, "/logout"))
        .await
        .unwrap();
    let status = b
        .eval("return performance.getEntriesByType('navigation')[0].responseStatus")
        .await;
    assert_eq!(status, json!(403));
    b.client.goto(&household).await.unwrap();
    assert_eq!(text(&b, "#household-total").await, total.to_string());

    b.close().await;
    s.srv.stop().await;
}

fn url_of(base: &str, path: &str) -> url::Url {
    url::Url::parse(&format!("{base}{path}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_live_page_shows_a_dig_for_a_blocked_name_within_2_s() {
    if !tools::installed(&["dig"]) {
        return;
    }
    let Some(b) = driver::browser().await else {
        return;
    };
    let s = setup().await;
    login(&b, &s.base, PASSWORD).await.unwrap();
    b.client.goto(&format!("{}/live", s.base)).await.unwrap();
    // Subscribed when the event stream is open.
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//*[@id='live-status'][text()='connected']"))
        .await
        .unwrap();
    let dns = s.srv.addrs()[0];
    let t = Instant::now();
    let out = tokio::process::Command::new(tools::tool("dig").unwrap())
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string()])
        .args(["connect.facebook.net", "A", "+tries=1", "+time=2"])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status: NOERROR"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let hit = b
        .client
        .wait()
        .at_most(Duration::from_secs(2))
        .for_element(Locator::XPath(
            "//li[contains(@class,'hit')]/*[@class='hit-name'][text()='connect.facebook.net']/..",
        ))
        .await
        .expect("the hit on the live page within 2 s");
    let elapsed = t.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let action = hit
        .find(Locator::Css(".hit-action"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(action, "block");
    b.close().await;
    s.srv.stop().await;
}
