//! A private CA for tests (rcgen): its PEM file for `[tls] ca_file`, server certificates
//! it signs, and a one-request HTTPS server on 127.0.0.1 (rustls over a std socket).

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct PrivateCa {
    /// Holds `ca_file`.
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_file: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// The ring crypto provider, as metaguard uses it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PrivateCa {
    pub fn new() -> PrivateCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "metaguard test home CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("home-ca.pem");
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        PrivateCa {
            dir,
            ca_file,
            issuer,
        }
    }

    /// `[tls] ca_file = "<this CA>"` as a config parses it.
    pub fn tls_config(&self) -> metaguard::tls::TlsConfig {
        let text = format!("[tls]\nca_file = {:?}\n", self.ca_file.to_str().unwrap());
        metaguard::config::Config::parse(&text, std::path::Path::new("test.toml"))
            .expect("ca_file loads")
            .tls
    }

    /// A rustls server config for `names` (host names or IP addresses), signed by this CA.
    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// What [`https_once`] saw: the request head and body, or why the handshake failed.
pub type Seen = Result<(String, Vec<u8>), String>;

/// An HTTPS server on 127.0.0.1 with a certificate for "127.0.0.1" from `ca` that takes
/// one connection, reads one request and answers 200 with `body`. Returns its port.
pub fn https_once(ca: &PrivateCa, body: Vec<u8>) -> (u16, std::thread::JoinHandle<Seen>) {
    let cfg = ca.server_config(&["127.0.0.1"], &[b"http/1.1"]);
    super::http::accept_once(move |s| {
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut r = BufReader::new(rustls::StreamOwned::new(conn, s));
        let (head, got) = super::http::read_request(&mut r).map_err(|e| e.to_string())?;
        let w = r.get_mut();
        w.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .and_then(|_| w.write_all(&body))
        .and_then(|_| w.flush())
        .map_err(|e| e.to_string())?;
        w.conn.send_close_notify();
        let _ = w.flush();
        Ok((head, got))
    })
}
