//! Delivering a report: `--out` written atomically, `--email` over SMTP (lettre with
//! rustls), `--webhook` as a JSON POST (ureq with rustls).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{Message, SmtpTransport, Transport};

use super::model::ReportModel;
use super::{EmailConfig, ReportError, Security};
use crate::tls::TlsConfig;

/// How long SMTP and webhook exchanges may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Write the HTML report for the period `label` into `dir` (made if missing) as
/// `LABEL.html`, atomically. Returns the path.
pub(crate) fn write_to_dir(dir: &Path, label: &str, html: &str) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
    let path = dir.join(format!("{}.html", crate::files::safe_name(label)));
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// Write `bytes` to `path` via a temporary file in the same directory and a rename, so
/// readers never see half a report; the file gets mode 0640.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::files::write_atomic(path, bytes, 0o640).map_err(ReportError::io(path))
}

/// The e-mail subject for a report.
pub(crate) fn subject(m: &ReportModel) -> String {
    if m.empty {
        format!("metaguard report {}: no data", m.period.label)
    } else {
        format!(
            "metaguard report {}: {} Meta lookups from {} devices",
            m.period.label, m.household.meta_lookups, m.household.devices_seen
        )
    }
}

fn read_password(path: &Path) -> Result<String, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Send the report (plain text with an HTML alternative) as `cfg` says.
pub(crate) fn send_email(
    cfg: &EmailConfig,
    tls: &TlsConfig,
    subject: &str,
    text: &str,
    html: &str,
) -> Result<(), ReportError> {
    let bad = |s: &str| ReportError::EmailConfig(s.to_string());
    if cfg.server.is_empty() {
        return Err(bad("server is not set"));
    }
    if cfg.to.is_empty() {
        return Err(bad("to is empty: give at least one recipient"));
    }
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| ReportError::EmailConfig(format!("from {:?}: {e}", cfg.from)))?;
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &cfg.to {
        let mb: Mailbox = to
            .parse()
            .map_err(|e| ReportError::EmailConfig(format!("to {to:?}: {e}")))?;
        builder = builder.to(mb);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(
            text.to_string(),
            html.to_string(),
        ))
        .map_err(|e| ReportError::Email(e.to_string()))?;

    let email_err = |e: lettre::transport::smtp::Error| ReportError::Email(e.to_string());
    // The system's roots (lettre's default, or SSL_CERT_FILE) plus `[tls] ca_file`.
    let security = match cfg.security {
        Security::Starttls => Tls::Required(tls.smtp(&cfg.server).map_err(email_err)?),
        Security::Tls => Tls::Wrapper(tls.smtp(&cfg.server).map_err(email_err)?),
        Security::None => Tls::None,
    };
    let transport = SmtpTransport::builder_dangerous(&cfg.server)
        .tls(security)
        .port(cfg.port)
        .timeout(Some(TIMEOUT));
    let transport = match (&cfg.username, &cfg.password_file) {
        (Some(user), Some(file)) => {
            transport.credentials(Credentials::new(user.clone(), read_password(file)?))
        }
        (Some(_), None) => {
            return Err(bad("username is set but password_file is not"));
        }
        _ => transport,
    };
    transport
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| ReportError::Email(e.to_string()))
}

/// POST `json` to `url` (ntfy, Gotify, Home Assistant, anything taking JSON).
pub(crate) fn post_webhook(url: &str, json: &str, tls: &TlsConfig) -> Result<(), ReportError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .tls_config(tls.ureq())
        .build()
        .into();
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(json)
        .map(|_| ())
        .map_err(|e| ReportError::Webhook(format!("{url}: {e}")))
}
