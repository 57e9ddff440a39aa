//! The UDP listener: one thread per socket and a cap on queries in flight, in total and
//! per client address ([`super::inflight`]); past either, datagrams are dropped and
//! counted, never queued. A common query that is blocked or cached is answered from the
//! raw packet by the thread itself ([`super::wire`]): no copy, no task, no hickory
//! message. The rest get one poll inline (refused, ANY, ...) and become a task only when
//! they wait on the upstream.
//!
//! While no query is in flight, the thread waits in the receive call itself (the socket
//! is blocking): a query answered from the cache or the lists costs one `recvfrom` and
//! one `sendto`, and nothing of a runtime around them. A task on the runtime cost one
//! `epoll_wait` and one `recvfrom` that finds the queue empty more per query, and the
//! runtime's own work per wake-up (docs/performance.md). Idle, the thread sleeps in the
//! kernel and never wakes. The tasks of queries that wait on the upstream run on the
//! thread's own runtime (current-thread): while any is in flight, the thread waits for
//! datagrams there, on the socket's readiness, and so sends and receives for its
//! forwards on the same thread, with no wake-up of another. The socket is in the
//! runtime's epoll set only around such times ([`Watch`]): an entry there costs each
//! sent datagram a call into epoll.
//!
//! Datagrams that come one at a time are received with `recvfrom`; every
//! [`PROBE_EVERY`]th receive, and every receive after a batch of more than one, is a
//! `recvmmsg` of up to [`mmsg::BATCH`], which takes what else is queued without waiting
//! (so under load the thread receives in batches). Sends never wait (`MSG_DONTWAIT`); an
//! answer the socket has no room for is sent from a task that waits for room on a copy
//! of the socket registered for writing only.
//!
//! At a stop, the flag is set and `shutdown(SHUT_RD)` wakes the receive call (or the
//! runtime's wait for readiness); the thread answers what is in flight, for
//! [`DRAIN`] at most, and ends. With `[server] threads` above one, each address has
//! one socket and thread per worker (`SO_REUSEPORT`); they share its in-flight caps.
//! The threads count their waits in a [`Liveness`] like the runtime's workers do, for
//! the systemd watchdog.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::clock::Now;
use super::dispatch::{Dispatcher, Inline};
use super::inflight::PerClient;
use super::liveness::Liveness;
use super::mmsg::{self, Inbox, Outbox, Receive, Wait};
use crate::access::Admit;
use crate::stats::Stats;

/// A bound, blocking UDP socket. It is registered with its thread's runtime only
/// while the thread has tasks to drive ([`Watch`]).
pub(crate) type Socket = Arc<UdpSocket>;

/// The socket's fd, registered for reading with the thread's runtime (epoll) when the
/// thread first waits there, and deregistered after [`UNWATCH_AFTER`] receives in a row
/// in the receive call. A registered socket has an epoll entry on its wait queue, and
/// each datagram it sends calls into epoll once the kernel has delivered it (its send
/// buffer has room again): ~2 % of the CPU at saturation. With no entry, the kernel
/// skips that.
struct Watch(RawFd);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// How long a stopping thread waits for its queries in flight.
pub(crate) const DRAIN: Duration = Duration::from_millis(1500);

/// Receives of one datagram between two batch receives that look for a queue.
const PROBE_EVERY: u8 = 16;

/// Receives in a row in the receive call (no task in flight) after which the socket
/// leaves the runtime's epoll set. A household's forwards come and go: this keeps them
/// from registering the socket again at each.
const UNWATCH_AFTER: u8 = 64;

/// How long the tasks are driven without the socket when it cannot be registered.
const UNWATCHED_WAIT: Duration = Duration::from_millis(20);

/// Start the thread of `socket` (bound; the thread is `mg-udp:PORT`), its waits counted
/// in `live`. The returned future ends once the server stops (the dispatcher's token)
/// and the thread is gone.
pub(crate) fn start(
    socket: UdpSocket,
    dispatcher: Arc<Dispatcher>,
    in_flight: Arc<InFlight>,
    live: Arc<Liveness>,
) -> io::Result<impl Future<Output = ()> + Send + 'static> {
    socket.set_nonblocking(false)?;
    let mut builder = tokio::runtime::Builder::new_current_thread();
    live.count(&mut builder);
    let rt = builder.enable_all().build()?;
    let socket = Arc::new(socket);
    let name = match socket.local_addr() {
        Ok(a) => format!("mg-udp:{}", a.port()),
        Err(_) => "mg-udp".into(),
    };
    let (s, d) = (socket.clone(), dispatcher.clone());
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&rt, &s, &d, &in_flight, &live))?;
    let wake = Wake { socket, dispatcher };
    Ok(async move {
        wake.dispatcher.shutdown.cancelled().await;
        drop(wake);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    })
}

