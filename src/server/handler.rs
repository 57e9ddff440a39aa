//! Our `RequestHandler`: one query's way through, in a fixed order:
//! protocol checks -> filter verdict -> blocked answer, or cache -> upstream (deadline)
//! -> CNAME chain checked by the same filter -> answer.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{LowerQuery, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::Snapshot;
use super::response::{self, EDE_NO_REACHABLE_AUTHORITY, EDE_NOT_SUPPORTED, Reply};
use crate::cache::{Cache, DnssecBits};
use crate::clients::Identity;
use crate::export::{self, Export};
use crate::filter::{Verdict, name_key};
use crate::metrics::Metrics;
use crate::policy::Action;
use crate::stats::Stats;
use crate::store::{AnsweredFrom, DeviceInfo, HitEvent, Logger, QueryEvent};
use crate::wire;

/// The query handler. Everything it reads per query is in the current [`Snapshot`].
pub struct Handler {
    pub(super) state: Arc<ArcSwap<Snapshot>>,
    pub(super) cache: Cache,
    pub(super) stats: Arc<Stats>,
    pub(super) logger: Logger,
    pub(super) metrics: Arc<Metrics>,
    pub(super) export: Export,
}

/// What a query matched, for the hit log.
struct Hit {
    verdict: Verdict,
    /// The name the rule matched: the query name, or a CNAME target.
    matched: String,
    from_cname: bool,
}

impl Hit {
    /// A match on the query name itself.
    fn of(verdict: Verdict, name: &str) -> Hit {
        Hit {
            verdict,
            matched: name.to_string(),
            from_cname: false,
        }
    }
}

