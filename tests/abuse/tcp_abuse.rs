//! TCP and in-flight abuse against the real server on loopback: clients that never
//! read their answers, connection hoarding behind one address, the query limit of a
//! connection, slow queries pipelined ahead of a quick one, and a UDP flood from one
//! address while another asks names the cache does not hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Read one framed answer within `within`.
async fn read_answer(s: &mut TcpStream, within: Duration) -> Message {
    let read = async {
        let len = s.read_u16().await?;
        let mut buf = vec![0u8; len as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(within, read)
        .await
        .expect("answered in time")
        .expect("an answer, not a close");
    Message::from_vec(&buf).expect("a DNS message")
}

/// Ask `qname` on a new connection from `src`; the answer must come within 1 s.
async fn ask_from(src: &str, server: SocketAddr, qname: &str, id: u16) -> Message {
    let mut s = connect_from(src, server, None).await;
    s.write_all(&framed(&query_bytes(qname, RecordType::A, q(id))))
        .await
        .unwrap();
    let m = read_answer(&mut s, Duration::from_secs(1)).await;
    assert_eq!(m.metadata.id, id);
    m
}

/// Poll `cond` (a counter the server keeps) until it holds, at most 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 256 connections (8 addresses × 32, both at the default caps) that send queries and
/// never read an answer: a client from a ninth address is still answered within 1 s.
#[tokio::test]
async fn never_reading_connections_from_eight_addresses_do_not_lock_out_a_ninth() {
    let up = Upstream::start().await;
    let records = (0..100)
        .map(|i| a("big.example.", [10, 0, 1, i], 300))
        .collect();
    up.set("big.example", Behaviour::Records(records));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let mut burst = Vec::new();
    for i in 0..20u16 {
        burst.extend(framed(&query_bytes("big.example.", RecordType::A, q(i))));
    }
    let mut hoard = Vec::new();
    for host in 2..10 {
        for _ in 0..32 {
            let mut s = connect_from(&format!("127.0.0.{host}"), addr, Some(4096)).await;
            s.write_all(&burst).await.unwrap();
            hoard.push(s);
        }
    }
    until("256 × 20 queries read", || srv.stats().queries >= 256 * 20).await;
    let m = ask_from("127.0.0.20", addr, "other.example.", 7).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert!(srv.stats().tcp_rejected >= 1, "{:?}", srv.stats());
    // And again: each new client takes the slot of the longest idle hoarder.
    for i in 0..4 {
        let m = ask_from(&format!("127.0.1.{i}"), addr, "other.example.", i).await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    drop(hoard);
    srv.stop().await;
}

/// A client that never reads, asking for large answers, is closed once its answers
/// are not taken within the write deadline: the server does not hold them forever.
#[tokio::test]
async fn a_connection_whose_answers_are_not_read_is_closed() {
    let up = Upstream::start().await;
    let records = (0..2000u16)
        .map(|i| a("huge.example.", [10, 1, (i >> 8) as u8, i as u8], 300))
        .collect();
    up.set("huge.example", Behaviour::Records(records));
    let mut c = config(&up);
    c.server.tcp_idle_timeout = Duration::from_millis(500);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut s = connect_from("127.0.0.2", addr, Some(4096)).await;
    // 32 kB per answer: the kernel's buffers on both sides fill after a few hundred.
    let query = framed(&query_bytes("huge.example.", RecordType::A, q(1)));
    let t = Instant::now();
    let mut closed = false;
    for _ in 0..2000 {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&query)).await {
            Ok(Ok(())) => {}
            // Reset by the server, or our own send buffer full because it stopped
            // reading after closing: either way the server let go.
            Ok(Err(_)) | Err(_) => {
                closed = true;
                break;
            }
        }
        if srv.stats().tcp_unread > 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after 2000 unread answers");
    until("closed for unread answers", || srv.stats().tcp_unread >= 1).await;
    assert!(t.elapsed() < Duration::from_secs(15));
    // The client's slot is free again and others are answered.
    let m = ask_from("127.0.0.2", addr, "other.example.", 2).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    srv.stop().await;
}

/// Behind a router's dnsmasq every device shares one address: at the per-client cap
/// its longest-idle connection is closed to make room, the new one is answered.
#[tokio::test]
async fn at_the_per_client_cap_the_longest_idle_connection_is_evicted() {
    let up = Upstream::start().await;
    let mut c = config(&up);
    c.server.max_tcp_connections_per_client = std::num::NonZeroUsize::new(4).unwrap();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut held = Vec::new();
    for i in 0..4u16 {
        let mut s = connect_from("127.0.0.2", addr, None).await;
        // Each one used once, oldest first, so their idle times are ordered.
        s.write_all(&framed(&query_bytes("a.example.", RecordType::A, q(i))))
            .await
            .unwrap();
        read_answer(&mut s, Duration::from_secs(1)).await;
        held.push(s);
    }
    // The second one is busy again: the first stays the longest idle.
    held[1]
        .write_all(&framed(&query_bytes("a.example.", RecordType::A, q(9))))
        .await
        .unwrap();
    read_answer(&mut held[1], Duration::from_secs(1)).await;
    let m = ask_from("127.0.0.2", addr, "other.example.", 5).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(1), held[0].read(&mut b))
        .await
        .expect("the evicted connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the longest idle connection was closed");
    for (i, s) in held.iter_mut().enumerate().skip(1) {
        s.write_all(&framed(&query_bytes(
            "a.example.",
            RecordType::A,
            q(i as u16),
        )))
        .await
        .unwrap();
        read_answer(s, Duration::from_secs(1)).await;
    }
    assert_eq!(srv.stats().tcp_rejected, 1);
    srv.stop().await;
}

/// 1001 queries on one connection (the cap is 1000): 1000 answers, then a clean EOF,
/// every time, even when the client reads only after everything was answered.
#[tokio::test]
async fn past_the_query_limit_every_query_read_is_answered_then_a_clean_close() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let mut all = Vec::new();
    for i in 0..1001u16 {
        all.extend(framed(&query_bytes(
            "connect.facebook.net.",
            RecordType::A,
            q(i),
        )));
    }
    for round in 0..5u64 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&all).await.unwrap();
        // Let the server read, answer and close before we read anything: an RST
        // would now throw away the answers waiting in our receive buffer.
        until("1000 answered", || {
            srv.stats().queries >= (round + 1) * 1000
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seen = 0u16;
        for _ in 0..1000 {
            let m = read_answer(&mut s, Duration::from_secs(2)).await;
            assert!(m.metadata.id < 1001);
            seen += 1;
        }
        let mut b = [0u8; 16];
        let end = tokio::time::timeout(Duration::from_secs(3), s.read(&mut b))
            .await
            .expect("closed in time");
        assert!(
            matches!(end, Ok(0)),
            "round {round}: after {seen} answers: {end:?} (want EOF)"
        );
    }
    srv.stop().await;
}

