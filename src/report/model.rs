//! The report as data: what every renderer draws from, and the JSON output
//! (`schema_version` 1, documented in docs/report-schema.md).

use serde::Serialize;

/// The JSON schema version; bumped on any incompatible change.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The category of Meta AI endpoints.
pub(crate) const META_AI: &str = "meta-ai";

/// Blocked, logged and allowed Meta lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub blocked: i64,
    pub logged: i64,
    pub(crate) allowed: i64,
}

impl Counts {
    pub fn total(&self) -> i64 {
        self.blocked + self.logged + self.allowed
    }

    pub(crate) fn add(&mut self, o: &Counts) {
        self.blocked += o.blocked;
        self.logged += o.logged;
        self.allowed += o.allowed;
    }

    /// Count `n` lookups of stored action code `action` (0 log, 1 block, 2 allow).
    pub(crate) fn add_action(&mut self, action: i64, n: i64) {
        match action {
            1 => self.blocked += n,
            2 => self.allowed += n,
            _ => self.logged += n,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportModel {
    pub(crate) schema_version: u32,
    /// When it was made, local RFC 3339.
    pub(crate) generated_at: String,
    pub period: PeriodInfo,
    /// The databases read.
    pub sources: Vec<String>,
    /// Nothing was logged in the period.
    pub empty: bool,
    pub household: Household,
    /// Household lookups by category.
    pub(crate) categories: Vec<CategoryCount>,
    /// Household lookups per local day.
    pub daily: Vec<DayCount>,
    /// Household lookups by local weekday (0 = Monday) and hour: 7 rows of 24.
    pub(crate) hour_grid: Vec<Vec<i64>>,
    /// Most Meta lookups first.
    pub devices: Vec<DeviceReport>,
    pub meta_ai: MetaAi,
    /// Lookups of categories that are not Meta (`custom`, other trackers' lists).
    pub other: OtherTrackers,
    /// Devices that may bypass metaguard (category `bypass`, not counted as Meta).
    pub bypass: Bypass,
    /// What DNS cannot see.
    pub(crate) blind_spots: Vec<String>,
    /// Caveats about this report's data (trimmed raw rows, missing totals).
    pub(crate) notes: Vec<String>,
    /// Household controls and device edits made in the period, oldest first.
    pub(crate) settings_changed: Vec<SettingChange>,
}

/// One change of the audit log, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SettingChange {
    /// Local RFC 3339.
    pub(crate) at: String,
    /// A dashboard session, the API token, the command line.
    pub(crate) by: String,
    pub(crate) what: String,
    pub(crate) old: String,
    pub(crate) new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodInfo {
    /// `2026-W10` or `2026-03-01..2026-03-07`.
    pub(crate) label: String,
    /// Local midnight starting the first day, RFC 3339.
    pub start: String,
    /// Local midnight after the last day (excluded).
    pub(crate) end: String,
    pub(crate) time_zone: String,
    /// 168, or 167/169 across a DST change.
    pub hours: i64,
    /// The local dates, `YYYY-MM-DD`.
    pub days: Vec<String>,
    /// The period compared against.
    pub(crate) previous_label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Household {
    /// Devices with Meta lookups or any counted lookups in the period.
    pub devices_seen: usize,
    /// All Meta lookups (blocked + logged + allowed).
    pub meta_lookups: i64,
    #[serde(flatten)]
    pub counts: Counts,
    /// All DNS lookups counted (hourly totals), Meta or not.
    pub all_lookups: i64,
    /// Meta lookups as a percentage of all lookups; null without totals.
    pub meta_share_pct: Option<f64>,
    pub previous_meta_lookups: i64,
    /// Change against the previous period in percent; null when it had none.
    pub(crate) change_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryCount {
    pub category: String,
    /// `block`, `log` or `allow`: what the category does unless configured otherwise.
    pub default_action: String,
    #[serde(flatten)]
    pub(crate) counts: Counts,
    pub(crate) total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCount {
    pub(crate) date: String,
    #[serde(flatten)]
    pub(crate) counts: Counts,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCategoryCount {
    pub(crate) date: String,
    pub(crate) category: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainCount {
    pub(crate) domain: String,
    pub(crate) category: String,
    pub(crate) lookups: i64,
}

/// One device's line of the report: its Meta lookups, blocked and logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    /// Its name, else its MAC, else its key.
    pub name: String,
    pub(crate) mac: Option<String>,
    /// The store's keys for it (`mac:…` or `ip:…`), one per database it was found in.
    pub(crate) keys: Vec<String>,
    pub(crate) group: Option<String>,
    pub meta_lookups: i64,
    #[serde(flatten)]
    pub counts: Counts,
    pub(crate) all_lookups: i64,
    pub(crate) meta_share_pct: Option<f64>,
    pub previous_meta_lookups: i64,
    pub(crate) change_pct: Option<f64>,
    /// When the store first and last saw the device at all, RFC 3339.
    pub(crate) first_seen: Option<String>,
    pub(crate) last_seen: Option<String>,
    /// Its first and last Meta lookup in the period.
    pub(crate) first_hit: Option<String>,
    pub(crate) last_hit: Option<String>,
    pub categories: Vec<CategoryCount>,
    pub top_domains: Vec<DomainCount>,
    /// Per local day and category (only combinations with lookups).
    pub days: Vec<DayCategoryCount>,
    /// Meta lookups by local weekday (0 = Monday) and hour: 7 rows of 24.
    pub hour_grid: Vec<Vec<i64>>,
    /// Lookups of categories that are not Meta (not `bypass` either), not in the above.
    pub other_lookups: i64,
    pub other_categories: Vec<CategoryCount>,
    pub other_top_domains: Vec<DomainCount>,
    /// Per local day and other category (only combinations with lookups).
    pub other_days: Vec<DayCategoryCount>,
}

/// Lookups of categories that are not Meta: `custom` and remote lists of other
/// trackers. Never counted as Meta lookups nor in the Meta share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherTrackers {
    pub note: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub lookups: i64,
    /// Household, most lookups first.
    pub categories: Vec<CategoryCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaAi {
    pub note: String,
    pub lookups: i64,
    pub(crate) devices: Vec<MetaAiDevice>,
}

/// A device that looked up Meta AI endpoints, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MetaAiDevice {
    pub(crate) device: String,
    pub(crate) lookups: i64,
    pub(crate) domains: Vec<DomainCount>,
}

/// `bypass` lookups: public encrypted resolvers, the Firefox canary, iCloud Private
/// Relay, DDR. Evidence that a device may resolve around metaguard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bypass {
    pub note: String,
    /// Category `bypass`, all devices.
    pub lookups: i64,
    /// Most lookups first.
    pub devices: Vec<BypassDevice>,
}

/// One device that may bypass metaguard, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BypassDevice {
    pub device: String,
    pub mac: Option<String>,
    pub lookups: i64,
    /// The names it looked up and how often, most first.
    pub names: Vec<DomainCount>,
    /// Lookups per local day of the period (zero days included).
    pub days: Vec<DayLookups>,
}

/// Lookups on one local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayLookups {
    pub date: String,
    pub lookups: i64,
}

/// Percentage change from `prev` to `cur`; None when `prev` is 0.
pub(crate) fn change_pct(cur: i64, prev: i64) -> Option<f64> {
    (prev > 0).then(|| round1((cur - prev) as f64 * 100.0 / prev as f64))
}

/// `part` as a percentage of `whole`; None when `whole` is 0.
pub(crate) fn share_pct(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| round1(part as f64 * 100.0 / whole as f64))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// What a category counts as in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A category of the built-in Meta lists: a Meta lookup.
    Meta,
    /// `bypass`: evidence that a device may resolve around metaguard.
    Bypass,
    /// Anything else (`custom`, remote lists of other trackers): not Meta.
    Other,
}

/// Whether lookups of `category` are Meta lookups, bypass evidence or other trackers.
pub(crate) fn kind(category: &str) -> Kind {
    if category == crate::bypass::BYPASS {
        Kind::Bypass
    } else if crate::lists::is_meta_category(category) {
        Kind::Meta
    } else {
        Kind::Other
    }
}

/// What `category` does unless `[categories]` or a group says otherwise: the action its
/// built-in list declares; `block` for `custom` (`--blocklist`, `[filter] block`, remote
/// lists of that category), `allow` for `allow`, else `log` (as `policy::Policy`).
pub(crate) fn default_action(category: &str) -> &'static str {
    let builtin = crate::lists::builtin_categories();
    if let Some((_, action)) = builtin.iter().find(|(c, _)| c == category) {
        return action.unwrap_or(crate::policy::Action::Log).as_str();
    }
    match category {
        crate::policy::CUSTOM => "block",
        crate::policy::ALLOW => "allow",
        _ => "log",
    }
}

pub(crate) const META_AI_NOTE: &str = "Since 16 December 2025 Meta uses people's conversations with Meta AI to personalise the ads and content they see. Devices below looked up Meta AI endpoints.";

/// The text above the other trackers' section.
pub(crate) const OTHER_NOTE: &str = "Lookups that your own lists or remote lists matched outside Meta's categories. They are not Meta lookups and are not in the Meta figures above.";

/// The text above the bypass section.
pub(crate) const BYPASS_NOTE: &str = "These devices looked up a public encrypted DNS resolver, the Firefox DoH canary, iCloud Private Relay or DDR: they may bypass metaguard, and then their Meta lookups are not counted here. These lookups are not Meta lookups.";

pub(crate) const BLIND_SPOTS: &[&str] = &[
    "The Conversions API sends events from a website's or shop's server straight to Meta, server to server: no lookup from your network, so DNS never sees it.",
    "Tracking inside Meta's own apps and pages (Facebook, Instagram, WhatsApp, Messenger, Threads) uses the same first-party hosts as the app itself; DNS can log those lookups but cannot tell tracking from use, and blocking them breaks the app.",
    "Devices using their own encrypted DNS (DoH/DoT in a browser or app, Android Private DNS set to a host name) or a VPN bypass this resolver and are not counted; the bypass section shows the lookups that hint at it, and only a router firewall (port 853, known DoH addresses) stops it.",
    "A lookup is not a request: cached answers mean one lookup may stand for many requests, and a blocked lookup may be retried.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_builtin_meta_lists_are_meta_and_defaults_are_the_lists_own() {
        for (c, k, a) in [
            ("pixel", Kind::Meta, "block"),
            ("app-telemetry", Kind::Meta, "block"),
            ("first-party", Kind::Meta, "log"),
            ("meta-ai", Kind::Meta, "log"),
            ("bypass", Kind::Bypass, "log"),
            ("custom", Kind::Other, "block"),
            ("allow", Kind::Other, "allow"),
            ("other-trackers", Kind::Other, "log"),
        ] {
            assert_eq!((kind(c), default_action(c)), (k, a), "{c}");
        }
    }
}
