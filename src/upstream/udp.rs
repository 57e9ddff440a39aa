//! One exchange with a plain upstream over UDP, made directly rather than through
//! hickory's name-server pool: a fresh socket on a port the kernel picks at random,
//! connected to the upstream (the kernel drops datagrams from anyone else), the query
//! under a random ID, and the first reply whose ID, flags and question match; anything
//! else is ignored until the caller's attempt timeout. A truncated reply says so, and
//! the caller asks again over TCP. The pool cost about 77,000 instructions per forwarded
//! query (a request, a stream, futures, a timer and a hashed entry of its own);
//! docs/performance.md has the figures.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};

use hickory_proto::op::{DnsRequest, Message, MessageType};
use hickory_proto::rr::DNSClass;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Bytes read per reply: more than the EDNS payload we offer
/// ([`super::EDNS_PAYLOAD`]), so a longer datagram is seen whole.
const BUF: usize = 4096;

thread_local! {
    /// Where replies are read: each is parsed before the next await, so one buffer per
    /// thread serves every exchange on it (no allocation per forwarded query).
    static REPLY: RefCell<[u8; BUF]> = const { RefCell::new([0; BUF]) };
}

/// What the upstream sent back.
pub(super) enum Reply {
    /// The reply to our question.
    Message(Message),
    /// The reply did not fit (TC): ask again over TCP.
    Truncated,
}

/// Send `request` (see `super::request`: a random ID, the client's DO and CD bits) to
/// `addr`. Returns when a matching reply came, or with the socket's error (an ICMP port
/// unreachable, ...); never returns otherwise: the caller bounds it with its timeout.
///
/// The socket is sent on before it is registered with the runtime, registered for
/// reading only, and only when the reply has not come by the time the task runs again:
/// the send needs no wake-up of its own, and no writable event wakes the runtime.
/// `connect` binds it to a port the kernel picks at random (no `bind`), and makes the
/// kernel report an ICMP error for it, so a dead upstream fails at once.
pub(super) async fn exchange(addr: SocketAddr, request: &DnsRequest) -> io::Result<Reply> {
    let id = request.metadata.id;
    let bytes = match wire(request) {
        Some(b) => b,
        None => request.to_vec().map_err(io::Error::other)?,
    };
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    socket.connect(&addr.into())?;
    let socket = UdpSocket::from(socket);
    socket.send(&bytes)?;
    // Let the caller go on first (the UDP thread answers the rest of its batch, and
    // this task runs once that is sent): the reply has often come by then, and a
    // receive that finds it costs less than registering the socket with the runtime
    // and removing it again (two `epoll_ctl` calls). Measured in docs/performance.md.
    Later::default().await;
    match read(&socket, id, request) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        got => return got,
    }
    // SAFETY: the UdpSocket owns its fd, which stays open as long as the AsyncFd that
    // owns the socket.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
    loop {
        // ERROR too: an ICMP "port unreachable" (a dead upstream) sets the socket's
        // error, which epoll reports alone; the `recv` in `read` then returns it.
        let mut ready = socket.ready(Interest::READABLE | Interest::ERROR).await?;
        if let Ok(got) = ready.try_io(|s| read(s.get_ref(), id, request)) {
            return got;
        }
        // Nothing of ours yet (`try_io` cleared the readiness): wait again.
    }
}

/// Read what `socket` has until the reply to `request` (ID `id`) is among it; anything
/// else is dropped. `WouldBlock` once nothing is left.
fn read(socket: &UdpSocket, id: u16, request: &DnsRequest) -> io::Result<Reply> {
    loop {
        let got = REPLY.with_borrow_mut(|buf| -> io::Result<Option<Reply>> {
            let n = socket.recv(buf)?;
            Ok(reply(&buf[..n], id, request))
        })?;
        if let Some(reply) = got {
            return Ok(reply);
        }
    }
}

/// Pending once, and wakes itself: the task goes to the back of its runtime's queue,
/// behind whatever its caller does next.
#[derive(Default)]
struct Later(bool);

impl Future for Later {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// `datagram` as the reply to `request` (ID `id`), or `None` when it is not one.
fn reply(datagram: &[u8], id: u16, request: &DnsRequest) -> Option<Reply> {
    // ID, QR=1 and TC from the header, before parsing: a truncated reply may be cut
    // anywhere after it.
    let [a, b, flags, ..] = *datagram else {
        return None;
    };
    if u16::from_be_bytes([a, b]) != id || flags & 0x80 == 0 {
        return None;
    }
    if flags & 0x02 != 0 {
        return Some(Reply::Truncated);
    }
    match Message::from_vec(datagram) {
        Ok(msg) if answers(&msg, request) => Some(Reply::Message(msg)),
        _ => None,
    }
}

/// `request` on the wire, written directly for the shape `super::request` builds (one
/// question, RD and CD, an OPT record without options), which hickory's encoder took
/// about 5,000 instructions for; `None` for any other shape (then hickory encodes it).
/// A test checks that both give the same bytes.
fn wire(request: &DnsRequest) -> Option<Vec<u8>> {
    let [q] = request.queries.as_slice() else {
        return None;
    };
    let edns = request.edns.as_ref()?;
    if !edns.options().as_ref().is_empty() || edns.version() != 0 || edns.rcode_high() != 0 {
        return None;
    }
    let m = &request.metadata;
    let mut out = Vec::with_capacity(12 + 256 + 4 + 11);
    out.extend_from_slice(&m.id.to_be_bytes());
    out.push(u8::from(m.recursion_desired));
    out.push(if m.checking_disabled { 0x10 } else { 0 });
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    for label in q.name().iter() {
        out.push(u8::try_from(label.len()).ok()?);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&u16::from(q.query_type()).to_be_bytes());
    out.extend_from_slice(&u16::from(q.query_class()).to_be_bytes());
    // OPT: the root name, type 41, our payload size as the class, DO in the TTL field.
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&edns.max_payload().to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&u16::from(*edns.flags()).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    Some(out)
}

/// Whether `msg` is a response to `request`'s question (names compare without regard
/// to case).
fn answers(msg: &Message, request: &DnsRequest) -> bool {
    matches!((msg.queries.as_slice(), request.queries.as_slice()), ([q], [ours])
        if q.name() == ours.name()
            && q.query_type() == ours.query_type()
            && q.query_class() == DNSClass::IN)
        && msg.metadata.message_type == MessageType::Response
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::cache::DnssecBits;

    /// The bytes we write are hickory's for every request `super::request` builds.
    #[test]
    fn the_request_on_the_wire_is_hickorys_encoding() {
        let names = [
            ".",
            "example.com",
            "example.com.",
            "WWW.Example.COM",
            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
            "xn--bcher-kva.example",
            "_dmarc.example.org.",
            &format!("{}.com", "a".repeat(63)),
        ];
        let types = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::HTTPS,
            RecordType::DS,
        ];
        for name in names {
            let name = Name::from_ascii(name).unwrap();
            for qtype in types {
                for (dnssec_ok, checking_disabled) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let bits = DnssecBits {
                        dnssec_ok,
                        checking_disabled,
                    };
                    let request = super::super::request(&name, qtype, bits);
                    assert_eq!(
                        wire(&request),
                        Some(request.to_vec().unwrap()),
                        "{name} {qtype} {bits:?}"
                    );
                }
            }
        }
    }
}
