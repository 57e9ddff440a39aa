//! The report's sections on lookups that are not Meta, in text, Markdown and CSV: other
//! trackers (`custom`, remote lists of other categories) and the bypass evidence ("may
//! bypass metaguard"). The HTML sections are in `html.rs`.

use std::fmt::Write as _;

use super::model::*;

/// The evidence of a bypass: `name (count)` each, most first, escaped by `esc`.
pub(crate) fn evidence(names: &[DomainCount], esc: fn(&str) -> String) -> String {
    names
        .iter()
        .map(|x| format!("{} ({})", esc(&x.domain), x.lookups))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Devices with lookups of other trackers, most first.
fn other_devices(m: &ReportModel) -> Vec<&DeviceReport> {
    let mut v: Vec<&DeviceReport> = m.devices.iter().filter(|d| d.other_lookups > 0).collect();
    v.sort_by(|a, b| {
        b.other_lookups
            .cmp(&a.other_lookups)
            .then(a.name.cmp(&b.name))
    });
    v
}

/// `category (default action) count` each, escaped by `esc`.
fn categories(cats: &[CategoryCount], esc: fn(&str) -> String) -> String {
    cats.iter()
        .map(|c| {
            format!(
                "{} ({} by default) {}",
                esc(&c.category),
                c.default_action,
                c.total
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text sections; `bold` styles a title, `esc` escapes database strings.
pub(crate) fn text(
    m: &ReportModel,
    bold: &dyn Fn(&str) -> String,
    esc: fn(&str) -> String,
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", bold("Other trackers (not Meta)"));
    let _ = writeln!(o, "  {}", m.other.note);
    if m.other.lookups == 0 {
        let _ = writeln!(o, "  None.");
    } else {
        let _ = writeln!(o, "  {}", categories(&m.other.categories, esc));
    }
    for d in other_devices(m) {
        let doms: Vec<String> = d.other_top_domains.iter().map(|x| esc(&x.domain)).collect();
        let _ = writeln!(
            o,
            "  {} {:>7}  {}",
            pad20(&esc(&d.name)),
            d.other_lookups,
            doms.join(", ")
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "{}", bold("May bypass metaguard"));
    let _ = writeln!(o, "  {}", m.bypass.note);
    if m.bypass.devices.is_empty() {
        let _ = writeln!(o, "  No device looked up a bypass name.");
    }
    for d in &m.bypass.devices {
        let names = evidence(&d.names, esc);
        let _ = writeln!(o, "  {} {:>7}  {names}", pad20(&esc(&d.device)), d.lookups);
    }
    let _ = writeln!(o);
    o
}

fn pad20(s: &str) -> String {
    format!("{s:<20}")
}

/// The Markdown sections; `esc` escapes database strings.
pub(crate) fn markdown(m: &ReportModel, esc: fn(&str) -> String) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\n## Other trackers (not Meta)\n\n{}\n", m.other.note);
    if m.other.lookups == 0 {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(o, "{}\n", categories(&m.other.categories, esc));
    }
    for d in other_devices(m) {
        let doms: Vec<String> = d.other_top_domains.iter().map(|x| esc(&x.domain)).collect();
        let _ = writeln!(
            o,
            "- {}: {} lookups ({})",
            esc(&d.name),
            d.other_lookups,
            doms.join(", ")
        );
    }
    let _ = writeln!(o, "\n## May bypass metaguard\n\n{}\n", m.bypass.note);
    if m.bypass.devices.is_empty() {
        let _ = writeln!(o, "No device looked up a bypass name.");
    }
    for d in &m.bypass.devices {
        let names = evidence(&d.names, esc);
        let _ = writeln!(o, "- {}: {} lookups ({names})", esc(&d.device), d.lookups);
    }
    o
}

/// One CSV row (unescaped; `render::csv` writes them).
type Row = [String; 9];

fn row(date: &str, d: &DeviceReport, category: &str, default: &str, n: Counts) -> Row {
    [
        date.to_string(),
        d.name.clone(),
        d.mac.clone().unwrap_or_default(),
        category.to_string(),
        default.to_string(),
        n.blocked.to_string(),
        n.logged.to_string(),
        n.allowed.to_string(),
        n.total().to_string(),
    ]
}

/// The CSV rows of device `d` for `cats`: one per category × day of the period, zero
/// days included, counts from `days`.
pub(crate) fn category_rows(
    m: &ReportModel,
    d: &DeviceReport,
    cats: &[CategoryCount],
    days: &[DayCategoryCount],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for c in cats {
        for day in &m.period.days {
            let n = days
                .iter()
                .find(|x| &x.date == day && x.category == c.category)
                .map(|x| x.counts)
                .unwrap_or_default();
            rows.push(row(day, d, &c.category, &c.default_action, n));
        }
    }
    rows
}

/// The CSV rows of the other trackers, then of the bypass evidence (category
/// `bypass`), per device × category × day.
pub(crate) fn csv_rows(m: &ReportModel) -> Vec<Row> {
    let mut rows = Vec::new();
    for d in &m.devices {
        rows.extend(category_rows(m, d, &d.other_categories, &d.other_days));
    }
    for b in &m.bypass.devices {
        let Some(d) = m.devices.iter().find(|d| d.name == b.device) else {
            continue;
        };
        for day in &b.days {
            let n = Counts {
                logged: day.lookups,
                ..Counts::default()
            };
            let cat = crate::bypass::BYPASS;
            rows.push(row(&day.date, d, cat, default_action(cat), n));
        }
    }
    rows
}
