//! The export task: takes events off the queue, writes them as dnstap frames in
//! batches (one `write` each; once an event came it lingers a few milliseconds so that
//! the events of a quiet period share one wake-up and one write), and when the collector is away reconnects with a capped backoff, only while
//! there is something to send (an idle output has no timer). `dnstap_frames` counts the
//! frames written to the socket and `dnstap_dropped` the ones lost (queue full, or a
//! batch whose write failed): together they are two frames per exported query.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::dnstap::Encoder;
use super::fstrm;
use super::{ClientAddress, Endpoint, Event};
use crate::stats::Stats;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A collector that takes no bytes for this long is dropped and reconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Events written with one write.
pub(crate) const BATCH: usize = 256;
/// How long the task waits, once an event came, for more to join its batch. Only while
/// events are pending (an empty queue is waited on without a timer), and cut short when
/// a batch is waiting (the query path rings [`Output::wake`]).
const LINGER: Duration = Duration::from_millis(20);

/// What the task needs to know.
pub(crate) struct Output {
    pub endpoint: Endpoint,
    pub identity: String,
    pub privacy: ClientAddress,
    pub hash_key: (u64, u64),
    pub stats: std::sync::Arc<Stats>,
    /// Rung by the query path when a batch is waiting: the linger ends.
    pub wake: std::sync::Arc<Notify>,
}

