//! Domain names in the config, checked and lowercased once at load: the code that
//! compares them with query names never normalizes again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::filter::parse::normalize_domain;

/// A domain name: lowercase ASCII (IDNA for others), no dot at either end. As
/// `[server] rebind_allow` entries: the name and its subdomains.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DomainName(String);

impl DomainName {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the normalized query name `name` is this domain or a name under it.
    pub(crate) fn covers(&self, name: &str) -> bool {
        in_zone(name, &self.0)
    }
}

/// Whether the normalized name `name` is `zone` or a name under it (`a.lan` is under
/// `lan`; `alan` is not).
pub(crate) fn in_zone(name: &str, zone: &str) -> bool {
    name.strip_suffix(zone)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

impl FromStr for DomainName {
    type Err = NotADomain;

    /// Dots around the name are ignored (`.lan.` is `lan`).
    fn from_str(s: &str) -> Result<Self, NotADomain> {
        normalize_domain(s.trim_matches('.'))
            .map(DomainName)
            .ok_or_else(|| NotADomain(s.to_string()))
    }
}

/// A `[filter] allow` or `block` entry: a [`DomainName`], `*.` in front allowed (the
/// name and its subdomains either way, as in a domains list).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListedName {
    wildcard: bool,
    name: DomainName,
}

impl FromStr for ListedName {
    type Err = NotADomain;

    fn from_str(s: &str) -> Result<Self, NotADomain> {
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = normalize_domain(rest)
            .map(DomainName)
            .ok_or_else(|| NotADomain(s.to_string()))?;
        Ok(ListedName { wildcard, name })
    }
}

/// A config entry that is not a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a domain name")]
pub struct NotADomain(String);

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ListedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(self.name.as_str())
    }
}

impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DomainName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize_from_str(d)
    }
}

impl Serialize for ListedName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize_from_str(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_trimmed_once() {
        let n: DomainName = ".Home.ARPA.".parse().unwrap();
        assert_eq!(n.as_str(), "home.arpa");
        let l: ListedName = "*.Tracker.Example.".parse().unwrap();
        assert_eq!(l.to_string(), "*.tracker.example");
        assert!("not a name".parse::<DomainName>().is_err());
        assert!("*.".parse::<ListedName>().is_err());
    }
}
