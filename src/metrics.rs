//! Optional Prometheus endpoint (`[metrics] listen`): the server's counters, blocks by
//! category, upstream and database-write latency, served on `GET /metrics` by a minimal
//! HTTP/1.1 responder, as the classic text format 0.0.4 unless the scraper's `Accept`
//! asks for OpenMetrics. Off when `listen` is absent or empty.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::stats;

/// `[metrics]` in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve `/metrics`; `None` (absent or `""`) turns the endpoint off.
    #[serde(
        deserialize_with = "deserialize_listen",
        serialize_with = "serialize_listen"
    )]
    pub listen: Option<SocketAddr>,
}

fn deserialize_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{s:?} is not ADDR:PORT (e.g. \"127.0.0.1:9153\"); \"\" turns metrics off"
        ))
    })
}

fn serialize_listen<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.collect_str(a),
        None => s.serialize_str(""),
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    pub(crate) addr: SocketAddr,
    pub(crate) source: std::io::Error,
}

/// Counters copied from [`stats::Stats`] at each scrape, in declaration order.
const STAT_COUNTERS: &[(&str, &str)] = &[
    ("queries", "Queries answered or dropped after parsing"),
    ("blocked", "Queries answered with the blocked response"),
    ("logged", "Meta names answered normally and logged"),
    (
        "cname_blocked",
        "Blocked because the CNAME chain passed a blocked name",
    ),
    ("cache_hits", "Queries answered from the cache"),
    ("cache_misses", "Queries sent upstream"),
    (
        "upstream_failures",
        "SERVFAIL because no upstream answered in time",
    ),
    ("refused", "REFUSED: client outside the allowed networks"),
    ("rate_limited", "Dropped: client over its rate"),
    (
        "udp_dropped",
        "Dropped: too many UDP queries in flight, in total or from its client",
    ),
    (
        "tcp_rejected",
        "TCP connections closed to make room at a cap (the longest idle goes)",
    ),
    (
        "tcp_unread",
        "TCP connections closed because their answers were not read in time",
    ),
    ("malformed", "Packets that were not a DNS query"),
    (
        "events_dropped",
        "Hit events lost because the hit log queue was full (the writer behind, or the disk failing longer than the queue lasts)",
    ),
    (
        "dnstap_frames",
        "dnstap frames written to the collector ([export] dnstap)",
    ),
    (
        "dnstap_dropped",
        "dnstap messages dropped: queue full or no collector connected",
    ),
];

fn stat_value(s: &stats::Reading, name: &str) -> u64 {
    match name {
        "queries" => s.queries,
        "blocked" => s.blocked,
        "logged" => s.logged,
        "cname_blocked" => s.cname_blocked,
        "cache_hits" => s.cache_hits,
        "cache_misses" => s.cache_misses,
        "upstream_failures" => s.upstream_failures,
        "refused" => s.refused,
        "rate_limited" => s.rate_limited,
        "udp_dropped" => s.udp_dropped,
        "tcp_rejected" => s.tcp_rejected,
        "tcp_unread" => s.tcp_unread,
        "malformed" => s.malformed,
        "events_dropped" => s.events_dropped,
        "dnstap_frames" => s.dnstap_frames,
        "dnstap_dropped" => s.dnstap_dropped,
        _ => 0,
    }
}

type Labels = Vec<(String, String)>;