/// Stops the thread when dropped (at the stop, or with the listener's future): the
/// flag, then a wake-up of its receive call. It keeps the socket, so the fd it shuts
/// down is still the socket's.
struct Wake {
    socket: Socket,
    dispatcher: Arc<Dispatcher>,
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.dispatcher.stop.store(true, Ordering::Release);
        // Linux wakes a receiver blocked on a UDP socket whose reading is shut down
        // (the call returns ENOTCONN on an unconnected socket, and acts all the same),
        // and reports the socket readable to a wait for readiness.
        // SAFETY: a plain call on the socket's own open fd.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
    }
}

/// A query (or a late send) that waits on the network: a task on the thread's runtime.
type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What one thread receives into and answers from.
struct Receiver {
    inbox: Inbox,
    outbox: Outbox,
    name: String,
    how: Receive,
    /// Receives of one datagram since the last batch receive.
    ones: u8,
    /// Made since the last wait on the runtime; spawned there, from inside its
    /// `block_on` (spawned from outside, each one woke the runtime's driver: one more
    /// system call and one more return from `epoll_wait` per forward).
    new: Vec<Pending>,
}

/// The thread: receive and answer until the server stops, then let what is in flight
/// finish (for [`DRAIN`] at most).
fn run(
    rt: &Runtime,
    socket: &Socket,
    dispatcher: &Arc<Dispatcher>,
    in_flight: &InFlight,
    live: &Liveness,
) {
    // Tasks spawned from here go to this thread's runtime.
    let _in = rt.enter();
    #[cfg(test)]
    crate::alloc_count::count_this_thread();
    let tasks = TaskTracker::new();
    tasks.close();
    let mut r = Receiver {
        inbox: Inbox::default(),
        outbox: Outbox::default(),
        name: String::with_capacity(256),
        how: Receive::One,
        ones: 0,
        new: Vec::new(),
    };
    let mut watch: Option<AsyncFd<Watch>> = None;
    let mut unwatched_in = UNWATCH_AFTER;
    let mut warned = false;
    let stopped = || dispatcher.stop.load(Ordering::Acquire);
    while !stopped() {
        if r.how == Receive::One {
            r.ones += 1;
            if r.ones == PROBE_EVERY {
                (r.how, r.ones) = (Receive::Batch, 0);
            }
        }
        // Any task alive or to be (a query, a late send, or one a query spawned) needs
        // the runtime: wait there. Otherwise in the receive call.
        let got = if !r.new.is_empty() || rt.metrics().num_alive_tasks() > 0 {
            unwatched_in = UNWATCH_AFTER;
            let w = match watch {
                Some(ref w) => w,
                None => {
                    // SAFETY: the fd is the socket's, which `run`'s caller keeps open
                    // until `run` returns; `watch` is dropped before that.
                    let fd = Watch(socket.as_raw_fd());
                    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                        Ok(w) => &*watch.insert(w),
                        // epoll out of room (`max_user_watches`) or memory: drive the
                        // tasks a moment without the socket (its datagrams wait in its
                        // buffer), then try again. The listener goes on.
                        Err(e) => {
                            if !warned {
                                warned = true;
                                tracing::warn!(error = %e, "udp socket cannot be watched; its forwards are driven without it");
                            }
                            drive(rt, &tasks, &mut r.new, UNWATCHED_WAIT);
                            continue;
                        }
                    }
                }
            };
            match rt.block_on(ready(socket, w, &tasks, &mut r)) {
                Some(got) => got,
                None => continue,
            }
        } else {
            if watch.is_some() {
                unwatched_in -= 1;
                if unwatched_in == 0 {
                    watch = None;
                }
            }
            live.park();
            let got = mmsg::recv(socket, &mut r.inbox, r.how, Wait::Yes);
            live.unpark();
            got
        };
        if stopped() {
            break;
        }
        match got {
            Ok(n) => r.how = if n > 1 { Receive::Batch } else { Receive::One },
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => continue,
                // Out of kernel memory for a moment: try again.
                io::ErrorKind::OutOfMemory => {
                    std::thread::yield_now();
                    continue;
                }
                _ => {
                    tracing::error!(error = %e, "udp socket failed; its listener stops");
                    break;
                }
            },
        }
        answer(socket, dispatcher, in_flight, &mut r);
    }
    drop(watch);
    drive(rt, &tasks, &mut r.new, DRAIN);
}

/// Make the `new` tasks and drive them all on `rt` until they are done, `limit` at most.
fn drive(rt: &Runtime, tasks: &TaskTracker, new: &mut Vec<Pending>, limit: Duration) {
    rt.block_on(async {
        spawn(tasks, new);
        let _ = tokio::time::timeout(limit, tasks.wait()).await;
    });
}

