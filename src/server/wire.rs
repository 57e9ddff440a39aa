//! The common query on the wire: one class-IN question, at most a plain OPT record.
//! It is parsed and answered (blocked, or from the cache's pre-encoded records) without
//! building hickory messages; anything unusual gives `None` and takes the full path,
//! which stays the reference for what an answer looks like.

use super::response::{EDE_BLOCKED, MAX_UDP_PAYLOAD, authentic, is_local_qtype, udp_limit};
use crate::cache::{DnssecBits, Encoded};
use crate::clients::{EDNS_MAC_RAW, EDNS_MAC_TEXT};
use crate::filter::BlockResponse;

/// EDNS options that say who the client is (dnsmasq `--add-mac`, a client subnet): those
/// queries need the full path, which reads them.
const MAC_OPTIONS: [u16; 3] = [EDNS_MAC_RAW, EDNS_MAC_TEXT, EDNS_CLIENT_SUBNET];

/// RFC 7871's option code.
const EDNS_CLIENT_SUBNET: u16 = 8;

/// A parsed common query, borrowed from its packet.
#[derive(Debug)]
pub struct Query<'a> {
    packet: &'a [u8],
    /// End of the question (name, type, class) in `packet`.
    question_end: usize,
    /// The question's type (RFC 1035 TYPE value).
    pub qtype: u16,
    /// The client's UDP payload size, when it sent an OPT record.
    pub(crate) edns: Option<u16>,
    /// DO in the client's OPT record (RFC 3225).
    pub(crate) dnssec_ok: bool,
}

/// The bytes a label may hold for the inline path: ASCII letters, digits, '-' and '_'.
/// Anything else (IDN bytes, spaces, dots inside a label) takes the full path.
const HOSTNAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    t
};

impl<'a> Query<'a> {
    /// Parse `packet` when it is a common query, writing its name as the filter wants it
    /// (lowercase, no trailing dot) into `name`. `None` for anything else.
    pub fn parse(packet: &'a [u8], name: &mut String) -> Option<Query<'a>> {
        name.clear();
        let p = packet;
        // QR=0, OPCODE=QUERY, AA=0, TC=0 (RD free); Z=0 and RCODE=0 (AD and CD free).
        if p.len() < 17 || p[2] & 0xfe != 0 || p[3] & 0x4f != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        let additional = count(10);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
            return None;
        }
        let mut pos = 12;
        loop {
            let len = usize::from(*p.get(pos)?);
            pos += 1;
            if len == 0 {
                break;
            }
            // Compression pointers (>= 0xc0) and reserved label types end here too.
            if len > 63 || pos + len > p.len() {
                return None;
            }
            let label = &p[pos..pos + len];
            if !label.iter().all(|&b| HOSTNAME_BYTE[usize::from(b)]) {
                return None;
            }
            if !name.is_empty() {
                name.push('.');
            }
            // SAFETY: `label` holds only ASCII letters, digits, '-' and '_' (checked above),
            // so `name` stays valid UTF-8.
            unsafe { name.as_mut_vec() }.extend_from_slice(label);
            pos += len;
        }
        name.make_ascii_lowercase();
        // The root, or a name longer than DNS allows.
        if name.is_empty() || pos - 12 > 255 {
            return None;
        }
        let fixed = p.get(pos..pos + 4)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        // Class IN only; not ANY, zone transfers or meta-types (the full path answers
        // them itself).
        if qclass != 1 || is_local_qtype(qtype) {
            return None;
        }
        let question_end = pos + 4;
        let (edns, dnssec_ok) = if additional == 1 {
            let (payload, dnssec_ok) = parse_opt(p, question_end)?;
            (Some(payload), dnssec_ok)
        } else if question_end == p.len() {
            (None, false)
        } else {
            return None;
        };
        Some(Query {
            packet,
            question_end,
            qtype,
            edns,
            dnssec_ok,
        })
    }

    /// The DO and CD bits the answer depends on (part of the cache key).
    pub fn dnssec_bits(&self) -> DnssecBits {
        DnssecBits {
            dnssec_ok: self.dnssec_ok,
            checking_disabled: self.packet[3] & 0x10 != 0,
        }
    }

    /// AD in the client's header (RFC 6840 §5.7: it understands the AD bit).
    fn authentic_data(&self) -> bool {
        self.packet[3] & 0x20 != 0
    }

    /// The largest answer the client takes over UDP.
    /// The query's ID.
    pub(crate) fn id(&self) -> u16 {
        u16::from_be_bytes([self.packet[0], self.packet[1]])
    }

    pub(crate) fn max_udp(&self) -> usize {
        usize::from(udp_limit(self.edns))
    }
}

