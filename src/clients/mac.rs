//! MAC addresses: parsing, display, and the client MAC (`--add-mac`) or address
//! (`--add-subnet`) a dnsmasq forwarder adds to a query as an EDNS option.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// EDNS option of dnsmasq `--add-mac`: the 6 raw bytes of the client's MAC.
pub(crate) const EDNS_MAC_RAW: u16 = 65001;
/// EDNS option of dnsmasq `--add-mac=text` (17 ASCII bytes) and `--add-mac=base64`
/// (8 bytes of base64).
pub(crate) const EDNS_MAC_TEXT: u16 = 65073;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// A string that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (want aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff)")]
pub struct BadMac(pub String);

impl Mac {
    /// Twelve hex digits without separators, as odhcpd writes hardware addresses.
    pub(crate) fn from_hex(s: &str) -> Option<Mac> {
        if s.len() != 12 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = hex_byte(&s[2 * i..2 * i + 2])?;
        }
        Some(Mac(out))
    }

    /// An all-zero address is what the kernel shows for an unresolved neighbour.
    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// Exactly two hex digits (`from_str_radix` alone would also take "+f").
fn hex_byte(s: &str) -> Option<u8> {
    if s.len() != 2 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_string());
        // One separator throughout: "aa:bb-cc..." is more likely a typo than a MAC.
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            *b = hex_byte(p).ok_or_else(bad)?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::deserialize_from_str(d)
    }
}

/// The client address a forwarder put in the query as a client subnet (RFC 7871) of full
/// length (dnsmasq `--add-subnet=32,128`): one device, not a network. A shorter prefix
/// names a network and is not used for identity.
pub(crate) fn client_address(edns: &Edns) -> Option<std::net::IpAddr> {
    let Some(EdnsOption::Subnet(s)) = edns.option(EdnsCode::Subnet) else {
        return None;
    };
    let full = if s.addr().is_ipv4() { 32 } else { 128 };
    (s.source_prefix() == full).then(|| s.addr().to_canonical())
}

/// The client MAC that a dnsmasq forwarder put in the query, in any of its three
/// encodings. `None` when absent or not a MAC (a malformed option is not the client's
/// fault to be punished for; the source address is used instead).
pub fn mac_from_edns(edns: &Edns) -> Option<Mac> {
    if let Some(EdnsOption::Unknown(_, data)) = edns.option(EdnsCode::Unknown(EDNS_MAC_RAW))
        && let Ok(bytes) = <[u8; 6]>::try_from(data.as_slice())
    {
        return Some(Mac(bytes));
    }
    let Some(EdnsOption::Unknown(_, data)) = edns.option(EdnsCode::Unknown(EDNS_MAC_TEXT)) else {
        return None;
    };
    match data.len() {
        17 => std::str::from_utf8(data).ok()?.parse().ok(),
        8 => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()?;
            <[u8; 6]>::try_from(raw.as_slice()).ok().map(Mac)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([0xd2, 0x16, 0x0a, 0xbc, 0x00, 0xff]);

    fn edns_with(code: u16, data: &[u8]) -> Edns {
        let mut e = Edns::new();
        e.options_mut()
            .insert(EdnsOption::Unknown(code, data.to_vec()));
        e
    }

    #[test]
    fn mac_parses_both_separators_any_case_and_displays_lowercase() {
        assert_eq!("D2:16:0A:bc:00:FF".parse::<Mac>().unwrap(), M);
        assert_eq!("d2-16-0a-bc-00-ff".parse::<Mac>().unwrap(), M);
        assert_eq!(M.to_string(), "d2:16:0a:bc:00:ff");
        for bad in [
            "",
            "d2:16:0a:bc:00",
            "d2:16:0a:bc:00:ff:01",
            "d2:16:0a:bc:00:fg",
            "d2:16-0a:bc:00:ff",
            "d2:16:0a:bc:0:fff",
            "+2:16:0a:bc:00:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert_eq!(Mac::from_hex("d2160abc00ff"), Some(M));
        assert_eq!(Mac::from_hex("d2160abc00f"), None);
    }

    #[test]
    fn mac_from_each_edns_form() {
        assert_eq!(mac_from_edns(&edns_with(65001, &M.0)), Some(M));
        assert_eq!(
            mac_from_edns(&edns_with(65073, b"d2:16:0a:bc:00:ff")),
            Some(M)
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(M.0);
        assert_eq!(b64.len(), 8);
        assert_eq!(mac_from_edns(&edns_with(65073, b64.as_bytes())), Some(M));
    }

    #[test]
    fn garbage_edns_mac_is_none() {
        assert_eq!(mac_from_edns(&Edns::new()), None);
        assert_eq!(mac_from_edns(&edns_with(65001, &[1, 2, 3])), None);
        assert_eq!(mac_from_edns(&edns_with(65073, b"zz:16:0a:bc:00:ff")), None);
        assert_eq!(mac_from_edns(&edns_with(65073, b"!!!!!!!!")), None);
        assert_eq!(mac_from_edns(&edns_with(65073, &[0xff; 17])), None);
        assert_eq!(mac_from_edns(&edns_with(65073, b"abc")), None);
        assert_eq!(mac_from_edns(&edns_with(12, &M.0)), None);
    }
}
