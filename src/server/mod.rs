//! The server: [`start`] builds the `Snapshot`, binds the listeners (`sockets`) and
//! spawns the UDP and TCP loops; [`Running`] reloads (a new snapshot swapped whole) and
//! stops (drains in-flight queries). The supervisor that calls them on signals is
//! `cli/serve.rs`.

mod clock;
mod decide;
mod dispatch;
pub(crate) use dispatch::STATUS_IDLE;
mod handler;
mod housekeeping;
mod inflight;
mod liveness;
pub(crate) use liveness::Liveness;
mod mmsg;
mod refused;
pub(crate) mod response;
mod rlimit;
mod snapshot;
mod sockets;
mod tcp;
mod tcp_slots;
mod udp;
mod verdicts;
mod web_view;
pub mod wire;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub(crate) use handler::Handler;
pub(crate) use snapshot::Snapshot;
pub(crate) use snapshot::compile;

use dispatch::Dispatcher;

use crate::access::RateLimitConfig;
use crate::clients::ClientsError;
use crate::config::{Config, ConfigError, DomainName};
use crate::lists::ListError;
use crate::metrics::{self, MetricsError};
use crate::stats;
use crate::store::{self, WriterHandle, unix_now};
use crate::upstream::UpstreamError;

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
    /// `[server.rate_limit]`: queries per second and burst allowed to one client.
    pub rate_limit: RateLimitConfig,
    /// UDP queries being answered at once (one client: an eighth); past it new ones
    /// are dropped and counted. TCP queries of one listener are held to it as well
    /// (past it they wait, like a full pipeline).
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub max_udp_in_flight: NonZeroUsize,
    /// Open TCP connections, in total and from one client address (the latter is held
    /// to at most half the total). At a cap the longest-idle one is closed for the new.
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub max_tcp_connections: NonZeroUsize,
    /// Open TCP connections from one client address (held to at most half the total).
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub max_tcp_connections_per_client: NonZeroUsize,
    /// A TCP connection that sends no query for this long is closed; also the
    /// deadline of each write and of each wait for a pipeline slot.
    #[serde(with = "humantime_serde")]
    pub tcp_idle_timeout: Duration,
    /// Queries on one TCP connection before it is closed.
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub(crate) max_tcp_queries_per_connection: NonZeroUsize,
    /// Threads answering queries (at most 64); 0 means one per CPU. With more than one,
    /// each listen address gets one UDP socket and receive loop per thread
    /// (`SO_REUSEPORT`, the kernel spreads clients over them). One is the default: one
    /// loop answers blocked and cached queries itself at well over 100k qps on one core,
    /// far past a household's rate, and a second worker costs CPU per query.
    #[serde(deserialize_with = "threads")]
    pub threads: usize,
    /// DNS-rebinding protection: an upstream answer for a name outside `rebind_allow`
    /// that holds a private, loopback or link-local address is answered NXDOMAIN.
    pub rebind_protection: bool,
    /// Domains (and their subdomains) whose answers may hold private addresses.
    pub(crate) rebind_allow: Vec<DomainName>,
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
            max_udp_in_flight: const { NonZeroUsize::new(2048).unwrap() },
            max_tcp_connections: const { NonZeroUsize::new(256).unwrap() },
            max_tcp_connections_per_client: const { NonZeroUsize::new(32).unwrap() },
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_queries_per_connection: const { NonZeroUsize::new(1000).unwrap() },
            rebind_protection: false,
            rebind_allow: ["local", "lan", "home.arpa"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            threads: 1,
        }
    }
}

/// The most `[server] threads` allowed: past a few, more sockets only cost memory.
const MAX_THREADS: usize = 64;

fn threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n > MAX_THREADS {
        return Err(serde::de::Error::custom(format_args!(
            "must be at most {MAX_THREADS} (0 means one per CPU)"
        )));
    }
    Ok(n)
}

