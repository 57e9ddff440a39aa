//! `metaguard serve`: binds the listeners, builds the hot snapshot (config, filter,
//! policy, upstreams), swaps it on SIGHUP and drains in-flight queries on SIGTERM.

mod decide;
mod handler;
mod inflight;
mod mmsg;
mod notify;
mod refused;
pub mod response;
mod rlimit;
mod sockets;
mod tcp;
mod tcp_slots;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use handler::Handler;

use crate::access::{self, Access, Admit, RateLimitConfig, default_allow_clients};
use crate::cache::Cache;
use crate::clients::{Clients, ClientsError};
use crate::config::{Config, ConfigError, Overrides};
use crate::filter::Filter;
use crate::lists::{self, ListError};
use crate::metrics::{self, Metrics, MetricsError};
use crate::policy::Policy;
use crate::stats::{self, Stats};
use crate::store::{self, WriterHandle};
use crate::upstream::{self, UpstreamError, Upstreams};
use crate::wire;

/// `[server]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to answer on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Client networks that get answers; everyone else gets REFUSED. Unset: loopback,
    /// the private and link-local ranges, and the subnets of this host's interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_clients: Option<Vec<IpNet>>,
    pub rate_limit: RateLimitConfig,
    /// UDP queries being answered at once (one client: an eighth); past it new ones
    /// are dropped and counted. TCP queries of one listener are held to it as well
    /// (past it they wait, like a full pipeline).
    pub max_udp_in_flight: usize,
    /// Open TCP connections, in total and from one client address (the latter is held
    /// to at most half the total). At a cap the longest-idle one is closed for the new.
    pub max_tcp_connections: usize,
    pub max_tcp_connections_per_client: usize,
    /// A TCP connection that sends no query for this long is closed; also the
    /// deadline of each write and of each wait for a pipeline slot.
    #[serde(with = "humantime_serde")]
    pub tcp_idle_timeout: Duration,
    /// Queries on one TCP connection before it is closed.
    pub max_tcp_queries_per_connection: usize,
    /// Threads answering queries; 0 means one per CPU. One is the default: each UDP
    /// socket's loop answers blocked and cached queries itself (133k qps at 6.2 µs CPU
    /// per query on the 2-core bench box), so more threads only help queries waiting on
    /// the upstream, and work stealing between threads cost more than it gave.
    pub threads: usize,
    /// DNS-rebinding protection: an upstream answer for a name outside `rebind_allow`
    /// that holds a private, loopback or link-local address is answered NXDOMAIN.
    pub rebind_protection: bool,
    /// Domains (and their subdomains) whose answers may hold private addresses.
    pub rebind_allow: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], 5335)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5335)),
            ],
            allow_clients: None,
            rate_limit: RateLimitConfig::default(),
            max_udp_in_flight: 2048,
            max_tcp_connections: 256,
            max_tcp_connections_per_client: 32,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_queries_per_connection: 1000,
            rebind_protection: false,
            rebind_allow: ["local", "lan", "home.arpa"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            threads: 1,
        }
    }
}

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lists(#[from] ListError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Clients(#[from] ClientsError),
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("no listen address configured")]
    NoListen,
}

/// Everything a query reads, built once per (re)load and swapped whole.
pub struct Snapshot {
    pub config: Config,
    pub filter: Filter,
    pub policy: Policy,
    pub upstreams: Upstreams,
    pub access: Access,
    pub clients: Arc<Clients>,
    pub deadline: Duration,
    /// `[server] rebind_allow`, normalized once for [`decide`].
    pub rebind_allow: Vec<String>,
}

