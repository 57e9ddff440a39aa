//! `[bypass]`: the names that tell a device to resolve elsewhere, answered here so it
//! keeps asking metaguard (the Firefox canary, iCloud Private Relay, DDR), and the
//! `bypass` list of public encrypted resolvers whose lookups are logged as evidence.

use serde::{Deserialize, Serialize};

/// Category of `blocklists/bypass.txt`: lookups that may mean a device resolves around
/// metaguard. Not a Meta category.
pub const BYPASS: &str = "bypass";

/// Names answered NXDOMAIN by `canaries`: the Firefox DoH canary and the iCloud
/// Private Relay names (as Pi-hole answers them by default). Exact names only.
const CANARIES: &[&str] = &[
    "use-application-dns.net",
    "mask.icloud.com",
    "mask-h2.icloud.com",
];

/// The DDR zone (RFC 9462): `_dns.resolver.arpa` and every name under `resolver.arpa`.
const DDR_ZONE: &str = "resolver.arpa";

/// `[bypass]`: each default can be turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BypassConfig {
    /// NXDOMAIN for the Firefox canary and the iCloud Private Relay names.
    pub canaries: bool,
    /// NODATA for DDR (`_dns.resolver.arpa` and the names under `resolver.arpa`).
    pub ddr: bool,
    /// Load `bypass.txt`: log lookups of public DoH/DoT resolver hosts (and of the
    /// names above) as category `bypass`.
    pub log_resolvers: bool,
}

impl Default for BypassConfig {
    fn default() -> Self {
        BypassConfig {
            canaries: true,
            ddr: true,
            log_resolvers: true,
        }
    }
}

/// The answer `[bypass]` gives to a name instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassAnswer {
    /// NXDOMAIN: the canary says "this network filters; keep using its resolver".
    NxDomain,
    /// NOERROR with no answer and an SOA: no encrypted resolver is designated.
    NoData,
}

impl BypassConfig {
    /// The local answer for `name` (normalized: lowercase, no trailing dot), if any.
    pub fn answer(&self, name: &str) -> Option<BypassAnswer> {
        if self.canaries && CANARIES.contains(&name) {
            return Some(BypassAnswer::NxDomain);
        }
        (self.ddr && crate::config::in_zone(name, DDR_ZONE)).then_some(BypassAnswer::NoData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_answer_canaries_and_ddr_and_each_can_be_turned_off() {
        let on = BypassConfig::default();
        for n in CANARIES {
            assert_eq!(on.answer(n), Some(BypassAnswer::NxDomain), "{n}");
        }
        for n in [
            "resolver.arpa",
            "_dns.resolver.arpa",
            "x._dns.resolver.arpa",
        ] {
            assert_eq!(on.answer(n), Some(BypassAnswer::NoData), "{n}");
        }
        for n in [
            "x.use-application-dns.net",
            "icloud.com",
            "xresolver.arpa",
            "dns.google",
            "arpa",
        ] {
            assert_eq!(on.answer(n), None, "{n}");
        }
        let off = BypassConfig {
            canaries: false,
            ddr: false,
            log_resolvers: true,
        };
        assert_eq!(off.answer("use-application-dns.net"), None);
        assert_eq!(off.answer("mask.icloud.com"), None);
        assert_eq!(off.answer("_dns.resolver.arpa"), None);
    }

    #[test]
    fn a_typo_is_refused_at_its_place_and_off_parses() {
        let path = std::path::Path::new("m.toml");
        let err = crate::config::Config::parse(
            "[bypass]
canaries = false
 ddr_ = false
",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("m.toml:3:2: "), "{err}");
        assert!(err.contains("ddr_"), "{err}");
        let c = crate::config::Config::parse(
            "[bypass]
log_resolvers = false
",
            path,
        )
        .unwrap();
        assert!(!c.bypass.log_resolvers && c.bypass.canaries && c.bypass.ddr);
    }
}
