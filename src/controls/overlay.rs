//! Laying the controls over a config at a given time: the effective settings that
//! `serve` swaps in like a reload, and when they change next by themselves (a pause
//! ends, a schedule's window opens or closes).
//!
//! A control that no longer fits the config (its group or category is gone from the
//! file) is left out with a warning instead of stopping the start: the household keeps
//! its DNS. A change that does not fit is refused when it is made (`change.rs`).

use std::collections::HashSet;

use super::Controls;
use crate::clients::DeviceConfig;
use crate::config::Config;
use crate::policy::CategoryActions;

/// What laying the controls over a config did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// When the effective settings change by themselves next (Unix seconds).
    pub(crate) next: Option<i64>,
    /// Controls left out, and why.
    pub(crate) skipped: Vec<String>,
}

/// Lay `controls` over `config` as they stand at `now` (Unix seconds).
pub(crate) fn apply(config: &mut Config, controls: &Controls, now: i64) -> Applied {
    let mut out = Applied::default();
    let known = crate::lists::known_categories(config);
    let fit = |acts: &CategoryActions, whose: &str, skipped: &mut Vec<String>| {
        let mut kept = CategoryActions::new();
        for (c, a) in acts {
            if known.contains(c) {
                kept.insert(c.clone(), *a);
            } else {
                skipped.push(format!("{whose}: category {c:?} is not in the lists"));
            }
        }
        kept
    };
    let cats = fit(&controls.categories, "household", &mut out.skipped);
    config.categories.extend(cats);
    for (g, acts) in &controls.groups {
        let acts = fit(acts, &format!("group {g}"), &mut out.skipped);
        config.groups.entry(g.clone()).or_default().extend(acts);
    }
    // Schedules, in the local time zone.
    let tz = jiff::tz::TimeZone::system();
    if let Ok(zoned) = jiff::Timestamp::from_second(now).map(|t| t.to_zoned_datetime(tz)) {
        for s in &controls.schedules {
            let table = config.groups.entry(s.group.clone()).or_default();
            if s.active(&zoned) {
                let acts = fit(
                    &s.categories,
                    &format!("schedule of {}", s.group),
                    &mut out.skipped,
                );
                table.extend(acts);
            }
            let edge = s.next_edge(&zoned).map(|t| t.as_second());
            out.next = earliest(out.next, edge);
        }
    }
    extend_unique(&mut config.filter.allow, &controls.allow);
    extend_unique(&mut config.filter.block, &controls.block);
    if controls.paused_at(now) {
        config.paused = true;
        out.next = earliest(out.next, controls.paused_until);
    }
    for dc in &controls.devices {
        let group = match dc.group.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(g) if config.groups.contains_key(g) => Some(Some(g.to_string())),
            Some(g) => {
                out.skipped.push(format!(
                    "device {}: group {g:?} is not defined any more",
                    dc.name
                ));
                None
            }
        };
        let acts = fit(
            &dc.categories,
            &format!("device {}", dc.name),
            &mut out.skipped,
        );
        let paused = dc.paused_until.is_some_and(|t| t > now);
        if paused {
            out.next = earliest(out.next, dc.paused_until);
        }
        let same = |d: &DeviceConfig| {
            d.matches.iter().any(|m| dc.matches.contains(m))
                || d.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&dc.name))
        };
        match config.devices.iter_mut().find(|d| same(d)) {
            Some(d) => {
                if let Some(g) = group {
                    d.group = g;
                }
                d.categories.extend(acts);
                d.paused |= paused;
            }
            None => {
                // Only what no other device claims: a device is one entry.
                let claimed: HashSet<_> = config
                    .devices
                    .iter()
                    .flat_map(|d| d.matches.iter())
                    .collect();
                let matches: Vec<_> = dc
                    .matches
                    .iter()
                    .filter(|m| !claimed.contains(m))
                    .copied()
                    .collect();
                if matches.is_empty() {
                    continue;
                }
                config.devices.push(DeviceConfig {
                    // A MAC or address as its label: the leases may name it better.
                    name: (!is_address(&dc.name)).then(|| dc.name.clone()),
                    matches,
                    group: group.flatten(),
                    categories: acts,
                    paused,
                });
            }
        }
    }
    out
}

/// `label` is a MAC, an address or a log key, not a name.
fn is_address(label: &str) -> bool {
    label.starts_with("ip:")
        || label.starts_with("mac:")
        || label.parse::<crate::clients::Mac>().is_ok()
        || label.parse::<std::net::IpAddr>().is_ok()
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn extend_unique<T: PartialEq + Clone>(to: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !to.contains(x) {
            to.push(x.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::DeviceControl;
    use crate::policy::Action;

    fn kids_config() -> Config {
        Config::parse(
            "[filter]\nlists_dir = \"/nonexistent\"\n[groups.kids]\nmeta-ai = \"block\"\n\
             [[devices]]\nname = \"tablet\"\nmatch = [\"02:00:00:00:00:42\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_control_changes_the_configured_device_and_adds_new_ones() {
        let mut c = kids_config();
        let controls = Controls {
            devices: vec![
                DeviceControl {
                    name: "Tablet".into(),
                    matches: vec!["02:00:00:00:00:42".parse().unwrap()],
                    group: Some("kids".into()),
                    categories: CategoryActions::from([("pixel".into(), Action::Block)]),
                    paused_until: Some(200),
                },
                DeviceControl {
                    name: "phone".into(),
                    matches: vec!["192.168.1.7".parse().unwrap()],
                    group: Some("nosuch".into()),
                    categories: CategoryActions::from([("nosuch".into(), Action::Block)]),
                    paused_until: None,
                },
            ],
            paused_until: Some(50),
            ..Default::default()
        };
        let applied = apply(&mut c, &controls, 100);
        assert_eq!(applied.next, Some(200), "the device's pause ends then");
        assert_eq!(applied.skipped.len(), 2, "{:?}", applied.skipped);
        assert!(!c.paused, "the household pause is over");
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.devices[0].group.as_deref(), Some("kids"));
        assert!(c.devices[0].paused);
        assert_eq!(c.devices[0].categories.get("pixel"), Some(&Action::Block));
        assert_eq!(c.devices[1].group, None);
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        // Later, the pause is over too.
        let mut c = kids_config();
        assert_eq!(apply(&mut c, &controls, 300).next, None);
        assert!(!c.devices[0].paused);
    }
}