impl Snapshot {
    /// Build from a config: read the lists, compile the filter, set up upstreams.
    /// `own` are the addresses we listen on (never used as upstream).
    /// `starting`: a resolv.conf with no usable nameserver (not written yet at boot, or
    /// naming only ourselves) gives no upstream instead of an error, as dnsmasq starts
    /// and waits for one; on reload it is an error and the running snapshot stays.
    pub fn build(
        config: Config,
        own: &[SocketAddr],
        starting: bool,
    ) -> Result<Snapshot, ServeError> {
        let filter = Filter::build(lists::all_sources(&config)?);
        let policy = Policy::new(
            filter.categories(),
            filter.list_defaults(),
            &config.categories,
            &config.groups,
        );
        let specs = if let Some(resolv_conf) = config.upstream.resolv_conf_in_use() {
            match upstream::from_resolv_conf(resolv_conf, own) {
                Ok(specs) => specs,
                Err(e @ (UpstreamError::NoneUsable { .. } | UpstreamError::ResolvConf { .. }))
                    if starting =>
                {
                    tracing::warn!(
                        "{e}. Until it has one, blocked names are answered and the rest get \
                         SERVFAIL; the file is read again when it changes"
                    );
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            config.upstream.servers.clone()
        };
        let upstreams = Upstreams::new(&specs, &config.upstream, &config.tls)?;
        let access = Access::new(&allowed_clients(&config.server), &config.server.rate_limit);
        let clients = Arc::new(Clients::new(&config.devices, &config.clients)?);
        Ok(Snapshot {
            clients,
            deadline: config.upstream.deadline,
            rebind_allow: decide::normalize_rebind_allow(&config.server.rebind_allow),
            config,
            filter,
            policy,
            upstreams,
            access,
        })
    }

    /// One INFO line with the rule counts per category.
    fn log_loaded(&self, what: &str) {
        let mut per_cat: Vec<(String, usize)> = Vec::new();
        for l in self.filter.lists() {
            match per_cat.iter_mut().find(|(c, _)| *c == l.category) {
                Some((_, n)) => *n += l.rules,
                None => per_cat.push((l.category.clone(), l.rules)),
            }
            if l.bad_lines > 0 {
                tracing::warn!(list = %l.name, bad_lines = l.bad_lines, "skipped unreadable lines");
            }
        }
        let detail = per_cat
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ups = self
            .upstreams
            .specs()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let ups = if ups.is_empty() { "none".into() } else { ups };
        tracing::info!(
            "{what} {} rules from {} lists ({detail}); upstream {ups}",
            self.filter.rule_count(),
            self.filter.lists().len()
        );
    }
}

/// `allow_clients` when set; else the default networks and the subnets of this host's
/// interfaces (read now: at start and on each reload), which are logged.
fn allowed_clients(server: &ServerConfig) -> Vec<IpNet> {
    if let Some(explicit) = &server.allow_clients {
        return explicit.clone();
    }
    let mut allow = default_allow_clients();
    let local = access::interface_subnets(&allow);
    if !local.is_empty() {
        let shown = local
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            "allow_clients is not set: answering loopback, the private and link-local \
             networks, and this host's subnets {shown}"
        );
    }
    allow.extend(local);
    allow
}

/// What the listeners share.
pub(crate) struct Shared {
    handler: Handler,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Stops the device-table refresher of the current snapshot (replaced on reload).
    refresher: std::sync::Mutex<CancellationToken>,
    /// Queries refused for their source, logged once a minute with counts.
    refused: refused::RefusedLog,
}

impl Shared {
    /// Start refreshing the device tables of `clients`, stopping the previous refresher.
    fn refresh_clients(&self, clients: &Arc<Clients>) {
        let token = self.shutdown.child_token();
        clients.spawn_refresher(token.clone());
        if let Ok(mut old) = self.refresher.lock() {
            std::mem::replace(&mut *old, token).cancel();
        }
    }

