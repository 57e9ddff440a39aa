//! A set of networks an address is tested against in a few instructions per network:
//! each one kept as its masked bits and mask, IPv4 and IPv6 apart (an IPv4 address never
//! matches an IPv6 network, also not `::ffff:0:0/96`, as with `ipnet`).

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks, compiled once; `contains` takes the address as the caller has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetSet {
    /// Network bits, mask and place in the list given to [`NetSet::new`].
    v4: Vec<(u32, u32, usize)>,
    v6: Vec<(u128, u128, usize)>,
}

impl NetSet {
    /// The set of `nets`.
    pub(crate) fn new(nets: &[IpNet]) -> NetSet {
        let mut set = NetSet::default();
        for (i, n) in nets.iter().enumerate() {
            match n {
                IpNet::V4(n) => {
                    let mask = u32::from(n.netmask());
                    set.v4.push((u32::from(n.network()) & mask, mask, i));
                }
                IpNet::V6(n) => {
                    let mask = u128::from(n.netmask());
                    set.v6.push((u128::from(n.network()) & mask, mask, i));
                }
            }
        }
        set
    }

    /// Whether `ip` is inside one of the networks. An IPv4-mapped IPv6 address is taken
    /// as its IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.first(ip).is_some()
    }

    /// The place, in the list given to [`NetSet::new`], of the first network that
    /// holds `ip`.
    pub(crate) fn first(&self, ip: IpAddr) -> Option<usize> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find(|&&(net, mask, _)| a & mask == net)?.2
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find(|&&(net, mask, _)| a & mask == net)?.2
            }
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address against every network: the same answer as `ipnet` on canonical
    /// addresses.
    #[test]
    fn agrees_with_ipnet() {
        let nets: Vec<IpNet> = [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.1.77/24",
            "0.0.0.0/0",
            "198.51.100.7/32",
            "::1/128",
            "fc00::/7",
            "fe80::/10",
            "::ffff:0:0/96",
            "::/0",
            "2001:db8::/32",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let addrs: Vec<IpAddr> = [
            "127.0.0.1",
            "126.255.255.255",
            "128.0.0.0",
            "10.255.1.1",
            "172.31.255.255",
            "172.32.0.0",
            "192.168.1.1",
            "192.168.2.1",
            "198.51.100.7",
            "198.51.100.8",
            "::1",
            "::2",
            "fd00::5",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "::ffff:192.168.1.9",
            "::ffff:8.8.8.8",
            "2001:db8:ffff::1",
            "2001:db9::1",
            "0.0.0.0",
            "::",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for n in &nets {
            let set = NetSet::new(std::slice::from_ref(n));
            for a in &addrs {
                let want = n.contains(&a.to_canonical());
                assert_eq!(set.contains(*a), want, "{a} in {n}");
            }
        }
        // The first in the given order, each family on its own.
        let all = NetSet::new(&nets);
        for a in &addrs {
            let want = nets.iter().position(|n| n.contains(&a.to_canonical()));
            assert_eq!(all.first(*a), want, "{a}");
        }
        let all = NetSet::new(&nets[..4]);
        assert!(all.contains("192.168.1.200".parse().unwrap()));
        assert!(!all.contains("8.8.8.8".parse().unwrap()));
        assert!(!NetSet::new(&[]).contains("127.0.0.1".parse().unwrap()));
        // An IPv4 client is never inside an IPv6 network, also not the mapped range.
        let mapped = NetSet::new(&["::ffff:0:0/96".parse().unwrap()]);
        assert!(!mapped.contains("192.168.1.9".parse().unwrap()));
        assert!(!mapped.contains("::ffff:192.168.1.9".parse().unwrap()));
    }
}
