//! The kernel's neighbour tables: which MAC answers for which address on the LAN.
//! IPv4 comes from `/proc/net/arp`; IPv6 from the output of `ip -6 neigh show`
//! (iproute2), which saves us a netlink dependency and its build time.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use super::Mac;

/// Address-to-MAC pairs from the text of `/proc/net/arp`. Incomplete entries (flags
/// 0x0, or an all-zero MAC) are skipped: they name no device.
pub(crate) fn parse_proc_arp(text: &str) -> Vec<(IpAddr, Mac)> {
    text.lines()
        .skip(1) // the column header
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hwtype, flags, mac, ..] = f.as_slice() else {
                return None;
            };
            if *flags == "0x0" {
                return None;
            }
            let mac = mac.parse::<Mac>().ok().filter(|m| !m.is_zero())?;
            Some((ip.parse::<IpAddr>().ok()?, mac))
        })
        .collect()
}

/// Address-to-MAC pairs from `ip neigh show` output:
/// `fe80::1 dev eth0 lladdr aa:bb:cc:dd:ee:ff router REACHABLE`. Lines without
/// `lladdr` (FAILED, INCOMPLETE) are skipped.
pub(crate) fn parse_ip_neigh(text: &str) -> Vec<(IpAddr, Mac)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let ip = f.next()?.parse::<IpAddr>().ok()?;
            f.by_ref().find(|w| *w == "lladdr")?;
            let mac = f.next()?.parse::<Mac>().ok().filter(|m| !m.is_zero())?;
            Some((ip, mac))
        })
        .collect()
}

/// Read the IPv4 table at `path`. A missing or unreadable file (no procfs in a
/// container) is an empty table, logged at debug: identity then falls back to leases
/// and source addresses.
pub(crate) fn read_arp(path: &Path) -> Vec<(IpAddr, Mac)> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_proc_arp(&text),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no ARP table");
            Vec::new()
        }
    }
}

/// Run `program -6 neigh show` (normally `ip`). Missing iproute2 is an empty table.
pub(crate) fn read_ip6_neigh(program: &Path) -> Vec<(IpAddr, Mac)> {
    match Command::new(program).args(["-6", "neigh", "show"]).output() {
        Ok(out) if out.status.success() => parse_ip_neigh(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            tracing::debug!(status = %out.status, "ip -6 neigh show failed");
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(program = %program.display(), error = %e, "cannot run ip -6 neigh");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_arp_skips_header_and_incomplete() {
        let text = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.23     0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth0
192.168.1.24     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.25     0x1         0x2         garbage               *        eth0
";
        assert_eq!(
            parse_proc_arp(text),
            vec![(
                "192.168.1.23".parse().unwrap(),
                "aa:bb:cc:dd:ee:ff".parse().unwrap()
            )]
        );
    }

    #[test]
    fn ip_neigh_output() {
        let text = "\
fe80::1 dev eth0 lladdr aa:bb:cc:dd:ee:ff router REACHABLE
fd00::5 dev eth0 lladdr 11:22:33:44:55:66 STALE
fd00::6 dev eth0 FAILED
fd00::7 dev eth0 INCOMPLETE
";
        let got = parse_ip_neigh(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "fd00::5".parse::<IpAddr>().unwrap());
        assert_eq!(got[1].1, "11:22:33:44:55:66".parse::<Mac>().unwrap());
    }
}
