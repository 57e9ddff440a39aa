//! A household LAN the test makes with a real DHCP server: dnsmasq hands the phone its
//! IPv4 lease and host name, the phone later takes a new IPv6 (privacy) address, and
//! that address's very first query gets the phone's group; the phone stays one device,
//! under its DHCP name, in `metaguard devices` and in the report.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The phone's MAC; the config puts it in `kids` by this MAC alone, without a name.
const MAC: &str = "02:00:00:00:00:42";
/// The host name dnsmasq gives it (`--dhcp-host`), so it comes from DHCP.
const HOST: &str = "kids-tablet";
/// The new address the phone takes once metaguard already knows it.
const PRIVACY: &str = "2001:db8::a1b2:c3d4";

/// In the test's network namespace (the router): a veth to the phone's namespace,
/// dnsmasq's DHCP server (no DNS: `--port=0`), the phone's lease through busybox
/// `udhcpc`, its first IPv6 address known to the router (one ping), then `serve`
/// (neighbour refresh every hour: only the lookup on a miss can learn the new
/// address). The phone asks once over IPv4 and once from its first IPv6 address,
/// then adds the privacy address (with duplicate address detection, like a phone,
/// which teaches the router nothing) and asks twice from it. Exit 77: no DHCP here.
const SCRIPT: &str = r#"
set -e
ip link set lo up
unshare -n sleep 60 & phone=$!
until [ "$(readlink /proc/$phone/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do :; done
P="nsenter -t $phone -n"
ip link add v0 type veth peer name v1
ip link set v1 netns $phone
ip addr add 192.168.77.1/24 dev v0
ip -6 addr add 2001:db8::1/64 dev v0 nodad
ip link set v0 up
dnsmasq --no-daemon --port=0 --conf-file=/dev/null --pid-file= --user=root \
  --interface=v0 --bind-interfaces --dhcp-range=192.168.77.50,192.168.77.99,1h \
  --dhcp-host="$MAC,$HOST" --dhcp-leasefile="$LEASES" 2>"$DIR/dnsmasq.log" & dm=$!
$P ip link set lo up
$P ip link set v1 address "$MAC"
$P ip -6 addr add 2001:db8::2/64 dev v1 nodad
$P ip link set v1 up
if ! $P busybox udhcpc -i v1 -q -n -t 10 -T 1 -s "$DIR/udhcpc.sh" >"$DIR/udhcpc.log" 2>&1; then
  kill $dm $phone
  echo "no DHCP lease:"; cat "$DIR/udhcpc.log" "$DIR/dnsmasq.log"; exit 77
fi
n=0; until grep -q " $MAC .* $HOST " "$LEASES" 2>/dev/null; do
  n=$((n+1)); [ $n -lt 200 ] || { echo "no lease line"; exit 1; }; sleep 0.05; done
$P busybox ping -6 -c1 -W3 2001:db8::1 >/dev/null
"$BIN" serve --config "$CFG" 2>"$LOG" & mg=$!
n=0; until grep -q "read the neighbour tables and leases" "$LOG" && grep -q "listening on" "$LOG"; do
  kill -0 $mg; n=$((n+1)); [ $n -lt 400 ] || { echo "serve did not start"; cat "$LOG"; exit 1; }; sleep 0.05; done
ask() { $P dig -p 5353 +tries=1 +time=3 "$@" www.meta.ai AAAA >>"$OUT" 2>&1 || true; }
echo "=== v4" >>"$OUT"; ask @192.168.77.1
echo "=== v6" >>"$OUT"; ask @2001:db8::1
$P ip -6 addr add "$PRIVACY/64" dev v1
n=0; while $P ip -6 addr show dev v1 tentative | grep -q inet6; do
  n=$((n+1)); [ $n -lt 200 ] || { echo "DAD did not end"; exit 1; }; sleep 0.05; done
echo "=== privacy" >>"$OUT"; ask -b "$PRIVACY" @2001:db8::1
echo "=== privacy again" >>"$OUT"; ask -b "$PRIVACY" @2001:db8::1
kill $mg; wait $mg || true
kill $dm $phone; wait $dm $phone || true
cat "$LOG"; echo "=== dig"; cat "$OUT"
"#;

/// Applies the lease as a DHCP client's hook would (busybox's own script is in the
/// `udhcpc` package; only the address matters here).
const UDHCPC_HOOK: &str =
    "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n";

/// Whether busybox has the applets the script uses.
fn busybox_has(applets: &[&str]) -> bool {
    let Ok(out) = Command::new("busybox").arg("--list").output() else {
        return false;
    };
    let list = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = (applets.iter().copied())
        .filter(|a| !list.lines().any(|l| l == *a))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: busybox has no {}", missing.join(", "));
    }
    missing.is_empty()
}

