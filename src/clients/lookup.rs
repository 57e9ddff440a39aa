//! The device `metaguard check --client` means, given as an address, a MAC or a name:
//! the same tables `identify` reads, looked up from the other side.

use std::net::{IpAddr, Ipv4Addr};

use super::{Clients, Device, Mac, device_key};

impl Clients {
    /// The device behind `spec`: an address (as a query from it would be seen), a MAC
    /// (as a query carrying it), or a name from `[[devices]]` or the leases (any case).
    /// `None` when nothing by that name is known.
    pub(crate) fn lookup(&self, spec: &str) -> Option<Device> {
        let spec = spec.trim();
        if let Ok(ip) = spec.parse::<IpAddr>() {
            return Some(self.identify(ip, None));
        }
        if let Ok(mac) = spec.parse::<Mac>() {
            return Some(self.by_mac(mac));
        }
        if let Some(i) = (self.devices.list.iter()).position(|d| {
            d.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(spec))
        }) {
            let t = &self.devices;
            if let Some((&mac, _)) = t.by_mac.iter().filter(|(_, j)| **j == i).min() {
                return Some(self.by_mac(mac));
            }
            if let Some((&ip, _)) = t.by_ip.iter().filter(|(_, j)| **j == i).min() {
                return Some(self.identify(ip, None));
            }
            let (net, _) = t.nets.iter().find(|(_, j)| *j == i)?;
            let addr = net.network();
            return Some(Device {
                key: device_key(None, addr),
                mac: None,
                addr,
                name: t.list[i].name.clone(),
                group: t.list[i].group.clone(),
                own_addr: false,
                configured: Some(i as u32),
            });
        }
        let learnt = self.learnt.load();
        if let Some((&mac, _)) = (learnt.name_by_mac.iter())
            .filter(|(_, n)| n.eq_ignore_ascii_case(spec))
            .min()
        {
            return Some(self.by_mac(mac));
        }
        let (&ip, _) = (learnt.name_by_ip.iter())
            .filter(|(_, n)| n.eq_ignore_ascii_case(spec))
            .min()?;
        Some(self.identify(ip, None))
    }

    /// A query carrying `mac`: its `[[devices]]` entry or lease name, at the address the
    /// tables last saw it use.
    fn by_mac(&self, mac: Mac) -> Device {
        let learnt = self.learnt.load();
        let addr = (learnt.mac_by_ip.iter())
            .filter(|(_, m)| **m == mac)
            .map(|(ip, _)| *ip)
            .min()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let index = self.devices.by_mac.get(&mac).copied();
        let configured = index.and_then(|i| self.devices.list.get(i));
        Device {
            key: device_key(Some(mac), addr),
            mac: Some(mac),
            addr,
            name: configured
                .and_then(|d| d.name.clone())
                .or_else(|| learnt.name_by_mac.get(&mac).cloned()),
            group: configured.and_then(|d| d.group.clone()),
            own_addr: !addr.is_unspecified(),
            configured: index.map(|i| i as u32),
        }
    }
}
