//! Upstream resolvers: the `--upstream` specs (plain, TCP, DoT, DoH), fail-over in
//! order of health, and the answer we take from them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::DnsHandle;
use hickory_net::{DnsError, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::TlsConfig;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverOpts};
use hickory_resolver::{NameServerPool, PoolContext};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cache::{Answer, DnssecBits};
use crate::lograte::{self, LogChoice, LogEvery};

mod udp;

/// The EDNS payload size we offer upstreams (the DNS Flag Day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// `[upstream]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Where to forward. Empty: the nameservers of `resolv_conf`.
    pub servers: Vec<UpstreamSpec>,
    /// A client gets an answer within this time, SERVFAIL at the latest.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// How long one upstream gets before the next one is tried.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Read when `servers` is empty.
    pub resolv_conf: PathBuf,
}

impl UpstreamConfig {
    /// The resolv.conf the upstreams come from: `resolv_conf` when `servers` is empty.
    pub(crate) fn resolv_conf_in_use(&self) -> Option<&Path> {
        self.servers
            .is_empty()
            .then_some(self.resolv_conf.as_path())
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(800),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// An `--upstream` or `[upstream] servers` entry that cannot be used.
    #[error("bad upstream {spec:?}: {reason}")]
    BadSpec {
        /// The entry as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error("no upstream: {path} lists no usable nameserver; set --upstream or [upstream] servers")]
    /// The resolv.conf lists no nameserver we can use.
    NoneUsable {
        /// The resolv.conf read.
        path: String,
    },
    /// `/etc/resolv.conf` (or the given file) could not be read.
    #[error("cannot read {path}: {source}; set --upstream or [upstream] servers")]
    ResolvConf {
        /// The file that could not be read.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A TLS client config could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// No upstream answered; the text lists why, per upstream.
    #[error("every upstream failed: {0}")]
    Failed(String),
    /// No upstream answered in time.
    #[error("upstream timed out")]
    Timeout,
    /// The caller's deadline ([`Upstreams::resolve`]) passed first.
    #[error("the deadline passed")]
    Deadline,
}

/// How to reach one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// `IP[:PORT]`: UDP, TCP when the answer is truncated.
    Plain(SocketAddr),
    /// `tcp://IP:PORT`
    Tcp(SocketAddr),
    /// `tls://IP:PORT#server-name` (DNS over TLS)
    Tls {
        /// Address of the DoT server.
        addr: SocketAddr,
        /// Name its certificate must carry.
        server_name: String,
    },
    /// `https://IP[:PORT]/path#server-name` (DNS over HTTPS)
    Https {
        /// Address of the DoH server.
        addr: SocketAddr,
        /// URL path of the DoH endpoint (`/dns-query`).
        path: String,
        /// Name its certificate must carry.
        server_name: String,
    },
}

impl UpstreamSpec {
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            UpstreamSpec::Plain(a) | UpstreamSpec::Tcp(a) => *a,
            UpstreamSpec::Tls { addr, .. } | UpstreamSpec::Https { addr, .. } => *addr,
        }
    }

    /// The pool's view of this upstream. A plain upstream is asked over UDP by
    /// [`udp`], so its pool only asks over TCP (after a truncated reply).
    fn name_server(&self) -> NameServerConfig {
        let addr = self.addr();
        let mut conns = match self {
            UpstreamSpec::Plain(_) | UpstreamSpec::Tcp(_) => vec![ConnectionConfig::tcp()],
            UpstreamSpec::Tls { server_name, .. } => {
                vec![ConnectionConfig::new(ProtocolConfig::Tls {
                    server_name: Arc::from(server_name.as_str()),
                })]
            }
            UpstreamSpec::Https {
                path, server_name, ..
            } => vec![ConnectionConfig::new(ProtocolConfig::Https {
                server_name: Arc::from(server_name.as_str()),
                path: Arc::from(path.as_str()),
            })],
        };
        // The constructors pick the protocol's default port; ours is in the spec.
        for c in &mut conns {
            c.port = addr.port();
        }
        NameServerConfig::new(addr.ip(), true, conns)
    }
}

fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{s:?} is not IP[:PORT] (host names are not allowed: the resolver cannot look itself up)"))
}

impl FromStr for UpstreamSpec {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| UpstreamError::BadSpec {
            spec: s.to_string(),
            reason,
        };
        let (body, fragment) = match s.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (s, None),
        };
        let need_name = |proto: &str| -> Result<String, UpstreamError> {
            match fragment {
                Some(n) if !n.is_empty() => Ok(n.to_string()),
                _ => Err(bad(format!(
                    "{proto} needs the server's TLS name after '#'"
                ))),
            }
        };
        if let Some(rest) = body.strip_prefix("tcp://") {
            Ok(UpstreamSpec::Tcp(parse_addr(rest, 53).map_err(bad)?))
        } else if let Some(rest) = body.strip_prefix("tls://") {
            Ok(UpstreamSpec::Tls {
                addr: parse_addr(rest, 853).map_err(bad)?,
                server_name: need_name("tls://")?,
            })
        } else if let Some(rest) = body.strip_prefix("https://") {
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/dns-query"),
            };
            Ok(UpstreamSpec::Https {
                addr: parse_addr(host, 443).map_err(bad)?,
                path: path.to_string(),
                server_name: need_name("https://")?,
            })
        } else if body.contains("://") {
            Err(bad("scheme must be tcp://, tls:// or https://".into()))
        } else if fragment.is_some() {
            Err(bad(
                "a '#server-name' only goes with tls:// or https://".into()
            ))
        } else {
            Ok(UpstreamSpec::Plain(parse_addr(body, 53).map_err(bad)?))
        }
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamSpec::Plain(a) => write!(f, "{a}"),
            UpstreamSpec::Tcp(a) => write!(f, "tcp://{a}"),
            UpstreamSpec::Tls { addr, server_name } => write!(f, "tls://{addr}#{server_name}"),
            UpstreamSpec::Https {
                addr,
                path,
                server_name,
            } => write!(f, "https://{addr}{path}#{server_name}"),
        }
    }
}

impl Serialize for UpstreamSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UpstreamSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::deserialize_from_str(d)
    }
}

/// The nameservers of a resolv.conf, minus any that is one of `own` (never forward to
/// ourselves).
pub(crate) fn from_resolv_conf(
    path: &Path,
    own: &[SocketAddr],
) -> Result<Vec<UpstreamSpec>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpstreamError::ResolvConf {
        path: path.display().to_string(),
        source,
    })?;
    let servers: Vec<UpstreamSpec> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !is_own(a, own))
        .map(UpstreamSpec::Plain)
        .collect();
    if servers.is_empty() {
        return Err(UpstreamError::NoneUsable {
            path: path.display().to_string(),
        });
    }
    Ok(servers)
}

/// Whether `a` is one of the listen addresses `own` (a wildcard listener covers the
/// loopback and every address of its family).
pub(crate) fn is_own(a: &SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|l| {
        l.port() == a.port()
            && (l.ip() == a.ip()
                || (l.ip().is_unspecified()
                    && (a.ip().is_loopback() || l.is_ipv4() == a.is_ipv4())))
    })
}

/// One upstream of [`Upstreams`]: how to reach it, its connections, its health.
struct Upstream {
    spec: UpstreamSpec,
    pool: NameServerPool<TokioRuntimeProvider>,
    /// Consecutive failures; a failing server is tried after the healthy ones.
    failures: AtomicU32,
    /// Its failures are logged at WARN at most once a minute.
    warn: Mutex<LogEvery>,
}

impl Upstream {
    /// One exchange with this upstream. A plain one is asked over UDP directly
    /// ([`udp`]), and over TCP through its pool when the reply was truncated; the
    /// others (TCP, DoT, DoH) through their pool.
    async fn query(
        &self,
        name: &Name,
        qtype: RecordType,
        bits: DnssecBits,
    ) -> Result<Answer, NetError> {
        let request = request(name, qtype, bits);
        if let UpstreamSpec::Plain(addr) = self.spec {
            match udp::exchange(addr, &request).await? {
                udp::Reply::Message(msg) => return answer_of(msg),
                udp::Reply::Truncated => {}
            }
        }
        query(&self.pool, request).await
    }