/// The OPT record at `pos`, which must end the packet: the payload size it offers and
/// its DO bit. `None` unless it is EDNS version 0 without a MAC option.
fn parse_opt(p: &[u8], pos: usize) -> Option<(u16, bool)> {
    let rr = p.get(pos..pos + 11)?;
    // Root owner, type OPT, then class = payload size, TTL = ext-rcode, version, flags.
    if rr[0] != 0 || rr[1..3] != [0, 41] || rr[5] != 0 || rr[6] != 0 {
        return None;
    }
    let payload = u16::from_be_bytes([rr[3], rr[4]]);
    let dnssec_ok = rr[7] & 0x80 != 0;
    let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
    let mut opts = p.get(pos + 11..)?;
    if opts.len() != rdlen {
        return None;
    }
    while !opts.is_empty() {
        let head = opts.get(..4)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if MAC_OPTIONS.contains(&code) {
            return None;
        }
        opts = opts.get(4 + len..)?;
    }
    Some((payload, dnssec_ok))
}

/// Start an answer to `q` in `out`: the header, then the client's question as sent
/// (its spelling kept for 0x20 case randomization).
fn begin(out: &mut Vec<u8>, q: &Query<'_>, rcode: u8, answers: u16, authorities: u16) {
    let p = q.packet;
    out.clear();
    let [an0, an1] = answers.to_be_bytes();
    let [ns0, ns1] = authorities.to_be_bytes();
    // QR=1, OPCODE=QUERY, RD copied; RA=1, CD copied; one question; counts.
    out.extend_from_slice(&[
        p[0],
        p[1],
        0x80 | (p[2] & 0x01),
        0x80 | (p[3] & 0x10) | rcode,
        0,
        1,
        an0,
        an1,
        ns0,
        ns1,
        0,
        u8::from(q.edns.is_some()),
    ]);
    out.extend_from_slice(&p[12..q.question_end]);
}

