//! `metaguard controls`: show the household controls and the audit log, or make one
//! change (the same `controls::change::make` the dashboard calls).

use std::path::Path;

use anyhow::{Context, bail};

use super::ControlsCommand;
use super::table::{ago, local};
use crate::config::Config;
use crate::controls::change::{self, Change, NameList, Scope};
use crate::controls::{Controls, Schedule, audit, clock, pause_until};
use crate::policy::Action;

/// Run `command` (none: show); the text to print.
pub(crate) fn run(
    command: Option<ControlsCommand>,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<String> {
    let (config, _) = Config::locate(config)?;
    let now = clock::now();
    let change = match command {
        None => return show(&config, now, json),
        Some(ControlsCommand::Audit { lines }) => return audit_log(&config, lines, json),
        Some(c) => to_change(c, now)?,
    };
    let done = change::make(&config, &change, &audit::cli_actor(), now)?;
    if json {
        return Ok(serde_json::json!({
            "what": done.what, "old": done.old, "new": done.new,
        })
        .to_string()
            + "\n");
    }
    Ok(format!("{done}\n"))
}

/// `block`, `log`, `allow`; `default` is `None`.
pub(crate) fn parse_action(s: &str) -> anyhow::Result<Option<Action>> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "block" => Some(Action::Block),
        "log" => Some(Action::Log),
        "allow" => Some(Action::Allow),
        "default" | "inherit" => None,
        other => bail!("{other:?} is not an action: block, log, allow or default"),
    })
}

fn to_change(c: ControlsCommand, now: i64) -> anyhow::Result<Change> {
    Ok(match c {
        ControlsCommand::Group { device, group } => Change::Group {
            device,
            group: (!group.eq_ignore_ascii_case("none")).then_some(group),
        },
        ControlsCommand::Action {
            category,
            action,
            group,
            device,
        } => Change::Action {
            scope: match (group, device) {
                (Some(g), _) => Scope::Group(g),
                (None, Some(d)) => Scope::Device(d),
                (None, None) => Scope::Household,
            },
            category,
            action: parse_action(&action)?,
        },
        ControlsCommand::Allow { name } => Change::Name {
            name,
            list: Some(NameList::Allow),
        },
        ControlsCommand::Block { name } => Change::Name {
            name,
            list: Some(NameList::Block),
        },
        ControlsCommand::Unlist { name } => Change::Name { name, list: None },
        ControlsCommand::Pause { length, device } => Change::Pause {
            device,
            until: pause_until(&length, now).map_err(anyhow::Error::msg)?,
        },
        ControlsCommand::Resume { device } => Change::Pause {
            device,
            until: None,
        },
        ControlsCommand::Schedule {
            group,
            category,
            action,
            days,
            from,
            to,
        } => {
            let action = parse_action(&action)?.context("a schedule needs an action")?;
            Change::AddSchedule(Schedule {
                group,
                days: crate::controls::parse_days(&days).map_err(anyhow::Error::msg)?,
                from: from.parse().map_err(anyhow::Error::msg)?,
                to: to.parse().map_err(anyhow::Error::msg)?,
                categories: [(category, action)].into_iter().collect(),
            })
        }
        ControlsCommand::Unschedule { number } => Change::RemoveSchedule(number),
        ControlsCommand::Audit { .. } => unreachable!("handled by run"),
    })
}

/// What is set, with what is in force now, then the latest changes.
fn show(config: &Config, now: i64, json: bool) -> anyhow::Result<String> {
    let file = crate::controls::path(&config.remote.state_dir);
    let c = Controls::load(&file)?;
    let changes = read_audit(config, 10);
    if json {
        return Ok(serde_json::json!({
            "file": file, "controls": c, "now": now, "changes": changes,
        })
        .to_string()
            + "\n");
    }
    let tz = crate::report::local_tz();
    let mut out = format!("Household controls ({}):\n", file.display());
    let lines = describe(&c, now, &tz);
    if lines.is_empty() {
        out.push_str("  none: the config file decides everything\n");
    }
    for l in lines {
        out.push_str(&format!("  {l}\n"));
    }
    if !changes.is_empty() {
        out.push_str("Latest changes (`metaguard controls audit` for all):\n");
        for e in &changes {
            out.push_str(&format!("  {}\n", audit_line(e, &tz)));
        }
    }
    Ok(out)
}

/// One line a control, as `controls`, `config check` and the dashboard say it.
pub(crate) fn describe(c: &Controls, now: i64, tz: &jiff::tz::TimeZone) -> Vec<String> {
    let pause = |t: Option<i64>| match t {
        Some(t) if t > now => Some(format!(
            "paused until {} ({} left)",
            local(t, tz),
            ago(t - now)
        )),
        Some(_) => Some("pause over".to_string()),
        None => None,
    };
    let acts = |m: &crate::policy::CategoryActions| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if let Some(p) = pause(c.paused_until) {
        out.push(format!("everyone: {p}"));
    }
    if !c.categories.is_empty() {
        out.push(format!("household: {}", acts(&c.categories)));
    }
    for (g, a) in &c.groups {
        out.push(format!("group {g}: {}", acts(a)));
    }
    for d in &c.devices {
        let mut parts = Vec::new();
        if let Some(g) = &d.group {
            parts.push(if g.is_empty() {
                "no group".to_string()
            } else {
                format!("group {g}")
            });
        }
        if !d.categories.is_empty() {
            parts.push(acts(&d.categories));
        }
        parts.extend(pause(d.paused_until));
        let ids: Vec<String> = d.matches.iter().map(ToString::to_string).collect();
        out.push(format!(
            "device {} ({}): {}",
            d.name,
            ids.join(", "),
            parts.join("; ")
        ));
    }
    for n in &c.allow {
        out.push(format!("allowed: {n}"));
    }
    for n in &c.block {
        out.push(format!("blocked: {n}"));
    }
    let zoned = jiff::Timestamp::from_second(now)
        .ok()
        .map(|t| t.to_zoned_datetime(tz.clone()));
    for (i, s) in c.schedules.iter().enumerate() {
        let on = zoned.as_ref().is_some_and(|z| s.active(z));
        out.push(format!(
            "schedule {}: group {}: {}{}",
            i + 1,
            s.group,
            change::schedule_text(s),
            if on { " (in force now)" } else { "" }
        ));
    }
    out
}

/// The latest `limit` changes; none when the log cannot be read.
pub(crate) fn read_audit(config: &Config, limit: usize) -> Vec<audit::Entry> {
    crate::store::read::open(&config.store.db)
        .ok()
        .and_then(|conn| audit::read(&conn, 0, i64::MAX, limit).ok())
        .unwrap_or_default()
}

/// `2026-12-06T10:02:00+01:00  dashboard (session 3fa2)  group of tablet: none → kids`.
pub(crate) fn audit_line(e: &audit::Entry, tz: &jiff::tz::TimeZone) -> String {
    format!(
        "{}  {}  {}: {} → {}",
        local(e.ts, tz),
        e.actor,
        e.what,
        e.old,
        e.new
    )
}

fn audit_log(config: &Config, lines: usize, json: bool) -> anyhow::Result<String> {
    let conn = crate::store::read::open(&config.store.db)?;
    let rows = audit::read(&conn, 0, i64::MAX, lines)?;
    if json {
        return Ok(serde_json::to_string(&rows)? + "\n");
    }
    let tz = crate::report::local_tz();
    if rows.is_empty() {
        return Ok("no changes recorded\n".into());
    }
    Ok(rows.iter().map(|e| audit_line(e, &tz) + "\n").collect())
}
