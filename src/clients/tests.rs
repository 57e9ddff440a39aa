//! Identity from config devices, EDNS, fixture neighbour tables and lease files.

use super::*;
use hickory_proto::rr::rdata::opt::EdnsOption;

const PHONE: &str = "aa:bb:cc:dd:ee:01";

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn devices(toml_text: &str) -> Vec<DeviceConfig> {
    #[derive(Deserialize)]
    struct D {
        devices: Vec<DeviceConfig>,
    }
    toml::from_str::<D>(toml_text).unwrap().devices
}

/// No lease files and no neighbour tables: only what a test adds.
fn bare() -> ClientsConfig {
    ClientsConfig {
        leases: vec![],
        neighbours: false,
        refresh: Duration::from_secs(30),
        // Every source may name its device here; trust itself is tested end to end
        // (`hitlog::edns_identity_is_believed_only_from_trusted_forwarders`).
        trust_edns_from: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
    }
}

fn edns_mac(m: Mac) -> Edns {
    let mut e = Edns::new();
    e.options_mut()
        .insert(EdnsOption::Unknown(EDNS_MAC_RAW, m.0.to_vec()));
    e
}

#[test]
fn unknown_client_is_keyed_by_canonical_source() {
    let c = Clients::new(&[], &bare()).unwrap();
    let id = c.identify(ip("::ffff:192.168.1.5"), None);
    assert_eq!(id.key.as_str(), "ip:192.168.1.5");
    assert_eq!(id.addr, ip("192.168.1.5"));
    assert_eq!((id.mac, id.name, id.group), (None, None, None));
}

