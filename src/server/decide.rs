//! The one decision on a query ([`decide`]: blocked, cached, forward, or a local answer)
//! and the one check of an answer's CNAME chain and addresses ([`check_answer`]). Both
//! are synchronous and count nothing: the inline UDP path ([`super::handler`]'s `inline`)
//! only encodes what they say, the full path only awaits the upstream in between.

use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::Snapshot;
use super::clock::Now;
use crate::bypass::BypassAnswer;
use crate::cache::{Answer, Cache, Cached, DnssecBits};
use crate::clients::Device;
use crate::config::DomainName;
use crate::filter::{Verdict, name_key};
use crate::policy::Action;
use crate::server::response::is_local_qtype;

/// The question of a query, as the decision reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Question<'a> {
    /// Normalized: lowercase, no trailing dot ([`name_key`]).
    pub(crate) name: &'a str,
    pub(crate) qtype: RecordType,
    pub(crate) class: DNSClass,
    /// DO and CD: part of the cache key.
    pub(crate) bits: DnssecBits,
    /// When it was asked (read once per batch of datagrams).
    pub(crate) asked: Now,
}

/// A hit as `decide()` finds it: the filter's verdict and the name it matched.
/// `record()` turns it into the log's [`HitEvent`](crate::store::HitEvent) and dnstap's
/// `HitInfo`.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) verdict: Verdict,
    /// The CNAME target the rule matched; `None` when it matched the query name (which
    /// the hit does not copy: a hit on the inline path allocates nothing).
    pub(crate) cname: Option<String>,
}

impl Hit {
    /// A match on the query name itself.
    fn of(verdict: Verdict) -> Hit {
        Hit {
            verdict,
            cname: None,
        }
    }

    /// The name the rule matched: the CNAME target, else `name` (the query's).
    pub(crate) fn matched<'a>(&'a self, name: &'a str) -> &'a str {
        self.cname.as_deref().unwrap_or(name)
    }
}

/// What to do with a query: `decide()`'s result, from the filter's [`Verdict`] on its
/// name, its type and the cache.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Answered here, never forwarded. `hit` is a `log` rule on the name (or, for a
    /// [`Local::Bypass`] answer, a `block` one).
    Local { answer: Local, hit: Option<Hit> },
    /// A `block` rule matched the name.
    Blocked(Hit),
    /// A live cache entry, already checked like a fresh answer.
    Cached { entry: Cached, check: Check },
    /// Ask the upstream, then [`check_answer`] with this verdict on the name.
    Forward { verdict: Verdict },
}

/// The answers given without the upstream or the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// A class other than IN (CHAOS `version.bind` and friends): REFUSED, and nothing
    /// about ourselves. Read before the device: not logged as its query.
    OtherClass,
    /// ANY: the small RFC 8482 answer.
    Any,
    /// A zone transfer or a meta-type (see `response::not_forwarded`).
    NotForwarded,
    /// `[bypass]`: NXDOMAIN for a canary, NODATA for DDR (see [`crate::bypass`]).
    Bypass(BypassAnswer),
}

/// What the check of an answer found.
#[derive(Debug)]
pub(crate) enum Check {
    /// Serve it; `hit` is a `log` rule on the name or, when the name matched nothing,
    /// on a name in its CNAME chain.
    Pass(Option<Hit>),
    /// A name in its CNAME chain is blocked (CNAME uncloaking).
    Blocked(Hit),
    /// A public name answered with a local address (DNS rebinding): NXDOMAIN instead.
    Rebinding(Option<Hit>),
}

