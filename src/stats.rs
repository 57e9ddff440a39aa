//! Counters the server keeps while it runs (lock-free; read by `status` and tests).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Live counters, one atomic each.
        #[derive(Debug, Default)]
        pub(crate) struct Stats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        /// A reading of every counter at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
        pub struct Reading {
            $(#[doc = $doc] pub $name: u64,)*
        }

        impl Stats {
            /// Every counter's value now.
            pub(crate) fn reading(&self) -> Reading {
                Reading { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    queries: "Queries answered or dropped after parsing.",
    blocked: "Answered with the blocked response.",
    logged: "Meta names answered normally and logged.",
    cname_blocked: "Blocked because the answer's CNAME chain passed a blocked name.",
    cache_hits: "Answered from the cache.",
    cache_misses: "Sent upstream.",
    upstream_failures: "SERVFAIL because no upstream answered in time.",
    refused: "REFUSED: client outside the allowed networks.",
    rate_limited: "Dropped: client over its rate.",
    udp_dropped: "Dropped: too many UDP queries in flight, in total or from its client.",
    tcp_rejected: "TCP connections closed to make room at a cap (the longest idle goes).",
    tcp_unread: "TCP connections closed because their answers were not read in time.",
    malformed: "Packets that were not a DNS query (dropped or FORMERR).",
    events_dropped: "Hit events lost because the hit log queue was full (the writer behind, or the disk failing longer than the queue lasts).",
    dnstap_frames: "dnstap frames written to the collector.",
    dnstap_dropped: "dnstap messages dropped: queue full or no collector connected.",
}

impl Stats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
