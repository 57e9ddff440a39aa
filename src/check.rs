//! `metaguard check`: the verdict for names under the same config and lists as `serve`.

use std::fmt::Write;
use std::net::IpAddr;

use serde::Serialize;

use crate::config::Config;
use crate::filter::{Filter, normalize_query};
use crate::lists::{self, ListError};
use crate::policy::Policy;

/// One line of `check --format json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CheckLine {
    pub name: String,
    pub action: &'static str,
    pub category: Option<String>,
    pub rule: Option<String>,
    pub list: Option<String>,
    pub line: Option<u32>,
}

/// The verdicts for `names`. `client` picks the device's policy (groups come with
/// device identity; until then every client gets the default actions).
pub fn verdicts(
    config: &Config,
    names: &[String],
    _client: Option<IpAddr>,
) -> Result<Vec<CheckLine>, ListError> {
    let filter = Filter::build(lists::all_sources(config)?);
    let policy = Policy::new(
        filter.categories(),
        filter.list_defaults(),
        &config.categories,
        &config.groups,
    );
    let actions = policy.actions(None);
    Ok(names
        .iter()
        .map(|raw| {
            let name = normalize_query(raw);
            let v = filter.check(&name, actions);
            let m = v.matched.as_ref();
            CheckLine {
                name: raw.clone(),
                action: v.action.map_or("allow", |a| a.as_str()),
                category: m.map(|m| filter.categories().name(m.category).to_string()),
                rule: v.rule_text(&name),
                list: m.and_then(|m| filter.list(m.list)).map(|l| l.name.clone()),
                line: m.map(|m| m.line),
            }
        })
        .collect())
}

/// Render the verdicts as text columns or JSON lines.
pub fn run(
    config: &Config,
    names: &[String],
    client: Option<IpAddr>,
    json: bool,
) -> Result<String, ListError> {
    let lines = verdicts(config, names, client)?;
    let mut out = String::new();
    for l in &lines {
        if json {
            let _ = writeln!(out, "{}", serde_json::to_string(l).unwrap_or_default());
        } else {
            let src = match (&l.list, l.line) {
                (Some(list), Some(line)) => format!("{list}:{line}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<40} {:<6} {:<18} {:<36} {}",
                l.name,
                l.action,
                l.category.as_deref().unwrap_or("-"),
                l.rule.as_deref().unwrap_or("-"),
                src
            );
        }
    }
    Ok(out)
}
