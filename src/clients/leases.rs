//! DHCP lease files, read for device names and IP-to-MAC pairs: dnsmasq, ISC dhcpd
//! and odhcpd. A line we cannot read is counted and skipped, never fatal: a lease file
//! is written by another program and may be mid-rewrite.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Mac;

/// Which program wrote a lease file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeaseFormat {
    /// `expiry mac ip hostname clientid`, one lease a line.
    Dnsmasq,
    /// ISC dhcpd's `lease IP { hardware ethernet MAC; client-hostname "name"; }`.
    Isc,
    /// odhcpd's state file (`# iface duid iaid hostname ts id len addr/len...`) and/or
    /// its hosts file (`addr fqdn name`).
    Odhcpd,
}

/// One lease file to read, `[[clients.leases]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseFile {
    pub path: PathBuf,
    pub(crate) format: LeaseFormat,
}

/// What one lease says: any of a MAC, an address and a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) mac: Option<Mac>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) name: Option<String>,
}

/// The leases of one file and how many lines were skipped as unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) leases: Vec<Lease>,
    pub(crate) malformed: usize,
}

/// Parse the text of a lease file in `format`.
pub(crate) fn parse(format: LeaseFormat, text: &str) -> Parsed {
    match format {
        LeaseFormat::Dnsmasq => parse_dnsmasq(text),
        LeaseFormat::Isc => parse_isc(text),
        LeaseFormat::Odhcpd => parse_odhcpd(text),
    }
}

/// A host name as a lease file writes it; `*` (dnsmasq) and `-` (odhcpd) mean none.
fn name(s: &str) -> Option<String> {
    match s {
        "" | "*" | "-" => None,
        s => Some(s.to_string()),
    }
}

/// The link-layer address inside a DHCPv6 DUID given in hex (with or without `:`):
/// DUID-LLT (type 1) and DUID-LL (type 3) of Ethernet (hardware type 1) carry it.
/// Other DUIDs (enterprise, UUID) say nothing about the MAC.
fn mac_from_duid(duid: &str) -> Option<Mac> {
    let hex: String = duid.chars().filter(|c| *c != ':').collect();
    let rest = hex
        .strip_prefix("00010001")
        .and_then(|r| r.get(8..)) // DUID-LLT: 4 bytes of time before the address
        .or_else(|| hex.strip_prefix("00030001"))?;
    Mac::from_hex(rest)
}

fn parse_dnsmasq(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            // The server's own DUID, written before its DHCPv6 leases.
            ["duid", ..] => {}
            [expiry, hw, ip, host, rest @ ..] if expiry.parse::<u64>().is_ok() => {
                let Ok(ip) = ip.parse::<IpAddr>() else {
                    out.malformed += 1;
                    continue;
                };
                // On DHCPv6 lines the second field is the IAID and the client id is
                // the DUID, which may hold the MAC.
                let mac = hw
                    .parse::<Mac>()
                    .ok()
                    .or_else(|| rest.first().and_then(|d| mac_from_duid(d)));
                out.leases.push(Lease {
                    mac,
                    ip: Some(ip.to_canonical()),
                    name: name(host),
                });
            }
            _ => out.malformed += 1,
        }
    }
    out
}

fn parse_isc(text: &str) -> Parsed {
    let mut out = Parsed::default();
    // The lease being read, with whether its header was usable.
    let mut current: Option<Option<Lease>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("lease ") {
            if current.is_some() {
                // A block that never closed.
                out.malformed += 1;
            }
            let ip = rest
                .strip_suffix('{')
                .and_then(|r| r.trim().parse::<IpAddr>().ok());
            if ip.is_none() {
                out.malformed += 1;
            }
            current = Some(ip.map(|ip| Lease {
                mac: None,
                ip: Some(ip.to_canonical()),
                name: None,
            }));
            continue;
        }
        let Some(block) = current.as_mut() else {
            // Top-level statements (server-duid, authoring-byte-order) and the
            // contents of blocks we do not read (ia-na, failover) are no leases.
            continue;
        };
        if line == "}" {
            if let Some(Some(lease)) = current.take() {
                // The file is a log: a later block for the same address supersedes
                // an earlier one, which the caller gets by reading in order.
                out.leases.push(lease);
            }
            continue;
        }
        let Some(lease) = block.as_mut() else {
            continue;
        };
        if let Some(v) = line.strip_prefix("hardware ethernet ") {
            match v.trim_end_matches(';').trim().parse::<Mac>() {
                Ok(m) => lease.mac = Some(m),
                Err(_) => out.malformed += 1,
            }
        } else if let Some(v) = line.strip_prefix("client-hostname ") {
            let v = v.trim_end_matches(';').trim();
            match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(n) => lease.name = name(n),
                None => out.malformed += 1,
            }
        }
    }
    if current.is_some() {
        out.malformed += 1;
    }
    out
}