    /// Count one failure at `now`; whether to log it at WARN (once a minute).
    fn failed(&self, cause: &dyn fmt::Display, now: Instant) -> LogChoice {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let choice = match self.warn.lock() {
            Ok(mut w) => w.occurred(now),
            Err(_) => LogChoice::Quiet,
        };
        if choice == LogChoice::Quiet {
            tracing::debug!(upstream = %self.spec, error = %cause, "upstream failed");
        }
        choice
    }

    /// The address, TLS name and ALPN of a DoT or DoH upstream.
    fn tls_target(&self) -> Option<(SocketAddr, String, &'static [u8])> {
        match &self.spec {
            UpstreamSpec::Tls { addr, server_name } => Some((*addr, server_name.clone(), b"dot")),
            UpstreamSpec::Https {
                addr, server_name, ..
            } => Some((*addr, server_name.clone(), b"h2")),
            _ => None,
        }
    }
}

/// The WARN line for a failure of `spec`, or `None` when this one is only counted.
fn failure_line(spec: &UpstreamSpec, cause: &dyn fmt::Display, v: LogChoice) -> Option<String> {
    match v {
        LogChoice::Quiet => None,
        LogChoice::Log { more: 0, .. } => Some(format!("upstream {spec} failed: {cause}")),
        LogChoice::Log { more, since } => Some(format!(
            "upstream {spec} failed: {cause} ({more} more failure{} in the last {})",
            if more == 1 { "" } else { "s" },
            lograte::round(since.unwrap_or_default()),
        )),
    }
}

/// The configured upstreams, tried in order of health until one answers.
#[derive(Clone)]
pub struct Upstreams {
    servers: Arc<[Upstream]>,
    attempt_timeout: Duration,
    /// The DoT/DoH client config, for diagnosing a failed handshake in the log.
    tls: Arc<rustls::ClientConfig>,
}

impl Upstreams {
    /// The upstreams of `specs`; DoT and DoH trust the default roots plus `[tls] ca_file`.
    pub fn new(
        specs: &[UpstreamSpec],
        cfg: &UpstreamConfig,
        tls: &crate::tls::TlsConfig,
    ) -> Result<Upstreams, UpstreamError> {
        Self::with_tls(specs, cfg, tls.rustls_client())
    }

    /// Like [`Upstreams::new`] with a TLS client config of the caller's.
    pub fn with_tls(
        specs: &[UpstreamSpec],
        cfg: &UpstreamConfig,
        tls: rustls::ClientConfig,
    ) -> Result<Upstreams, UpstreamError> {
        let servers = specs
            .iter()
            .map(|spec| {
                let mut opts = ResolverOpts::default();
                opts.timeout = cfg.attempt_timeout;
                opts.attempts = 1;
                opts.num_concurrent_reqs = 1;
                opts.cache_size = 0;
                opts.ndots = 0;
                opts.edns_payload_len = EDNS_PAYLOAD;
                opts.case_randomization = false;
                let mut cx = PoolContext::new(
                    opts,
                    TlsConfig::new().map_err(|e| UpstreamError::Tls(e.to_string()))?,
                );
                cx.tls = tls.clone();
                let pool = NameServerPool::from_config(
                    [spec.name_server()],
                    Arc::new(cx),
                    TokioRuntimeProvider::default(),
                );
                Ok(Upstream {
                    spec: spec.clone(),
                    pool,
                    failures: AtomicU32::new(0),
                    warn: Mutex::new(LogEvery::new()),
                })
            })
            .collect::<Result<Vec<_>, UpstreamError>>()?;
        Ok(Upstreams {
            servers: servers.into(),
            attempt_timeout: cfg.attempt_timeout,
            tls: Arc::new(tls),
        })
    }

