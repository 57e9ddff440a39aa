//! The inline SVG charts shared by the HTML report and the dashboard: per-device
//! stacked bars, the per-day columns and the weekday × hour heat map, in one palette
//! (one colour per category). maud escapes every label.

use maud::{Markup, html};

use super::model::{CategoryCount, DayCount};

pub(crate) const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A fixed colour per known category, grey for others.
pub(crate) fn colour(category: &str) -> &'static str {
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

pub(crate) fn legend(categories: &[CategoryCount]) -> Markup {
    html! {
        div class="legend" {
            @for c in categories {
                span { i style=(format!("background:{}", colour(&c.category))) {} (c.category) }
            }
        }
    }
}

/// Stacked horizontal bars: one per device (name, Meta lookups, categories), one
/// segment per category. Devices without lookups are left out. The names and counts are
/// HTML text (they wrap, never clip, at any width); each bar is an SVG stretched to the
/// width left for it. On a phone the name sits above its bar, on a desktop beside it.
pub(crate) fn device_bars(devices: &[(&str, i64, &[CategoryCount])]) -> Markup {
    let devices: Vec<&(&str, i64, &[CategoryCount])> = devices.iter().filter(|d| d.1 > 0).collect();
    let max = devices.iter().map(|d| d.1).max().unwrap_or(1).max(1) as f64;
    html! {
        div class="bars" role="list" aria-label="Meta lookups per device by category" {
            @for (name, total, categories) in &devices {
                @let segs = segments(0.0, 1000.0 / max, categories.iter().map(|c| c.total as f64));
                div class="bar-row" role="listitem" {
                    span class="bar-name" { (name) }
                    span class="bar-n" { (total) }
                    svg class="bar" viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true" {
                        @for (c, (x, w)) in categories.iter().zip(&segs) {
                            rect x=(format!("{x:.1}")) y="0" width=(format!("{w:.1}")) height="10" fill=(colour(&c.category)) {
                                title { (name) ": " (c.category) " " (c.total) }
                            }
                        }
                    }
                }
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

/// The width of every chart's viewBox, in the units of its 11-unit text. Drawn 300 to
/// 360 px wide on a phone, the text stays 9 px or larger; the CSS caps a chart at 32rem
/// on a desktop (the text then draws at about 16 px, the size of the page's text).
const CHART_W: f64 = 360.0;

/// Stacked columns per local day: blocked, logged, allowed. Up to ten days each column
/// is labelled with its weekday, date and total; over longer periods every k-th column
/// with its day of the month (the totals are in the titles and the pages' tables).
pub(crate) fn daily_trend(daily: &[DayCount]) -> Markup {
    let n = daily.len().max(1);
    let max = daily.iter().map(|d| d.total).max().unwrap_or(1).max(1);
    // Room on the left for the largest count at about 6.5 units a digit.
    let left = 8.0 + 6.5 * max.to_string().len() as f64;
    let (top, height) = (8.0, 120.0);
    let width = CHART_W - left - 2.0;
    let slot = width / n as f64;
    let bw = (slot * 0.7).min(40.0);
    let full = n <= 10;
    let every = if full { 1 } else { n.div_ceil(10) };
    let total_h = top + height + if full { 34.0 } else { 20.0 };
    let parts = [
        ("blocked", "#d64545"),
        ("logged", "#2e86c1"),
        ("allowed", "#9aa3ad"),
    ];
    let scale = height / max as f64;
    html! {
        svg class="chart" viewBox=(format!("0 0 {CHART_W} {total_h}")) role="img" aria-label="Meta lookups per day" {
            line x1=(left) y1=(top + height) x2=(left + width) y2=(top + height) stroke="#c4c9d2" {}
            text x=(left - 4.0) y=(top + 8.0) text-anchor="end" { (max) }
            text x=(left - 4.0) y=(top + height) text-anchor="end" { "0" }
            @for (i, d) in daily.iter().enumerate() {
                @let x = left + slot * i as f64 + (slot - bw) / 2.0;
                @let mid = format!("{:.1}", x + bw / 2.0);
                @let values = [d.counts.blocked, d.counts.logged, d.counts.allowed];
                @let segs = segments(0.0, scale, values.iter().map(|v| *v as f64));
                @for (((k, fill), v), (off, h)) in parts.iter().zip(values).zip(&segs) {
                    rect x=(format!("{x:.1}")) y=(format!("{:.1}", top + height - off - h)) width=(format!("{bw:.1}")) height=(format!("{h:.1}")) fill=(fill) {
                        title { (d.date) " " (k) " " (v) }
                    }
                }
                @if full {
                    text x=(mid) y=(top + height + 14.0) text-anchor="middle" {
                        (weekday_of(&d.date)) " " (d.date.get(8..).unwrap_or(""))
                    }
                    text x=(mid) y=(top + height + 28.0) text-anchor="middle" class="muted" { (d.total) }
                } @else if i % every == 0 {
                    text x=(mid) y=(top + height + 14.0) text-anchor="middle" { (d.date.get(8..).unwrap_or("")) }
                }
            }
        }
        div class="legend" {
            @for (k, fill) in parts { span { i style=(format!("background:{fill}")) {} (k) } }
        }
    }
}

/// The short weekday name of a `YYYY-MM-DD` date ("" when it is not one).
fn weekday_of(date: &str) -> &'static str {
    date.parse::<jiff::civil::Date>().map_or("", |d| {
        WEEKDAYS[d.weekday().to_monday_zero_offset() as usize]
    })
}

/// Weekday × hour heat map (local time).
pub(crate) fn heat_map(grid: &[Vec<i64>], label: &str) -> Markup {
    let max = grid.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let (left, top) = (28.0, 16.0);
    let cw = (CHART_W - left - 1.0) / 24.0;
    let ch = 15.0;
    let total_h = top + ch * grid.len().max(1) as f64 + 2.0;
    html! {
        svg class="chart" viewBox=(format!("0 0 {CHART_W} {total_h:.0}")) role="img" aria-label=(label) {
            @for h in (0..24).step_by(3) {
                text x=(format!("{:.1}", left + cw * h as f64 + cw / 2.0)) y="12" text-anchor="middle" { (h) }
            }
            @for (w, row) in grid.iter().enumerate() {
                text x=(left - 4.0) y=(format!("{:.1}", top + ch * w as f64 + 11.0)) text-anchor="end" { (WEEKDAYS[w % 7]) }
                @for (h, n) in row.iter().enumerate() {
                    @let o = if *n == 0 { 0.0 } else { 0.15 + 0.85 * *n as f64 / max };
                    rect x=(format!("{:.1}", left + cw * h as f64)) y=(format!("{:.1}", top + ch * w as f64))
                        width=(format!("{:.1}", cw - 1.5)) height=(ch - 1.5) rx="2"
                        fill=(if *n == 0 { "#eef0f4" } else { "#1f5fbf" })
                        fill-opacity=(format!("{o:.2}")) {
                        title { (WEEKDAYS[w % 7]) " " (format!("{h:02}:00")) ": " (n) }
                    }
                }
            }
        }
    }
}
