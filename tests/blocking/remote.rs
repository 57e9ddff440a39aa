//! Remote lists against a tiny HTTP/1.1 server on 127.0.0.1 that each test starts:
//! 200, 304, 404, timeout, oversized, shrunk and garbage lists, and the refresher; and
//! an HTTPS server whose certificate comes from a private CA (`[tls] ca_file`).

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metaguard::config::Config;
use metaguard::filter::ListFormat;
use metaguard::remote::{
    self, RemoteListConfig, RemoteSettings, UpdateEvent, UpdateOutcome, UpdateResult,
    cached_sources, copy_path, read_sidecar, update_all,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the test server answers next.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with a body; `length: false` sends no Content-Length (body ends at close).
    Ok {
        body: Vec<u8>,
        etag: Option<String>,
        length: bool,
    },
    /// 304 when If-None-Match is sent, else 200 with this body.
    Conditional {
        body: Vec<u8>,
        etag: String,
    },
    Status(u16),
    /// Read the request and never answer.
    Hang,
}

struct Server {
    url: String,
    reply: Arc<Mutex<Reply>>,
    /// Raw request heads received, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(reply));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (reply.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (r, q) = (r.clone(), q.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    q.lock().unwrap().push(head.clone());
                    let reply = r.lock().unwrap().clone();
                    let (status, headers, body) = match reply {
                        Reply::Ok { body, etag, length } => {
                            let mut h = String::new();
                            if let Some(e) = etag {
                                h.push_str(&format!("ETag: {e}\r\n"));
                            }
                            if length {
                                h.push_str(&format!("Content-Length: {}\r\n", body.len()));
                            }
                            ("200 OK", h, body)
                        }
                        Reply::Conditional { body, etag } => {
                            if head.contains(&format!("if-none-match: {}", etag.to_lowercase())) {
                                ("304 Not Modified", format!("ETag: {etag}\r\n"), Vec::new())
                            } else {
                                let h =
                                    format!("ETag: {etag}\r\nContent-Length: {}\r\n", body.len());
                                ("200 OK", h, body)
                            }
                        }
                        Reply::Status(404) => (
                            "404 Not Found",
                            "Content-Length: 0\r\n".to_string(),
                            Vec::new(),
                        ),
                        Reply::Status(_) => (
                            "500 Internal Server Error",
                            "Content-Length: 0\r\n".to_string(),
                            Vec::new(),
                        ),
                        Reply::Hang => {
                            // Hold the connection open without answering.
                            let _ = sock.read(&mut buf).await;
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let resp = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n");
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server {
            url: format!("http://{addr}/list.txt"),
            reply,
            requests,
        }
    }

    fn set(&self, r: Reply) {
        *self.reply.lock().unwrap() = r;
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn body(n: usize, prefix: &str) -> Vec<u8> {
    let mut s = String::from("# test list\n");
    for i in 0..n {
        s.push_str(&format!("{prefix}{i}.example\n"));
    }
    s.into_bytes()
}

fn ok(b: Vec<u8>) -> Reply {
    Reply::Ok {
        body: b,
        etag: None,
        length: true,
    }
}

fn config(dir: &std::path::Path, url: &str) -> RemoteSettings {
    let mut cfg = RemoteSettings::default();
    cfg.remote.state_dir = dir.to_path_buf();
    cfg.remote.timeout = Duration::from_millis(500);
    cfg.remote.max_size = std::num::NonZeroU64::new(64 * 1024).unwrap();
    cfg.lists = vec![RemoteListConfig {
        url: url.to_string(),
        category: "ads".into(),
        format: ListFormat::Auto,
        refresh: Duration::from_secs(3600),
    }];
    cfg
}

async fn update(cfg: &RemoteSettings) -> UpdateOutcome {
    let mut o = update_all(cfg, true, &|_: UpdateEvent| {}).await;
    assert_eq!(o.len(), 1);
    o.remove(0)
}

/// Fetch 10 good rules first; returns the stored bytes.
async fn seed(cfg: &RemoteSettings, server: &Server) -> Vec<u8> {
    let good = body(10, "good");
    server.set(ok(good.clone()));
    let o = update(cfg).await;
    assert_eq!(o.result, UpdateResult::Updated { rules: 10 });
    good
}

/// The last good copy is still there, byte for byte, and is what `cached_sources` gives.
fn assert_kept(cfg: &RemoteSettings, url: &str, good: &[u8]) {
    assert_eq!(std::fs::read(copy_path(cfg, url)).unwrap(), good);
    let srcs = cached_sources(cfg);
    assert_eq!(srcs.len(), 1);
    assert_eq!(srcs[0].text.as_bytes(), good);
    assert_eq!(srcs[0].origin, url);
    assert_eq!(srcs[0].category, "ads");
    assert_eq!(read_sidecar(cfg, url).unwrap().rules, 10);
}

#[tokio::test]
async fn ok_200_stores_copy_and_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Ok {
        body: body(5, "a"),
        etag: Some("\"v1\"".into()),
        length: true,
    })
    .await;
    let cfg = config(dir.path(), &server.url);
    assert!(cached_sources(&cfg).is_empty(), "never fetched: skipped");
    let events = Mutex::new(Vec::new());
    let outcomes = update_all(&cfg, false, &|e| events.lock().unwrap().push(e)).await;
    assert_eq!(outcomes[0].result, UpdateResult::Updated { rules: 5 });
    assert!(outcomes[0].has_copy);
    assert_eq!(
        outcomes[0].to_string(),
        format!("updated {}: 5 rules", server.url)
    );
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(UpdateEvent::Finished(_))
    ));
    assert_eq!(
        std::fs::read(copy_path(&cfg, &server.url)).unwrap(),
        body(5, "a")
    );
    let sc = read_sidecar(&cfg, &server.url).unwrap();
    assert_eq!(sc.url, server.url);
    assert_eq!(sc.etag.as_deref(), Some("\"v1\""));
    assert_eq!(sc.rules, 5);
    assert!(humantime::parse_rfc3339(&sc.fetched_at).is_ok());
    assert_eq!(cached_sources(&cfg).len(), 1);
    // Not due again within its refresh: nothing fetched without --force.
    assert!(update_all(&cfg, false, &|_| {}).await.is_empty());
    assert_eq!(server.requests().len(), 1);
    assert!(remote::all_usable(&cfg, &[]));
}

