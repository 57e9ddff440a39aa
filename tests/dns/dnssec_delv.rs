//! A real validating client through metaguard: zones signed with `ldns-signzone` (one
//! with NSEC, one with NSEC3), served by NSD on loopback as metaguard's upstream, and
//! `delv` validating answers, referrals' glue and denials through metaguard from a
//! trust anchor of ours; then a tampered signature that `delv` must reject.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::tools::tool;
use crate::support::*;
use hickory_proto::rr::RecordType;

fn run(dir: &Path, cmd: &Path, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sign `zone` (its file is `zone`.zone in `dir`); the trust anchor clause for delv.
fn sign(dir: &Path, zone: &str, nsec3: bool) -> String {
    let text = format!(
        "$ORIGIN {zone}.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster 1 3600 600 86400 60\n\
         @ IN NS ns1\nns1 IN A 192.0.2.53\n\
         www IN A 192.0.2.80\n\
         @ IN MX 10 mail\nmail IN A 192.0.2.25\n\
         _sip._udp IN SRV 0 5 5060 sip\nsip IN A 192.0.2.60\n"
    );
    std::fs::write(dir.join(format!("{zone}.zone")), text).unwrap();
    let keygen = tool("ldns-keygen").unwrap();
    let key = run(dir, &keygen, &["-a", "ECDSAP256SHA256", "-k", zone]);
    let key = key.trim();
    let signzone = tool("ldns-signzone").unwrap();
    let file = format!("{zone}.zone");
    let mut args = vec![];
    if nsec3 {
        args.push("-n");
    }
    args.extend([file.as_str(), key]);
    run(dir, &signzone, &args);
    // "zone. IN DNSKEY 257 3 13 <base64> ;{id = ...}"
    let dnskey = std::fs::read_to_string(dir.join(format!("{key}.key"))).unwrap();
    let f: Vec<&str> = dnskey.split_whitespace().collect();
    assert_eq!(f[2], "DNSKEY", "{dnskey}");
    format!(
        "{zone}. static-key {} {} {} \"{}\";\n",
        f[3], f[4], f[5], f[6]
    )
}

/// NSD on 127.0.0.1:`port`, stopped (SIGTERM, then waited for) when dropped.
struct Nsd(Child);

impl Nsd {
    async fn start(dir: &Path, port: u16, zones: &[&str]) -> Nsd {
        let d = dir.display();
        let mut conf = format!(
            "server:\n  ip-address: 127.0.0.1\n  port: {port}\n  zonesdir: \"{d}\"\n  \
             pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
             zonelistfile: \"{d}/zone.list\"\n  xfrdir: \"{d}\"\n  database: \"\"\n  \
             username: \"\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n\
             remote-control:\n  control-enable: no\n"
        );
        for z in zones {
            conf.push_str(&format!(
                "zone:\n  name: {z}\n  zonefile: \"{d}/{z}.zone.signed\"\n"
            ));
        }
        std::fs::write(dir.join("nsd.conf"), conf).unwrap();
        let child = Command::new(tool("nsd").unwrap())
            .args(["-d", "-c"])
            .arg(dir.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsd starts");
        let nsd = Nsd(child);
        // Ready when it answers for each zone.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for z in zones {
            let q = query_bytes(&format!("{z}."), RecordType::SOA, Q::default());
            let mut ready = false;
            for _ in 0..100 {
                if ask_quickly(addr, &q).await {
                    ready = true;
                    break;
                }
            }
            let log = std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default();
            assert!(ready, "nsd did not answer for {z}: {log}");
        }
        nsd
    }
}

/// One UDP query, waiting at most 100 ms for any answer.
async fn ask_quickly(addr: SocketAddr, q: &[u8]) -> bool {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(q, addr).await.unwrap();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf))
        .await
        .is_ok_and(|r| r.is_ok())
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its server and xfrd children.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Run delv through metaguard with our trust anchors, rooted at `zone`.
async fn delv(dir: &Path, via: SocketAddr, zone: &str, qname: &str, qtype: &str) -> String {
    let out = tokio::process::Command::new(tool("delv").unwrap())
        .arg(format!("@{}", via.ip()))
        .args(["-p", &via.port().to_string(), "-a"])
        .arg(dir.join("anchors"))
        .arg(format!("+root={zone}"))
        .args([qname, qtype])
        .output()
        .await
        .expect("delv runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("delv {qname} {qtype}:\n{text}");
    text
}

async fn metaguard_for(nsd_port: u16) -> (Upstream, metaguard::server::Running) {
    // The in-process upstream only lends its scratch directory; NSD is the upstream.
    let scratch = Upstream::start().await;
    let mut c = config(&scratch);
    c.upstream.servers = vec![format!("127.0.0.1:{nsd_port}").parse().unwrap()];
    let srv = serve(c).await;
    (scratch, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_through_metaguard_and_rejects_a_tampered_signature() {
    if !tools::installed(&["nsd", "delv", "ldns-keygen", "ldns-signzone"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zones = ["nsec.test", "nsec3.test"];
    let mut anchors = String::from("trust-anchors {\n");
    anchors.push_str(&sign(d, zones[0], false));
    anchors.push_str(&sign(d, zones[1], true));
    anchors.push_str("};\n");
    std::fs::write(d.join("anchors"), anchors).unwrap();

    let port = free_port();
    let nsd = Nsd::start(d, port, &zones).await;
    let (_scratch, srv) = metaguard_for(port).await;
    let via = srv.addrs()[0];
    for zone in zones {
        for (qname, qtype) in [
            (format!("www.{zone}"), "A"),
            (zone.to_string(), "MX"),
            (format!("_sip._udp.{zone}"), "SRV"),
            (zone.to_string(), "DNSKEY"),
        ] {
            // Twice: from NSD, then from metaguard's cache.
            for _ in 0..2 {
                let out = delv(d, via, zone, &qname, qtype).await;
                assert!(out.contains("; fully validated"), "{qname} {qtype}: {out}");
                assert!(out.contains("RRSIG"), "{out}");
            }
        }
        // Denial of existence: NSEC in one zone, NSEC3 in the other.
        for _ in 0..2 {
            let out = delv(d, via, zone, &format!("nope.{zone}"), "A").await;
            assert!(out.contains("negative response, fully validated"), "{out}");
            let proof = if zone == "nsec.test" {
                " NSEC "
            } else {
                " NSEC3 "
            };
            assert!(out.contains(proof), "{out}");
            let out = delv(d, via, zone, &format!("www.{zone}"), "TXT").await;
            assert!(out.contains("negative response, fully validated"), "{out}");
        }
    }
    srv.stop().await;
    drop(nsd);

    // Tamper with www's A signature in one zone (a base64 character of the signature).
    let file = d.join("nsec.test.zone.signed");
    let signed = std::fs::read_to_string(&file).unwrap();
    let mut tampered = false;
    let lines: Vec<String> = signed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !tampered
                && f.len() > 5
                && f[0] == "www.nsec.test."
                && f[3] == "RRSIG"
                && f[4] == "A"
            {
                tampered = true;
                let mut l = l.to_string();
                let at = l.len() - 10;
                let c = if &l[at..at + 1] == "A" { "B" } else { "A" };
                l.replace_range(at..at + 1, c);
                l
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(tampered, "no RRSIG for www A in {signed}");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let _nsd = Nsd::start(d, port, &zones).await;
    let (_scratch, srv) = metaguard_for(port).await;
    let via = srv.addrs()[0];
    let out = delv(d, via, "nsec.test", "www.nsec.test", "A").await;
    assert!(!out.contains("fully validated"), "{out}");
    assert!(out.contains("resolution failed"), "{out}");
    // The untouched records still validate.
    let out = delv(d, via, "nsec.test", "mail.nsec.test", "A").await;
    assert!(out.contains("; fully validated"), "{out}");
    srv.stop().await;
}
