//! The backfill progress bar of `tail`: one line on stderr, redrawn in place, only when
//! stderr is a terminal (a pipe or a log file gets nothing from here; the same figures are
//! in the metrics and the logs).
//!
//! Logs (`-v`) go to the same stderr. Both write through one [`Screen`], which knows the line
//! the bar shows: a log line first erases the bar, then is written, then the bar is drawn
//! again below it — so neither lands in the middle of the other.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

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

/// Erases the current line of a terminal and puts the cursor at its start.
const ERASE: &str = "\r\x1b[2K";

/// What stderr shows at its bottom line: the bar's text, if a bar is drawn.
#[derive(Debug, Default)]
pub struct Screen {
    bar: Mutex<Option<String>>,
}

/// The process's stderr screen, shared by the bar and the log writer.
static STDERR: Screen = Screen::new();

impl Screen {
    const fn new() -> Screen {
        Screen {
            bar: Mutex::new(None),
        }
    }

    /// Draws `line` as the bar (replacing the one shown), or takes the bar off the screen
    /// and ends its line (`None`, with `keep` leaving its last text visible).
    fn draw(&self, out: &mut impl Write, line: Option<String>, keep: bool) {
        let mut bar = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        // Errors on stderr are not worth failing for.
        let _ = match &line {
            Some(text) => write!(out, "{ERASE}{text}"),
            None if bar.is_some() && keep => writeln!(out),
            None => Ok(()),
        };
        let _ = out.flush();
        *bar = line;
    }

    /// Writes one log record: above the bar, which is drawn again after it.
    fn log(&self, out: &mut impl Write, record: &[u8]) {
        let bar = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        if bar.is_some() {
            let _ = write!(out, "{ERASE}");
        }
        let _ = out.write_all(record);
        if let Some(text) = bar.as_deref() {
            let _ = write!(out, "{text}");
        }
        let _ = out.flush();
    }
}

/// The log writer of the CLI (`tracing_subscriber`'s writer): stderr, through [`Screen`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Logs;

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogRecord;

    fn make_writer(&'a self) -> LogRecord {
        LogRecord(Vec::with_capacity(256))
    }
}

/// One log record, collected and written in one piece when dropped.
#[derive(Debug)]
pub struct LogRecord(Vec<u8>);

impl Write for LogRecord {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogRecord {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            STDERR.log(&mut io::stderr().lock(), &self.0);
        }
    }
}

/// The progress line, drawn on `out` (stderr in `tail`).
pub struct ProgressBar<W: Write> {
    out: W,
    screen: &'static Screen,
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
        ProgressBar::new(out, &STDERR, enabled)
    }
}

impl<W: Write> ProgressBar<W> {
    /// A bar on `out`, shown on `screen`; draws nothing unless `enabled`.
    fn new(out: W, screen: &'static Screen, enabled: bool) -> ProgressBar<W> {
        ProgressBar {
            out,
            screen,
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
                self.screen
                    .draw(&mut self.out, Some("backfill done".into()), false);
                self.screen.draw(&mut self.out, None, true);
            }
            return;
        };
        if self.last_draw.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let finished = tables.iter().filter(|t| t.done).count();
        let line = render(current, finished, tables.len());
        self.screen.draw(&mut self.out, Some(line), false);
        self.shown = true;
    }

    /// Ends the line, if one is shown (the backfill stopped before its end: the last
    /// figures stay on screen), so later output starts on a fresh line.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.shown) {
            self.screen.draw(&mut self.out, None, true);
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

    fn screen() -> &'static Screen {
        Box::leak(Box::new(Screen::new()))
    }

    #[test]
    fn nothing_is_drawn_unless_enabled_and_the_line_ends_once() {
        let mut quiet = ProgressBar::new(Vec::new(), screen(), false);
        quiet.update(&[table(1, Some(10), false)]);
        quiet.finish();
        assert!(quiet.out.is_empty());

        let mut bar = ProgressBar::new(Vec::new(), screen(), true);
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
        let mut bar = ProgressBar::new(Vec::new(), screen(), true);
        bar.update(&[table(3, Some(10), false)]);
        bar.finish();
        let text = String::from_utf8(std::mem::take(&mut bar.out)).unwrap();
        assert!(text.ends_with("3/~10 rows 30%\n"), "{text:?}");
    }

    #[test]
    fn a_log_line_goes_above_the_bar_which_is_drawn_again() {
        let screen = screen();
        let mut out = Vec::new();
        screen.log(&mut out, b"before any bar\n");
        let mut bar = ProgressBar::new(Vec::new(), screen, true);
        bar.update(&[table(3, Some(10), false)]);
        screen.log(&mut out, b"INFO a log line\n");
        bar.finish();
        screen.log(&mut out, b"after the bar\n");
        let text = String::from_utf8(out).unwrap();
        let shown = render(&table(3, Some(10), false), 0, 1);
        assert_eq!(
            text,
            format!("before any bar\n{ERASE}INFO a log line\n{shown}after the bar\n")
        );
    }
}
