//! Answers are well-formed (issue 14 item 3): truncated UDP answers end at a record
//! boundary and keep their OPT record, a 64 KB answer crosses TCP whole, TTLs follow
//! RFC 2181 §8 and `max_ttl` from the first answer, and zone transfers and meta-types
//! are answered locally. Every answer is parsed strictly and, where installed, by dig.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Decode `raw` strictly: the counts match the records and no byte is left over.
fn strict(raw: &[u8], what: &str) -> Message {
    let mut d = BinDecoder::new(raw);
    let m = Message::read(&mut d).unwrap_or_else(|e| panic!("{what}: malformed answer: {e}"));
    assert_eq!(
        d.len(),
        0,
        "{what}: message has {} extra bytes at end",
        d.len()
    );
    m
}

/// A query for `qname`, with an OPT record offering `payload` when given.
fn query(qname: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x5151, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// A name of `wire_len` bytes on the wire (labels of 63, the root included), under `test.`.
fn name_of(wire_len: usize) -> String {
    let mut left = wire_len - 1 - 5; // the root, and "test."
    let mut labels = Vec::new();
    let mut i = 0u8;
    while left > 0 {
        let n = (left - 1).min(63);
        // A label needs its length byte and at least one character.
        let n = if left - 1 - n == 1 { n - 1 } else { n };
        labels.push(std::iter::repeat_n(char::from(b'a' + i % 26), n).collect::<String>());
        left -= n + 1;
        i += 1;
    }
    format!("{}.test.", labels.join("."))
}

fn txt(owner: &str, texts: &[String], ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::TXT(TXT::new(texts.to_vec())))
}

/// The size of `r` in an answer: its owner a pointer, then type, class, TTL, length, data.
fn size(r: &Record) -> usize {
    12 + match &r.data {
        RData::A(_) => 4,
        RData::TXT(t) => t.txt_data.iter().map(|s| 1 + s.len()).sum(),
        other => panic!("no size for {other:?}"),
    }
}

