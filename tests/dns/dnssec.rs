//! Transparent forwarding of what is not blocked: DO and CD reach the upstream, DNSSEC
//! records and the authority and additional sections come back as sent (from the cache
//! too, on the inline UDP path and the full path), DO is echoed, AD only to clients that
//! ask, and blocked names stay blocked with DO set. The in-process upstream here; a real
//! signed zone (NSD) validated by `delv` through metaguard in tests/dnssec_delv.rs.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::support::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, NULL, SRV};
use hickory_proto::rr::{RData, Record, RecordType};

/// A query with the DNSSEC bits of our choosing.
#[derive(Clone, Copy, Default)]
struct Bits {
    edns: bool,
    dnssec_ok: bool,
    cd: bool,
    ad: bool,
}

const PLAIN: Bits = Bits {
    edns: true,
    dnssec_ok: false,
    cd: false,
    ad: false,
};
const DO: Bits = Bits {
    dnssec_ok: true,
    ..PLAIN
};

fn query(qname: &str, qtype: RecordType, b: Bits) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = b.cd;
    m.metadata.authentic_data = b.ad;
    m.add_query(Query::query(name(qname), qtype));
    if b.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(b.dnssec_ok);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Ask over UDP (inline path for blocked and cached answers) or TCP (full path).
async fn ask(addr: SocketAddr, qname: &str, qtype: RecordType, b: Bits, over_tcp: bool) -> Message {
    let bytes = query(qname, qtype, b);
    if over_tcp {
        return tcp_many(addr, &[bytes]).await.remove(0);
    }
    let raw = udp_raw(addr, &bytes).await.expect("an answer over UDP");
    Message::from_vec(&raw).expect("a DNS message")
}

fn dnssec_ok(m: &Message) -> bool {
    m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
}

fn count(records: &[Record], t: RecordType) -> usize {
    records.iter().filter(|r| r.record_type() == t).count()
}

/// A record of a DNSSEC type with opaque data (what an upstream sends; we never parse it).
fn opaque(owner: &str, t: RecordType, data: &[u8]) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::Unknown {
            code: t,
            rdata: NULL::with(data.to_vec()),
        },
    )
}

/// The bits the upstream saw, query by query.
type Seen = Arc<Mutex<Vec<(bool, bool)>>>;

/// An upstream that signs (RRSIG) its answers for DO queries only, denies the name with
/// NSEC/NSEC3 for DO queries, sets AD, and records the DO and CD bits it was asked with.
fn signing_upstream(up: &Upstream, owner: &str, seen: &Seen) {
    let seen = seen.clone();
    let respond = move |req: &Message, resp: &mut Message| {
        let dnssec_ok = req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        seen.lock()
            .unwrap()
            .push((dnssec_ok, req.metadata.checking_disabled));
        let q = &req.queries[0];
        let owner = q.name().to_ascii();
        resp.metadata.authentic_data = true;
        if let Some(e) = resp.edns.as_mut() {
            e.set_dnssec_ok(dnssec_ok);
        }
        match q.query_type() {
            RecordType::A => {
                resp.add_answer(a(&owner, [192, 0, 2, 7], 300));
                if dnssec_ok {
                    resp.add_answer(opaque(&owner, RecordType::RRSIG, b"sig-of-a"));
                }
            }
            RecordType::DS => {
                resp.add_answer(opaque(&owner, RecordType::DS, b"digest"));
                if dnssec_ok {
                    resp.add_answer(opaque(&owner, RecordType::RRSIG, b"sig-of-ds"));
                }
            }
            _ => {
                // NODATA, proved by NSEC and NSEC3 for DO clients.
                resp.add_authority(soa("test.", 300, 60));
                if dnssec_ok {
                    resp.add_authority(opaque("test.", RecordType::RRSIG, b"sig-of-soa"));
                    resp.add_authority(opaque(&owner, RecordType::NSEC, b"next"));
                    resp.add_authority(opaque(&owner, RecordType::NSEC3, b"hash"));
                    resp.add_authority(opaque(&owner, RecordType::RRSIG, b"sig-of-nsec"));
                }
            }
        }
    };
    up.set(owner, Behaviour::Custom(Responder(Arc::new(respond))));
}

#[tokio::test]
async fn do_is_forwarded_and_echoed_and_rrsigs_only_go_to_do_clients() {
    let up = Upstream::start().await;
    let seen = Seen::default();
    for owner in [
        "plain-first.test",
        "do-first.test",
        "tcp-plain-first.test",
        "tcp-do-first.test",
    ] {
        signing_upstream(&up, owner, &seen);
    }
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for over_tcp in [false, true] {
        let p = if over_tcp { "tcp-" } else { "" };
        // Both orders, each asked twice more so the second answers come from the cache.
        for (owner, order) in [
            (format!("{p}plain-first.test."), [PLAIN, DO, PLAIN, DO]),
            (format!("{p}do-first.test."), [DO, PLAIN, DO, PLAIN]),
        ] {
            for b in order {
                let m = ask(addr, &owner, RecordType::A, b, over_tcp).await;
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                assert_eq!(ips(&m), ["192.0.2.7"], "{owner}");
                let sigs = count(&m.answers, RecordType::RRSIG);
                assert_eq!(sigs, usize::from(b.dnssec_ok), "{owner} DO={}", b.dnssec_ok);
                assert_eq!(dnssec_ok(&m), b.dnssec_ok, "{owner}: DO echoed");
            }
            // One upstream query per DO value: the rest came from the cache.
            assert_eq!(up.hits(owner.trim_end_matches('.')), 2, "{owner}");
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|(d, _)| *d).count(), 4, "{seen:?}");
    assert_eq!(seen.iter().filter(|(d, _)| !*d).count(), 4, "{seen:?}");
    srv.stop().await;
}

