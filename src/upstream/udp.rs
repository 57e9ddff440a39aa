//! One exchange with a plain upstream over UDP, made directly rather than through
//! hickory's name-server pool: a fresh socket on a port the kernel picks at random,
//! connected to the upstream (the kernel drops datagrams from anyone else), the query
//! under a random ID, and the first reply whose ID, flags and question match; anything
//! else is ignored until the caller's attempt timeout. A truncated reply says so, and
//! the caller asks again over TCP. The pool cost about 77,000 instructions per forwarded
//! query (a request, a stream, futures, a timer and a hashed entry of its own);
//! docs/performance.md has the figures.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{DnsRequest, Message, MessageType};
use hickory_proto::rr::DNSClass;
use tokio::net::UdpSocket;

/// Bytes read per reply: more than the EDNS payload we offer
/// ([`super::EDNS_PAYLOAD`]), so a longer datagram is seen whole.
const BUF: usize = 4096;

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
pub(super) async fn exchange(addr: SocketAddr, request: &DnsRequest) -> io::Result<Reply> {
    let id = request.metadata.id;
    let bytes = request.to_vec().map_err(io::Error::other)?;

    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0; BUF];
    loop {
        let n = socket.recv(&mut buf).await?;
        let reply = &buf[..n];
        // ID, QR=1 and TC from the header, before parsing: a truncated reply may be
        // cut anywhere after it.
        let [a, b, flags, ..] = *reply else { continue };
        if u16::from_be_bytes([a, b]) != id || flags & 0x80 == 0 {
            continue;
        }
        if flags & 0x02 != 0 {
            return Ok(Reply::Truncated);
        }
        match Message::from_vec(reply) {
            Ok(msg) if answers(&msg, request) => return Ok(Reply::Message(msg)),
            _ => continue,
        }
    }
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
