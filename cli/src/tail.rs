//! `tail`: print a consumer group's records as JSON lines, flush, and only then commit, so
//! stdout receives every record at least once (a record is committed only after the write
//! that carried it succeeded).
//!
//! SIGINT and SIGTERM set a flag that the loop checks between polls (each poll waits at
//! most [`POLL_WAIT`]); what was written is committed and the exit status is 0.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_changestream::json::LineBuffer;
use pg_changestream::ConnectConfig;

use crate::args::TailArgs;
use crate::failure::Failure;
use crate::metrics;
use crate::progress::{self, ProgressBar};
use crate::source::{self, Source, Spec};

/// The longest a poll waits, so that a signal or `--idle-exit` is noticed promptly.
const POLL_WAIT: Duration = Duration::from_millis(250);

/// When to stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Records per poll and commit.
    pub per_poll: usize,
    /// Stop after this many records.
    pub max_records: Option<u64>,
    /// Stop after this long without records.
    pub idle_exit: Option<Duration>,
}

/// `tail`.
pub async fn tail(config: &ConnectConfig, args: TailArgs) -> Result<(), Failure> {
    let tables = args
        .tables
        .iter()
        .map(|t| source::parse_table_arg(t))
        .collect::<Result<Vec<_>, _>>()?;
    let choices =
        source::table_choices(&tables, &args.filters, &args.columns, &args.exclude_columns)?;
    let tables = tables
        .into_iter()
        .zip(choices)
        .map(|((table, location), choice)| (table, location, choice))
        .collect();
    let spec = Spec {
        group: args.group.clone(),
        tables,
        ops: args.ops.iter().map(|o| o.op()).collect(),
        message_prefixes: args.message_prefixes.clone(),
        partitions: args.partitions,
    };
    if let Some(addr) = args.metrics_addr {
        metrics::export(addr).await?;
    }
    let stop = stop_on_signals()?;
    let mut source = source::open(config, spec).await?;
    let limits = Limits {
        per_poll: args.limit as usize,
        max_records: args.max_records,
        idle_exit: args.idle_exit,
    };
    // Locked once; each poll's lines reach it in one write of one buffer (see `run`), so a
    // BufWriter in between would only copy them again.
    let mut out = std::io::stdout().lock();
    let result = run(&mut source, &mut out, limits, &stop).await;
    let closed = source.close().await;
    result.map(|_| ())?;
    closed
}

/// Polls, writes, flushes and commits until a limit, a signal, or a closed stdout; returns
/// how many records were written.
///
/// # Errors
/// Reading or committing failed, or stdout failed other than by being closed.
pub async fn run(
    source: &mut Source,
    out: &mut impl Write,
    limits: Limits,
    stop: &AtomicBool,
) -> Result<u64, Failure> {
    let mut written = 0u64;
    let mut last_record = Instant::now();
    let mut bar = ProgressBar::stderr();
    // The lines of one poll: formatted here, written with one write.
    let mut lines = LineBuffer::new();
    loop {
        if bar.is_enabled() {
            bar.update(&progress::by_table(&source.stats().backfill));
        }
        if stop.load(Ordering::Relaxed) {
            tracing::info!(written, "signal received; committing and exiting");
            break;
        }
        let remaining = limits.max_records.map(|m| m.saturating_sub(written));
        if remaining == Some(0) {
            break;
        }
        let limit = remaining.map_or(limits.per_poll, |r| {
            limits
                .per_poll
                .min(usize::try_from(r).unwrap_or(usize::MAX))
        });
        let wait = match limits.idle_exit {
            Some(idle) => idle.saturating_sub(last_record.elapsed()).min(POLL_WAIT),
            None => POLL_WAIT,
        };
        let records = source.poll(limit.max(1), wait).await?;
        if records.is_empty() {
            if limits
                .idle_exit
                .is_some_and(|idle| last_record.elapsed() >= idle)
            {
                tracing::info!(written, "idle; committing and exiting");
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for r in &records {
            lines.push(r);
        }
        let delivered = lines.write_to(out).and_then(|()| out.flush());
        match delivered {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                // The reader went away (`| head`): nothing more can be delivered, and what
                // this batch wrote may not have arrived, so it is not committed.
                tracing::info!("stdout closed; exiting without committing the last batch");
                return Ok(written);
            }
            Err(e) => return Err(Failure::other(format!("writing to stdout: {e}"))),
        }
        written += records.len() as u64;
        source.commit().await?;
    }
    bar.finish();
    Ok(written)
}

/// A flag raised by SIGINT or SIGTERM.
///
/// # Errors
/// The signal handlers could not be installed.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    Ok(stop)
}
