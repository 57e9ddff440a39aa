//! Abuse from clients and upstreams: malformed EDNS, amplification, connection hoarding,
//! floods of random names, CHAOS probes, and answers an attacker could forge.

use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use metaguard::access::{Access, RateLimitConfig, default_allow_clients};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A query advertising `payload` as its EDNS UDP size.
fn query_with_payload(qname: &str, payload: u16) -> Vec<u8> {
    let mut m = Message::new(77, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m.to_vec().unwrap()
}

#[tokio::test]
async fn two_opt_records_get_formerr() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let mut bytes = query_bytes("twice.example.", RecordType::A, q(0x5151));
    assert_eq!(&bytes[10..12], &[0, 1], "one OPT record to start with");
    // A second OPT: root owner, type 41, class 512 (payload), TTL 0, no options.
    bytes.extend_from_slice(&[0, 0, 41, 0x02, 0x00, 0, 0, 0, 0, 0, 0]);
    bytes[11] = 2;
    for tcp_too in [false, true] {
        let raw = if tcp_too {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_u16(bytes.len() as u16).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
                .await
                .unwrap()
                .unwrap();
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.unwrap();
            buf
        } else {
            udp_raw(addr, &bytes).await.expect("an answer")
        };
        assert_eq!(&raw[..2], &[0x51, 0x51], "the query's id");
        assert_eq!(raw[2] & 0x80, 0x80, "a response");
        assert_eq!(raw[3] & 0x0f, 1, "FORMERR (tcp: {tcp_too})");
    }
    assert_eq!(up.hits("twice.example"), 0, "never forwarded");
    srv.stop().await;
}

