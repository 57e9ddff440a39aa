//! Building answers: the blocked answer, errors with Extended DNS Errors (RFC 8914),
//! the RFC 8482 answer to ANY, and upstream answers in the client's spelling.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, HINFO, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_server::net::NetError;
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::bypass::BypassAnswer;
use crate::cache::Answer;
use crate::filter::BlockResponse;

/// RFC 8914 info codes we send.
pub(crate) const EDE_BLOCKED: u16 = 15;
pub(crate) const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
pub(crate) const EDE_NOT_SUPPORTED: u16 = 21;

/// Largest UDP answer we send, whatever the client offers (DNS flag day 2020).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest answer a UDP client gets: what its OPT record offers (512 without
/// one), at least 512 and at most [`MAX_UDP_PAYLOAD`].
pub(crate) fn udp_limit(offered: Option<u16>) -> u16 {
    offered.unwrap_or(512).clamp(512, MAX_UDP_PAYLOAD)
}

/// What the handler decided to answer, before it is encoded.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
    /// The upstream's AD bit, for clients that asked for DNSSEC (see [`metadata`]).
    pub(crate) authentic: bool,
    /// Extended DNS Error: info code and text (sent only to EDNS clients).
    pub(crate) ede: Option<(u16, String)>,
}

impl Reply {
    pub(crate) fn error(rcode: ResponseCode) -> Reply {
        Reply {
            rcode,
            ..Default::default()
        }
    }

    pub(crate) fn with_ede(mut self, code: u16, text: impl Into<String>) -> Reply {
        self.ede = Some((code, text.into()));
        self
    }

    /// The OPT record of the answer, for a client that sent one; DO copied from the
    /// client's (RFC 3225 §3).
    pub(crate) fn edns(&self, dnssec_ok: bool) -> Edns {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_version(0);
        edns.set_dnssec_ok(dnssec_ok);
        if let Some((code, text)) = &self.ede {
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::Unknown(15)), data));
        }
        edns
    }
}

fn soa_record(owner: &Name, ttl: u32) -> Record {
    let mname = Name::from_str("metaguard.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_str("hostmaster.metaguard.invalid.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86_400, ttl);
    Record::from_rdata(owner.clone(), ttl, RData::SOA(soa))
}

/// The answer for a blocked name, with EDE 15 naming the category.
pub(crate) fn blocked(
    mode: BlockResponse,
    owner: &Name,
    qtype: RecordType,
    ttl: u32,
    category: &str,
) -> Reply {
    let mut r = match mode {
        BlockResponse::Refused => Reply::error(ResponseCode::Refused),
        BlockResponse::Nxdomain => Reply {
            rcode: ResponseCode::NXDomain,
            authorities: vec![soa_record(owner, ttl)],
            ..Default::default()
        },
        BlockResponse::Null => {
            let data = match qtype {
                RecordType::A => Some(RData::A(A(Ipv4Addr::UNSPECIFIED))),
                RecordType::AAAA => Some(RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))),
                _ => None,
            };
            match data {
                Some(d) => Reply {
                    answers: vec![Record::from_rdata(owner.clone(), ttl, d)],
                    ..Default::default()
                },
                None => Reply {
                    authorities: vec![soa_record(owner, ttl)],
                    ..Default::default()
                },
            }
        }
    };
    r.ede = Some((
        EDE_BLOCKED,
        format!("blocked by metaguard (category: {category})"),
    ));
    r
}

/// The `[bypass]` answer: NXDOMAIN (a canary) or NODATA (DDR), with an SOA so the
/// client caches it for `ttl` seconds (RFC 2308).
pub(crate) fn bypass(answer: BypassAnswer, owner: &Name, ttl: u32) -> Reply {
    let rcode = match answer {
        BypassAnswer::NxDomain => ResponseCode::NXDomain,
        BypassAnswer::NoData => ResponseCode::NoError,
    };
    Reply {
        rcode,
        authorities: vec![soa_record(owner, ttl)],
        ..Default::default()
    }
}

/// RFC 8482: a small synthesized HINFO instead of everything the name has.
pub(crate) fn any_minimal(owner: &Name) -> Reply {
    let hinfo = HINFO::new("RFC8482".to_string(), String::new());
    Reply {
        answers: vec![Record::from_rdata(owner.clone(), 3600, RData::HINFO(hinfo))],
        ..Default::default()
    }
}

