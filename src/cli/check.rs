//! `metaguard check`: the verdicts of `crate::check` as text columns or JSON lines.

use std::net::IpAddr;

use crate::check::{CheckError, verdicts};
use crate::config::Config;

use super::table::{Column, Table, json_lines};

/// The verdicts for `names`, rendered.
pub(crate) fn run(
    config: &Config,
    names: &[String],
    client: Option<IpAddr>,
    json: bool,
) -> Result<String, CheckError> {
    let lines = verdicts(config, names, client)?;
    if json {
        return Ok(json_lines(&lines));
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
    Ok(table.render())
}