/// 16 slow queries pending on a connection do not hold up a quick one sent after them.
#[tokio::test]
async fn a_quick_query_is_answered_while_16_slow_ones_are_pending() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(1500)));
    let srv = serve(config(&up)).await;
    let mut s = TcpStream::connect(srv.addrs()[0]).await.unwrap();
    let mut all = Vec::new();
    for i in 0..16u16 {
        all.extend(framed(&query_bytes("slow.example.", RecordType::A, q(i))));
    }
    all.extend(framed(&query_bytes("quick.example.", RecordType::A, q(99))));
    s.write_all(&all).await.unwrap();
    let m = read_answer(&mut s, Duration::from_millis(1000)).await;
    assert_eq!(m.metadata.id, 99, "the quick answer first");
    assert_eq!(ips(&m), ["192.0.2.1"]);
    for _ in 0..16 {
        let m = read_answer(&mut s, Duration::from_secs(3)).await;
        assert!(m.metadata.id < 16);
    }
    srv.stop().await;
}

/// One address floods slow names over UDP; another address's names the cache does not
/// hold are still answered (NOERROR, not dropped, not SERVFAIL).
#[tokio::test]
async fn a_udp_flood_from_one_address_does_not_starve_another() {
    let up = Upstream::start().await;
    up.set("slow.example", Behaviour::Slow(Duration::from_millis(1500)));
    let mut c = config(&up);
    c.server.max_udp_in_flight = std::num::NonZeroUsize::new(64).unwrap();
    c.upstream.deadline = Duration::from_secs(3);
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let stop = tokio_util::sync::CancellationToken::new();
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.2:0").await.unwrap();
            let mut i = 0u16;
            while !stop.is_cancelled() {
                let bytes = query_bytes("slow.example.", RecordType::A, q(i));
                let _ = sock.send_to(&bytes, addr).await;
                i = i.wrapping_add(1);
                if i.is_multiple_of(32) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    until("the flood fills its share", || {
        srv.stats().udp_dropped >= 100
    })
    .await;
    let sock = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let mut buf = vec![0u8; 2048];
    for i in 0..20u16 {
        let qname = format!("name{i}.household.example.");
        sock.send_to(&query_bytes(&qname, RecordType::A, q(i)), addr)
            .await
            .unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{qname} dropped during the flood"))
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, i);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qname}");
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    stop.cancel();
    flood.await.unwrap();
    srv.stop().await;
}

/// All TCP connections of a listener share `max_udp_in_flight` slots for the queries
/// being answered (each may hold an upstream socket: the open-files need counts on it).
/// With 4 slots, 8 slow queries pipelined on two connections are answered in two waves.
#[tokio::test]
async fn tcp_queries_in_flight_are_capped_per_listener() {
    let up = Upstream::start().await;
    for i in 0..8 {
        up.set(
            &format!("slow{i}.example"),
            Behaviour::Slow(Duration::from_millis(600)),
        );
    }
    let mut c = config(&up);
    c.server.max_udp_in_flight = std::num::NonZeroUsize::new(4).unwrap();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let mut conns = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let start = Instant::now();
    for (k, s) in conns.iter_mut().enumerate() {
        let mut all = Vec::new();
        for j in 0..4u16 {
            let i = k as u16 * 4 + j;
            let qname = format!("slow{i}.example.");
            all.extend(framed(&query_bytes(&qname, RecordType::A, q(i))));
        }
        s.write_all(&all).await.unwrap();
    }
    let mut last = Duration::ZERO;
    for s in &mut conns {
        for _ in 0..4 {
            let m = read_answer(s, Duration::from_secs(5)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            last = start.elapsed();
        }
    }
    assert!(
        last >= Duration::from_millis(1100),
        "all 8 answered within {last:?}: no more than 4 may have been in flight"
    );
    srv.stop().await;
}