impl ServerConfig {
    /// The worker threads `threads` asks for: 0 is one per CPU (at most
    /// [`MAX_THREADS`]).
    pub fn workers(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_THREADS),
            n => n,
        }
    }
}

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config could not be read or checked.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The household controls file could not be read.
    #[error("household controls: {0}")]
    Controls(String),
    /// A block list could not be read.
    #[error(transparent)]
    Lists(#[from] ListError),
    /// No usable upstream.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The `[[devices]]` cannot be used.
    #[error(transparent)]
    Clients(#[from] ClientsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `[server] listen` is empty.
    #[error("no listen address configured")]
    NoListen,
    /// The housekeeping thread could not be started.
    #[error("cannot start the housekeeping thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running server: its bound addresses, live counters, reload and stop.
pub struct Running {
    addrs: Vec<SocketAddr>,
    dispatcher: Arc<Dispatcher>,
    listeners: tokio::task::JoinSet<()>,
    started: Instant,
    started_unix: i64,
    writer: Option<WriterHandle>,
    metrics_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    /// Told by the dashboard after it changed a household control.
    controls_changed: Arc<tokio::sync::Notify>,
    /// Tells the dashboard that a reload swapped a new snapshot in.
    reloaded: Arc<tokio::sync::Notify>,
    /// The thread the periodic tasks run on; stopped with the server.
    _housekeeping: housekeeping::Housekeeping,
    /// The waits of the UDP threads, and how many there are (for the watchdog).
    udp_live: (Arc<Liveness>, usize),
}

impl Running {
    /// The addresses actually bound (UDP and TCP share each one).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The waits of the UDP threads, and how many there are (for the watchdog).
    pub(crate) fn udp_liveness(&self) -> (Arc<Liveness>, usize) {
        self.udp_live.clone()
    }

    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the dashboard is served, when `[web]` is on and it could start.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// Notified when the dashboard changed a household control (`serve` reloads).
    pub(crate) fn controls_changed(&self) -> Arc<tokio::sync::Notify> {
        self.controls_changed.clone()
    }

    /// Every counter now.
    pub fn stats(&self) -> stats::Reading {
        self.dispatcher.reading()
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
        self.dispatcher.handler.cache.len()
    }

    /// The resolv.conf the upstreams come from, when `[upstream] servers` is empty.
    pub(crate) fn resolv_conf(&self) -> Option<PathBuf> {
        let snap = self.dispatcher.handler.state.load();
        snap.config.upstream.resolv_conf_in_use().map(PathBuf::from)
    }

    /// Swap in a new config. On error the running one stays and the error is returned.
    pub fn reload(&self, config: Config) -> Result<(), ServeError> {
        config.validate()?;
        let snap = Arc::new(Snapshot::build(config, &self.addrs, false)?);
        self.dispatcher.refresh_clients(&snap.clients);
        self.dispatcher.handler.state.store(snap.clone());
        self.dispatcher.handler.cache.clear();
        let export = &snap.config.export;
        self.dispatcher
            .handler
            .export
            .configure(export, snap.config.filter.block_response);
        // Only now: whoever reads this line may rely on the new lists being in force.
        snap.log_loaded("reloaded:");
        self.reloaded.notify_waiters();
        Ok(())
    }

    /// Stop accepting, let in-flight queries finish (bounded), then return.
    pub async fn stop(mut self) {
        // Each UDP listener then sets the stop flag and wakes its thread (`udp::Wake`).
        self.dispatcher.shutdown.cancel();
        while self.listeners.join_next().await.is_some() {}
        self.dispatcher.tracker.close();
        if tokio::time::timeout(Duration::from_millis(1500), self.dispatcher.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: some queries were still in flight and were dropped");
        }
        // Every answered query has handed its event over; write them all.
        self.dispatcher
            .handler
            .export
            .stop(Duration::from_secs(2))
            .await;
        // The last status says the server stopped, so `metaguard status` need not guess.
        let status = self.dispatcher.status_json(self.started, self.started_unix);
        let status = match serde_json::from_str::<serde_json::Value>(&status) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.insert("stopped".into(), unix_now().into());
                serde_json::Value::Object(m).to_string()
            }
            _ => status,
        };
        // The last one: the ticker, on another thread, may not write after it.
        self.dispatcher.handler.logger.last_status(status);
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.shutdown()).await;
        }
    }
}

