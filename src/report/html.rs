//! The HTML report: one self-contained file (inline CSS, inline SVG charts, no script,
//! no external asset) that reads on a phone. Built with `maud`, which escapes every
//! interpolated string, in text and in attributes, SVG included.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::model::*;
use super::render::change;

const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5b6475;--bg:#fff;--line:#e3e6ec;--accent:#1f5fbf}
*{box-sizing:border-box}
body{margin:0 auto;max-width:60rem;padding:1rem;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:2px solid var(--line);padding-bottom:.2rem}
h3{font-size:1.05rem;margin:1.4rem 0 .3rem}
.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.6rem}
.card{border:1px solid var(--line);border-radius:.5rem;padding:.5rem .7rem}
.card b{display:block;font-size:1.4rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{padding:.25rem .4rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left;white-space:normal;word-break:break-word}
svg{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:var(--fg)}
.legend span{display:inline-block;margin:.1rem .6rem .1rem 0;font-size:.85rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.25rem;vertical-align:-.1rem;border-radius:2px}
.device{border:1px solid var(--line);border-radius:.5rem;padding:.2rem .8rem .6rem;margin:.8rem 0}
.up{color:#b3261e}.down{color:#1b7f3a}
.note{background:#f5f7fb;border-left:4px solid var(--accent);padding:.5rem .8rem}
"#;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A fixed colour per known category, grey for others.
fn colour(category: &str) -> &'static str {
    match category {
        "pixel" => "#d64545",
        "audience-network" => "#e8853d",
        "sdk-telemetry" => "#c9a227",
        "ads-measurement" => "#8e44ad",
        "app-telemetry" => "#b0578d",
        "social-widgets" => "#2e86c1",
        "meta-ai" => "#16a085",
        "smart-glasses" => "#5d6d7e",
        "quest" => "#34495e",
        "first-party" => "#7fa6d6",
        _ => "#9aa3ad",
    }
}

fn change_class(c: Option<f64>, cur: i64) -> &'static str {
    match c {
        Some(p) if p > 0.0 => "up",
        Some(p) if p < 0.0 => "down",
        None if cur > 0 => "up",
        _ => "",
    }
}

fn pct(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |p| format!("{p:.1}%"))
}

fn legend(categories: &[CategoryCount]) -> Markup {
    html! {
        div class="legend" {
            @for c in categories {
                span { i style=(format!("background:{}", colour(&c.category))) {} (c.category) }
            }
        }
    }
}

/// Stacked horizontal bars: one per device, one segment per category.
fn device_bars(m: &ReportModel) -> Markup {
    let devices: Vec<&DeviceReport> = m.devices.iter().filter(|d| d.meta_lookups > 0).collect();
    let max = devices
        .iter()
        .map(|d| d.meta_lookups)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (label, bar, row) = (170.0, 370.0, 24.0);
    let height = row * devices.len() as f64 + 6.0;
    html! {
        svg viewBox=(format!("0 0 600 {height}")) role="img" aria-label="Meta lookups per device by category" {
            @for (i, d) in devices.iter().enumerate() {
                @let y = 3.0 + row * i as f64;
                @let segs = segments(label, bar / max, d.categories.iter().map(|c| c.total as f64));
                text x=(label - 6.0) y=(y + 15.0) text-anchor="end" { (truncate(&d.name, 26)) }
                @for (c, (x, w)) in d.categories.iter().zip(&segs) {
                    rect x=(format!("{x:.1}")) y=(y + 3.0) width=(format!("{w:.1}")) height="16" fill=(colour(&c.category)) {
                        title { (d.name) ": " (c.category) " " (c.total) }
                    }
                }
                @let end = segs.last().map_or(label, |(x, w)| x + w);
                text x=(format!("{:.1}", end + 4.0)) y=(y + 15.0) { (d.meta_lookups) }
            }
        }
    }
}

/// Consecutive (start, length) of `values` scaled by `scale`, from `origin`.
fn segments(origin: f64, scale: f64, values: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let mut at = origin;
    values
        .map(|v| {
            let seg = (at, v * scale);
            at += v * scale;
            seg
        })
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Stacked columns per local day: blocked, logged, allowed.
fn daily_trend(m: &ReportModel) -> Markup {
    let n = m.daily.len().max(1) as f64;
    let max = m.daily.iter().map(|d| d.total).max().unwrap_or(1).max(1) as f64;
    let (left, width, top, height) = (40.0, 550.0, 10.0, 140.0);
    let slot = width / n;
    let bw = (slot * 0.7).min(60.0);
    let parts = [
        ("blocked", "#d64545"),
        ("logged", "#2e86c1"),
        ("allowed", "#9aa3ad"),
    ];
    html! {
        svg viewBox="0 0 600 190" role="img" aria-label="Meta lookups per day" {
            line x1=(left) y1=(top + height) x2=(left + width) y2=(top + height) stroke="#c4c9d2" {}
            text x=(left - 4.0) y=(top + 8.0) text-anchor="end" { (max as i64) }
            text x=(left - 4.0) y=(top + height) text-anchor="end" { "0" }
            @for (i, d) in m.daily.iter().enumerate() {
                @let x = left + slot * i as f64 + (slot - bw) / 2.0;
                @let values = [d.counts.blocked, d.counts.logged, d.counts.allowed];
                @let segs = segments(0.0, height / max, values.iter().map(|v| *v as f64));
                @for (((k, fill), v), (off, h)) in parts.iter().zip(values).zip(&segs) {
                    rect x=(format!("{x:.1}")) y=(format!("{:.1}", top + height - off - h)) width=(format!("{bw:.1}")) height=(format!("{h:.1}")) fill=(fill) {
                        title { (d.date) " " (k) " " (v) }
                    }
                }
                text x=(format!("{:.1}", x + bw / 2.0)) y=(top + height + 16.0) text-anchor="middle" {
                    (weekday_of(m, i)) " " (d.date.get(8..).unwrap_or(""))
                }
                text x=(format!("{:.1}", x + bw / 2.0)) y=(top + height + 30.0) text-anchor="middle" class="muted" { (d.total) }
            }
        }
        div class="legend" {
            @for (k, fill) in parts { span { i style=(format!("background:{fill}")) {} (k) } }
        }
    }
}

fn weekday_of(m: &ReportModel, i: usize) -> &'static str {
    m.period
        .days
        .get(i)
        .and_then(|d| d.parse::<jiff::civil::Date>().ok())
        .map_or("", |d| {
            WEEKDAYS[d.weekday().to_monday_zero_offset() as usize]
        })
}

