//! DNS-over-TLS and DNS-over-HTTPS upstreams against real servers on 127.0.0.1
//! (hickory-server's TLS and HTTP/2 listeners, a certificate made for the test).

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Metadata;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use metaguard::upstream::{UpstreamConfig, UpstreamSpec, Upstreams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Answers every A query with 192.0.2.7.
struct Fixed;

#[async_trait::async_trait]
impl RequestHandler for Fixed {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let info = request.request_info().expect("one question");
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let rec = Record::from_rdata(
            info.query.original().name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        );
        let resp =
            MessageResponseBuilder::from_message_request(request).build(meta, [&rec], [], [], []);
        rh.send_response(resp).await.expect("answer sent")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

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

async fn resolve_via(spec: &str, client: rustls::ClientConfig) -> Vec<Record> {
    let spec: UpstreamSpec = spec.parse().unwrap();
    let cfg = UpstreamConfig {
        attempt_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let ups = Upstreams::with_tls(&[spec], &cfg, client).unwrap();
    let answer = ups
        .resolve(
            &Name::from_str("www.example.com.").unwrap(),
            RecordType::A,
            Default::default(),
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut server = Server::new(Fixed);
    server
        .register_tls_listener_with_tls_config(listener, Duration::from_secs(5), server_cfg)
        .unwrap();
    let records = resolve_via(&format!("tls://{addr}#dns.test"), client).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

#[tokio::test]
async fn dns_over_https_upstream_answers() {
    let (server_cfg, client) = tls_pair(b"h2");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut server = Server::new(Fixed);
    server
        .register_https_listener_with_tls_config(
            listener,
            Duration::from_secs(5),
            server_cfg,
            Some("dns.test".to_string()),
            "/dns-query".to_string(),
        )
        .unwrap();
    let records = resolve_via(&format!("https://{addr}/dns-query#dns.test"), client).await;
    assert_eq!(a_records(&records), ["192.0.2.7"]);
    server.shutdown_gracefully().await.ok();
}

#[tokio::test]
async fn dns_over_tls_refuses_an_untrusted_certificate() {
    let (server_cfg, _) = tls_pair(b"dot");
    let (_, other_client) = tls_pair(b"dot"); // trusts a different certificate
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let mut server = Server::new(Fixed);
    server
        .register_tls_listener_with_tls_config(listener, Duration::from_secs(5), server_cfg)
        .unwrap();
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
        )
        .await;
    assert!(
        r.is_err(),
        "a certificate we do not trust must not be accepted: {r:?}"
    );
    server.shutdown_gracefully().await.ok();
}