#[tokio::test]
async fn not_modified_304_keeps_copy_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Conditional {
        body: body(10, "good"),
        etag: "\"abc\"".into(),
    })
    .await;
    let cfg = config(dir.path(), &server.url);
    assert_eq!(
        update(&cfg).await.result,
        UpdateResult::Updated { rules: 10 }
    );
    let path = copy_path(&cfg, &server.url);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let o = update(&cfg).await;
    assert_eq!(o.result, UpdateResult::NotModified);
    let reqs = server.requests();
    assert!(!reqs[0].contains("if-none-match"));
    assert!(reqs[1].contains("if-none-match: \"abc\""), "{}", reqs[1]);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert_kept(&cfg, &server.url, &body(10, "good"));
}

#[tokio::test]
async fn not_found_404_fails_and_keeps_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let cfg = config(dir.path(), &server.url);
    // Never fetched and 404: failed, no copy, not usable.
    let o = update(&cfg).await;
    assert!(matches!(o.result, UpdateResult::Failed { .. }), "{o:?}");
    assert!(!o.has_copy);
    assert!(!remote::all_usable(&cfg, std::slice::from_ref(&o)));
    let good = seed(&cfg, &server).await;
    server.set(Reply::Status(404));
    let o = update(&cfg).await;
    match &o.result {
        UpdateResult::Failed { error } => assert!(error.contains("404"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(o.has_copy);
    assert!(o.to_string().ends_with("(kept last good copy)"), "{o}");
    assert!(remote::all_usable(&cfg, &[o]));
    assert_kept(&cfg, &server.url, &good);
}

#[tokio::test]
async fn silent_server_times_out_and_keeps_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Hang).await;
    let cfg = config(dir.path(), &server.url);
    let good = seed(&cfg, &server).await;
    server.set(Reply::Hang);
    let t = Instant::now();
    let o = update(&cfg).await;
    let took = t.elapsed();
    assert!(matches!(o.result, UpdateResult::Failed { .. }), "{o:?}");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_kept(&cfg, &server.url, &good);
}