fn parse_odhcpd(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            // State line: # iface duid-or-hwaddr iaid-or-"ipv4" hostname valid id len addrs...
            ["#", _iface, id, kind, host, valid, _id, _len, addrs @ ..]
                if valid.parse::<i64>().is_ok() =>
            {
                let mac = if *kind == "ipv4" {
                    Mac::from_hex(id)
                } else {
                    mac_from_duid(id)
                };
                // A name odhcpd flagged as invalid is written as "broken\x20name".
                let host = if host.starts_with("broken") {
                    "-"
                } else {
                    host
                };
                let mut ips = addrs
                    .iter()
                    .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
                    .peekable();
                if ips.peek().is_none() {
                    // A lease without addresses still ties a MAC to a name.
                    out.leases.push(Lease {
                        mac,
                        ip: None,
                        name: name(host),
                    });
                }
                for ip in ips {
                    out.leases.push(Lease {
                        mac,
                        ip: Some(ip.to_canonical()),
                        name: name(host),
                    });
                }
            }
            // odhcpd writes no other comments: this is a cut or garbled state line.
            [first, ..] if first.starts_with('#') => out.malformed += 1,
            // Hosts line: addr fqdn... name; the last name is the short one.
            [addr, .., host] => match addr.parse::<IpAddr>() {
                Ok(ip) => out.leases.push(Lease {
                    mac: None,
                    ip: Some(ip.to_canonical()),
                    name: name(host),
                }),
                Err(_) => out.malformed += 1,
            },
            _ => out.malformed += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Option<Mac> {
        Some(s.parse().unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn dnsmasq_v4_and_v6_leases() {
        let text = "\
1718000000 aa:bb:cc:dd:ee:01 192.168.1.23 phone 01:aa:bb:cc:dd:ee:01
1718000000 aa:bb:cc:dd:ee:02 192.168.1.24 * *
duid 00:01:00:01:2c:00:00:00:11:22:33:44:55:66
1718000000 12345678 fd00::23 phone 00:03:00:01:aa:bb:cc:dd:ee:01
1718000000 87654321 fd00::99 laptop 00:02:00:00:ab:11:01
not-a-number aa:bb:cc:dd:ee:03 192.168.1.25 x *
1718000000 aa:bb:cc:dd:ee:03 192.168.1.300 x *
1718000000 aa:bb:cc:dd:ee:03

";
        let p = parse(LeaseFormat::Dnsmasq, text);
        assert_eq!(p.malformed, 3, "{p:?}");
        assert_eq!(
            p.leases,
            vec![
                Lease {
                    mac: mac("aa:bb:cc:dd:ee:01"),
                    ip: ip("192.168.1.23"),
                    name: Some("phone".into())
                },
                Lease {
                    mac: mac("aa:bb:cc:dd:ee:02"),
                    ip: ip("192.168.1.24"),
                    name: None
                },
                Lease {
                    mac: mac("aa:bb:cc:dd:ee:01"),
                    ip: ip("fd00::23"),
                    name: Some("phone".into())
                },
                Lease {
                    mac: None,
                    ip: ip("fd00::99"),
                    name: Some("laptop".into())
                },
            ]
        );
    }

    #[test]
    fn isc_leases() {
        let text = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
server-duid "\000\001\000\001";

lease 192.168.2.102 {
  starts 0 2018/02/25 21:36:16;
  binding state active;
  hardware ethernet B8:27:EB:42:C9:E9;
  uid "\001\270'\353B\311\351";
  client-hostname "red01";
}
lease 192.168.2.103 {
  hardware ethernet b8:27:eb:3a:7c:7c;
}
lease 192.168.2.999 {
  hardware ethernet b8:27:eb:3a:7c:7d;
  client-hostname "nope";
}
lease 192.168.2.104 {
  hardware ethernet zz:27:eb:3a:7c:7c;
  client-hostname "bad-mac";
}
"#;
        let p = parse(LeaseFormat::Isc, text);
        assert_eq!(p.malformed, 2, "{p:?}");
        assert_eq!(
            p.leases,
            vec![
                Lease {
                    mac: mac("b8:27:eb:42:c9:e9"),
                    ip: ip("192.168.2.102"),
                    name: Some("red01".into())
                },
                Lease {
                    mac: mac("b8:27:eb:3a:7c:7c"),
                    ip: ip("192.168.2.103"),
                    name: None
                },
                Lease {
                    mac: None,
                    ip: ip("192.168.2.104"),
                    name: Some("bad-mac".into())
                },
            ]
        );
    }

    #[test]
    fn odhcpd_state_and_hosts_lines() {
        let text = "\
# br-lan 000100012c0000001122334455aa 4a3b2c1d tablet 1718000000 1a 128 fd00::1a/128 2001:db8::1a/128
# br-lan aabbccddee05 ipv4 tv 1718000000 c0a8010a 32 192.168.1.10/32
# br-lan 0002000011 9 broken\\x20na_me 1718000000 1b 128 fd00::1b/128
# br-lan 00030001aabbccddee06 1 - 0 1c 128
# truncated line
192.168.1.10\ttv.lan\ttv
fd00::1a\ttablet.lan\ttablet
garbage
";
        let p = parse(LeaseFormat::Odhcpd, text);
        assert_eq!(p.malformed, 2, "{p:?}");
        let tablet = mac("11:22:33:44:55:aa");
        assert_eq!(
            p.leases,
            vec![
                Lease {
                    mac: tablet,
                    ip: ip("fd00::1a"),
                    name: Some("tablet".into())
                },
                Lease {
                    mac: tablet,
                    ip: ip("2001:db8::1a"),
                    name: Some("tablet".into())
                },
                Lease {
                    mac: mac("aa:bb:cc:dd:ee:05"),
                    ip: ip("192.168.1.10"),
                    name: Some("tv".into())
                },
                Lease {
                    mac: None,
                    ip: ip("fd00::1b"),
                    name: None
                },
                Lease {
                    mac: mac("aa:bb:cc:dd:ee:06"),
                    ip: None,
                    name: None
                },
                Lease {
                    mac: None,
                    ip: ip("192.168.1.10"),
                    name: Some("tv".into())
                },
                Lease {
                    mac: None,
                    ip: ip("fd00::1a"),
                    name: Some("tablet".into())
                },
            ]
        );
    }
}