/// Build the snapshot, bind every listen address and start answering.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    if config.server.listen.is_empty() {
        return Err(ServeError::NoListen);
    }
    // A config from a file was checked with its places; flags and code come here.
    config.validate()?;
    let workers = config.server.workers();
    let bound = sockets::bind_all(&config.server.listen, workers).await?;
    let addrs: Vec<SocketAddr> = bound
        .iter()
        .filter_map(|b| b.tcp.local_addr().ok())
        .collect();
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let server_cfg = config.server.clone();
    let snap = Snapshot::build(config, &addrs, true)?;
    snap.log_loaded("loaded");
    let housekeeping = housekeeping::Housekeeping::start().map_err(ServeError::Thread)?;
    let (logger, writer) = store::start(&snap.config.store);
    let dispatcher = Dispatcher::new(snap, logger, &housekeeping);
    let started = Instant::now();
    let started_unix = unix_now();
    dispatcher.spawn_status(started, started_unix);
    let limits = tcp::TcpLimits {
        max_connections: server_cfg.max_tcp_connections,
        // One address never holds more than half the slots, whatever the config says:
        // a client that opens connections and sits on them cannot lock the others out.
        // (A total of 1 leaves one client its 1.)
        max_per_client: server_cfg.max_tcp_connections_per_client.min(
            NonZeroUsize::new(server_cfg.max_tcp_connections.get() / 2)
                .unwrap_or(NonZeroUsize::MIN),
        ),
        idle_timeout: server_cfg.tcp_idle_timeout,
        max_queries_per_connection: server_cfg.max_tcp_queries_per_connection,
        pipeline: tcp::TcpLimits::PIPELINE,
        // TCP has the same in-flight budget per listener as UDP: it bounds the upstream
        // sockets (and so the open files) TCP queries can hold.
        max_in_flight: server_cfg.max_udp_in_flight.get(),
        conn_buffer: tcp::TcpLimits::CONN_BUFFER,
        total_buffer: tcp::TcpLimits::TOTAL_BUFFER,
    };
    rlimit::raise_nofile(rlimit::files_needed(&server_cfg, addrs.len(), &limits));
    let mut listeners = tokio::task::JoinSet::new();
    let udp_live = Arc::new(Liveness::default());
    let mut udp_threads = 0;
    for (b, addr) in bound.into_iter().zip(&addrs) {
        let n = b.udp.len();
        if n > 1 {
            tracing::info!("listening on {addr} (udp: {n} sockets, tcp)");
        } else {
            tracing::info!("listening on {addr} (udp, tcp)");
        }
        // The sockets of one address share its in-flight caps.
        let in_flight = udp::InFlight::new(server_cfg.max_udp_in_flight);
        for sock in b.udp {
            let listener = udp::start(
                sock,
                dispatcher.clone(),
                in_flight.clone(),
                udp_live.clone(),
            )
            .map_err(|source| ServeError::Bind {
                addr: *addr,
                proto: "udp",
                source,
            })?;
            listeners.spawn(listener);
            udp_threads += 1;
        }
        listeners.spawn(tcp::serve(b.tcp, dispatcher.clone(), limits));
    }
    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            if let Some(a) = addr {
                tracing::info!("metrics on http://{a}/metrics");
            }
            let d = dispatcher.clone();
            tokio::spawn(metrics::serve(
                listener,
                dispatcher.handler.metrics.clone(),
                move || d.reading(),
                dispatcher.shutdown.clone(),
            ));
            addr
        }
        None => None,
    };
    let controls_changed = Arc::new(tokio::sync::Notify::new());
    let reloaded = Arc::new(tokio::sync::Notify::new());
    let web_addr = start_web(
        &dispatcher,
        started,
        started_unix,
        [&controls_changed, &reloaded],
    )
    .await;
    Ok(Running {
        web_addr,
        controls_changed,
        reloaded,
        metrics_addr,
        addrs,
        dispatcher,
        listeners,
        started,
        started_unix,
        writer: Some(writer),
        _housekeeping: housekeeping,
        udp_live: (udp_live, udp_threads),
    })
}

