//! `metaguard lists`: every list the filter is built from (embedded, files, remote) with
//! its action and counts, and `lists update`, which fetches the remote ones.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::config::Config;
use crate::filter::ListFormat;
use crate::remote::{self, UpdateEvent, read_sidecar};

use super::table::{Column, Table, json_lines};

/// One row of `metaguard lists`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListRow {
    /// Short name of the list.
    pub name: String,
    pub(crate) category: String,
    /// The category's action under the config (`block` or `log`).
    pub action: String,
    pub(crate) format: ListFormat,
    /// Rules kept.
    pub rules: usize,
    pub(crate) bad_lines: usize,
    /// Where it came from: `embedded`, a path or a URL.
    pub source: String,
    /// Remote: when the copy was fetched; embedded and files: the header's date.
    pub last_update: Option<String>,
}

/// Every list the filter would be built from, with its action and counts; remote
/// lists never fetched are shown with `source` "(not fetched yet)".
pub fn rows(cfg: &Config) -> Result<Vec<ListRow>, crate::lists::ListError> {
    let (filter, policy) = crate::server::compile(cfg)?;
    Ok(rows_of(cfg, &filter, &policy))
}

/// [`rows`] of an already compiled filter (the running server's).
pub(crate) fn rows_of(
    cfg: &Config,
    filter: &crate::filter::Filter,
    policy: &crate::policy::Policy,
) -> Vec<ListRow> {
    let actions = policy.actions(None);
    let settings = remote::RemoteSettings::of(cfg);
    let mut rows: Vec<ListRow> = filter
        .lists()
        .iter()
        .map(|l| {
            let action = filter
                .categories()
                .id(&l.category)
                .and_then(|id| actions.get(id as usize))
                .map_or("log", |a| a.as_str());
            let remote = cfg.lists.iter().find(|r| r.url == l.origin);
            let last_update = match remote {
                Some(r) => read_sidecar(&settings, &r.url).map(|s| s.fetched_at),
                None => l.reviewed.clone(),
            };
            ListRow {
                name: l.name.clone(),
                category: l.category.clone(),
                action: action.to_string(),
                format: l.format,
                rules: l.rules,
                bad_lines: l.bad_lines,
                source: l.origin.clone(),
                last_update,
            }
        })
        .collect();
    for r in &cfg.lists {
        if !rows.iter().any(|row| row.source == r.url) {
            rows.push(ListRow {
                name: r.url.clone(),
                category: r.category.clone(),
                action: "-".to_string(),
                format: r.format,
                rules: 0,
                bad_lines: 0,
                source: format!("{} (not fetched yet)", r.url),
                last_update: None,
            });
        }
    }
    rows
}

/// `metaguard lists` output: aligned text columns or one JSON object per line.
pub fn render(rows: &[ListRow], json: bool) -> String {
    if json {
        return json_lines(rows);
    }
    let mut table = Table::new("  ").columns(&[
        Column::left(0),
        Column::left(0),
        Column::left(6),
        Column::right(7),
        Column::right(5),
        Column::left(30),
    ]);
    table.row([
        "NAME",
        "CATEGORY",
        "ACTION",
        "RULES",
        "BAD",
        "SOURCE",
        "LAST UPDATE",
    ]);
    for r in rows {
        table.row([
            r.name.clone(),
            r.category.clone(),
            r.action.clone(),
            r.rules.to_string(),
            r.bad_lines.to_string(),
            r.source.clone(),
            r.last_update.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

/// `metaguard lists update`: a one-line status (`[done/total] url (KiB)`) on stderr when
/// both stdout and stderr are a terminal, plain lines otherwise.
/// Exit code 0 when every remote list ends with a usable copy, else 1.
pub async fn update(cfg: &Config, force: bool) -> i32 {
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    // (lists finished, lists due)
    let counts = std::sync::Mutex::new((0usize, 0usize));
    let status = |msg: Option<&str>| {
        if !tty {
            return;
        }
        let (pos, len) = *counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        // Clear the line; then the status, cut to the terminal width (COLUMNS, else 80).
        let _ = write!(err, "\r\x1b[2K");
        if let Some(msg) = msg {
            let width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(80);
            let line: String = format!("[{pos}/{len}] {msg}")
                .chars()
                .take(width.saturating_sub(1))
                .collect();
            let _ = write!(err, "{line}");
        }
        let _ = err.flush();
    };
    let progress = |ev: UpdateEvent| match ev {
        UpdateEvent::Started { total, url, .. } => {
            counts.lock().unwrap_or_else(|e| e.into_inner()).1 = total;
            status(Some(&url));
        }
        UpdateEvent::Progress { url, bytes } => {
            status(Some(&format!("{url} ({} KiB)", bytes / 1024)));
        }
        UpdateEvent::Finished(o) => {
            status(None);
            println!("{o}");
            counts.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        }
    };
    let settings = remote::RemoteSettings::of(cfg);
    let outcomes = remote::update_all(&settings, force, &progress).await;
    if outcomes.is_empty() {
        println!("no remote list due ({} configured)", cfg.lists.len());
    }
    if remote::all_usable(&settings, &outcomes) {
        0
    } else {
        1
    }
}
