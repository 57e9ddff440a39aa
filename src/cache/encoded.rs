//! An answer's records pre-encoded when it is cached, so the inline UDP path
//! ([`crate::server::wire`]) can serve a hit by copying bytes and patching TTLs.

use hickory_proto::rr::{Name, RData};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::Answer;

/// An answer's records encoded once, when cached: records owned by the question's name
/// point to the question, every other name is written out; TTLs are patched per answer.
#[derive(Debug)]
pub struct Encoded {
    pub(crate) bytes: Box<[u8]>,
    /// Offset of each record's TTL in `bytes`, and that TTL when cached.
    pub(crate) ttls: Box<[(u16, u32)]>,
    pub(crate) answers: u16,
    pub(crate) authorities: u16,
    pub(crate) additionals: u16,
    /// The upstream's AD bit.
    pub(crate) authentic: bool,
    pub(crate) rcode: u8,
}

impl Encoded {
    /// Encode `answer` to the question `name` (normalized). `None` when it cannot be
    /// (the full path then serves it).
    pub(crate) fn new(answer: &Answer, name: &str) -> Option<Encoded> {
        let rcode = u16::from(answer.rcode);
        if rcode > 15 {
            return None;
        }
        let mut bytes = Vec::new();
        let mut ttls = Vec::new();
        let mut tmp = Vec::new();
        let records = answer.answers.iter().chain(&answer.authorities);
        for r in records.chain(&answer.additionals) {
            if matches!(r.data, RData::OPT(_) | RData::Update0(_)) {
                return None;
            }
            tmp.clear();
            let mut enc = BinEncoder::new(&mut tmp);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            r.emit(&mut enc).ok()?;
            let owner_len = wire_len(&r.name);
            if owner_len > tmp.len() {
                return None;
            }
            if is_name(&r.name, name) {
                bytes.extend_from_slice(&[0xc0, 12]);
            } else {
                bytes.extend_from_slice(&tmp[..owner_len]);
            }
            ttls.push((u16::try_from(bytes.len() + 4).ok()?, r.ttl));
            bytes.extend_from_slice(&tmp[owner_len..]);
        }
        if bytes.len() > usize::from(u16::MAX) {
            return None;
        }
        Some(Encoded {
            bytes: bytes.into(),
            ttls: ttls.into(),
            answers: u16::try_from(answer.answers.len()).ok()?,
            authorities: u16::try_from(answer.authorities.len()).ok()?,
            additionals: u16::try_from(answer.additionals.len()).ok()?,
            authentic: answer.authentic,
            rcode: rcode as u8,
        })
    }
}

/// A name's length on the wire (labels with their length bytes, and the root).
fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

/// Whether `name` is the normalized name `key`, ignoring case.
fn is_name(name: &Name, key: &str) -> bool {
    let mut parts = key.split('.');
    for label in name.iter() {
        match parts.next() {
            Some(k) if k.as_bytes().eq_ignore_ascii_case(label) => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}
