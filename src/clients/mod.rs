//! Device identity: which household device sent a query, so that its group's policy
//! applies and its hits are logged under one name.
//!
//! Sources, in order: the `[[devices]]` of the config; the MAC a dnsmasq forwarder adds
//! as an EDNS option; the kernel's neighbour tables; DHCP lease files (for names);
//! else the source address. A device is keyed by MAC when one is known, so a phone's
//! IPv4 and IPv6 addresses are one device.
//!
//! `identify` runs on the query path and only reads immutable tables; the neighbour
//! tables and lease files are re-read by `refresh_now`, off the query path.

mod leases;
mod lookup;
mod mac;
mod neigh;
mod netlink;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::Edns;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_util::sync::CancellationToken;

use crate::netset::NetSet;
use crate::store::DeviceKey;

pub(crate) use leases::{LeaseFile, LeaseFormat};
use mac::client_address;
pub use mac::mac_from_edns;
pub(crate) use mac::{EDNS_MAC_RAW, EDNS_MAC_TEXT, Mac};

/// Where the kernel shows the IPv4 neighbour table.
const PROC_NET_ARP: &str = "/proc/net/arp";
/// The iproute2 program that prints the IPv6 neighbour table.
const IP_PROGRAM: &str = "ip";
/// How long one read of the kernel's neighbour dump may wait.
const NETLINK_TIMEOUT: Duration = Duration::from_millis(50);
/// The kernel is asked about unknown addresses at most this often (a flood of new
/// sources costs at most ten dumps a second).
const ASK_KERNEL_EVERY: Duration = Duration::from_millis(100);
/// How long a query from an address the kernel does not know waits for the kernel to
/// resolve it (an ARP or neighbour solicitation round trip: tens of µs on a wire, a
/// few ms on Wi-Fi). Paid once per new address; an address that does not answer in
/// time is not waited for again until the next refresh.
const RESOLVE_WAIT: Duration = Duration::from_millis(5);

/// `[clients]`: where names and MACs come from besides the `[[devices]]` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Lease files read for names. Missing files are skipped silently, so the
    /// defaults cover the usual places of dnsmasq, ISC dhcpd and odhcpd.
    pub leases: Vec<LeaseFile>,
    /// Read the kernel's neighbour tables (ARP, IPv6 ND) to learn clients' MACs.
    pub neighbours: bool,
    /// How often neighbour tables and lease files are re-read while queries come
    /// (after a period with none, the next query has them read again at once).
    #[serde(with = "humantime_serde")]
    pub(crate) refresh: Duration,
    /// Forwarders whose EDNS client options are believed: the MAC option of dnsmasq
    /// `--add-mac` and a full-length client subnet (`--add-subnet=32,128`, RFC 7871)
    /// name the device behind them. From any other source these options are ignored,
    /// so a device on the LAN cannot pass for another one. Loopback by default (a
    /// dnsmasq on the same machine).
    pub trust_edns_from: Vec<IpNet>,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        let lease = |path: &str, format| LeaseFile {
            path: PathBuf::from(path),
            format,
        };
        ClientsConfig {
            leases: vec![
                lease("/var/lib/misc/dnsmasq.leases", LeaseFormat::Dnsmasq),
                lease("/var/lib/dhcp/dhcpd.leases", LeaseFormat::Isc),
                lease("/tmp/hosts/odhcpd", LeaseFormat::Odhcpd),
                lease("/tmp/odhcpd.leases", LeaseFormat::Odhcpd),
            ],
            neighbours: true,
            refresh: Duration::from_secs(30),
            trust_edns_from: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

/// One `match` entry of a `[[devices]]` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceMatch {
    /// The device's MAC address.
    Mac(Mac),
    /// One IP address.
    Ip(IpAddr),
    /// Every address of a network.
    Net(IpNet),
}

/// A `match` entry that is none of MAC, IP address or CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC (aa:bb:cc:dd:ee:ff), an IP address or a network (192.168.1.0/28)")]
pub struct BadMatch(pub String);

