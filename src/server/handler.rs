//! Our `RequestHandler`: one query's way through. [`super::decide`] says what to do;
//! this file only carries it out: [`Handler::inline`] encodes the blocked and cached
//! answers straight from the packet, [`Handler::resolve`] builds every other answer and
//! awaits the upstream between the decision and the check of its answer. Both count
//! and log the query the same way ([`Handler::record`]).

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{LowerQuery, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::Snapshot;
use super::clock::Now;
use super::decide::{self, Check, Decision, Hit, Local, Question};
use super::response::{self, EDE_NO_REACHABLE_AUTHORITY, EDE_NOT_SUPPORTED, Reply};
use super::wire;
use crate::cache::{Answer, Cache, DnssecBits};
use crate::clients::Device;
use crate::export::{self, Export};
use crate::filter::{Verdict, name_key};
use crate::metrics::Metrics;
use crate::policy::Action;
use crate::stats::Stats;
use crate::store::{AnsweredFrom, HitEvent, Logger, QueryEvent};
use crate::upstream::UpstreamError;

/// The query handler. Everything it reads per query is in the current [`Snapshot`].
pub(crate) struct Handler {
    pub(super) state: Arc<ArcSwap<Snapshot>>,
    pub(super) cache: Cache,
    pub(super) stats: Arc<Stats>,
    pub(super) logger: Logger,
    pub(super) metrics: Arc<Metrics>,
    pub(super) export: Export,
}

impl Handler {
    /// Answer one parsed query, and log it.
    pub(crate) async fn resolve(&self, snap: &Snapshot, req: &Request) -> Reply {
        Stats::inc(&self.stats.queries);
        // The message itself first: the inline path's parser takes only plain queries.
        if req.metadata.op_code != OpCode::Query {
            return Reply::error(ResponseCode::NotImp);
        }
        if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reply::error(ResponseCode::BADVERS);
        }
        let [query] = req.queries.queries() else {
            return Reply::error(ResponseCode::FormErr);
        };
        let name = name_key(query.name());
        #[cfg(test)]
        if name == tests::PANIC_NAME {
            panic!("test: a faulty query task");
        }
        let q = Question {
            name: &name,
            qtype: query.query_type(),
            class: query.query_class(),
            bits: DnssecBits {
                dnssec_ok: req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
                checking_disabled: req.metadata.checking_disabled,
            },
            asked: Now::read(),
        };
        let device = snap.clients.identify(req.src().ip(), req.edns.as_ref());
        let owner = query.original().name();
        let (reply, hit, from) = match decide::decide(snap, &self.cache, &q, &device) {
            Decision::Local {
                answer: Local::OtherClass,
                ..
            } => {
                return Reply::error(ResponseCode::Refused)
                    .with_ede(EDE_NOT_SUPPORTED, "only class IN is served");
            }
            Decision::Local {
                answer: Local::Any,
                hit,
            } => (response::any_minimal(owner), hit, AnsweredFrom::Cache),
            Decision::Local {
                answer: Local::NotForwarded,
                hit,
            } => {
                let reply = response::not_forwarded(q.qtype).unwrap_or_default();
                (reply, hit, AnsweredFrom::Cache)
            }
            Decision::Local {
                answer: Local::Bypass(answer),
                hit,
            } => {
                if hit.as_ref().is_some_and(|h| !h.verdict.is_block()) {
                    Stats::inc(&self.stats.logged);
                }
                let reply = response::bypass(answer, owner, snap.config.filter.blocked_ttl);
                (reply, hit, AnsweredFrom::Cache)
            }
            Decision::Blocked(hit) => {
                let reply = self.blocked(snap, &hit.verdict, owner, q.qtype);
                (reply, Some(hit), AnsweredFrom::Blocked)
            }
            Decision::Cached { entry, check } => {
                Stats::inc(&self.stats.cache_hits);
                self.finish(snap, &q, owner, entry.served(), check, AnsweredFrom::Cache)
            }
            Decision::Forward { verdict } => {
                Stats::inc(&self.stats.cache_misses);
                self.forward(snap, &q, query, &device, verdict).await
            }
        };
        self.record(snap, &device, &q, req.metadata.id, hit, from);
        reply
    }

    /// Ask the upstream within the deadline, keep its answer, and check it.
    async fn forward(
        &self,
        snap: &Snapshot,
        q: &Question<'_>,
        query: &LowerQuery,
        device: &Device,
        verdict: Verdict,
    ) -> (Reply, Option<Hit>, AnsweredFrom) {
        let owner = query.original().name();
        let logged = (verdict.action == Some(Action::Log)).then(|| Hit {
            verdict: verdict.clone(),
            cname: None,
        });
        let lower = Name::from(query.name().clone());
        let asked = tokio::time::Instant::now();
        let result = snap
            .upstreams
            .resolve(&lower, q.qtype, q.bits, asked + snap.deadline)
            .await;
        self.metrics.observe_upstream(asked.elapsed());
        let text = match result {
            Ok(mut answer) => {
                // The client sees from the first answer the TTLs the cache keeps.
                self.cache.clamp_ttls(&mut answer);
                self.cache.insert(q.name, q.qtype, q.bits, &answer);
                let check = decide::check_answer(snap, q, device, verdict, &answer, None);
                return self.finish(snap, q, owner, answer, check, AnsweredFrom::Upstream);
            }
            Err(UpstreamError::Deadline) => {
                tracing::debug!(name = %q.name, "upstream deadline passed");
                "no upstream answered in time"
            }
            Err(e) => {
                tracing::debug!(name = %q.name, error = %e, "no upstream answer");
                "no upstream answered"
            }
        };
        Stats::inc(&self.stats.upstream_failures);
        let reply = Reply::error(ResponseCode::ServFail).with_ede(EDE_NO_REACHABLE_AUTHORITY, text);
        (reply, logged, AnsweredFrom::Error)
    }

    /// The reply for a checked answer (cached or fresh, `from` says which).
    fn finish(
        &self,
        snap: &Snapshot,
        q: &Question<'_>,
        owner: &Name,
        answer: Answer,
        check: Check,
        from: AnsweredFrom,
    ) -> (Reply, Option<Hit>, AnsweredFrom) {
        match check {
            Check::Pass(hit) => {
                if hit.is_some() {
                    Stats::inc(&self.stats.logged);
                }
                (response::from_answer(answer, owner), hit, from)
            }
            Check::Blocked(hit) => {
                Stats::inc(&self.stats.cname_blocked);
                tracing::debug!(name = %q.name, cname = %hit.matched(q.name), "blocked by CNAME");
                let reply = self.blocked(snap, &hit.verdict, owner, q.qtype);
                (reply, Some(hit), AnsweredFrom::Blocked)
            }
            Check::Rebinding(hit) => {
                tracing::debug!(name = %q.name, "private address in a public answer (DNS rebinding)");
                let reply = Reply {
                    rcode: ResponseCode::NXDomain,
                    ..Default::default()
                }
                .with_ede(
                    response::EDE_BLOCKED,
                    "blocked by metaguard (DNS rebinding protection)",
                );
                (reply, hit, AnsweredFrom::Blocked)
            }
        }
    }

    /// Count the query in the hourly totals, log its rule match and, when asked for,
    /// the query itself; hand it to the dnstap export.
    fn record(
        &self,
        snap: &Snapshot,
        device: &Device,
        q: &Question<'_>,
        id: u16,
        hit: Option<Hit>,
        from: AnsweredFrom,
    ) {
        let (name, qtype) = (q.name, q.qtype);
        let blocked = hit.as_ref().is_some_and(|h| h.verdict.is_block());
        self.logger
            .query_at(q.asked.unix, &device.key, hit.is_some(), blocked);
        self.log_query(device, q, from);
        tracing::debug!(client = %device.addr, device = %device.key, %name, %qtype, ?from, blocked, "query");
        let client = export::Client {
            addr: device.addr,
            device: &device.key,
            device_name: device.name.as_ref(),
        };
        match hit {
            Some(hit) => {
                if let Some(e) = self.log_hit(snap, device, q, hit) {
                    let (cat, rule) = (&e.category, e.rule.as_deref());
                    let q = u16::from(qtype);
                    self.export
                        .hit(client, name, q, id, from, cat, e.action, rule);
                    self.logger.send_hit(e);
                }
            }
            None => self.export.query(client, name, u16::from(qtype), id, from),
        }
    }

    /// Answer a common query (see [`super::wire`]) into `out` when the decision needs
    /// neither the upstream nor hickory: blocked, or a cache hit that passes its check.
    /// Counted and logged exactly as [`Handler::resolve`] would; `false` leaves the
    /// query untouched (nothing counted) for the full path, also when the answer would
    /// be longer than `max` bytes (the client's UDP payload size; 65,535 over TCP).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn inline(
        &self,
        snap: &Snapshot,
        wq: &wire::Query<'_>,
        name: &str,
        src: IpAddr,
        now: Now,
        out: &mut Vec<u8>,
        max: usize,
    ) -> bool {
        let device = snap.clients.identify(src, None);
        let q = Question {
            name,
            qtype: RecordType::from(wq.qtype),
            class: hickory_proto::rr::DNSClass::IN,
            bits: wq.dnssec_bits(),
            asked: now,
        };
        let (hit, from) = match decide::decide(snap, &self.cache, &q, &device) {
            Decision::Blocked(hit) => {
                let category = category(snap, &hit.verdict);
                let filter = &snap.config.filter;
                wire::blocked(out, wq, filter.block_response, filter.blocked_ttl, category);
                if out.len() > max {
                    return false;
                }
                Stats::inc(&self.stats.blocked);
                self.metrics.blocked(category);
                (Some(hit), AnsweredFrom::Blocked)
            }
            Decision::Cached {
                entry,
                check: Check::Pass(hit),
            } => {
                let Some(encoded) = entry.wire() else {
                    return false;
                };
                wire::cached(out, wq, encoded, entry.elapsed());
                if out.len() > max {
                    return false;
                }
                Stats::inc(&self.stats.cache_hits);
                if hit.is_some() {
                    Stats::inc(&self.stats.logged);
                }
                (hit, AnsweredFrom::Cache)
            }
            // A blocked chain, rebinding, the upstream: the full path's.
            _ => return false,
        };
        Stats::inc(&self.stats.queries);
        self.record(snap, &device, &q, wq.id(), hit, from);
        true
    }

    /// Record the query in the full query log, when `[store] log_all_queries` is on.
    fn log_query(&self, device: &Device, q: &Question<'_>, from: AnsweredFrom) {
        if !self.logger.logs_all_queries() {
            return;
        }
        self.logger.log_query(QueryEvent {
            ts: q.asked.unix,
            device: device.clone(),
            name: q.name.to_string(),
            qtype: u16::from(q.qtype),
            answered_from: from,
        });
    }

    /// The hit-log event of a rule match (`None` when nothing matched after all).
    fn log_hit(
        &self,
        snap: &Snapshot,
        device: &Device,
        q: &Question<'_>,
        hit: Hit,
    ) -> Option<Box<HitEvent>> {
        let (name, qtype) = (q.name, q.qtype);
        let m = hit.verdict.matched.as_ref()?;
        let action = hit.verdict.action?;
        // A spare event, its strings refilled in place: no allocation once they fit.
        let mut e = self.logger.blank_hit();
        e.ts = q.asked.unix;
        e.device.clone_from(device);
        e.name.clear();
        e.name.push_str(name);
        e.qtype = u16::from(qtype);
        e.category.clear();
        e.category
            .push_str(snap.filter.categories().name(m.category));
        e.action = action;
        hit.verdict.write_rule_text(hit.matched(name), &mut e.rule);
        e.cname_origin = hit.cname;
        Some(e)
    }

    fn blocked(
        &self,
        snap: &Snapshot,
        verdict: &Verdict,
        owner: &Name,
        qtype: RecordType,
    ) -> Reply {
        Stats::inc(&self.stats.blocked);
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
