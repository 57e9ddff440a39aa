//! `[bypass]` over real sockets: the Firefox canary and iCloud Private Relay get
//! NXDOMAIN, DDR gets NODATA, a public resolver's host is forwarded and logged as
//! `bypass`; each default turned off forwards its names; the report (JSON, HTML) and
//! `metaguard devices` name the device and the names.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use metaguard::config::Config;
use rusqlite::Connection;

const NAMES: [&str; 4] = [
    "use-application-dns.net",
    "mask.icloud.com",
    "_dns.resolver.arpa",
    "dns.google",
];

/// An upstream that has an address for every name of [`NAMES`], and a config that names
/// the device at 127.0.0.1 "laptop", with the `[bypass]` and `[filter] block` of `extra`.
async fn setup(extra: &str) -> (Upstream, Config) {
    let up = Upstream::start().await;
    for (i, n) in NAMES.iter().enumerate() {
        up.set(
            n,
            Behaviour::Records(vec![a(&format!("{n}."), [198, 51, 100, i as u8], 60)]),
        );
    }
    let mut c = config(&up);
    let file = Config::parse(
        &format!("{extra}\n[[devices]]\nname = \"laptop\"\nmatch = [\"127.0.0.1\"]\n"),
        std::path::Path::new("bypass-test.toml"),
    )
    .expect("the test config parses");
    c.bypass = file.bypass;
    c.filter.block = file.filter.block;
    c.devices = file.devices;
    (up, c)
}

fn has_soa(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)))
}

