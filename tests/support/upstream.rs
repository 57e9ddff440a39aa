//! The loopback upstream: an in-process DNS server on 127.0.0.1 (UDP and TCP, one port)
//! whose answer for each name a test sets, faults included, and the record builders.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How the fake upstream answers one name.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// These records (any type asked gets the records whose type matches, CNAMEs always).
    Records(Vec<Record>),
    /// Like `Records`, every owner written as a pointer to the question, as real servers
    /// compress (hickory compresses only a message's first 120 names): a 64 KB answer
    /// then fits one TCP message.
    Compact(Vec<Record>),
    NxDomain {
        soa: bool,
    },
    ServFail,
    /// Never answers.
    Silent,
    /// Answers as the default after a delay.
    Slow(Duration),
    /// The query's ID followed by random bytes (not a DNS message).
    Garbage,
    /// A correct answer under another ID.
    WrongId,
    /// A correct answer for another name (the question does not match).
    WrongQuestion,
    /// A correct answer, sent from another socket (another source port).
    OtherSocket,
    /// TC=1 over UDP; over TCP the length prefix and half the answer, then close.
    TruncatedTcp,
    /// TC=1 over UDP; over TCP the connection is reset (RST) without an answer.
    ResetTcp,
    /// The test fills in the answer from the query (header bits, OPT, every section).
    Custom(Responder),
}

/// A test's own answer: called with the query and the answer so far (ID, question, RD,
/// RA, and an OPT record when the query had one).
#[derive(Clone)]
pub struct Responder(pub Arc<Respond>);

/// The function of a [`Responder`].
pub type Respond = dyn Fn(&Message, &mut Message) + Send + Sync;

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// What the TCP side does for one name, besides answering normally.
fn tcp_fault(zone: &Mutex<HashMap<String, Behaviour>>, packet: &[u8]) -> Option<Behaviour> {
    let req = Message::from_vec(packet).ok()?;
    let q = req.queries.first()?;
    let qname = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match zone.lock().unwrap().get(&qname) {
        Some(b @ (Behaviour::TruncatedTcp | Behaviour::ResetTcp)) => Some(b.clone()),
        _ => None,
    }
}

/// Whether `packet` asks for a name that must be answered from another socket.
fn other_socket(zone: &Mutex<HashMap<String, Behaviour>>, packet: &[u8]) -> bool {
    let Ok(req) = Message::from_vec(packet) else {
        return false;
    };
    let Some(q) = req.queries.first() else {
        return false;
    };
    let qname = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    matches!(
        zone.lock().unwrap().get(&qname),
        Some(Behaviour::OtherSocket)
    )
}