/// One framed query over TCP; the raw answer.
async fn tcp_raw(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(q);
    s.write_all(&frame).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .expect("tcp answer in time")
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

/// `dig`'s output for `args`, or `None` (said once) when dig is not installed.
async fn dig(args: &[String]) -> Option<String> {
    let out = match tokio::process::Command::new("dig")
        .args(args)
        .output()
        .await
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: dig not installed (Debian bind9-dnsutils)");
            return None;
        }
        Err(e) => panic!("dig: {e}"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for bad in ["malformed", "extra bytes", "trailing", "Warning", "WARNING"] {
        assert!(!text.contains(bad), "dig {args:?} reports {bad:?}:\n{text}");
    }
    Some(text)
}

fn dig_args(addr: SocketAddr, qname: &str, qtype: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
        "+tries=1".into(),
        "+time=5".into(),
        qname.into(),
        qtype.into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test]
async fn truncated_udp_answers_end_at_a_record_and_keep_the_opt_record() {
    let up = Upstream::start().await;
    let mut names = Vec::new();
    for wire_len in [10, 100, 200, 254, 255] {
        let owner = name_of(wire_len);
        assert_eq!(name(&owner).to_ascii().len() + 1, wire_len, "{owner}");
        // A CNAME, then addresses; and TXT records of uneven sizes: a limit falls
        // inside a record, not on a boundary.
        let mut records = vec![cname(&owner, "edge.cdn.test.", 300)];
        records.extend((0..90).map(|i| a(&owner, [10, 1, 0, i], 300)));
        records.extend((0..40).map(|i| {
            let text = "x".repeat(7 + (i * 13) % 90);
            txt(&owner, &[text], 300)
        }));
        up.set(&owner, Behaviour::Records(records));
        names.push(owner);
    }
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let mut checked = 0;
    for owner in &names {
        for qtype in [RecordType::A, RecordType::TXT] {
            let whole = strict(&tcp_raw(addr, &query(owner, qtype, None)).await, "tcp");
            assert!(!whole.metadata.truncation);
            for payload in [None, Some(512), Some(1000), Some(1232), Some(4096)] {
                let limit = usize::from(payload.unwrap_or(512).min(1232));
                // The first answer from the upstream, then from the cache.
                for round in ["upstream", "cache"] {
                    let what = format!("{owner} {qtype} payload={payload:?} {round}");
                    let raw = udp_raw(addr, &query(owner, qtype, payload))
                        .await
                        .expect("a UDP answer");
                    assert!(raw.len() <= limit, "{what}: {} bytes", raw.len());
                    let m = strict(&raw, &what);
                    assert!(m.metadata.truncation, "{what}: TC not set");
                    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
                    assert_eq!(m.queries, whole.queries, "{what}");
                    assert_eq!(m.edns.is_some(), payload.is_some(), "{what}: OPT record");
                    assert!(!m.answers.is_empty(), "{what}: no record fits?");
                    // Whole records, in order: a prefix of the complete answer.
                    assert_eq!(m.answers[..], whole.answers[..m.answers.len()], "{what}");
                    // Nothing more would have fit: the next record was really too big.
                    let next = &whole.answers[m.answers.len()];
                    assert!(
                        raw.len() + size(next) > limit,
                        "{what}: stopped at {}",
                        raw.len()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, names.len() * 2 * 5 * 2);
    // The same answers through dig, which reports any byte it cannot place.
    for owner in &names {
        for extra in [
            &["+noedns"][..],
            &["+bufsize=512"],
            &["+bufsize=1000"],
            &["+bufsize=1232"],
        ] {
            let mut args = vec!["+ignore"];
            args.extend_from_slice(extra);
            let Some(out) = dig(&dig_args(addr, owner, "A", &args)).await else {
                break;
            };
            assert!(out.contains(" tc "), "dig {extra:?}: no TC flag:\n{out}");
            assert_eq!(
                out.contains("OPT PSEUDOSECTION"),
                extra[0] != "+noedns",
                "dig {extra:?}: OPT record:\n{out}"
            );
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_64k_answer_crosses_tcp_whole() {
    let up = Upstream::start().await;
    let owner = "big-txt.test.";
    let strings = |i: usize| {
        let mut v = vec![format!("{i:03}").repeat(85)];
        if i == 0 {
            v.push("123".into());
        }
        v
    };
    let records: Vec<Record> = (0..240).map(|i| txt(owner, &strings(i), 300)).collect();
    up.set(owner, Behaviour::Compact(records));
    // The upstream's own answer: what fits in one TCP message must arrive whole.
    let whole = tcp_raw(up.addr, &query(owner, RecordType::TXT, Some(1232))).await;
    assert_eq!(whole.len(), 64_365);
    assert_eq!(strict(&whole, "upstream").answers.len(), 240);

    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for round in ["upstream", "cache"] {
        for payload in [None, Some(1232)] {
            let what = format!("{round} payload={payload:?}");
            let raw = tcp_raw(addr, &query(owner, RecordType::TXT, payload)).await;
            let m = strict(&raw, &what);
            assert!(
                !m.metadata.truncation,
                "{what}: TC set in {} bytes",
                raw.len()
            );
            assert_eq!(m.answers.len(), 240, "{what}");
            assert_eq!(m.edns.is_some(), payload.is_some(), "{what}");
        }
    }
    // Over UDP the same answer is a well-formed truncated one.
    let raw = udp_raw(addr, &query(owner, RecordType::TXT, Some(1232)))
        .await
        .unwrap();
    let m = strict(&raw, "udp");
    assert!(m.metadata.truncation && m.edns.is_some());
    if let Some(out) = dig(&dig_args(addr, owner, "TXT", &["+tcp"])).await {
        assert!(out.contains("ANSWER: 240,"), "{out}");
        assert!(!out.contains(" tc "), "{out}");
    }
    // And dig, told of the truncation over UDP, retries over TCP and gets it all.
    if let Some(out) = dig(&dig_args(addr, owner, "TXT", &[])).await {
        assert!(out.contains("ANSWER: 240,"), "{out}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn ttls_with_the_top_bit_set_are_zero_from_the_first_answer() {
    let up = Upstream::start().await;
    up.set(
        "top-bit.test",
        Behaviour::Records(vec![a("top-bit.test.", [192, 0, 2, 80], 0x8000_0000)]),
    );
    up.set(
        "all-ones.test",
        Behaviour::Records(vec![
            cname("all-ones.test.", "edge.all-ones.test.", 300),
            a("edge.all-ones.test.", [192, 0, 2, 81], u32::MAX),
        ]),
    );
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for round in 0..2 {
        let m = udp(addr, "top-bit.test.", RecordType::A, Q::default()).await;
        assert_eq!(ips(&m), ["192.0.2.80"]);
        assert_eq!(m.answers[0].ttl, 0, "round {round}");
        let m = tcp(addr, "all-ones.test.", RecordType::A, Q::default()).await;
        let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [300, 0], "round {round}");
    }
    // A TTL of 0 is not cached (RFC 2181 §8: as if it were 0): each query went upstream.
    assert_eq!(up.hits("top-bit.test"), 2);
    assert_eq!(up.hits("all-ones.test"), 2);
    srv.stop().await;
}

#[tokio::test]
async fn max_ttl_caps_the_first_answer_too() {
    let up = Upstream::start().await;
    up.set(
        "long.test",
        Behaviour::Records(vec![
            cname("long.test.", "edge.long.test.", 604_800),
            a("edge.long.test.", [192, 0, 2, 90], 86_400),
        ]),
    );
    for size in [10_000, 0] {
        let mut c = config(&up);
        c.cache.max_ttl = Duration::from_secs(60);
        c.cache.size = size;
        let srv = serve(c).await;
        let addr = srv.addrs()[0];
        for round in ["first", "second"] {
            let m = udp(addr, "long.test.", RecordType::A, Q::default()).await;
            let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
            assert!(
                ttls.len() == 2 && ttls.iter().all(|t| (58..=60).contains(t)),
                "cache size {size}, {round} answer: {ttls:?}"
            );
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn zone_transfers_and_meta_types_are_answered_locally() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let cases = [
        (RecordType::AXFR, ResponseCode::Refused),
        (RecordType::IXFR, ResponseCode::Refused),
        (RecordType::Unknown(254), ResponseCode::NotImp),
        (RecordType::Unknown(253), ResponseCode::NotImp),
        (RecordType::TSIG, ResponseCode::NotImp),
        (RecordType::Unknown(249), ResponseCode::NotImp),
        (RecordType::OPT, ResponseCode::NotImp),
        (RecordType::ZERO, ResponseCode::NotImp),
        (RecordType::Unknown(128), ResponseCode::NotImp),
        (RecordType::Unknown(248), ResponseCode::NotImp),
    ];
    for (qtype, rcode) in cases {
        let owner = format!("t{}.zone.test.", u16::from(qtype));
        for payload in [None, Some(1232)] {
            let q = query(&owner, qtype, payload);
            let what = format!("{qtype} payload={payload:?}");
            for (proto, raw) in [
                ("udp", udp_raw(addr, &q).await.expect("a UDP answer")),
                ("tcp", tcp_raw(addr, &q).await),
            ] {
                let m = strict(&raw, &what);
                assert_eq!(m.metadata.response_code, rcode, "{what} {proto}");
                assert_eq!(m.metadata.id, 0x5151);
                assert_eq!(m.queries.len(), 1, "{what} {proto}");
                assert_eq!(m.queries[0].query_type(), qtype, "{what} {proto}");
                assert!(m.answers.is_empty() && m.authorities.is_empty());
                assert_eq!(m.edns.is_some(), payload.is_some(), "{what} {proto}");
            }
        }
        assert_eq!(up.hits(&owner), 0, "{qtype} was forwarded");
    }
    // dig's zone transfer is refused too, at once.
    if let Some(out) = dig(&dig_args(addr, "zone.test.", "AXFR", &[])).await {
        assert!(out.contains("Transfer failed"), "{out}");
    }
    assert_eq!(up.hits("zone.test"), 0);
    srv.stop().await;
}
