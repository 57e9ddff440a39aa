//! Per-client shares of the UDP in-flight slots: a fixed table of atomic counters,
//! one per hash bucket of the client address, so one address's flood cannot take the
//! slots the others need. No lock and no allocation per query.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Buckets in the table. Two clients may share one (a hash collision); with 1024 the
/// chance is small for a household, and sharing only halves their share.
const BUCKETS: usize = 1024;

/// Queries in flight per bucket of client addresses.
pub(crate) struct PerClient {
    cap: u32,
    counts: Box<[AtomicU32]>,
}

/// One query's place in its client's share; given back on drop.
pub(crate) struct Share {
    table: Arc<PerClient>,
    bucket: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.table.counts[self.bucket].fetch_sub(1, Ordering::Relaxed);
    }
}

impl PerClient {
    /// A table where one client holds at most `cap` slots.
    pub(crate) fn new(cap: NonZeroUsize) -> Arc<PerClient> {
        Arc::new(PerClient {
            cap: u32::try_from(cap.get()).unwrap_or(u32::MAX),
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    /// One client's share of `total` slots: an eighth, at least 16 (a dnsmasq in
    /// front forwards at most 150 at once by default, which an eighth of the default
    /// 2048 covers), never more than the total.
    pub(crate) fn share_of(total: NonZeroUsize) -> NonZeroUsize {
        const FLOOR: NonZeroUsize = NonZeroUsize::new(16).unwrap();
        NonZeroUsize::new(total.get() / 8)
            .map_or(FLOOR, |eighth| eighth.max(FLOOR))
            .min(total)
    }

    /// A slot for a query from `ip`, `None` when that client holds its whole share.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<Share> {
        let bucket = bucket(ip);
        let counter = &self.counts[bucket];
        if counter.fetch_add(1, Ordering::Relaxed) >= self.cap {
            counter.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Share {
            table: self.clone(),
            bucket,
        })
    }
}

/// The bucket of an address (IPv4-mapped IPv6 as IPv4): a multiplicative hash, keyed
/// by nothing an outsider controls beyond the address itself.
fn bucket(ip: IpAddr) -> usize {
    let x: u128 = match ip.to_canonical() {
        IpAddr::V4(v4) => u32::from(v4).into(),
        // An IPv6 client controls its interface identifier: share by its /64.
        IpAddr::V6(v6) => u128::from(v6) >> 64,
    };
    let folded = (x as u64) ^ ((x >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_holds_at_most_its_share_and_gets_it_back() {
        let t = PerClient::new(NonZeroUsize::new(3).unwrap());
        let a: IpAddr = "192.168.1.10".parse().unwrap();
        let b: IpAddr = "192.168.1.11".parse().unwrap();
        assert_ne!(bucket(a), bucket(b));
        let held: Vec<Share> = (0..3).map(|_| t.try_take(a).unwrap()).collect();
        assert!(t.try_take(a).is_none());
        assert!(t.try_take(b).is_some(), "another client is not affected");
        drop(held);
        assert!(t.try_take(a).is_some());
    }

    #[test]
    fn an_ipv6_client_shares_by_its_64() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(bucket(x), bucket(y));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(bucket(mapped), bucket("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn shares() {
        let share = |n| PerClient::share_of(NonZeroUsize::new(n).unwrap()).get();
        assert_eq!(share(2048), 256);
        assert_eq!(share(64), 16);
        assert_eq!(share(4), 4);
    }
}
