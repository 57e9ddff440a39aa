//! Text, Markdown, JSON and CSV renderings of a [`ReportModel`]. Strings from the
//! database pass through [`plain`] (text), [`md`] (Markdown) or [`csv_cell`] (CSV).

use std::fmt::Write as _;

use super::ReportError;
use super::model::*;
use super::not_meta;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A database string made safe for a terminal: control characters (escape sequences)
/// become `?`.
pub(crate) fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A database string made inert in Markdown (and in HTML that Markdown passes through).
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in plain(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '(' | ')' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A CSV cell a spreadsheet will not run as a formula: `'` before a leading `=`, `+`,
/// `-`, `@`, tab or carriage return.
pub(crate) fn csv_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// `+12.5%`, `-3.0%`, or `new` when there was nothing before.
pub(crate) fn change(c: Option<f64>, cur: i64) -> String {
    match c {
        Some(p) => format!("{p:+.1}%"),
        None if cur > 0 => "new".into(),
        None => "-".into(),
    }
}

fn share(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |p| format!("{p:.1}%"))
}

/// The local date and time of an RFC 3339 string, without seconds and offset.
fn short_time(s: &Option<String>) -> String {
    match s {
        Some(s) if s.len() >= 16 => s[..16].replace('T', " "),
        Some(s) => s.clone(),
        None => "-".into(),
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Width in characters (for aligning names with accents).
fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let n = width(s);
    if n >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

fn truncate(s: &str, w: usize) -> String {
    if width(s) <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One character per hour: blank for none, then denser with more lookups.
fn grid_line(row: &[i64], max: i64) -> String {
    const SHADES: [char; 5] = ['·', '░', '▒', '▓', '█'];
    row.iter()
        .map(|&n| {
            if n == 0 || max == 0 {
                SHADES[0]
            } else {
                let i = 1 + ((n * 4 - 1) / max).clamp(0, 3) as usize;
                SHADES[i]
            }
        })
        .collect()
}

fn header(m: &ReportModel) -> String {
    let p = &m.period;
    format!(
        "{} to {} ({}, {} h)",
        p.days.first().map_or("", String::as_str),
        p.days.last().map_or("", String::as_str),
        p.time_zone,
        p.hours
    )
}

fn empty_line(m: &ReportModel) -> String {
    format!(
        "No data for {}: no Meta lookups and no queries were logged between {} and {} in {}.",
        m.period.label,
        m.period.start,
        m.period.end,
        m.sources.join(", ")
    )
}

/// The terminal report: aligned columns, colour only when `color`.
pub(crate) fn text(m: &ReportModel, color: bool) -> String {
    let st = Style { on: color };
    let mut o = String::new();
    let h = &m.household;
    let _ = writeln!(
        o,
        "{}",
        st.bold(&format!("metaguard report {}", plain(&m.period.label)))
    );
    let _ = writeln!(o, "{}", header(m));
    let _ = writeln!(o);
    if m.empty {
        let _ = writeln!(o, "{}", empty_line(m));
        let _ = writeln!(o);
    } else {
        let _ = writeln!(o, "{}", st.bold("Household"));
        let ch = change(h.change_pct, h.meta_lookups);
        let ch = if ch.starts_with('+') || ch == "new" {
            st.red(&ch)
        } else if ch.starts_with('-') && ch != "-" {
            st.green(&ch)
        } else {
            ch
        };
        let rows = [
            ("Devices seen", h.devices_seen.to_string()),
            ("Meta lookups", h.meta_lookups.to_string()),
            ("  blocked", h.counts.blocked.to_string()),
            ("  logged", h.counts.logged.to_string()),
            ("  allowed", h.counts.allowed.to_string()),
            ("All lookups", h.all_lookups.to_string()),
            ("Meta share", share(h.meta_share_pct)),
            (
                "Previous period",
                format!("{} ({})", h.previous_meta_lookups, m.period.previous_label),
            ),
            ("Change", ch),
        ];
        for (k, v) in rows {
            let _ = writeln!(o, "  {} {v}", pad(k, 18));
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", st.bold("Devices"));
        let nw = m
            .devices
            .iter()
            .map(|d| width(&truncate(&plain(&d.name), 28)))
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            o,
            "  {} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8}",
            pad("DEVICE", nw),
            "META",
            "BLOCKED",
            "LOGGED",
            "ALL",
            "SHARE",
            "CHANGE"
        );
        for d in &m.devices {
            let _ = writeln!(
                o,
                "  {} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8}",
                pad(&truncate(&plain(&d.name), 28), nw),
                d.meta_lookups,
                d.counts.blocked,
                d.counts.logged,
                d.all_lookups,
                share(d.meta_share_pct),
                change(d.change_pct, d.meta_lookups)
            );
        }
        for d in &m.devices {
            let _ = writeln!(o);
            let mut title = plain(&d.name);
            if let Some(mac) = &d.mac {
                let _ = write!(title, "  {}", st.dim(&plain(mac)));
            }
            let _ = writeln!(o, "{}", st.bold(&title));
            let _ = writeln!(
                o,
                "  seen {} .. {}   Meta this period {} .. {}",
                short_time(&d.first_seen),
                short_time(&d.last_seen),
                short_time(&d.first_hit),
                short_time(&d.last_hit)
            );
            if d.meta_lookups == 0 {
                let _ = writeln!(o, "  no Meta lookups");
                continue;
            }
            let cw = d
                .categories
                .iter()
                .map(|c| width(&plain(&c.category)))
                .max()
                .unwrap_or(8);
            for c in &d.categories {
                let _ = writeln!(
                    o,
                    "  {} {:>7}  ({} by default: blocked {}, logged {}, allowed {})",
                    pad(&plain(&c.category), cw),
                    c.total,
                    c.default_action,
                    c.counts.blocked,
                    c.counts.logged,
                    c.counts.allowed
                );
            }
            if !d.top_domains.is_empty() {
                let _ = writeln!(o, "  top domains:");
                for t in &d.top_domains {
                    let _ = writeln!(
                        o,
                        "    {:>7}  {} ({})",
                        t.lookups,
                        plain(&t.domain),
                        plain(&t.category)
                    );
                }
            }
            let max = d.hour_grid.iter().flatten().copied().max().unwrap_or(0);
            let _ = writeln!(o, "  hour  0         1         2   ");
            let _ = writeln!(o, "        012345678901234567890123");
            for (w, row) in d.hour_grid.iter().enumerate() {
                let _ = writeln!(o, "  {}   {}", WEEKDAYS[w], grid_line(row, max));
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", st.bold("Meta AI"));
        let _ = writeln!(o, "  {}", m.meta_ai.note);
        if m.meta_ai.devices.is_empty() {
            let _ = writeln!(o, "  No device looked up Meta AI endpoints.");
        }
        for d in &m.meta_ai.devices {
            let doms: Vec<String> = d.domains.iter().map(|x| plain(&x.domain)).collect();
            let _ = writeln!(
                o,
                "  {} {:>7}  {}",
                pad(&plain(&d.device), 20),
                d.lookups,
                doms.join(", ")
            );
        }
        let _ = writeln!(o);
        o.push_str(&not_meta::text(m, &|s| st.bold(s), plain));
    }
    let _ = writeln!(o, "{}", st.bold("What DNS cannot see"));
    for b in &m.blind_spots {
        let _ = writeln!(o, "  - {b}");
    }
    if !m.settings_changed.is_empty() {
        let _ = writeln!(o, "\n{}", st.bold("Settings changed this week"));
        for c in &m.settings_changed {
            let _ = writeln!(
                o,
                "  {}  {}: {} → {} ({})",
                c.at,
                plain(&c.what),
                plain(&c.old),
                plain(&c.new),
                plain(&c.by)
            );
        }
    }
    for n in &m.notes {
        let _ = writeln!(o, "\nNote: {}", plain(n));
    }
    o
}

/// The report as Markdown (GitHub flavoured tables).
pub(crate) fn markdown(m: &ReportModel) -> String {
    let mut o = String::new();
    let h = &m.household;
    let _ = writeln!(o, "# metaguard report {}\n", md(&m.period.label));
    let _ = writeln!(o, "{}\n", md(&header(m)));
    if m.empty {
        let _ = writeln!(o, "**{}**\n", md(&empty_line(m)));
    } else {
        let _ = writeln!(o, "## Household\n");
        let _ = writeln!(o, "| | |\n|---|---:|");
        let _ = writeln!(o, "| Devices seen | {} |", h.devices_seen);
        let _ = writeln!(o, "| Meta lookups | {} |", h.meta_lookups);
        let _ = writeln!(o, "| blocked | {} |", h.counts.blocked);
        let _ = writeln!(o, "| logged | {} |", h.counts.logged);
        let _ = writeln!(o, "| allowed | {} |", h.counts.allowed);
        let _ = writeln!(o, "| All lookups | {} |", h.all_lookups);
        let _ = writeln!(o, "| Meta share | {} |", share(h.meta_share_pct));
        let _ = writeln!(
            o,
            "| Previous period ({}) | {} |",
            md(&m.period.previous_label),
            h.previous_meta_lookups
        );
        let _ = writeln!(o, "| Change | {} |\n", change(h.change_pct, h.meta_lookups));
        let _ = writeln!(o, "## Devices\n");
        let _ = writeln!(
            o,
            "| Device | Meta | Blocked | Logged | All lookups | Share | Change |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for d in &m.devices {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(&d.name),
                d.meta_lookups,
                d.counts.blocked,
                d.counts.logged,
                d.all_lookups,
                share(d.meta_share_pct),
                change(d.change_pct, d.meta_lookups)
            );
        }
        for d in &m.devices {
            let _ = writeln!(o, "\n### {}\n", md(&d.name));
            let _ = writeln!(
                o,
                "Seen {} to {}; Meta lookups this period {} to {}.\n",
                short_time(&d.first_seen),
                short_time(&d.last_seen),
                short_time(&d.first_hit),
                short_time(&d.last_hit)
            );
            if d.meta_lookups == 0 {
                let _ = writeln!(o, "No Meta lookups.");
                continue;
            }
            let _ = writeln!(
                o,
                "| Category | Default | Lookups | Blocked | Logged | Allowed |\n|---|---|---:|---:|---:|---:|"
            );
            for c in &d.categories {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} |",
                    md(&c.category),
                    c.default_action,
                    c.total,
                    c.counts.blocked,
                    c.counts.logged,
                    c.counts.allowed
                );
            }
            let _ = writeln!(o, "\nTop domains:\n");
            for t in &d.top_domains {
                let _ = writeln!(
                    o,
                    "- {} ({}): {}",
                    md(&t.domain),
                    md(&t.category),
                    t.lookups
                );
            }
            let max = d.hour_grid.iter().flatten().copied().max().unwrap_or(0);
            let _ = writeln!(
                o,
                "\nBy hour (local time, darker = more):\n\n```\n     012345678901234567890123"
            );
            for (w, row) in d.hour_grid.iter().enumerate() {
                let _ = writeln!(o, "{}  {}", WEEKDAYS[w], grid_line(row, max));
            }
            let _ = writeln!(o, "```");
        }
        let _ = writeln!(o, "\n## Meta AI\n\n{}\n", m.meta_ai.note);
        if m.meta_ai.devices.is_empty() {
            let _ = writeln!(o, "No device looked up Meta AI endpoints.");
        }
        for d in &m.meta_ai.devices {
            let doms: Vec<String> = d.domains.iter().map(|x| md(&x.domain)).collect();
            let _ = writeln!(
                o,
                "- {}: {} lookups ({})",
                md(&d.device),
                d.lookups,
                doms.join(", ")
            );
        }
        o.push_str(&not_meta::markdown(m, md));
    }
    let _ = writeln!(o, "\n## What DNS cannot see\n");
    for b in &m.blind_spots {
        let _ = writeln!(o, "- {b}");
    }
    if !m.settings_changed.is_empty() {
        let _ = writeln!(o, "\n## Settings changed this week\n");
        for c in &m.settings_changed {
            let _ = writeln!(
                o,
                "- {}: {}: {} → {} ({})",
                c.at,
                md(&c.what),
                md(&c.old),
                md(&c.new),
                md(&c.by)
            );
        }
    }
    for n in &m.notes {
        let _ = writeln!(o, "\n> {}", md(n));
    }
    o
}

/// The model as pretty JSON (schema in docs/report-schema.md).
pub(crate) fn json(m: &ReportModel) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(m)?;
    s.push('\n');
    Ok(s)
}

/// One row per device × category × day of the period (zero days included, for pivot
/// tables), for the categories the device used.
pub(crate) fn csv(m: &ReportModel) -> Result<String, ReportError> {
    let err = |e: csv::Error| ReportError::Csv(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "date",
        "device",
        "mac",
        "category",
        "default_action",
        "blocked",
        "logged",
        "allowed",
        "total",
    ])
    .map_err(err)?;
    // Meta's rows, then those of other trackers and `bypass` (not Meta).
    let meta = m
        .devices
        .iter()
        .flat_map(|d| not_meta::category_rows(m, d, &d.categories, &d.days));
    for r in meta.chain(not_meta::csv_rows(m)) {
        let [date, device, mac, category, rest @ ..] = r;
        let cells = [
            csv_cell(&date),
            csv_cell(&device),
            csv_cell(&mac),
            csv_cell(&category),
        ];
        w.write_record(cells.into_iter().chain(rest)).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ReportError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| ReportError::Csv(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_csv_cells_that_look_like_formulas_are_neutralised() {
        for s in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(s).starts_with('\''), "{s:?}");
        }
        assert_eq!(csv_cell("tv"), "tv");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn report_text_and_markdown_escape_database_strings() {
        assert_eq!(plain("a\x1b[31mb"), "a?[31mb");
        assert_eq!(md("<b>|x*"), "&lt;b&gt;\\|x\\*");
    }
}
