//! `metaguard controls`: show the household controls and the audit log, or make one
//! change (the same `controls::change::make` the dashboard calls).

use std::path::Path;

use anyhow::{Context, bail};

use super::table::{ago, local};
use crate::config::Config;
use crate::controls::change::{self, Change, NameList, Scope};
use crate::controls::{Controls, Schedule, audit, clock, pause_until};
use crate::policy::Action;

/// `--device` and `--group`.
pub(crate) struct Target {
    pub(crate) device: Option<String>,
    pub(crate) group: Option<String>,
}

/// Run what `words` say (nothing: show); the text to print.
pub(crate) fn run(
    words: &[String],
    target: Target,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<String> {
    let (config, _) = Config::locate(config)?;
    let now = clock::now();
    let change = match words.first().map(String::as_str) {
        None | Some("show") => return show(&config, now, json),
        Some("audit") => {
            let n = match words.get(1) {
                Some(n) => n.parse().context("audit N: N is a number of changes")?,
                None => 50,
            };
            return audit_log(&config, n, json);
        }
        Some(_) => to_change(words, target, now)?,
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

fn to_change(words: &[String], target: Target, now: i64) -> anyhow::Result<Change> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let wants = |n: usize, usage: &str| -> anyhow::Result<()> {
        if w.len() != n {
            bail!("usage: metaguard controls {usage}");
        }
        Ok(())
    };
    Ok(match w[0] {
        "group" => {
            wants(3, "group DEVICE GROUP|none")?;
            Change::Group {
                device: w[1].to_string(),
                group: (!w[2].eq_ignore_ascii_case("none")).then(|| w[2].to_string()),
            }
        }
        "action" => {
            wants(
                3,
                "action CATEGORY block|log|allow|default [--group G | --device D]",
            )?;
            Change::Action {
                scope: match (target.group, target.device) {
                    (Some(g), _) => Scope::Group(g),
                    (None, Some(d)) => Scope::Device(d),
                    (None, None) => Scope::Household,
                },
                category: w[1].to_string(),
                action: parse_action(w[2])?,
            }
        }
        verb @ ("allow" | "block" | "unlist") => {
            wants(2, &format!("{verb} NAME"))?;
            Change::Name {
                name: w[1].to_string(),
                list: match verb {
                    "allow" => Some(NameList::Allow),
                    "block" => Some(NameList::Block),
                    _ => None,
                },
            }
        }
        "pause" => {
            wants(2, "pause 5m|1h|tomorrow|off [--device D]")?;
            Change::Pause {
                device: target.device,
                until: pause_until(w[1], now).map_err(anyhow::Error::msg)?,
            }
        }
        "resume" => {
            wants(1, "resume [--device D]")?;
            Change::Pause {
                device: target.device,
                until: None,
            }
        }
        "schedule" => {
            wants(7, "schedule GROUP CATEGORY ACTION DAYS FROM TO")?;
            let action = parse_action(w[3])?.context("a schedule needs an action")?;
            Change::AddSchedule(Schedule {
                group: w[1].to_string(),
                days: crate::controls::parse_days(w[4]).map_err(anyhow::Error::msg)?,
                from: w[5].parse().map_err(anyhow::Error::msg)?,
                to: w[6].parse().map_err(anyhow::Error::msg)?,
                categories: [(w[2].to_string(), action)].into_iter().collect(),
            })
        }
        "unschedule" => {
            wants(2, "unschedule N")?;
            Change::RemoveSchedule(w[1].parse().context("unschedule N: N is a number")?)
        }
        other => bail!(
            "{other:?} is not a control: group, action, allow, block, unlist, pause, resume, \
             schedule, unschedule, audit (`metaguard controls --help`)"
        ),
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
