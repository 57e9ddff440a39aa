//! The resolver core over real UDP and TCP on 127.0.0.1, against an in-process upstream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use metaguard::filter::BlockResponse;

#[tokio::test]
async fn forwards_allowed_names_over_udp_and_tcp() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let m = udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert!(m.metadata.recursion_available && !m.metadata.authoritative);
    let m = tcp(addr, "www.example.com.", RecordType::AAAA, Q::default()).await;
    assert_eq!(ips(&m), ["2001:db8::1"]);
    srv.stop().await;
}

#[tokio::test]
async fn blocks_meta_trackers_with_null_answers_and_ede() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for (qtype, want) in [(RecordType::A, "0.0.0.0"), (RecordType::AAAA, "::")] {
        let m = udp(addr, "connect.facebook.net.", qtype, Q::default()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ips(&m), [want]);
        let (code, text) = ede(&m).expect("EDE on a blocked answer");
        assert_eq!(code, 15);
        assert!(text.contains("pixel"), "{text}");
    }
    // Other types: NODATA with an SOA.
    let m = tcp(addr, "x.an.facebook.com.", RecordType::MX, Q::default()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    assert!(ede(&m).unwrap().1.contains("audience-network"));
    // No EDNS from the client: no OPT back.
    let m = udp(
        addr,
        "pixel.facebook.com.",
        RecordType::A,
        Q {
            edns: false,
            ..Q::default()
        },
    )
    .await;
    assert!(m.edns.is_none());
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // A blocked name is never sent upstream; a first-party one is answered.
    assert_eq!(
        up.hits("connect.facebook.net") + up.hits("x.an.facebook.com"),
        0
    );
    let m = udp(addr, "www.facebook.com.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    let s = srv.stats();
    assert_eq!(s.blocked, 4);
    assert_eq!(s.logged, 1);
    srv.stop().await;
}

/// A query whose name has the mixed case of `spelled` (hickory's encoder lowercases).
fn mixed_case_query(spelled: &str, qtype: RecordType) -> Vec<u8> {
    let mut q = query_bytes(&spelled.to_ascii_lowercase(), qtype, Q::default());
    // Question starts after the 12-byte header; labels keep their length bytes.
    let mut i = 12;
    for label in spelled.trim_end_matches('.').split('.') {
        q[i + 1..i + 1 + label.len()].copy_from_slice(label.as_bytes());
        i += 1 + label.len();
    }
    q
}

#[tokio::test]
async fn answers_keep_the_clients_spelling() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for spelled in ["CoNNect.FaceBook.NET.", "WwW.ExAmple.COM."] {
        let raw = udp_raw(addr, &mixed_case_query(spelled, RecordType::A))
            .await
            .unwrap();
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.queries[0].name().to_ascii(), spelled);
        assert_eq!(m.answers[0].name.to_ascii(), spelled);
    }
    srv.stop().await;
}

