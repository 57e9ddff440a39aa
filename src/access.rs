//! Who may ask: the allowed client networks (no open resolver) and a per-client
//! token bucket so one flooding device cannot starve the others.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::netset::NetSet;

/// `[server.rate_limit]`: queries per second per client address, with a burst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained queries per second per client; 0 turns the limit off.
    pub qps: u32,
    /// Queries a client may send at once; at least `qps` (the config check refuses less).
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub burst: NonZeroU32,
    /// Most client addresses tracked; past it idle ones are forgotten.
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub max_clients: NonZeroUsize,
    /// Never limited. Loopback by default: behind a router's dnsmasq every device of
    /// the household arrives from 127.0.0.1, and limiting it would limit them all.
    pub exempt: Vec<IpNet>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // A busy phone opening an app sends a few dozen lookups at once; a TV never
        // sustains anything close to 100 qps.
        RateLimitConfig {
            qps: 100,
            burst: const { NonZeroU32::new(300).unwrap() },
            max_clients: const { NonZeroUsize::new(10_000).unwrap() },
            exempt: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

/// The networks answered by default: loopback, RFC 1918, CGNAT, link-local, ULA.
pub fn default_allow_clients() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// The networks of this host's own interfaces (what dnsmasq's `--local-service`
/// admits), minus loopback and what `covered` already holds; read from the kernel
/// (getifaddrs) each time it is called: at start and on each reload.
pub(crate) fn interface_subnets(covered: &[IpNet]) -> Vec<IpNet> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => local_subnets(
            ifs.iter().map(|i| match &i.addr {
                if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
                if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
            }),
            covered,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the interface addresses; only the default networks are answered");
            Vec::new()
        }
    }
}

/// The subnets of `addrs` (address and prefix length) not inside `covered`. A prefix
/// shorter than /8 (IPv4) or /32 (IPv6) is skipped: it would make an open resolver.
fn local_subnets(addrs: impl Iterator<Item = (IpAddr, u8)>, covered: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for (ip, len) in addrs {
        let min = if ip.is_ipv4() { 8 } else { 32 };
        if ip.is_loopback() || len < min {
            continue;
        }
        let Ok(net) = IpNet::new(ip, len).map(|n| n.trunc()) else {
            continue;
        };
        if !covered.iter().chain(&out).any(|c| c.contains(&net)) {
            out.push(net);
        }
    }
    out
}

/// What the listener does with a packet from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Answer it.
    Yes,
    /// Not an allowed network: REFUSED.
    Refused,
    /// Over its rate: dropped without an answer (no amplification).
    RateLimited,
}

type Limiter = RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;

/// The allow list plus the rate limiter.
pub struct Access {
    allow: NetSet,
    exempt: NetSet,
    /// Swapped for an empty one when a flood of distinct sources outgrows `max_clients`.
    limiter: Option<arc_swap::ArcSwap<Limiter>>,
    quota: Option<Quota>,
    max_clients: usize,
    checks: AtomicU64,
}

impl Access {
    /// Access for the `allow` networks with the `rate` limit per client.
    pub fn new(allow: &[IpNet], rate: &RateLimitConfig) -> Access {
        let quota =
            NonZeroU32::new(rate.qps).map(|qps| Quota::per_second(qps).allow_burst(rate.burst));
        let limiter = quota.map(|q| arc_swap::ArcSwap::from_pointee(RateLimiter::keyed(q)));
        Access {
            allow: NetSet::new(allow),
            exempt: NetSet::new(&rate.exempt),
            limiter,
            quota,
            max_clients: rate.max_clients.get(),
            checks: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip)
    }

    /// Decide for one packet from `ip`. Never blocks.
    pub fn admit(&self, ip: IpAddr) -> Admit {
        let ip = ip.to_canonical();
        if !self.is_allowed(ip) {
            return Admit::Refused;
        }
        let (Some(swap), Some(quota)) = (&self.limiter, self.quota) else {
            return Admit::Yes;
        };
        if self.exempt.contains(ip) {
            return Admit::Yes;
        }
        let limiter = swap.load();
        // Keep the table bounded under a flood of distinct sources: forget the idle
        // ones, and if every one is recent (a spoofed flood), forget them all. The table
        // never holds more than `max_clients` + 1024 addresses.
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && limiter.len() > self.max_clients
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            if limiter.len() > self.max_clients {
                tracing::debug!(
                    tracked = limiter.len(),
                    "rate limiter table full of recent sources; starting afresh"
                );
                swap.store(std::sync::Arc::new(RateLimiter::keyed(quota)));
            }
        }
        match limiter.check_key(&ip) {
            Ok(()) => Admit::Yes,
            Err(_) => Admit::RateLimited,
        }
    }

    /// Client addresses the limiter currently tracks.
    pub fn tracked_clients(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.load().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_networks() {
        let a = Access::new(
            &default_allow_clients(),
            &RateLimitConfig {
                qps: 0,
                ..Default::default()
            },
        );
        for ok in [
            "127.0.0.1",
            "192.168.1.20",
            "10.1.2.3",
            "172.31.0.1",
            "100.64.1.1",
            "169.254.3.3",
            "::1",
            "fd00::5",
            "fe80::1",
            "::ffff:192.168.1.9",
        ] {
            assert_eq!(a.admit(ok.parse().unwrap()), Admit::Yes, "{ok}");
        }
        for no in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert_eq!(a.admit(no.parse().unwrap()), Admit::Refused, "{no}");
        }
    }

    #[test]
    fn interface_subnets_outside_the_defaults_are_added_once() {
        let addrs = [
            ("127.0.0.1", 8),
            ("192.168.1.2", 24),
            ("2001:db8:1:2::5", 64),
            ("2001:db8:1:2::6", 64),
            ("203.0.113.9", 24),
            ("198.51.100.1", 0),
            ("2001:db8::1", 16),
            ("::1", 128),
        ]
        .map(|(a, l)| (a.parse::<IpAddr>().unwrap(), l));
        let got = local_subnets(addrs.into_iter(), &default_allow_clients());
        let want: Vec<IpNet> = ["2001:db8:1:2::/64", "203.0.113.0/24"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn token_bucket_per_client() {
        let a = Access::new(
            &default_allow_clients(),
            &RateLimitConfig {
                qps: 1,
                burst: NonZeroU32::new(5).unwrap(),
                max_clients: NonZeroUsize::new(10).unwrap(),
                exempt: vec![],
            },
        );
        let flood: IpAddr = "192.168.1.66".parse().unwrap();
        let quiet: IpAddr = "192.168.1.7".parse().unwrap();
        let admitted = (0..50).filter(|_| a.admit(flood) == Admit::Yes).count();
        assert!((5..=6).contains(&admitted), "admitted {admitted}");
        assert_eq!(a.admit(quiet), Admit::Yes);
    }

    #[test]
    fn loopback_is_exempt_by_default() {
        let a = Access::new(
            &default_allow_clients(),
            &RateLimitConfig {
                qps: 1,
                burst: NonZeroU32::MIN,
                ..Default::default()
            },
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| a.admit(lo) == Admit::Yes));
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        assert!((0..100).any(|_| a.admit(lan) == Admit::RateLimited));
    }
}