/// Start the dashboard when `[web]` is on. It never stops DNS from starting: a port
/// in use or an unwritable state directory is logged and the dashboard stays off.
async fn start_web(
    dispatcher: &Arc<Dispatcher>,
    started: Instant,
    started_unix: i64,
    [controls_changed, reloaded]: [&Arc<tokio::sync::Notify>; 2],
) -> Option<SocketAddr> {
    let snap = dispatcher.handler.state.load_full();
    let cfg = &snap.config;
    if !cfg.web.enabled {
        return None;
    }
    let view = Arc::new(web_view::View {
        dispatcher: dispatcher.clone(),
        started,
        started_unix,
        controls_changed: controls_changed.clone(),
        reloaded: reloaded.clone(),
    });
    match crate::web::start(
        &cfg.web,
        &cfg.remote.state_dir,
        cfg.store.db.clone(),
        view,
        dispatcher.live.clone(),
        dispatcher.shutdown.clone(),
    )
    .await
    {
        Ok(w) => Some(w.addr),
        Err(e) => {
            tracing::error!("{e}; the dashboard is off, DNS is not affected");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UdpSocket;

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

    /// A server on a free loopback port with the built-in lists and its files in `dir`.
    /// Blocked names are answered without an upstream; the one given is never asked.
    fn loopback(dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.upstream.servers = vec!["127.0.0.1:9".parse().unwrap()];
        c.filter.lists_dir = dir.join("no-lists");
        c.store.db = dir.join("m.db");
        c
    }

    /// The server's periodic tasks (the status ticker, the device-table refresher) run
    /// on its housekeeping thread: on the runtime that serves DNS only the listeners are
    /// left, so none of their timers makes a worker's wait for packets arm a kernel
    /// timer. (Before, the two ran here: 4 tasks.)
    #[tokio::test]
    async fn only_the_listeners_run_on_the_serving_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let c = loopback(dir.path());
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        assert_eq!(tasks(), 0);
        let srv = start(c).await.unwrap();
        // A query makes the status change, which the ticker writes.
        let m = udp_ask(srv.addrs()[0], "connect.facebook.net.").await;
        assert_eq!(m.expect("answered").answers.len(), 1);
        // One address: its UDP socket and its TCP listener.
        assert_eq!(tasks(), 2);
        tokio::time::timeout(Duration::from_secs(5), srv.stop())
            .await
            .expect("stops cleanly");
        // The ticker, on its own thread, did not write over the last status.
        let conn = crate::store::schema::open_ro(&dir.path().join("m.db")).unwrap();
        let status = crate::store::read::status(&conn).unwrap();
        let server = status.server.expect("a status row");
        assert!(server.get("stopped").is_some(), "{server}");
    }

    /// Each UDP socket has a thread, which counts its waits for the watchdog: waiting in
    /// its receive call while idle, one wait ended per datagram it woke for.
    #[tokio::test]
    async fn the_udp_threads_count_their_waits() {
        let dir = tempfile::tempdir().unwrap();
        let srv = start(loopback(dir.path())).await.unwrap();
        let (live, threads) = srv.udp_liveness();
        assert_eq!(threads, 1);
        let waiting = || live.parked.load(std::sync::atomic::Ordering::Relaxed) == 1;
        for _ in 0..1000 {
            if waiting() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(waiting(), "idle: waiting in its receive call");
        let before = live.unparks.load(std::sync::atomic::Ordering::Relaxed);
        let m = udp_ask(srv.addrs()[0], "connect.facebook.net.").await;
        assert_eq!(m.expect("answered").answers.len(), 1);
        assert!(live.unparks.load(std::sync::atomic::Ordering::Relaxed) > before);
        tokio::time::timeout(Duration::from_secs(5), srv.stop())
            .await
            .expect("stops cleanly");
    }

    /// A warm query answered inline, blocked or from the cache, allocates nothing on
    /// the UDP thread: its hit event is one the writer gave back, and its hourly totals
    /// are there already (the brief: nothing allocated on the inline path). The writer
    /// takes the totals only when told to flush here, so the counts are the queries'.
    #[tokio::test]
    async fn a_warm_query_allocates_nothing_on_the_udp_thread() {
        // The upstream: every A query answered 192.0.2.1 for an hour.
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = up.recv_from(&mut buf).await.unwrap();
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                let query = q.queries[0].clone();
                r.add_answer(hickory_proto::rr::Record::from_rdata(
                    query.name().clone(),
                    3600,
                    hickory_proto::rr::RData::A("192.0.2.1".parse().unwrap()),
                ));
                r.add_query(query);
                up.send_to(&r.to_vec().unwrap(), from).await.unwrap();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let mut c = loopback(dir.path());
        c.upstream.servers = vec![crate::upstream::UpstreamSpec::Plain(up_addr)];
        c.store.batch_interval = Duration::from_secs(3600);
        let srv = start(c).await.unwrap();
        let addr = srv.addrs()[0];
        let thread = format!("mg-udp:{}", addr.port());
        let ask = |name: &'static str, want: &'static str| async move {
            let m = udp_ask(addr, name).await.expect("answered");
            assert_eq!(m.answers.len(), 1, "{name}");
            assert_eq!(m.answers[0].data.to_string(), want, "{name}");
        };
        let both = || async {
            ask("connect.facebook.net.", "0.0.0.0").await;
            ask("example.org.", "192.0.2.1").await;
        };
        // Warm: the verdicts and the cache fill, and 20 hit events go to the writer,
        // which gives them back once written.
        for _ in 0..20 {
            both().await;
        }
        for attempt in 0.. {
            assert!(srv.flush_log().await);
            // The first queries after the writer took the totals start them again.
            both().await;
            let hour = crate::store::unix_now() / 3600;
            let before = crate::alloc_count::allocations(&thread);
            for _ in 0..10 {
                both().await;
            }
            let allocated = crate::alloc_count::allocations(&thread) - before;
            // A new hour starts new totals: measure again.
            if hour != crate::store::unix_now() / 3600 && attempt == 0 {
                continue;
            }
            assert_eq!(allocated, 0, "allocations for 20 warm queries");
            break;
        }
        upstream.abort();
        tokio::time::timeout(Duration::from_secs(5), srv.stop())
            .await
            .expect("stops cleanly");
    }

    /// A panic in one query task ends that task only: tokio catches it (the release
    /// profile keeps `panic = "unwind"`), the task's in-flight permit is released by
    /// unwinding, and the listeners and the other queries carry on.
    #[tokio::test]
    async fn a_panicking_query_task_does_not_stop_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = loopback(dir.path());
        c.clients.neighbours = false;
        c.clients.leases = Vec::new();
        // One UDP query in flight at a time: a leaked permit would drop every later query.
        c.server.max_udp_in_flight = NonZeroUsize::MIN;
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