#[tokio::test]
async fn nxdomain_and_refused_block_modes() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.filter.block_response = BlockResponse::Nxdomain;
    let srv = serve(c.clone()).await;
    let m = udp(
        srv.addrs()[0],
        "connect.facebook.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    assert_eq!(ede(&m).unwrap().0, 15);
    srv.stop().await;
    c.filter.block_response = BlockResponse::Refused;
    let srv = serve(c).await;
    let m = tcp(
        srv.addrs()[0],
        "connect.facebook.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    srv.stop().await;
}

#[tokio::test]
async fn cname_chain_through_a_blocked_name_is_blocked() {
    let up = Upstream::start().await;
    up.set(
        "cloaked.shop.test",
        Behaviour::Records(vec![
            cname("cloaked.shop.test.", "metrics.tracker.example.", 300),
            a("metrics.tracker.example.", [198, 51, 100, 7], 300),
        ]),
    );
    // Meta's own chain: www.facebook.com -> star-mini.c10r.facebook.com must pass.
    up.set(
        "www.facebook.com",
        Behaviour::Records(vec![
            cname("www.facebook.com.", "star-mini.c10r.facebook.com.", 300),
            a("star-mini.c10r.facebook.com.", [157, 240, 1, 35], 60),
        ]),
    );
    let mut c = config(&up);
    c.filter.block = vec!["tracker.example".parse().unwrap()];
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let m = udp(addr, "cloaked.shop.test.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert!(ede(&m).unwrap().1.contains("custom"));
    // From the cache too, over both protocols (UDP's inline path must not skip the chain).
    let m = tcp(addr, "cloaked.shop.test.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let m = udp(addr, "cloaked.shop.test.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    for _ in 0..2 {
        let m = udp(addr, "www.facebook.com.", RecordType::A, Q::default()).await;
        assert_eq!(ips(&m), ["157.240.1.35"]);
        assert_eq!(m.answers.len(), 2);
    }
    assert_eq!(srv.stats().cname_blocked, 3);
    srv.stop().await;
}

#[tokio::test]
async fn protocol_edge_cases() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    // RD=0 is answered.
    let m = udp(
        addr,
        "norecurse.example.",
        RecordType::A,
        Q {
            rd: false,
            ..Q::default()
        },
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    // EDNS version 1: BADVERS.
    let mut q =
        Message::from_vec(&query_bytes("v1.example.", RecordType::A, Q::default())).unwrap();
    q.edns.as_mut().unwrap().set_version(1);
    let m = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.as_ref().unwrap().version(), 0);
    // QDCOUNT 0 and 2: FORMERR.
    let mut q =
        Message::from_vec(&query_bytes("two.example.", RecordType::A, Q::default())).unwrap();
    q.add_query(hickory_proto::op::Query::query(
        name("three.example."),
        RecordType::A,
    ));
    let m = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    q.queries.clear();
    let m = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Opcode NOTIFY: NOTIMP.
    let mut q =
        Message::from_vec(&query_bytes("n.example.", RecordType::SOA, Q::default())).unwrap();
    q.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let m = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    // ANY: the RFC 8482 answer, not forwarded.
    let m = tcp(addr, "any.example.", RecordType::ANY, Q::default()).await;
    assert!(matches!(m.answers[0].data, RData::HINFO(_)));
    assert_eq!(up.hits("any.example"), 0);
    // CHAOS version.bind tells nothing.
    let mut q =
        Message::from_vec(&query_bytes("version.bind.", RecordType::TXT, Q::default())).unwrap();
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let m = Message::from_vec(&udp_raw(addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let up = Upstream::start().await;
    let records = (0..60)
        .map(|i| a("big.example.", [10, 0, 0, i], 300))
        .collect();
    up.set("big.example", Behaviour::Records(records));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let raw = udp_raw(
        addr,
        &query_bytes(
            "big.example.",
            RecordType::A,
            Q {
                edns: false,
                ..Q::default()
            },
        ),
    )
    .await
    .unwrap();
    assert!(
        raw.len() <= 512,
        "UDP answer of {} bytes to a client without EDNS",
        raw.len()
    );
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    let m = tcp(
        addr,
        "big.example.",
        RecordType::A,
        Q {
            edns: false,
            ..Q::default()
        },
    )
    .await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    srv.stop().await;
}

#[tokio::test]
async fn cache_serves_repeats_and_negative_answers() {
    let up = Upstream::start().await;
    up.set("gone.example", Behaviour::NxDomain { soa: true });
    up.set("bare.example", Behaviour::NxDomain { soa: false });
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for _ in 0..3 {
        let m = udp(addr, "cached.example.", RecordType::A, Q::default()).await;
        assert!(m.answers[0].ttl <= 300);
        let m = udp(addr, "gone.example.", RecordType::A, Q::default()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = tcp(addr, "bare.example.", RecordType::A, Q::default()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.hits("cached.example"), 1);
    assert_eq!(up.hits("gone.example"), 1);
    assert_eq!(up.hits("bare.example"), 1);
    assert_eq!(srv.stats().cache_hits, 6);
    srv.stop().await;
}

#[tokio::test]
async fn deadline_gives_servfail_with_ede_22_and_others_keep_working() {
    let up = Upstream::start().await;
    up.set("blackhole.example", Behaviour::Silent);
    let mut c = config(&up);
    c.upstream.deadline = Duration::from_millis(400);
    c.upstream.attempt_timeout = Duration::from_millis(300);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let t = Instant::now();
    let (slow, fast) = tokio::join!(
        udp(addr, "blackhole.example.", RecordType::A, Q::default()),
        udp(
            addr,
            "fine.example.",
            RecordType::A,
            Q {
                id: 7,
                ..Q::default()
            }
        )
    );
    assert_eq!(slow.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&slow).map(|e| e.0), Some(22));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "SERVFAIL took {:?}",
        t.elapsed()
    );
    assert_eq!(ips(&fast), ["192.0.2.1"]);
    let m = tcp(
        addr,
        "blackhole.example.",
        RecordType::A,
        Q {
            edns: false,
            ..Q::default()
        },
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.edns.is_none());
    srv.stop().await;
}

/// A server whose first upstream is `first` (not answering) and whose second works,
/// with `attempt` as the attempt timeout.
async fn first_upstream_dead(
    first: std::net::SocketAddr,
    attempt: Duration,
) -> (Upstream, metaguard::server::Running) {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.upstream.servers = vec![
        first.to_string().parse().unwrap(),
        up.spec().parse().unwrap(),
    ];
    c.upstream.attempt_timeout = attempt;
    c.upstream.deadline = c.upstream.deadline.max(2 * attempt);
    (up, serve(c).await)
}

#[tokio::test]
async fn fails_over_to_the_next_upstream() {
    // A socket that never answers, then a working upstream.
    let dead = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (_up, srv) =
        first_upstream_dead(dead.local_addr().unwrap(), Duration::from_millis(300)).await;
    let m = udp(
        srv.addrs()[0],
        "failover.example.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    // The dead one is now tried last: the next answer needs no wait.
    let t = Instant::now();
    let m = udp(
        srv.addrs()[0],
        "second.example.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "took {:?}",
        t.elapsed()
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_closed_upstream_port_fails_over_at_once() {
    // Nothing listens on the first upstream's port: its ICMP "port unreachable" must
    // end the attempt at once, long before the attempt timeout (which is longer than
    // the client waits).
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let (_up, srv) = first_upstream_dead(closed_addr, Duration::from_secs(30)).await;
    let m = udp(
        srv.addrs()[0],
        "portclosed.example.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    srv.stop().await;
}

#[tokio::test]
async fn tcp_upstream_spec_is_used() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.upstream.servers = vec![format!("tcp://{}", up.addr).parse().unwrap()];
    let srv = serve(c).await;
    let m = udp(
        srv.addrs()[0],
        "overtcp.example.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    srv.stop().await;
}

#[tokio::test]
async fn clients_outside_allowed_networks_are_refused() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.allow_clients = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let srv = serve(c).await;
    let m = udp(
        srv.addrs()[0],
        "www.example.com.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = tcp(
        srv.addrs()[0],
        "www.example.com.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(up.hits("www.example.com"), 0);
    assert_eq!(srv.stats().refused, 2);
    srv.stop().await;
}

#[tokio::test]
async fn rate_limit_drops_a_flooding_client() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.rate_limit.qps = 1;
    c.server.rate_limit.burst = std::num::NonZeroU32::new(5).unwrap();
    c.server.rate_limit.exempt = vec![];
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..40u16 {
        sock.send_to(
            &query_bytes(
                "flood.example.",
                RecordType::A,
                Q {
                    id: i,
                    ..Q::default()
                },
            ),
            addr,
        )
        .await
        .unwrap();
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        answered += 1;
    }
    assert!((5..=7).contains(&answered), "answered {answered} of 40");
    assert!(srv.stats().rate_limited >= 33);
    srv.stop().await;
}

#[tokio::test]
async fn malformed_packets_never_stop_the_server() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    // Short header: dropped.
    assert!(udp_raw(addr, &[1, 2, 3]).await.is_none());
    // QR=1 (a response): dropped, never reflected.
    let mut resp = query_bytes("x.example.", RecordType::A, Q::default());
    resp[2] |= 0x80;
    assert!(udp_raw(addr, &resp).await.is_none());
    // Compression loop in the question: FORMERR.
    let mut looped = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let m = Message::from_vec(&udp_raw(addr, &looped).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0xabcd);
    // A datagram far longer than any query: dropped and counted, nothing else lost.
    let before = srv.stats().malformed;
    let mut huge = query_bytes("x.example.", RecordType::A, Q::default());
    huge.resize(20_000, 0);
    assert!(udp_raw(addr, &huge).await.is_none());
    assert_eq!(srv.stats().malformed, before + 1);
    // Random bytes, over UDP and TCP.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let len = (seed % 300) as usize + 1;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&junk, addr).await.unwrap();
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(&[0, 5, 1, 2, 3, 4, 5, 0, 0]).await.unwrap();
    drop(s);
    // Still answering on both transports.
    assert_eq!(
        ips(&udp(addr, "alive.example.", RecordType::A, Q::default()).await),
        ["192.0.2.1"]
    );
    assert_eq!(
        ips(&tcp(addr, "alive.example.", RecordType::A, Q::default()).await),
        ["192.0.2.1"]
    );
    assert!(srv.stats().malformed >= 3);
    srv.stop().await;
}

#[tokio::test]
async fn tcp_pipelining_has_no_head_of_line_blocking() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(600)));
    let srv = serve(config(&up)).await;
    let answers = tcp_many(
        srv.addrs()[0],
        &[
            query_bytes(
                "slow.example.",
                RecordType::A,
                Q {
                    id: 1,
                    ..Q::default()
                },
            ),
            query_bytes(
                "quick.example.",
                RecordType::A,
                Q {
                    id: 2,
                    ..Q::default()
                },
            ),
        ],
    )
    .await;
    assert_eq!(answers[0].metadata.id, 2, "the quick answer comes first");
    assert_eq!(answers[1].metadata.id, 1);
    srv.stop().await;
}

#[tokio::test]
async fn tcp_connection_caps_and_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.max_tcp_connections_per_client = std::num::NonZeroUsize::new(2).unwrap();
    c.server.tcp_idle_timeout = Duration::from_millis(300);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _c3 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 1];
    // At the cap the longest-idle connection makes room for the new one.
    let n = tokio::time::timeout(Duration::from_secs(2), c1.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the oldest idle connection from one client is closed");
    assert_eq!(srv.stats().tcp_rejected, 1);
    // Idle connections are closed by the server.
    let mut idle = _c2;
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    srv.stop().await;
}

#[tokio::test]
async fn serves_ipv6_loopback() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.listen = vec!["[::1]:0".parse().unwrap()];
    c.server.allow_clients = Some(metaguard::access::default_allow_clients());
    let srv = match metaguard::server::start(c).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: no IPv6 loopback here ({e})");
            return;
        }
    };
    let addr = srv.addrs()[0];
    assert!(addr.is_ipv6());
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    sock.send_to(
        &query_bytes("connect.facebook.net.", RecordType::AAAA, Q::default()),
        addr,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ips(&Message::from_vec(&buf[..n]).unwrap()), ["::"]);
    let m = tcp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    srv.stop().await;
}

