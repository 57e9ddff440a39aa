//! Login, sessions and CSRF, escaping, the household counts against the generator's,
//! the API with a bearer token, and the live feed after a real DNS query.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use metaguard::policy::Action;
use metaguard::report::Period;
use metaguard::report::fixture::{self, FixtureDevice, FixtureSpec};
use metaguard::server::Running;

use crate::support::{self, *};

const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "test-api-token-0123456789";
const EVIL: &str = "<script>alert(1)</script>";

/// An answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// `name=value` of the Set-Cookie for `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// One HTTP/1.1 request on its own connection.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if method == "POST" {
        head += &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = h.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: b.to_string(),
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of `<input ... name="csrf" value="...">` in a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Log in: the session cookie (`mg_session=...`).
fn login(addr: SocketAddr, password: &str) -> Result<String, Resp> {
    let form = request(addr, "GET", "/login", &[], "");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"login-form\""));
    let pre = form.cookie("mg_login").expect("login cookie");
    let t = csrf_of(&form.body);
    let r = request(
        addr,
        "POST",
        "/login",
        &[("Cookie", &pre)],
        &format!("csrf={t}&password={}", enc(password)),
    );
    match (r.status, r.cookie("mg_session")) {
        (303, Some(c)) => Ok(c),
        _ => Err(r),
    }
}

struct Setup {
    _up: Upstream,
    _state: tempfile::TempDir,
    srv: Running,
    web: SocketAddr,
    spec: FixtureSpec,
    week: Period,
}

