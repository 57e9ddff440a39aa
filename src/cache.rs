//! The answer cache: bounded, keyed by (name, type, DO, CD), honours and decrements TTLs
//! and keeps negative answers (RFC 2308) for their SOA's negative TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record, RecordType};
use serde::{Deserialize, Serialize};

mod encoded;

pub(crate) use encoded::Encoded;

/// `[cache]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most answers kept; the least recently used go first. 0 turns the cache off.
    pub size: usize,
    /// Floor for positive TTLs (raises very short TTLs).
    #[serde(with = "humantime_serde")]
    pub(crate) min_ttl: Duration,
    /// Ceiling for every TTL.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Ceiling for negative answers (NXDOMAIN, NODATA) that carry an SOA.
    #[serde(with = "humantime_serde")]
    pub(crate) negative_max_ttl: Duration,
    /// How long to keep a negative answer that came without an SOA.
    #[serde(with = "humantime_serde")]
    pub(crate) negative_ttl_without_soa: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: 10_000,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(86_400),
            negative_max_ttl: Duration::from_secs(3_600),
            negative_ttl_without_soa: Duration::from_secs(30),
        }
    }
}

/// An upstream answer as we keep it: its rcode, AD bit and three sections as they came.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (SOA of a negative answer, delegations).
    pub authorities: Vec<Record>,
    /// Glue, SRV/MX targets' addresses, DNSSEC records: relayed as the upstream sent them.
    pub additionals: Vec<Record>,
    /// The upstream's AD bit (RFC 4035 §3.2.3): its word that it validated the answer.
    pub authentic: bool,
}

/// The query bits an upstream answer depends on, so they are part of the cache key:
/// DO (RFC 3225: RRSIG, NSEC and NSEC3 records only when asked for) and CD (RFC 4035
/// §3.2.2: an answer the upstream did not validate is never served to a client that
/// wants it validated).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct DnssecBits {
    /// DO, from the client's OPT record.
    pub(crate) dnssec_ok: bool,
    /// CD, from the client's header.
    pub(crate) checking_disabled: bool,
}

impl Answer {
    /// Names in the answer's CNAME chain (targets of every CNAME record).
    pub(crate) fn cname_targets(&self) -> impl Iterator<Item = &hickory_proto::rr::Name> {
        self.answers.iter().filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(&c.0),
            _ => None,
        })
    }

    fn is_negative(&self) -> bool {
        self.rcode == ResponseCode::NXDomain
            || (self.rcode == ResponseCode::NoError && self.answers.is_empty())
    }

    /// How long this answer may be cached, or `None` when it must not be.
    fn cache_ttl(&self, cfg: &CacheConfig) -> Option<Duration> {
        let ttl = if self.is_negative() {
            let soa = self.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            match soa {
                Some(t) => Duration::from_secs(t.into()).min(cfg.negative_max_ttl),
                None => cfg.negative_ttl_without_soa,
            }
        } else if self.rcode == ResponseCode::NoError {
            let min = self.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
            Duration::from_secs(min.into()).max(cfg.min_ttl)
        } else {
            // SERVFAIL, REFUSED, ...: ask again next time.
            return None;
        };
        let ttl = ttl.min(cfg.max_ttl);
        (!ttl.is_zero()).then_some(ttl)
    }
}

/// One stored answer: the records, their wire form, and when it expires.
#[derive(Debug)]
struct CacheEntry {
    answer: Answer,
    /// The same records on the wire, for the listener's fast path.
    wire: Option<Encoded>,
    /// The CNAME targets, normalized, for the filter.
    cname_keys: Box<[String]>,
    stored: Instant,
    expires: Instant,
}

/// A live cache entry, borrowed for one answer: read it, don't keep it.
#[derive(Debug)]
pub struct Cached {
    entry: Arc<CacheEntry>,
    elapsed: u32,
}

