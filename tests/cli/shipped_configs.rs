//! Every file in `config/` and `config/examples/` starts and answers on each of its
//! listeners, over UDP and TCP: its listen ports are moved to free ones (the addresses,
//! wildcards included, stay as written), its upstreams replaced by a loopback one and
//! its state paths moved into a temporary directory. IPv6 listeners are skipped, with
//! a note, on a host without IPv6.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use metaguard::config::Config;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn has_ipv6() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

/// Bind `addr` for UDP and TCP (IPv6 v6-only, so the IPv4 side is tried on its own).
fn try_bind(addr: SocketAddr) -> Option<(Socket, Socket)> {
    let one = |ty, proto| {
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto)).ok()?;
        if addr.is_ipv6() {
            s.set_only_v6(true).ok()?;
        }
        s.bind(&addr.into()).ok()?;
        Some(s)
    };
    Some((
        one(Type::DGRAM, Protocol::UDP)?,
        one(Type::STREAM, Protocol::TCP)?,
    ))
}

/// A port free for UDP and TCP on every IPv4 address and, with `v6`, every IPv6 one.
fn free_port(v6: bool) -> u16 {
    for _ in 0..100 {
        let Some((udp, _tcp)) = try_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))) else {
            continue;
        };
        let port = udp.local_addr().unwrap().as_socket().unwrap().port();
        if !v6 || try_bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).is_some() {
            return port;
        }
    }
    panic!("no free port for UDP and TCP");
}

/// `cfg` as the test runs it: each distinct listen port moved to a free one, IPv6
/// addresses dropped when the host has no IPv6, upstream and state in `dir`.
fn for_test(mut cfg: Config, up: &Upstream, dir: &Path, v6: bool) -> Config {
    let mut ports: HashMap<u16, u16> = HashMap::new();
    cfg.server.listen.retain(|a| v6 || a.is_ipv4());
    for a in &mut cfg.server.listen {
        let port = *ports.entry(a.port()).or_insert_with(|| free_port(v6));
        a.set_port(port);
    }
    cfg.upstream.servers = vec![up.spec().parse().unwrap()];
    cfg.upstream.resolv_conf = dir.join("no-resolv.conf");
    cfg.filter.lists_dir = dir.join("no-lists");
    cfg.store.db = dir.join("metaguard.db");
    cfg.remote.state_dir = dir.join("remote");
    cfg.report.dir = dir.join("reports");
    for (i, l) in cfg.clients.leases.iter_mut().enumerate() {
        l.path = dir.join(format!("leases-{i}"));
    }
    if cfg.metrics.listen.is_some() {
        cfg.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    }
    cfg.web.listen = "127.0.0.1:0".parse().unwrap();
    cfg
}

/// Where a client on this host reaches a listener on `addr`.
fn target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn ask_udp(server: SocketAddr) -> Message {
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let s = UdpSocket::bind(local).await.unwrap();
    let q = query_bytes("www.example.com.", RecordType::A, Q::default());
    s.send_to(&q, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer from {server}"))
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr) -> Message {
    let q = query_bytes("www.example.com.", RecordType::A, Q::default());
    let ask = async {
        let mut s = TcpStream::connect(server).await.unwrap();
        s.write_u16(q.len() as u16).await.unwrap();
        s.write_all(&q).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        s.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .unwrap_or_else(|_| panic!("no TCP answer from {server}"))
}

/// Start the config `make` gives (with freshly picked ports each call) and ask each of
/// its targets over UDP and TCP; the upstream's answer back. A free port picked by
/// probing can be taken by another test's socket before the server binds it: on
/// "Address already in use" the ports are picked again (a few times), any other
/// start error fails the test.
async fn serves(mut make: impl FnMut() -> (Config, Vec<SocketAddr>), what: &str) {
    let mut tries = 0;
    let (srv, targets) = loop {
        let (cfg, targets) = make();
        match metaguard::server::start(cfg).await {
            Ok(srv) => break (srv, targets),
            Err(e) if tries < 5 && e.to_string().contains("Address already in use") => {
                tries += 1;
            }
            Err(e) => panic!("{what} does not start: {e}"),
        }
    };
    for &t in &targets {
        for (proto, m) in [("udp", ask_udp(t).await), ("tcp", ask_tcp(t).await)] {
            assert_eq!(
                ips(&m),
                vec!["192.0.2.1"],
                "{what}: {t} over {proto}: {m:?}"
            );
        }
    }
    srv.stop().await;
}

fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["config", "config/examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The Pi example listens on `0.0.0.0:53` and `[::]:53`: both must bind (the IPv6
/// wildcard v6-only) and both answer, as every other shipped file does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_config_answers_on_each_of_its_listeners() {
    let v6 = has_ipv6();
    if !v6 {
        eprintln!("note: this host has no IPv6; the IPv6 listeners are skipped");
    }
    let files = shipped();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let up = Upstream::start().await;
        let make = || {
            let cfg = Config::load(f).unwrap_or_else(|e| panic!("{e}"));
            let cfg = for_test(cfg, &up, up.dir.path(), v6);
            assert!(!cfg.server.listen.is_empty(), "{}", f.display());
            let targets: Vec<SocketAddr> = cfg.server.listen.iter().map(|a| target(*a)).collect();
            (cfg, targets)
        };
        serves(make, &f.display().to_string()).await;
    }
}

/// `[::]:PORT` with no IPv4 address on its port serves both families (IPv4 as mapped
/// addresses), whatever `net.ipv6.bindv6only` says; next to `0.0.0.0:PORT` it is
/// IPv6 only and the IPv4 socket answers IPv4 (the test above).
#[tokio::test]
async fn a_lone_ipv6_wildcard_serves_ipv4_too() {
    if !has_ipv6() {
        eprintln!("skipped: this host has no IPv6");
        return;
    }
    let up = Upstream::start().await;
    let make = || {
        let mut cfg = config(&up);
        let port = free_port(true);
        cfg.server.listen = vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))];
        let targets = vec![
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ];
        (cfg, targets)
    };
    serves(make, "[::] alone").await;
}