/// Query types answered here and never forwarded (the inline path leaves them to the
/// full path): ANY (RFC 8482), zone transfers, and the meta- and obsolete QTYPEs.
pub(crate) fn is_local_qtype(qtype: u16) -> bool {
    qtype == 0 || qtype == 41 || (128..=255).contains(&qtype)
}

/// The answer to a query type a forwarder has no data for: REFUSED for a zone transfer
/// (AXFR, IXFR: we serve no zone), NOTIMP for type 0, OPT (41), the range kept for
/// meta-types and QTYPEs (128-248), TKEY, TSIG and the obsolete MAILB and MAILA.
/// `None` for every other type (ANY has its own answer, [`any_minimal`]).
pub(crate) fn not_forwarded(qtype: RecordType) -> Option<Reply> {
    let code = u16::from(qtype);
    let rcode = match code {
        251 | 252 => ResponseCode::Refused,
        255 => return None,
        _ if is_local_qtype(code) => ResponseCode::NotImp,
        _ => return None,
    };
    Some(Reply::error(rcode).with_ede(
        EDE_NOT_SUPPORTED,
        format!("query type {qtype} is not served"),
    ))
}

/// An upstream (or cached) answer, with the question's owner name in the client's
/// spelling (keeps 0x20 case randomization working). Every section is relayed as it
/// came (DNSSEC records, glue, SRV and MX targets' addresses).
pub(crate) fn from_answer(answer: Answer, owner: &Name) -> Reply {
    let Answer {
        rcode,
        mut answers,
        authorities,
        additionals,
        authentic,
    } = answer;
    for r in &mut answers {
        if r.name.eq_ignore_root(owner) {
            r.name = owner.clone();
        }
    }
    Reply {
        rcode,
        answers,
        authorities,
        additionals,
        authentic,
        ..Default::default()
    }
}

/// A FORMERR for a packet whose header we read but whose body we could not.
pub(crate) fn formerr_from_header(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < 12 {
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0] = raw[0];
    out[1] = raw[1];
    // QR=1, keep OPCODE and RD; RA=1, RCODE=FORMERR.
    out[2] = 0x80 | (raw[2] & 0x79);
    out[3] = 0x80 | 1;
    Some(out)
}

/// A [`ResponseHandler`] that encodes the answer into a buffer for the listener to send,
/// in at most `max_size` bytes (the UDP size the client can take, 65535 over TCP).
#[derive(Clone)]
pub(crate) struct Capture {
    max_size: u16,
    out: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Option<Vec<u8>>,
    /// Records were dropped because the answer exceeded 65535 bytes uncompressed.
    lost: bool,
}

impl Capture {
    pub(crate) fn new(max_size: u16) -> Capture {
        Capture {
            max_size,
            out: Arc::new(Mutex::new(Captured::default())),
        }
    }

    /// The encoded answer, if the handler sent one.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.out.lock().ok()?.bytes.take()
    }

    /// Whether the answer lost records to the 65535-byte bound of its first encoding.
    fn lost(&self) -> bool {
        self.out.lock().is_ok_and(|c| c.lost)
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let metadata = *response.metadata();
        // Borrowed from the request, not the response: still there after the emit.
        let edns = response.edns();
        // Names uncompressed first: hickory's compression keeps a heap copy of every
        // label written, and was the largest single cost of a cached answer. Only an
        // answer that does not fit the client's size is encoded again by `fit`.
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        let emitted = response.destructive_emit(&mut encoder);
        // A record that did not fit is rolled back by moving the offset only: its bytes
        // are still in the buffer.
        let end = encoder.offset();
        bytes.truncate(end);
        let mut lost = false;
        let info = match emitted {
            Ok(info) if !info.truncation && bytes.len() <= usize::from(self.max_size) => info,
            Ok(info) => {
                lost = info.truncation && !metadata.truncation;
                match fit(&bytes, self.max_size, edns) {
                    Ok((header, out)) => {
                        bytes = out;
                        ResponseInfo::from(header)
                    }
                    Err(e) => servfail(&mut bytes, metadata, &e)?,
                }
            }
            Err(e) => servfail(&mut bytes, metadata, &e)?,
        };
        if let Ok(mut slot) = self.out.lock() {
            slot.bytes = Some(bytes);
            slot.lost = lost;
        }
        Ok(info)
    }
}