#[tokio::test]
async fn nsec_nsec3_and_ds_records_are_relayed_in_every_section() {
    let up = Upstream::start().await;
    let seen = Seen::default();
    signing_upstream(&up, "denied.test", &seen);
    signing_upstream(&up, "child.test", &seen);
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for over_tcp in [false, true, false] {
        let m = ask(addr, "denied.test.", RecordType::TXT, DO, over_tcp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        for t in [RecordType::SOA, RecordType::NSEC, RecordType::NSEC3] {
            assert_eq!(count(&m.authorities, t), 1, "{t} in {:?}", m.authorities);
        }
        assert_eq!(count(&m.authorities, RecordType::RRSIG), 2);
        let m = ask(addr, "child.test.", RecordType::DS, DO, over_tcp).await;
        assert_eq!(count(&m.answers, RecordType::DS), 1);
        assert_eq!(count(&m.answers, RecordType::RRSIG), 1);
        // A plain client gets the NODATA without the proof.
        let m = ask(addr, "denied.test.", RecordType::TXT, PLAIN, over_tcp).await;
        assert_eq!(m.authorities.len(), 1, "{:?}", m.authorities);
    }
    srv.stop().await;
}

#[tokio::test]
async fn cd_is_forwarded_and_never_served_to_a_validating_client() {
    let up = Upstream::start().await;
    // A validating upstream: the name is bogus, so SERVFAIL unless CD is set.
    let respond = |req: &Message, resp: &mut Message| {
        if req.metadata.checking_disabled {
            resp.add_answer(a("bogus.test.", [192, 0, 2, 66], 300));
        } else {
            resp.metadata.response_code = ResponseCode::ServFail;
        }
    };
    up.set(
        "bogus.test",
        Behaviour::Custom(Responder(Arc::new(respond))),
    );
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let cd = Bits { cd: true, ..DO };
    for over_tcp in [false, true] {
        let m = ask(addr, "bogus.test.", RecordType::A, cd, over_tcp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.checking_disabled, "CD echoed");
        assert_eq!(ips(&m), ["192.0.2.66"]);
        // The CD=1 answer is cached, but not for a client that wants validation.
        for b in [DO, PLAIN] {
            let m = ask(addr, "bogus.test.", RecordType::A, b, over_tcp).await;
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
            assert!(m.answers.is_empty());
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn ad_goes_only_to_clients_that_set_do_or_ad() {
    let up = Upstream::start().await;
    let seen = Seen::default();
    signing_upstream(&up, "signed.test", &seen);
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let ad = Bits { ad: true, ..PLAIN };
    let no_edns = Bits::default();
    // Twice each: from the upstream, then from the cache.
    for over_tcp in [false, true] {
        for _ in 0..2 {
            for (b, want) in [(DO, true), (ad, true), (PLAIN, false), (no_edns, false)] {
                let m = ask(addr, "signed.test.", RecordType::A, b, over_tcp).await;
                assert_eq!(ips(&m), ["192.0.2.7"]);
                assert_eq!(
                    m.metadata.authentic_data, want,
                    "DO={} AD={}",
                    b.dnssec_ok, b.ad
                );
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn additional_records_are_relayed_from_the_cache_too() {
    let up = Upstream::start().await;
    let respond = |req: &Message, resp: &mut Message| {
        let q = &req.queries[0];
        match q.query_type() {
            RecordType::MX => {
                let mx = MX::new(10, name("mail.shop.test."));
                resp.add_answer(Record::from_rdata(name("shop.test."), 300, RData::MX(mx)));
                resp.add_authority(Record::from_rdata(
                    name("shop.test."),
                    300,
                    RData::NS(hickory_proto::rr::rdata::NS(name("ns.shop.test."))),
                ));
                resp.add_additional(a("mail.shop.test.", [192, 0, 2, 25], 300));
                resp.add_additional(Record::from_rdata(
                    name("mail.shop.test."),
                    300,
                    RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 25))),
                ));
            }
            _ => {
                resp.add_authority(soa("test.", 300, 60));
            }
        }
    };
    up.set("shop.test", Behaviour::Custom(Responder(Arc::new(respond))));
    let srv_rec = |req: &Message, resp: &mut Message| {
        if req.queries[0].query_type() == RecordType::SRV {
            let srv = SRV::new(0, 5, 5060, name("sip.shop.test."));
            resp.add_answer(Record::from_rdata(
                name("_sip._udp.shop.test."),
                300,
                RData::SRV(srv),
            ));
            resp.add_additional(Record::from_rdata(
                name("sip.shop.test."),
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 60))),
            ));
        }
    };
    up.set(
        "_sip._udp.shop.test",
        Behaviour::Custom(Responder(Arc::new(srv_rec))),
    );
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let no_edns = Bits::default();
    for (over_tcp, b) in [
        (false, PLAIN),
        (false, PLAIN),
        (true, PLAIN),
        (false, no_edns),
        (true, no_edns),
    ] {
        let m = ask(addr, "shop.test.", RecordType::MX, b, over_tcp).await;
        assert_eq!(count(&m.answers, RecordType::MX), 1);
        assert_eq!(
            count(&m.authorities, RecordType::NS),
            1,
            "{:?}",
            m.authorities
        );
        assert_eq!(
            count(&m.additionals, RecordType::A),
            1,
            "{:?}",
            m.additionals
        );
        assert_eq!(count(&m.additionals, RecordType::AAAA), 1);
        assert_eq!(m.additionals[0].name, name("mail.shop.test."));
        assert_eq!(m.edns.is_some(), b.edns);
        let m = ask(addr, "_sip._udp.shop.test.", RecordType::SRV, b, over_tcp).await;
        assert_eq!(count(&m.answers, RecordType::SRV), 1);
        let glue: Vec<_> = m.additionals.iter().map(|r| r.data.clone()).collect();
        assert_eq!(glue, [RData::A(A(Ipv4Addr::new(192, 0, 2, 60)))]);
    }
    // The first MX query went upstream, every other came from the cache.
    assert_eq!(up.hits("shop.test"), 1);
    assert_eq!(up.hits("_sip._udp.shop.test"), 1);
    srv.stop().await;
}

#[tokio::test]
async fn blocked_names_stay_blocked_with_do_and_cd_set() {
    let up = Upstream::start().await;
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    let all = Bits {
        cd: true,
        ad: true,
        ..DO
    };
    for over_tcp in [false, true] {
        for b in [DO, all] {
            for (qtype, want) in [(RecordType::A, "0.0.0.0"), (RecordType::AAAA, "::")] {
                let m = ask(addr, "connect.facebook.net.", qtype, b, over_tcp).await;
                assert_eq!(ips(&m), [want]);
                assert_eq!(count(&m.answers, RecordType::RRSIG), 0);
                assert!(!m.metadata.authentic_data, "a blocked answer is never AD");
                assert!(dnssec_ok(&m), "DO echoed on a blocked answer");
                assert_eq!(ede(&m).map(|e| e.0), Some(15));
            }
        }
    }
    assert_eq!(up.hits("connect.facebook.net"), 0);
    srv.stop().await;
}

/// A negative answer is relayed whole, as dnsmasq relays it: AD for a client that set
/// DO, the SOA (authority), the additional section and, when a CNAME led to the name
/// that does not exist, the CNAME (answer section); from the upstream and then from the
/// cache. (Through hickory's pool a reply with no answer records lost its AD bit and its
/// additional section.)
#[tokio::test]
async fn a_negative_answer_keeps_its_ad_bit_additional_records_and_cname() {
    let up = Upstream::start().await;
    let respond = |req: &Message, resp: &mut Message| {
        resp.metadata.response_code = ResponseCode::NXDomain;
        resp.metadata.authentic_data = true;
        if req.queries[0].name() == &name("old.gone.test.") {
            resp.add_answer(Record::from_rdata(
                name("old.gone.test."),
                300,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(name("new.gone.test."))),
            ));
        }
        resp.add_authority(soa("gone.test.", 300, 60));
        resp.add_additional(a("ns.gone.test.", [192, 0, 2, 53], 300));
    };
    let respond = Responder(Arc::new(respond));
    up.set("old.gone.test", Behaviour::Custom(respond.clone()));
    up.set("none.gone.test", Behaviour::Custom(respond));
    let srv = serve(config(&up)).await;
    let addr = srv.addrs()[0];
    for (qname, want) in [
        ("none.gone.test.", vec![]),
        ("old.gone.test.", vec!["new.gone.test.".to_string()]),
    ] {
        for over_tcp in [false, true] {
            for _ in 0..2 {
                let m = ask(addr, qname, RecordType::A, DO, over_tcp).await;
                let at = format!("{qname} over TCP: {over_tcp}");
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{at}");
                assert!(m.metadata.authentic_data, "AD for a DO client: {at}");
                let cnames: Vec<String> = m
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::CNAME(c) => Some(c.0.to_ascii()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(cnames, want, "{at}");
                assert!(
                    m.authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA),
                    "{at}"
                );
                assert!(
                    m.additionals
                        .iter()
                        .any(|r| r.name == name("ns.gone.test.")),
                    "{at}"
                );
            }
        }
        assert_eq!(up.hits(qname), 1, "then from the cache: {qname}");
    }
    srv.stop().await;
}
