//! The encoder against the reference: the dnstap schema as prost structs, filled and
//! encoded by prost (with `extra` built as a `serde_json::Value`), as the output wrote
//! every frame before the hand-written encoder; both must give the same bytes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use prost::Message as _;

use super::*;
use crate::export::{HitInfo, NameBuf};
use crate::policy::Action;

/// `message Dnstap` (dnstap.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub extra: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    pub message: Option<Message>,
    /// `Dnstap.Type`: 1 = MESSAGE.
    #[prost(int32, required, tag = "15")]
    pub r#type: i32,
}

/// `message Message` (dnstap.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Message {
    /// `Message.Type`: 5 = CLIENT_QUERY, 6 = CLIENT_RESPONSE.
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    /// `SocketFamily`: 1 = INET, 2 = INET6.
    #[prost(int32, optional, tag = "2")]
    pub socket_family: Option<i32>,
    /// `SocketProtocol`: 1 = UDP, 2 = TCP.
    #[prost(int32, optional, tag = "3")]
    pub socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    pub query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    pub query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    pub query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub query_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    pub query_zone: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    pub response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    pub response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub response_message: Option<Vec<u8>>,
}

/// What every message of one output carries.
struct Stamp<'a> {
    identity: &'a [u8],
    privacy: ClientAddress,
    hash_key: (u64, u64),
}

/// A DNS message with the header and the question only: the query as the client asked
/// it (RD set), or the response (QR, RA, `rcode`). Names longer than the wire allows
/// are cut.
fn reference_dns_message(e: &Event, response: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + e.name.len as usize + 6);
    m.extend_from_slice(&e.id.to_be_bytes());
    let flags: u16 = if response {
        0x8000 | 0x0100 | 0x0080 | u16::from(e.rcode & 0x0f)
    } else {
        0x0100
    };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in e.name.as_str().split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        m.push(label.len() as u8);
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&e.qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// The client address as the privacy setting allows (the hashing is the encoder's).
fn reference_client_address(addr: IpAddr, stamp: &Stamp<'_>) -> Option<IpAddr> {
    client_address(addr, stamp.privacy, stamp.hash_key)
}

/// The `extra` JSON object (version 1).
fn reference_extra(e: &Event, stamp: &Stamp<'_>) -> Vec<u8> {
    let device: std::borrow::Cow<'_, str> = match (stamp.privacy, e.device.addr()) {
        (ClientAddress::Keep, _) | (_, None) => e.device.as_str().into(),
        (ClientAddress::Drop, Some(_)) => DeviceKey::HIDDEN_ADDR.into(),
        (ClientAddress::Hash, Some(_)) => match reference_client_address(e.addr, stamp) {
            Some(a) => DeviceKey::from_addr(a).to_string().into(),
            None => DeviceKey::HIDDEN_ADDR.into(),
        },
    };
    let hit = e.hit.as_ref();
    serde_json::to_vec(&serde_json::json!({
        "v": 1,
        "device": device,
        "device_name": e.device_name.as_deref(),
        "category": hit.map(|h| h.category()),
        "action": hit.map(|h| h.action().to_string()),
        "rule": hit.and_then(|h| h.rule()),
    }))
    .unwrap_or_default()
}

/// The two encoded dnstap messages of `e` as prost writes them: its query and its response.
fn reference_encode(e: &Event, stamp: &Stamp<'_>) -> [Vec<u8>; 2] {
    let since = e.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (sec, nsec) = (since.as_secs(), since.subsec_nanos());
    let addr = reference_client_address(e.addr, stamp);
    let family = match e.addr {
        IpAddr::V4(_) => 1,
        IpAddr::V6(_) => 2,
    };
    let address = addr.map(|a| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    });
    let extra = reference_extra(e, stamp);
    let frame = |kind: i32| {
        let response = kind == CLIENT_RESPONSE;
        let message = Message {
            r#type: kind,
            socket_family: Some(family),
            query_address: address.clone(),
            query_time_sec: Some(sec),
            query_time_nsec: Some(nsec),
            query_message: (!response).then(|| reference_dns_message(e, false)),
            response_time_sec: response.then_some(sec),
            response_time_nsec: response.then_some(nsec),
            response_message: response.then(|| reference_dns_message(e, true)),
            ..Default::default()
        };
        Dnstap {
            identity: (!stamp.identity.is_empty()).then(|| stamp.identity.to_vec()),
            version: Some(concat!("metaguard ", env!("CARGO_PKG_VERSION")).into()),
            extra: Some(extra.clone()),
            message: Some(message),
            r#type: TYPE_MESSAGE,
        }
        .encode_to_vec()
    };
    [frame(CLIENT_QUERY), frame(CLIENT_RESPONSE)]
}