    /// The counters as JSON for `metaguard status` (written to the DB by the logger).
    fn status_json(&self, started: Instant, started_unix: i64) -> String {
        let mut s = self.stats.snapshot();
        s.events_dropped = self.handler.logger.dropped();
        serde_json::json!({
            "pid": std::process::id(),
            "started": started_unix,
            "uptime_s": started.elapsed().as_secs(),
            "updated": unix_now(),
            "cache_entries": self.handler.cache.len(),
            "stats": s,
        })
        .to_string()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Shared {
    /// Answer one raw packet from `src`, or `None` to stay silent.
    async fn answer(&self, packet: Vec<u8>, src: SocketAddr, proto: Protocol) -> Option<Vec<u8>> {
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            // Not a query (too short, or a response: never answer those; no reflection).
            Stats::inc(&self.stats.malformed);
            return None;
        }
        // A borrowed look at the snapshot: the handler takes its own owned copy, so
        // this check needs no second Arc clone per query.
        let admit = self.admit(&self.handler.state.load(), src)?;
        self.answer_admitted(packet, src, proto, admit).await
    }

    /// Whether `src` gets an answer; `None` (counted) when it is over its rate.
    fn admit(&self, snap: &Snapshot, src: SocketAddr) -> Option<Admit> {
        let admit = snap.access.admit(src.ip());
        if admit == Admit::RateLimited {
            Stats::inc(&self.stats.rate_limited);
            return None;
        }
        Some(admit)
    }

    /// [`Shared::answer`] once access was decided.
    async fn answer_admitted(
        &self,
        packet: Vec<u8>,
        src: SocketAddr,
        proto: Protocol,
        admit: Admit,
    ) -> Option<Vec<u8>> {
        let header: [u8; 12] = packet[..12].try_into().ok()?;
        let request = match Request::from_bytes(packet, src, proto) {
            Ok(r) => r,
            Err(e) => {
                Stats::inc(&self.stats.malformed);
                tracing::debug!(%src, error = %e, "malformed query");
                return if admit == Admit::Yes {
                    response::formerr_from_header(&header)
                } else {
                    None
                };
            }
        };
        let max = match proto {
            Protocol::Udp => response::udp_limit(request.edns.as_ref().map(|e| e.max_payload())),
            _ => u16::MAX,
        };
        let reply = if admit == Admit::Refused {
            Stats::inc(&self.stats.refused);
            self.refused.refused(src.ip(), Instant::now());
            response::Reply::error(hickory_proto::op::ResponseCode::Refused)
        } else {
            // An owned snapshot: a reload during the upstream wait does not disturb it.
            let snap = self.handler.state.load_full();
            self.handler.resolve(&snap, &request).await
        };
        response::encode(&request, &reply, max).await
    }
}

/// What [`Shared::answer_fast`] did with a packet.
pub(crate) enum Fast {
    /// The answer is in `out`.
    Answered,
    /// Nothing to send (rate limited).
    Silent,
    /// The full path must answer it; access was already decided.
    Full(Admit),
    /// Not a common query: the full path must answer it from the start.
    NotCommon,
}

impl Shared {
    /// Answer a common query (see [`crate::wire`]) inline into `out`, without a task,
    /// hickory or allocations when it is blocked or cached. `name` is scratch space.
    fn answer_fast(
        &self,
        packet: &[u8],
        src: SocketAddr,
        name: &mut String,
        out: &mut Vec<u8>,
    ) -> Fast {
        let Some(q) = wire::Query::parse(packet, name) else {
            return Fast::NotCommon;
        };
        let snap = self.handler.state.load();
        match self.admit(&snap, src) {
            None => Fast::Silent,
            Some(Admit::Yes) if self.handler.inline(&snap, &q, name, src.ip(), out) => {
                Fast::Answered
            }
            Some(admit) => Fast::Full(admit),
        }
    }
}

/// A running server: its bound addresses, live counters, reload and stop.
pub struct Running {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    listeners: tokio::task::JoinSet<()>,
    started: Instant,
    started_unix: i64,
    writer: Option<WriterHandle>,
    metrics_addr: Option<SocketAddr>,
}

impl Running {
    /// The addresses actually bound (UDP and TCP share each one).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The handle the query path records metrics into.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.handler.metrics.clone()
    }

    pub fn stats(&self) -> stats::Snapshot {
        let mut s = self.shared.stats.snapshot();
        s.events_dropped = self.shared.handler.logger.dropped();
        s
    }

    /// Wait until every hit event queued so far is in the database (for tests and tools).
    pub async fn flush_log(&self) -> bool {
        let Some(w) = &self.writer else { return false };
        let w = w.flusher();
        tokio::task::spawn_blocking(move || w.flush())
            .await
            .unwrap_or(false)
    }

    /// Answers in the cache now (bounded by `[cache] size`).
    pub fn cache_len(&self) -> usize {
        self.shared.handler.cache.len()
    }