impl FromStr for DeviceMatch {
    type Err = BadMatch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(m) = s.parse::<Mac>() {
            Ok(DeviceMatch::Mac(m))
        } else if let Ok(ip) = s.parse::<IpAddr>() {
            Ok(DeviceMatch::Ip(ip.to_canonical()))
        } else if let Ok(net) = s.parse::<IpNet>() {
            // Host bits set ("192.168.1.5/24") are most likely a typo for an address
            // or a network; refuse rather than guess which.
            if net.trunc() != net {
                return Err(BadMatch(s.to_string()));
            }
            Ok(DeviceMatch::Net(net))
        } else {
            Err(BadMatch(s.to_string()))
        }
    }
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceMatch::Mac(m) => m.fmt(f),
            DeviceMatch::Ip(ip) => ip.fmt(f),
            DeviceMatch::Net(n) => n.fmt(f),
        }
    }
}

impl Serialize for DeviceMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::deserialize_from_str(d)
    }
}

/// One `[[devices]]` item as configured: a named device, how to recognise it, its policy group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The device's name, shown in the log and reports. Without one, the device is
    /// named by the DHCP leases like any other (a tablet put in a group by its MAC
    /// keeps the host name it gives DHCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MACs, addresses or networks that identify it (`match = [...]`).
    #[serde(rename = "match")]
    pub matches: Vec<DeviceMatch>,
    /// Its `[groups.NAME]` policy group; none: the default actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its own action per category, over its group's (`categories = { meta-ai = "block" }`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub categories: crate::policy::CategoryActions,
    /// Blocking paused for it (a household control, never in a file).
    #[serde(skip)]
    pub paused: bool,
}

impl DeviceConfig {
    /// How messages name the entry: its name, else its first `match` entry.
    pub fn label(&self) -> String {
        match (&self.name, self.matches.first()) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => m.to_string(),
            (None, None) => "(unnamed)".to_string(),
        }
    }
}

/// A device list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// Two devices claim the same MAC, address or network.
    #[error("devices {first:?} and {second:?} both match {entry}")]
    DuplicateMatch {
        /// The MAC, address or network both devices claim.
        entry: String,
        /// The device that claims it first.
        first: String,
        /// The device that claims it again.
        second: String,
    },
}

/// The device that sent one query, as `Clients::identify` found it: its log key, MAC,
/// address, name and group. The other device types: [`DeviceConfig`] and [`DeviceMatch`]
/// (the config), `DeviceKey` (the log's key), `DeviceRow` (`metaguard devices`).
#[derive(Debug, PartialEq, Eq)]
pub struct Device {
    /// Stable key of the device: by MAC when its MAC is known, else by address.
    pub(crate) key: DeviceKey,
    pub(crate) mac: Option<Mac>,
    /// The query's source address (IPv4-mapped IPv6 made IPv4).
    pub(crate) addr: IpAddr,
    /// From `[[devices]]`, else from the leases.
    pub name: Option<Arc<str>>,
    /// From `[[devices]]`.
    pub(crate) group: Option<Arc<str>>,
    /// `addr` is the device's own address (not a forwarder's that put its MAC in the
    /// query): only then may the hit log fold an address-only device into this one.
    pub(crate) own_addr: bool,
    /// Its index in `[[devices]]`: the policy may have a table of its own for it.
    pub(crate) configured: Option<u32>,
}

impl Clone for Device {
    fn clone(&self) -> Self {
        Device {
            key: self.key.clone(),
            mac: self.mac,
            addr: self.addr,
            name: self.name.clone(),
            group: self.group.clone(),
            own_addr: self.own_addr,
            configured: self.configured,
        }
    }