/// Our OPT record (payload 1232, version 0, the client's DO echoed), with an Extended
/// DNS Error whose text is the concatenation of `text`.
fn opt(out: &mut Vec<u8>, dnssec_ok: bool, ede: Option<(u16, &[&str])>) {
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, u8::from(dnssec_ok) << 7, 0]);
    match ede {
        None => out.extend_from_slice(&[0, 0]),
        Some((code, text)) => {
            let len: usize = 2 + text.iter().map(|t| t.len()).sum::<usize>();
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            out.extend_from_slice(&(len + 4).to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            for t in text {
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
}

/// A record owned by the question's name (a pointer to it), without its data.
fn record_head(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&[0xc0, 12]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// `metaguard.invalid.` and `hostmaster.metaguard.invalid.` on the wire.
const SOA_MNAME: &[u8] = b"\x09metaguard\x07invalid\x00";
const SOA_RNAME: &[u8] = b"\x0ahostmaster\x09metaguard\x07invalid\x00";

/// The SOA of a blocked name's negative answer (its minimum is the blocked TTL).
fn soa(out: &mut Vec<u8>, ttl: u32) {
    record_head(out, 6, ttl, (SOA_MNAME.len() + SOA_RNAME.len() + 20) as u16);
    out.extend_from_slice(SOA_MNAME);
    out.extend_from_slice(SOA_RNAME);
    for n in [1, 3600, 600, 86_400, ttl] {
        out.extend_from_slice(&u32::to_be_bytes(n));
    }
}

/// The answer for a blocked name: what `response::blocked` builds, with EDE 15 naming
/// the category for EDNS clients.
pub fn blocked(out: &mut Vec<u8>, q: &Query<'_>, mode: BlockResponse, ttl: u32, category: &str) {
    match mode {
        BlockResponse::Refused => begin(out, q, 5, 0, 0),
        BlockResponse::Nxdomain => {
            begin(out, q, 3, 0, 1);
            soa(out, ttl);
        }
        BlockResponse::Null => match q.qtype {
            1 => {
                begin(out, q, 0, 1, 0);
                record_head(out, 1, ttl, 4);
                out.extend_from_slice(&[0; 4]);
            }
            28 => {
                begin(out, q, 0, 1, 0);
                record_head(out, 28, ttl, 16);
                out.extend_from_slice(&[0; 16]);
            }
            _ => {
                begin(out, q, 0, 0, 1);
                soa(out, ttl);
            }
        },
    }
    if q.edns.is_some() {
        let text: [&str; 3] = ["blocked by metaguard (category: ", category, ")"];
        opt(out, q.dnssec_ok, Some((EDE_BLOCKED, &text)));
    }
}

/// The cached answer to `q`, its TTLs counted down by `elapsed` seconds; all three
/// sections as the upstream sent them, AD as `response::authentic` decides.
pub fn cached(out: &mut Vec<u8>, q: &Query<'_>, enc: &Encoded, elapsed: u32) {
    begin(out, q, enc.rcode, enc.answers, enc.authorities);
    let additionals = enc.additionals.saturating_add(u16::from(q.edns.is_some()));
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    if authentic(enc.authentic, q.dnssec_ok, q.authentic_data()) {
        out[3] |= 0x20;
    }
    let base = out.len();
    out.extend_from_slice(&enc.bytes);
    for &(off, ttl) in enc.ttls.iter() {
        let at = base + usize::from(off);
        out[at..at + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
    }
    if q.edns.is_some() {
        opt(out, q.dnssec_ok, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::rdata::opt::EdnsOption;

    /// A query as a stub sends it; `name` is written as given (case kept, any bytes).
    fn query(name: &str, qtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p[11] = u8::from(edns.is_some());
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&u16::from(qtype).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        if let Some(e) = edns {
            let mut m = Message::new(0, MessageType::Query, OpCode::Query);
            m.set_edns(e);
            let bytes = m.to_vec().unwrap();
            p.extend_from_slice(&bytes[12..]);
        }
        p
    }

    #[test]
    fn parses_the_common_query() {
        let mut name = String::new();
        let p = query("Connect.FaceBook.net.", RecordType::AAAA, None);
        let q = Query::parse(&p, &mut name).unwrap();
        assert_eq!(name, "connect.facebook.net");
        assert_eq!(q.qtype, 28);
        assert_eq!(q.edns, None);
        assert_eq!(q.max_udp(), 512);

        let mut e = Edns::new();
        e.set_max_payload(4096);
        e.options_mut().insert(EdnsOption::Unknown(10, vec![1; 8]));
        let p = query("a.b.", RecordType::A, Some(e));
        let q = Query::parse(&p, &mut name).unwrap();
        assert_eq!(name, "a.b");
        assert_eq!(q.edns, Some(4096));
        assert_eq!(q.max_udp(), 1232);
    }

    #[test]
    fn leaves_everything_else_to_the_full_path() {
        let mut name = String::new();
        let ok = query("a.example.", RecordType::A, None);
        assert!(Query::parse(&ok, &mut name).is_some());
        let mut bad = Vec::new();
        // A response, another opcode, two questions, trailing bytes, truncated.
        let mut p = ok.clone();
        p[2] |= 0x80;
        bad.push(p);
        let mut p = ok.clone();
        p[2] |= 0x10;
        bad.push(p);
        let mut p = ok.clone();
        p[5] = 2;
        bad.push(p);
        let mut p = ok.clone();
        p.push(0);
        bad.push(p);
        bad.push(ok[..ok.len() - 1].to_vec());
        // ANY, class CH, the root, an odd character, a MAC option, EDNS version 1.
        bad.push(query("a.example.", RecordType::ANY, None));
        // Zone transfers and meta-types: the full path answers them (never forwarded).
        for t in [0, 41, 128, 248, 249, 250, 251, 252, 253, 254] {
            bad.push(query("a.example.", RecordType::from(t), None));
        }
        let mut p = ok.clone();
        let n = p.len();
        p[n - 1] = 3;
        bad.push(p);
        bad.push(query(".", RecordType::A, None));
        bad.push(query("a*b.example.", RecordType::A, None));
        let mut e = Edns::new();
        e.options_mut()
            .insert(EdnsOption::Unknown(65001, vec![1, 2, 3, 4, 5, 6]));
        bad.push(query("a.example.", RecordType::A, Some(e)));
        let mut e = Edns::new();
        e.set_version(1);
        bad.push(query("a.example.", RecordType::A, Some(e)));
        for p in &bad {
            assert!(Query::parse(p, &mut name).is_none(), "{p:?}");
        }
        // Every prefix of a valid query is refused without a panic.
        for i in 0..ok.len() {
            assert!(Query::parse(&ok[..i], &mut name).is_none());
        }
    }

    #[test]
    fn blocked_answers_decode() {
        let mut name = String::new();
        let mut out = Vec::new();
        for (mode, qtype, rcode, answers, authorities) in [
            (
                BlockResponse::Null,
                RecordType::A,
                ResponseCode::NoError,
                1,
                0,
            ),
            (
                BlockResponse::Null,
                RecordType::AAAA,
                ResponseCode::NoError,
                1,
                0,
            ),
            (
                BlockResponse::Null,
                RecordType::HTTPS,
                ResponseCode::NoError,
                0,
                1,
            ),
            (
                BlockResponse::Nxdomain,
                RecordType::A,
                ResponseCode::NXDomain,
                0,
                1,
            ),
            (
                BlockResponse::Refused,
                RecordType::A,
                ResponseCode::Refused,
                0,
                0,
            ),
        ] {
            let p = query("Pixel.Facebook.com.", qtype, Some(Edns::new()));
            let q = Query::parse(&p, &mut name).unwrap();
            blocked(&mut out, &q, mode, 10, "pixel");
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
            assert_eq!(m.metadata.response_code, rcode);
            assert_eq!(m.queries[0].name().to_string(), "Pixel.Facebook.com.");
            assert_eq!(m.answers.len(), answers);
            assert_eq!(m.authorities.len(), authorities);
            for r in m.answers.iter().chain(&m.authorities) {
                assert_eq!(r.name.to_string(), "Pixel.Facebook.com.");
                assert_eq!(r.ttl, 10);
            }
            let ede = m.edns.as_ref().unwrap().options().as_ref();
            let Some((_, EdnsOption::Unknown(15, data))) = ede.first() else {
                panic!("no EDE: {ede:?}");
            };
            assert_eq!(&data[2..], b"blocked by metaguard (category: pixel)");
        }
    }
}