impl Handler {
    /// Decide the answer for one parsed query, and log it.
    pub async fn resolve(&self, snap: &Snapshot, req: &Request) -> Reply {
        Stats::inc(&self.stats.queries);
        if req.metadata.op_code != OpCode::Query {
            return Reply::error(ResponseCode::NotImp);
        }
        if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reply::error(ResponseCode::BADVERS);
        }
        let [query] = req.queries.queries() else {
            return Reply::error(ResponseCode::FormErr);
        };
        if query.query_class() != DNSClass::IN {
            // CHAOS `version.bind` and friends: we tell nothing about ourselves.
            return Reply::error(ResponseCode::Refused)
                .with_ede(EDE_NOT_SUPPORTED, "only class IN is served");
        }
        let device = snap.clients.identify(req.src().ip(), req.edns.as_ref());
        let name = name_key(query.name());
        #[cfg(test)]
        if name == tests::PANIC_NAME {
            panic!("test: a faulty query task");
        }
        let actions = snap.policy.actions(device.group.as_deref());
        let bits = DnssecBits {
            dnssec_ok: req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            checking_disabled: req.metadata.checking_disabled,
        };
        let (reply, hit, from) = self.answer(snap, query, &name, actions, bits).await;
        let (qtype, id) = (query.query_type(), req.metadata.id);
        self.record(snap, &device, &name, qtype, id, hit, from);
        reply
    }

    /// Count the query in the hourly totals, log its rule match and, when asked for,
    /// the query itself; hand it to the dnstap export.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        snap: &Snapshot,
        device: &Identity,
        name: &str,
        qtype: RecordType,
        id: u16,
        hit: Option<Hit>,
        from: AnsweredFrom,
    ) {
        let blocked = hit.as_ref().is_some_and(|h| h.verdict.is_block());
        self.logger.query(&device.key, hit.is_some(), blocked);
        self.log_query(device, name, qtype, from);
        tracing::debug!(client = %device.addr, device = %device.key, %name, %qtype, ?from, blocked, "query");
        let client = export::Client {
            addr: device.addr,
            device: &device.key,
            device_name: device.name.as_ref(),
        };
        match hit {
            Some(hit) => {
                if let Some(e) = self.log_hit(snap, device, name, qtype, hit) {
                    let (cat, rule) = (&e.category, e.rule.as_deref());
                    let q = u16::from(qtype);
                    self.export
                        .hit(client, name, q, id, from, cat, e.action, rule);
                    self.logger.hit(e);
                }
            }
            None => self.export.query(client, name, u16::from(qtype), id, from),
        }
    }

    /// Answer a common query (see [`crate::wire`]) into `out` when that needs neither
    /// the upstream nor hickory: a blocked name, or a cache hit whose CNAME chain matches
    /// no rule. Counted and logged exactly as [`Handler::resolve`] would; `false` leaves
    /// the query untouched (nothing counted) for the full path.
    pub fn fast(
        &self,
        snap: &Snapshot,
        q: &wire::Query<'_>,
        name: &str,
        src: IpAddr,
        out: &mut Vec<u8>,
    ) -> bool {
        let device = snap.clients.identify(src, None);
        let actions = snap.policy.actions(device.group.as_deref());
        let verdict = snap.filter.check(name, actions);
        let qtype = RecordType::from(q.qtype);
        if verdict.is_block() {
            let category = category(snap, &verdict);
            let filter = &snap.config.filter;
            wire::blocked(out, q, filter.block_response, filter.blocked_ttl, category);
            if out.len() > q.max_udp() {
                return false;
            }
            Stats::inc(&self.stats.queries);
            Stats::inc(&self.stats.blocked);
            self.metrics.blocked(category);
            let hit = Hit::of(verdict, name);
            let from = AnsweredFrom::Blocked;
            self.record(snap, &device, name, qtype, q.id(), Some(hit), from);
            return true;
        }
        let Some(cached) = self.cache.lookup(name, qtype, q.dnssec_bits()) else {
            return false;
        };
        let Some(encoded) = cached.wire() else {
            return false;
        };
        // A chain through a listed name is the full path's to block or log.
        if verdict.action != Some(Action::Allow)
            && cached
                .cname_keys()
                .iter()
                .any(|t| snap.filter.check(t, actions).action.is_some())
        {
            return false;
        }
        let server = &snap.config.server;
        if server.rebind_protection && rebinds(cached.answer(), name, &server.rebind_allow) {
            return false;
        }
        wire::cached(out, q, encoded, cached.elapsed());
        if out.len() > q.max_udp() {
            return false;
        }
        Stats::inc(&self.stats.queries);
        Stats::inc(&self.stats.cache_hits);
        let hit = (verdict.action == Some(Action::Log)).then(|| {
            Stats::inc(&self.stats.logged);
            Hit::of(verdict, name)
        });
        self.record(snap, &device, name, qtype, q.id(), hit, AnsweredFrom::Cache);
        true
    }

    /// The answer, and the rule match to log (a `block` or `log` verdict).
    async fn answer(
        &self,
        snap: &Snapshot,
        query: &LowerQuery,
        name: &str,
        actions: &[Action],
        bits: DnssecBits,
    ) -> (Reply, Option<Hit>, AnsweredFrom) {
        let owner = query.original().name();
        let qtype = query.query_type();
        let verdict = snap.filter.check(name, actions);
        if verdict.is_block() {
            Stats::inc(&self.stats.blocked);
            let reply = self.blocked(snap, &verdict, owner, qtype);
            return (reply, Some(Hit::of(verdict, name)), AnsweredFrom::Blocked);
        }
        let logged = (verdict.action == Some(Action::Log)).then(|| Hit::of(verdict.clone(), name));
        if qtype == RecordType::ANY {
            return (response::any_minimal(owner), logged, AnsweredFrom::Cache);
        }
        if let Some(reply) = response::not_forwarded(qtype) {
            return (reply, logged, AnsweredFrom::Cache);
        }

        let mut from = AnsweredFrom::Cache;
        let answer = match self.cache.get(name, qtype, bits) {
            Some(a) => {
                Stats::inc(&self.stats.cache_hits);
                a
            }
            None => {
                Stats::inc(&self.stats.cache_misses);
                let lower = Name::from(query.name().clone());
                let upstream = snap.upstreams.resolve(&lower, qtype, bits);
                let asked = std::time::Instant::now();
                let result = tokio::time::timeout(snap.deadline, upstream).await;
                self.metrics.observe_upstream(asked.elapsed());
                match result {
                    Ok(Ok(mut a)) => {
                        // The client sees from the first answer the TTLs the cache keeps.
                        self.cache.clamp_ttls(&mut a);
                        self.cache.insert(name, qtype, bits, &a);
                        from = AnsweredFrom::Upstream;
                        a
                    }
                    Ok(Err(e)) => {
                        Stats::inc(&self.stats.upstream_failures);
                        tracing::debug!(%name, error = %e, "no upstream answer");
                        let reply = Reply::error(ResponseCode::ServFail)
                            .with_ede(EDE_NO_REACHABLE_AUTHORITY, "no upstream answered");
                        return (reply, logged, AnsweredFrom::Error);
                    }
                    Err(_) => {
                        Stats::inc(&self.stats.upstream_failures);
                        tracing::debug!(%name, "upstream deadline passed");
                        let reply = Reply::error(ResponseCode::ServFail)
                            .with_ede(EDE_NO_REACHABLE_AUTHORITY, "no upstream answered in time");
                        return (reply, logged, AnsweredFrom::Error);
                    }
                }
            }
        };

        // CNAME uncloaking: an allowed name whose chain passes a blocked name is blocked.
        // A chain through a logged Meta name is logged when the name itself matched nothing.
        let mut chain_logged = None;
        if verdict.action != Some(Action::Allow) {
            for target in answer.cname_targets() {
                let t = name_key(target);
                let tv = snap.filter.check(&t, actions);
                if tv.is_block() {
                    Stats::inc(&self.stats.blocked);
                    Stats::inc(&self.stats.cname_blocked);
                    tracing::debug!(%name, cname = %t, "blocked by CNAME");
                    let reply = self.blocked(snap, &tv, owner, qtype);
                    let hit = Hit {
                        verdict: tv,
                        matched: t,
                        from_cname: true,
                    };
                    return (reply, Some(hit), AnsweredFrom::Blocked);
                }
                if chain_logged.is_none() && tv.action == Some(Action::Log) {
                    chain_logged = Some(Hit {
                        verdict: tv,
                        matched: t,
                        from_cname: true,
                    });
                }
            }
        }
        if snap.config.server.rebind_protection
            && rebinds(&answer, name, &snap.config.server.rebind_allow)
        {
            tracing::debug!(%name, "private address in a public answer (DNS rebinding)");
            let reply = Reply {
                rcode: ResponseCode::NXDomain,
                ..Default::default()
            }
            .with_ede(
                response::EDE_BLOCKED,
                "blocked by metaguard (DNS rebinding protection)",
            );
            return (reply, logged, AnsweredFrom::Blocked);
        }
        let hit = logged.or(if verdict.action.is_none() {
            chain_logged
        } else {
            None
        });
        if hit.is_some() {
            Stats::inc(&self.stats.logged);
        }
        (response::from_answer(answer, owner), hit, from)
    }

    /// Record the query in the full query log, when `[store] log_all_queries` is on.
    fn log_query(&self, device: &Identity, name: &str, qtype: RecordType, from: AnsweredFrom) {
        if !self.logger.logs_all_queries() {
            return;
        }
        self.logger.log_query(QueryEvent {
            ts: unix_now(),
            device: device_info(device),
            name: name.to_string(),
            qtype: u16::from(qtype),
            answered_from: from,
        });
    }

    /// The hit-log event of a rule match (`None` when nothing matched after all).
    fn log_hit(
        &self,
        snap: &Snapshot,
        device: &Identity,
        name: &str,
        qtype: RecordType,
        hit: Hit,
    ) -> Option<HitEvent> {
        let m = hit.verdict.matched.as_ref()?;
        let action = hit.verdict.action?;
        let event = HitEvent {
            ts: unix_now(),
            device: device_info(device),
            name: name.to_string(),
            qtype: u16::from(qtype),
            category: snap.filter.categories().name(m.category).to_string(),
            action,
            rule: hit.verdict.rule_text(&hit.matched),
            cname_origin: hit.from_cname.then_some(hit.matched),
        };
        Some(event)
    }

    fn blocked(
        &self,
        snap: &Snapshot,
        verdict: &Verdict,
        owner: &Name,
        qtype: RecordType,
    ) -> Reply {
        let category = category(snap, verdict);
        self.metrics.blocked(category);
        response::blocked(
            snap.config.filter.block_response,
            owner,
            qtype,
            snap.config.filter.blocked_ttl,
            category,
        )
    }
}

