//! `[tls] ca_file`: the one private CA that every TLS client of metaguard trusts in
//! addition to its usual roots (DoT/DoH upstreams, HTTPS remote lists, the report webhook
//! and SMTP), read and checked when the config is loaded, and the client configs made
//! from it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[tls]` in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of one or more CA certificates, trusted in addition to the default roots
    /// by every TLS client. Unset: the default roots only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<CaFile>,
}

/// Why a `ca_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read ca_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ca_file {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("ca_file {path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")]
    Empty { path: String },
    #[error("ca_file {path}: certificate {index} is not a usable CA certificate: {reason}")]
    BadCertificate {
        path: String,
        index: usize,
        reason: String,
    },
}

/// A CA file and the certificates read from it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CaFile {
    path: PathBuf,
    certs: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaFile({}, {} certificates)",
            self.path.display(),
            self.certs.len()
        )
    }
}

impl CaFile {
    /// Read `path` and check that each certificate in it can be a trust anchor.
    pub(crate) fn load(path: &Path) -> Result<CaFile, TlsError> {
        let shown = || path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            path: shown(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: shown(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Empty { path: shown() });
        }
        let mut store = RootCertStore::empty();
        for (i, c) in certs.iter().enumerate() {
            store.add(c.clone()).map_err(|e| TlsError::BadCertificate {
                path: shown(),
                index: i + 1,
                reason: e.to_string(),
            })?;
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            certs: certs.into(),
        })
    }

    pub(crate) fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

impl FromStr for CaFile {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaFile::load(Path::new(s))
    }
}

impl Serialize for CaFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.path.display())
    }
}

impl<'de> Deserialize<'de> for CaFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read while toml still knows where the value is: a bad file is refused with
        // the file, line and column of the `ca_file` entry.
        crate::config::deserialize_from_str(d)
    }
}

impl TlsConfig {
    /// The certificates of `ca_file`, none when it is unset.
    pub(crate) fn extra_roots(&self) -> &[CertificateDer<'static>] {
        self.ca_file.as_ref().map_or(&[], |c| c.certs())
    }

    /// The rustls client config of the DoT and DoH upstreams: the Mozilla roots hickory
    /// uses by default (webpki-roots) plus `ca_file`.
    pub(crate) fn rustls_client(&self) -> rustls::ClientConfig {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for c in self.extra_roots() {
            // Checked when the file was loaded.
            let _ = roots.add(c.clone());
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// The TLS settings of ureq (remote lists, webhook). Without `ca_file` ureq's own
    /// Mozilla roots; with it, ureq takes one list of roots only, so it gets the system's
    /// (`/etc/ssl/certs`, or `SSL_CERT_FILE`) plus `ca_file`.
    pub(crate) fn ureq(&self) -> ureq::tls::TlsConfig {
        let extra = self.extra_roots();
        if extra.is_empty() {
            return ureq::tls::TlsConfig::default();
        }
        let system = rustls_native_certs::load_native_certs();
        if system.certs.is_empty() {
            tracing::warn!(
                "no system CA certificates found (install ca-certificates): HTTPS downloads \
                 trust only [tls] ca_file"
            );
        }
        let certs: Vec<ureq::tls::Certificate<'static>> = system
            .certs
            .iter()
            .chain(extra)
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build()
    }

    /// The TLS parameters of SMTP for `domain`: lettre's roots (the system's) plus `ca_file`.
    pub(crate) fn smtp(
        &self,
        domain: &str,
    ) -> Result<lettre::transport::smtp::client::TlsParameters, lettre::transport::smtp::Error>
    {
        let mut b = lettre::transport::smtp::client::TlsParameters::builder(domain.to_string());
        for c in self.extra_roots() {
            b = b.add_root_certificate(lettre::transport::smtp::client::Certificate::from_der(
                c.to_vec(),
            )?);
        }
        b.build()
    }
}

/// Why a TLS handshake with `addr` as `server_name` fails with `config` (offering
/// `alpn`), or `None` when it succeeds. A diagnosis for the log: hickory's pool reports a
/// failed handshake only as "no connections available".
pub(crate) async fn handshake_error(
    addr: std::net::SocketAddr,
    server_name: &str,
    alpn: &[u8],
    config: &rustls::ClientConfig,
    timeout: std::time::Duration,
) -> Option<String> {
    let mut config = config.clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).ok()?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("TLS handshake timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        ca.cert.pem()
    }

    #[test]
    fn a_pem_bundle_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, format!("{}{}", ca_pem(), ca_pem())).unwrap();
        let ca = CaFile::load(&p).unwrap();
        assert_eq!(ca.certs().len(), 2);
        let cfg = TlsConfig { ca_file: Some(ca) };
        assert_eq!(cfg.extra_roots().len(), 2);
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CaFile::load(&dir.path().join("nope.pem")).unwrap_err();
        assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
        let p = dir.path().join("key.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = CaFile::load(&p).unwrap_err();
        assert!(matches!(e, TlsError::Empty { .. }), "{e}");
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = CaFile::load(&p).unwrap_err();
        assert!(
            matches!(e, TlsError::BadCertificate { index: 1, .. }),
            "{e}"
        );
    }
}