#[tokio::test]
async fn reload_swaps_lists_and_a_broken_config_keeps_the_old_one() {
    let up = Upstream::start().await;
    let c = config(&up);
    let srv = serve(c.clone()).await;
    let addr = srv.addrs()[0];
    assert_eq!(
        ips(&udp(addr, "ads.example.", RecordType::A, Q::default()).await),
        ["192.0.2.1"]
    );
    let mut next = c.clone();
    next.filter.block = vec!["ads.example".parse().unwrap()];
    srv.reload(next).unwrap();
    assert_eq!(
        ips(&udp(addr, "ads.example.", RecordType::A, Q::default()).await),
        ["0.0.0.0"]
    );
    let mut broken = c;
    broken.filter.blocklists = vec!["/nonexistent/list.txt".into()];
    assert!(srv.reload(broken).is_err());
    assert_eq!(
        ips(&udp(addr, "ads.example.", RecordType::A, Q::default()).await),
        ["0.0.0.0"]
    );
    srv.stop().await;
}

#[tokio::test]
async fn stop_finishes_in_flight_queries() {
    let up = Upstream::start().await;
    up.set(
        "inflight.example",
        Behaviour::Slow(Duration::from_millis(300)),
    );
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let pending =
        tokio::spawn(
            async move { udp(addr, "inflight.example.", RecordType::A, Q::default()).await },
        );
    // Wait until the query reached the upstream, then stop.
    while up.hits("inflight.example") == 0 {
        tokio::task::yield_now().await;
    }
    let t = Instant::now();
    srv.stop().await;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(ips(&pending.await.unwrap()), ["192.0.2.1"]);
}