async fn setup() -> Setup {
    let up = Upstream::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&up);
    c.web.enabled = true;
    c.web.listen = "127.0.0.1:0".parse().unwrap();
    c.web.api_token = TOKEN.into();
    c.remote.state_dir = state.path().to_path_buf();
    metaguard::web::set_password(&metaguard::web::password_path(state.path()), PASSWORD).unwrap();
    let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let week = Period::last_complete_week(jiff::Timestamp::now(), &tz).unwrap();
    let spec = FixtureSpec {
        seed: 7,
        devices: vec![
            FixtureDevice {
                name: Some("phone".into()),
                mac: Some("02:00:00:00:00:01".into()),
                weight: 1.0,
            },
            FixtureDevice {
                name: Some(EVIL.into()),
                mac: Some("02:00:00:00:00:02".into()),
                weight: 0.5,
            },
            FixtureDevice {
                name: Some("tv".into()),
                mac: Some("02:00:00:00:00:03".into()),
                weight: 1.5,
            },
        ],
        start: week.start().unwrap() - 9 * 86400,
        end: week.end().unwrap() + 2 * 86400,
        hits_per_day: 30.0,
        other_queries_per_hit: 2,
    };
    let w = fixture::write(&c.store.db, &spec).unwrap();
    assert!(w.hits > 500, "{w:?}");
    let srv = serve(c).await;
    let web = srv.web_addr().expect("the dashboard is on");
    Setup {
        _up: up,
        _state: state,
        srv,
        web,
        spec,
        week,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_works_with_the_password_only_and_pages_need_it() {
    let s = setup().await;
    let addr = s.web;
    let r = tokio::task::spawn_blocking(move || {
        // Not logged in: pages redirect to the login, the API answers 401.
        let r = request(addr, "GET", "/", &[], "");
        assert_eq!((r.status, r.header("location")), (303, Some("/login")));
        assert_eq!(
            request(addr, "GET", "/api/v1/household", &[], "").status,
            401
        );
        // A wrong password is refused and says so.
        let bad = login(addr, "wrong password").unwrap_err();
        assert_eq!(bad.status, 401);
        assert!(bad.body.contains("id=\"login-error\""), "{}", bad.body);
        // A login form posted without its token is refused.
        let r = request(
            addr,
            "POST",
            "/login",
            &[],
            &format!("password={}", enc(PASSWORD)),
        );
        assert_eq!(r.status, 403);
        let cookie = login(addr, PASSWORD).unwrap();
        let page = request(addr, "GET", "/", &[("Cookie", &cookie)], "");
        assert_eq!(page.status, 200, "{}", page.body);
        for (h, want) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(page.header(h), Some(want));
        }
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!page.body.contains("<script>"), "no inline script");
        // The session cookie is HttpOnly, SameSite=Strict and expires.
        (cookie, page)
    })
    .await
    .unwrap();
    let _ = r;
    s.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_flags_csrf_and_logout() {
    let s = setup().await;
    let addr = s.web;
    tokio::task::spawn_blocking(move || {
        let form = request(addr, "GET", "/login", &[], "");
        let pre = form.cookie("mg_login").unwrap();
        let t = csrf_of(&form.body);
        let r = request(
            addr,
            "POST",
            "/login",
            &[("Cookie", &pre)],
            &format!("csrf={t}&password={}", enc(PASSWORD)),
        );
        let set = r
            .headers
            .iter()
            .find(|(k, v)| k == "set-cookie" && v.starts_with("mg_session="))
            .unwrap()
            .1
            .clone();
        for flag in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
            assert!(set.contains(flag), "{set}");
        }
        let cookie = r.cookie("mg_session").unwrap();
        // A POST without the session's CSRF token is rejected, and the session stays.
        let r = request(addr, "POST", "/logout", &[("Cookie", &cookie)], "");
        assert_eq!(r.status, 403);
        let r = request(addr, "POST", "/logout", &[("Cookie", &cookie)], "csrf=0000");
        assert_eq!(r.status, 403);
        assert_eq!(
            request(addr, "GET", "/status", &[("Cookie", &cookie)], "").status,
            200
        );
        // With it, the session ends.
        let page = request(addr, "GET", "/status", &[("Cookie", &cookie)], "");
        let t = csrf_of(&page.body);
        let r = request(
            addr,
            "POST",
            "/logout",
            &[("Cookie", &cookie)],
            &format!("csrf={t}"),
        );
        assert_eq!(r.status, 303);
        assert_eq!(
            request(addr, "GET", "/status", &[("Cookie", &cookie)], "").status,
            303
        );
    })
    .await
    .unwrap();
    s.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn household_counts_equal_the_seeded_counts_and_names_are_escaped() {
    let s = setup().await;
    let addr = s.web;
    let (start, end) = (s.week.start().unwrap(), s.week.end().unwrap());
    let mut want: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for h in fixture::events(&s.spec).filter(|h| h.ts >= start && h.ts < end) {
        let e = want
            .entry(h.device.name.as_deref().unwrap().to_string())
            .or_default();
        e.0 += 1;
        match h.action {
            Action::Block => e.1 += 1,
            _ => e.2 += 1,
        }
    }
    let total: i64 = want.values().map(|v| v.0).sum();
    let blocked: i64 = want.values().map(|v| v.1).sum();
    let label = s.week.label.clone();
    tokio::task::spawn_blocking(move || {
        let cookie = login(addr, PASSWORD).unwrap();
        let page = request(
            addr,
            "GET",
            &format!("/?week={label}"),
            &[("Cookie", &cookie)],
            "",
        );
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains(&format!("<b id=\"household-total\">{total}</b>")),
            "total {total}"
        );
        assert!(
            page.body
                .contains(&format!("<b id=\"household-blocked\">{blocked}</b>")),
            "blocked {blocked}"
        );
        // The device named <script> is text, never markup.
        assert!(!page.body.contains(EVIL));
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The API gives the same, per device, with the bearer token.
        let auth = format!("Bearer {TOKEN}");
        let r = request(
            addr,
            "GET",
            &format!("/api/v1/household?week={label}"),
            &[("Authorization", &auth)],
            "",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["household"]["meta_lookups"], total);
        assert_eq!(v["household"]["blocked"], blocked);
        for d in v["devices"].as_array().unwrap() {
            let (n, b, _) = want[d["name"].as_str().unwrap()];
            assert_eq!(
                (
                    d["meta_lookups"].as_i64().unwrap(),
                    d["blocked"].as_i64().unwrap()
                ),
                (n, b),
                "{d}"
            );
        }
        assert_eq!(v["devices"].as_array().unwrap().len(), want.len());
        // A wrong token is refused.
        let r = request(
            addr,
            "GET",
            "/api/v1/household",
            &[("Authorization", "Bearer nope")],
            "",
        );
        assert_eq!(r.status, 401);
        // A device page lists its names; the report JSON comes through the API too.
        let id = v["devices"][0]["id"].as_i64().unwrap();
        let dp = request(
            addr,
            "GET",
            &format!("/device/{id}?week={label}"),
            &[("Cookie", &cookie)],
            "",
        );
        assert_eq!(dp.status, 200);
        assert!(
            dp.body.contains("id=\"device-names\"") && dp.body.contains("connect.facebook.net"),
            "{}",
            dp.body
        );
        let rep = request(
            addr,
            "GET",
            &format!("/api/v1/report?week={label}"),
            &[("Authorization", &auth)],
            "",
        );
        let rv: serde_json::Value = serde_json::from_str(&rep.body).unwrap();
        assert_eq!(rv["household"]["meta_lookups"], total);
        for p in ["/live", "/lists?name=connect.facebook.net", "/status"] {
            let r = request(addr, "GET", p, &[("Cookie", &cookie)], "");
            assert_eq!(r.status, 200, "{p}");
            assert!(r.body.len() < 150_000, "{p}: {} bytes", r.body.len());
        }
        assert!(page.body.len() < 150_000);
    })
    .await
    .unwrap();
    s.srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_shows_a_blocked_query_within_two_seconds() {
    let s = setup().await;
    let (addr, dns) = (s.web, s.srv.addrs()[0]);
    let cookie = tokio::task::spawn_blocking(move || login(addr, PASSWORD).unwrap())
        .await
        .unwrap();
    let mut sse = TcpStream::connect(addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        sse,
        "GET /live/events?category=pixel HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(sse);
    let mut line = String::new();
    // Headers, then the first comment: the watcher is registered.
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.contains(": connected") {
            break;
        }
    }
    let t = Instant::now();
    udp(dns, "www.facebook.com.", RecordType::A, Q::default()).await; // first-party: filtered out
    udp(dns, "connect.facebook.net.", RecordType::A, Q::default()).await; // pixel, blocked
    let got = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.starts_with("data: ") {
                return line;
            }
        }
    })
    .await
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        got.contains("connect.facebook.net") && got.contains("\"action\":\"block\""),
        "{got}"
    );
    s.srv.stop().await;
}

