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

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::net::UdpSocket;

use crate::cache::DnssecBits;

/// The EDNS payload size we offer (the DNS Flag Day 2020 value, as the pool offered).
pub(super) const PAYLOAD: u16 = 1232;

/// Bytes read per reply: more than [`PAYLOAD`], so a longer datagram is seen whole.
const BUF: usize = 4096;

/// What the upstream sent back.
pub(super) enum Reply {
    /// The reply to our question.
    Message(Message),
    /// The reply did not fit (TC): ask again over TCP.
    Truncated,
}

/// Ask `addr` for `name`/`qtype` with the client's DO and CD bits. Returns when a
/// matching reply came, or with the socket's error (an ICMP port unreachable, ...);
/// never returns otherwise: the caller bounds it with its timeout.
pub(super) async fn exchange(
    addr: SocketAddr,
    name: &Name,
    qtype: RecordType,
    bits: DnssecBits,
) -> io::Result<Reply> {
    let id: u16 = rand::random();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.metadata.checking_disabled = bits.checking_disabled;
    query.add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    edns.set_dnssec_ok(bits.dnssec_ok);
    query.set_edns(edns);
    let bytes = query.to_vec().map_err(io::Error::other)?;

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
            Ok(msg) if asks(&msg, name, qtype) => return Ok(Reply::Message(msg)),
            _ => continue,
        }
    }
}

/// Whether `msg` is about our question (names compare without regard to case).
fn asks(msg: &Message, name: &Name, qtype: RecordType) -> bool {
    matches!(msg.queries.as_slice(), [q] if q.name() == name
        && q.query_type() == qtype
        && q.query_class() == DNSClass::IN)
        && msg.metadata.message_type == MessageType::Response
}