/// Re-encode an encoded answer within `max_size` (see [`emit_within`]), with `edns` as
/// its OPT record (the first encoding may have had no room left for it).
fn fit(bytes: &[u8], max_size: u16, edns: Option<&Edns>) -> Result<(Header, Vec<u8>), ProtoError> {
    let mut msg = Message::from_vec(bytes)?;
    if let Some(e) = edns {
        msg.edns = Some(e.clone());
    }
    emit_within(&msg, max_size)
}

/// Encode `msg` in at most `max_size` bytes, whole records only. The answer and
/// authority sections end at the first record that does not fit, with TC set; additional
/// records that do not fit are left out without TC (RFC 2181 §9). Room is kept for the
/// OPT record, which an EDNS client gets in every answer (RFC 6891 §6.1.1). Owner names
/// equal to the question's are a pointer to it, so a 64 KB answer that came compressed
/// over TCP fits again (hickory compresses only the first 120 names of a message).
pub(crate) fn emit_within(msg: &Message, max_size: u16) -> Result<(Header, Vec<u8>), ProtoError> {
    let opt = msg.edns.as_ref().map(|e| {
        let mut e = e.clone();
        e.set_rcode_high(msg.metadata.response_code.high());
        Record::from(&e)
    });
    let mut opt_bytes = Vec::new();
    if let Some(r) = &opt {
        r.emit(&mut BinEncoder::new(&mut opt_bytes))?;
    }
    let opt_len = u16::try_from(opt_bytes.len()).unwrap_or(u16::MAX);
    let qname = msg
        .queries
        .first()
        .map(|q| q.name())
        .filter(|n| !n.is_root());

    let mut out = Vec::with_capacity(usize::from(max_size).min(4096));
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_max_size(max_size.saturating_sub(opt_len));
    let place = encoder.place::<Header>()?;
    let queries = encoder.emit_all(msg.queries.iter())?;
    let mut truncated = msg.metadata.truncation;
    let mut counts = [0u16; 3];
    let sections = [&msg.answers, &msg.authorities, &msg.additionals];
    for (i, records) in sections.into_iter().enumerate() {
        let records: Vec<Owned<'_>> = records.iter().map(|r| Owned(r, qname)).collect();
        let (n, cut) = match encoder.emit_all(records.iter()) {
            Ok(n) => (n, false),
            Err(ProtoError::NotAllRecordsWritten { count, .. }) => (count, true),
            Err(e) => return Err(e),
        };
        counts[i] = u16::try_from(n).map_err(|_| ProtoError::Message("too many records"))?;
        if cut {
            // RFC 2181 §9: TC only when the answer or authority section is incomplete.
            truncated |= i < 2;
            break;
        }
    }
    encoder.set_max_size(max_size);
    if !opt_bytes.is_empty() {
        encoder.emit_vec(&opt_bytes)?;
        counts[2] += 1;
    }
    let mut metadata = msg.metadata;
    metadata.truncation = truncated;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries: u16::try_from(queries).map_err(|_| ProtoError::Message("too many queries"))?,
            answers: counts[0],
            authorities: counts[1],
            additionals: counts[2],
        },
    };
    place.replace(&mut encoder, header)?;
    let end = encoder.offset();
    out.truncate(end);
    Ok((header, out))
}

/// A record whose owner, when it is the question's name, is written as a pointer to
/// the question (offset 12).
struct Owned<'r>(&'r Record, Option<&'r Name>);

impl BinEncodable for Owned<'_> {
    fn emit(&self, encoder: &mut BinEncoder<'_>) -> Result<(), ProtoError> {
        let Owned(r, qname) = self;
        match qname {
            Some(q) if r.name.eq_ignore_root(q) => encoder.emit_u16(0xc000 | 12)?,
            _ => r.name.emit(encoder)?,
        }
        r.record_type().emit(encoder)?;
        r.dns_class.emit(encoder)?;
        encoder.emit_u32(r.ttl)?;
        let place = encoder.place::<u16>()?;
        if !matches!(r.data, RData::Update0(_)) {
            r.data.emit(encoder)?;
        }
        let len = encoder.len_since_place(&place);
        place.replace(encoder, u16::try_from(len).unwrap_or(u16::MAX))
    }
}