fn event(addr: IpAddr, device: DeviceKey, name: &str, hit: Option<HitInfo>) -> Event {
    Event {
        time: UNIX_EPOCH + Duration::new(1_764_930_000, 123_456_789),
        addr,
        id: 0xbeef,
        qtype: 28,
        rcode: 3,
        name: NameBuf::new(name),
        device,
        device_name: None,
        hit,
    }
}

fn cases() -> Vec<Event> {
    let v4: IpAddr = "192.168.1.5".parse().unwrap();
    let v6: IpAddr = "fd12::5".parse().unwrap();
    let mac = DeviceKey::parse("mac:aa:bb:cc:dd:ee:ff").unwrap();
    let long = format!("{}.{}.example", "a".repeat(70), "b".repeat(63));
    let mut named = event(
        v4,
        mac.clone(),
        "graph.facebook.com",
        Some(HitInfo::new(
            "pixel",
            Action::Block,
            Some("||graph.facebook.com^"),
        )),
    );
    named.device_name = Some(Arc::from("Living \"room\" TV \\ é \u{1}"));
    let mut odd = event(v4, DeviceKey::from_addr(v4), "x.example", None);
    odd.device_name = Some(Arc::from(
        (0u8..128)
            .map(char::from)
            .chain("é€😀".chars())
            .collect::<String>(),
    ));
    vec![
        named,
        odd,
        event(
            v4,
            DeviceKey::from_addr(v4),
            "connect.facebook.net",
            Some(HitInfo::new("sdk", Action::Log, None)),
        ),
        event(v6, DeviceKey::from_addr(v6), "example.org", None),
        event(
            v6,
            mac,
            &long,
            Some(HitInfo::new("", Action::Block, Some(""))),
        ),
        event(v4, DeviceKey::from_addr(v4), "", None),
    ]
}

#[test]
fn the_encoder_writes_what_prost_and_serde_json_wrote() {
    let key = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
    for identity in [&b""[..], b"router-1"] {
        for privacy in [
            ClientAddress::Keep,
            ClientAddress::Drop,
            ClientAddress::Hash,
        ] {
            let stamp = Stamp {
                identity,
                privacy,
                hash_key: key,
            };
            let mut encoder = Encoder::new(identity, privacy, key);
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for e in &cases() {
                encoder.frames(e, &mut got);
                for frame in reference_encode(e, &stamp) {
                    super::super::fstrm::data(&mut want, &frame);
                }
            }
            assert_eq!(got, want, "identity {identity:?}, {privacy:?}");
        }
    }
}

#[test]
fn extra_is_the_documented_object() {
    let mut encoder = Encoder::new(b"", ClientAddress::Keep, (1, 2));
    let e = &cases()[0];
    encoder.write_extra(e);
    assert_eq!(
        std::str::from_utf8(&encoder.extra).unwrap(),
        r#"{"action":"block","category":"pixel","device":"mac:aa:bb:cc:dd:ee:ff","device_name":"Living \"room\" TV \\ é \u0001","rule":"||graph.facebook.com^","v":1}"#
    );
    let mut frames = Vec::new();
    encoder.frames(e, &mut frames);
    let len = u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize;
    let msg = Dnstap::decode(&frames[4..4 + len]).unwrap();
    assert_eq!(msg.extra.as_deref(), Some(&encoder.extra[..]));
    assert_eq!(msg.message.unwrap().r#type, CLIENT_QUERY);
}

#[test]
fn json_strings_are_escaped_as_serde_json_escapes_them() {
    let all: String = (0u8..128).map(char::from).chain("é€😀/".chars()).collect();
    for s in ["", "plain", "a\"b\\c", &all] {
        let mut got = Vec::new();
        json_str(&mut got, s);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            serde_json::to_string(s).unwrap()
        );
    }
}