fn run(args: &[&str], db: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_dhcp_phone_new_privacy_address_is_blocked_at_once_and_one_named_device() {
    if !tools::installed(&["unshare", "nsenter", "ip", "dig", "dnsmasq", "busybox"])
        || !busybox_has(&["udhcpc", "ping"])
        || !tools::netns_possible()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cfg, db, leases) = (d.join("m.toml"), d.join("m.db"), d.join("dnsmasq.leases"));
    let hook = d.join("udhcpc.sh");
    std::fs::write(&hook, UDHCPC_HOOK).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"0.0.0.0:5353\", \"[::]:5353\"]\n\
             allow_clients = [\"192.168.77.0/24\", \"2001:db8::/64\"]\n\
             [upstream]\nservers = [\"127.0.0.1:9\"]\n[filter]\nlists_dir = \"/nonexistent\"\n\
             [store]\ndb = {db:?}\nbatch_interval = \"10ms\"\n\
             [clients]\nneighbours = true\nrefresh = \"1h\"\n\
             leases = [{{ path = {leases:?}, format = \"dnsmasq\" }}]\n\
             [groups.kids]\nmeta-ai = \"block\"\n\
             [[devices]]\nmatch = [\"{MAC}\"]\ngroup = \"kids\"\n",
        ),
    )
    .unwrap();
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", SCRIPT])
        .env("BIN", BIN)
        .env("CFG", &cfg)
        .env("DIR", d)
        .env("LEASES", &leases)
        .env("LOG", d.join("serve.log"))
        .env("OUT", d.join("dig.out"))
        .env("MAC", MAC)
        .env("HOST", HOST)
        .env("PRIVACY", PRIVACY)
        .env("RUST_LOG", "info,metaguard::clients=debug")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.code() == Some(77) {
        eprintln!("skipped: the phone got no DHCP lease here: {text}");
        return;
    }
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (log, digs) = text.split_once("=== dig").unwrap();
    // Only the privacy address was new to metaguard, and only its first query asked
    // the kernel; the figure for docs/performance.md.
    let asked: Vec<&str> = (log.lines())
        .filter(|l| l.contains("asked the kernel"))
        .collect();
    assert!(
        asked.len() == 1 && asked[0].contains(&format!("ip={PRIVACY} found=true")),
        "{text}"
    );
    eprintln!("{}", asked[0]);
    // Each query blocked (the kids' group): the upstream is unreachable, so one that
    // escaped the group would be forwarded and come back SERVFAIL.
    for (from, answer) in digs
        .split("=== ")
        .skip(1)
        .filter_map(|s| s.split_once('\n'))
    {
        assert!(answer.contains("status: NOERROR"), "{from}: {text}");
        assert!(
            answer
                .lines()
                .any(|l| l.starts_with("www.meta.ai.") && l.trim_end().ends_with("::")),
            "{from}: {text}"
        );
    }
    assert_eq!(digs.matches("=== ").count(), 4, "{text}");

    // One device, by its MAC, named by its lease, with all three addresses.
    let devices = run(&["devices", "--format", "json"], &db);
    let rows: Vec<serde_json::Value> = (devices.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{devices}");
    let dev = &rows[0];
    assert_eq!(dev["key"], format!("mac:{MAC}"), "{devices}");
    assert_eq!(
        (&dev["name"], &dev["group"]),
        (&HOST.into(), &"kids".into()),
        "{devices}"
    );
    let addrs = dev["addrs"].as_array().unwrap();
    assert_eq!(addrs.len(), 3, "{devices}");
    for a in ["2001:db8::2", PRIVACY] {
        assert!(addrs.iter().any(|x| x == a), "{a}: {devices}");
    }
    assert!(
        addrs
            .iter()
            .any(|x| x.as_str().unwrap().starts_with("192.168.77.")),
        "{devices}"
    );

    // The report of yesterday and today (local dates, as the report's; a run at
    // midnight is covered too).
    let date = |when: &str| {
        let out = Command::new("date")
            .args(["-d", when, "+%F"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (since, until) = (date("yesterday"), date("today"));
    let report = run(
        &[
            "report", "--since", &since, "--until", &until, "--format", "json",
        ],
        &db,
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{report}");
    let r = &devices[0];
    assert_eq!(
        (&r["name"], &r["group"], &r["meta_lookups"], &r["blocked"]),
        (&HOST.into(), &"kids".into(), &4.into(), &4.into()),
        "{report}"
    );
}