/// The metrics handle the query path records into. Cheap to call whether or not the
/// endpoint is on.
pub(crate) struct Metrics {
    registry: Registry,
    stats: Vec<(&'static str, Counter)>,
    blocked: Family<Labels, Counter>,
    /// Handles into `blocked` by category, so counting a block allocates no labels.
    blocked_by: std::sync::RwLock<Vec<(Box<str>, Counter)>>,
    upstream: Histogram,
    db_write: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("metaguard");
        let mut stats = Vec::new();
        for (name, help) in STAT_COUNTERS {
            let c = Counter::default();
            registry.register(*name, *help, c.clone());
            stats.push((*name, c));
        }
        let blocked = Family::<Labels, Counter>::default();
        registry.register(
            "blocked_by_category",
            "Blocked answers per list category",
            blocked.clone(),
        );
        // 0.5 ms .. ~4 s.
        let upstream = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "upstream_latency_seconds",
            "Time until an upstream answered (or failed), per query sent upstream",
            upstream.clone(),
        );
        // 0.1 ms .. ~3 s.
        let db_write = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "db_write_latency_seconds",
            "Time to write one batch of hit-log events to SQLite",
            db_write.clone(),
        );
        Metrics {
            registry,
            stats,
            blocked,
            blocked_by: Default::default(),
            upstream,
            db_write,
        }
    }

    /// One blocked answer of `category`.
    pub(crate) fn blocked(&self, category: &str) {
        if let Ok(known) = self.blocked_by.read()
            && let Some((_, c)) = known.iter().find(|(k, _)| **k == *category)
        {
            c.inc();
            return;
        }
        let counter = self
            .blocked
            .get_or_create(&vec![("category".to_string(), category.to_string())])
            .clone();
        counter.inc();
        if let Ok(mut known) = self.blocked_by.write()
            && known.len() < 64
        {
            known.push((category.into(), counter));
        }
    }

    /// How long one upstream resolution took.
    pub(crate) fn observe_upstream(&self, d: Duration) {
        self.upstream.observe(d.as_secs_f64());
    }

    /// How long one database batch write took.
    pub(crate) fn observe_db_write(&self, d: Duration) {
        self.db_write.observe(d.as_secs_f64());
    }

    /// The metrics text in `format`, with the server's counters as of `reading`.
    pub(crate) fn render(&self, reading: &stats::Reading, format: MetricsFormat) -> String {
        for (name, c) in &self.stats {
            c.inner()
                .store(stat_value(reading, name), Ordering::Relaxed);
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        match format {
            MetricsFormat::OpenMetrics => out,
            MetricsFormat::Text004 => to_text_004(&out),
        }
    }
}

/// The two exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricsFormat {
    /// `text/plain; version=0.0.4`: what every Prometheus-compatible scraper reads.
    Text004,
    /// `application/openmetrics-text; version=1.0.0`, for scrapers that ask for it.
    OpenMetrics,
}

impl MetricsFormat {
    /// OpenMetrics when `accept` (an `Accept` header value) prefers it over plain text;
    /// the classic format otherwise, and when there is no header.
    pub(crate) fn negotiate(accept: Option<&str>) -> MetricsFormat {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for item in accept.unwrap_or("").split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            MetricsFormat::OpenMetrics
        } else {
            MetricsFormat::Text004
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Text004 => "text/plain; version=0.0.4; charset=utf-8",
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

/// OpenMetrics text (as `prometheus-client` writes it) as the 0.0.4 text format: a
/// counter's HELP and TYPE name its `_total` sample (OpenMetrics names the family
/// without the suffix, which 0.0.4 parsers take as a metric with no samples and a
/// sample with no help), and the `# UNIT` and `# EOF` lines, which 0.0.4 lacks, go.
fn to_text_004(om: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name);
        }
    }
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(&name) && !name.ends_with("_total") {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        // A counter's `_created` sample is OpenMetrics only.
        if counters.iter().any(|c| {
            line.strip_prefix(c)
                .is_some_and(|r| r.starts_with("_created"))
        }) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Bind `addr` for the endpoint (before the server reports ready).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })
}

/// Serve `GET /metrics` on `listener` until `shutdown`. `reading` takes a reading of the counters.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    reading: F,
    shutdown: CancellationToken,
) where
    F: Fn() -> stats::Reading + Send + Sync + 'static,
{
    let reading = Arc::new(reading);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!("metrics accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (metrics, reading) = (metrics.clone(), reading.clone());
        tokio::spawn(async move {
            let reply = async {
                let req = read_head(stream).await?;
                respond(req, |req| route(req, |f| metrics.render(&reading(), f))).await
            };
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), reply).await {
                tracing::debug!("metrics request: {e}");
            }
        });
    }
}

/// The request head (up to the blank line), at most 8 KiB.
async fn read_head(mut stream: TcpStream) -> std::io::Result<(TcpStream, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            break;
        }
    }
    Ok((stream, String::from_utf8_lossy(&buf).into_owned()))
}

