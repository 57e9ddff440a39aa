//! The HTML report: one self-contained file (inline CSS, inline SVG charts, no script,
//! no external asset) that reads on a phone. Built with `maud`, which escapes every
//! interpolated string, in text and in attributes, SVG included.

use maud::{DOCTYPE, PreEscaped, html};

use super::charts::{colour, daily_trend, device_bars, heat_map, legend};
use super::model::*;
use super::render::change;

/// The dashboard's stylesheet (one layout from 360 px phones to desktops, the report's
/// palette): the same constant as the dashboard's `/static/style.css`, not a copy
/// concatenated with more rules, so that LTO can merge the two.
const DASHBOARD_CSS: &str = include_str!("../web/assets/style.css");

/// The few rules of the report's own parts, after the dashboard's.
const CSS: &str = r#"
h3{font-size:1.05rem;margin:1.4rem 0 .3rem}
.device{border:1px solid var(--line);border-radius:.5rem;padding:.2rem .7rem .6rem;margin:.8rem 0}
"#;

/// The CSS class of a week-over-week change (`up`, `down` or none); the dashboard's too.
pub(crate) fn change_class(c: Option<f64>, cur: i64) -> &'static str {
    match c {
        Some(p) if p > 0.0 => "up",
        Some(p) if p < 0.0 => "down",
        None if cur > 0 => "up",
        _ => "",
    }
}

/// The class "long" for a name with a word over 20 characters: it may break anywhere
/// (the stylesheet's `.long`), where other names break between words only.
fn long(name: &str) -> Option<&'static str> {
    name.split_whitespace()
        .any(|w| w.chars().count() > 20)
        .then_some("long")
}

/// A share as `12.3%`, or `–` when there is none; the dashboard's too.
pub(crate) fn pct(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |p| format!("{p:.1}%"))
}