#[tokio::test]
async fn an_answer_that_fits_only_compressed_is_sent_whole() {
    let up = Upstream::start().await;
    let owner = "a-rather-long-host-name.cdn.example.";
    let records = (0..25).map(|i| a(owner, [10, 0, 1, i], 300)).collect();
    up.set(owner, Behaviour::Records(records));
    let srv = serve(config(&up)).await;
    // Uncompressed this is ~1.2 kB; compressed it fits a 512-byte client.
    let raw = udp_raw(
        srv.addrs()[0],
        &query_bytes(
            owner,
            RecordType::A,
            Q {
                edns: false,
                ..Q::default()
            },
        ),
    )
    .await
    .unwrap();
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 25);
    srv.stop().await;
}

/// The parts of an answer a client sees, names in their exact spelling.
fn shape(m: &Message) -> Vec<String> {
    let mut out = vec![format!(
        "id={} rcode={} rd={} ra={} aa={} tc={} cd={} ad={}",
        m.metadata.id,
        m.metadata.response_code,
        m.metadata.recursion_desired,
        m.metadata.recursion_available,
        m.metadata.authoritative,
        m.metadata.truncation,
        m.metadata.checking_disabled,
        m.metadata.authentic_data,
    )];
    out.extend(
        m.queries
            .iter()
            .map(|q| format!("q {} {}", q.name().to_ascii(), q.query_type())),
    );
    for (section, records) in [("an", &m.answers), ("ns", &m.authorities)] {
        // TTLs may tick down by a second between the two queries.
        out.extend(records.iter().map(|r| {
            format!(
                "{section} {} {} {}",
                r.name.to_ascii(),
                r.record_type(),
                r.data
            )
        }));
    }
    out.push(format!(
        "edns={:?} ede={:?}",
        m.edns.as_ref().map(|e| (e.max_payload(), e.version())),
        ede(m)
    ));
    out
}