#[test]
fn config_mac_makes_v4_and_v6_one_device_with_group() {
    let d = devices(&format!(
        "[[devices]]\nname = \"phone\"\nmatch = [\"{PHONE}\", \"192.168.1.23\"]\ngroup = \"kids\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let arp = dir.path().join("arp");
    std::fs::write(
        &arp,
        format!(
            "IP address HW type Flags HW address Mask Device\n\
             192.168.1.23 0x1 0x2 {PHONE} * eth0\n"
        ),
    )
    .unwrap();
    let ndp = dir.path().join("ip");
    // A stand-in for iproute2 that prints a fixed IPv6 neighbour table.
    std::fs::write(
        &ndp,
        format!("#!/bin/sh\necho 'fd00::23 dev eth0 lladdr {PHONE} REACHABLE'\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ndp, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut c = Clients::new(&d, &bare()).unwrap();
    c.neighbours = Some(NeighbourSources {
        netlink: false,
        arp,
        ip_program: Some(ndp),
    });
    c.refresh_now();
    let v4 = c.identify(ip("192.168.1.23"), None);
    let v6 = c.identify(ip("fd00::23"), None);
    assert_eq!(v4.key.as_str(), format!("mac:{PHONE}"));
    assert_eq!(v4.key, v6.key);
    assert_eq!(v6.mac, Some(mac(PHONE)));
    assert_eq!(v6.name.as_deref(), Some("phone"));
    assert_eq!(v6.group.as_deref(), Some("kids"));
    assert_eq!(v4.addr, ip("192.168.1.23"));
    assert_eq!(v6.addr, ip("fd00::23"));
}

#[test]
fn leases_make_v4_and_v6_one_device_and_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = dir.path().join("dnsmasq.leases");
    std::fs::write(
        &dnsmasq,
        format!(
            "1718000000 {PHONE} 192.168.1.23 anna-phone *\n\
             this line is not a lease\n\
             1718000000 1234 fd00::23 anna-phone 00:03:00:01:{PHONE}\n"
        ),
    )
    .unwrap();
    let cfg = ClientsConfig {
        leases: vec![
            LeaseFile {
                path: dnsmasq,
                format: LeaseFormat::Dnsmasq,
            },
            LeaseFile {
                path: dir.path().join("missing"),
                format: LeaseFormat::Isc,
            },
        ],
        ..bare()
    };
    let c = Clients::new(&[], &cfg).unwrap();
    c.refresh_now();
    assert_eq!(c.malformed_lease_lines(), 1);
    let v4 = c.identify(ip("192.168.1.23"), None);
    let v6 = c.identify(ip("fd00::23"), None);
    assert_eq!(v4.key.as_str(), format!("mac:{PHONE}"));
    assert_eq!(v6.key, v4.key);
    assert_eq!(v4.name.as_deref(), Some("anna-phone"));
    assert_eq!(v6.name.as_deref(), Some("anna-phone"));
    assert_eq!(v6.group, None);
}

/// A `[[devices]]` entry without a name puts the device in its group and leaves its
/// name to the leases; a named entry's name wins over the lease's.
#[test]
fn a_device_without_a_name_in_the_config_is_named_by_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = one_lease(dir.path());
    std::fs::write(
        &path,
        format!("1718000000 {PHONE} 192.168.1.23 anna-phone *\n"),
    )
    .unwrap();
    let unnamed = devices(&format!(
        "[[devices]]\nmatch = [\"{PHONE}\"]\ngroup = \"kids\"\n"
    ));
    assert_eq!(unnamed[0].label(), PHONE);
    let c = Clients::new(&unnamed, &cfg).unwrap();
    c.refresh_now();
    let d = c.identify(ip("192.168.1.23"), None);
    assert_eq!(
        (d.name.as_deref(), d.group.as_deref()),
        (Some("anna-phone"), Some("kids"))
    );
    let named = devices(&format!(
        "[[devices]]\nname = \"tablet\"\nmatch = [\"{PHONE}\"]\ngroup = \"kids\"\n"
    ));
    let c = Clients::new(&named, &cfg).unwrap();
    c.refresh_now();
    let d = c.identify(ip("192.168.1.23"), None);
    assert_eq!(d.name.as_deref(), Some("tablet"));
}

#[test]
fn exact_ip_beats_cidr_and_narrow_cidr_beats_wide() {
    let d = devices(
        "[[devices]]\nname = \"lan\"\nmatch = [\"192.168.1.0/24\"]\ngroup = \"adults\"\n\
         [[devices]]\nname = \"kids-room\"\nmatch = [\"192.168.1.0/28\"]\ngroup = \"kids\"\n\
         [[devices]]\nname = \"tv\"\nmatch = [\"192.168.1.5\"]\n",
    );
    let c = Clients::new(&d, &bare()).unwrap();
    let who = |s: &str| {
        let id = c.identify(ip(s), None);
        (
            id.name.as_deref().map(str::to_string),
            id.group.as_deref().map(str::to_string),
        )
    };
    assert_eq!(who("192.168.1.5"), (Some("tv".into()), None));
    assert_eq!(
        who("192.168.1.6"),
        (Some("kids-room".into()), Some("kids".into()))
    );
    assert_eq!(
        who("192.168.1.200"),
        (Some("lan".into()), Some("adults".into()))
    );
    assert_eq!(who("10.0.0.1"), (None, None));
}

#[test]
fn mac_beats_exact_ip() {
    let d = devices(&format!(
        "[[devices]]\nname = \"by-ip\"\nmatch = [\"192.168.1.23\"]\n\
         [[devices]]\nname = \"by-mac\"\nmatch = [\"{PHONE}\"]\ngroup = \"kids\"\n"
    ));
    let mut c = Clients::new(&d, &bare()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let arp = dir.path().join("arp");
    std::fs::write(
        &arp,
        format!("header\n192.168.1.23 0x1 0x2 {PHONE} * eth0\n"),
    )
    .unwrap();
    c.neighbours = Some(NeighbourSources {
        netlink: false,
        arp,
        ip_program: None,
    });
    c.refresh_now();
    let id = c.identify(ip("192.168.1.23"), None);
    assert_eq!(id.name.as_deref(), Some("by-mac"));
    assert_eq!(id.group.as_deref(), Some("kids"));
}

#[test]
fn edns_mac_beats_neighbour_table_and_ignores_forwarder_address() {
    let d = devices(&format!(
        "[[devices]]\nname = \"router\"\nmatch = [\"192.168.1.1\"]\ngroup = \"adults\"\n\
         [[devices]]\nname = \"phone\"\nmatch = [\"{PHONE}\"]\ngroup = \"kids\"\n"
    ));
    let mut c = Clients::new(&d, &bare()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let arp = dir.path().join("arp");
    // The forwarder's own MAC, which the kernel knows for its address.
    std::fs::write(
        &arp,
        "header\n192.168.1.1 0x1 0x2 02:00:00:00:00:01 * eth0\n",
    )
    .unwrap();
    c.neighbours = Some(NeighbourSources {
        netlink: false,
        arp,
        ip_program: None,
    });
    c.refresh_now();
    let id = c.identify(ip("192.168.1.1"), Some(&edns_mac(mac(PHONE))));
    assert_eq!(id.key.as_str(), format!("mac:{PHONE}"));
    assert_eq!(id.group.as_deref(), Some("kids"));
    assert_eq!(id.addr, ip("192.168.1.1"));

    // An unconfigured device behind the forwarder is not the forwarder's device.
    let other = mac("aa:bb:cc:dd:ee:99");
    let id = c.identify(ip("192.168.1.1"), Some(&edns_mac(other)));
    assert_eq!(id.key.as_str(), format!("mac:{other}"));
    assert_eq!((id.name, id.group), (None, None));

    // Without the option the forwarder is itself.
    let id = c.identify(ip("192.168.1.1"), None);
    assert_eq!(id.key.as_str(), "mac:02:00:00:00:00:01");
    assert_eq!(id.name.as_deref(), Some("router"));
}

#[test]
fn each_lease_format_names_devices_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cfg = ClientsConfig {
        leases: vec![
            LeaseFile {
                path: write("dnsmasq", "1718000000 aa:bb:cc:00:00:01 10.0.0.1 one *\n"),
                format: LeaseFormat::Dnsmasq,
            },
            LeaseFile {
                path: write(
                    "isc",
                    "lease 10.0.0.2 {\n  hardware ethernet aa:bb:cc:00:00:02;\n  client-hostname \"two\";\n}\n",
                ),
                format: LeaseFormat::Isc,
            },
            LeaseFile {
                path: write(
                    "odhcpd",
                    "# br-lan aabbcc000003 ipv4 three 1718000000 a 32 10.0.0.3/32\n\
                     10.0.0.4\tfour.lan\tfour\n# cut\n",
                ),
                format: LeaseFormat::Odhcpd,
            },
        ],
        ..bare()
    };
    let c = Clients::new(&[], &cfg).unwrap();
    c.refresh_now();
    for (addr, name, key) in [
        ("10.0.0.1", "one", "mac:aa:bb:cc:00:00:01"),
        ("10.0.0.2", "two", "mac:aa:bb:cc:00:00:02"),
        ("10.0.0.3", "three", "mac:aa:bb:cc:00:00:03"),
        ("10.0.0.4", "four", "ip:10.0.0.4"),
    ] {
        let id = c.identify(ip(addr), None);
        assert_eq!((id.name.as_deref(), id.key.as_str()), (Some(name), key));
    }
    assert_eq!(c.malformed_lease_lines(), 1);
}

#[test]
fn duplicate_match_is_an_error() {
    let d = devices(
        "[[devices]]\nname = \"a\"\nmatch = [\"aa:bb:cc:dd:ee:ff\"]\n\
         [[devices]]\nname = \"b\"\nmatch = [\"AA-BB-CC-DD-EE-FF\"]\n",
    );
    let err = Clients::new(&d, &bare()).unwrap_err().to_string();
    assert!(err.contains("\"a\"") && err.contains("\"b\""), "{err}");
}

#[test]
fn match_entries_parse() {
    assert_eq!(
        "aa:bb:cc:dd:ee:ff".parse::<DeviceMatch>().unwrap(),
        DeviceMatch::Mac(mac("aa:bb:cc:dd:ee:ff"))
    );
    assert_eq!(
        "::ffff:10.0.0.1".parse::<DeviceMatch>().unwrap(),
        DeviceMatch::Ip(ip("10.0.0.1"))
    );
    assert!(matches!(
        "fd00::/64".parse::<DeviceMatch>().unwrap(),
        DeviceMatch::Net(_)
    ));
    for bad in ["192.168.1.5/24", "phone", "192.168.1.0/33", ""] {
        assert!(bad.parse::<DeviceMatch>().is_err(), "{bad}");
    }
}

/// A dnsmasq lease file in `dir` naming 10.0.0.1 "one", and a config that reads only it.
fn one_lease(dir: &Path) -> (PathBuf, ClientsConfig) {
    let path = dir.join("leases");
    std::fs::write(&path, "1718000000 aa:bb:cc:00:00:01 10.0.0.1 one *\n").unwrap();
    let cfg = ClientsConfig {
        leases: vec![LeaseFile {
            path: path.clone(),
            format: LeaseFormat::Dnsmasq,
        }],
        ..bare()
    };
    (path, cfg)
}

#[tokio::test]
async fn refresher_reads_at_start_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cfg) = one_lease(dir.path());
    let c = Arc::new(Clients::new(&[], &cfg).unwrap());
    let stop = CancellationToken::new();
    let task = c.spawn_refresher(stop.clone(), &tokio::runtime::Handle::current());
    for _ in 0..100 {
        if c.identify(ip("10.0.0.1"), None).name.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        c.identify(ip("10.0.0.1"), None).name.as_deref(),
        Some("one")
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_refresher_waits_for_a_query_and_is_woken_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = one_lease(dir.path());
    let c = Arc::new(Clients::new(&[], &cfg).unwrap());
    let stop = CancellationToken::new();
    let task = c.spawn_refresher(stop.clone(), &tokio::runtime::Handle::current());
    let name = |c: &Clients| c.learnt.load().name_by_ip.get(&ip("10.0.0.1")).cloned();
    // Read at start; then, with no query for whole periods, it parks (time is paused:
    // these sleeps only let the refresher's timers run).
    while name(&c).is_none() || !c.parked.load(Ordering::Relaxed) {
        tokio::time::sleep(cfg.refresh).await;
    }
    std::fs::write(&path, "1718000000 aa:bb:cc:00:00:01 10.0.0.1 two *\n").unwrap();
    tokio::time::sleep(cfg.refresh * 10).await;
    assert_eq!(name(&c).as_deref(), Some("one"), "no query: no refresh");
    // A query wakes it: the tables are read again at once.
    assert_eq!(
        c.identify(ip("10.0.0.1"), None).name.as_deref(),
        Some("one")
    );
    while name(&c).as_deref() != Some("two") {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.cancel();
    task.await.unwrap();
}

/// `clone_from` (how a spare hit event is refilled) gives what `clone` gives, from and to
/// any device, and leaves texts alone that both already share.
#[test]
fn clone_from_is_clone_and_keeps_shared_texts() {
    let named = Device {
        name: Some("phone".into()),
        group: Some("kids".into()),
        mac: Some(mac(PHONE)),
        configured: Some(0),
        ..Device::from_addr(ip("192.168.1.23"))
    };
    let bare = Device::from_addr(ip("fd00::5"));
    let devices = [named.clone(), bare.clone(), named.clone()];
    for from in &devices {
        for to in &devices {
            let mut spare = to.clone();
            spare.clone_from(from);
            assert_eq!(spare, *from);
            assert_eq!(spare.own_addr, from.own_addr);
        }
    }
    // The same texts: nothing is replaced (the pointers stay), so no count moves.
    let mut spare = named.clone();
    let (key, name) = (spare.key.as_str().as_ptr(), spare.name.clone().unwrap());
    let other = named.clone();
    spare.clone_from(&other);
    assert_eq!(spare.key.as_str().as_ptr(), key);
    assert!(Arc::ptr_eq(spare.name.as_ref().unwrap(), &name));
    // Equal texts that are not shared are taken from the source.
    let mut spare = named.clone();
    spare.clone_from(&Device {
        name: Some("phone".into()),
        ..named.clone()
    });
    assert!(!Arc::ptr_eq(spare.name.as_ref().unwrap(), &name));
}