async fn respond<R>(req: (TcpStream, String), route: R) -> std::io::Result<()>
where
    R: FnOnce(&str) -> (u16, &'static str, &'static str, String),
{
    let (mut stream, head) = req;
    let (code, reason, ctype, body) = route(&head);
    let header = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head.starts_with("HEAD ") {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// The value of header `name` (case-insensitive) in a request head.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Status, reason, content type and body for a request head.
fn route(
    head: &str,
    render: impl FnOnce(MetricsFormat) -> String,
) -> (u16, &'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let format = MetricsFormat::negotiate(header(head, "accept"));
            (200, "OK", format.content_type(), render(format))
        }
        ("GET" | "HEAD", _) => (404, "Not Found", TEXT, "not found; try /metrics\n".into()),
        ("", _) => (400, "Bad Request", TEXT, "bad request\n".into()),
        _ => (405, "Method Not Allowed", TEXT, "only GET\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_empty_or_absent_is_off() {
        let off: MetricsConfig = toml::from_str("listen = \"\"").unwrap();
        assert_eq!(off.listen, None);
        let off: MetricsConfig = toml::from_str("").unwrap();
        assert_eq!(off.listen, None);
        let on: MetricsConfig = toml::from_str("listen = \"127.0.0.1:9153\"").unwrap();
        assert_eq!(on.listen, Some("127.0.0.1:9153".parse().unwrap()));
        assert!(toml::from_str::<MetricsConfig>("listen = \"localhost\"").is_err());
    }

    #[test]
    fn render_has_stats_categories_and_histograms() {
        let m = Metrics::new();
        m.blocked("pixel");
        m.blocked("pixel");
        m.observe_upstream(Duration::from_millis(3));
        m.observe_db_write(Duration::from_micros(300));
        let reading = stats::Reading {
            queries: 7,
            cache_hits: 2,
            ..Default::default()
        };
        let text = m.render(&reading, MetricsFormat::OpenMetrics);
        assert!(text.contains("metaguard_queries_total 7"), "{text}");
        assert!(text.contains("metaguard_cache_hits_total 2"), "{text}");
        assert!(
            text.contains("metaguard_blocked_by_category_total{category=\"pixel\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("metaguard_upstream_latency_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("metaguard_db_write_latency_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let classic = m.render(&reading, MetricsFormat::Text004);
        assert!(
            classic.contains("# HELP metaguard_queries_total Queries"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE metaguard_queries_total counter"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE metaguard_upstream_latency_seconds histogram"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }

    #[test]
    fn accept_picks_the_format() {
        use MetricsFormat::*;
        assert_eq!(MetricsFormat::negotiate(None), Text004);
        assert_eq!(MetricsFormat::negotiate(Some("*/*")), Text004);
        assert_eq!(
            MetricsFormat::negotiate(Some("text/plain;version=0.0.4")),
            Text004
        );
        assert_eq!(
            MetricsFormat::negotiate(Some("application/openmetrics-text;version=1.0.0")),
            OpenMetrics
        );
        // What Prometheus 2.x and 3.x send.
        let prom = "application/openmetrics-text;version=1.0.0;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(MetricsFormat::negotiate(Some(prom)), OpenMetrics);
        assert_eq!(
            MetricsFormat::negotiate(Some("text/plain;q=0.9,application/openmetrics-text;q=0.1")),
            Text004
        );
        assert_eq!(
            MetricsFormat::negotiate(Some("application/openmetrics-text;q=0")),
            Text004
        );
    }

    #[test]
    fn routes() {
        let x = |_| "x".to_string();
        assert_eq!(route("GET /metrics HTTP/1.1\r\n", x).0, 200);
        assert_eq!(route("GET /metrics?x=1 HTTP/1.1\r\n", x).0, 200);
        assert_eq!(route("GET / HTTP/1.1\r\n", x).0, 404);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n", x).0, 405);
        assert_eq!(route("", x).0, 400);
        let om = "GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: application/openmetrics-text\r\n";
        assert!(route(om, x).2.starts_with("application/openmetrics-text"));
        assert!(
            route("GET /metrics HTTP/1.1\r\n", x)
                .2
                .contains("version=0.0.4")
        );
    }
}