/// UDP answers blocked and cached names inline from the raw packet (owner names point
/// to the question); TCP takes the full path through hickory. Both must say the same.
#[tokio::test]
async fn the_inline_udp_answers_equal_the_full_paths() {
    let up = Upstream::start().await;
    up.set(
        "chain.example",
        Behaviour::Records(vec![
            cname("chain.example.", "edge.cdn.example.", 300),
            a("edge.cdn.example.", [198, 51, 100, 9], 60),
        ]),
    );
    up.set("gone.example", Behaviour::NxDomain { soa: true });
    up.set("bare.example", Behaviour::NxDomain { soa: false });
    let mut inline = 0;
    for mode in [
        BlockResponse::Null,
        BlockResponse::Nxdomain,
        BlockResponse::Refused,
    ] {
        let mut c = config(&up);
        c.filter.block_response = mode;
        let srv = serve(c).await;
        let addr = srv.addrs()[0];
        for spelled in [
            "CoNNect.FaceBook.NET.",
            "pixel.facebook.com.",
            "WwW.ExAmple.COM.",
            "Chain.Example.",
            "gone.example.",
            "bare.example.",
            "www.meta.ai.",
        ] {
            for qtype in [RecordType::A, RecordType::AAAA, RecordType::HTTPS] {
                for edns in [true, false] {
                    let mut q = mixed_case_query(spelled, qtype);
                    if !edns {
                        q = mixed_case_query_without_edns(spelled, qtype);
                    }
                    // The first answer fills the cache; then one of each path.
                    let _ = tcp_many(addr, std::slice::from_ref(&q)).await;
                    let raw = udp_raw(addr, &q).await.expect("a UDP answer");
                    let fast = Message::from_vec(&raw).unwrap();
                    let full = tcp_many(addr, std::slice::from_ref(&q)).await.remove(0);
                    let what = format!("{spelled} {qtype} edns={edns} {mode:?}");
                    assert_eq!(shape(&fast), shape(&full), "{what}");
                    let first = fast.answers.iter().chain(&fast.authorities).next();
                    if first.is_some_and(|r| r.name == *fast.queries[0].name()) {
                        // Its owner is a pointer to the question: the inline path answered.
                        let at = q.len() - if edns { 11 } else { 0 };
                        assert_eq!(raw[at..at + 2], [0xc0, 12], "{what}");
                        inline += 1;
                    }
                }
            }
        }
        srv.stop().await;
    }
    assert!(inline >= 60, "only {inline} answers came inline");
}

fn mixed_case_query_without_edns(spelled: &str, qtype: RecordType) -> Vec<u8> {
    let mut q = mixed_case_query(spelled, qtype);
    // Drop the OPT record (11 bytes, no options) and its count.
    q.truncate(q.len() - 11);
    q[11] = 0;
    q
}

/// Many queries sent back to back reach the server together and are read and answered
/// in batches: every one must be answered, once, with its own answer.
#[tokio::test]
async fn a_burst_of_queries_is_answered_in_full() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    // Warm the cache for the names that will be answered from it.
    for i in 0..10 {
        udp(
            addr,
            &format!("warm{i}.example."),
            RecordType::A,
            Q::default(),
        )
        .await;
    }
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let names: Vec<String> = (0..300u16)
        .map(|i| match i % 3 {
            0 => "connect.facebook.net.".to_string(),
            1 => format!("warm{}.example.", i % 10),
            _ => format!("new{i}.example."),
        })
        .collect();
    for (i, n) in names.iter().enumerate() {
        let o = Q {
            id: i as u16,
            ..Q::default()
        };
        sock.send_to(&query_bytes(n, RecordType::A, o), addr)
            .await
            .unwrap();
    }
    let mut seen = vec![false; names.len()];
    let mut buf = vec![0u8; 4096];
    for _ in 0..names.len() {
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("every query answered")
            .unwrap();
        let m = Message::from_vec(&buf[..len]).unwrap();
        let i = usize::from(m.metadata.id);
        assert!(!seen[i], "query {i} answered twice");
        seen[i] = true;
        let want = if i % 3 == 0 { "0.0.0.0" } else { "192.0.2.1" };
        assert_eq!(ips(&m), [want], "{}", names[i]);
        assert_eq!(m.queries[0].name().to_ascii(), names[i]);
    }
    assert_eq!(srv.stats().blocked, 100);
    srv.stop().await;
}