    /// Client addresses the rate limiter tracks now (bounded by `max_clients` + 1024).
    pub fn rate_limited_clients(&self) -> usize {
        self.shared.handler.state.load().access.tracked_clients()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The resolv.conf the upstreams come from, when `[upstream] servers` is empty.
    pub fn resolv_conf(&self) -> Option<PathBuf> {
        let snap = self.shared.handler.state.load();
        snap.config.upstream.resolv_conf_in_use().map(PathBuf::from)
    }

    /// Swap in a new config. On error the running one stays and the error is returned.
    pub fn reload(&self, config: Config) -> Result<(), ServeError> {
        config.validate()?;
        let snap = Arc::new(Snapshot::build(config, &self.addrs, false)?);
        self.shared.refresh_clients(&snap.clients);
        self.shared.handler.state.store(snap.clone());
        self.shared.handler.cache.clear();
        let export = &snap.config.export;
        self.shared
            .handler
            .export
            .configure(export, snap.config.filter.block_response);
        // Only now: whoever reads this line may rely on the new lists being in force.
        snap.log_loaded("reloaded:");
        Ok(())
    }

    /// Stop accepting, let in-flight queries finish (bounded), then return.
    pub async fn stop(mut self) {
        self.shared.shutdown.cancel();
        while self.listeners.join_next().await.is_some() {}
        self.shared.tracker.close();
        if tokio::time::timeout(Duration::from_millis(1500), self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: some queries were still in flight and were dropped");
        }
        // Every answered query has handed its event over; write them all.
        self.shared
            .handler
            .export
            .stop(Duration::from_secs(2))
            .await;
        let status = self.shared.status_json(self.started, self.started_unix);
        self.shared.handler.logger.status(status);
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.shutdown()).await;
        }
    }
}

