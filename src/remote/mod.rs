//! Remote lists: `[[lists]]` entries fetched over HTTP(S), checked, and kept as a last
//! good copy in the state directory so an offline boot still has them.
//!
//! Config:
//!
//! ```toml
//! [[lists]]
//! url = "https://example.org/hosts"
//! category = "ads"          # action comes from [categories] (default: log)
//! format = "auto"           # auto | hosts | domains | abp
//! refresh = "24h"
//!
//! [remote]
//! state_dir = "/var/lib/metaguard"   # copies live in <state_dir>/lists/
//! max_size = 33554432                # bytes; a bigger download is aborted
//! timeout = "60s"                    # whole request, body included
//! ```
//!
//! Each list has `<state_dir>/lists/<name>.txt` (the last good copy, byte for byte)
//! and `<name>.json` (url, etag, last_modified, fetched_at, checked_at, rules), both
//! written atomically (temp file + rename, mode 0644). A download replaces the copy
//! only when it passes the sanity check: at most half of its meaningful lines bad,
//! at least one rule, and not less than half the rules of the previous copy.
//!
//! Here: the config, the stored copies and the update of a list (fetch, check, store);
//! `fetch` downloads one list, `refresh` is the running server's refresher.

mod fetch;
mod refresh;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Config;
use crate::filter::{Filter, ListFormat, ListSource, ListStats};
use crate::tls::TlsConfig;
use fetch::{FetchError, Fetched, agent, fetch};
pub use refresh::{Refresher, spawn_refresher};

/// One `[[lists]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteListConfig {
    /// `https://` or `http://` URL of the list.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// Category of its rules; the action comes from `[categories]`.
    pub category: String,
    /// How its lines are written; `auto` detects it.
    #[serde(default)]
    pub format: ListFormat,
    /// How often to fetch it again.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match url::Url::parse(&s) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(s),
        Ok(_) => Err(serde::de::Error::custom(
            "list url must be http:// or https:// with a host",
        )),
        Err(e) => Err(serde::de::Error::custom(format!("invalid list url: {e}"))),
    }
}

/// `[remote]`: where remote lists are kept and how they are downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// State directory; copies live in `<state_dir>/lists/`.
    pub state_dir: PathBuf,
    /// Largest accepted download, in bytes.
    #[serde(deserialize_with = "crate::config::at_least_one")]
    pub max_size: NonZeroU64,
    /// Time limit for one download, body included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            state_dir: PathBuf::from("/var/lib/metaguard"),
            max_size: const { NonZeroU64::new(32 * 1024 * 1024).unwrap() },
            timeout: Duration::from_secs(60),
        }
    }
}

/// What remote lists read of the config, and nothing more: `[remote]`, `[[lists]]`
/// and `[tls]` (the CA their downloads trust).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSettings {
    /// `[remote]`: state directory and download limits.
    pub remote: RemoteConfig,
    /// `[[lists]]`: the remote lists.
    pub lists: Vec<RemoteListConfig>,
    /// `[tls]`: the CA downloads trust besides the default roots.
    pub tls: TlsConfig,
}

impl RemoteSettings {
    /// The sections of `config` remote lists use.
    pub(crate) fn of(config: &Config) -> RemoteSettings {
        RemoteSettings {
            remote: config.remote.clone(),
            lists: config.lists.clone(),
            tls: config.tls.clone(),
        }
    }
}

/// The JSON sidecar of a stored copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The list's URL.
    pub url: String,
    /// The server's `ETag` for the stored copy, for a conditional fetch.
    pub etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// When the stored copy was downloaded (RFC 3339).
    pub fetched_at: String,
    /// When the server last confirmed it (200 or 304), RFC 3339.
    #[serde(default)]
    pub(crate) checked_at: Option<String>,
    /// Rules in the stored copy.
    pub rules: usize,
}

/// What updating one list did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum UpdateResult {
    /// A new copy was stored.
    Updated {
        /// Rules in the new copy.
        rules: usize,
    },
    /// The server has nothing newer (304).
    NotModified,
    /// Downloaded but failed the sanity check; the old copy stays.
    Rejected {
        /// Why the download was rejected.
        reason: String,
    },
    /// Could not download; the old copy stays.
    Failed {
        /// Why the download failed.
        error: String,
    },
}

