//! Where the lists come from: the Meta lists compiled into the binary (overridable by
//! a file of the same name on disk), extra list files, and the config's own entries.

use std::path::{Path, PathBuf};

use crate::filter::{FilterConfig, ListFormat, ListSource, parse};
use crate::policy::{ALLOW, Action, CUSTOM};

/// The lists shipped in `blocklists/`, compiled in so `serve` works offline: the Meta
/// lists, then `bypass.txt` (category `bypass`, not Meta).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("pixel.txt", include_str!("../blocklists/pixel.txt")),
    (
        "audience-network.txt",
        include_str!("../blocklists/audience-network.txt"),
    ),
    (
        "sdk-telemetry.txt",
        include_str!("../blocklists/sdk-telemetry.txt"),
    ),
    (
        "ads-measurement.txt",
        include_str!("../blocklists/ads-measurement.txt"),
    ),
    (
        "app-telemetry.txt",
        include_str!("../blocklists/app-telemetry.txt"),
    ),
    (
        "social-widgets.txt",
        include_str!("../blocklists/social-widgets.txt"),
    ),
    ("meta-ai.txt", include_str!("../blocklists/meta-ai.txt")),
    (
        "smart-glasses.txt",
        include_str!("../blocklists/smart-glasses.txt"),
    ),
    ("quest.txt", include_str!("../blocklists/quest.txt")),
    (
        "first-party.txt",
        include_str!("../blocklists/first-party.txt"),
    ),
    // Not Meta: public resolvers and bypass signals (`[bypass] log_resolvers`).
    ("bypass.txt", include_str!("../blocklists/bypass.txt")),
];

/// The embedded list of public resolvers and bypass signals (`[bypass] log_resolvers`).
const BYPASS_LIST: &str = "bypass.txt";

/// The category and declared action (`# Category`, `# Action` headers) of each
/// embedded list, as compiled in.
pub fn builtin_categories() -> &'static [(String, Option<Action>)] {
    static LISTS: std::sync::OnceLock<Vec<(String, Option<Action>)>> = std::sync::OnceLock::new();
    LISTS.get_or_init(|| {
        EMBEDDED
            .iter()
            .map(|(file, text)| {
                let h = parse::read_header(text);
                let category = h
                    .category
                    .unwrap_or_else(|| file.trim_end_matches(".txt").to_string());
                (category, h.action.as_deref().and_then(parse_action))
            })
            .collect()
    })
}

/// Whether `category` is Meta's: that of a built-in list other than `bypass.txt`.
/// Lookups of other categories (`custom`, `bypass`, other lists') are not Meta lookups.
pub fn is_meta_category(category: &str) -> bool {
    category != crate::bypass::BYPASS && builtin_categories().iter().any(|(c, _)| c == category)
}

