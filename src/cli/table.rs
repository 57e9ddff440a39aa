//! The one output renderer of the commands: aligned text columns, or one JSON object a line.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

/// How a column is laid out: at least `min` characters wide (wider when a cell is), and
/// padded on the left (numbers) or the right.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Column {
    pub(crate) min: usize,
    pub(crate) right: bool,
}

impl Column {
    pub(crate) const fn left(min: usize) -> Column {
        Column { min, right: false }
    }

    pub(crate) const fn right(min: usize) -> Column {
        Column { min, right: true }
    }
}

/// Rows of cells, rendered with every column as wide as its widest cell (in characters)
/// and `gap` between columns. The last cell of a row is not padded, and a line never
/// ends in spaces.
#[derive(Debug)]
pub(crate) struct Table {
    gap: &'static str,
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose columns are all left-aligned with no minimum width.
    pub(crate) fn new(gap: &'static str) -> Table {
        Table {
            gap,
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The layout of the first columns (the others: left, no minimum).
    pub(crate) fn columns(mut self, columns: &[Column]) -> Table {
        self.columns = columns.to_vec();
        self
    }

    /// Add a row.
    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub(crate) fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let layout = |c: usize| self.columns.get(c).copied().unwrap_or_default();
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(layout(c).min)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                let w = widths[i];
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else if layout(i).right {
                    let _ = write!(line, "{cell:>w$}{}", self.gap);
                } else {
                    let _ = write!(line, "{cell:<w$}{}", self.gap);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// One JSON object a line (`--format json`).
pub(crate) fn json_lines<T: serde::Serialize>(rows: &[T]) -> String {
    let mut out = String::new();
    for r in rows {
        // Serializing these plain structs cannot fail; an empty line would show if it did.
        let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
    }
    out
}

/// A Unix time in local time with its offset, to the second, as the report writes it
/// (`2026-03-02T08:15:00+01:00`).
pub(crate) fn local(ts: i64, tz: &TimeZone) -> String {
    crate::report::period::rfc3339(ts, tz)
}

/// A span of seconds in words, to its largest unit (`4 s`, `3 min`, `2 h`, `5 days`).
pub(crate) fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ if s / 86400 == 1 => "1 day".to_string(),
        _ => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_widest_cell_and_the_last_is_not_padded() {
        let mut t = Table::new("  ").columns(&[Column::left(0), Column::right(5)]);
        t.row(["NAME", "RULES", "SOURCE"]);
        t.row(["a-long-name", "7", "x"]);
        t.row(["b", "123456", ""]);
        assert_eq!(
            t.render(),
            "NAME          RULES  SOURCE\na-long-name       7  x\nb            123456\n"
        );
    }

    #[test]
    fn times_are_local_with_their_offset_and_spans_in_words() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(local(1_700_000_000, &berlin), "2023-11-14T23:13:20+01:00");
        assert_eq!(
            local(1_700_000_000, &TimeZone::UTC),
            "2023-11-14T22:13:20+00:00"
        );
        let spans = [4, 59, 60, 3599, 3600, 86399, 86400, 3 * 86400, -5].map(ago);
        assert_eq!(
            spans,
            [
                "4 s", "59 s", "1 min", "59 min", "1 h", "23 h", "1 day", "3 days", "0 s"
            ]
        );
    }

    #[test]
    fn minimum_widths_and_gap() {
        let mut t = Table::new(" ").columns(&[Column::left(6), Column::left(3)]);
        t.row(["ab", "c", "d"]);
        assert_eq!(t.render(), "ab     c   d\n");
        // Characters, not bytes.
        let mut t = Table::new(" ");
        t.row(["é", "x"]);
        t.row(["ab", "y"]);
        assert_eq!(t.render(), "é  x\nab y\n");
    }
}