/// The outcome for one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateOutcome {
    pub(crate) url: String,
    /// What the update did.
    #[serde(flatten)]
    pub result: UpdateResult,
    /// A usable copy exists after the update (new or kept).
    pub has_copy: bool,
}

impl std::fmt::Display for UpdateOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = if self.has_copy {
            "kept last good copy"
        } else {
            "no copy to keep"
        };
        match &self.result {
            UpdateResult::Updated { rules } => write!(f, "updated {}: {rules} rules", self.url),
            UpdateResult::NotModified => write!(f, "not modified {}", self.url),
            UpdateResult::Rejected { reason } => {
                write!(f, "rejected {}: {reason} ({kept})", self.url)
            }
            UpdateResult::Failed { error } => write!(f, "failed {}: {error} ({kept})", self.url),
        }
    }
}

/// Progress of [`update_all`].
#[derive(Debug, Clone)]
pub enum UpdateEvent {
    /// Starting list `index` (0-based) of `total` due lists.
    Started {
        /// 0-based index of the list.
        index: usize,
        /// Lists due in this update.
        total: usize,
        /// The list's URL.
        url: String,
    },
    /// Bytes of the body received so far.
    Progress {
        /// The list's URL.
        url: String,
        /// Bytes received so far.
        bytes: u64,
    },
    /// One list is done.
    Finished(UpdateOutcome),
}

/// A progress callback; `Sync` so the update future can run on a tokio task.
pub(crate) type Progress<'a> = &'a (dyn Fn(UpdateEvent) + Send + Sync);

/// Errors storing a copy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// File stem of a list's copy: the URL without scheme, made file-safe, plus a hash.
pub(crate) fn file_stem(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut s: String = crate::files::safe_name(rest).chars().take(80).collect();
    // FNV-1a, so two URLs that sanitize alike still get two files.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    s.push_str(&format!("-{:08x}", h as u32));
    s
}

fn lists_dir(cfg: &RemoteSettings) -> PathBuf {
    cfg.remote.state_dir.join("lists")
}

/// Path of the stored copy of `url`.
pub fn copy_path(cfg: &RemoteSettings, url: &str) -> PathBuf {
    lists_dir(cfg).join(format!("{}.txt", file_stem(url)))
}

fn sidecar_path(cfg: &RemoteSettings, url: &str) -> PathBuf {
    lists_dir(cfg).join(format!("{}.json", file_stem(url)))
}

/// The sidecar of `url`'s stored copy, if any.
pub fn read_sidecar(cfg: &RemoteSettings, url: &str) -> Option<Sidecar> {
    let text = std::fs::read_to_string(sidecar_path(cfg, url)).ok()?;
    serde_json::from_str::<Sidecar>(&text)
        .ok()
        .filter(|s| s.url == url)
}

fn source_for(list: &RemoteListConfig, text: String) -> ListSource {
    source_of(list, text, None)
}

fn source_of(list: &RemoteListConfig, text: String, file: Option<PathBuf>) -> ListSource {
    ListSource {
        name: list.url.clone(),
        category: list.category.clone(),
        origin: list.url.clone(),
        format: list.format,
        file,
        default_action: None,
        text,
    }
}

/// The last good copy of every `[[lists]]` entry; a list never fetched is skipped
/// with a warning.
pub fn cached_sources(cfg: &RemoteSettings) -> Vec<ListSource> {
    let mut out = Vec::new();
    for list in &cfg.lists {
        // A large copy is read when the filter is compiled (or its cache is mapped).
        match crate::lists::file_source(&copy_path(cfg, &list.url)).ok() {
            Some((text, file)) => out.push(source_of(list, text, file)),
            None => tracing::warn!(
                url = %list.url,
                "remote list has no stored copy yet (never fetched); skipped"
            ),
        }
    }
    out
}