/// Decide what to do with `q` from `device`. The stages, in this order:
pub(crate) fn decide(
    snap: &Snapshot,
    cache: &Cache,
    q: &Question<'_>,
    device: &Device,
) -> Decision {
    // 1. Class: only IN is served. First, since nothing below means anything for CHAOS.
    if q.class != DNSClass::IN {
        return Decision::Local {
            answer: Local::OtherClass,
            hit: None,
        };
    }
    // 2. `[bypass]` answers (the Firefox canary, iCloud Private Relay, DDR). Before the
    //    filter: their meaning is the exact answer (a `null` blocked answer 0.0.0.0
    //    would tell Firefox that DoH may be turned on), so no category action or
    //    block_response may change it; the filter only says whether the lookup is
    //    logged (category `bypass`). Before the query type: the name does not exist,
    //    or has no data, whatever is asked for.
    if let Some(answer) = snap.config.bypass.answer(q.name) {
        let verdict = snap.verdict(q.name, device);
        let hit =
            matches!(verdict.action, Some(Action::Log | Action::Block)).then(|| Hit::of(verdict));
        return Decision::Local {
            answer: Local::Bypass(answer),
            hit,
        };
    }
    // 3. The filter, with the device's group policy. Before the query type, so that a
    //    blocked name is blocked whatever is asked for (ANY and DO/CD included).
    let verdict = snap.verdict(q.name, device);
    if verdict.is_block() {
        return Decision::Blocked(Hit::of(verdict));
    }
    // 4. Query types that are never forwarded. After the filter, so that a `log` rule
    //    still logs them; before the cache, which never holds them.
    let local = match u16::from(q.qtype) {
        255 => Some(Local::Any),
        t if is_local_qtype(t) => Some(Local::NotForwarded),
        _ => None,
    };
    if let Some(answer) = local {
        let hit = logged(&verdict);
        return Decision::Local { answer, hit };
    }
    // 5. The cache, keyed on DO/CD. A cached answer is checked as a fresh one would be:
    //    the policy may block a name in its chain that was allowed when it was cached.
    match cache.lookup_at(q.name, q.qtype, q.bits, q.asked.mono) {
        Some(entry) => {
            let check = check_answer(
                snap,
                q,
                device,
                verdict,
                entry.stored_answer(),
                Some(entry.cname_keys()),
            );
            Decision::Cached { entry, check }
        }
        // 6. The upstream.
        None => Decision::Forward { verdict },
    }
}

/// Check `answer` to `q`, given the `verdict` on its name. `cname_keys` are its CNAME
/// targets as the filter reads them when already known (cached), else read from it.
pub(crate) fn check_answer(
    snap: &Snapshot,
    q: &Question<'_>,
    device: &Device,
    verdict: Verdict,
    answer: &Answer,
    cname_keys: Option<&[String]>,
) -> Check {
    let name_logged = logged(&verdict);
    // CNAME uncloaking: an allowed name whose chain passes a blocked name is blocked.
    // A chain through a logged name is logged when the name itself matched nothing.
    // An `allow` rule on the name itself ends it: the household asked for that name.
    let mut chain_logged = None;
    if verdict.action != Some(Action::Allow) {
        let mut check = |t: &str| -> Option<Check> {
            let tv = snap.verdict(t, device);
            let hit = || Hit {
                verdict: tv.clone(),
                cname: Some(t.to_string()),
            };
            if tv.is_block() {
                return Some(Check::Blocked(hit()));
            }
            if chain_logged.is_none() && tv.action == Some(Action::Log) {
                chain_logged = Some(hit());
            }
            None
        };
        match cname_keys {
            Some(keys) => {
                for t in keys {
                    if let Some(blocked) = check(t) {
                        return blocked;
                    }
                }
            }
            None => {
                for target in answer.cname_targets() {
                    if let Some(blocked) = check(&name_key(target)) {
                        return blocked;
                    }
                }
            }
        }
    }
    // Rebinding: after the chain, so that a blocked chain is reported as blocked.
    if snap.config.server.rebind_protection
        && rebinds(answer, q.name, &snap.config.server.rebind_allow)
    {
        return Check::Rebinding(name_logged);
    }
    let hit = name_logged.or(if verdict.action.is_none() {
        chain_logged
    } else {
        None
    });
    Check::Pass(hit)
}

/// The hit to log when `verdict` is a `log` rule (on the query name).
fn logged(verdict: &Verdict) -> Option<Hit> {
    (verdict.action == Some(Action::Log)).then(|| Hit::of(verdict.clone()))
}

/// Whether `answer` for the public name `name` holds an address of the local network
/// (a DNS-rebinding attempt). Names under `allow` and single-label names are local.
fn rebinds(answer: &Answer, name: &str, allow: &[DomainName]) -> bool {
    let local_name = !name.contains('.') || allow.iter().any(|d| d.covers(name));
    if local_name {
        return false;
    }
    answer.answers.iter().any(|r| match &r.data {
        RData::A(a) => private_ip(std::net::IpAddr::V4(a.0)),
        RData::AAAA(a) => private_ip(std::net::IpAddr::V6(a.0)),
        _ => false,
    })
}

/// Loopback, RFC 1918, CGNAT, link-local, unspecified, ULA (and IPv4-mapped forms).
fn private_ip(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}