/// The name of the category whose rule gave `verdict` (for the EDE and the metrics).
fn category<'s>(snap: &'s Snapshot, verdict: &Verdict) -> &'s str {
    verdict
        .matched
        .as_ref()
        .map_or("?", |m| snap.filter.categories().name(m.category))
}

/// Whether `answer` for the public name `name` holds an address of the local network
/// (a DNS-rebinding attempt). Names under `allow` and single-label names are local.
fn rebinds(answer: &crate::cache::Answer, name: &str, allow: &[String]) -> bool {
    use hickory_proto::rr::RData;
    let local_name = !name.contains('.')
        || allow.iter().any(|d| {
            let d = d.trim_matches('.').to_ascii_lowercase();
            name.strip_suffix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
        });
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

/// A device as the hit log stores it.
fn device_info(device: &Identity) -> DeviceInfo {
    DeviceInfo {
        key: device.key.to_string(),
        mac: device.mac.map(|m| m.to_string()),
        addr: device.addr,
        name: device.name.as_deref().map(str::to_string),
        group: device.group.as_deref().map(str::to_string),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // An owned snapshot: a reload during the upstream wait does not disturb this query.
        let snap = self.state.load_full();
        let reply = self.resolve(&snap, request).await;
        response::send(request, &reply, response_handle).await
    }
}

#[cfg(test)]
pub(super) mod tests {
    /// Asking for this name panics inside the query task (unit tests only).
    pub(crate) const PANIC_NAME: &str = "panic.metaguard.test";
}
