//! dnstap messages (dnstap.proto of the dnstap project, the fields metaguard writes,
//! with their field numbers as published): an [`Event`] as its CLIENT_QUERY and
//! CLIENT_RESPONSE, encoded by hand into the batch's buffer (prost's generated code and
//! serde_json, at the size-first opt-level of dependencies, cost about 3 times as many
//! instructions per frame). The schema itself is kept as prost structs (the build needs
//! no protoc) and `extra` was a `serde_json::Value`: the tests encode every case both
//! ways and want the same bytes.
//!
//! `extra` holds one JSON object, version 1 (docs/scale.md), keys in this order:
//! `{"action":"block"|"log"|null,"category":CAT|null,"device":KEY,
//! "device_name":NAME|null,"rule":RULE|null,"v":1}`.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use prost::encoding::encoded_len_varint;

use super::{ClientAddress, Event, fstrm};
use crate::store::DeviceKey;

pub(crate) const TYPE_MESSAGE: i32 = 1;
pub(crate) const CLIENT_QUERY: i32 = 5;
pub(crate) const CLIENT_RESPONSE: i32 = 6;

/// Protobuf wire types.
const VARINT: u8 = 0;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A base-128 varint (protobuf), least significant group first.
fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The key of field `tag` (all of ours are below 16: one byte).
#[inline(always)]
const fn key(tag: u8, wire: u8) -> u8 {
    tag << 3 | wire
}

fn put_varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    out.push(key(tag, VARINT));
    encode_varint(v, out);
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(key(tag, LEN));
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_fixed32(out: &mut Vec<u8>, tag: u8, v: u32) {
    out.push(key(tag, FIXED32));
    out.extend_from_slice(&v.to_le_bytes());
}