    /// Log the failure `e` of `server` at WARN when `choice` says so. hickory's pool
    /// reports a failed TLS handshake (an untrusted certificate) only as "no connections
    /// available": then a handshake of our own, in a task of its own, finds the cause.
    fn warn(&self, server: &Upstream, e: &NetError, choice: LogChoice) {
        if choice == LogChoice::Quiet {
            return;
        }
        let Some((addr, name, alpn)) = server
            .tls_target()
            .filter(|_| matches!(e, NetError::NoConnections))
        else {
            if let Some(line) = failure_line(&server.spec, e, choice) {
                tracing::warn!("{line}");
            }
            return;
        };
        let (spec, tls, timeout) = (server.spec.clone(), self.tls.clone(), self.attempt_timeout);
        let cause = e.to_string();
        tokio::spawn(async move {
            let cause = match crate::tls::handshake_error(addr, &name, alpn, &tls, timeout).await {
                Some(why) => format!("{cause}: {why}"),
                None => cause,
            };
            if let Some(line) = failure_line(&spec, &cause, choice) {
                tracing::warn!("{line}");
            }
        });
    }

    pub(crate) fn specs(&self) -> impl Iterator<Item = &UpstreamSpec> {
        self.servers.iter().map(|s| &s.spec)
    }

    /// Resolve `name`/`qtype` with the client's DO and CD bits, trying each upstream in
    /// turn (healthy ones first), until `deadline`: an attempt ends at its own timeout
    /// (`[upstream] attempt_timeout`) or at the deadline, whichever is sooner, so a
    /// forward keeps one timer at a time (a timer around the whole call was a second one
    /// per forward). Past the deadline the error is [`UpstreamError::Deadline`], and the
    /// upstream then asked is not counted as failed: it was cut short, not slow.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        bits: DnssecBits,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, UpstreamError> {
        let mut order: Vec<usize> = (0..self.servers.len()).collect();
        // A total order (the key ends in a unique field): an unstable sort gives the same order with less code (the 8 MiB gate).
        order.sort_unstable_by_key(|&i| (self.servers[i].failures.load(Ordering::Relaxed) > 0, i));
        let mut last = UpstreamError::Failed("no upstream configured".into());
        for i in order {
            let server = &self.servers[i];
            let now = tokio::time::Instant::now();
            let own = now + self.attempt_timeout;
            // Whether this attempt ends at the caller's deadline rather than its own.
            let (until, cut) = if deadline <= own {
                (deadline, true)
            } else {
                (own, false)
            };
            if cut && until <= now {
                return Err(UpstreamError::Deadline);
            }
            let result = tokio::time::timeout_at(until, server.query(name, qtype, bits)).await;
            match result {
                Ok(Ok(answer)) => {
                    server.failures.store(0, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(Err(e)) => {
                    let choice = server.failed(&e, Instant::now());
                    self.warn(server, &e, choice);
                    last = UpstreamError::Failed(format!("{}: {e}", server.spec));
                }
                Err(_) if cut => return Err(UpstreamError::Deadline),
                Err(_) => {
                    let cause = format!(
                        "no answer within {}",
                        humantime::format_duration(self.attempt_timeout)
                    );
                    let choice = server.failed(&cause, Instant::now());
                    if let Some(line) = failure_line(&server.spec, &cause, choice) {
                        tracing::warn!("{line}");
                    }
                    last = UpstreamError::Timeout;
                }
            }
        }
        Err(last)
    }
}

/// The answer a client should see in a reply (read by [`udp::exchange`] or the pool):
/// every section and the AD bit as sent. SERVFAIL is this upstream's failure (the next
/// one is tried), as the pool reports it.
fn answer_of(msg: Message) -> Result<Answer, NetError> {
    if msg.metadata.response_code == ResponseCode::ServFail {
        return Err(NetError::Dns(DnsError::ResponseCode(
            ResponseCode::ServFail,
        )));
    }
    Ok(Answer {
        rcode: msg.metadata.response_code,
        answers: msg.answers,
        authorities: msg.authorities,
        additionals: msg.additionals,
        authentic: msg.metadata.authentic_data,
    })
}

/// What we ask an upstream, over UDP (`udp`) or through a pool: `name`/`qtype` under a
/// random ID with RD, our EDNS payload, and the client's DO (in our OPT record) and CD
/// bits.
fn request(name: &Name, qtype: RecordType, bits: DnssecBits) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = true;
    options.use_edns = true;
    options.edns_payload_len = EDNS_PAYLOAD;
    options.edns_set_dnssec_ok = bits.dnssec_ok;
    // `lookup` has no CD bit: build the request and `send` it (what `lookup` does).
    let mut request = DnsRequest::from_query(Query::query(name.clone(), qtype), options);
    request.metadata.checking_disabled = bits.checking_disabled;
    request
}

