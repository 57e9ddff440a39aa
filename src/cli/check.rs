//! `metaguard check`: the verdicts of `crate::check` as text columns or JSON lines.

use crate::check::{CheckError, verdicts};
use crate::config::Config;

use super::table::{Column, Table, json_lines};

/// The verdicts for `names`, rendered.
pub(crate) fn run(
    config: &Config,
    names: &[String],
    client: Option<&str>,
    json: bool,
) -> Result<String, CheckError> {
    let (who, lines) = verdicts(config, names, client)?;
    if json {
        return Ok(json_lines(&lines));
    }
    let mut out = String::new();
    if let Some(w) = &who {
        let mut about = vec![w.key.clone()];
        about.extend(
            w.mac
                .iter()
                .filter(|m| !w.key.ends_with(m.as_str()))
                .cloned(),
        );
        let group = w.group.as_deref().map_or_else(
            || "no group: the household's actions".to_string(),
            |g| format!("group {g}"),
        );
        let name = w
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!("{n:?} "));
        out.push_str(&format!(
            "client {}: device {name}({}), {group}\n",
            w.client,
            about.join(", ")
        ));
    }
    let mut table = Table::new(" ").columns(&[
        Column::left(40),
        Column::left(6),
        Column::left(18),
        Column::left(36),
    ]);
    for l in &lines {
        let src = match (&l.list, l.line) {
            (Some(list), Some(line)) => format!("{list}:{line}"),
            _ => "-".into(),
        };
        table.row([
            l.name.clone(),
            l.action.to_string(),
            l.category.clone().unwrap_or_else(|| "-".into()),
            l.rule.clone().unwrap_or_else(|| "-".into()),
            src,
        ]);
    }
    out.push_str(&table.render());
    Ok(out)
}
