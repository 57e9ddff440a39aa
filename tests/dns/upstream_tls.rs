//! DNS-over-TLS and DNS-over-HTTPS upstreams against real servers on 127.0.0.1
//! (hickory-server's TLS and HTTP/2 listeners, a certificate made for the test), and
//! upstreams whose certificate comes from a private CA given as `[tls] ca_file`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::Server;
use metaguard::upstream::{UpstreamConfig, UpstreamSpec, Upstreams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support;
use crate::support::encrypted::{self, Fixed};
use crate::support::pki::provider;

/// A self-signed certificate for `dns.test`, the server config with `alpn`, and a client
/// config that trusts only that certificate.
fn tls_pair(alpn: &[u8]) -> (Arc<rustls::ServerConfig>, rustls::ClientConfig) {
    let ck = rcgen::generate_simple_self_signed(vec!["dns.test".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key: PrivateKeyDer<'static> =
        PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![alpn.to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), client)
}

/// Far enough that each attempt ends at its own timeout.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

async fn resolve_via(spec: &str, client: rustls::ClientConfig) -> Vec<Record> {
    let spec: UpstreamSpec = spec.parse().unwrap();
    let cfg = UpstreamConfig {
        attempt_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let ups = Upstreams::with_tls(&[spec], &cfg, client).unwrap();
    resolve_with(&ups).await
}

async fn resolve_with(ups: &Upstreams) -> Vec<Record> {
    let answer = ups
        .resolve(
            &Name::from_str("www.example.com.").unwrap(),
            RecordType::A,
            Default::default(),
            deadline(),
        )
        .await
        .expect("an answer over the encrypted upstream");
    answer.answers
}

fn a_records(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dns_over_tls_upstream_answers() {
    let (server_cfg, client) = tls_pair(b"dot");
    let (addr, mut server) = encrypted::dot(server_cfg).await;
    let records = resolve_via(&format!("tls://{addr}#dns.test"), client).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

#[tokio::test]
async fn dns_over_https_upstream_answers() {
    let (server_cfg, client) = tls_pair(b"h2");
    let (addr, mut server) = encrypted::doh(server_cfg).await;
    let records = resolve_via(&format!("https://{addr}/dns-query#dns.test"), client).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

#[tokio::test]
async fn dns_over_tls_refuses_an_untrusted_certificate() {
    let (server_cfg, _) = tls_pair(b"dot");
    let (_, other_client) = tls_pair(b"dot"); // trusts a different certificate
    let (addr, mut server) = encrypted::dot(server_cfg).await;
    let spec: UpstreamSpec = format!("tls://{addr}#dns.test").parse().unwrap();
    let cfg = UpstreamConfig {
        attempt_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let ups = Upstreams::with_tls(&[spec], &cfg, other_client).unwrap();
    let r = ups
        .resolve(
            &Name::from_str("www.example.com.").unwrap(),
            RecordType::A,
            Default::default(),
            deadline(),
        )
        .await;
    assert!(
        r.is_err(),
        "a certificate we do not trust must not be accepted: {r:?}"
    );
    server.shutdown_gracefully().await.ok();
}

/// A DoT (`https: false`) or DoH server on 127.0.0.1 whose certificate for `dns.test` is
/// signed by `ca`. Returns the upstream spec.
async fn private_ca_server(ca: &support::pki::PrivateCa, https: bool) -> (String, Server<Fixed>) {
    if https {
        let (addr, server) = encrypted::doh(ca.server_config(&["dns.test"], &[b"h2"])).await;
        (format!("https://{addr}/dns-query#dns.test"), server)
    } else {
        let (addr, server) = encrypted::dot(ca.server_config(&["dns.test"], &[b"dot"])).await;
        (format!("tls://{addr}#dns.test"), server)
    }
}

fn upstreams(spec: &str, tls: &metaguard::tls::TlsConfig) -> Upstreams {
    let cfg = UpstreamConfig {
        attempt_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    Upstreams::new(&[spec.parse().unwrap()], &cfg, tls).unwrap()
}

#[tokio::test]
async fn dot_upstream_with_a_private_ca_answers_once_ca_file_is_set() {
    let ca = support::pki::PrivateCa::new();
    let (spec, mut server) = private_ca_server(&ca, false).await;
    let records = resolve_with(&upstreams(&spec, &ca.tls_config())).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

#[tokio::test]
async fn doh_upstream_with_a_private_ca_answers_once_ca_file_is_set() {
    let ca = support::pki::PrivateCa::new();
    let (spec, mut server) = private_ca_server(&ca, true).await;
    let records = resolve_with(&upstreams(&spec, &ca.tls_config())).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

/// The log lines of a test, captured by a tracing subscriber of its own.
#[derive(Clone, Default)]
struct Captured(Arc<(std::sync::Mutex<Vec<u8>>, tokio::sync::Notify)>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.0.lock().unwrap().extend_from_slice(b);
        self.0.1.notify_one();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines containing `needle`, once there is at least one (within 10 s).
    async fn wait_for(&self, needle: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if !found.is_empty() {
                return found;
            }
            if tokio::time::timeout_at(deadline, self.0.1.notified())
                .await
                .is_err()
            {
                panic!("no line with {needle:?}: {:?}", self.lines());
            }
        }
    }
}

/// Without `ca_file` each failure of an upstream with a private CA is counted, and one
/// WARN line names the upstream and the cause (UnknownIssuer) for three failed queries.
#[tokio::test]
async fn private_ca_upstream_without_ca_file_fails_with_one_warn_naming_unknown_issuer() {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for https in [false, true] {
        let ca = support::pki::PrivateCa::new();
        let (spec, mut server) = private_ca_server(&ca, https).await;
        let ups = upstreams(&spec, &Default::default());
        for _ in 0..3 {
            let r = ups
                .resolve(
                    &Name::from_str("www.example.com.").unwrap(),
                    RecordType::A,
                    Default::default(),
                    deadline(),
                )
                .await;
            assert!(r.is_err(), "untrusted private CA accepted: {r:?}");
        }
        let warns = log.wait_for(&format!("upstream {spec} failed")).await;
        assert_eq!(warns.len(), 1, "{:?}", log.lines());
        assert!(warns[0].contains("WARN"), "{}", warns[0]);
        assert!(warns[0].contains("UnknownIssuer"), "{}", warns[0]);
        server.shutdown_gracefully().await.ok();
    }
}
