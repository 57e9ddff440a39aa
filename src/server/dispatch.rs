//! The packet dispatcher the UDP and TCP listeners share: access (admitted, refused,
//! rate limited), then the inline path ([`Dispatcher::respond_inline`]) or the full
//! path ([`Dispatcher::respond`]) through the [`Handler`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clock::Now;
use super::housekeeping::Housekeeping;
use super::{Handler, Snapshot, refused, response, wire};
use crate::access::Admit;
use crate::cache::Cache;
use crate::clients::Clients;
use crate::export::Export;
use crate::metrics::Metrics;
use crate::stats::{Reading, Stats};
use crate::store::{Logger, unix_now};

/// How often the counters are written for `metaguard status` while they change.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How often they are written while they do not (an idle server's heartbeat).
pub(crate) const STATUS_IDLE: Duration = Duration::from_secs(600);

/// What the listeners share: the handler and the counters, the shutdown token and the
/// tracker of query tasks. Its methods take a packet to its answer.
pub(crate) struct Dispatcher {
    pub(super) handler: Handler,
    pub(super) stats: Arc<Stats>,
    pub(super) shutdown: CancellationToken,
    /// Set by each UDP listener as it wakes its thread at the stop (after `shutdown`, or
    /// when the listener is dropped): what the UDP threads read after each wake-up.
    pub(super) stop: std::sync::atomic::AtomicBool,
    pub(super) tracker: TaskTracker,
    /// Stops the device-table refresher of the current snapshot (replaced on reload).
    pub(super) refresher: std::sync::Mutex<CancellationToken>,
    /// Queries refused for their source, logged once a minute with counts.
    pub(super) refused: refused::RefusedLog,
    /// The dashboard's live page: the hit writer offers each hit while someone watches.
    pub(super) live: crate::web::LiveFeed,
    /// Where the periodic tasks run ([`super::housekeeping`]): not on the DNS workers.
    tick: tokio::runtime::Handle,
}

impl Dispatcher {
    /// The dispatcher over a first snapshot, its device tables refreshing and the
    /// dnstap export and the write-time metric set up.
    pub(super) fn new(snap: Snapshot, logger: Logger, tick: &Housekeeping) -> Arc<Dispatcher> {
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let clients = snap.clients.clone();
        let dispatcher = Arc::new(Dispatcher {
            handler: Handler {
                cache: Cache::new(&snap.config.cache),
                state: Arc::new(ArcSwap::from_pointee(snap)),
                stats: stats.clone(),
                logger,
                metrics: Arc::new(Metrics::new()),
                export: Export::new(stats.clone()),
            },
            live: crate::web::LiveFeed::default(),
            stats,
            refresher: std::sync::Mutex::new(shutdown.child_token()),
            refused: refused::RefusedLog::default(),
            shutdown,
            stop: Default::default(),
            tracker: TaskTracker::new(),
            tick: tick.handle().clone(),
        });
        dispatcher.refresh_clients(&clients);
        {
            let snap = dispatcher.handler.state.load();
            let block = snap.config.filter.block_response;
            dispatcher
                .handler
                .export
                .configure(&snap.config.export, block);
        }
        let m = dispatcher.handler.metrics.clone();
        dispatcher
            .handler
            .logger
            .on_write(Arc::new(move |d| m.observe_db_write(d)));
        let live = dispatcher.live.clone();
        dispatcher
            .handler
            .logger
            .on_hit(Box::new(move |e| live.offer(e)));
        dispatcher
    }

    /// Every counter now, with the hit events the logger had to drop.
    pub(super) fn reading(&self) -> Reading {
        let mut s = self.stats.reading();
        s.events_dropped = self.handler.logger.dropped();
        s
    }

