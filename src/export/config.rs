//! The `[export]` section: where the dnstap stream goes, which queries it carries, and
//! what it says about client addresses.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[export]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// `"unix:/run/metaguard/dnstap.sock"` or `"tcp://HOST:PORT"`; absent or `""`: off.
    #[serde(deserialize_with = "de_endpoint", serialize_with = "ser_endpoint")]
    pub dnstap: Option<Endpoint>,
    /// `"hits"` (queries a rule matched; the default) or `"all"`.
    pub dnstap_messages: Messages,
    /// `"keep"`, `"hash"` or `"drop"`: what the stream says about client addresses.
    pub dnstap_client_address: ClientAddress,
    /// Events held while the collector is slow or away; past it they are dropped.
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub dnstap_queue: NonZeroUsize,
    /// The dnstap `identity` field (e.g. the router's name); `""`: the host name.
    pub dnstap_identity: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            dnstap: None,
            dnstap_messages: Messages::Hits,
            dnstap_client_address: ClientAddress::Keep,
            dnstap_queue: const { NonZeroUsize::new(4096).unwrap() },
            dnstap_identity: String::new(),
        }
    }
}

/// Which queries go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Messages {
    /// Queries a rule matched (blocked or logged).
    #[default]
    Hits,
    /// Every answered query.
    All,
}

/// What the stream says about client addresses (`query_address`, and a device key
/// made from the address, `ip:...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAddress {
    /// The address as it is.
    #[default]
    Keep,
    /// A keyed hash in place of the address: the same client gets the same value while
    /// the process runs; the key never leaves the router and is new at each start.
    Hash,
    /// No address at all (and no `ip:` device key).
    Drop,
}

/// Where the Frame Streams connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// Host (a name or an address) and port.
    Tcp(String, u16),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(h, p) if h.contains(':') => write!(f, "tcp://[{h}]:{p}"),
            Endpoint::Tcp(h, p) => write!(f, "tcp://{h}:{p}"),
        }
    }
}

/// An [`Endpoint`], or off (`""`).
struct MaybeEndpoint(Option<Endpoint>);

impl FromStr for MaybeEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not a dnstap destination: use \"unix:/ABSOLUTE/PATH\" or \
                 \"tcp://HOST:PORT\" (\"\" turns dnstap off)"
            )
        };
        if s.is_empty() {
            return Ok(MaybeEndpoint(None));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad());
            }
            return Ok(MaybeEndpoint(Some(Endpoint::Unix(path))));
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(bad)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && port != 0
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(bad());
        }
        Ok(MaybeEndpoint(Some(Endpoint::Tcp(host.to_string(), port))))
    }
}

fn de_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Endpoint>, D::Error> {
    crate::config::deserialize_from_str::<D, MaybeEndpoint>(d).map(|m| m.0)
}

fn ser_endpoint<S: Serializer>(v: &Option<Endpoint>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(e) => s.collect_str(e),
        None => s.serialize_str(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExportConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn destinations() {
        assert_eq!(parse("").unwrap().dnstap, None);
        assert_eq!(parse("dnstap = \"\"").unwrap().dnstap, None);
        assert_eq!(
            parse("dnstap = \"unix:/run/metaguard/dnstap.sock\"")
                .unwrap()
                .dnstap,
            Some(Endpoint::Unix("/run/metaguard/dnstap.sock".into()))
        );
        let tcp = parse("dnstap = \"tcp://[::1]:6000\"")
            .unwrap()
            .dnstap
            .unwrap();
        assert_eq!(tcp, Endpoint::Tcp("::1".into(), 6000));
        assert_eq!(tcp.to_string(), "tcp://[::1]:6000");
        assert_eq!(
            parse("dnstap = \"tcp://collector.lan:6000\"")
                .unwrap()
                .dnstap,
            Some(Endpoint::Tcp("collector.lan".into(), 6000))
        );
        for bad in [
            "unix:relative.sock",
            "tcp://host",
            "tcp://:6000",
            "tcp://h:0",
            "tcp://h:99999",
            "udp://h:1",
            "/run/x.sock",
        ] {
            let e = parse(&format!("dnstap = \"{bad}\"")).unwrap_err();
            assert!(e.contains("not a dnstap destination"), "{bad}: {e}");
        }
    }

    #[test]
    fn options_and_round_trip() {
        let c = parse(
            "dnstap = \"tcp://127.0.0.1:6000\"\ndnstap_messages = \"all\"\n\
             dnstap_client_address = \"hash\"\ndnstap_queue = 10\n",
        )
        .unwrap();
        assert_eq!(c.dnstap_messages, Messages::All);
        assert_eq!(c.dnstap_client_address, ClientAddress::Hash);
        assert_eq!(c.dnstap_queue.get(), 10);
        let again: ExportConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(parse("dnstap_messages = \"some\"").is_err());
        assert!(parse("dnstap_client_address = \"mask\"").is_err());
    }
}