/// A query with dnsmasq's raw MAC option (code 65001) and the DO bit as asked.
fn query_as(qname: &str, qtype: RecordType, dnssec_ok: bool, mac: Option<[u8; 6]>) -> Vec<u8> {
    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    let mut m = Message::new(777, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    if let Some(mac) = mac {
        e.options_mut()
            .insert(EdnsOption::Unknown(65001, mac.to_vec()));
    }
    m.set_edns(e);
    m.to_vec().unwrap()
}

async fn tcp_raw_from(src: std::net::IpAddr, server: std::net::SocketAddr, q: &[u8]) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind((src, 0).into()).unwrap();
    let mut s = sock.connect(server).await.unwrap();
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(q);
    s.write_all(&frame).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
        .await
        .expect("a TCP answer in time")
        .unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The counters one query moved, by name (so two queries' effects can be compared).
fn moved(before: metaguard::stats::Reading, after: metaguard::stats::Reading) -> Vec<String> {
    let (b, a) = (
        serde_json::to_value(before).unwrap(),
        serde_json::to_value(after).unwrap(),
    );
    let mut out = Vec::new();
    for (k, v) in a.as_object().unwrap() {
        let d = v.as_u64().unwrap() - b[k].as_u64().unwrap();
        if d != 0 {
            out.push(format!("{k}+{d}"));
        }
    }
    out
}

/// The differential test over what decides an answer: random names (blocked, logged,
/// allowed, a chain through a blocked, a logged or a group-blocked name, a rebinding
/// answer, the `[bypass]` canary and DDR names and a public resolver), query types, DO bits and identities (a device by address in a group that
/// blocks Meta AI, an unknown address, a MAC option for the grouped device and for an
/// unknown one). Each query is asked over UDP (inline when it can be) and TCP (the full
/// path, through hickory) from the same identity: the answers, and the counters each
/// one moves, must be equal. Seeded: `MG_SEED` replays a failure.
#[tokio::test]
async fn one_decision_whatever_the_path_identity_or_policy() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("MG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0015);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let up = Upstream::start().await;
    up.set(
        "cloak.example",
        Behaviour::Records(vec![
            cname("cloak.example.", "connect.facebook.net.", 300),
            a("connect.facebook.net.", [198, 51, 100, 1], 60),
        ]),
    );
    up.set(
        "via-social.example",
        Behaviour::Records(vec![
            cname("via-social.example.", "www.facebook.com.", 300),
            a("www.facebook.com.", [198, 51, 100, 2], 60),
        ]),
    );
    up.set(
        "via-ai.example",
        Behaviour::Records(vec![
            cname("via-ai.example.", "www.meta.ai.", 300),
            a("www.meta.ai.", [198, 51, 100, 3], 60),
        ]),
    );
    up.set(
        "rebind.example",
        Behaviour::Records(vec![a("rebind.example.", [10, 0, 0, 1], 60)]),
    );
    up.set("gone.example", Behaviour::NxDomain { soa: true });
    up.set(
        "dns.google",
        Behaviour::Records(vec![a("dns.google.", [198, 51, 100, 8], 60)]),
    );

    let mut c = config(&up);
    let extra = metaguard::config::Config::parse(
        "[groups.kids]\nmeta-ai = \"block\"\n\
         [[devices]]\nname = \"tablet\"\nmatch = [\"127.0.0.2\", \"02:00:00:00:00:02\"]\ngroup = \"kids\"\n",
        std::path::Path::new("differential.toml"),
    )
    .expect("the test's device config parses");
    c.groups = extra.groups;
    c.devices = extra.devices;
    c.server.rebind_protection = true;
    let srv = serve(c).await;
    let addr = srv.addrs()[0];

    let names = [
        "connect.facebook.net.",    // block (pixel)
        "WWW.Facebook.com.",        // log (first-party)
        "www.meta.ai.",             // log, or block for the kids' group
        "www.example.com.",         // not Meta
        "cloak.example.",           // chain through a blocked name
        "via-social.example.",      // chain through a logged name
        "via-ai.example.",          // chain through a name the kids' group blocks
        "rebind.example.",          // a public name with a private address
        "gone.example.",            // NXDOMAIN
        "Use-Application-DNS.net.", // [bypass] canary: NXDOMAIN here, logged
        "_dns.resolver.arpa.",      // [bypass] DDR: NODATA here, logged
        "dns.google.",              // a public resolver: forwarded, logged as bypass
    ];
    let qtypes = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::HTTPS,
        RecordType::TXT,
        RecordType::MX,
    ];
    let sources: [(&str, std::net::IpAddr, Option<[u8; 6]>); 4] = [
        ("unknown address", [127, 0, 0, 1].into(), None),
        ("kids by address", [127, 0, 0, 2].into(), None),
        (
            "kids by MAC option",
            [127, 0, 0, 1].into(),
            Some([2, 0, 0, 0, 0, 2]),
        ),
        (
            "unknown MAC option",
            [127, 0, 0, 2].into(),
            Some([2, 0, 0, 0, 0, 9]),
        ),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for round in 0..160 {
        let spelled = names[rng.random_range(0..names.len())];
        let qtype = qtypes[rng.random_range(0..qtypes.len())];
        let (who, src, mac) = sources[rng.random_range(0..sources.len())];
        let dnssec_ok = rng.random_bool(0.3);
        let q = query_as(spelled, qtype, dnssec_ok, mac);
        let what =
            format!("seed={seed} round={round}: {spelled} {qtype} do={dnssec_ok} from {who}");
        // The first answer fills the cache; then one over each path.
        let _ = tcp_raw_from(src, addr, &q).await;
        let s0 = srv.stats();
        let over_udp = udp_from((src, 0), addr, &q).await;
        let s1 = srv.stats();
        let over_tcp = tcp_raw_from(src, addr, &q).await;
        let s2 = srv.stats();
        assert_eq!(shape(&over_udp), shape(&over_tcp), "{what}");
        assert_eq!(moved(s0, s1), moved(s1, s2), "{what}: counters");
        kinds.insert(moved(s1, s2).join(" "));
    }
    // Identity reached the policy: the kids' tablet, by address and by MAC option, has
    // Meta AI blocked; an unknown device has it logged.
    for (src, mac, blocked) in [
        (sources[1].1, None, true),
        (sources[2].1, sources[2].2, true),
        (sources[0].1, None, false),
    ] {
        let s0 = srv.stats();
        let _ = udp_from(
            (src, 0),
            addr,
            &query_as("www.meta.ai.", RecordType::A, false, mac),
        )
        .await;
        let d = moved(s0, srv.stats());
        assert_eq!(
            d.contains(&"blocked+1".to_string()),
            blocked,
            "{src} {mac:?}: {d:?}"
        );
    }
    // The walk met every kind of outcome (blocked, CNAME-blocked, logged, cached).
    let all = kinds.iter().cloned().collect::<Vec<_>>().join(" | ");
    for k in ["blocked+1", "cname_blocked+1", "logged+1", "cache_hits+1"] {
        assert!(all.contains(k), "no {k} among {all}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn pattern_rules_block_generated_names_and_answer_cdn_names_of_the_same_shape() {
    // Issue 17: the embedded `||sonar*.xx.fbcdn.net^` beats the first-party `fbcdn.net`,
    // while a first-party CDN name of the same shape is forwarded and answered.
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let m = udp(
        addr,
        "sonar6-ist2-1.xx.fbcdn.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let (code, text) = ede(&m).expect("EDE on a blocked answer");
    assert_eq!(code, 15);
    assert!(text.contains("app-telemetry"), "{text}");
    let m = tcp(
        addr,
        "scontent-ist2-1.xx.fbcdn.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert!(ede(&m).is_none());
    assert_eq!(up.hits("sonar6-ist2-1.xx.fbcdn.net"), 0);
    assert_eq!(up.hits("scontent-ist2-1.xx.fbcdn.net"), 1);
    let s = srv.stats();
    assert_eq!((s.blocked, s.logged), (1, 1));
    srv.stop().await;
}

/// What the UDP threads of the listener on `port` (`mg-udp:PORT`) are doing: the system
/// call each one waits in (`None` while it runs). Read from `/proc/self/task`.
fn udp_threads(port: u16) -> Vec<Option<i64>> {
    let name = format!("mg-udp:{port}");
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let call = std::fs::read_to_string(t.path().join("syscall")).unwrap_or_default();
        out.push(call.split_whitespace().next().and_then(|n| n.parse().ok()));
    }
    out
}

/// Wait (5 s at most, looking every 5 ms) until `f` holds; whether it did.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Wait until the one UDP thread of the listener on `port` waits in one of `calls`.
async fn expect_waiting(port: u16, calls: &[i64], when: &str) {
    let waits = || {
        let t = udp_threads(port);
        t.len() == 1 && t[0].is_some_and(|c| calls.contains(&c))
    };
    assert!(eventually(waits).await, "{when}: {:?}", udp_threads(port));
}

/// The receive calls a UDP thread waits in while nothing is in flight.
const RECEIVE: [i64; 2] = [libc::SYS_recvfrom, libc::SYS_recvmmsg];
/// The runtime's waits for events.
#[cfg(target_arch = "x86_64")]
const EPOLL: [i64; 3] = [
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];
#[cfg(not(target_arch = "x86_64"))]
const EPOLL: [i64; 2] = [libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];

/// Idle, and between forwards, the UDP thread sleeps in its receive call itself: no
/// runtime, no `epoll_wait`, no wake-up until a datagram comes. While a query waits on
/// the upstream, the thread waits on its runtime, which drives the forward, and still
/// answers the others (a blocked name here). Once the forward is answered it goes back
/// to the receive call. At the stop the thread ends.
#[tokio::test]
async fn the_udp_thread_waits_in_its_receive_call_unless_a_forward_is_in_flight() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(700)));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let port = addr.port();
    expect_waiting(port, &RECEIVE, "idle").await;

    let slow = tokio::spawn(async move { udp(addr, "slow.example.", RecordType::A, q(1)).await });
    assert!(eventually(|| up.hits("slow.example") == 1).await);
    expect_waiting(port, &EPOLL, "forward in flight").await;
    let m = udp(addr, "connect.facebook.net.", RecordType::A, q(2)).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert!(!slow.is_finished(), "the slow answer was not yet due");
    assert_eq!(ips(&slow.await.unwrap()), ["192.0.2.1"]);
    expect_waiting(port, &RECEIVE, "after the forward").await;
    // Answered from the cache, in the receive loop itself.
    let m = udp(addr, "slow.example.", RecordType::A, q(3)).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert_eq!(up.hits("slow.example"), 1);

    let t = Instant::now();
    srv.stop().await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        udp_threads(port).is_empty(),
        "the thread ended with the stop"
    );
}

/// The fd of this process's UDP socket bound to `addr` (by its inode in
/// `/proc/net/udp`).
fn udp_socket_fd(addr: SocketAddr) -> i32 {
    let [inode] = &udp_socket_inodes(addr)[..] else {
        panic!("the listener's one socket on {addr}")
    };
    let link = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == link))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("its fd")
}