/// An in-process upstream DNS server on 127.0.0.1 (UDP and TCP, one port).
pub struct Upstream {
    pub addr: SocketAddr,
    /// Scratch space of the test (the hit-log database lives here).
    pub dir: tempfile::TempDir,
    zone: Arc<Mutex<HashMap<String, Behaviour>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    shutdown: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

pub fn a(owner: &str, ip: [u8; 4], ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

pub fn cname(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

pub fn soa(owner: &str, ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name(owner), ttl, RData::SOA(soa))
}

impl Upstream {
    pub async fn start() -> Upstream {
        // UDP and TCP on one port: a port free for UDP may be taken for TCP, so retry.
        let (udp, tcp) = {
            let mut tries = 0;
            loop {
                let udp = UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("bind upstream udp");
                let addr = udp.local_addr().unwrap();
                match TcpListener::bind(addr).await {
                    Ok(tcp) => break (udp, tcp),
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                    }
                    Err(e) => panic!("bind upstream tcp: {e}"),
                }
            }
        };
        Self::serve(udp, tcp)
    }

    /// An upstream on port 53 of `ip` (a loopback address), as a resolv.conf line can
    /// name it; `None` where port 53 cannot be bound (not root).
    #[allow(dead_code)]
    pub async fn start_on_port_53(ip: std::net::Ipv4Addr) -> Option<Upstream> {
        let addr = SocketAddr::from((ip, 53));
        let udp = UdpSocket::bind(addr).await.ok()?;
        let tcp = TcpListener::bind(addr).await.ok()?;
        Some(Self::serve(udp, tcp))
    }

    fn serve(udp: UdpSocket, tcp: TcpListener) -> Upstream {
        let addr = udp.local_addr().expect("bound");
        let up = Upstream {
            addr,
            dir: tempfile::tempdir().expect("temp dir"),
            zone: Arc::default(),
            hits: Arc::default(),
            shutdown: CancellationToken::new(),
        };
        let (zone, hits, stop) = (up.zone.clone(), up.hits.clone(), up.shutdown.clone());
        let udp = Arc::new(udp);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (len, src) = tokio::select! {
                    r = udp.recv_from(&mut buf) => match r { Ok(v) => v, Err(_) => continue },
                    _ = stop.cancelled() => break,
                };
                let packet = buf[..len].to_vec();
                let (zone, hits, udp) = (zone.clone(), hits.clone(), udp.clone());
                tokio::spawn(async move {
                    if let Some(bytes) = answer(&zone, &hits, &packet, true).await {
                        if other_socket(&zone, &packet) {
                            if let Ok(other) = UdpSocket::bind("127.0.0.1:0").await {
                                let _ = other.send_to(&bytes, src).await;
                            }
                        } else {
                            let _ = udp.send_to(&bytes, src).await;
                        }
                    }
                });
            }
        });
        let (zone, hits, stop) = (up.zone.clone(), up.hits.clone(), up.shutdown.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    r = tcp.accept() => match r { Ok(v) => v, Err(_) => continue },
                    _ = stop.cancelled() => break,
                };
                let (zone, hits) = (zone.clone(), hits.clone());
                tokio::spawn(async move {
                    while let Ok(len) = s.read_u16().await {
                        let mut msg = vec![0u8; len as usize];
                        if s.read_exact(&mut msg).await.is_err() {
                            break;
                        }
                        let fault = tcp_fault(&zone, &msg);
                        if let Some(Behaviour::ResetTcp) = fault {
                            // SO_LINGER 0: close sends RST instead of FIN (and, with a
                            // zero timeout, never blocks the thread, which is what the
                            // deprecation warns about).
                            #[allow(deprecated)]
                            let _ = s.set_linger(Some(Duration::ZERO));
                            break;
                        }
                        if let Some(bytes) = answer(&zone, &hits, &msg, false).await {
                            if let Some(Behaviour::TruncatedTcp) = fault {
                                let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
                                frame.extend_from_slice(&bytes[..bytes.len() / 2]);
                                let _ = s.write_all(&frame).await;
                                break;
                            }
                            let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
                            frame.extend_from_slice(&bytes);
                            if s.write_all(&frame).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        up
    }

    pub fn set(&self, owner: &str, b: Behaviour) {
        self.zone
            .lock()
            .unwrap()
            .insert(owner.trim_end_matches('.').to_ascii_lowercase(), b);
    }

    /// Queries this upstream saw for `owner` (any type).
    pub fn hits(&self, owner: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(owner.trim_end_matches('.'))
            .copied()
            .unwrap_or(0)
    }

    /// `IP:PORT` for `--upstream`.
    pub fn spec(&self) -> String {
        self.addr.to_string()
    }
}

async fn answer(
    zone: &Mutex<HashMap<String, Behaviour>>,
    hits: &Mutex<HashMap<String, usize>>,
    packet: &[u8],
    udp: bool,
) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let q = req.queries.first()?.clone();
    let qname = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    *hits.lock().unwrap().entry(qname.clone()).or_default() += 1;
    let behaviour = zone.lock().unwrap().get(&qname).cloned();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        resp.set_edns(e);
    }
    let mut compact = Vec::new();
    let default = |resp: &mut Message| match q.query_type() {
        RecordType::A => {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
        }
        RecordType::AAAA => {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::AAAA(AAAA(Ipv6Addr::from_str("2001:db8::1").unwrap())),
            ));
        }
        _ => {
            resp.add_authority(soa("test.", 300, 60));
        }
    };
    match behaviour {
        None => default(&mut resp),
        Some(Behaviour::Slow(d)) => {
            tokio::time::sleep(d).await;
            default(&mut resp);
        }
        Some(Behaviour::Silent) => return None,
        Some(Behaviour::Garbage) => {
            use rand::RngCore;
            let mut junk = vec![0u8; 64];
            rand::rng().fill_bytes(&mut junk);
            junk[..2].copy_from_slice(&req.metadata.id.to_be_bytes());
            // Not a response bit pattern we could parse: QR set, every count huge.
            junk[2] |= 0x80;
            junk[4..12].fill(0xff);
            return Some(junk);
        }
        Some(Behaviour::WrongId) => {
            resp.metadata.id = req.metadata.id.wrapping_add(1);
            default(&mut resp);
        }
        Some(Behaviour::WrongQuestion) => {
            let other = Query::query(name("elsewhere.example."), q.query_type());
            resp.queries.clear();
            resp.add_query(other.clone());
            resp.add_answer(Record::from_rdata(
                other.name().clone(),
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 66))),
            ));
        }
        Some(Behaviour::OtherSocket) => default(&mut resp),
        Some(Behaviour::TruncatedTcp | Behaviour::ResetTcp) => {
            if udp {
                resp.metadata.truncation = true;
            } else {
                default(&mut resp);
            }
        }
        Some(Behaviour::ServFail) => resp.metadata.response_code = ResponseCode::ServFail,
        Some(Behaviour::NxDomain { soa: with_soa }) => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            if with_soa {
                resp.add_authority(soa("test.", 300, 60));
            }
        }
        Some(Behaviour::Custom(respond)) => (respond.0)(&req, &mut resp),
        Some(Behaviour::Records(records)) => {
            for r in records {
                if r.record_type() == q.query_type() || r.record_type() == RecordType::CNAME {
                    resp.add_answer(r);
                }
            }
        }
        Some(Behaviour::Compact(records)) => {
            compact = records
                .into_iter()
                .filter(|r| r.record_type() == q.query_type())
                .collect();
        }
    }
    let mut bytes = resp.to_vec().ok()?;
    if !compact.is_empty() {
        bytes = with_compact_answers(bytes, req.edns.is_some(), &compact);
    }
    let max = if udp {
        req.max_payload().max(512) as usize
    } else {
        usize::MAX
    };
    if bytes.len() > max {
        let mut tc = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
        tc.metadata.truncation = true;
        tc.metadata.recursion_available = true;
        tc.add_query(q);
        return tc.to_vec().ok();
    }
    Some(bytes)
}

/// `bytes` (an answer without records, its OPT record last when `edns`) with `records`
/// in the answer section, each owner a pointer to the question.
fn with_compact_answers(bytes: Vec<u8>, edns: bool, records: &[Record]) -> Vec<u8> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let opt_at = bytes.len() - if edns { 11 } else { 0 };
    let mut out = bytes[..opt_at].to_vec();
    for r in records {
        let mut tmp = Vec::new();
        let mut enc = BinEncoder::new(&mut tmp);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        r.name.emit(&mut enc).unwrap();
        let owner_len = tmp.len();
        tmp.clear();
        let mut enc = BinEncoder::new(&mut tmp);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        r.emit(&mut enc).unwrap();
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&tmp[owner_len..]);
    }
    out.extend_from_slice(&bytes[opt_at..]);
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    out
}
