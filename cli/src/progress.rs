//! The backfill progress bar of `tail`: one line on stderr, redrawn in place, only when
//! stderr is a terminal (a pipe or a log file gets nothing from here; the same figures are
//! in the metrics and the logs).

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use pg_changestream::consumer::BackfillProgress;

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(200);

/// Cells of the bar itself.
const WIDTH: usize = 30;

/// One table's backfill, as the bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProgress {
    /// `schema.name`.
    pub table: String,
    /// Rows delivered so far.
    pub rows: u64,
    /// The estimated row count, when known.
    pub total: Option<u64>,
    /// Whether the backfill of this table finished.
    pub done: bool,
}

/// Per-table progress from a consumer's per-partition backfill figures, in the order the
/// tables first appear: rows and estimates summed over the partitions, done when every
/// partition is.
pub fn by_table(partitions: &[BackfillProgress]) -> Vec<TableProgress> {
    let mut tables: Vec<TableProgress> = Vec::new();
    for p in partitions {
        match tables.iter_mut().find(|t| t.table == p.table) {
            Some(t) => {
                t.rows += p.rows_done;
                t.total = match (t.total, p.estimated_total) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
                t.done &= p.done;
            }
            None => tables.push(TableProgress {
                table: p.table.clone(),
                rows: p.rows_done,
                total: p.estimated_total,
                done: p.done,
            }),
        }
    }
    tables
}

/// The progress line, drawn on `out` (stderr in `tail`).
pub struct ProgressBar<W: Write> {
    out: W,
    /// Off when the output is not a terminal.
    enabled: bool,
    last_draw: Option<Instant>,
    /// Whether a line is on screen that `finish` must end.
    shown: bool,
}

impl ProgressBar<io::Stderr> {
    /// A bar on stderr, enabled only when stderr is a terminal.
    pub fn stderr() -> ProgressBar<io::Stderr> {
        let out = io::stderr();
        let enabled = out.is_terminal();
        ProgressBar::new(out, enabled)
    }
}

impl<W: Write> ProgressBar<W> {
    /// A bar on `out`; draws nothing unless `enabled`.
    pub fn new(out: W, enabled: bool) -> ProgressBar<W> {
        ProgressBar {
            out,
            enabled,
            last_draw: None,
            shown: false,
        }
    }

    /// Whether anything is drawn at all (stderr is a terminal).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Redraws the line for the first unfinished table (at most every [`REDRAW`]); when
    /// every table is done, says so once.
    pub fn update(&mut self, tables: &[TableProgress]) {
        if !self.enabled {
            return;
        }
        let Some(current) = tables.iter().find(|t| !t.done) else {
            if std::mem::take(&mut self.shown) {
                let _ = writeln!(self.out, "\r\x1b[2Kbackfill done");
                let _ = self.out.flush();
            }
            return;
        };
        if self.last_draw.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let finished = tables.iter().filter(|t| t.done).count();
        let line = render(current, finished, tables.len());
        // \r and "erase line" redraw in place; errors on stderr are not worth failing for.
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
        self.shown = true;
    }

    /// Ends the line, if one is shown (the backfill stopped before its end: the last
    /// figures stay on screen), so later output starts on a fresh line.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.shown) {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }
}

impl<W: Write> Drop for ProgressBar<W> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `backfill 1/2 public.items [#########.....] 45000/100000 rows 45%`.
pub fn render(current: &TableProgress, finished: usize, tables: usize) -> String {
    let counter = format!("backfill {}/{} {}", finished + 1, tables, current.table);
    match current.total.filter(|&t| t > 0) {
        Some(total) => {
            // Estimates (pg_class.reltuples) can be below the truth: never past full.
            let ratio = (current.rows as f64 / total as f64).min(1.0);
            let filled = (ratio * WIDTH as f64).round() as usize;
            format!(
                "{counter} [{}{}] {}/~{} rows {:.0}%",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                current.rows,
                total,
                ratio * 100.0
            )
        }
        None => format!("{counter} {} rows", current.rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: u64, total: Option<u64>, done: bool) -> TableProgress {
        TableProgress {
            table: "public.items".into(),
            rows,
            total,
            done,
        }
    }

    #[test]
    fn the_bar_fills_with_the_rows_and_never_overflows() {
        assert_eq!(
            render(&table(50, Some(100), false), 0, 2),
            format!(
                "backfill 1/2 public.items [{}{}] 50/~100 rows 50%",
                "#".repeat(15),
                ".".repeat(15)
            )
        );
        // An estimate below the truth keeps the bar full, not wider.
        assert!(render(&table(150, Some(100), false), 1, 2).contains(&"#".repeat(30)));
        assert_eq!(
            render(&table(7, None, false), 0, 1),
            "backfill 1/1 public.items 7 rows"
        );
    }

    #[test]
    fn nothing_is_drawn_unless_enabled_and_the_line_ends_once() {
        let mut quiet = ProgressBar::new(Vec::new(), false);
        quiet.update(&[table(1, Some(10), false)]);
        quiet.finish();
        assert!(quiet.out.is_empty());

        let mut bar = ProgressBar::new(Vec::new(), true);
        bar.update(&[table(1, Some(10), false)]);
        bar.update(&[table(10, Some(10), true)]);
        bar.update(&[table(10, Some(10), true)]);
        bar.finish();
        let text = String::from_utf8(std::mem::take(&mut bar.out)).unwrap();
        assert!(
            text.starts_with("\r\x1b[2Kbackfill 1/1 public.items ["),
            "{text:?}"
        );
        assert!(text.ends_with("\r\x1b[2Kbackfill done\n"), "{text:?}");
        assert_eq!(text.matches("backfill done").count(), 1, "{text:?}");

        // Stopped half-way: the last line stays, ended by a newline.
        let mut bar = ProgressBar::new(Vec::new(), true);
        bar.update(&[table(3, Some(10), false)]);
        bar.finish();
        let text = String::from_utf8(std::mem::take(&mut bar.out)).unwrap();
        assert!(text.ends_with("3/~10 rows 30%\n"), "{text:?}");
    }
}