/// Bind UDP and TCP on `addr`; with port 0, both get the same free port. `listen` is
/// the whole list, which decides whether an IPv6 wildcard is v6-only (see [`sockets`]).
async fn bind(
    addr: SocketAddr,
    listen: &[SocketAddr],
) -> Result<(UdpSocket, TcpListener), ServeError> {
    let v6_only = sockets::v6_only(addr, listen);
    for _ in 0..20 {
        let udp = sockets::udp(addr, v6_only).map_err(|source| ServeError::Bind {
            addr,
            proto: "udp",
            source,
        })?;
        let local = udp.local_addr().map_err(|source| ServeError::Bind {
            addr,
            proto: "udp",
            source,
        })?;
        match sockets::tcp(local, v6_only) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if addr.port() == 0 => continue,
            Err(source) => {
                return Err(ServeError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        }
    }
    Err(ServeError::Bind {
        addr,
        proto: "tcp",
        source: std::io::Error::other("no port free for both UDP and TCP"),
    })
}

/// Whether a failed bind on `addr` only says that this host runs without IPv6 (the
/// kernel has no IPv6, or it is disabled and `::1` does not exist). For the IPv6
/// loopback and wildcard, which the default config lists next to 127.0.0.1, that skips
/// the address with a warning, as dnsmasq and Pi-hole start on IPv4-only hosts; any
/// other address that cannot be bound stops the start.
fn ipv6_missing(addr: SocketAddr, e: &std::io::Error) -> bool {
    let std::net::IpAddr::V6(ip) = addr.ip() else {
        return false;
    };
    (ip.is_loopback() || ip.is_unspecified())
        && (e.kind() == std::io::ErrorKind::AddrNotAvailable
            || e.raw_os_error() == Some(libc::EAFNOSUPPORT))
}

/// Build the snapshot, bind every listen address and start answering.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    if config.server.listen.is_empty() {
        return Err(ServeError::NoListen);
    }
    // A config from a file was checked with its places; flags and code come here.
    config.validate()?;
    let mut bound = Vec::new();
    let mut no_ipv6 = None;
    for addr in &config.server.listen {
        match bind(*addr, &config.server.listen).await {
            Ok(b) => bound.push(b),
            Err(ServeError::Bind {
                addr,
                proto,
                source,
            }) if ipv6_missing(addr, &source) => {
                tracing::warn!("IPv6 is off on this host: not listening on {addr} ({source})");
                no_ipv6.get_or_insert(ServeError::Bind {
                    addr,
                    proto,
                    source,
                });
            }
            Err(e) => return Err(e),
        }
    }
    // Nothing bound at all: that is an error even when IPv6 is why.
    if bound.is_empty()
        && let Some(e) = no_ipv6
    {
        return Err(e);
    }
    let addrs: Vec<SocketAddr> = bound
        .iter()
        .filter_map(|(u, _)| u.local_addr().ok())
        .collect();
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let server_cfg = config.server.clone();
    let snap = Snapshot::build(config, &addrs, true)?;
    snap.log_loaded("loaded");
    let (logger, writer) = store::start(&snap.config.store);
    let stats = Arc::new(Stats::default());
    let shutdown = CancellationToken::new();
    let clients = snap.clients.clone();
    let shared = Arc::new(Shared {
        handler: Handler {
            cache: Cache::new(&snap.config.cache),
            state: Arc::new(ArcSwap::from_pointee(snap)),
            stats: stats.clone(),
            logger,
            metrics: Arc::new(Metrics::new()),
            export: crate::export::Export::new(stats.clone()),
        },
        stats,
        refresher: std::sync::Mutex::new(shutdown.child_token()),
        refused: refused::RefusedLog::default(),
        shutdown,
        tracker: TaskTracker::new(),
    });
    shared.refresh_clients(&clients);
    {
        let snap = shared.handler.state.load();
        let block = snap.config.filter.block_response;
        shared.handler.export.configure(&snap.config.export, block);
    }
    {
        let m = shared.handler.metrics.clone();
        shared
            .handler
            .logger
            .on_write(Arc::new(move |d| m.observe_db_write(d)));
    }
    let started = Instant::now();
    let started_unix = unix_now();
    {
        // `metaguard status` reads these counters from the database.
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => shared.handler.logger.status(shared.status_json(started, started_unix)),
                    _ = shared.shutdown.cancelled() => break,
                }
            }
        });
    }
    let limits = tcp::TcpLimits {
        max_connections: server_cfg.max_tcp_connections,
        // One address never holds more than half the slots, whatever the config says:
        // a client that opens connections and sits on them cannot lock the others out.
        max_per_client: server_cfg
            .max_tcp_connections_per_client
            .min((server_cfg.max_tcp_connections / 2).max(1)),
        idle_timeout: server_cfg.tcp_idle_timeout,
        max_queries_per_connection: server_cfg.max_tcp_queries_per_connection.max(1),
        pipeline: tcp::TcpLimits::PIPELINE,
        // TCP has the same in-flight budget per listener as UDP: it bounds the upstream
        // sockets (and so the open files) TCP queries can hold.
        max_in_flight: server_cfg.max_udp_in_flight,
        conn_buffer: tcp::TcpLimits::CONN_BUFFER,
        total_buffer: tcp::TcpLimits::TOTAL_BUFFER,
    };
    rlimit::raise_nofile(rlimit::files_needed(&server_cfg, addrs.len(), &limits));
    let mut listeners = tokio::task::JoinSet::new();
    for ((udp_sock, tcp_listener), addr) in bound.into_iter().zip(&addrs) {
        tracing::info!("listening on {addr} (udp, tcp)");
        listeners.spawn(udp::serve(
            Arc::new(udp_sock),
            shared.clone(),
            server_cfg.max_udp_in_flight,
        ));
        listeners.spawn(tcp::serve(tcp_listener, shared.clone(), limits));
    }
    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            if let Some(a) = addr {
                tracing::info!("metrics on http://{a}/metrics");
            }
            let s = shared.clone();
            let snapshot = move || {
                let mut snap = s.stats.snapshot();
                snap.events_dropped = s.handler.logger.dropped();
                snap
            };
            tokio::spawn(metrics::serve(
                listener,
                shared.handler.metrics.clone(),
                snapshot,
                shared.shutdown.clone(),
            ));
            addr
        }
        None => None,
    };
    Ok(Running {
        metrics_addr,
        addrs,
        shared,
        listeners,
        started,
        started_unix,
        writer: Some(writer),
    })
}

/// How often `serve` looks at resolv.conf (a stat; a read only when it changed).
const RESOLV_CONF_POLL: Duration = Duration::from_secs(2);