/// One exchange with one pool, mapped to the answer a client should see. The pool
/// validates nothing and strips nothing, so RRSIG, NSEC, NSEC3 and DS records come back
/// in every section.
async fn query(
    pool: &NameServerPool<TokioRuntimeProvider>,
    request: DnsRequest,
) -> Result<Answer, NetError> {
    let mut stream = pool.send(request);
    let response = match stream.next().await {
        Some(r) => r,
        None => return Err(NetError::from("upstream closed without an answer")),
    };
    match response {
        Ok(resp) => answer_of(resp.into_message()),
        // A negative answer comes as this error, which keeps the authority section
        // (SOA, NSEC/NSEC3 and their RRSIGs) but not the header's AD bit nor the
        // additional section: such answers are relayed without AD (from TCP, DoT and
        // DoH upstreams; a plain upstream's UDP reply is read whole by `udp`).
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => Ok(Answer {
            rcode: nr.response_code,
            authorities: nr.authorities.map(|a| a.to_vec()).unwrap_or_default(),
            ..Answer::default()
        }),
        Err(NetError::Dns(DnsError::ResponseCode(code))) if code != ResponseCode::ServFail => {
            Ok(Answer {
                rcode: code,
                ..Answer::default()
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spec_form() {
        assert_eq!(
            "1.1.1.1".parse::<UpstreamSpec>().unwrap(),
            UpstreamSpec::Plain("1.1.1.1:53".parse().unwrap())
        );
        assert_eq!(
            "127.0.0.1:5300".parse::<UpstreamSpec>().unwrap(),
            UpstreamSpec::Plain("127.0.0.1:5300".parse().unwrap())
        );
        assert_eq!(
            "[::1]:53".parse::<UpstreamSpec>().unwrap(),
            UpstreamSpec::Plain("[::1]:53".parse().unwrap())
        );
        assert_eq!(
            "::1".parse::<UpstreamSpec>().unwrap(),
            UpstreamSpec::Plain("[::1]:53".parse().unwrap())
        );
        assert_eq!(
            "tcp://9.9.9.9:53".parse::<UpstreamSpec>().unwrap(),
            UpstreamSpec::Tcp("9.9.9.9:53".parse().unwrap())
        );
        assert_eq!(
            "tls://1.1.1.1:853#cloudflare-dns.com"
                .parse::<UpstreamSpec>()
                .unwrap(),
            UpstreamSpec::Tls {
                addr: "1.1.1.1:853".parse().unwrap(),
                server_name: "cloudflare-dns.com".into()
            }
        );
        let doh: UpstreamSpec = "https://1.1.1.1/dns-query#cloudflare-dns.com"
            .parse()
            .unwrap();
        assert_eq!(doh.addr().port(), 443);
        assert_eq!(
            doh.to_string(),
            "https://1.1.1.1:443/dns-query#cloudflare-dns.com"
        );
        for bad in [
            "dns.google",
            "tls://1.1.1.1:853",
            "udp://1.1.1.1",
            "1.1.1.1#name",
            "https://x/dns-query#n",
        ] {
            assert!(
                bad.parse::<UpstreamSpec>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn failures_are_logged_once_a_minute_with_the_count() {
        let spec: UpstreamSpec = "tls://127.0.0.1:853#x".parse().unwrap();
        let cause = "invalid peer certificate: UnknownIssuer";
        let t0 = Instant::now();
        let mut every = LogEvery::new();
        let mut lines = Vec::new();
        // A failure every second for two minutes and a half.
        for s in 0..150 {
            lines.extend(failure_line(
                &spec,
                &cause,
                every.occurred(t0 + Duration::from_secs(s)),
            ));
        }
        assert_eq!(
            lines,
            [
                "upstream tls://127.0.0.1:853#x failed: invalid peer certificate: UnknownIssuer",
                "upstream tls://127.0.0.1:853#x failed: invalid peer certificate: UnknownIssuer \
                 (59 more failures in the last 1m)",
                "upstream tls://127.0.0.1:853#x failed: invalid peer certificate: UnknownIssuer \
                 (59 more failures in the last 1m)",
            ]
        );
    }

    /// The caller's deadline ends the attempt it falls in (one timer per attempt, none
    /// around the call), and that upstream is not counted as failed; an attempt that
    /// times out before the deadline still fails its upstream over to the next.
    /// (Paused time: each wait ends the moment nothing else can happen.)
    #[tokio::test(start_paused = true)]
    async fn the_deadline_cuts_an_attempt_short_without_failing_its_upstream() {
        // Two upstreams that take queries and never answer.
        let silent = [(); 2].map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let specs: Vec<UpstreamSpec> = silent
            .iter()
            .map(|s| UpstreamSpec::Plain(s.local_addr().unwrap()))
            .collect();
        let cfg = UpstreamConfig {
            attempt_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let ups = Upstreams::new(&specs, &cfg, &Default::default()).unwrap();
        let name = Name::from_ascii("www.example.com.").unwrap();
        let failures = |i: usize| ups.servers[i].failures.load(Ordering::Relaxed);
        let ask = |within: Duration| {
            let t = tokio::time::Instant::now();
            let ask = ups.resolve(&name, RecordType::A, Default::default(), t + within);
            async move { (ask.await, t.elapsed()) }
        };
        let ms = Duration::from_millis;

        // The deadline (2 s) comes before the attempt's own timeout (30 s).
        let (got, took) = ask(ms(2_000)).await;
        assert!(matches!(got, Err(UpstreamError::Deadline)), "{got:?}");
        assert!(took >= ms(2_000) && took < ms(2_010), "{took:?}");
        assert_eq!((failures(0), failures(1)), (0, 0));

        // 45 s: the first upstream's 30 s run out (it fails over), then the deadline
        // cuts the second one's attempt short.
        let (got, took) = ask(ms(45_000)).await;
        assert!(matches!(got, Err(UpstreamError::Deadline)), "{got:?}");
        assert!(took >= ms(45_000) && took < ms(45_010), "{took:?}");
        assert_eq!((failures(0), failures(1)), (1, 0));

        // With a deadline past both attempts each takes its 30 s, and both fail (the
        // healthy second one is asked first).
        let (got, took) = ask(ms(600_000)).await;
        assert!(matches!(got, Err(UpstreamError::Timeout)), "{got:?}");
        assert!(took >= ms(60_000), "{took:?}");
        assert_eq!((failures(0), failures(1)), (2, 1));
    }

    #[test]
    fn resolv_conf_skips_ourselves() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "# c\nnameserver 127.0.0.1\nnameserver fe80::1%eth0\nnameserver 192.0.2.53\noptions ndots:1\n").unwrap();
        let own: Vec<SocketAddr> = vec!["127.0.0.1:53".parse().unwrap()];
        let got = from_resolv_conf(&p, &own).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            UpstreamSpec::Plain("192.0.2.53:53".parse().unwrap())
        );
        std::fs::write(&p, "nameserver 127.0.0.1\n").unwrap();
        assert!(matches!(
            from_resolv_conf(&p, &own),
            Err(UpstreamError::NoneUsable { .. })
        ));
    }
}
