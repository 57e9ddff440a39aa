//! The TCP listener. Connections are capped in total and per client address; at a
//! cap the longest-idle one is closed to make room ([`super::tcp_slots`]). The queries
//! of one connection are answered concurrently (up to [`TcpLimits::pipeline`] at a
//! time, answers in the order they are ready, as RFC 7766 §6.2.1.1 allows), and those
//! of all connections up to [`TcpLimits::max_in_flight`], which bounds the upstream
//! sockets TCP can hold ([`super::rlimit`] counts on it). Nothing
//! waits without a deadline: a read, a write and a wait for a pipeline slot each get
//! `tcp_idle_timeout`. Answers waiting to be written are bounded in bytes per
//! connection and per listener; a connection whose answers are not read is closed.
//! Past `max_tcp_queries_per_connection` the queries read are answered, then the
//! connection is closed with a FIN (what the client sends after is read and dropped
//! for a bounded time, so the close is never an RST).
//!
//! A common query that is blocked or cached is answered by the connection's reader
//! itself, as the UDP loop answers it ([`Dispatcher::respond_inline`]): no task, no
//! hickory message. The others are answered by a task each.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::clock::Now;
use super::dispatch::{Dispatcher, Inline};
use super::tcp_slots::{Slot, Slots};
use crate::stats::Stats;

/// Limits of the TCP listener (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    pub(crate) max_connections: NonZeroUsize,
    pub(crate) max_per_client: NonZeroUsize,
    /// No query read, no answer written, no pipeline slot for this long: closed.
    pub(crate) idle_timeout: Duration,
    pub(crate) max_queries_per_connection: NonZeroUsize,
    /// Queries of one connection answered at the same time.
    pub(crate) pipeline: usize,
    /// Queries of all connections of a listener answered at the same time (each may
    /// hold an upstream socket; queries of evicted connections still count).
    pub(crate) max_in_flight: usize,
    /// Answer bytes one connection may have waiting to be written (at least one
    /// answer of the largest size, 65,537 bytes with its length).
    pub(crate) conn_buffer: usize,
    /// Answer bytes all connections of a listener may have waiting to be written.
    pub(crate) total_buffer: usize,
}

impl TcpLimits {
    /// Queries of one connection answered at the same time.
    pub(crate) const PIPELINE: usize = 32;
    /// 128 KiB: two of the largest answers.
    pub(crate) const CONN_BUFFER: usize = 128 * 1024;
    /// 16 MiB for all connections of a listener.
    pub(crate) const TOTAL_BUFFER: usize = 16 * 1024 * 1024;
}

/// How long the rest of a client's data is read and dropped after our FIN.
const DRAIN: Duration = Duration::from_secs(2);

/// Accept on `listener` until shutdown.
pub(crate) async fn serve(listener: TcpListener, dispatcher: Arc<Dispatcher>, limits: TcpLimits) {
    let slots = Slots::new(limits.max_connections, limits.max_per_client);
    let buffered = Arc::new(Semaphore::new(limits.total_buffer.max(1 << 17)));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept error");
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = dispatcher.shutdown.cancelled() => break,
        };
        let (slot, evicted) = slots.take(src.ip().to_canonical());
        if evicted > 0 {
            dispatcher
                .stats
                .tcp_rejected
                .fetch_add(evicted, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(slot) = slot else {
            continue;
        };
        let conn = TcpConn {
            dispatcher: dispatcher.clone(),
            src,
            limits,
            slot,
            own: Arc::new(Semaphore::new(limits.conn_buffer.max(1 << 17))),
            all: buffered.clone(),
            in_flight: in_flight.clone(),
        };
        dispatcher.tracker.spawn(conn.run(stream));
    }
}

/// One answer waiting to be written, with the buffer bytes it holds.
struct Frame {
    bytes: Vec<u8>,
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Why a connection stopped reading.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed or reset it, or sent half a frame.
    Eof,
    /// No query for `idle_timeout`.
    Idle,
    /// `max_queries_per_connection` read.
    Limit,
    /// Server shutdown: answer what was read, then close.
    Shutdown,
    /// Evicted, or its answers were not read: close at once.
    Closed,
}