impl Cached {
    /// The answer as cached (TTLs not counted down).
    pub(crate) fn stored_answer(&self) -> &Answer {
        &self.entry.answer
    }

    /// The pre-encoded records, when the answer could be encoded.
    pub fn wire(&self) -> Option<&Encoded> {
        self.entry.wire.as_ref()
    }

    /// The answer's CNAME targets as the filter checks them.
    pub(crate) fn cname_keys(&self) -> &[String] {
        &self.entry.cname_keys
    }

    /// Whole seconds since it was cached (to count TTLs down by).
    pub fn elapsed(&self) -> u32 {
        self.elapsed
    }

    /// A copy of the answer with its TTLs counted down, to serve.
    pub(crate) fn served(&self) -> Served {
        let mut answer = self.entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(self.elapsed);
        }
        answer
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    name: Box<str>,
    qtype: RecordType,
    bits: DnssecBits,
}

/// A borrowed [`Key`] for lookups, so a cache hit allocates no key. Hashes exactly as
/// `Key` does (field by field, same order).
#[derive(Hash)]
struct KeyRef<'a> {
    name: &'a str,
    qtype: RecordType,
    bits: DnssecBits,
}

impl quick_cache::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.name == *key.name && self.qtype == key.qtype && self.bits == key.bits
    }
}

/// A cached answer ready to serve, with TTLs already decremented.
pub(crate) type Served = Answer;

/// The shared cache. Cheap to clone; every clone sees the same entries.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<quick_cache::sync::Cache<Key, Arc<CacheEntry>>>>,
    cfg: CacheConfig,
}

impl Cache {
    /// An empty cache sized by `cfg` (none when `size` is 0).
    pub fn new(cfg: &CacheConfig) -> Cache {
        let inner = (cfg.size > 0).then(|| Arc::new(quick_cache::sync::Cache::new(cfg.size)));
        Cache {
            inner,
            cfg: cfg.clone(),
        }
    }

    /// The answer for `name` (normalized), `qtype` and `bits`, with TTLs counted down.
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str, qtype: RecordType, bits: DnssecBits) -> Option<Served> {
        self.get_at(name, qtype, bits, Instant::now())
    }

    #[cfg(test)]
    fn get_at(
        &self,
        name: &str,
        qtype: RecordType,
        bits: DnssecBits,
        now: Instant,
    ) -> Option<Served> {
        Some(self.lookup_at(name, qtype, bits, now)?.served())
    }

    /// The live entry for `name` (normalized), `qtype` and `bits`, without copying it.
    pub fn lookup(&self, name: &str, qtype: RecordType, bits: DnssecBits) -> Option<Cached> {
        self.lookup_at(name, qtype, bits, Instant::now())
    }

    /// [`Cache::lookup`] at `now`.
    pub(crate) fn lookup_at(
        &self,
        name: &str,
        qtype: RecordType,
        bits: DnssecBits,
        now: Instant,
    ) -> Option<Cached> {
        let inner = self.inner.as_ref()?;
        let key = KeyRef { name, qtype, bits };
        let entry = inner.get(&key)?;
        if now >= entry.expires {
            inner.remove(&key);
            return None;
        }
        let elapsed = now.duration_since(entry.stored).as_secs() as u32;
        Some(Cached { entry, elapsed })
    }

    /// Keep `answer` (asked for with `bits`) for as long as its TTLs allow.
    pub fn insert(&self, name: &str, qtype: RecordType, bits: DnssecBits, answer: &Answer) {
        self.insert_at(name, qtype, bits, answer, Instant::now())
    }

    fn insert_at(
        &self,
        name: &str,
        qtype: RecordType,
        bits: DnssecBits,
        answer: &Answer,
        now: Instant,
    ) {
        let Some(inner) = &self.inner else { return };
        let mut answer = answer.clone();
        let Some(ttl) = clamp_ttls(&mut answer, &self.cfg) else {
            return;
        };
        let entry = CacheEntry {
            wire: Encoded::new(&answer, name),
            cname_keys: answer
                .cname_targets()
                .map(crate::filter::name_key)
                .collect(),
            answer,
            stored: now,
            expires: now + ttl,
        };
        inner.insert(
            Key {
                name: name.into(),
                qtype,
                bits,
            },
            Arc::new(entry),
        );
    }

    /// Give `answer` the TTLs a client sees, fresh from the upstream or cached (see
    /// [`clamp_ttls`]); with the cache off too.
    pub(crate) fn clamp_ttls(&self, answer: &mut Answer) {
        clamp_ttls(answer, &self.cfg);
    }

    /// Drop every entry (on reload: the policy may have changed).
    pub(crate) fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| c.len())
    }
}

