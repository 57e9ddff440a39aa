//! Weekly tracking-exposure reports (`metaguard report`): aggregate the hit log with SQL
//! into a `ReportModel` (`build`), render it as text, Markdown, HTML, JSON or CSV
//! (`render`, `html`), and deliver it by file, e-mail or webhook (`deliver`).

pub(crate) mod build;
pub(crate) mod charts;
pub(crate) mod deliver;
/// Test data, not API: only with the `test-fixtures` feature (tests and benches).
#[cfg(feature = "test-fixtures")]
#[doc(hidden)]
pub mod fixture;
pub(crate) mod html;
pub(crate) mod model;
mod not_meta;
pub(crate) mod period;
pub(crate) mod render;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
pub(crate) use model::ReportModel;
pub use period::Period;

/// `[report]`: report defaults and delivery settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Domains listed per device.
    pub(crate) top_domains: usize,
    /// `metaguard report --deliver` (the weekly unit) writes each report here as HTML,
    /// named for its period (`2026-W47.html`). Empty: no file.
    pub dir: PathBuf,
    /// `[report.email]`: where `metaguard report --email` sends the report.
    pub email: EmailConfig,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            top_domains: 5,
            dir: PathBuf::from("/var/lib/metaguard/reports"),
            email: EmailConfig::default(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (port 587); fails if the server lacks it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a relay on localhost only).
    None,
}

/// `[report.email]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name.
    pub server: String,
    /// SMTP port (587 for STARTTLS, 465 for TLS).
    pub port: u16,
    /// How the SMTP connection is secured: `starttls`, `tls` or `none`.
    pub security: Security,
    /// Sender address, e.g. `metaguard <router@example.org>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP user; with it, the password is read from `password_file`.
    pub username: Option<String>,
    /// File holding the SMTP password (first line); never put the password itself here.
    pub password_file: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            server: String::new(),
            port: 587,
            security: Security::Starttls,
            from: String::new(),
            to: Vec::new(),
            username: None,
            password_file: None,
        }
    }
}

/// Why a report could not be made or delivered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The hit log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `--week` not written `YYYY-Www`.
    #[error("cannot read week {0:?}: give it as YYYY-Www, like 2026-W10")]
    BadWeek(String),
    /// A date not written `YYYY-MM-DD`.
    #[error("cannot read date {0:?}: give it as YYYY-MM-DD")]
    BadDate(String),
    #[error("--until {until} is before --since {since}")]
    /// `--until` before `--since`.
    BadRange {
        /// The `--since` date.
        since: String,
        /// The `--until` date.
        until: String,
    },
    /// A time computation failed (time zone, calendar).
    #[error("time: {0}")]
    Time(String),
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The CSV output could not be written.
    #[error("cannot write CSV: {0}")]
    Csv(String),
    /// The JSON output could not be written.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `[report.email]` is incomplete or wrong.
    #[error("[report.email] {0}")]
    EmailConfig(String),
    /// The SMTP server did not take the e-mail.
    #[error("cannot send the report by e-mail: {0}")]
    Email(String),
    /// The webhook did not take the report.
    #[error("cannot post the report to the webhook: {0}")]
    Webhook(String),
    #[error(
        "--deliver has nowhere to deliver the report: set [report] dir or [report.email] server"
    )]
    /// `--deliver` with neither `[report] dir` nor an e-mail server set.
    NowhereToDeliver,
}

impl ReportError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<jiff::Error> for ReportError {
    fn from(e: jiff::Error) -> Self {
        ReportError::Time(e.to_string())
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Plain text for a terminal.
    #[default]
    Text,
    /// Markdown.
    Markdown,
    /// A self-contained HTML page.
    Html,
    /// JSON: the report model.
    Json,
    /// CSV: one row per device, category and day.
    Csv,
}

/// Which period a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum When {
    /// The last complete Monday-to-Sunday week.
    #[default]
    LastWeek,
    /// An ISO week, `YYYY-Www`.
    Week(String),
    /// Dates `YYYY-MM-DD`, both included.
    Range {
        /// The first day.
        since: String,
        /// The last day.
        until: String,
    },
}