/// One TCP client connection being served: reads its queries, writes their answers.
struct TcpConn {
    dispatcher: Arc<Dispatcher>,
    src: SocketAddr,
    limits: TcpLimits,
    slot: Slot,
    /// This connection's share of the answer buffer, in bytes.
    own: Arc<Semaphore>,
    /// The listener's answer buffer, in bytes.
    all: Arc<Semaphore>,
    /// The listener's queries being answered.
    in_flight: Arc<Semaphore>,
}

impl TcpConn {
    async fn run(self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        let (mut rd, mut wr) = stream.split();
        let (end, written) = tokio::join!(self.read_queries(&mut rd, tx), self.write(&mut wr, rx));
        if end == End::Closed || !written {
            // Evicted, not read, or gone: drop what is queued in the kernel too (RST)
            // rather than leave an orphan socket retrying it.
            #[allow(deprecated)] // a zero linger never blocks the thread on close
            let _ = stream.set_linger(Some(Duration::ZERO));
            return;
        }
        let _ = wr.shutdown().await;
        if matches!(end, End::Limit | End::Idle) {
            // Closing with unread data would send an RST that can destroy answers the
            // client has not read yet: read until its FIN, for a bounded time.
            let drain = async {
                let mut sink = [0u8; 1024];
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN.min(self.limits.idle_timeout), drain).await;
        }
    }

