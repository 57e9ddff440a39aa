//! The export task: takes events off the queue, writes them as dnstap frames in
//! batches, and when the collector is away reconnects with a capped backoff, only while
//! there is something to send (an idle output has no timer). `dnstap_frames` counts the
//! frames written to the socket and `dnstap_dropped` the ones lost (queue full, or a
//! batch whose write failed): together they are two frames per exported query.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dnstap::{self, Stamp};
use super::fstrm;
use super::{ClientAddress, Endpoint, Event};
use crate::stats::Stats;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A collector that takes no bytes for this long is dropped and reconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Events written with one write.
const BATCH: usize = 256;

/// What the task needs to know.
pub(crate) struct Output {
    pub(crate) endpoint: Endpoint,
    pub(crate) identity: String,
    pub(crate) privacy: ClientAddress,
    pub(crate) hash_key: (u64, u64),
    pub(crate) stats: std::sync::Arc<Stats>,
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

/// Run the output until the queue's sender is gone (reload or shutdown).
pub(crate) async fn run(out: Output, mut rx: mpsc::Receiver<Event>, stop: CancellationToken) {
    let identity = if out.identity.is_empty() {
        host_name()
    } else {
        out.identity.clone()
    };
    let stamp = Stamp {
        identity: identity.as_bytes(),
        privacy: out.privacy,
        hash_key: out.hash_key,
    };
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
    while rx.recv_many(&mut events, BATCH).await > 0 {
        buf.clear();
        let frames = 2 * events.len();
        for e in events.drain(..) {
            for frame in dnstap::encode(&e, &stamp) {
                fstrm::data(&mut buf, &frame);
            }
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