#[tokio::test]
async fn dashboard_off_or_port_taken_leaves_dns_running() {
    let up = Upstream::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&up);
    c.web.enabled = true;
    c.web.listen = taken.local_addr().unwrap();
    c.remote.state_dir = state.path().to_path_buf();
    let srv = serve(c).await;
    assert!(srv.web_addr().is_none());
    let m = udp(
        srv.addrs()[0],
        "connect.facebook.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_ne!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::Refused
    );
    srv.stop().await;
    let _ = support::count;
}

/// The scheduling policy of each of this process's threads named `name`
/// (`/proc/self/task`, field 41 of stat).
fn policies_of_threads(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        // A thread may end while this reads: skip it.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("stat")),
        ) else {
            continue;
        };
        if comm.trim() == name {
            out.push(policy(&stat));
        }
    }
    out
}

/// Field 41 of a stat line, counted from the state (field 3) after the ") ".
fn policy(stat: &str) -> u32 {
    let after = stat.rsplit_once(") ").unwrap().1;
    after.split(' ').nth(38).unwrap().parse().unwrap()
}

/// Pages give way to DNS: the dashboard's threads (its runtime's worker, the thread
/// that drives it, and the blocking threads that read SQLite) run in SCHED_IDLE, while
/// the test's own threads (and so the DNS runtime it serves on) stay in SCHED_OTHER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_threads_give_way_to_dns() {
    let s = setup().await;
    let cookie = login(s.web, PASSWORD).unwrap();
    let page = request(s.web, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    let web = policies_of_threads("metaguard-web");
    assert!(
        web.len() >= 3,
        "worker, driver and a blocking thread: {web:?}"
    );
    assert!(web.iter().all(|&p| p == libc::SCHED_IDLE as u32), "{web:?}");
    let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    assert_eq!(policy(&own), libc::SCHED_OTHER as u32);
    s.srv.stop().await;
}
