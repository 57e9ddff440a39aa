//! The download of one list: blocking ureq on tokio's blocking pool, conditional on the
//! stored copy's ETag and Last-Modified, cut off past `[remote] max_size`.

use std::time::Duration;

use super::{Progress, RemoteSettings, Sidecar, UpdateEvent};

pub(super) enum Fetched {
    NotModified,
    Body {
        text: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Why a download did not give a body.
pub(super) enum FetchError {
    /// Too big: reported as rejected.
    TooLarge(u64),
    Other(String),
}

/// The download agent: blocking ureq (the binary's only HTTP client; the webhook uses it
/// too), run on tokio's blocking pool by [`fetch`]. No proxy from the environment.
pub(super) fn agent(cfg: &RemoteSettings) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(cfg.remote.timeout))
        .timeout_connect(Some(cfg.remote.timeout.min(Duration::from_secs(15))))
        .user_agent(concat!("metaguard/", env!("CARGO_PKG_VERSION")))
        .proxy(None)
        .tls_config(cfg.tls.ureq())
        .http_status_as_error(false)
        .build()
        .into()
}

/// Download `url` on the blocking pool; progress (bytes so far) comes back over a
/// channel so the callback runs on the caller's task.
pub(super) async fn fetch(
    agent: &ureq::Agent,
    cfg: &RemoteSettings,
    url: &str,
    prev: Option<&Sidecar>,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let agent = agent.clone();
    let owned_url = url.to_string();
    let cond = prev.map(|p| (p.etag.clone(), p.last_modified.clone()));
    let max = cfg.remote.max_size.get();
    let task =
        tokio::task::spawn_blocking(move || fetch_blocking(&agent, &owned_url, cond, max, &tx));
    while let Some(bytes) = rx.recv().await {
        progress(UpdateEvent::Progress {
            url: url.to_string(),
            bytes,
        });
    }
    task.await
        .map_err(|e| FetchError::Other(format!("download task failed: {e}")))?
}

fn fetch_blocking(
    agent: &ureq::Agent,
    url: &str,
    cond: Option<(Option<String>, Option<String>)>,
    max: u64,
    progress: &tokio::sync::mpsc::UnboundedSender<u64>,
) -> Result<Fetched, FetchError> {
    use std::io::Read;
    use ureq::http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
    use ureq::http::{HeaderValue, StatusCode};
    let mut req = agent.get(url);
    if let Some((etag, last_modified)) = cond {
        if let Some(e) = etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        if let Some(l) = last_modified {
            req = req.header(IF_MODIFIED_SINCE, l);
        }
    }
    let other = |e: ureq::Error| FetchError::Other(error_chain(&e));
    let mut resp = req.call().map_err(other)?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Other(format!("HTTP {status}")));
    }
    if let Some(len) = resp.body().content_length()
        && len > max
    {
        return Err(FetchError::TooLarge(len));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(ETAG);
    let last_modified = header(LAST_MODIFIED);
    let mut reader = resp.body_mut().as_reader();
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::Other(error_chain(&e))),
        };
        if body.len() as u64 + n as u64 > max {
            return Err(FetchError::TooLarge(body.len() as u64 + n as u64));
        }
        body.extend_from_slice(&chunk[..n]);
        let _ = progress.send(body.len() as u64);
    }
    Ok(Fetched::Body {
        text: String::from_utf8_lossy(&body).into_owned(),
        etag,
        last_modified,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