/// What resolv.conf looked like when last read: its path, modification time and text.
struct ResolvWatch {
    seen: Option<(PathBuf, Option<std::time::SystemTime>, Option<String>)>,
}

/// A file's modification time, `None` when it cannot be read.
fn mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ResolvWatch {
    fn new(path: Option<PathBuf>) -> ResolvWatch {
        let seen = path.map(|p| {
            let (m, t) = (mtime(&p), std::fs::read_to_string(&p).ok());
            (p, m, t)
        });
        ResolvWatch { seen }
    }

    /// Whether the upstreams must be read again: the file `path` (the running config's,
    /// `None` when `[upstream] servers` is set) has other text than last time. A stat
    /// each time; the file is read only when its modification time moved.
    fn changed(&mut self, path: Option<PathBuf>) -> bool {
        let Some(path) = path else {
            self.seen = None;
            return false;
        };
        let Some((_, seen_mtime, seen_text)) = self.seen.as_mut().filter(|(p, ..)| *p == path)
        else {
            // A config reload switched to resolv.conf (or to another one): it was read.
            *self = ResolvWatch::new(Some(path));
            return false;
        };
        let now = mtime(&path);
        if now.is_some() && now == *seen_mtime {
            return false;
        }
        *seen_mtime = now;
        let text = std::fs::read_to_string(&path).ok();
        if text == *seen_text {
            return false;
        }
        *seen_text = text;
        true
    }
}

