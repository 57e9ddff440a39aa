//! What the query path hands the hit log: hit and query events, filed under a
//! [`DeviceKey`], the one place that spells a device key's format.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::clients::{Device, Mac};
use crate::policy::Action;

/// A device's key in the hit log: `mac:aa:bb:cc:dd:ee:ff` when its MAC is known, else
/// `ip:192.168.1.5`. Cheap to clone (the text is shared).
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DeviceKey(Arc<str>);

impl Clone for DeviceKey {
    fn clone(&self) -> Self {
        DeviceKey(self.0.clone())
    }

    /// Left alone when both share the text already (see `Device::clone_from`).
    fn clone_from(&mut self, source: &Self) {
        crate::clients::share(&mut self.0, &source.0);
    }
}

const MAC_PREFIX: &str = "mac:";
const ADDR_PREFIX: &str = "ip:";

impl DeviceKey {
    /// What an address key shows when the address is withheld (dnstap's
    /// `client_address = "drop"`).
    pub(crate) const HIDDEN_ADDR: &'static str = "ip:-";

    /// The key of a device known by its MAC.
    pub(crate) fn from_mac(mac: Mac) -> Self {
        DeviceKey(format!("{MAC_PREFIX}{mac}").into())
    }

    /// The key of a device known only by its address.
    pub(crate) fn from_addr(addr: IpAddr) -> Self {
        DeviceKey(format!("{ADDR_PREFIX}{addr}").into())
    }

    /// A key as printed; `None` unless it is a MAC key or an address key.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if let Some(mac) = text.strip_prefix(MAC_PREFIX) {
            return mac.parse().ok().map(Self::from_mac);
        }
        let addr = text.strip_prefix(ADDR_PREFIX)?;
        addr.parse().ok().map(Self::from_addr)
    }

    /// The key as text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The MAC of a MAC key (`aa:bb:cc:dd:ee:ff`), as the `devices.mac` column holds it.
    pub(crate) fn mac(&self) -> Option<&str> {
        self.0.strip_prefix(MAC_PREFIX)
    }

    /// The address of an address key, as printed.
    pub(crate) fn addr(&self) -> Option<&str> {
        self.0.strip_prefix(ADDR_PREFIX)
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for DeviceKey {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for DeviceKey {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A hit as the log keeps it: one query that a rule matched, queued for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitEvent {
    /// Unix seconds.
    pub ts: i64,
    /// Who asked. Its name only fills an empty name in the log, so a rename by the user
    /// (`metaguard devices rename`) sticks.
    pub device: Device,
    /// The query name, lowercased, without the trailing dot.
    pub name: String,
    /// The query type (RFC 1035 TYPE value).
    pub qtype: u16,
    /// Category of the rule that matched.
    pub category: String,
    /// What was done: blocked or only logged.
    pub action: Action,
    /// The rule that matched, as written in its list.
    pub rule: Option<String>,
    /// The CNAME target that matched, when the match came from the answer's chain.
    pub cname_origin: Option<String>,
}

impl HitEvent {
    /// An event to fill in ([`super::Logger::blank_hit`] hands these out).
    pub(super) fn blank() -> HitEvent {
        HitEvent {
            ts: 0,
            device: Device::from_addr(std::net::Ipv4Addr::UNSPECIFIED.into()),
            name: String::new(),
            qtype: 0,
            category: String::new(),
            action: Action::Log,
            rule: None,
            cname_origin: None,
        }
    }
}

/// Where an answer came from, for the optional full query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnsweredFrom {
    Upstream = 0,
    Cache = 1,
    Blocked = 2,
    Error = 3,
}

/// One query, for `log_all_queries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryEvent {
    pub(crate) ts: i64,
    pub(crate) device: Device,
    pub(crate) name: String,
    pub(crate) qtype: u16,
    pub(crate) answered_from: AnsweredFrom,
}

/// Queries, Meta queries and blocked queries of one device in one hour.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) queries: i64,
    pub(super) meta: i64,
    pub(super) blocked: i64,
}

impl Totals {
    pub(super) fn add(&mut self, o: Totals) {
        self.queries += o.queries;
        self.meta += o.meta;
        self.blocked += o.blocked;
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceKey;

    #[test]
    fn a_key_prints_parses_and_splits_in_one_format() {
        let mac = DeviceKey::from_mac("AA:bb:CC:dd:EE:ff".parse().unwrap());
        assert_eq!(mac, "mac:aa:bb:cc:dd:ee:ff");
        assert_eq!(mac.mac(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(mac.addr(), None);
        let ip = DeviceKey::from_addr("192.168.1.5".parse().unwrap());
        assert_eq!(ip.to_string(), "ip:192.168.1.5");
        assert_eq!((ip.mac(), ip.addr()), (None, Some("192.168.1.5")));
        for key in [&mac, &ip] {
            assert_eq!(DeviceKey::parse(key.as_str()).as_ref(), Some(key));
        }
        assert_eq!(
            DeviceKey::parse("ip:fd00::7").map(|k| k.to_string()),
            Some("ip:fd00::7".to_string())
        );
        for bad in [
            "",
            "mac:",
            "ip:-",
            "mac:aa:bb",
            "ip:10.0.0",
            "name:tv",
            "10.0.0.1",
        ] {
            assert_eq!(DeviceKey::parse(bad), None, "{bad}");
        }
    }
}
