//! Household controls: what a parent changes on the dashboard or with `metaguard
//! controls` (a device's group, actions per device, group or household, allowed and
//! blocked names, pauses, schedules). They are kept in `<state_dir>/controls.json`, since
//! the config in /etc stays read-only under the unit, and laid over the config file's
//! settings by [`overlay`] wherever a config is loaded, so `serve`, `check`, `lists` and
//! `config check` all see the same effective settings. A change goes through [`change`]:
//! checked, recorded in the audit log ([`audit`]), then written whole.

pub(crate) mod audit;
pub(crate) mod change;
pub(crate) mod clock;
pub(crate) mod overlay;
mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clients::DeviceMatch;
use crate::config::{Config, ListedName};
use crate::policy::{Action, CategoryActions, GroupsConfig};
pub(crate) use schedule::{Schedule, parse_days};

/// The file the controls are kept in, in the state directory.
pub(crate) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("controls.json")
}

/// Every control in force (or waiting for its time), as `controls.json` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Controls {
    /// Blocking paused for everyone until then (Unix seconds); a block is answered and
    /// logged as `log` meanwhile.
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub(crate) paused_until: Option<i64>,
    /// Names (and their subdomains) never blocked, as `[filter] allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) allow: Vec<ListedName>,
    /// Names (and their subdomains) blocked, as `[filter] block`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) block: Vec<ListedName>,
    /// The household's action per category, as `[categories]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) categories: CategoryActions,
    /// Actions per group, as `[groups.NAME]` (a group set here exists even when the
    /// config file does not name it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) groups: GroupsConfig,
    /// Per device: its group, its own actions, its pause.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) devices: Vec<DeviceControl>,
    /// Actions of a group at set times of the week.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) schedules: Vec<Schedule>,
}

/// The controls of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceControl {
    /// Its name when the control was set (as `[[devices]] name`).
    pub(crate) name: String,
    /// How it is recognised: its MAC, else its addresses (as `[[devices]] match`).
    #[serde(rename = "match")]
    pub(crate) matches: Vec<DeviceMatch>,
    /// Its group: `Some("")` takes it out of the group the config gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// Its own actions, over its group's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) categories: CategoryActions,
    /// Blocking paused for it until then (Unix seconds).
    #[serde(default, with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub(crate) paused_until: Option<i64>,
}

impl DeviceControl {
    /// Nothing left to say about the device: the entry can go.
    fn is_empty(&self) -> bool {
        self.group.is_none() && self.categories.is_empty() && self.paused_until.is_none()
    }
}

/// Why the controls could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// The file is there but not controls (edited by hand?).
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Reading, locking or writing the file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The change cannot work: nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The audit log could not record it: nothing was changed.
    #[error("the audit log (in {}) could not record the change, so nothing was changed: {source}", .db.display())]
    Audit {
        db: PathBuf,
        source: crate::store::StoreError,
    },
}

impl Controls {
    /// The controls in `file`; none when it does not exist.
    pub(crate) fn load(file: &Path) -> Result<Controls, ControlError> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Controls::default()),
            Err(source) => {
                return Err(ControlError::Io {
                    path: file.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| ControlError::Parse {
            file: file.display().to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// The file's text (pretty JSON: a state file the dashboard and `metaguard controls`
    /// write; its JSON costs the binary less than TOML would).
    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Whether blocking is paused for everyone at `now`.
    pub(crate) fn paused_at(&self, now: i64) -> bool {
        self.paused_until.is_some_and(|t| t > now)
    }

    /// The device control that recognises `m`, or carries the name `name`.
    pub(crate) fn device(&self, matches: &[DeviceMatch], name: &str) -> Option<usize> {
        self.devices.iter().position(|d| {
            d.matches.iter().any(|m| matches.contains(m)) || d.name.eq_ignore_ascii_case(name)
        })
    }
}

/// The action a category gets where nothing else says: shown as "default".
pub(crate) fn action_word(a: Option<Action>) -> &'static str {
    a.map_or("default", Action::as_str)
}

/// Optional Unix seconds written as an RFC 3339 time (`2026-12-06T21:00:00Z`).
mod time_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| jiff::Timestamp::from_second(t).ok()) {
            Some(ts) => s.collect_str(&ts),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<jiff::Timestamp>()
            .map(|t| Some(t.as_second()))
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a time: {e}")))
    }
}

/// Lay the controls in `config`'s state directory over it, as they stand now. Controls
/// left out (they no longer fit the config) are logged as warnings.
pub(crate) fn lay_over(config: &mut Config) -> Result<overlay::Applied, ControlError> {
    let controls = Controls::load(&path(&config.remote.state_dir))?;
    let applied = overlay::apply(config, &controls, clock::now());
    for s in &applied.skipped {
        tracing::warn!("household control left out: {s}");
    }
    Ok(applied)
}

/// When a pause given as `5m`, `1h`, `90min` or `tomorrow` (the next local midnight)
/// ends, from `now`; `off`, `0` or `resume` give `None`.
pub(crate) fn pause_until(spec: &str, now: i64) -> Result<Option<i64>, String> {
    match spec.trim() {
        "off" | "0" | "resume" | "" => Ok(None),
        "tomorrow" => {
            let tz = jiff::tz::TimeZone::system();
            jiff::Timestamp::from_second(now)
                .ok()
                .and_then(|t| t.to_zoned_datetime(tz).date().tomorrow().ok())
                .and_then(|d| {
                    d.to_datetime(jiff::civil::Time::midnight())
                        .to_zoned_datetime(jiff::tz::TimeZone::system())
                        .ok()
                })
                .map(|z| Some(z.timestamp().as_second()))
                .ok_or_else(|| "cannot tell when tomorrow starts".to_string())
        }
        s => {
            let d = humantime::parse_duration(s).map_err(|e| {
                format!("{s:?} is not a pause length (5m, 1h, 90min, tomorrow, off): {e}")
            })?;
            if d.as_secs() > 366 * 86400 {
                return Err(format!("{s:?} is longer than a year"));
            }
            Ok(Some(now + d.as_secs() as i64))
        }
    }
}