/// The `serve` command: start, reload on SIGHUP, stop on SIGTERM/SIGINT.
pub async fn run(config_path: Option<PathBuf>, overrides: Overrides) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let load = || -> Result<Config, ServeError> {
        let (mut config, _) = Config::locate(config_path.as_deref())?;
        config.apply(&overrides);
        Ok(config)
    };
    // Handlers first: a SIGHUP that arrives while the lists load must not kill us.
    let sig = |kind| {
        signal(kind).map_err(|e| ServeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            proto: "signal",
            source: e,
        })
    };
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let config = load()?;
    // Upstreams from resolv.conf follow it, as dnsmasq does: DHCP rewrites it after
    // boot, or when the household changes router. Its text is taken before the start
    // reads it, so a change in between is seen at the first look.
    let mut resolv = ResolvWatch::new(config.upstream.resolv_conf_in_use().map(PathBuf::from));
    let running = start(config.clone()).await?;
    // Remote lists: refreshed on their schedule; a changed copy reloads like SIGHUP.
    // A reload that changes `[[lists]]` or `[remote]` restarts the refresher.
    let lists_changed = Arc::new(tokio::sync::Notify::new());
    let mut refresher = {
        let n = lists_changed.clone();
        crate::remote::Refresher::start(&config, move || n.notify_one())
    };
    // Sockets are bound and the lists loaded: tell systemd (Type=notify).
    notify::ready();
    let watchdog = notify::watchdog_interval();
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolv_tick = tokio::time::interval(RESOLV_CONF_POLL);
    resolv_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Why to reload, and whether systemd hears of it (RELOADING=1, then READY=1).
        let (why, tell_systemd) = tokio::select! {
            _ = resolv_tick.tick() => {
                if !resolv.changed(running.resolv_conf()) {
                    continue;
                }
                tracing::info!("resolv.conf changed: reloading the upstreams");
                (" after a resolv.conf change", true)
            }
            _ = lists_changed.notified() => (" after list update", false),
            _ = ping.tick(), if watchdog.is_some() => {
                notify::watchdog();
                continue;
            }
            _ = hup.recv() => ("", true),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if tell_systemd {
            notify::reloading();
        }
        // Re-read the config and swap it in; the running one stays on error.
        match load().and_then(|c| running.reload(c.clone()).map(|()| c)) {
            Ok(c) => _ = refresher.follow(&c).await,
            Err(e) => tracing::error!("reload{why} failed, keeping the running config: {e}"),
        }
        if tell_systemd {
            notify::ready();
        }
    }
    notify::stopping();
    tracing::info!("shutting down");
    refresher.stop().await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    async fn udp_ask(server: SocketAddr, name: &str) -> Option<Message> {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&query(name, 7), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Message::from_vec(&buf[..n]).ok()
    }

    async fn tcp_send(s: &mut tokio::net::TcpStream, name: &str, id: u16) {
        let q = query(name, id);
        s.write_u16(q.len() as u16).await.unwrap();
        s.write_all(&q).await.unwrap();
    }

    async fn tcp_read(s: &mut tokio::net::TcpStream) -> Message {
        let read = async {
            let len = s.read_u16().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.unwrap();
            Message::from_vec(&buf).unwrap()
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("an answer over TCP")
    }

    #[test]
    fn resolv_conf_watch_reloads_on_new_text_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        let mut w = ResolvWatch::new(Some(p.clone()));
        assert!(!w.changed(Some(p.clone())), "nothing happened");
        // DHCP rewrites the same text (a new mtime): nothing to reload.
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        assert!(!w.changed(Some(p.clone())));
        std::fs::write(&p, "nameserver 192.0.2.54\n").unwrap();
        assert!(w.changed(Some(p.clone())));
        assert!(!w.changed(Some(p.clone())), "seen once");
        // Gone (a link into a /run not mounted yet) is a change too; back again as well.
        std::fs::remove_file(&p).unwrap();
        assert!(w.changed(Some(p.clone())));
        std::fs::write(&p, "nameserver 192.0.2.54\n").unwrap();
        assert!(w.changed(Some(p.clone())));
        // `[upstream] servers` set by a reload: resolv.conf no longer matters.
        std::fs::write(&p, "nameserver 192.0.2.99\n").unwrap();
        assert!(!w.changed(None));
    }

    #[test]
    fn only_the_ipv6_loopback_and_wildcard_are_skipped_when_ipv6_is_off() {
        use std::io::{Error, ErrorKind};
        let gone = || Error::from(ErrorKind::AddrNotAvailable);
        let no_family = || Error::from_raw_os_error(libc::EAFNOSUPPORT);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(ipv6_missing(a("[::1]:53"), &gone()));
        assert!(ipv6_missing(a("[::]:53"), &no_family()));
        assert!(ipv6_missing(a("[::1]:5335"), &no_family()));
        // An address the household named is not silently dropped.
        assert!(!ipv6_missing(a("[fd00::2]:53"), &gone()));
        assert!(!ipv6_missing(a("127.0.0.1:53"), &gone()));
        // Nor is a port another program holds, or one we may not bind.
        assert!(!ipv6_missing(
            a("[::1]:53"),
            &Error::from(ErrorKind::AddrInUse)
        ));
        assert!(!ipv6_missing(
            a("[::1]:53"),
            &Error::from(ErrorKind::PermissionDenied)
        ));
    }

    /// A panic in one query task ends that task only: tokio catches it (the release
    /// profile keeps `panic = "unwind"`), the task's in-flight permit is released by
    /// unwinding, and the listeners and the other queries carry on.
    #[tokio::test]
    async fn a_panicking_query_task_does_not_stop_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        // Blocked names are answered without an upstream; this one is never asked.
        c.upstream.servers = vec!["127.0.0.1:9".parse().unwrap()];
        c.filter.lists_dir = dir.path().join("no-lists");
        c.store.db = dir.path().join("m.db");
        c.clients.neighbours = false;
        c.clients.leases = Vec::new();
        // One UDP query in flight at a time: a leaked permit would drop every later query.
        c.server.max_udp_in_flight = 1;
        let srv = start(c).await.unwrap();
        let addr = srv.addrs()[0];
        let blocked = "connect.facebook.net.";

        for _ in 0..3 {
            assert!(udp_ask(addr, "panic.metaguard.test.").await.is_none());
            let m = udp_ask(addr, blocked)
                .await
                .expect("answered after a panic");
            assert_eq!(m.answers.len(), 1);
        }

        // TCP: the connection survives a panicking query and answers the next one.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp_send(&mut s, "panic.metaguard.test.", 1).await;
        tcp_send(&mut s, blocked, 2).await;
        let m = tcp_read(&mut s).await;
        assert_eq!(m.metadata.id, 2);
        assert_eq!(m.answers.len(), 1);

        assert_eq!(srv.stats().blocked, 4);
        tokio::time::timeout(Duration::from_secs(5), srv.stop())
            .await
            .expect("stops cleanly");
    }
}