/// Errors reading the lists the config names.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A list file could not be read.
    #[error("cannot read list {path}: {source}")]
    Read {
        /// The list file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<String, ListError> {
    let bytes = std::fs::read(path).map_err(|source| ListError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A list with stray non-UTF-8 bytes still loads; the bad lines are counted.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A list file: a large one is only checked here and read when the filter is compiled
/// (`ListSource::file`, so its compiled form can come from the cache); a small one is
/// read now.
pub(crate) fn file_source(path: &Path) -> Result<(String, Option<PathBuf>), ListError> {
    let err = |source| ListError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map_err(err)?;
    if meta.len() > crate::filter::COMPACT_ABOVE as u64 {
        Ok((String::new(), Some(path.to_path_buf())))
    } else {
        Ok((read(path)?, None))
    }
}

/// One embedded list, or its override from `lists_dir` when that file exists.
fn embedded_source(
    file: &str,
    text: &'static str,
    lists_dir: &Path,
) -> Result<ListSource, ListError> {
    let over = lists_dir.join(file);
    let (text, origin) = if over.is_file() {
        (read(&over)?, over.display().to_string())
    } else {
        (text.to_string(), "embedded".to_string())
    };
    let header = parse::read_header(&text);
    let stem = file.trim_end_matches(".txt");
    Ok(ListSource {
        name: file.to_string(),
        category: header.category.unwrap_or_else(|| stem.to_string()),
        origin,
        format: ListFormat::Domains,
        file: None,
        default_action: header.action.as_deref().and_then(parse_action),
        text,
    })
}

fn parse_action(s: &str) -> Option<Action> {
    match s.trim() {
        "block" => Some(Action::Block),
        "log" => Some(Action::Log),
        "allow" => Some(Action::Allow),
        _ => None,
    }
}

/// The categories `[categories]` and `[groups.*]` may name: each embedded list's (from
/// the header of its override in `lists_dir` when there is one), `custom`, and those of
/// the remote `[[lists]]`.
pub(crate) fn known_categories(cfg: &crate::config::Config) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::from([CUSTOM.to_string()]);
    for (file, text) in EMBEDDED {
        let over = std::fs::read_to_string(cfg.filter.lists_dir.join(file)).ok();
        let header = parse::read_header(over.as_deref().unwrap_or(text));
        out.insert(
            header
                .category
                .unwrap_or_else(|| file.trim_end_matches(".txt").to_string()),
        );
    }
    out.extend(cfg.lists.iter().map(|l| l.category.clone()));
    out
}

/// Every list the filter is built from, in order: embedded Meta lists, extra files,
/// then the config's `block` and `allow` entries.
pub fn sources(cfg: &FilterConfig) -> Result<Vec<ListSource>, ListError> {
    let mut out = Vec::new();
    for (file, text) in EMBEDDED {
        out.push(embedded_source(file, text, &cfg.lists_dir)?);
    }
    for path in &cfg.blocklists {
        let (text, file) = file_source(path)?;
        out.push(ListSource {
            name: path.display().to_string(),
            category: CUSTOM.to_string(),
            origin: path.display().to_string(),
            format: ListFormat::Auto,
            file,
            default_action: Some(Action::Block),
            text,
        });
    }
    for (key, entries, category, action) in [
        ("block", &cfg.block, CUSTOM, Action::Block),
        ("allow", &cfg.allow, ALLOW, Action::Allow),
    ] {
        if entries.is_empty() {
            continue;
        }
        out.push(ListSource {
            name: format!("config:{key}"),
            category: category.to_string(),
            origin: "config".to_string(),
            format: ListFormat::Domains,
            file: None,
            default_action: Some(action),
            text: entries
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    Ok(out)
}

/// [`sources`] plus the last good copies of the remote `[[lists]]` (never-fetched
/// ones skipped): what `serve`, `check` and `lists` build the filter from.
pub(crate) fn all_sources(cfg: &crate::config::Config) -> Result<Vec<ListSource>, ListError> {
    let mut out = sources(&cfg.filter)?;
    if !cfg.bypass.log_resolvers {
        out.retain(|s| s.name != BYPASS_LIST);
    }
    out.extend(crate::remote::cached_sources(
        &crate::remote::RemoteSettings::of(cfg),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lists_have_headers() {
        for (file, text) in EMBEDDED {
            let h = parse::read_header(text);
            let stem = file.trim_end_matches(".txt");
            assert_eq!(h.category.as_deref(), Some(stem), "{file}: category header");
            assert!(
                h.action.as_deref().and_then(parse_action).is_some(),
                "{file}: action header"
            );
            assert!(
                h.title.is_some() && h.sources.is_some() && h.reviewed.is_some(),
                "{file}: header"
            );
        }
    }

    #[test]
    fn file_on_disk_overrides_embedded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pixel.txt"),
            "# Category: pixel\n# Action: log\nonly.example\n",
        )
        .unwrap();
        let cfg = FilterConfig {
            lists_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let srcs = sources(&cfg).unwrap();
        let pixel = srcs.iter().find(|s| s.name == "pixel.txt").unwrap();
        assert_eq!(
            pixel.text.trim_end(),
            "# Category: pixel\n# Action: log\nonly.example"
        );
        assert_eq!(pixel.default_action, Some(Action::Log));
        assert!(pixel.origin.ends_with("pixel.txt"));
        let other = srcs.iter().find(|s| s.name == "quest.txt").unwrap();
        assert_eq!(other.origin, "embedded");
    }

    #[test]
    fn config_entries_become_lists_and_bad_ones_are_errors() {
        let cfg = FilterConfig {
            lists_dir: "/nonexistent".into(),
            allow: vec!["graph.facebook.com".parse().unwrap()],
            block: vec!["*.ads.example".parse().unwrap()],
            ..Default::default()
        };
        let srcs = sources(&cfg).unwrap();
        assert!(
            srcs.iter()
                .any(|s| s.name == "config:allow" && s.category == ALLOW)
        );
        assert!(
            srcs.iter()
                .any(|s| s.name == "config:block" && s.category == CUSTOM)
        );
        // A bad entry cannot be built: the config refuses it at load.
        assert!("not a name".parse::<crate::config::ListedName>().is_err());
    }
}