#[tokio::test]
async fn udp_answers_fit_the_clients_edns_size_and_never_exceed_1232() {
    let up = Upstream::start().await;
    let records = (0..120)
        .map(|i| a("huge.example.", [10, 0, 0, i], 300))
        .collect();
    up.set("huge.example", Behaviour::Records(records));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for (offered, limit) in [
        (512u16, 512usize),
        (1000, 1000),
        (4096, 1232),
        (65535, 1232),
    ] {
        let raw = udp_raw(addr, &query_with_payload("huge.example.", offered))
            .await
            .expect("an answer");
        assert!(
            raw.len() <= limit,
            "offered {offered}: {} bytes over UDP",
            raw.len()
        );
        let m = Message::from_vec(&raw).unwrap();
        assert!(m.metadata.truncation, "offered {offered}: TC set");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    // Sizes below 512 are read as 512 (RFC 6891).
    let raw = udp_raw(addr, &query_with_payload("huge.example.", 100))
        .await
        .unwrap();
    assert!(raw.len() <= 512 && raw.len() > 100, "{} bytes", raw.len());
    // The whole answer over TCP.
    let m = tcp(addr, "huge.example.", RecordType::A, q(1)).await;
    assert_eq!(m.answers.len(), 120);
    srv.stop().await;
}

/// Wait until the listener has seen (accepted or turned away) `n` connections.
async fn until_rejected(srv: &metaguard::server::Running, n: u64) {
    let t = Instant::now();
    while srv.stats().tcp_rejected < n {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", srv.stats());
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn hundreds_of_idle_tcp_connections_do_not_lock_out_another_client() {
    let up = Upstream::start().await;
    // Defaults: 256 in total, 32 per address.
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let mut hoard = Vec::new();
    for _ in 0..300 {
        hoard.push(connect_from("127.0.0.1", addr, None).await);
    }
    until_rejected(&srv, 300 - 32).await;
    let mut s = connect_from("127.0.0.2", addr, None).await;
    let q = query_bytes("other.example.", RecordType::A, q(3));
    s.write_u16(q.len() as u16).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
        .await
        .expect("answered")
        .unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(ips(&Message::from_vec(&buf).unwrap()), ["192.0.2.1"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_per_client_cap_above_the_total_is_held_to_half_of_it() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.max_tcp_connections = std::num::NonZeroUsize::new(16).unwrap();
    c.server.max_tcp_connections_per_client = std::num::NonZeroUsize::new(64).unwrap();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut hoard = Vec::new();
    for _ in 0..40 {
        hoard.push(connect_from("127.0.0.1", addr, None).await);
    }
    until_rejected(&srv, 40 - 8).await;
    for i in 0..4u16 {
        let mut s = connect_from("127.0.0.2", addr, None).await;
        let q = query_bytes("other.example.", RecordType::A, q(i));
        s.write_u16(q.len() as u16).await.unwrap();
        s.write_all(&q).await.unwrap();
        let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
            .await
            .expect("answered")
            .unwrap();
        assert!(len > 12);
        hoard.push(s);
    }
    assert_eq!(srv.stats().tcp_rejected, 32);
    srv.stop().await;
}

#[tokio::test]
async fn a_flood_of_random_subdomains_keeps_the_cache_bounded() {
    use rand::Rng;
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.cache.size = 256;
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..40u16 {
        tasks.spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 2048];
            let mut answered = 0;
            for i in 0..500u16 {
                let label: u64 = rand::rng().random();
                let qname = format!("{label:x}.flood{t}.example.");
                let bytes = query_bytes(&qname, RecordType::A, q(i));
                sock.send_to(&bytes, addr).await.unwrap();
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
                {
                    answered += 1;
                }
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(n) = tasks.join_next().await {
        answered += n.unwrap();
    }
    assert!(answered >= 19_000, "answered {answered} of 20000");
    assert!(srv.stats().cache_misses >= 19_000);
    let len = srv.cache_len();
    assert!(len > 0 && len <= 256, "cache holds {len}");
    srv.stop().await;
}

#[test]
fn a_flood_of_distinct_sources_keeps_the_rate_limiter_table_bounded() {
    let access = Access::new(
        &default_allow_clients(),
        &RateLimitConfig {
            qps: 5,
            burst: std::num::NonZeroU32::new(5).unwrap(),
            max_clients: std::num::NonZeroUsize::new(500).unwrap(),
            exempt: vec![],
        },
    );
    let mut most = 0;
    for i in 0..50_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 | i);
        access.admit(ip.into());
        most = most.max(access.tracked_clients());
    }
    assert!(most <= 500 + 1024, "table grew to {most}");
    // Still limits a flooding client after the reset.
    let flood: std::net::IpAddr = "192.168.9.9".parse().unwrap();
    let admitted = (0..100)
        .filter(|_| access.admit(flood) == metaguard::access::Admit::Yes)
        .count();
    assert!(admitted <= 10, "admitted {admitted}");
}

#[tokio::test]
async fn chaos_class_probes_reveal_nothing() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for probe in [
        "version.bind.",
        "id.server.",
        "hostname.bind.",
        "version.server.",
        "authors.bind.",
    ] {
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        let mut query = Query::query(name(probe), RecordType::TXT);
        query.set_query_class(DNSClass::CH);
        m.add_query(query);
        let raw = udp_raw(addr, &m.to_vec().unwrap()).await.expect("answered");
        let a = Message::from_vec(&raw).unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::Refused, "{probe}");
        assert!(a.answers.is_empty() && a.authorities.is_empty(), "{probe}");
        assert!(a.additionals.is_empty(), "{probe}");
        assert!(
            !String::from_utf8_lossy(&raw).contains(env!("CARGO_PKG_VERSION")),
            "{probe}"
        );
        assert_eq!(up.hits(probe), 0);
    }
    srv.stop().await;
}

#[tokio::test]
async fn blocked_names_never_reach_the_upstream_even_via_the_cache() {
    let up = Upstream::start().await;
    up.set(
        "cloaked.shop.test",
        Behaviour::Records(vec![
            cname("cloaked.shop.test.", "metrics.tracker.example.", 300),
            a("metrics.tracker.example.", [198, 51, 100, 7], 300),
        ]),
    );
    let mut c = config(&up);
    c.filter.block = vec!["tracker.example".parse().unwrap()];
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for i in 0..3u16 {
        let m = udp(addr, "connect.facebook.net.", RecordType::A, q(i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        let m = tcp(addr, "metrics.tracker.example.", RecordType::A, q(i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        // Asked once; the second and third are blocked from the cache.
        let m = udp(addr, "cloaked.shop.test.", RecordType::A, q(i)).await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    assert_eq!(up.hits("connect.facebook.net"), 0);
    assert_eq!(up.hits("metrics.tracker.example"), 0);
    assert_eq!(up.hits("cloaked.shop.test"), 1);
    assert_eq!(srv.stats().cname_blocked, 3);
    srv.stop().await;
}

#[tokio::test]
async fn forged_upstream_answers_are_not_accepted() {
    let up = Upstream::start().await;
    up.set("other-port.example", Behaviour::OtherSocket);
    up.set("wrong-question.example", Behaviour::WrongQuestion);
    up.set("wrong-id.example", Behaviour::WrongId);
    let mut c = config(&up);
    c.upstream.deadline = Duration::from_millis(600);
    c.upstream.attempt_timeout = Duration::from_millis(400);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for (i, n) in [
        "other-port.example.",
        "wrong-question.example.",
        "wrong-id.example.",
    ]
    .iter()
    .enumerate()
    {
        let m = udp(addr, n, RecordType::A, q(i as u16)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{n}");
        assert!(m.answers.is_empty(), "{n}: {:?}", m.answers);
        assert!(up.hits(n) >= 1, "{n} was asked");
    }
    // Nothing forged was cached either: still SERVFAIL, still asking.
    let before = up.hits("other-port.example");
    let m = udp(addr, "other-port.example.", RecordType::A, q(9)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(up.hits("other-port.example") > before);
    srv.stop().await;
}

#[tokio::test]
async fn rebinding_protection_refuses_private_addresses_for_public_names() {
    let up = Upstream::start().await;
    up.set(
        "evil.example",
        Behaviour::Records(vec![a("evil.example.", [192, 168, 1, 1], 60)]),
    );
    up.set(
        "loop.example",
        Behaviour::Records(vec![
            cname("loop.example.", "target.example.", 60),
            a("target.example.", [127, 0, 0, 1], 60),
        ]),
    );
    up.set(
        "nas.home.arpa",
        Behaviour::Records(vec![a("nas.home.arpa.", [192, 168, 1, 5], 60)]),
    );
    up.set(
        "printer.lan",
        Behaviour::Records(vec![a("printer.lan.", [10, 0, 0, 9], 60)]),
    );
    up.set(
        "public.example",
        Behaviour::Records(vec![a("public.example.", [203, 0, 113, 5], 60)]),
    );
    // Off by default: answers pass as they are.
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let m = udp(addr, "evil.example.", RecordType::A, q(1)).await;
    assert_eq!(ips(&m), ["192.168.1.1"]);
    srv.stop().await;

    let mut c = config(&up);
    c.server.rebind_protection = true;
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for (n, i) in [("evil.example.", 2u16), ("loop.example.", 3)] {
        let m = udp(addr, n, RecordType::A, q(i)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert!(m.answers.is_empty(), "{n}");
        assert!(ede(&m).unwrap().1.contains("rebinding"), "{n}");
        // From the cache too, and over TCP.
        let m = tcp(addr, n, RecordType::A, q(i)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
    }
    let m = udp(addr, "nas.home.arpa.", RecordType::A, q(4)).await;
    assert_eq!(ips(&m), ["192.168.1.5"]);
    let m = udp(addr, "printer.lan.", RecordType::A, q(5)).await;
    assert_eq!(ips(&m), ["10.0.0.9"]);
    let m = udp(addr, "public.example.", RecordType::A, q(6)).await;
    assert_eq!(ips(&m), ["203.0.113.5"]);
    // Blocked names still get 0.0.0.0: the blocked answer is ours, not upstream's.
    let m = udp(addr, "connect.facebook.net.", RecordType::A, q(7)).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    srv.stop().await;
}

/// A forged answer has to guess both the query ID and the source port (RFC 5452): every
/// forwarded query leaves from a port of its own under an ID of its own. Seen from an
/// upstream of the test's own that notes where each query came from.
#[tokio::test]
async fn each_forwarded_query_has_its_own_source_port_and_id() {
    let up = Upstream::start().await;
    let recorder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let recorder_addr = recorder.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        while seen.len() < 8 {
            let (n, src) = recorder.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_desired = true;
            r.metadata.recursion_available = true;
            r.add_queries(q.queries.clone());
            r.add_answer(a(&q.queries[0].name().to_ascii(), [192, 0, 2, 9], 60));
            recorder.send_to(&r.to_vec().unwrap(), src).await.unwrap();
            seen.push((src.port(), q.metadata.id));
        }
        seen
    });
    let mut c = config(&up);
    c.upstream.servers = vec![recorder_addr.to_string().parse().unwrap()];
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for i in 0..8u16 {
        let m = udp(addr, &format!("n{i}.spread.example."), RecordType::A, q(i)).await;
        assert_eq!(ips(&m), ["192.0.2.9"]);
    }
    let seen = seen.await.unwrap();
    let ports: std::collections::HashSet<u16> = seen.iter().map(|s| s.0).collect();
    let ids: std::collections::HashSet<u16> = seen.iter().map(|s| s.1).collect();
    // Random picks of 16 bits (ports: of the kernel's ephemeral range) all differ but
    // for a collision once in a few thousand runs; a shared socket gives one port.
    assert!(ports.len() >= 7, "source ports {seen:?}");
    assert!(ids.len() >= 7, "query IDs {seen:?}");
    srv.stop().await;
}