    /// Shared texts that are already the same (a spare hit event refilled for the
    /// device it last held) are left alone: the UDP thread and the hit writer would
    /// otherwise bounce their counts between cores on every hit.
    fn clone_from(&mut self, source: &Self) {
        self.key.clone_from(&source.key);
        self.mac = source.mac;
        self.addr = source.addr;
        share_opt(&mut self.name, &source.name);
        share_opt(&mut self.group, &source.group);
        self.own_addr = source.own_addr;
        self.configured = source.configured;
    }
}

/// `*to = from.clone()`, unless both already share one text.
pub(crate) fn share<T: ?Sized>(to: &mut Arc<T>, from: &Arc<T>) {
    if !Arc::ptr_eq(to, from) {
        *to = from.clone();
    }
}

fn share_opt<T: ?Sized>(to: &mut Option<Arc<T>>, from: &Option<Arc<T>>) {
    match (to.as_mut(), from) {
        (Some(t), Some(f)) => share(t, f),
        _ => to.clone_from(from),
    }
}

impl Device {
    /// A device known only by its address.
    pub fn from_addr(addr: IpAddr) -> Self {
        Device {
            key: DeviceKey::from_addr(addr),
            mac: None,
            addr,
            name: None,
            group: None,
            own_addr: true,
            configured: None,
        }
    }

    /// A device known by its MAC, currently at `addr` (the fixture and tests).
    #[cfg(any(test, feature = "test-fixtures"))]
    pub(crate) fn from_mac(mac: Mac, addr: IpAddr) -> Self {
        Device {
            key: DeviceKey::from_mac(mac),
            mac: Some(mac),
            addr,
            name: None,
            group: None,
            own_addr: true,
            configured: None,
        }
    }
}

/// A `[[devices]]` entry's name and group, as `identify` hands them out in a [`Device`].
#[derive(Debug)]
struct Configured {
    /// None: named by the leases.
    name: Option<Arc<str>>,
    group: Option<Arc<str>>,
}

/// The `[[devices]]` list as lookup tables (by MAC, address, network). Fixed for the life of a `Clients`: a config
/// reload builds a new one.
#[derive(Debug, Default)]
struct DeviceTable {
    list: Vec<Configured>,
    by_mac: HashMap<Mac, usize>,
    by_ip: HashMap<IpAddr, usize>,
    /// Narrowest network first, so the first hit is the most specific.
    nets: Vec<(IpNet, usize)>,
    /// `nets` as the query path tests them.
    net_set: NetSet,
}

/// What the last refresh learnt. Built whole, then swapped in, so `identify` never sees
/// a half-read table.
#[derive(Debug, Default, Clone)]
struct Learnt {
    /// From the neighbour tables, then leases for addresses the kernel does not know.
    mac_by_ip: HashMap<IpAddr, Mac>,
    name_by_mac: HashMap<Mac, Arc<str>>,
    name_by_ip: HashMap<IpAddr, Arc<str>>,
    /// Addresses the kernel was made to resolve on a query and could not (not on the
    /// LAN, or the device did not answer): not waited for again until the next refresh.
    /// At most one per [`ASK_KERNEL_EVERY`] between refreshes.
    unresolved: std::collections::HashSet<IpAddr>,
}

/// Where `refresh_now` reads the neighbour tables (fixture files in tests).
#[derive(Debug)]
struct NeighbourSources {
    /// Ask the kernel over rtnetlink (the files below only when that fails), also on a
    /// query from an address the tables do not know yet.
    netlink: bool,
    arp: PathBuf,
    /// `None` skips IPv6.
    ip_program: Option<PathBuf>,
}

/// Finds the [`Device`] behind every query: from `[[devices]]`, the EDNS MAC option,
/// the neighbour tables and the DHCP leases.
#[derive(Debug)]
pub(crate) struct Clients {
    devices: DeviceTable,
    /// `trust_edns_from`.
    trusted: NetSet,
    leases: Vec<LeaseFile>,
    neighbours: Option<NeighbourSources>,
    refresh: Duration,
    learnt: ArcSwap<Learnt>,
    malformed: AtomicUsize,
    /// Set while the refresher waits for a query (see `spawn_refresher`).
    parked: AtomicBool,
    /// When the kernel was last asked about an unknown address (ms since `born`).
    asked_ms: AtomicU64,
    born: Instant,
    /// The first query while it waits wakes it.
    wake: tokio::sync::Notify,
}

