//! Our `RequestHandler`: one query's way through, in a fixed order:
//! protocol checks -> filter verdict -> blocked answer, or cache -> upstream (deadline)
//! -> CNAME chain checked by the same filter -> answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, HeaderCounts, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::Snapshot;
use super::response::{self, EDE_NO_REACHABLE_AUTHORITY, EDE_NOT_SUPPORTED, Reply};
use crate::cache::Cache;
use crate::filter::normalize_query;
use crate::policy::Action;
use crate::stats::Stats;

/// The query handler. Everything it reads per query is in the current [`Snapshot`].
pub struct Handler {
    pub(super) state: Arc<ArcSwap<Snapshot>>,
    pub(super) cache: Cache,
    pub(super) stats: Arc<Stats>,
}

impl Handler {
    /// Decide the answer for one parsed query.
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
        let owner = query.original().name();
        let qtype = query.query_type();
        let name = normalize_query(&query.name().to_string());
        let actions = snap.policy.actions(None);

        let verdict = snap.filter.check(&name, actions);
        if verdict.is_block() {
            Stats::inc(&self.stats.blocked);
            return self.blocked(snap, &verdict, owner, qtype);
        }
        if qtype == RecordType::ANY {
            return response::any_minimal(owner);
        }

        let answer = match self.cache.get(&name, qtype) {
            Some(a) => {
                Stats::inc(&self.stats.cache_hits);
                a
            }
            None => {
                Stats::inc(&self.stats.cache_misses);
                let lower = Name::from(query.name().clone());
                let upstream = snap.upstreams.resolve(&lower, qtype);
                match tokio::time::timeout(snap.deadline, upstream).await {
                    Ok(Ok(a)) => {
                        self.cache.insert(&name, qtype, &a);
                        a
                    }
                    Ok(Err(e)) => {
                        Stats::inc(&self.stats.upstream_failures);
                        tracing::debug!(%name, error = %e, "no upstream answer");
                        return Reply::error(ResponseCode::ServFail)
                            .with_ede(EDE_NO_REACHABLE_AUTHORITY, "no upstream answered");
                    }
                    Err(_) => {
                        Stats::inc(&self.stats.upstream_failures);
                        tracing::debug!(%name, "upstream deadline passed");
                        return Reply::error(ResponseCode::ServFail)
                            .with_ede(EDE_NO_REACHABLE_AUTHORITY, "no upstream answered in time");
                    }
                }
            }
        };

        // CNAME uncloaking: an allowed name whose chain passes a blocked name is blocked.
        if verdict.action != Some(Action::Allow) {
            for target in answer.cname_targets() {
                let t = normalize_query(&target.to_ascii());
                let tv = snap.filter.check(&t, actions);
                if tv.is_block() {
                    Stats::inc(&self.stats.blocked);
                    Stats::inc(&self.stats.cname_blocked);
                    tracing::debug!(%name, cname = %t, "blocked by CNAME");
                    return self.blocked(snap, &tv, owner, qtype);
                }
            }
        }
        if verdict.action == Some(Action::Log) {
            Stats::inc(&self.stats.logged);
        }
        response::from_answer(answer, owner)
    }

    fn blocked(
        &self,
        snap: &Snapshot,
        verdict: &crate::filter::Verdict,
        owner: &Name,
        qtype: RecordType,
    ) -> Reply {
        let category = verdict
            .matched
            .as_ref()
            .map_or("?", |m| snap.filter.categories().name(m.category));
        response::blocked(
            snap.config.filter.block_response,
            owner,
            qtype,
            snap.config.filter.blocked_ttl,
            category,
        )
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // An owned snapshot: a reload during the upstream wait does not disturb this query.
        let snap = self.state.load_full();
        let reply = self.resolve(&snap, request).await;
        let meta = response::metadata(&request.metadata, reply.rcode);
        let edns = request.edns.as_ref().map(|_| reply.edns());
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let resp = builder.build(
            meta,
            reply.answers.iter(),
            reply.authorities.iter(),
            [].iter(),
            [].iter(),
        );
        match response_handle.send_response(resp).await {
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
}
