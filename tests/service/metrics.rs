//! `/metrics` as scrapers see it: the real server on 127.0.0.1, scraped over plain HTTP
//! in both formats, checked by Prometheus's own `promtool`, and the Grafana dashboard in
//! docs/grafana/ checked against a real scrape.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::support::*;
use hickory_proto::rr::RecordType;

/// `GET /metrics` with an optional `Accept` header: (head, body).
fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    http::get(addr, "/metrics", accept)
}

fn content_type(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string()
}

/// A server with metrics on, after a blocked, an upstream and a cached query.
async fn busy_server() -> (Upstream, metaguard::server::Running, SocketAddr) {
    let up = Upstream::start().await;
    let mut cfg = config(&up);
    cfg.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let srv = serve(cfg).await;
    let addr = srv.addrs()[0];
    udp(addr, "connect.facebook.net.", RecordType::A, Q::default()).await;
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    assert!(srv.flush_log().await);
    let maddr = srv.metrics_addr().expect("metrics listening");
    (up, srv, maddr)
}

/// Run `promtool check metrics` on `text`: `None` when promtool is not installed.
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return None,
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), said))
}

#[tokio::test]
async fn classic_text_by_default_openmetrics_on_request_and_promtool_accepts_it() {
    let (_up, srv, maddr) = busy_server().await;
    let (head, text) = tokio::task::spawn_blocking(move || scrape(maddr, None))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(
        content_type(&head),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let prom_accept = "application/openmetrics-text;version=1.0.0;q=0.5,\
        application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (om_head, om) = tokio::task::spawn_blocking(move || scrape(maddr, Some(prom_accept)))
        .await
        .unwrap();
    assert!(
        content_type(&om_head).starts_with("application/openmetrics-text; version=1.0.0"),
        "{om_head}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(!text.contains("# EOF"), "{text}");

    // Every sample has HELP and TYPE under its own name (0.0.4: `_total` included).
    for (family, kind) in [
        ("metaguard_queries_total", "counter"),
        ("metaguard_events_dropped_total", "counter"),
        ("metaguard_dnstap_dropped_total", "counter"),
        ("metaguard_blocked_by_category_total", "counter"),
        ("metaguard_upstream_latency_seconds", "histogram"),
        ("metaguard_db_write_latency_seconds", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family}\n{text}"
        );
    }
    assert!(text.contains("metaguard_queries_total 3\n"), "{text}");
    assert!(text.contains("metaguard_blocked_by_category_total{category=\"pixel\"} 1\n"));
    // Per-device data stays out of the labels.
    for label in ["device", "client", "mac", "addr"] {
        assert!(
            !text.contains(&format!("{label}=\"")),
            "{label} label\n{text}"
        );
    }

    match promtool(&text) {
        None => eprintln!("skipped promtool: prometheus (promtool) not installed"),
        Some((ok, said)) => assert!(ok, "promtool check metrics failed:\n{said}\n{text}"),
    }
    srv.stop().await;
}

/// Sample names in a 0.0.4 scrape.
fn sample_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every `metaguard_...` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("metaguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn grafana_dashboard_is_json_and_uses_only_metrics_the_server_serves() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/metaguard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let (_up, srv, maddr) = busy_server().await;
    let (_, text) = tokio::task::spawn_blocking(move || scrape(maddr, None))
        .await
        .unwrap();
    let served = sample_names(&text);
    let mut titles = Vec::new();
    let mut used = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        titles.push(panel["title"].as_str().unwrap().to_lowercase());
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                used += 1;
                assert!(
                    served.contains(&n),
                    "{n} (in {expr}) is not served:\n{text}"
                );
            }
        }
    }
    assert!(used >= 10, "{used}");
    for want in [
        "queries",
        "blocks by category",
        "cache hit rate",
        "upstream latency",
        "dropped events",
        "db write latency",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel {want:?}: {titles:?}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_serves_counters_categories_and_latency() {
    let (_up, srv, maddr) = busy_server().await;
    let (head, body) = tokio::task::spawn_blocking(move || http::get(maddr, "/metrics", None))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for want in [
        "metaguard_queries_total 3",
        "metaguard_blocked_total 1",
        "metaguard_cache_hits_total 1",
        "metaguard_events_dropped_total 0",
        "metaguard_blocked_by_category_total{category=\"pixel\"} 1",
        "metaguard_upstream_latency_seconds_count 1",
    ] {
        assert!(body.contains(want), "missing {want:?} in\n{body}");
    }
    assert!(
        body.contains("metaguard_db_write_latency_seconds_count"),
        "{body}"
    );
    assert!(
        !body.contains("metaguard_db_write_latency_seconds_count 0\n"),
        "{body}"
    );
    let (head, _) = tokio::task::spawn_blocking(move || http::get(maddr, "/", None))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    srv.stop().await;
}

#[tokio::test]
async fn metrics_off_by_default() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    assert_eq!(srv.metrics_addr(), None);
    srv.stop().await;
}