/// Whether `fd` is in any epoll set of this process (`tfd:` lines of the epoll fds'
/// `/proc/self/fdinfo`).
fn in_an_epoll_set(fd: i32) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .any(|e| {
            let is_epoll = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]");
            let info = || {
                let n = e.file_name();
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", n.to_string_lossy()))
                    .unwrap_or_default()
            };
            is_epoll
                && info().lines().any(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some("tfd:") && w.next().and_then(|n| n.parse().ok()) == Some(fd)
                })
        })
}

/// The UDP socket is in the runtime's epoll set only around forwards: an entry there
/// makes every sent answer call into epoll. It joins when a forward is in flight, stays
/// for the next few receives (a household's forwards come and go), and leaves after 64
/// receives in a row without one. A forward after that registers it again.
#[tokio::test]
async fn the_udp_socket_is_in_the_epoll_set_only_around_forwards() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(300)));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let fd = udp_socket_fd(addr);
    expect_waiting(addr.port(), &RECEIVE, "idle").await;
    assert!(!in_an_epoll_set(fd), "idle, before any forward");

    let slow = tokio::spawn(async move { udp(addr, "slow.example.", RecordType::A, q(1)).await });
    expect_waiting(addr.port(), &EPOLL, "forward in flight").await;
    assert!(in_an_epoll_set(fd), "while the forward is in flight");
    assert_eq!(ips(&slow.await.unwrap()), ["192.0.2.1"]);
    expect_waiting(addr.port(), &RECEIVE, "after the forward").await;
    assert!(in_an_epoll_set(fd), "kept for the next receives");

    for i in 0..64 {
        let m = udp(addr, "connect.facebook.net.", RecordType::A, q(10 + i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    expect_waiting(addr.port(), &RECEIVE, "after 64 receives").await;
    assert!(
        !in_an_epoll_set(fd),
        "left after 64 receives without a forward"
    );

    up.set("slow2.example", Behaviour::Slow(Duration::from_millis(300)));
    let slow = tokio::spawn(async move { udp(addr, "slow2.example.", RecordType::A, q(2)).await });
    expect_waiting(addr.port(), &EPOLL, "second forward in flight").await;
    assert!(in_an_epoll_set(fd), "registered again for the next forward");
    let m = udp(addr, "connect.facebook.net.", RecordType::A, q(3)).await;
    assert_eq!(ips(&m), ["0.0.0.0"], "answered while the forward waits");
    assert_eq!(ips(&slow.await.unwrap()), ["192.0.2.1"]);
    srv.stop().await;
}

/// A server dropped without `stop` (a failed start further on, a test that returns
/// early) still ends its UDP thread and frees its port: dropping the listener wakes
/// the thread's receive call.
#[tokio::test]
async fn a_dropped_server_ends_its_udp_thread() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let m = udp(addr, "connect.facebook.net.", RecordType::A, q(1)).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert_eq!(udp_threads(addr.port()).len(), 1);
    drop(srv);
    assert!(
        eventually(|| udp_threads(addr.port()).is_empty()).await,
        "still there: {:?}",
        udp_threads(addr.port())
    );
    std::net::UdpSocket::bind(addr).expect("the port is free again");
}
