//! Property tests: whatever bytes arrive (list files, config files, EDNS options, DNS
//! packets), the parsers return a value or an error and never panic.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::*;
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use metaguard::clients::mac_from_edns;
use metaguard::config::{Config, ConfigError};
use metaguard::filter::parse::{ListFormat, detect_format, parse_domain_line, parse_hosts_line};
use metaguard::filter::{Filter, ListSource};
use metaguard::policy::Action;
use proptest::prelude::*;

/// `cases` runs, and the regressions in properties.proptest-regressions next to this file
/// (proptest's default looks beside the binary's main.rs, one directory up).
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::with_cases(n)
    }
}

/// Text that looks like list lines: domains, hosts entries, ABP rules, junk.
fn list_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[a-z0-9.-]{0,40}",
        "(0\\.0\\.0\\.0|127\\.0\\.0\\.1|::|#) [a-zA-Z0-9.\\-_*]{0,30}( [a-z.]{0,20})?",
        "(@@)?\\|\\|[a-z0-9.*-]{0,30}\\^?(\\$[a-z,=~|-]{0,20})?",
        "[!#\\[][ -~]{0,40}",
        "\\PC{0,40}",
    ];
    prop::collection::vec(line, 0..30).prop_map(|ls| ls.join("\n"))
}

fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..400)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn list_lines_never_panic(line in prop_oneof![any_text(), list_text()]) {
        for l in line.lines() {
            let _ = parse_hosts_line(l);
            let _ = parse_domain_line(l);
        }
        let _ = detect_format(&line);
    }

    #[test]
    fn config_errors_name_a_line(text in prop_oneof![
        any_text(),
        "(\\[[a-z_.]{0,12}\\]\n)?([a-z_]{1,20} = (\"[ -~]{0,20}\"|[0-9]{1,6}|true|\\[\\]|\\{\\})\n){0,5}",
    ]) {
        match Config::parse(&text, Path::new("/etc/metaguard/fuzz.toml")) {
            Ok(_) => {}
            Err(ConfigError::Invalid { line, column, .. }) => {
                prop_assert!(line >= 1 && column >= 1, "line {line} column {column}");
                prop_assert!(line <= text.lines().count().max(1) + 1, "line {line} past the end");
            }
            Err(e) => prop_assert!(false, "parse gave a non-parse error: {e}"),
        }
    }

    #[test]
    fn mac_options_never_panic(code in prop_oneof![Just(65001u16), Just(65073u16), any::<u16>()],
                               data in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut e = Edns::new();
        e.options_mut().insert(EdnsOption::Unknown(code, data.clone()));
        let mac = mac_from_edns(&e);
        if code != 65001 && code != 65073 {
            prop_assert!(mac.is_none());
        }
        if code == 65001 && data.len() == 6 && data.iter().any(|b| *b != 0) {
            prop_assert_eq!(mac.map(|m| m.0.to_vec()), Some(data));
        }
    }

    #[test]
    fn request_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        if let Ok(r) = Request::from_bytes(bytes.clone(), src, Protocol::Udp)
            && let Some(e) = r.edns.as_ref()
        {
            let _ = mac_from_edns(e);
        }
        if let Ok(m) = Message::from_vec(&bytes) && let Some(e) = m.edns.as_ref() {
            let _ = mac_from_edns(e);
        }
    }
}

proptest! {
    // Each case compiles a filter (with the adblock engine for ABP text).
    #![proptest_config(cases(48))]

    #[test]
    fn filter_build_and_check_never_panic(
        texts in prop::collection::vec(prop_oneof![list_text(), any_text()], 1..4),
        names in prop::collection::vec(prop_oneof!["[a-z0-9.-]{0,30}", "\\PC{0,20}"], 0..8),
    ) {
        let formats = [ListFormat::Auto, ListFormat::Hosts, ListFormat::Domains, ListFormat::Abp];
        let sources = texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| ListSource {
                name: format!("list{i}"),
                category: format!("cat{}", i % 2),
                origin: "proptest".into(),
                format: formats[i % formats.len()],
                file: None,
                default_action: None,
                text,
            })
            .collect();
        let f = Filter::build(sources);
        let actions = [Action::Block, Action::Log, Action::Allow, Action::Block];
        for n in &names {
            let _ = f.check(n, &actions);
        }
    }
}

/// A server on 127.0.0.1 for the whole test binary, on its own runtime thread.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let up = Upstream::start().await;
                let srv = serve(config(&up)).await;
                tx.send(srv.addrs()[0]).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    })
}

fn ask(sock: &UdpSocket, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(bytes, addr).ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn random_packets_never_stop_the_server(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            // A valid header with junk after it gets further into the parser.
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|mut b| {
                let mut h = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
                h.append(&mut b);
                h
            }),
        ],
    ) {
        let addr = server();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        if let Some(answer) = ask(&sock, addr, &bytes) {
            // Whatever it says is a response to that packet, never a query or a reflection.
            prop_assert!(answer.len() >= 12);
            prop_assert_eq!(&answer[..2], &bytes[..2]);
            prop_assert_eq!(answer[2] & 0x80, 0x80);
        }
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let q = query_bytes("connect.facebook.net.", RecordType::A, Q::default());
        sock.send_to(&q, addr).unwrap();
        // A late answer to the random packet may come first: read up to ours.
        let mut buf = vec![0u8; 4096];
        let m = loop {
            let n = sock.recv_from(&mut buf).map(|(n, _)| n);
            prop_assert!(n.is_ok(), "no answer after {bytes:?}");
            if let Ok(m) = Message::from_vec(&buf[..n.unwrap_or(0)])
                && m.metadata.id == Q::default().id
                && !m.queries.is_empty()
            {
                break m;
            }
        };
        prop_assert_eq!(ips(&m), ["0.0.0.0"]);
    }
}