/// Weekday × hour heat map (local time).
fn heat_map(grid: &[Vec<i64>], label: &str) -> Markup {
    let max = grid.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let (left, top, cw, ch) = (36.0, 16.0, 23.0, 20.0);
    html! {
        svg viewBox="0 0 600 164" role="img" aria-label=(label) {
            @for h in (0..24).step_by(3) {
                text x=(format!("{:.1}", left + cw * h as f64 + cw / 2.0)) y="11" text-anchor="middle" { (h) }
            }
            @for (w, row) in grid.iter().enumerate() {
                text x=(left - 6.0) y=(top + ch * w as f64 + 14.0) text-anchor="end" { (WEEKDAYS[w % 7]) }
                @for (h, n) in row.iter().enumerate() {
                    @let o = if *n == 0 { 0.0 } else { 0.15 + 0.85 * *n as f64 / max };
                    rect x=(format!("{:.1}", left + cw * h as f64)) y=(format!("{:.1}", top + ch * w as f64))
                        width=(cw - 2.0) height=(ch - 2.0) rx="2"
                        fill=(if *n == 0 { "#eef0f4" } else { "#1f5fbf" })
                        fill-opacity=(format!("{o:.2}")) {
                        title { (WEEKDAYS[w % 7]) " " (format!("{h:02}:00")) ": " (n) }
                    }
                }
            }
        }
    }
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
                style { (PreEscaped(CSS)) }
            }
            body {
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
                        h3 { "Per day" }
                        (daily_trend(m))
                        h3 { "When (local time)" }
                        (heat_map(&m.hour_grid, "Meta lookups by weekday and hour"))
                    }
                    section id="devices" {
                        h2 { "Devices" }
                        (device_bars(m))
                        (legend(&m.categories))
                        div class="scroll" {
                            table {
                                thead { tr { th { "Device" } th { "Meta" } th { "Blocked" } th { "Logged" } th { "Share" } th { "Change" } } }
                                tbody {
                                    @for d in &m.devices {
                                        tr {
                                            td { (d.name) }
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
                                h3 { (d.name) }
                                p class="muted" {
                                    @if let Some(mac) = &d.mac { (mac) " · " }
                                    "seen " (d.first_seen.as_deref().unwrap_or("–")) " to " (d.last_seen.as_deref().unwrap_or("–"))
                                }
                                @if d.meta_lookups == 0 {
                                    p { "No Meta lookups." }
                                } @else {
                                    div class="scroll" {
                                        table {
                                            thead { tr { th { "Category" } th { "Default" } th { "Lookups" } th { "Blocked" } th { "Logged" } th { "Allowed" } } }
                                            tbody {
                                                @for c in &d.categories {
                                                    tr {
                                                        td { i style=(format!("display:inline-block;width:.7rem;height:.7rem;margin-right:.3rem;background:{}", colour(&c.category))) {} (c.category) }
                                                        td { (c.default_action) }
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
                                                    tr { td { (t.domain) } td { (t.category) } td { (t.lookups) } }
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
                                    thead { tr { th { "Device" } th { "Lookups" } th { "Endpoints" } } }
                                    tbody {
                                        @for d in &m.meta_ai.devices {
                                            tr {
                                                td { (d.device) }
                                                td { (d.lookups) }
                                                td { @for (i, x) in d.domains.iter().enumerate() { @if i > 0 { ", " } (x.domain) } }
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
                                    thead { tr { th { "Category" } th { "Default" } th { "Lookups" } th { "Blocked" } th { "Logged" } } }
                                    tbody {
                                        @for c in &m.other.categories {
                                            tr { td { (c.category) } td { (c.default_action) } td { (c.total) } td { (c.counts.blocked) } td { (c.counts.logged) } }
                                        }
                                    }
                                }
                                table {
                                    thead { tr { th { "Device" } th { "Lookups" } th { "Names" } } }
                                    tbody {
                                        @for d in m.devices.iter().filter(|d| d.other_lookups > 0) {
                                            tr {
                                                td { (d.name) }
                                                td { (d.other_lookups) }
                                                td { @for (i, x) in d.other_top_domains.iter().enumerate() { @if i > 0 { ", " } (x.domain) } }
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
                                    thead { tr { th { "Device" } th { "Lookups" } th { "Names (how often)" } } }
                                    tbody {
                                        @for d in &m.bypass.devices {
                                            tr {
                                                td { (d.device) }
                                                td { (d.lookups) }
                                                td { (super::not_meta::evidence(&d.names, |s| s.to_string())) }
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
                @if !m.notes.is_empty() {
                    section id="notes" {
                        h2 { "Notes" }
                        ul { @for n in &m.notes { li { (n) } } }
                    }
                }
                footer class="muted" { p { "Sources: " (m.sources.join(", ")) } }
            }
        }
    };
    doc.into_string()
}
