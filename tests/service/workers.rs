//! `[server] threads` above one: each listen address gets one `SO_REUSEPORT` UDP socket
//! and receive loop per worker, and every query is answered, counted and logged once
//! whichever socket the kernel hands it to; TCP answers on the inline path too.

use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_answer_on_udp_and_tcp_and_each_hit_is_logged_once() {
    let up = Upstream::start().await;
    let mut cfg = config(&up);
    cfg.server.threads = 2;
    let db = cfg.store.db.clone();
    let srv = serve(cfg).await;
    let addr = srv.addrs()[0];
    assert_eq!(
        udp_socket_inodes(addr).len(),
        2,
        "one UDP socket per worker"
    );

    // Each query from a socket of its own: the kernel spreads the source ports over
    // both sockets (32 of them all on one has odds of 2^-31).
    let blocked = "connect.facebook.net.";
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..32u16 {
        asks.spawn(async move { udp(addr, blocked, RecordType::A, q(i)).await });
    }
    while let Some(m) = asks.join_next().await {
        let m = m.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(ips(&m), ["0.0.0.0"]);
    }
    // Forwarded once, then cached: every socket's loop answers the cached name.
    let m = udp(addr, "example.com.", RecordType::A, q(100)).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    for i in 0..16u16 {
        let m = udp(addr, "example.com.", RecordType::A, q(200 + i)).await;
        assert_eq!(ips(&m), ["192.0.2.1"]);
    }
    assert_eq!(up.hits("example.com."), 1, "the cache is shared");

    // TCP: blocked and cached answers come from the reader (inline), pipelined.
    let queries: Vec<Vec<u8>> = (0..8u16)
        .map(|i| query_bytes(blocked, RecordType::A, q(300 + i)))
        .chain([query_bytes("example.com.", RecordType::A, q(400))])
        .collect();
    let answers = tcp_many(addr, &queries).await;
    assert_eq!(answers.len(), 9);
    for m in &answers {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    let stats = srv.stats();
    assert_eq!(stats.blocked, 40);
    assert_eq!(stats.queries, 32 + 1 + 16 + 9);
    assert!(srv.flush_log().await);
    let hits = count(
        &db,
        "SELECT count(*) FROM hits h JOIN names n ON n.id = h.name_id \
         WHERE n.name = 'connect.facebook.net'",
    );
    assert_eq!(hits, 40, "each blocked query logged once");
    srv.stop().await;
}

/// Stopping the server lets go of every socket: each worker's UDP socket is closed
/// (none left in `/proc/net/udp`) and the address can be bound again at once, for UDP
/// and for TCP, also after a forwarded query (whose task held a handle on its socket).
/// A restart in place (an upgrade, a crash loop under systemd) needs exactly this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_every_socket_so_the_address_can_be_bound_again() {
    let up = Upstream::start().await;
    let mut cfg = config(&up);
    cfg.server.threads = 2;
    let srv = serve(cfg).await;
    let addr = srv.addrs()[0];
    assert_eq!(udp_socket_inodes(addr).len(), 2);
    // Blocked (answered inline), then forwarded (answered by a task).
    let m = udp(addr, "connect.facebook.net.", RecordType::A, q(1)).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let m = udp(addr, "example.com.", RecordType::A, q(2)).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    srv.stop().await;
    assert_eq!(
        udp_socket_inodes(addr).len(),
        0,
        "every UDP socket is closed"
    );
    std::net::UdpSocket::bind(addr).expect("the UDP port is free again");
    std::net::TcpListener::bind(addr).expect("the TCP port is free again");
}
