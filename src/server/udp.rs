//! The UDP listener: one receive loop per socket and a cap on queries in flight, in
//! total and per client address ([`super::inflight`]); past either, datagrams are
//! dropped and counted, never queued. A common query that is blocked
//! or cached is answered from the raw packet by the loop itself ([`super::wire`]): no
//! copy, no task, no hickory message. The rest get one poll inline (refused, ANY, ...)
//! and become a task only when they wait on the upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hickory_server::net::xfer::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::dispatch::{Dispatcher, Inline};
use super::inflight::PerClient;
use super::mmsg::{self, Inbox, Outbox};
use crate::access::Admit;
use crate::stats::Stats;

/// Serve `socket` until the shared shutdown token is cancelled.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    dispatcher: Arc<Dispatcher>,
    max_in_flight: NonZeroUsize,
) {
    let in_flight = InFlight {
        total: Arc::new(Semaphore::new(max_in_flight.get())),
        per_client: PerClient::new(PerClient::share_of(max_in_flight)),
    };
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    let mut name = String::with_capacity(256);
    loop {
        // Waiting for readiness each batch also gives tokio's budget a say, so a flood
        // cannot starve the tasks waiting on the upstream.
        tokio::select! {
            r = socket.readable() => if let Err(e) = r {
                tracing::warn!(error = %e, "udp socket failed");
                break;
            },
            _ = dispatcher.shutdown.cancelled() => break,
        }
        match mmsg::recv(&socket, &mut inbox) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux: not fatal.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        }
        for i in 0..inbox.len() {
            let Some((packet, src)) = inbox.get(i) else {
                Stats::inc(&dispatcher.stats.malformed);
                continue;
            };
            query(
                &socket,
                &dispatcher,
                &in_flight,
                packet,
                src,
                &mut name,
                &mut outbox,
            );
            if outbox.is_full() {
                flush(&socket, &dispatcher, &mut outbox);
            }
        }
        flush(&socket, &dispatcher, &mut outbox);
    }
}

/// The in-flight slots of one socket: in total and per client.
struct InFlight {
    total: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

/// One datagram: answered into `outbox` when blocked or cached, else by the full path
/// (inline when it needs no upstream, otherwise in a task).
fn query(
    socket: &Arc<UdpSocket>,
    dispatcher: &Arc<Dispatcher>,
    in_flight: &InFlight,
    packet: &[u8],
    src: SocketAddr,
    name: &mut String,
    outbox: &mut Outbox,
) {
    // A panic in one query must not take the receive loop with it.
    let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatcher.respond_inline(packet, src, name, outbox.next())
    }));
    let admit = match fast {
        Ok(Inline::Answered) => {
            outbox.push(src);
            return;
        }
        Ok(Inline::Silent) => return,
        Ok(Inline::Full(admit)) => Some(admit),
        Ok(Inline::NotCommon) => None,
        Err(_) => {
            tracing::error!(%src, "a query panicked; it got no answer");
            return;
        }
    };
    // Its client's share first: a flooding client is turned away before it can
    // take a slot from the total.
    let Some(share) = in_flight.per_client.try_take(src.ip()) else {
        Stats::inc(&dispatcher.stats.udp_dropped);
        return;
    };
    let Ok(permit) = in_flight.total.clone().try_acquire_owned() else {
        Stats::inc(&dispatcher.stats.udp_dropped);
        return;
    };
    let packet = packet.to_vec();
    let socket = socket.clone();
    let task_dispatcher = dispatcher.clone();
    let mut query: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        let _held = (permit, share);
        respond_and_send(&socket, &task_dispatcher, packet, src, admit).await;
    });
    // One poll with a no-op waker: answers that need nothing from the network finish
    // here. The rest are handed to a task, which polls again at once and so registers
    // its real waker; nothing is sent twice because it is the same future. A panic in
    // one query must not take the receive loop with it (a spawned task would contain it
    // the same way).
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        query.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }));
    match polled {
        Ok(Poll::Pending) => {
            dispatcher.tracker.spawn(query);
        }
        Ok(Poll::Ready(())) => {}
        Err(_) => tracing::error!(%src, "a query panicked; it got no answer"),
    }
}

/// Send the queued answers; those the socket cannot take now go out from a task.
fn flush(socket: &Arc<UdpSocket>, dispatcher: &Dispatcher, outbox: &mut Outbox) {
    outbox.flush(socket, |bytes, to| {
        let socket = socket.clone();
        let bytes = bytes.to_vec();
        dispatcher.tracker.spawn(async move {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::debug!(%to, error = %e, "udp send failed");
            }
        });
    });
}

/// The full path for one datagram (from its start, or after the inline path
/// admitted it), and the send of its answer.
async fn respond_and_send(
    socket: &UdpSocket,
    dispatcher: &Dispatcher,
    packet: Vec<u8>,
    src: SocketAddr,
    admit: Option<Admit>,
) {
    let bytes = match admit {
        Some(admit) => {
            dispatcher
                .respond_admitted(packet, src, Protocol::Udp, admit)
                .await
        }
        None => dispatcher.respond(packet, src, Protocol::Udp).await,
    };
    if let Some(bytes) = bytes
        && let Err(e) = socket.send_to(&bytes, src).await
    {
        tracing::debug!(%src, error = %e, "udp send failed");
    }
}