/// Make `new` tasks of `tasks` (called on the runtime).
fn spawn(tasks: &TaskTracker, new: &mut Vec<Pending>) {
    for q in new.drain(..) {
        tasks.spawn(q);
    }
}

/// On the runtime, which drives the tasks meanwhile: receive what the socket has once
/// it is readable; `None` once the tasks of queries are all done (or the receive found
/// nothing).
async fn ready(
    socket: &Socket,
    watch: &AsyncFd<Watch>,
    tasks: &TaskTracker,
    r: &mut Receiver,
) -> Option<io::Result<usize>> {
    spawn(tasks, &mut r.new);
    let mut ready = tokio::select! {
        biased;
        ready = watch.readable() => match ready {
            Ok(ready) => ready,
            Err(e) => return Some(Err(e)),
        },
        // Tasks that no query made (a diagnosis an upstream failure spawned) are
        // not waited for: the loop keeps waiting here until they are gone.
        () = tasks.wait(), if !tasks.is_empty() => return None,
    };
    let got = ready.try_io(|_| mmsg::recv(socket, &mut r.inbox, r.how, Wait::No));
    match got {
        // A short batch emptied the queue: the next wait is for a new datagram.
        Ok(Ok(n)) if n < mmsg::BATCH && r.how == Receive::Batch => {
            ready.clear_ready();
            Some(Ok(n))
        }
        Ok(got) => Some(got),
        // Nothing there (`try_io` cleared the readiness).
        Err(_would_block) => None,
    }
}

/// Answer what `inbox` holds, and send the answers.
fn answer(socket: &Socket, dispatcher: &Arc<Dispatcher>, in_flight: &InFlight, r: &mut Receiver) {
    let Receiver {
        inbox,
        outbox,
        name,
        new,
        ..
    } = r;
    // One reading of the clocks for the batch: it came in one receive.
    let now = Now::read();
    for i in 0..inbox.len() {
        let Some((packet, src)) = inbox.get(i) else {
            Stats::inc(&dispatcher.stats.malformed);
            continue;
        };
        query(
            socket, dispatcher, in_flight, packet, src, now, name, outbox, new,
        );
        if outbox.is_full() {
            flush(socket, outbox, new);
        }
    }
    flush(socket, outbox, new);
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
#[allow(clippy::too_many_arguments)]
fn query(
    socket: &Socket,
    dispatcher: &Arc<Dispatcher>,
    in_flight: &InFlight,
    packet: &[u8],
    src: SocketAddr,
    now: Now,
    name: &mut String,
    outbox: &mut Outbox,
    new: &mut Vec<Pending>,
) {
    // A panic in one query must not take the receive loop with it.
    let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatcher.respond_inline(packet, src, Protocol::Udp, now, name, outbox.next())
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
    let mut query: Pending = Box::pin(async move {
        let _held = (permit, share);
        respond_and_send(&socket, &task_dispatcher, packet, src, admit).await;
    });
    // One poll with a no-op waker: answers that need nothing from the network finish
    // here. The rest become tasks, which poll again at once and so register their
    // real waker; nothing is sent twice because it is the same future. A panic in
    // one query must not take the receive loop with it (a spawned task would contain it
    // the same way).
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        query.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }));
    match polled {
        Ok(Poll::Pending) => new.push(query),
        Ok(Poll::Ready(())) => {}
        Err(_) => tracing::error!(%src, "a query panicked; it got no answer"),
    }
}

/// Send the queued answers; those the socket cannot take now go out from a task.
fn flush(socket: &Socket, outbox: &mut Outbox, new: &mut Vec<Pending>) {
    outbox.flush(socket, |bytes, to| {
        let socket = socket.clone();
        let bytes = bytes.to_vec();
        new.push(Box::pin(async move {
            if let Err(e) = send_to(&socket, &bytes, to).await {
                tracing::debug!(%to, error = %e, "udp send failed");
            }
        }));
    });
}

/// Send one answer, waiting for room when the socket has none now.
async fn send_to(socket: &Socket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    match mmsg::send_one(socket, bytes, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r.map(drop),
    }
    // The socket, when registered, is for reading only: wait for room on a copy
    // registered for writing only (rare: the kernel's send buffer is full).
    let copy = socket.try_clone()?;
    // SAFETY: the copy owns its fd, which stays open as long as the AsyncFd that owns
    // the copy. (It is blocking like the socket; every send on it passes MSG_DONTWAIT.)
    let copy = unsafe { AsyncFd::register_with_interest(copy, Interest::WRITABLE)? };
    loop {
        let mut room = copy.writable().await?;
        if let Ok(r) = room.try_io(|s| mmsg::send_one(s.get_ref(), bytes, to)) {
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