/// A connection to the collector.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    async fn connect(to: &Endpoint) -> io::Result<Conn> {
        let mut c = match to {
            Endpoint::Unix(p) => Conn::Unix(UnixStream::connect(p).await?),
            Endpoint::Tcp(h, port) => {
                let s = TcpStream::connect((h.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        };
        match &mut c {
            Conn::Unix(s) => handshake(s).await?,
            Conn::Tcp(s) => handshake(s).await?,
        }
        Ok(c)
    }

    /// Whether the collector hung up (or sent what it should not) since the last write.
    fn closed(&self) -> bool {
        let mut b = [0u8; 64];
        let r = match self {
            Conn::Unix(s) => s.try_read(&mut b),
            Conn::Tcp(s) => s.try_read(&mut b),
        };
        !matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = async {
            match self {
                Conn::Unix(s) => s.write_all(bytes).await,
                Conn::Tcp(s) => s.write_all(bytes).await,
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    async fn close(self) {
        let close = async {
            match self {
                Conn::Unix(mut s) => fstrm::close(&mut s).await,
                Conn::Tcp(mut s) => fstrm::close(&mut s).await,
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, fstrm::open(s))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "metaguard".into())
}

/// Connect, retrying with a doubling backoff; `None` when `stop` came first.
async fn connect(out: &Output, stop: &CancellationToken, quiet: &mut bool) -> Option<Conn> {
    let mut wait = BACKOFF_MIN;
    loop {
        match Conn::connect(&out.endpoint).await {
            Ok(c) => {
                tracing::info!("dnstap: connected to {}", out.endpoint);
                *quiet = false;
                return Some(c);
            }
            Err(e) if !*quiet => {
                tracing::warn!(
                    "dnstap: cannot reach {} ({e}); retrying, dropping what the queue cannot hold",
                    out.endpoint
                );
                *quiet = true;
            }
            Err(e) => tracing::debug!("dnstap: {} still unreachable: {e}", out.endpoint),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return None,
        }
        wait = (wait * 2).min(BACKOFF_MAX);
    }
}

/// Take the next batch into `events`: wait (without a timer) for an event, then, unless
/// a whole batch is already there, wait `linger` (or until `wake` rings) and take what
/// came meanwhile, up to a batch. 0 when the queue's senders are gone and it is empty.
async fn gather(
    rx: &mut mpsc::Receiver<Event>,
    events: &mut Vec<Event>,
    linger: Duration,
    wake: &Notify,
) -> usize {
    let n = rx.recv_many(events, BATCH).await;
    if n == 0 || n >= BATCH {
        return n;
    }
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = wake.notified() => {}
    }
    // What came meanwhile is there: `recv_many` takes it without waiting (and is much
    // cheaper per event than `try_recv`).
    if !rx.is_empty() {
        rx.recv_many(events, BATCH - events.len()).await;
    }
    events.len()
}

/// Run the output until the queue's sender is gone (reload or shutdown).
pub(crate) async fn run(out: Output, mut rx: mpsc::Receiver<Event>, stop: CancellationToken) {
    let identity = if out.identity.is_empty() {
        host_name()
    } else {
        out.identity.clone()
    };
    let mut encoder = Encoder::new(identity.as_bytes(), out.privacy, out.hash_key);
    let mut conn: Option<Conn> = None;
    let mut quiet = false;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut events = Vec::with_capacity(BATCH);
    let drop_frames = |n: usize| {
        out.stats
            .dnstap_dropped
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
    };
    // Waiting here costs nothing: no timer runs while no event comes.
    while gather(&mut rx, &mut events, LINGER, &out.wake).await > 0 {
        buf.clear();
        let frames = 2 * events.len();
        for e in events.drain(..) {
            encoder.frames(&e, &mut buf);
        }
        if conn.as_ref().is_some_and(Conn::closed) {
            tracing::warn!("dnstap: {} closed the stream; reconnecting", out.endpoint);
            conn = None;
        }
        if conn.is_none() {
            conn = connect(&out, &stop, &mut quiet).await;
        }
        let Some(c) = conn.as_mut() else {
            // Stopped while the collector was away: what is held is lost, and counted.
            drop_frames(frames);
            break;
        };
        match c.write(&buf).await {
            Ok(()) => {
                out.stats
                    .dnstap_frames
                    .fetch_add(frames as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(
                    "dnstap: writing to {} failed ({e}); reconnecting",
                    out.endpoint
                );
                drop_frames(frames);
                conn = None;
            }
        }
    }
    // Anything still queued when stopped without a collector.
    rx.close();
    while let Ok(_e) = rx.try_recv() {
        drop_frames(2);
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::SystemTime;

    use super::*;
    use crate::export::NameBuf;
    use crate::store::DeviceKey;

    fn event(n: u16) -> Event {
        let addr: IpAddr = [127, 0, 0, 1].into();
        Event {
            time: SystemTime::now(),
            addr,
            id: n,
            qtype: 1,
            rcode: 0,
            name: NameBuf::new("graph.facebook.com"),
            device: DeviceKey::from_addr(addr),
            device_name: None,
            hit: None,
        }
    }

    #[tokio::test]
    async fn events_that_come_together_make_one_batch() {
        let (tx, mut rx) = mpsc::channel(1024);
        tx.try_send(event(0)).ok().unwrap();
        let task = tokio::spawn(async move {
            let mut events = Vec::new();
            let n = gather(&mut rx, &mut events, Duration::from_secs(2), &Notify::new()).await;
            assert_eq!(n, events.len());
            (n, rx)
        });
        // Whether the task took the first event before these came or not, the linger
        // (2 s) keeps the batch open for them.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 1..10 {
            tx.try_send(event(i)).ok().unwrap();
        }
        let (n, mut rx) = task.await.unwrap();
        assert_eq!(n, 10);
        // A full batch is taken at once, without lingering.
        for i in 0..BATCH as u16 {
            tx.try_send(event(i)).ok().unwrap();
        }
        let mut events = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(1),
            gather(
                &mut rx,
                &mut events,
                Duration::from_secs(3600),
                &Notify::new(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(n, BATCH);
        // Rung (a batch waiting), the linger ends.
        let wake = Notify::new();
        tx.try_send(event(0)).ok().unwrap();
        wake.notify_one();
        let mut events = Vec::new();
        let took = tokio::time::timeout(
            Duration::from_secs(1),
            gather(&mut rx, &mut events, Duration::from_secs(3600), &wake),
        );
        assert_eq!(took.await.unwrap(), 1);
        drop(tx);
        assert_eq!(gather(&mut rx, &mut events, LINGER, &wake).await, 0);
    }

    #[tokio::test]
    async fn a_collector_that_keeps_up_gets_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnstap.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            fstrm::read_all(&mut s).await.unwrap()
        });
        let stats = Arc::new(Stats::default());
        let out = Output {
            endpoint: Endpoint::Unix(path),
            identity: "test".into(),
            privacy: ClientAddress::Keep,
            hash_key: (1, 2),
            stats: stats.clone(),
            wake: Arc::new(Notify::new()),
        };
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run(out, rx, CancellationToken::new()));
        for i in 0..1000 {
            tx.try_send(event(i)).ok().unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        task.await.unwrap();
        let frames = reader.await.unwrap();
        assert_eq!(frames.len(), 2000);
        assert_eq!(stats.dnstap_frames.load(Ordering::Relaxed), 2000);
        assert_eq!(stats.dnstap_dropped.load(Ordering::Relaxed), 0);
    }
}