/// (name, category) of every hit in the log.
fn hits(db: &std::path::Path) -> Vec<(String, String)> {
    let c = Connection::open(db).unwrap();
    let mut s = c
        .prepare(
            "SELECT n.name, c.name FROM hits h JOIN names n ON n.id = h.name_id
             JOIN categories c ON c.id = h.category_id ORDER BY h.id",
        )
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Today's report (UTC) of `db` in `format`, from `metaguard report`.
fn report(db: &std::path::Path, format: &str) -> String {
    let today = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date()
        .to_string();
    stdout_ok(
        std::process::Command::new(BIN)
            .env("TZ", "UTC")
            .args([
                "report", "--since", &today, "--until", &today, "--format", format,
            ])
            .arg("--db")
            .arg(db),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn canaries_ddr_and_public_resolvers_by_default_and_the_evidence_in_the_report() {
    let (up, c) = setup("").await;
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let o = Q::default();

    // The canary and Private Relay: NXDOMAIN with an SOA, over UDP and TCP, any type.
    for (name, qtype) in [
        ("use-application-dns.net.", RecordType::A),
        ("Use-Application-DNS.net.", RecordType::AAAA),
        ("mask.icloud.com.", RecordType::A),
        ("mask-h2.icloud.com.", RecordType::HTTPS),
    ] {
        for m in [
            udp(addr, name, qtype, o).await,
            tcp(addr, name, qtype, o).await,
        ] {
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.answers.is_empty() && has_soa(&m), "{name}: {m:?}");
        }
    }
    // DDR: NODATA (NOERROR, no answer, an SOA) for the SVCB question and the zone below.
    for (name, qtype) in [
        ("_dns.resolver.arpa.", RecordType::SVCB),
        ("_dns.resolver.arpa.", RecordType::A),
        ("resolver.arpa.", RecordType::SOA),
    ] {
        let m = udp(addr, name, qtype, o).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty() && has_soa(&m), "{name} {qtype}: {m:?}");
    }
    for n in [
        "use-application-dns.net",
        "mask.icloud.com",
        "_dns.resolver.arpa",
    ] {
        assert_eq!(up.hits(n), 0, "{n} reached the upstream");
    }
    // A public resolver's host: forwarded, answered as the upstream says.
    let m = udp(addr, "dns.google.", RecordType::A, o).await;
    assert_eq!(ips(&m), ["198.51.100.3"]);
    tcp(addr, "dns.google.", RecordType::A, o).await;
    assert_eq!(up.hits("dns.google"), 1, "the second answer is cached");
    // Not Meta, not a bypass name.
    udp(addr, "www.example.com.", RecordType::A, o).await;
    srv.stop().await;

    // Every lookup of those names is a `bypass` hit, nothing else is.
    let logged = hits(&db);
    assert!(!logged.is_empty());
    assert!(logged.iter().all(|(_, c)| c == "bypass"), "{logged:?}");
    for n in NAMES {
        assert!(
            logged.iter().any(|(h, _)| h == n),
            "{n} not logged: {logged:?}"
        );
    }
    assert_eq!(logged.iter().filter(|(h, _)| h == "dns.google").count(), 2);

    // The report: the device may bypass metaguard, with the names and how often; the
    // bypass lookups are not Meta lookups.
    let v = json(&report(&db, "json"));
    assert_eq!(
        v["household"]["meta_lookups"], 0,
        "bypass lookups are not Meta"
    );
    let dev = &v["bypass"]["devices"][0];
    assert_eq!(dev["device"], "laptop", "{v:#}");
    assert_eq!(v["bypass"]["lookups"], logged.len());
    let names = dev["names"].as_array().unwrap();
    let google = names.iter().find(|n| n["domain"] == "dns.google").unwrap();
    assert_eq!(google["lookups"], 2);
    assert!(
        names
            .iter()
            .any(|n| n["domain"] == "use-application-dns.net")
    );
    assert!(names.iter().any(|n| n["domain"] == "_dns.resolver.arpa"));
    let html = report(&db, "html");
    let section = &html[html.find("id=\"bypass\"").expect("a bypass section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("May bypass metaguard"), "{section}");
    assert!(section.contains("laptop"), "{section}");
    assert!(section.contains("dns.google (2)"), "{section}");
    assert!(section.contains("mask.icloud.com"), "{section}");
    for format in ["text", "markdown", "csv"] {
        let out = report(&db, format);
        assert!(
            out.contains("dns.google") || format == "csv",
            "{format:?}: {out}"
        );
        assert!(
            out.contains("laptop") && out.contains("bypass"),
            "{format:?}: {out}"
        );
    }

    // `metaguard devices`: the same evidence.
    let out = stdout_ok(
        std::process::Command::new(BIN)
            .arg("devices")
            .arg("--db")
            .arg(&db),
    );
    assert!(out.contains("MAY BYPASS"), "{out}");
    assert!(out.contains("dns.google (2)"), "{out}");
}

#[tokio::test]
async fn each_default_turned_off_forwards_its_names() {
    let (up, c) = setup("[bypass]\ncanaries = false\nddr = false\nlog_resolvers = false\n").await;
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for (i, n) in NAMES.iter().enumerate() {
        let m = udp(addr, &format!("{n}."), RecordType::A, Q::default()).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
        assert_eq!(ips(&m), [format!("198.51.100.{i}")], "{n}");
        assert_eq!(up.hits(n), 1, "{n} forwarded");
    }
    srv.stop().await;
    assert_eq!(hits(&db), [], "log_resolvers = false logs none of them");

    // Only canaries off: the canary is forwarded (and logged), DDR still answered here.
    let (up, c) = setup("[bypass]\ncanaries = false\n").await;
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    let m = udp(
        addr,
        "use-application-dns.net.",
        RecordType::A,
        Q::default(),
    )
    .await;
    assert_eq!(ips(&m), ["198.51.100.0"]);
    let m = udp(addr, "_dns.resolver.arpa.", RecordType::SVCB, Q::default()).await;
    assert!(m.answers.is_empty() && has_soa(&m));
    assert_eq!(up.hits("_dns.resolver.arpa"), 0);
    srv.stop().await;
    assert!(hits(&db).contains(&("use-application-dns.net".into(), "bypass".into())));
}

/// Only Meta counts as Meta: a `custom` block and a `bypass` lookup are in their own
/// sections, not in the Meta lookups or share; each category shows its real default.
#[tokio::test]
async fn only_meta_counts_as_meta_and_defaults_are_the_real_ones() {
    let (_up, c) = setup("[filter]\nblock = [\"ads.example\"]\n").await;
    let db = c.store.db.clone();
    let srv = serve(c).await;
    let addr = srv.addrs()[0];
    for name in [
        "ads.example.",          // custom: blocked, not Meta
        "ads.example.",          //
        "connect.facebook.net.", // pixel: blocked, Meta
        "www.meta.ai.",          // meta-ai: logged, Meta
        "dns.google.",           // bypass: logged, not Meta
        "www.example.com.",      // nothing
    ] {
        udp(addr, name, RecordType::A, Q::default()).await;
    }
    srv.stop().await;
    let v = json(&report(&db, "json"));
    let h = &v["household"];
    assert_eq!(h["meta_lookups"], 2, "{:#}", v["categories"]);
    assert_eq!(h["all_lookups"], 6);
    assert_eq!(h["meta_share_pct"], 33.3);
    let cats = |v: &serde_json::Value| -> Vec<(String, String, i64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap().to_string();
                (
                    s("category"),
                    s("default_action"),
                    c["total"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let want = |c: &str, a: &str, n| (c.to_string(), a.to_string(), n);
    assert_eq!(
        cats(&v["categories"]),
        [want("meta-ai", "log", 1), want("pixel", "block", 1)]
    );
    assert_eq!(v["other"]["lookups"], 2);
    assert_eq!(v["other"]["blocked"], 2);
    assert_eq!(
        cats(&v["other"]["categories"]),
        [want("custom", "block", 2)]
    );
    let d = &v["devices"][0];
    assert_eq!(d["name"], "laptop");
    assert_eq!(
        (&d["meta_lookups"], &d["other_lookups"]),
        (&2.into(), &2.into())
    );
    assert_eq!(d["other_top_domains"][0]["domain"], "ads.example");
    assert_eq!(v["bypass"]["lookups"], 1);
    let csv = report(&db, "csv");
    assert!(
        csv.lines()
            .any(|l| l.contains(",laptop,,custom,block,2,0,0,2")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",laptop,,bypass,log,0,1,0,1")),
        "{csv}"
    );
    let text = report(&db, "text");
    assert!(text.contains("Other trackers (not Meta)"), "{text}");
    assert!(text.contains("custom (block by default) 2"), "{text}");
    assert!(report(&db, "html").contains("id=\"other-trackers\""));
    let md = report(&db, "markdown");
    assert!(
        md.contains("## Other trackers (not Meta)") && md.contains("ads.example"),
        "{md}"
    );
}
