//! A small DNS client over real UDP and TCP: queries as bytes, answers as messages, from
//! any 127/8 source address.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::name;

/// Options of a test query.
#[derive(Clone, Copy)]
pub struct Q {
    pub edns: bool,
    pub rd: bool,
    pub id: u16,
}

impl Default for Q {
    fn default() -> Self {
        Q {
            edns: true,
            rd: true,
            id: 4242,
        }
    }
}

pub fn query_bytes(qname: &str, qtype: RecordType, o: Q) -> Vec<u8> {
    let mut m = Message::new(o.id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = o.rd;
    m.add_query(Query::query(name(qname), qtype));
    if o.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Send raw bytes over UDP and wait (at most 3 s) for one datagram back.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp(server: SocketAddr, qname: &str, qtype: RecordType, o: Q) -> Message {
    let bytes = udp_raw(server, &query_bytes(qname, qtype, o))
        .await
        .expect("an answer over UDP");
    let m = Message::from_vec(&bytes).expect("a DNS message");
    assert_eq!(m.metadata.id, o.id, "answer id");
    m
}

/// Send several framed queries on one TCP connection; answers in arrival order.
pub async fn tcp_many(server: SocketAddr, queries: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).await.unwrap();
    for q in queries {
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(q);
        s.write_all(&frame).await.unwrap();
    }
    let mut out = Vec::new();
    for _ in queries {
        let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
            .await
            .expect("tcp answer in time")
            .unwrap();
        let mut buf = vec![0u8; len as usize];
        s.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

pub async fn tcp(server: SocketAddr, qname: &str, qtype: RecordType, o: Q) -> Message {
    tcp_many(server, &[query_bytes(qname, qtype, o)])
        .await
        .remove(0)
}

/// The EDE option (code, text) of an answer, if any.
pub fn ede(m: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let e = m.edns.as_ref()?;
    match e.option(EdnsCode::Unknown(15))? {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

pub fn ips(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Send `bytes` over UDP from `src` (an address and port, any of 127/8) and wait (at most
/// 3 s) for the answer.
pub async fn udp_from(
    src: impl tokio::net::ToSocketAddrs,
    server: SocketAddr,
    bytes: &[u8],
) -> Message {
    let sock = UdpSocket::bind(src).await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a UDP answer in time")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// Options of a test query with this ID (EDNS and RD on).
pub fn q(id: u16) -> Q {
    Q { id, ..Q::default() }
}

/// `bytes` with the two-byte length prefix of DNS over TCP.
pub fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(bytes);
    f
}

/// A TCP connection from `src` (any 127.x address: Linux routes all of 127/8 to lo),
/// with a receive buffer of `rcvbuf` bytes when given.
pub async fn connect_from(src: &str, server: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(server).await.unwrap()
}