/// The answer to `request` from `reply`, encoded in at most `max_size` bytes.
pub(crate) async fn encode(
    request: &hickory_server::server::Request,
    reply: &Reply,
    max_size: u16,
) -> Option<Vec<u8>> {
    let capture = Capture::new(max_size);
    send(request, reply, capture.clone()).await;
    if !capture.lost() {
        return capture.take();
    }
    // Over 65535 bytes with names uncompressed: encode again from the records themselves.
    match emit_within(&message(request, reply), max_size) {
        Ok((_, bytes)) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a large answer; sent it truncated");
            capture.take()
        }
    }
}

/// The answer [`send`] builds, as a [`Message`] (keep the two in step).
fn message(request: &hickory_server::server::Request, reply: &Reply) -> Message {
    let mut msg = Message::new(
        request.metadata.id,
        hickory_proto::op::MessageType::Response,
        request.metadata.op_code,
    );
    // The same header, sections and OPT as `send` builds.
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    msg.metadata = metadata(&request.metadata, reply.rcode);
    msg.metadata.authentic_data =
        authentic(reply.authentic, dnssec_ok, request.metadata.authentic_data);
    msg.queries = request
        .queries
        .queries()
        .iter()
        .map(|q| q.original().clone())
        .collect();
    msg.answers = reply.answers.clone();
    msg.authorities = reply.authorities.clone();
    msg.additionals = reply.additionals.clone();
    msg.edns = request.edns.as_ref().map(|_| reply.edns(dnssec_ok));
    msg
}

/// Replace `bytes` with a bare SERVFAIL header for an answer we could not encode.
fn servfail(
    bytes: &mut Vec<u8>,
    metadata: Metadata,
    error: &dyn std::fmt::Display,
) -> Result<ResponseInfo, ProtoError> {
    tracing::warn!(%error, "cannot encode answer; sending SERVFAIL");
    bytes.clear();
    let mut meta = metadata;
    meta.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata: meta,
        counts: HeaderCounts::default(),
    };
    header.emit(&mut BinEncoder::new(bytes))?;
    Ok(ResponseInfo::from(header))
}

/// Build the answer to `request` from `reply` and hand it to `handle` (EDNS echoed
/// when the client sent it). The one place answers are put together.
pub(crate) async fn send<R: ResponseHandler>(
    request: &hickory_server::server::Request,
    reply: &Reply,
    mut handle: R,
) -> ResponseInfo {
    let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let mut meta = metadata(&request.metadata, reply.rcode);
    meta.authentic_data = authentic(reply.authentic, dnssec_ok, request.metadata.authentic_data);
    let edns = request.edns.as_ref().map(|_| reply.edns(dnssec_ok));
    let mut builder =
        hickory_server::zone_handler::MessageResponseBuilder::from_message_request(request);
    if let Some(e) = &edns {
        builder.edns(e);
    }
    let resp = builder.build(
        meta,
        reply.answers.iter(),
        reply.authorities.iter(),
        [].iter(),
        reply.additionals.iter(),
    );
    match handle.send_response(resp).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "answer not sent");
            ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// The metadata of an answer to `req`.
pub(crate) fn metadata(req: &Metadata, rcode: ResponseCode) -> Metadata {
    let mut meta = Metadata::response_from_request(req);
    meta.recursion_available = true;
    meta.response_code = rcode;
    meta
}

/// The AD bit of an answer: the upstream's, passed on only to a client that asked for
/// DNSSEC with DO or AD (RFC 6840 §5.7, §5.8), as dnsmasq's `--proxy-dnssec` does. We
/// validate nothing ourselves: AD is the upstream's word, worth what the path to it is.
pub(crate) fn authentic(upstream_ad: bool, dnssec_ok: bool, client_ad: bool) -> bool {
    upstream_ad && (dnssec_ok || client_ad)
}
