//! The dnstap protobuf schema (dnstap.proto of the dnstap project, the fields metaguard
//! writes, with their field numbers as published), written as prost structs so the
//! build needs no protoc, and an [`Event`] as its CLIENT_QUERY and CLIENT_RESPONSE.
//!
//! `extra` holds one JSON object, version 1 (docs/scale.md):
//! `{"v":1,"device":KEY,"device_name":NAME|null,"category":CAT|null,
//! "action":"block"|"log"|null,"rule":RULE|null}`.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use prost::Message as _;

use super::{ClientAddress, Event};
use crate::store::DeviceKey;

/// `message Dnstap` (dnstap.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub(crate) extra: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    pub(crate) message: Option<Message>,
    /// `Dnstap.Type`: 1 = MESSAGE.
    #[prost(int32, required, tag = "15")]
    pub(crate) r#type: i32,
}

/// `message Message` (dnstap.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Message {
    /// `Message.Type`: 5 = CLIENT_QUERY, 6 = CLIENT_RESPONSE.
    #[prost(int32, required, tag = "1")]
    pub(crate) r#type: i32,
    /// `SocketFamily`: 1 = INET, 2 = INET6.
    #[prost(int32, optional, tag = "2")]
    pub(crate) socket_family: Option<i32>,
    /// `SocketProtocol`: 1 = UDP, 2 = TCP.
    #[prost(int32, optional, tag = "3")]
    pub(crate) socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub(crate) response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    pub(crate) query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub(crate) response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    pub(crate) query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    pub(crate) query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub(crate) query_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    pub(crate) query_zone: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    pub(crate) response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    pub(crate) response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub(crate) response_message: Option<Vec<u8>>,
}

pub(crate) const TYPE_MESSAGE: i32 = 1;
pub(crate) const CLIENT_QUERY: i32 = 5;
pub(crate) const CLIENT_RESPONSE: i32 = 6;

/// What every message of one output carries.
pub(crate) struct Stamp<'a> {
    pub(crate) identity: &'a [u8],
    pub(crate) privacy: ClientAddress,
    pub(crate) hash_key: (u64, u64),
}

/// A DNS message with the header and the question only: the query as the client asked
/// it (RD set), or the response (QR, RA, `rcode`). Names longer than the wire allows
/// are cut.
fn dns_message(e: &Event, response: bool) -> Vec<u8> {
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

/// The client address as the privacy setting allows: `None` to leave it out.
fn client_address(addr: IpAddr, stamp: &Stamp<'_>) -> Option<IpAddr> {
    match stamp.privacy {
        ClientAddress::Keep => Some(addr),
        ClientAddress::Drop => None,
        ClientAddress::Hash => {
            let mut h = KeyedHasher(stamp.hash_key).build_hasher();
            h.write(
                match addr {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                }
                .as_slice(),
            );
            let v = h.finish();
            let mut h2 = KeyedHasher((stamp.hash_key.1, stamp.hash_key.0)).build_hasher();
            h2.write_u64(v);
            let w = h2.finish();
            Some(match addr {
                // 240.0.0.0/4 and fd00::/8: a hashed address never looks like a real one.
                IpAddr::V4(_) => {
                    let b = (v as u32).to_be_bytes();
                    IpAddr::from([0xf0 | (b[0] & 0x0f), b[1], b[2], b[3]])
                }
                IpAddr::V6(_) => {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&v.to_be_bytes());
                    b[8..].copy_from_slice(&w.to_be_bytes());
                    b[0] = 0xfd;
                    IpAddr::from(b)
                }
            })
        }
    }
}

/// SipHash with the process's key (`std`'s `RandomState` cannot be given one).
struct KeyedHasher((u64, u64));

impl BuildHasher for KeyedHasher {
    type Hasher = std::hash::DefaultHasher;
    fn build_hasher(&self) -> std::hash::DefaultHasher {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.0.0);
        h.write_u64(self.0.1);
        h
    }
}

/// The `extra` JSON object (version 1).
fn extra(e: &Event, stamp: &Stamp<'_>) -> Vec<u8> {
    let device: std::borrow::Cow<'_, str> = match (stamp.privacy, e.device.addr()) {
        (ClientAddress::Keep, _) | (_, None) => e.device.as_str().into(),
        (ClientAddress::Drop, Some(_)) => DeviceKey::HIDDEN_ADDR.into(),
        (ClientAddress::Hash, Some(_)) => match client_address(e.addr, stamp) {
            Some(a) => DeviceKey::from_addr(a).to_string().into(),
            None => DeviceKey::HIDDEN_ADDR.into(),
        },
    };
    let hit = e.hit.as_deref();
    serde_json::to_vec(&serde_json::json!({
        "v": 1,
        "device": device,
        "device_name": e.device_name.as_deref(),
        "category": hit.map(|h| &*h.category),
        "action": hit.map(|h| h.action.to_string()),
        "rule": hit.and_then(|h| h.rule.as_deref()),
    }))
    .unwrap_or_default()
}

/// The two encoded dnstap messages of `e`: its query and its response.
pub(crate) fn encode(e: &Event, stamp: &Stamp<'_>) -> [Vec<u8>; 2] {
    let since = e.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (sec, nsec) = (since.as_secs(), since.subsec_nanos());
    let addr = client_address(e.addr, stamp);
    let family = match e.addr {
        IpAddr::V4(_) => 1,
        IpAddr::V6(_) => 2,
    };
    let address = addr.map(|a| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    });
    let extra = extra(e, stamp);
    let frame = |kind: i32| {
        let response = kind == CLIENT_RESPONSE;
        let message = Message {
            r#type: kind,
            socket_family: Some(family),
            query_address: address.clone(),
            query_time_sec: Some(sec),
            query_time_nsec: Some(nsec),
            query_message: (!response).then(|| dns_message(e, false)),
            response_time_sec: response.then_some(sec),
            response_time_nsec: response.then_some(nsec),
            response_message: response.then(|| dns_message(e, true)),
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