/// The whole report as one HTML document.
pub(crate) fn html(m: &ReportModel) -> String {
    let h = &m.household;
    let title = format!("metaguard report {}", m.period.label);
    let first = m.period.days.first().cloned().unwrap_or_default();
    let last = m.period.days.last().cloned().unwrap_or_default();
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (title) }
                style { (PreEscaped(DASHBOARD_CSS)) (PreEscaped(CSS)) }
            }
            body { main {
                header id="top" {
                    h1 { (title) }
                    p class="muted" {
                        (first) " to " (last) " · " (m.period.time_zone) " · " (m.period.hours) " h · generated " (m.generated_at)
                    }
                }
                @if m.empty {
                    section id="no-data" {
                        h2 { "No data" }
                        p class="note" {
                            "No Meta lookups and no queries were logged between " (m.period.start) " and " (m.period.end)
                            " in " (m.sources.join(", ")) ". Is " code { "metaguard serve" } " running and using this database?"
                        }
                    }
                } @else {
                    section id="summary" {
                        h2 { "Household" }
                        div class="cards" {
                            div class="card" { b { (h.devices_seen) } "devices seen" }
                            div class="card" { b { (h.meta_lookups) } "Meta lookups" }
                            div class="card" { b { (h.counts.blocked) } "blocked" }
                            div class="card" { b { (h.counts.logged) } "logged only" }
                            div class="card" { b { (pct(h.meta_share_pct)) } "of " (h.all_lookups) " lookups" }
                            div class="card" {
                                b class=(change_class(h.change_pct, h.meta_lookups)) { (change(h.change_pct, h.meta_lookups)) }
                                "vs " (m.period.previous_label) " (" (h.previous_meta_lookups) ")"
                            }
                        }
                        div class="charts" {
                            div { h3 { "Per day" } (daily_trend(&m.daily)) }
                            div { h3 { "When (local time)" } (heat_map(&m.hour_grid, "Meta lookups by weekday and hour")) }
                        }
                    }
                    section id="devices" {
                        h2 { "Devices" }
                        (device_bars(&m.devices.iter().map(|d| (d.name.as_str(), d.meta_lookups, d.categories.as_slice())).collect::<Vec<_>>()))
                        (legend(&m.categories))
                        div class="scroll" {
                            table {
                                thead { tr { th { "Device" } th { "Meta" } th { "Blocked" } th { "Logged" } th { "Share" } th { "Change" } } }
                                tbody {
                                    @for d in &m.devices {
                                        tr {
                                            td class=[long(&d.name)] { (d.name) }
                                            td { (d.meta_lookups) }
                                            td { (d.counts.blocked) }
                                            td { (d.counts.logged) }
                                            td { (pct(d.meta_share_pct)) }
                                            td class=(change_class(d.change_pct, d.meta_lookups)) { (change(d.change_pct, d.meta_lookups)) }
                                        }
                                    }
                                }
                            }
                        }
                        @for d in &m.devices {
                            div class="device" {
                                h3 class=[long(&d.name)] { (d.name) }
                                p class="muted" {
                                    @if let Some(mac) = &d.mac { (mac) " · " }
                                    "seen " (d.first_seen.as_deref().unwrap_or("–")) " to " (d.last_seen.as_deref().unwrap_or("–"))
                                }
                                @if d.meta_lookups == 0 {
                                    p { "No Meta lookups." }
                                } @else {
                                    div class="scroll" {
                                        table {
                                            thead { tr { th { "Category" } th class="text" { "Default" } th { "Lookups" } th { "Blocked" } th { "Logged" } th { "Allowed" } } }
                                            tbody {
                                                @for c in &d.categories {
                                                    tr {
                                                        td { i style=(format!("display:inline-block;width:.7rem;height:.7rem;margin-right:.3rem;background:{}", colour(&c.category))) {} (c.category) }
                                                        td class="wrap" { (c.default_action) }
                                                        td { (c.total) }
                                                        td { (c.counts.blocked) }
                                                        td { (c.counts.logged) }
                                                        td { (c.counts.allowed) }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                    p { b { "Top domains" } }
                                    div class="scroll" {
                                        table {
                                            tbody {
                                                @for t in &d.top_domains {
                                                    tr { td class=[long(&t.domain)] { (t.domain) } td class="wrap" { (t.category) } td { (t.lookups) } }
                                                }
                                            }
                                        }
                                    }
                                    p { b { "When (local time)" } }
                                    (heat_map(&d.hour_grid, &format!("{} by weekday and hour", d.name)))
                                }
                            }
                        }
                    }
                    section id="meta-ai" {
                        h2 { "Meta AI" }
                        p class="note" { (m.meta_ai.note) }
                        @if m.meta_ai.devices.is_empty() {
                            p { "No device looked up Meta AI endpoints." }
                        } @else {
                            div class="scroll" {
                                table {
                                    thead { tr { th { "Device" } th { "Lookups" } th class="text" { "Endpoints" } } }
                                    tbody {
                                        @for d in &m.meta_ai.devices {
                                            tr {
                                                td class=[long(&d.device)] { (d.device) }
                                                td { (d.lookups) }
                                                td class="text" { @for (i, x) in d.domains.iter().enumerate() { @if i > 0 { ", " } (x.domain) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section id="other-trackers" {
                        h2 { "Other trackers (not Meta)" }
                        p class="note" { (m.other.note) }
                        @if m.other.lookups == 0 {
                            p { "None." }
                        } @else {
                            div class="scroll" {
                                table {
                                    thead { tr { th { "Category" } th class="text" { "Default" } th { "Lookups" } th { "Blocked" } th { "Logged" } } }
                                    tbody {
                                        @for c in &m.other.categories {
                                            tr { td { (c.category) } td class="wrap" { (c.default_action) } td { (c.total) } td { (c.counts.blocked) } td { (c.counts.logged) } }
                                        }
                                    }
                                }
                                table {
                                    thead { tr { th { "Device" } th { "Lookups" } th class="text" { "Names" } } }
                                    tbody {
                                        @for d in m.devices.iter().filter(|d| d.other_lookups > 0) {
                                            tr {
                                                td class=[long(&d.name)] { (d.name) }
                                                td { (d.other_lookups) }
                                                td class="text" { @for (i, x) in d.other_top_domains.iter().enumerate() { @if i > 0 { ", " } (x.domain) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section id="bypass" {
                        h2 { "May bypass metaguard" }
                        p class="note" { (m.bypass.note) }
                        @if m.bypass.devices.is_empty() {
                            p { "No device looked up a bypass name." }
                        } @else {
                            div class="scroll" {
                                table {
                                    thead { tr { th { "Device" } th { "Lookups" } th class="text" { "Names (how often)" } } }
                                    tbody {
                                        @for d in &m.bypass.devices {
                                            tr {
                                                td class=[long(&d.device)] { (d.device) }
                                                td { (d.lookups) }
                                                td class="text" { (super::not_meta::evidence(&d.names, |s| s.to_string())) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                section id="dns-limits" {
                    h2 { "What DNS cannot see" }
                    ul { @for b in &m.blind_spots { li { (b) } } }
                }
                @if !m.settings_changed.is_empty() {
                    section id="settings-changed" {
                        h2 { "Settings changed this week" }
                        div class="scroll" { table {
                            thead { tr { th class="text" { "When" } th class="text" { "What" } th class="text" { "Before" } th class="text" { "After" } th class="text" { "By" } } }
                            tbody { @for c in &m.settings_changed { tr {
                                td class="text" { (c.at) } td class="text" { (c.what) } td class="text" { (c.old) }
                                td class="text" { (c.new) } td class="text" { (c.by) } } } }
                        } }
                    }
                }
                @if !m.notes.is_empty() {
                    section id="notes" {
                        h2 { "Notes" }
                        ul { @for n in &m.notes { li { (n) } } }
                    }
                }
                footer class="muted" { p { "Sources: " (m.sources.join(", ")) } }
            } }
        }
    };
    doc.into_string()
}
