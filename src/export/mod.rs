//! `[export]`: the dnstap output. The query path hands a fixed-size [`Event`] to a
//! bounded queue (never waiting: a full queue drops the event and counts it); one task
//! turns events into dnstap CLIENT_QUERY / CLIENT_RESPONSE frames on a Frame Streams
//! connection to a collector (fstrm_capture, Vector, DNS-collector), and reconnects with
//! backoff when the collector goes away. A reload with another `[export]` section
//! starts a new output and ends the old one.

mod config;
mod dnstap;
mod fstrm;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) use config::ExportConfig;
pub use config::{ClientAddress, Endpoint, Messages};

use crate::filter::BlockResponse;
use crate::policy::Action;
use crate::stats::Stats;
use crate::store::{AnsweredFrom, DeviceKey};

/// The longest name in presentation form without the final dot (RFC 1035: 253).
const NAME_MAX: usize = 253;

/// A query name held inline, so an event costs no allocation.
#[derive(Clone, Copy)]
pub(crate) struct NameBuf {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl NameBuf {
    /// `name` (a name key: lower case, no final dot), cut at [`NAME_MAX`] bytes.
    fn new(name: &str) -> NameBuf {
        let n = name.len().min(NAME_MAX);
        let mut bytes = [0u8; NAME_MAX];
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        NameBuf {
            len: n as u8,
            bytes,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// What a rule match adds to an event (hits only): the category and the rule in one
/// allocation (the only one an event makes).
pub struct HitInfo {
    action: Action,
    /// `text[..category_len]` is the category, the rest the rule.
    category_len: usize,
    has_rule: bool,
    text: Box<str>,
}

impl HitInfo {
    fn new(category: &str, action: Action, rule: Option<&str>) -> HitInfo {
        let mut text = String::with_capacity(category.len() + rule.map_or(0, str::len));
        text.push_str(category);
        text.push_str(rule.unwrap_or(""));
        HitInfo {
            action,
            category_len: category.len(),
            has_rule: rule.is_some(),
            text: text.into_boxed_str(),
        }
    }

    /// The category of the rule that matched.
    pub fn category(&self) -> &str {
        &self.text[..self.category_len]
    }

    /// The action the rule took for this device.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The rule as written in its list, if it has a text.
    pub fn rule(&self) -> Option<&str> {
        self.has_rule.then(|| &self.text[self.category_len..])
    }
}

/// The client side of an answered query: who asked and what they were told.
#[derive(Clone, Copy)]
pub(crate) struct Client<'a> {
    pub(crate) addr: IpAddr,
    pub(crate) device: &'a DeviceKey,
    pub(crate) device_name: Option<&'a Arc<str>>,
}

/// One answered query, as the export task turns it into two dnstap messages.
pub(crate) struct Event {
    time: SystemTime,
    addr: IpAddr,
    id: u16,
    qtype: u16,
    /// The answer's RCODE as far as the event tells it (blocked, failed, or NOERROR).
    rcode: u8,
    name: NameBuf,
    device: DeviceKey,
    device_name: Option<Arc<str>>,
    hit: Option<HitInfo>,
}

/// The running output, swapped whole on reload.
struct Sink {
    config: ExportConfig,
    tx: mpsc::Sender<Event>,
    /// Rung when a batch is waiting (a quarter of a small queue): the task stops
    /// lingering and takes it.
    wake: Arc<tokio::sync::Notify>,
    /// Free slots at or below which the query path rings `wake`.
    ring_at: usize,
    /// Ends the task: set when this sink is replaced or the server stops.
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The handle the query path emits into. Off (one atomic load per query) when
/// `[export] dnstap` is not set.
pub(crate) struct Export {
    sink: ArcSwapOption<Sink>,
    /// Whether `sink` holds an output: read first, so that with the output off a query
    /// costs one relaxed load instead of a guarded one (~0.3 % of the CPU per query).
    on: AtomicBool,
    stats: Arc<Stats>,
    /// Drawn once per process: the key of `client_address = "hash"`.
    hash_key: (u64, u64),
    /// The RCODE of a blocked answer (`[filter] block_response`).
    blocked_rcode: AtomicU8,
    tasks: tokio_util::task::TaskTracker,
}

impl Export {
    pub(crate) fn new(stats: Arc<Stats>) -> Export {
        Export {
            sink: ArcSwapOption::empty(),
            on: AtomicBool::new(false),
            stats,
            hash_key: (rand::random(), rand::random()),
            blocked_rcode: AtomicU8::new(0),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Follow `config`: start the output, replace it when the section changed, or stop
    /// it. `block` tells the RCODE of blocked answers. Must run inside the tokio runtime.
    pub(crate) fn configure(&self, config: &ExportConfig, block: BlockResponse) {
        let rcode = match block {
            BlockResponse::Null => 0,
            BlockResponse::Nxdomain => 3,
            BlockResponse::Refused => 5,
        };
        self.blocked_rcode.store(rcode, Ordering::Relaxed);
        let current = self.sink.load();
        let have = current.as_ref().map(|s| &s.config);
        if have == config.dnstap.as_ref().map(|_| config) {
            return;
        }
        let Some(endpoint) = config.dnstap.clone() else {
            if current.is_some() {
                tracing::info!("dnstap output off");
            }
            self.on.store(false, Ordering::Relaxed);
            self.sink.store(None);
            return;
        };
        let (tx, rx) = mpsc::channel(config.dnstap_queue.get());
        let stop = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let out = writer::Output {
            endpoint,
            identity: config.dnstap_identity.clone(),
            privacy: config.dnstap_client_address,
            hash_key: self.hash_key,
            stats: self.stats.clone(),
            wake: wake.clone(),
        };
        tracing::info!("dnstap output to {}", out.endpoint);
        self.tasks.spawn(writer::run(out, rx, stop.clone()));
        self.sink.store(Some(Arc::new(Sink {
            config: config.clone(),
            tx,
            wake,
            ring_at: {
                let n = config.dnstap_queue.get();
                n - (n / 4).clamp(1, writer::BATCH)
            },
            stop,
        })));
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stop the output and wait (at most `limit`) for the task to write what is queued.
    pub(crate) async fn stop(&self, limit: std::time::Duration) {
        self.on.store(false, Ordering::Relaxed);
        self.sink.store(None);
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
    }

    /// A query that matched no rule: exported when `dnstap_messages = "all"`.
    pub(crate) fn query(
        &self,
        client: Client<'_>,
        name: &str,
        qtype: u16,
        id: u16,
        from: AnsweredFrom,
    ) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let guard = self.sink.load();
        let Some(sink) = guard.as_ref() else { return };
        if sink.config.dnstap_messages != Messages::All {
            return;
        }
        self.send(sink, client, name, qtype, id, from, None);
    }

    /// A query a rule matched (always exported while the output is on).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hit(
        &self,
        client: Client<'_>,
        name: &str,
        qtype: u16,
        id: u16,
        from: AnsweredFrom,
        category: &str,
        action: Action,
        rule: Option<&str>,
    ) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let guard = self.sink.load();
        let Some(sink) = guard.as_ref() else { return };
        let hit = HitInfo::new(category, action, rule);
        self.send(sink, client, name, qtype, id, from, Some(hit));
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        sink: &Sink,
        client: Client<'_>,
        name: &str,
        qtype: u16,
        id: u16,
        from: AnsweredFrom,
        hit: Option<HitInfo>,
    ) {
        let event = Event {
            time: SystemTime::now(),
            addr: client.addr,
            id,
            qtype,
            rcode: match from {
                AnsweredFrom::Blocked => self.blocked_rcode.load(Ordering::Relaxed),
                AnsweredFrom::Error => 2,
                AnsweredFrom::Upstream | AnsweredFrom::Cache => 0,
            },
            name: NameBuf::new(name),
            device: client.device.clone(),
            device_name: client.device_name.cloned(),
            hit,
        };
        if sink.tx.try_send(event).is_err() {
            // Both of its frames (query and response) are lost.
            self.stats.dnstap_dropped.fetch_add(2, Ordering::Relaxed);
        } else if sink.tx.capacity() <= sink.ring_at {
            sink.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Export")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_event_is_written_or_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let export = Export::new(stats.clone());
        let config = ExportConfig {
            // No collector there: the task holds one batch while it retries.
            dnstap: Some(Endpoint::Unix(dir.path().join("nobody.sock"))),
            dnstap_queue: std::num::NonZeroUsize::new(4).unwrap(),
            ..ExportConfig::default()
        };
        export.configure(&config, BlockResponse::Null);
        let addr: IpAddr = [127, 0, 0, 1].into();
        let device = DeviceKey::from_addr(addr);
        let client = Client {
            addr,
            device: &device,
            device_name: None,
        };
        for i in 0..10 {
            export.hit(
                client,
                "graph.facebook.com",
                1,
                i,
                AnsweredFrom::Blocked,
                "pixel",
                Action::Block,
                None,
            );
        }
        // At most the queue (4) and the task's batch (4) are held: 2 or more dropped.
        let dropped = stats.dnstap_dropped.load(Ordering::Relaxed);
        assert!((4..=12).contains(&dropped), "{dropped}");
        export.stop(std::time::Duration::from_secs(5)).await;
        assert_eq!(stats.dnstap_frames.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dnstap_dropped.load(Ordering::Relaxed), 20);
    }
}