    /// Read framed queries and answer each in a task, until the connection ends.
    async fn read_queries<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        tx: mpsc::UnboundedSender<Frame>,
    ) -> End {
        let limits = &self.limits;
        let close = &self.slot.close;
        let shutdown = &self.dispatcher.shutdown;
        let pipeline = Arc::new(Semaphore::new(limits.pipeline.max(1)));
        let mut name = String::with_capacity(256);
        let mut inline = Vec::with_capacity(512);
        for _ in 0..limits.max_queries_per_connection.get() {
            let msg = tokio::select! {
                r = tokio::time::timeout(limits.idle_timeout, read_frame(rd)) => match r {
                    Ok(Ok(m)) => m,
                    Ok(Err(_)) => return End::Eof,
                    Err(_) => return End::Idle,
                },
                _ = close.cancelled() => return End::Closed,
                _ = shutdown.cancelled() => return End::Shutdown,
            };
            self.slot.activity.touch();
            // A panic in one query must not take the connection with it (a task would
            // contain it the same way).
            let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.dispatcher.respond_inline(
                    &msg,
                    self.src,
                    Protocol::Tcp,
                    Now::read(),
                    &mut name,
                    &mut inline,
                )
            }));
            let admit = match fast {
                Ok(Inline::Answered) => {
                    if !self.queue(&tx, inline.clone()) {
                        return End::Closed;
                    }
                    continue;
                }
                Ok(Inline::Silent) => continue,
                Ok(Inline::Full(admit)) => Some(admit),
                Ok(Inline::NotCommon) => None,
                Err(_) => {
                    tracing::error!(src = %self.src, "a query panicked; it got no answer");
                    continue;
                }
            };
            // Queries that wait on the upstream end within its deadline, so a slot
            // comes free in time unless something is stuck. The listener's slot is
            // taken second, in arrival order, so one connection waits for its own
            // pipeline before it competes with the others.
            let (pipeline, in_flight) = (pipeline.clone(), self.in_flight.clone());
            let wait = tokio::time::timeout(limits.idle_timeout, async move {
                let mine = pipeline.acquire_owned().await?;
                Ok::<_, tokio::sync::AcquireError>((mine, in_flight.acquire_owned().await?))
            });
            let permit = tokio::select! {
                p = wait => match p {
                    Ok(Ok(p)) => p,
                    _ => {
                        close.cancel();
                        return End::Closed;
                    }
                },
                _ = close.cancelled() => return End::Closed,
                _ = shutdown.cancelled() => return End::Shutdown,
            };
            let (tx, dispatcher, src) = (tx.clone(), self.dispatcher.clone(), self.src);
            let (own, all, close) = (self.own.clone(), self.all.clone(), close.clone());
            self.dispatcher.tracker.spawn(async move {
                let _permit = permit;
                if close.is_cancelled() {
                    // Closed while this query waited: its answer would be dropped.
                    return;
                }
                let bytes = match admit {
                    Some(admit) => {
                        dispatcher
                            .respond_admitted(msg, src, Protocol::Tcp, admit)
                            .await
                    }
                    None => dispatcher.respond(msg, src, Protocol::Tcp).await,
                };
                if let Some(bytes) = bytes {
                    queue(&dispatcher, src, &own, &all, &close, &tx, bytes);
                }
            });
        }
        End::Limit
    }

    /// Queue an answer the reader made; false when the connection must close.
    fn queue(&self, tx: &mpsc::UnboundedSender<Frame>, bytes: Vec<u8>) -> bool {
        let close = &self.slot.close;
        queue(
            &self.dispatcher,
            self.src,
            &self.own,
            &self.all,
            close,
            tx,
            bytes,
        );
        !close.is_cancelled()
    }

    /// Write answers as they come, each write within `idle_timeout`; whether every
    /// answer was written. Ends when the reader and every query task are done.
    async fn write<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        mut rx: mpsc::UnboundedReceiver<Frame>,
    ) -> bool {
        let close = &self.slot.close;
        let mut batch: Vec<Frame> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        loop {
            let first = tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => f,
                    None => return true,
                },
                _ = close.cancelled() => return false,
            };
            // Answers ready together go out in one write.
            batch.push(first);
            let mut size = batch[0].bytes.len();
            while size < 16 * 1024
                && let Ok(f) = rx.try_recv()
            {
                size += f.bytes.len();
                batch.push(f);
            }
            out.clear();
            for f in &batch {
                out.extend_from_slice(&(f.bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&f.bytes);
            }
            let written = tokio::select! {
                r = tokio::time::timeout(self.limits.idle_timeout, wr.write_all(&out)) => r,
                _ = close.cancelled() => return false,
            };
            if !matches!(written, Ok(Ok(()))) {
                if written.is_err() {
                    Stats::inc(&self.dispatcher.stats.tcp_unread);
                    tracing::debug!(src = %self.src, "tcp answers not read in time: closing");
                }
                close.cancel();
                return false;
            }
            self.slot.activity.touch();
            batch.clear();
            if out.capacity() > 64 * 1024 {
                out = Vec::new();
            }
        }
    }
}

/// Queue `bytes` to be written, holding its bytes of the connection's and the
/// listener's answer buffers; a client that does not read its answers (or a listener
/// whose answers nobody reads) is closed instead.
fn queue(
    dispatcher: &Dispatcher,
    src: SocketAddr,
    own: &Arc<Semaphore>,
    all: &Arc<Semaphore>,
    close: &tokio_util::sync::CancellationToken,
    tx: &mpsc::UnboundedSender<Frame>,
    bytes: Vec<u8>,
) {
    if bytes.len() > usize::from(u16::MAX) {
        return;
    }
    let need = bytes.len() as u32 + 2;
    let held = own
        .clone()
        .try_acquire_many_owned(need)
        .and_then(|mine| Ok((mine, all.clone().try_acquire_many_owned(need)?)));
    let Ok(held) = held else {
        if !close.is_cancelled() {
            Stats::inc(&dispatcher.stats.tcp_unread);
            tracing::debug!(%src, "tcp answers not read: closing");
            close.cancel();
        }
        return;
    };
    let _ = tx.send(Frame { bytes, _held: held });
}

async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Vec<u8>> {
    let len = rd.read_u16().await? as usize;
    let mut msg = vec![0u8; len];
    rd.read_exact(&mut msg).await?;
    Ok(msg)
}
