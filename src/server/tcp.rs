//! The TCP listener: caps on connections (in total and per client), an idle timeout,
//! a cap on queries per connection, and pipelining: the queries of one connection are
//! answered concurrently, so a slow name does not hold up the others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::Shared;
use crate::stats::Stats;

/// Limits of the TCP listener (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub idle_timeout: Duration,
    pub max_queries_per_connection: usize,
    /// Queries of one connection answered at the same time.
    pub pipeline: usize,
}

/// Open connections per client address; a guard gives its slot back on drop.
#[derive(Default)]
struct Slots {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

struct SlotGuard {
    slots: Arc<Mutex<Slots>>,
    ip: IpAddr,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.total = s.total.saturating_sub(1);
            if let Some(n) = s.per_client.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    s.per_client.remove(&self.ip);
                }
            }
        }
    }
}

fn take_slot(slots: &Arc<Mutex<Slots>>, ip: IpAddr, limits: &TcpLimits) -> Option<SlotGuard> {
    let mut s = slots.lock().ok()?;
    let mine = s.per_client.get(&ip).copied().unwrap_or(0);
    if s.total >= limits.max_connections || mine >= limits.max_per_client {
        return None;
    }
    s.total += 1;
    s.per_client.insert(ip, mine + 1);
    Some(SlotGuard {
        slots: slots.clone(),
        ip,
    })
}

/// Accept on `listener` until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, limits: TcpLimits) {
    let slots = Arc::new(Mutex::new(Slots::default()));
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
            _ = shared.shutdown.cancelled() => break,
        };
        let Some(guard) = take_slot(&slots, src.ip().to_canonical(), &limits) else {
            Stats::inc(&shared.stats.tcp_rejected);
            drop(stream);
            continue;
        };
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            let _guard = guard;
            connection(stream, src, conn_shared, limits).await;
        });
    }
}

async fn connection(stream: TcpStream, src: SocketAddr, shared: Arc<Shared>, limits: TcpLimits) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.pipeline.max(1));
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let Ok(len) = u16::try_from(msg.len()) else {
                continue;
            };
            let mut frame = Vec::with_capacity(msg.len() + 2);
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&msg);
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let pipeline = Arc::new(Semaphore::new(limits.pipeline.max(1)));
    let mut served = 0usize;
    loop {
        if served >= limits.max_queries_per_connection {
            break;
        }
        let read = async {
            let len = rd.read_u16().await? as usize;
            let mut msg = vec![0u8; len];
            rd.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, read) => match r {
                Ok(Ok(m)) => m,
                // Closed, reset or idle too long.
                _ => break,
            },
            _ = shared.shutdown.cancelled() => break,
        };
        served += 1;
        let Ok(permit) = pipeline.clone().acquire_owned().await else {
            break;
        };
        let tx = tx.clone();
        let q_shared = shared.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            if let Some(bytes) = q_shared.answer(msg, src, Protocol::Tcp).await {
                let _ = tx.send(bytes).await;
            }
        });
    }
    // The writer ends once every in-flight query of this connection has answered.
    drop(tx);
    let _ = writer.await;
}