/// Write `data` to `path` atomically (temp file in the same directory + rename), 0644,
/// making the directory first.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RemoteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::files::write_atomic(path, data, 0o644))
        .map_err(|source| RemoteError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn write_sidecar(cfg: &RemoteSettings, sc: &Sidecar) -> Result<(), RemoteError> {
    let json = serde_json::to_vec_pretty(sc).unwrap_or_default();
    write_atomic(&sidecar_path(cfg, &sc.url), &json)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Rules and bad lines of `text`, counted by the filter's own parsers.
pub(crate) fn count(list: &RemoteListConfig, text: &str) -> ListStats {
    let f = Filter::build(vec![source_for(list, text.to_string())]);
    f.lists()[0].clone()
}

/// Why a download is not good enough to replace `previous` (its rule count).
pub(crate) fn sanity_check(stats: &ListStats, previous: Option<usize>) -> Result<(), String> {
    if stats.bad_lines > stats.rules {
        return Err(format!(
            "mostly unparseable: {} bad lines, {} rules",
            stats.bad_lines, stats.rules
        ));
    }
    if stats.rules == 0 {
        return Err("no rules".to_string());
    }
    if let Some(prev) = previous
        && stats.rules * 2 < prev
    {
        return Err(format!(
            "shrank from {prev} to {} rules (more than half)",
            stats.rules
        ));
    }
    Ok(())
}

/// Fetch one list and store it when it passes the checks.
async fn update_one(
    agent: &ureq::Agent,
    cfg: &RemoteSettings,
    list: &RemoteListConfig,
    progress: Progress<'_>,
) -> UpdateOutcome {
    let prev = read_sidecar(cfg, &list.url);
    let had_copy = copy_path(cfg, &list.url).is_file();
    // Conditional headers only make sense when the copy they describe is there.
    let cond = prev.as_ref().filter(|_| had_copy);
    let result = match fetch(agent, cfg, &list.url, cond, progress).await {
        Ok(Fetched::NotModified) => {
            if let Some(mut sc) = prev.clone() {
                sc.checked_at = Some(now_rfc3339());
                if let Err(e) = write_sidecar(cfg, &sc) {
                    tracing::warn!("{e}");
                }
            }
            UpdateResult::NotModified
        }
        Ok(Fetched::Body {
            text,
            etag,
            last_modified,
        }) => {
            let stats = count(list, &text);
            let previous = prev.as_ref().filter(|_| had_copy).map(|p| p.rules);
            match sanity_check(&stats, previous) {
                Err(reason) => UpdateResult::Rejected { reason },
                Ok(()) => {
                    let now = now_rfc3339();
                    let sc = Sidecar {
                        url: list.url.clone(),
                        etag,
                        last_modified,
                        fetched_at: now.clone(),
                        checked_at: Some(now),
                        rules: stats.rules,
                    };
                    match write_atomic(&copy_path(cfg, &list.url), text.as_bytes())
                        .and_then(|()| write_sidecar(cfg, &sc))
                    {
                        Ok(()) => UpdateResult::Updated { rules: stats.rules },
                        Err(e) => UpdateResult::Failed {
                            error: e.to_string(),
                        },
                    }
                }
            }
        }
        Err(FetchError::TooLarge(n)) => UpdateResult::Rejected {
            reason: format!("larger than {} bytes (at least {n})", cfg.remote.max_size),
        },
        Err(FetchError::Other(error)) => UpdateResult::Failed { error },
    };
    UpdateOutcome {
        url: list.url.clone(),
        result,
        has_copy: copy_path(cfg, &list.url).is_file(),
    }
}

/// When `list` is next due, from its sidecar (`None`: now, never fetched).
fn next_due(cfg: &RemoteSettings, list: &RemoteListConfig) -> Option<SystemTime> {
    if !copy_path(cfg, &list.url).is_file() {
        return None;
    }
    let sc = read_sidecar(cfg, &list.url)?;
    let last = sc.checked_at.as_deref().unwrap_or(&sc.fetched_at);
    let last = humantime::parse_rfc3339_weak(last).ok()?;
    Some(last + list.refresh)
}

fn is_due(cfg: &RemoteSettings, list: &RemoteListConfig) -> bool {
    next_due(cfg, list).is_none_or(|t| t <= SystemTime::now())
}

async fn update_lists(
    cfg: &RemoteSettings,
    lists: &[&RemoteListConfig],
    progress: Progress<'_>,
) -> Vec<UpdateOutcome> {
    let agent = agent(cfg);
    let mut out = Vec::with_capacity(lists.len());
    for (index, list) in lists.iter().enumerate() {
        progress(UpdateEvent::Started {
            index,
            total: lists.len(),
            url: list.url.clone(),
        });
        let o = update_one(&agent, cfg, list, progress).await;
        progress(UpdateEvent::Finished(o.clone()));
        out.push(o);
    }
    out
}

/// Fetch the lists that are due (every list with `force`), one after the other.
pub async fn update_all(
    cfg: &RemoteSettings,
    force: bool,
    progress: Progress<'_>,
) -> Vec<UpdateOutcome> {
    let due: Vec<&RemoteListConfig> = cfg
        .lists
        .iter()
        .filter(|l| force || is_due(cfg, l))
        .collect();
    update_lists(cfg, &due, progress).await
}

/// Every configured list has a usable copy after `outcomes` (lists not fetched count
/// when a copy is on disk).
pub fn all_usable(cfg: &RemoteSettings, outcomes: &[UpdateOutcome]) -> bool {
    cfg.lists.iter().all(|l| {
        outcomes
            .iter()
            .find(|o| o.url == l.url)
            .map_or_else(|| copy_path(cfg, &l.url).is_file(), |o| o.has_copy)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(url: &str) -> RemoteListConfig {
        RemoteListConfig {
            url: url.into(),
            category: "ads".into(),
            format: ListFormat::Auto,
            refresh: default_refresh(),
        }
    }

    #[test]
    fn config_parses_lists_and_rejects_bad_urls() {
        let text = "[[lists]]\nurl = \"https://example.org/a.txt\"\ncategory = \"ads\"\nformat = \"hosts\"\nrefresh = \"6h\"\n[[lists]]\nurl = \"http://example.org/b\"\ncategory = \"x\"\n[remote]\nstate_dir = \"/tmp/s\"\n";
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.lists.len(), 2);
        assert_eq!(c.lists[0].format, ListFormat::Hosts);
        assert_eq!(c.lists[0].refresh, Duration::from_secs(6 * 3600));
        assert_eq!(c.lists[1].refresh, default_refresh());
        assert_eq!(c.remote.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.remote.max_size.get(), 32 * 1024 * 1024);
        for bad in ["ftp://example.org/x", "not a url", "file:///etc/hosts"] {
            let t = format!("[[lists]]\nurl = \"{bad}\"\ncategory = \"x\"\n");
            assert!(Config::parse(&t, Path::new("c")).is_err(), "{bad}");
        }
        let t = "[[lists]]\nurl = \"https://a.example/\"\ncategory = \"x\"\nbogus = 1\n";
        assert!(Config::parse(t, Path::new("c")).is_err());
        // Round trip with lists.
        assert_eq!(Config::parse(&c.to_toml(), Path::new("c")).unwrap(), c);
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        let a = file_stem("https://example.org/a/b?c=d");
        assert!(a.starts_with("example.org_a_b_c_d-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        assert_ne!(a, file_stem("https://example.org/a/b?c_d"));
        assert_ne!(
            file_stem("http://example.org/x"),
            file_stem("https://example.org/x")
        );
    }

    #[test]
    fn sanity_check_rules() {
        let l = list("https://e.example/");
        let good = count(&l, "a.example\nb.example\nc.example\n");
        assert_eq!(good.rules, 3);
        assert!(sanity_check(&good, None).is_ok());
        assert!(sanity_check(&good, Some(6)).is_ok());
        assert!(sanity_check(&good, Some(7)).unwrap_err().contains("shrank"));
        let garbage = count(&l, "a.example\nnot a name\n<html>\n</html>\n");
        assert!(
            sanity_check(&garbage, None)
                .unwrap_err()
                .contains("unparseable")
        );
        let empty = count(&l, "# nothing\n");
        assert!(sanity_check(&empty, None).is_err());
    }

    #[test]
    fn cached_sources_skips_never_fetched_and_reads_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RemoteSettings::default();
        cfg.remote.state_dir = dir.path().to_path_buf();
        cfg.lists = vec![list("https://a.example/l"), list("https://b.example/l")];
        assert!(cached_sources(&cfg).is_empty());
        write_atomic(&copy_path(&cfg, "https://b.example/l"), b"x.example\n").unwrap();
        let s = cached_sources(&cfg);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].origin, "https://b.example/l");
        assert_eq!(s[0].category, "ads");
        assert_eq!(s[0].text, "x.example\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(copy_path(&cfg, "https://b.example/l"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // Never fetched: due; fetched just now with a sidecar: not due.
        assert!(is_due(&cfg, &cfg.lists[0]));
        write_sidecar(
            &cfg,
            &Sidecar {
                url: "https://b.example/l".into(),
                etag: None,
                last_modified: None,
                fetched_at: now_rfc3339(),
                checked_at: None,
                rules: 1,
            },
        )
        .unwrap();
        assert!(!is_due(&cfg, &cfg.lists[1]));
    }
}