/// The TTLs clients see: one with its top bit set counts as 0 (RFC 2181 §8); answer
/// TTLs are raised to `min_ttl` and capped at `max_ttl`, authority TTLs capped at how
/// long the answer is kept, so every record outlives its cache entry and a served TTL
/// never reaches 0. Returns how long to keep the answer, `None` when not at all. Applying
/// it twice changes nothing.
fn clamp_ttls(answer: &mut Answer, cfg: &CacheConfig) -> Option<Duration> {
    for r in answer
        .answers
        .iter_mut()
        .chain(answer.authorities.iter_mut())
        .chain(answer.additionals.iter_mut())
    {
        if r.ttl > i32::MAX as u32 {
            r.ttl = 0;
        }
    }
    let keep = answer.cache_ttl(cfg);
    let (min, max) = (
        cfg.min_ttl.as_secs().min(u32::MAX.into()) as u32,
        cfg.max_ttl.as_secs().min(u32::MAX.into()) as u32,
    );
    for r in answer.answers.iter_mut() {
        r.ttl = r.ttl.max(min).min(max);
    }
    let kept = keep.map_or(max, |t| t.as_secs().min(u32::MAX.into()) as u32);
    for r in answer
        .authorities
        .iter_mut()
        .chain(answer.additionals.iter_mut())
    {
        r.ttl = r.ttl.min(kept);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO: DnssecBits = DnssecBits {
        dnssec_ok: false,
        checking_disabled: false,
    };
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    fn a(name: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(
            Name::from_str("ns.example.").unwrap(),
            Name::from_str("host.example.").unwrap(),
            1,
            3600,
            600,
            86400,
            minimum,
        );
        Record::from_rdata(Name::from_str("example.").unwrap(), ttl, RData::SOA(soa))
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let c = Cache::new(&CacheConfig::default());
        let now = Instant::now();
        let ans = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.example.", 300)],
            authorities: vec![],
            ..Default::default()
        };
        c.insert_at("x.example", RecordType::A, NO, &ans, now);
        let got = c
            .get_at("x.example", RecordType::A, NO, now + Duration::from_secs(2))
            .unwrap();
        assert_eq!(got.answers[0].ttl, 298);
        assert!(c.get_at("x.example", RecordType::AAAA, NO, now).is_none());
        assert!(
            c.get_at(
                "x.example",
                RecordType::A,
                NO,
                now + Duration::from_secs(300)
            )
            .is_none()
        );
    }

    #[test]
    fn negative_answers_use_soa_minimum_or_default() {
        let cfg = CacheConfig::default();
        let c = Cache::new(&cfg);
        let now = Instant::now();
        let nx = Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![soa(900, 60)],
            ..Default::default()
        };
        c.insert_at("nx.example", RecordType::A, NO, &nx, now);
        assert!(
            c.get_at(
                "nx.example",
                RecordType::A,
                NO,
                now + Duration::from_secs(59)
            )
            .is_some()
        );
        assert!(
            c.get_at(
                "nx.example",
                RecordType::A,
                NO,
                now + Duration::from_secs(61)
            )
            .is_none()
        );

        let bare = Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![],
            ..Default::default()
        };
        c.insert_at("bare.example", RecordType::A, NO, &bare, now);
        assert!(
            c.get_at(
                "bare.example",
                RecordType::A,
                NO,
                now + Duration::from_secs(29)
            )
            .is_some()
        );
        assert!(
            c.get_at(
                "bare.example",
                RecordType::A,
                NO,
                now + Duration::from_secs(31)
            )
            .is_none()
        );
    }

    #[test]
    fn servfail_and_zero_ttl_are_not_kept() {
        let c = Cache::new(&CacheConfig::default());
        let sf = Answer {
            rcode: ResponseCode::ServFail,
            answers: vec![],
            authorities: vec![],
            ..Default::default()
        };
        c.insert("sf.example", RecordType::A, NO, &sf);
        assert!(c.get("sf.example", RecordType::A, NO).is_none());
        let zero = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("z.example.", 0)],
            authorities: vec![],
            ..Default::default()
        };
        c.insert("z.example", RecordType::A, NO, &zero);
        assert!(c.get("z.example", RecordType::A, NO).is_none());
    }

    #[test]
    fn top_bit_ttls_are_zero_and_clamping_is_idempotent() {
        let cfg = CacheConfig {
            max_ttl: Duration::from_secs(60),
            ..Default::default()
        };
        let mut ans = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.example.", 0x8000_0000), a("x.example.", 86_400)],
            authorities: vec![soa(u32::MAX, 60)],
            additionals: vec![],
            authentic: false,
        };
        assert_eq!(clamp_ttls(&mut ans, &cfg), None);
        let ttls = |a: &Answer| -> Vec<u32> {
            a.answers
                .iter()
                .chain(&a.authorities)
                .map(|r| r.ttl)
                .collect()
        };
        assert_eq!(ttls(&ans), [0, 60, 0]);
        let mut again = ans.clone();
        clamp_ttls(&mut again, &cfg);
        assert_eq!(ttls(&again), ttls(&ans));
        // The cache off: clients still get max_ttl.
        let off = Cache::new(&CacheConfig { size: 0, ..cfg });
        let mut fresh = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("y.example.", 86_400)],
            authorities: vec![],
            additionals: vec![],
            authentic: false,
        };
        off.clamp_ttls(&mut fresh);
        assert_eq!(fresh.answers[0].ttl, 60);
    }

    #[test]
    fn max_ttl_clamps_and_size_bounds() {
        let cfg = CacheConfig {
            size: 100,
            max_ttl: Duration::from_secs(60),
            ..Default::default()
        };
        let c = Cache::new(&cfg);
        let ans = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.example.", 86400)],
            authorities: vec![],
            ..Default::default()
        };
        c.insert("x.example", RecordType::A, NO, &ans);
        assert_eq!(
            c.get("x.example", RecordType::A, NO).unwrap().answers[0].ttl,
            60
        );
        for i in 0..1000 {
            c.insert(&format!("n{i}.example"), RecordType::A, NO, &ans);
        }
        assert!(c.len() <= 100, "cache grew to {}", c.len());
    }

    #[test]
    fn do_and_cd_are_part_of_the_key() {
        let c = Cache::new(&CacheConfig::default());
        let ans = Answer {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.example.", 300)],
            additionals: vec![a("glue.example.", 300)],
            ..Default::default()
        };
        let dnssec_ok = DnssecBits {
            dnssec_ok: true,
            ..NO
        };
        let cd = DnssecBits {
            checking_disabled: true,
            ..NO
        };
        c.insert("x.example", RecordType::A, dnssec_ok, &ans);
        assert!(c.get("x.example", RecordType::A, NO).is_none());
        assert!(c.get("x.example", RecordType::A, cd).is_none());
        let got = c.get("x.example", RecordType::A, dnssec_ok).unwrap();
        assert_eq!(got.additionals.len(), 1);
    }
}