    /// Write the counters to the database every 5 s (`metaguard status` reads them
    /// there) until shutdown, from the housekeeping thread. While nothing changes the
    /// ticker stops, and waits for the next query, or rewrites the status once per
    /// [`STATUS_IDLE`] so that `metaguard status` still shows a live server.
    pub(super) fn spawn_status(self: &Arc<Self>, started: Instant, started_unix: i64) {
        let dispatcher = self.clone();
        self.tick.spawn(async move {
            let d = &dispatcher;
            let mut last = None;
            loop {
                let now = (d.reading(), d.handler.cache.len());
                if last == Some(now) {
                    tokio::select! {
                        _ = d.handler.logger.activity() => {}
                        _ = tokio::time::sleep(STATUS_IDLE) => {
                            d.handler.logger.status(d.status_json(started, started_unix));
                        }
                        _ = d.shutdown.cancelled() => break,
                    }
                } else {
                    d.handler
                        .logger
                        .status(d.status_json(started, started_unix));
                    last = Some(now);
                    // This reading counts the queries so far: their signal is spent.
                    let _ = d.handler.logger.activity().now_or_never();
                }
                tokio::select! {
                    _ = tokio::time::sleep(STATUS_EVERY) => {}
                    _ = d.shutdown.cancelled() => break,
                }
            }
        });
    }

    /// Start refreshing the device tables of `clients`, stopping the previous refresher.
    pub(super) fn refresh_clients(&self, clients: &Arc<Clients>) {
        let token = self.shutdown.child_token();
        clients.spawn_refresher(token.clone(), &self.tick);
        if let Ok(mut old) = self.refresher.lock() {
            std::mem::replace(&mut *old, token).cancel();
        }
    }

    /// The counters as JSON for `metaguard status` (written to the DB by the logger).
    pub(super) fn status_json(&self, started: Instant, started_unix: i64) -> String {
        let s = self.reading();
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

impl Dispatcher {
    /// The full path for one raw packet from `src`: admit, parse, resolve, encode;
    /// `None` to stay silent.
    pub(super) async fn respond(
        &self,
        packet: Vec<u8>,
        src: SocketAddr,
        proto: Protocol,
    ) -> Option<Vec<u8>> {
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            // Not a query (too short, or a response: never answer those; no reflection).
            Stats::inc(&self.stats.malformed);
            return None;
        }
        // A borrowed look at the snapshot: the handler takes its own owned copy, so
        // this check needs no second Arc clone per query.
        let admit = self.admit(&self.handler.state.load(), src)?;
        self.respond_admitted(packet, src, proto, admit).await
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

    /// [`Dispatcher::respond`] once access was decided.
    pub(super) async fn respond_admitted(
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

/// What [`Dispatcher::respond_inline`] did with a packet.
pub(super) enum Inline {
    /// The answer is in `out`.
    Answered,
    /// Nothing to send (rate limited).
    Silent,
    /// The full path must answer it; access was already decided.
    Full(Admit),
    /// Not a common query: the full path must answer it from the start.
    NotCommon,
}

impl Dispatcher {
    /// Answer a common query (see [`super::wire`]) inline into `out`, without a task,
    /// hickory or allocations when it is blocked or cached. `name` is scratch space.
    /// Over UDP an answer larger than the client's payload size takes the full path
    /// (which truncates it); over TCP up to 65,535 bytes are answered inline.
    pub(super) fn respond_inline(
        &self,
        packet: &[u8],
        src: SocketAddr,
        proto: Protocol,
        now: Now,
        name: &mut String,
        out: &mut Vec<u8>,
    ) -> Inline {
        let Some(q) = wire::Query::parse(packet, name) else {
            return Inline::NotCommon;
        };
        let max = match proto {
            Protocol::Udp => q.max_udp(),
            _ => usize::from(u16::MAX),
        };
        let snap = self.handler.state.load();
        match self.admit(&snap, src) {
            None => Inline::Silent,
            Some(Admit::Yes)
                if self
                    .handler
                    .inline(&snap, &q, name, src.ip(), now, out, max) =>
            {
                Inline::Answered
            }
            Some(admit) => Inline::Full(admit),
        }
    }
}