impl Clients {
    /// Tables for `devices`; nothing is read until `refresh_now`.
    pub(crate) fn new(
        devices: &[DeviceConfig],
        cfg: &ClientsConfig,
    ) -> Result<Clients, ClientsError> {
        let mut t = DeviceTable::default();
        // Which device claimed an entry first, to name both in the error.
        let mut claimed: HashMap<DeviceMatch, usize> = HashMap::new();
        for (i, d) in devices.iter().enumerate() {
            t.list.push(Configured {
                name: d.name.as_deref().map(Into::into),
                group: d.group.as_deref().map(Into::into),
            });
            for m in &d.matches {
                if let Some(&first) = claimed.get(m)
                    && first != i
                {
                    return Err(ClientsError::DuplicateMatch {
                        entry: m.to_string(),
                        first: devices[first].label(),
                        second: d.label(),
                    });
                }
                claimed.insert(*m, i);
                match *m {
                    DeviceMatch::Mac(mac) => {
                        t.by_mac.insert(mac, i);
                    }
                    DeviceMatch::Ip(ip) => {
                        t.by_ip.insert(ip, i);
                    }
                    DeviceMatch::Net(net) => t.nets.push((net, i)),
                }
            }
        }
        t.nets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        t.net_set = NetSet::new(&t.nets.iter().map(|(net, _)| *net).collect::<Vec<_>>());
        Ok(Clients {
            devices: t,
            leases: cfg.leases.clone(),
            trusted: NetSet::new(&cfg.trust_edns_from),
            neighbours: cfg.neighbours.then(|| NeighbourSources {
                netlink: true,
                arp: PathBuf::from(PROC_NET_ARP),
                ip_program: Some(PathBuf::from(IP_PROGRAM)),
            }),
            // A zero interval would spin; once a second is the most a table needs.
            refresh: cfg.refresh.max(Duration::from_secs(1)),
            learnt: ArcSwap::from_pointee(Learnt::default()),
            malformed: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            asked_ms: AtomicU64::new(0),
            born: Instant::now(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Who sent a query from `src` with `edns`. Table lookups, no await; for an address
    /// the tables do not know, one rtnetlink dump at most every [`ASK_KERNEL_EVERY`].
    pub(crate) fn identify(&self, src: IpAddr, edns: Option<&Edns>) -> Device {
        // A load; a store and a wake-up once per refresh period at most.
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::Relaxed) {
            self.wake.notify_one();
        }
        let src = src.to_canonical();
        let learnt = self.learnt.load();
        // Only a trusted forwarder may say who is behind it.
        let edns = edns.filter(|_| self.trusted.contains(src));
        let edns_mac = edns.and_then(mac_from_edns);
        let addr = edns.and_then(client_address).unwrap_or(src);
        // Behind a dnsmasq forwarder the source is dnsmasq itself: with a MAC in the
        // query, the source address says nothing about the device.
        let client_ip = edns_mac.is_none().then_some(addr);
        let mac = edns_mac
            .or_else(|| learnt.mac_by_ip.get(&addr).copied())
            .or_else(|| client_ip.and_then(|ip| self.ask_kernel(ip, &learnt)));

        let index = mac
            .and_then(|m| self.devices.by_mac.get(&m))
            .or_else(|| client_ip.and_then(|ip| self.devices.by_ip.get(&ip)))
            .or_else(|| {
                let ip = client_ip?;
                let at = self.devices.net_set.first(ip)?;
                self.devices.nets.get(at).map(|(_, i)| i)
            })
            .copied();
        let device = index.and_then(|i| self.devices.list.get(i));

        let name = device.and_then(|d| d.name.clone()).or_else(|| {
            mac.and_then(|m| learnt.name_by_mac.get(&m))
                .or_else(|| client_ip.and_then(|ip| learnt.name_by_ip.get(&ip)))
                .cloned()
        });
        let key = device_key(mac, addr);
        Device {
            key,
            mac,
            addr,
            name,
            group: device.and_then(|d| d.group.clone()),
            // With a MAC option and no client subnet, `addr` is the forwarder's.
            own_addr: client_ip.is_some() || addr != src,
            configured: index.map(|i| i as u32),
        }
    }

    /// The MAC of `ip` from the kernel's neighbour table, for a query from an address
    /// the last refresh did not know (a phone's new IPv6 privacy address): its device and
    /// group apply from its first query, not from the next refresh. One rtnetlink dump,
    /// tens of µs, at most every [`ASK_KERNEL_EVERY`]; what it learns is kept.
    ///
    /// Where the kernel does not know `ip` either (the phone knew the router's MAC, so
    /// the router never saw a solicitation from the new address), the kernel is made to
    /// resolve it and its answer awaited, at most [`RESOLVE_WAIT`]; an address that
    /// stays unresolved (not on the LAN, or silent) is not tried again until the next
    /// refresh.
    fn ask_kernel(&self, ip: IpAddr, learnt: &Learnt) -> Option<Mac> {
        if ip.is_loopback() || ip.is_unspecified() || !self.neighbours.as_ref()?.netlink {
            return None;
        }
        let now = self.born.elapsed().as_millis() as u64 + ASK_KERNEL_EVERY.as_millis() as u64;
        let last = self.asked_ms.load(Ordering::Relaxed);
        if now < last + ASK_KERNEL_EVERY.as_millis() as u64
            || self
                .asked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let started = Instant::now();
        // Subscribed before the dump, so an entry made after it is seen too.
        let watch = (!learnt.unresolved.contains(&ip))
            .then(netlink::watch)
            .and_then(Result::ok);
        let pairs = netlink::neighbours(NETLINK_TIMEOUT).ok()?;
        let mut found = pairs.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m);
        let resolve = found.is_none() && watch.is_some();
        if let (None, Some(w)) = (found, &watch) {
            found = w.resolve(ip, RESOLVE_WAIT);
        }
        tracing::debug!(
            %ip,
            found = found.is_some(),
            resolved = resolve,
            took_us = started.elapsed().as_micros() as u64,
            "asked the kernel about a new address"
        );
        self.learnt.rcu(|old| {
            let mut new = Learnt::clone(old);
            new.mac_by_ip.extend(pairs.iter().copied());
            match found {
                Some(mac) if resolve => {
                    new.mac_by_ip.insert(ip, mac);
                }
                None if resolve => {
                    new.unresolved.insert(ip);
                }
                _ => {}
            }
            new
        });
        found
    }

    /// Re-read the neighbour tables and lease files and swap in what they say.
    /// Blocking I/O: call it from `spawn_blocking`.
    pub(crate) fn refresh_now(&self) {
        let mut learnt = Learnt::default();
        let mut malformed = 0;
        for file in &self.leases {
            let Some(text) = read_optional(&file.path) else {
                continue;
            };
            let parsed = leases::parse(file.format, &text);
            if parsed.malformed > 0 {
                tracing::debug!(
                    path = %file.path.display(),
                    lines = parsed.malformed,
                    "skipped unreadable lease lines"
                );
            }
            malformed += parsed.malformed;
            // Later leases override earlier ones: ISC's file is a log, newest last.
            for lease in parsed.leases {
                let name: Option<Arc<str>> = lease.name.as_deref().map(Into::into);
                if let (Some(mac), Some(name)) = (lease.mac, &name) {
                    learnt.name_by_mac.insert(mac, name.clone());
                }
                if let (Some(ip), Some(name)) = (lease.ip, name) {
                    learnt.name_by_ip.insert(ip, name);
                }
                if let (Some(ip), Some(mac)) = (lease.ip, lease.mac) {
                    learnt.mac_by_ip.insert(ip, mac);
                }
            }
        }
        if let Some(n) = &self.neighbours {
            // After the leases: the kernel's table is current, a lease may be stale.
            let kernel = n.netlink.then(|| netlink::neighbours(NETLINK_TIMEOUT));
            let pairs = match kernel {
                Some(Ok(pairs)) => pairs,
                other => {
                    if let Some(Err(e)) = other {
                        tracing::debug!(error = %e, "no rtnetlink: reading /proc/net/arp and ip -6 neigh");
                    }
                    let mut pairs = neigh::read_arp(&n.arp);
                    if let Some(ip) = &n.ip_program {
                        pairs.extend(neigh::read_ip6_neigh(ip));
                    }
                    pairs
                }
            };
            for (ip, mac) in pairs {
                learnt.mac_by_ip.insert(ip.to_canonical(), mac);
            }
        }
        let before = self.malformed.swap(malformed, Ordering::Relaxed);
        if malformed != before && malformed > 0 {
            // Only on change: the same bad lines every 30 s would drown the log.
            tracing::warn!(lines = malformed, "lease files have unreadable lines");
        }
        tracing::debug!(
            macs = learnt.mac_by_ip.len(),
            names = learnt.name_by_mac.len() + learnt.name_by_ip.len(),
            "read the neighbour tables and leases"
        );
        self.learnt.store(Arc::new(learnt));
    }

    /// Lease-file lines skipped as unreadable at the last refresh.
    #[cfg(test)]
    pub(crate) fn malformed_lease_lines(&self) -> usize {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Refresh now, then again at the first query once the tables are `refresh` old,
    /// until `shutdown`, as a task on `on` (the server's housekeeping thread, so its
    /// timer is not the DNS workers'); each time on the blocking pool so no runtime's
    /// thread waits on files or `ip`.
    ///
    /// The tables serve `identify` and nothing else, so an idle server reads no file
    /// and runs no `ip` (issue 16: a 30 s tick cost a thread and a process each time).
    /// The query that wakes the refresher is identified from the tables as they were:
    /// under steady traffic they are at most `refresh` plus the gap between two
    /// queries old, as with the tick; after a quiet spell, as old as the spell.
    pub(crate) fn spawn_refresher(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        on: &tokio::runtime::Handle,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        on.spawn(async move {
            loop {
                let c = Arc::clone(&me);
                if let Err(e) = tokio::task::spawn_blocking(move || c.refresh_now()).await {
                    tracing::warn!(error = %e, "client table refresh failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(me.refresh) => {}
                }
                // A query after this wakes the wait (a stored permit if it comes first).
                me.parked.store(true, Ordering::Relaxed);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = me.wake.notified() => {}
                }
            }
        })
    }
}

/// The text of `path`, or `None` when it does not exist (that DHCP server is not in
/// use). Other errors are logged: the file is there but we cannot read it.
fn read_optional(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read lease file");
            None
        }
    }
}

#[cfg(test)]
mod tests;

/// The key string of a device, reused per thread: formatting an address costs more
/// than the rest of `identify`, and a household has a few dozen keys at most.
fn device_key(mac: Option<Mac>, addr: IpAddr) -> DeviceKey {
    use std::cell::RefCell;
    type Keys = rustc_hash::FxHashMap<(Option<Mac>, IpAddr), DeviceKey>;
    thread_local! {
        static KEYS: RefCell<Keys> = RefCell::new(Default::default());
    }
    // With a MAC the address is not part of the key.
    let slot = (
        mac,
        if mac.is_some() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            addr
        },
    );
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(k) = keys.get(&slot) {
            return k.clone();
        }
        let key = match mac {
            Some(m) => DeviceKey::from_mac(m),
            None => DeviceKey::from_addr(addr),
        };
        // Bounded under a flood of spoofed sources.
        if keys.len() >= 4096 {
            keys.clear();
        }
        keys.insert(slot, key.clone());
        key
    })
}