/// Everything `metaguard report` was asked for.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Databases to merge (at least one).
    pub dbs: Vec<PathBuf>,
    /// `[report]` of the config.
    pub config: ReportConfig,
    /// The period to cover.
    pub when: When,
    /// The local time zone (weeks, days and hours are local).
    pub tz: TimeZone,
    /// The present, for "last week" and the report's date.
    pub now: Timestamp,
    /// Only this device: name, MAC, key or id.
    pub device: Option<String>,
    /// The output format.
    pub format: Format,
    /// Write here (atomically, mode 0640) instead of returning it for stdout.
    pub out: Option<PathBuf>,
    /// Send it by e-mail to `[report.email] to`.
    pub email: bool,
    /// Deliver as configured (the weekly unit): HTML to `[report] dir`, and e-mail when
    /// `[report.email] server` is set.
    pub deliver: bool,
    /// Post it as JSON to this URL.
    pub webhook: Option<String>,
    /// `[tls]`: the CA that SMTP and the webhook trust besides the default roots.
    pub tls: crate::tls::TlsConfig,
    /// ANSI colour in text output.
    pub color: bool,
}

/// The local time zone: `TZ`, else /etc/localtime, else UTC (with a warning). Names
/// are looked up in the system tz database (/usr/share/zoneinfo, or `TZDIR`); the
/// binary bundles none.
pub(crate) fn local_tz() -> TimeZone {
    match TimeZone::try_system() {
        Ok(tz) => tz,
        Err(e) => {
            tracing::warn!(
                "cannot determine the local time zone ({e}); the report uses UTC \
                 (install tzdata, or set TZ to a name in /usr/share/zoneinfo)"
            );
            TimeZone::UTC
        }
    }
}

/// Resolve the period of a request.
pub(crate) fn period_of(when: &When, tz: &TimeZone, now: Timestamp) -> Result<Period, ReportError> {
    match when {
        When::LastWeek => Period::last_complete_week(now, tz),
        When::Week(w) => Period::parse_week(w, tz),
        When::Range { since, until } => Period::parse_range(since, until, tz),
    }
}

/// Build the model for a request.
pub fn model(req: &ReportRequest) -> Result<ReportModel, ReportError> {
    let period = period_of(&req.when, &req.tz, req.now)?;
    build::build(&build::BuildOptions {
        dbs: req.dbs.clone(),
        period,
        device: req.device.clone(),
        top_domains: req.config.top_domains,
        now: req.now,
    })
}

/// Render `model` in `format`.
pub fn render(model: &ReportModel, format: Format, color: bool) -> Result<String, ReportError> {
    Ok(match format {
        Format::Text => render::text(model, color),
        Format::Markdown => render::markdown(model),
        Format::Html => html::html(model),
        Format::Json => render::json(model)?,
        Format::Csv => render::csv(model)?,
    })
}

/// Run `metaguard report`: build, render, write `--out`, deliver to `[report] dir`, send
/// e-mail and webhook. Returns what goes to stdout: the report, or with `--out` nothing,
/// or with `--deliver` a line per delivery (the weekly unit's journal gets no report).
pub fn run(req: &ReportRequest) -> Result<String, ReportError> {
    let model = model(req)?;
    // With --deliver and no --out, stdout gets what was delivered, not the report.
    let body = if req.deliver && req.out.is_none() {
        String::new()
    } else {
        render(&model, req.format, req.color && req.out.is_none())?
    };
    let to_dir = req.deliver && !req.config.dir.as_os_str().is_empty();
    let email = req.email || (req.deliver && !req.config.email.server.is_empty());
    if req.deliver && !to_dir && !email {
        return Err(ReportError::NowhereToDeliver);
    }
    // The file and the mail carry the same HTML: render it once.
    let html = if to_dir || email {
        html::html(&model)
    } else {
        String::new()
    };
    let mut said = String::new();
    // The file first: it is local and cannot be lost to a mail server being down.
    if to_dir {
        let path = deliver::write_to_dir(&req.config.dir, &model.period.label, &html)?;
        said += &format!("wrote {}\n", path.display());
    }
    if email {
        let text = render::text(&model, false);
        deliver::send_email(
            &req.config.email,
            &req.tls,
            &deliver::subject(&model),
            &text,
            &html,
        )?;
        if req.deliver {
            said += &format!("e-mailed to {}\n", req.config.email.to.join(", "));
        }
    }
    if let Some(url) = &req.webhook {
        deliver::post_webhook(url, &render::json(&model)?, &req.tls)?;
    }
    match &req.out {
        Some(path) => {
            deliver::write_atomic(path, body.as_bytes())?;
            Ok(said)
        }
        None if req.deliver => Ok(said),
        None => Ok(body),
    }
}