#[tokio::test]
async fn oversized_download_is_aborted_and_copy_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let cfg = config(dir.path(), &server.url);
    let good = seed(&cfg, &server).await;
    let big = body(20_000, "big"); // ~260 KiB > 64 KiB limit
    assert!(big.len() as u64 > cfg.remote.max_size.get());
    // Announced by Content-Length, and streamed without one.
    for length in [true, false] {
        server.set(Reply::Ok {
            body: big.clone(),
            etag: None,
            length,
        });
        let o = update(&cfg).await;
        match &o.result {
            UpdateResult::Rejected { reason } => assert!(reason.contains("larger"), "{reason}"),
            other => panic!("length={length}: {other:?}"),
        }
        assert_kept(&cfg, &server.url, &good);
    }
}

#[tokio::test]
async fn shrunk_list_is_rejected_and_copy_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let cfg = config(dir.path(), &server.url);
    let good = seed(&cfg, &server).await;
    server.set(ok(body(4, "small")));
    let o = update(&cfg).await;
    match &o.result {
        UpdateResult::Rejected { reason } => assert!(reason.contains("shrank"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_kept(&cfg, &server.url, &good);
    // Exactly half is still accepted.
    server.set(ok(body(5, "half")));
    assert_eq!(
        update(&cfg).await.result,
        UpdateResult::Updated { rules: 5 }
    );
}

#[tokio::test]
async fn garbage_list_is_rejected_and_copy_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let cfg = config(dir.path(), &server.url);
    let good = seed(&cfg, &server).await;
    let mut html = String::from("<!doctype html>\n<html>\n<body>\n");
    for i in 0..30 {
        html.push_str(&format!("<p>error page {i}</p>\n"));
    }
    html.push_str(&String::from_utf8(body(12, "real")).unwrap());
    server.set(ok(html.into_bytes()));
    let o = update(&cfg).await;
    match &o.result {
        UpdateResult::Rejected { reason } => assert!(reason.contains("unparseable"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_kept(&cfg, &server.url, &good);
}

#[tokio::test]
async fn refresher_calls_on_change_after_scheduled_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let mut cfg = config(dir.path(), &server.url);
    cfg.lists[0].refresh = Duration::from_millis(200);
    seed(&cfg, &server).await;
    let newer = body(12, "newer");
    server.set(ok(newer.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = remote::spawn_refresher(
        cfg.clone(),
        move || {
            let _ = tx.send(());
        },
        stop.clone(),
    );
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("on_change within 10 s")
        .expect("refresher alive");
    assert_eq!(std::fs::read(copy_path(&cfg, &server.url)).unwrap(), newer);
    assert_eq!(cached_sources(&cfg)[0].text.as_bytes(), newer);
    assert!(server.requests().len() >= 2);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("refresher stops on cancel")
        .unwrap();
}

/// `serve` hands every reloaded config to its `Refresher`: a `[[lists]]` entry added by
/// SIGHUP is fetched then (it used to wait for a restart), and the same config again
/// leaves the running refresher alone.
#[tokio::test]
async fn refresher_follows_a_reload_that_adds_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let good = body(10, "good");
    let server = Server::start(ok(good.clone())).await;
    let with = config(dir.path(), &server.url);
    let mut without = with.clone();
    without.lists.clear();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut r = remote::Refresher::start(&without, move || {
        let _ = tx.send(());
    });
    assert!(!r.follow(&without).await, "nothing changed: no restart");
    assert!(r.follow(&with).await, "a list was added");
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the new list fetched and on_change called within 10 s")
        .expect("refresher alive");
    assert_eq!(std::fs::read(copy_path(&with, &server.url)).unwrap(), good);
    assert_eq!(server.requests().len(), 1);
    assert!(!r.follow(&with).await);
    assert!(r.follow(&without).await, "a list was removed");
    tokio::time::timeout(Duration::from_secs(5), r.stop())
        .await
        .expect("refresher stops");
}

#[tokio::test]
async fn lists_rows_show_remote_and_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Reply::Status(404)).await;
    let remote = config(dir.path(), &server.url);
    let mut cfg = Config {
        remote: remote.remote.clone(),
        lists: remote.lists.clone(),
        ..Config::default()
    };
    cfg.filter.lists_dir = dir.path().join("none");
    let rows = metaguard::cli::lists::rows(&cfg).unwrap();
    let r = rows.iter().find(|r| r.name == server.url).unwrap();
    assert!(r.source.contains("not fetched"));
    seed(&remote, &server).await;
    cfg.categories
        .insert("ads".into(), metaguard::policy::Action::Block);
    let rows = metaguard::cli::lists::rows(&cfg).unwrap();
    let r = rows.iter().find(|r| r.name == server.url).unwrap();
    assert_eq!((r.rules, r.action.as_str()), (10, "block"));
    assert_eq!(r.source, server.url);
    assert_eq!(
        r.last_update,
        Some(read_sidecar(&remote, &server.url).unwrap().fetched_at)
    );
    let pixel = rows.iter().find(|r| r.name == "pixel.txt").unwrap();
    assert_eq!(pixel.source, "embedded");
    assert!(pixel.last_update.is_some(), "Reviewed: header");
    let text = metaguard::cli::lists::render(&rows, false);
    assert!(text.starts_with("NAME"));
    let json = metaguard::cli::lists::render(&rows, true);
    assert_eq!(json.lines().count(), rows.len());
    let exit = metaguard::cli::lists::update(&cfg, true).await;
    assert_eq!(exit, 0, "404 but the last good copy is usable");
}

/// A list served over HTTPS with a certificate from a private CA: refused for its issuer
/// without `[tls] ca_file`, fetched with it.
#[tokio::test]
async fn https_list_from_a_private_ca_is_fetched_with_ca_file() {
    let ca = support::pki::PrivateCa::new();
    let dir = tempfile::tempdir().unwrap();

    let (port, t) = support::pki::https_once(&ca, body(7, "tls"));
    let url = format!("https://127.0.0.1:{port}/list.txt");
    let mut cfg = config(dir.path(), &url);
    cfg.remote.timeout = Duration::from_secs(10);
    let o = update(&cfg).await;
    match &o.result {
        UpdateResult::Failed { error } => assert!(error.contains("UnknownIssuer"), "{error}"),
        other => panic!("an untrusted certificate was accepted: {other:?}"),
    }
    assert!(
        t.join().unwrap().is_err(),
        "no request over an untrusted TLS"
    );

    let (port, t) = support::pki::https_once(&ca, body(7, "tls"));
    let url = format!("https://127.0.0.1:{port}/list.txt");
    let mut cfg = config(dir.path(), &url);
    cfg.remote.timeout = Duration::from_secs(10);
    cfg.tls = ca.tls_config();
    let o = update(&cfg).await;
    assert_eq!(o.result, UpdateResult::Updated { rules: 7 });
    let (head, _) = t.join().unwrap().expect("the request arrived");
    assert!(head.starts_with("GET /list.txt HTTP/1.1"), "{head}");
    assert_eq!(
        std::fs::read(copy_path(&cfg, &url)).unwrap(),
        body(7, "tls")
    );
}
