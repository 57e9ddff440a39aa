//! The UDP listener: one receive loop per socket and a cap on queries in flight, in
//! total and per client address ([`super::inflight`]); past either, datagrams are
//! dropped and counted, never queued. A common query that is blocked
//! or cached is answered from the raw packet by the loop itself ([`super::wire`]): no
//! copy, no task, no hickory message. The rest get one poll inline (refused, ANY, ...)
//! and become a task only when they wait on the upstream.
//!
//! The socket is registered with the runtime for reading only: registered for writing
//! too, every answer sent woke the runtime once more (the kernel reports room to write
//! after each send). Answers are sent straight away (the socket never blocks); one
//! the socket has no room for is sent from a task that waits for room on a copy of the
//! socket registered for writing only.
//!
//! While queries come one at a time, as from a household, each is received alone and the
//! next receive finds the queue empty: two `recvfrom` calls per wake-up cost less than
//! one `recvmmsg` (docs/performance.md). Two received in a row switch the loop to
//! batches; a batch smaller than [`mmsg::BATCH`] means the queue was empty, so the loop
//! goes back to waiting without another receive call that would only say so, and a
//! batch of one switches it back. (An error in the middle of a batch, which could also
//! cut it short, does not happen on these unconnected sockets: without `IP_RECVERR`
//! Linux does not report ICMP errors on them.) With `[server] threads` above one, each
//! address has one socket and loop per worker (`SO_REUSEPORT`); they share its
//! in-flight caps.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hickory_server::net::xfer::Protocol;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;

use super::dispatch::{Dispatcher, Inline};
use super::inflight::PerClient;
use super::mmsg::{self, Inbox, Outbox, Receive};
use crate::access::Admit;
use crate::stats::Stats;

/// A bound UDP socket registered with the runtime for reading only.
pub(crate) type Socket = Arc<AsyncFd<UdpSocket>>;

/// Register `socket` (non-blocking) for reading.
pub(crate) fn register(socket: UdpSocket) -> io::Result<Socket> {
    // SAFETY: the UdpSocket owns its fd, which stays open as long as the AsyncFd that
    // owns the socket.
    Ok(Arc::new(unsafe {
        AsyncFd::register_with_interest(socket, Interest::READABLE)?
    }))
}

/// Serve `socket` until the server stops (the dispatcher's `stop`, set with its token).
pub(crate) async fn serve(socket: Socket, dispatcher: Arc<Dispatcher>, in_flight: Arc<InFlight>) {
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    let mut name = String::with_capacity(256);
    let mut how = Receive::One;
    // Datagrams received one at a time since the queue was last found empty.
    let mut streak = 0u8;
    // Readiness is looked at first, so while datagrams wait the stop is only read (a
    // flood must not keep a stop out).
    let stop = dispatcher.stop.waiter();
    loop {
        if stop.is_set() {
            break;
        }
        // One datagram was just received alone: whether another waits is asked at once,
        // without a wait (readiness is still set, and this call is what clears it: it
        // costs less than polling the wait again). A second in a row means they come
        // faster than one per wake-up.
        if how == Receive::One && streak == 1 {
            match socket.try_io(Interest::READABLE, |s| mmsg::recv(s, &mut inbox, how)) {
                Ok(_) => (how, streak) = (Receive::Batch, 2),
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "udp receive error");
                    }
                    streak = 0;
                    continue;
                }
            }
        } else {
            // Waiting for readiness each batch also gives tokio's budget a say, so a flood
            // cannot starve the tasks waiting on the upstream.
            let mut ready = tokio::select! {
                biased;
                r = socket.readable() => match r {
                    Ok(ready) => ready,
                    Err(e) => {
                        tracing::warn!(error = %e, "udp socket failed");
                        break;
                    }
                },
                () = stop.wait() => break,
            };
            match ready.try_io(|s| mmsg::recv(s.get_ref(), &mut inbox, how)) {
                // One datagram alone: whether more wait is for the next turn to ask.
                Ok(Ok(_)) if how == Receive::One => streak = 1,
                // A short batch emptied the queue: wait for the next datagram. (Readiness
                // that came in since is kept: tokio clears only what this wait saw.)
                Ok(Ok(n)) if n < mmsg::BATCH => {
                    ready.clear_ready();
                    if n == 1 {
                        (how, streak) = (Receive::One, 0);
                    }
                }
                Ok(Ok(_)) => {}
                // Nothing there (`try_io` cleared the readiness).
                Err(_would_block) => {
                    streak = 0;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            }
        }
        answer(
            &socket,
            &dispatcher,
            &in_flight,
            &inbox,
            &mut name,
            &mut outbox,
        );
    }
}