/// The length of a bytes field of `n` bytes, key included.
#[inline(always)]
fn bytes_len(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

/// A DNS message with the header and the question only, in the query's form (RD set):
/// [`respond`] turns it into the response. Labels longer than the wire allows are cut.
fn dns_message(e: &Event, m: &mut Vec<u8>) {
    m.extend_from_slice(&e.id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in e.name.as_str().as_bytes().split(|&b| b == b'.') {
        if label.is_empty() {
            continue;
        }
        let label = &label[..label.len().min(63)];
        m.push(label.len() as u8);
        m.extend_from_slice(label);
    }
    m.push(0);
    m.extend_from_slice(&e.qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
}

/// The flags of a response to the query [`dns_message`] wrote: QR, RD, RA, `rcode`.
fn respond(m: &mut [u8], rcode: u8) {
    let flags: u16 = 0x8000 | 0x0100 | 0x0080 | u16::from(rcode & 0x0f);
    m[2..4].copy_from_slice(&flags.to_be_bytes());
}

/// The client address as the privacy setting allows: `None` to leave it out.
fn client_address(addr: IpAddr, privacy: ClientAddress, hash_key: (u64, u64)) -> Option<IpAddr> {
    match privacy {
        ClientAddress::Keep => Some(addr),
        ClientAddress::Drop => None,
        ClientAddress::Hash => {
            let mut h = KeyedHasher(hash_key).build_hasher();
            match addr {
                IpAddr::V4(a) => h.write(&a.octets()),
                IpAddr::V6(a) => h.write(&a.octets()),
            }
            let v = h.finish();
            let mut h2 = KeyedHasher((hash_key.1, hash_key.0)).build_hasher();
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

/// `s` as a JSON string, escaped as serde_json escapes (the tests compare): `"`, `\\`
/// and the C0 controls (`\b \t \n \f \r` by name, the rest as `\u00XX`).
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    // Most strings (device keys, categories, rules) need no escape: one pass to see.
    if b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let name = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0..0x20 => b'u',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if name == b'u' {
            let hex = [HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]];
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
        } else {
            out.extend_from_slice(&[b'\\', name]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Turns events into frames; one per output, its buffers reused from event to event.
pub(crate) struct Encoder {
    /// Fields 1 (identity, when set) and 2 (version) of every message, encoded once.
    head: Vec<u8>,
    privacy: ClientAddress,
    hash_key: (u64, u64),
    extra: Vec<u8>,
    dns: Vec<u8>,
    /// The fields both messages of an event share, and the response's own times.
    common: Vec<u8>,
    times: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(identity: &[u8], privacy: ClientAddress, hash_key: (u64, u64)) -> Encoder {
        let mut head = Vec::new();
        if !identity.is_empty() {
            put_bytes(&mut head, 1, identity);
        }
        put_bytes(
            &mut head,
            2,
            concat!("metaguard ", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        Encoder {
            head,
            privacy,
            hash_key,
            extra: Vec::with_capacity(256),
            dns: Vec::with_capacity(300),
            common: Vec::with_capacity(64),
            times: Vec::with_capacity(16),
        }
    }

    /// Append the two Frame Streams data frames of `e` to `out`: its CLIENT_QUERY and
    /// its CLIENT_RESPONSE. What they share is encoded once.
    pub(crate) fn frames(&mut self, e: &Event, out: &mut Vec<u8>) {
        let since = e.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (sec, nsec) = (since.as_secs(), since.subsec_nanos());
        self.write_extra(e);
        self.dns.clear();
        dns_message(e, &mut self.dns);
        // `message Message` after its type: family, address, query time.
        let common = &mut self.common;
        common.clear();
        put_varint(
            common,
            2,
            match e.addr {
                IpAddr::V4(_) => 1,
                IpAddr::V6(_) => 2,
            },
        );
        match client_address(e.addr, self.privacy, self.hash_key) {
            Some(IpAddr::V4(a)) => put_bytes(common, 4, &a.octets()),
            Some(IpAddr::V6(a)) => put_bytes(common, 4, &a.octets()),
            None => {}
        }
        put_varint(common, 8, sec);
        put_fixed32(common, 9, nsec);
        self.frame(out, CLIENT_QUERY, &[], 10);
        // The response's own fields: its time (the same) and its message.
        let mut times = std::mem::take(&mut self.times);
        times.clear();
        put_varint(&mut times, 12, sec);
        put_fixed32(&mut times, 13, nsec);
        respond(&mut self.dns, e.rcode);
        self.frame(out, CLIENT_RESPONSE, &times, 14);
        self.times = times;
    }

    /// One frame: `message Dnstap` (identity, version, extra, message, type MESSAGE)
    /// around a `message Message` of `kind` whose DNS message goes in field `field`.
    fn frame(&self, out: &mut Vec<u8>, kind: i32, times: &[u8], field: u8) {
        let message = 2 + self.common.len() + times.len() + bytes_len(self.dns.len());
        let len = self.head.len() + bytes_len(self.extra.len()) + bytes_len(message) + 2;
        fstrm::data_header(out, len);
        out.extend_from_slice(&self.head);
        put_bytes(out, 3, &self.extra);
        out.push(key(14, LEN));
        encode_varint(message as u64, out);
        put_varint(out, 1, kind as u64);
        out.extend_from_slice(&self.common);
        out.extend_from_slice(times);
        put_bytes(out, field, &self.dns);
        put_varint(out, 15, TYPE_MESSAGE as u64);
    }

    fn write_extra(&mut self, e: &Event) {
        let hashed;
        let device = match (self.privacy, e.device.addr()) {
            (ClientAddress::Keep, _) | (_, None) => e.device.as_str(),
            (ClientAddress::Drop, Some(_)) => DeviceKey::HIDDEN_ADDR,
            (ClientAddress::Hash, Some(_)) => {
                match client_address(e.addr, self.privacy, self.hash_key) {
                    Some(a) => {
                        hashed = DeviceKey::from_addr(a);
                        hashed.as_str()
                    }
                    None => DeviceKey::HIDDEN_ADDR,
                }
            }
        };
        let hit = e.hit.as_ref();
        // Version 1, keys in the order they have always been written (by key).
        let x = &mut self.extra;
        x.clear();
        x.extend_from_slice(b"{\"action\":");
        match hit {
            // "block" or "log": nothing to escape.
            Some(h) => {
                x.push(b'"');
                x.extend_from_slice(h.action().as_str().as_bytes());
                x.push(b'"');
            }
            None => x.extend_from_slice(b"null"),
        }
        x.extend_from_slice(b",\"category\":");
        json_opt(x, hit.map(|h| h.category()));
        x.extend_from_slice(b",\"device\":");
        json_str(x, device);
        x.extend_from_slice(b",\"device_name\":");
        json_opt(x, e.device_name.as_deref());
        x.extend_from_slice(b",\"rule\":");
        json_opt(x, hit.and_then(|h| h.rule()));
        x.extend_from_slice(b",\"v\":1}");
    }
}

#[cfg(test)]
mod tests;