/// Answer what `inbox` holds, and send the answers.
fn answer(
    socket: &Socket,
    dispatcher: &Arc<Dispatcher>,
    in_flight: &InFlight,
    inbox: &Inbox,
    name: &mut String,
    outbox: &mut Outbox,
) {
    for i in 0..inbox.len() {
        let Some((packet, src)) = inbox.get(i) else {
            Stats::inc(&dispatcher.stats.malformed);
            continue;
        };
        query(socket, dispatcher, in_flight, packet, src, name, outbox);
        if outbox.is_full() {
            flush(socket, dispatcher, outbox);
        }
    }
    flush(socket, dispatcher, outbox);
}

/// The in-flight slots of one address (all its sockets): in total and per client.
pub(crate) struct InFlight {
    total: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

impl InFlight {
    /// `max` queries in flight in total, a share of it per client.
    pub(crate) fn new(max: NonZeroUsize) -> Arc<InFlight> {
        Arc::new(InFlight {
            total: Arc::new(Semaphore::new(max.get())),
            per_client: PerClient::new(PerClient::share_of(max)),
        })
    }
}

/// One datagram: answered into `outbox` when blocked or cached, else by the full path
/// (inline when it needs no upstream, otherwise in a task).
fn query(
    socket: &Socket,
    dispatcher: &Arc<Dispatcher>,
    in_flight: &InFlight,
    packet: &[u8],
    src: SocketAddr,
    name: &mut String,
    outbox: &mut Outbox,
) {
    // A panic in one query must not take the receive loop with it.
    let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatcher.respond_inline(packet, src, Protocol::Udp, name, outbox.next())
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
fn flush(socket: &Socket, dispatcher: &Dispatcher, outbox: &mut Outbox) {
    outbox.flush(socket.get_ref(), |bytes, to| {
        let socket = socket.clone();
        let bytes = bytes.to_vec();
        dispatcher.tracker.spawn(async move {
            if let Err(e) = send_to(&socket, &bytes, to).await {
                tracing::debug!(%to, error = %e, "udp send failed");
            }
        });
    });
}

/// Send one answer, waiting for room when the socket has none now.
async fn send_to(socket: &Socket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.get_ref().send_to(bytes, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r.map(drop),
    }
    // The socket is registered for reading only: wait for room on a copy registered
    // for writing only (rare: the kernel's send buffer is full).
    let copy = socket.get_ref().try_clone()?;
    // SAFETY: as in `register`: the copy owns its fd for the AsyncFd's lifetime.
    let copy = unsafe { AsyncFd::register_with_interest(copy, Interest::WRITABLE)? };
    loop {
        let mut room = copy.writable().await?;
        if let Ok(r) = room.try_io(|s| s.get_ref().send_to(bytes, to)) {
            return r.map(drop);
        }
    }
}

/// The full path for one datagram (from its start, or after the inline path
/// admitted it), and the send of its answer.
async fn respond_and_send(
    socket: &Socket,
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
        && let Err(e) = send_to(socket, &bytes, src).await
    {
        tracing::debug!(%src, error = %e, "udp send failed");
    }
}
