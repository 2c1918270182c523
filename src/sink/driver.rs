//! The publish loop: poll the group, publish pipelined, commit what is durable.
//!
//! Each poll's records are encoded and handed to the sink at once; the loop then lets at
//! most [`DriverOptions::max_in_flight`] messages wait for acknowledgements and goes on
//! polling while they come in. A poll's bundle is committed once the sink's durable count
//! covers its last message — commits are coalesced to one per
//! [`DriverOptions::commit_every`] (committing a bundle commits all before it); when the
//! source runs dry the loop waits for every acknowledgement, so an idle group's cursor is
//! committed within `commit_every` plus one poll.
//!
//! On a sink failure the loop forgets everything uncommitted ([`Consumer::reset`]), has the
//! sink reconnect (with backoff, until it succeeds, the configuration is refused, or the
//! stop flag is raised) and polls again from the committed cursor: the broker drops the
//! repeats by their ids. A failure a new connection cannot cure ([`SinkError::Config`]: a
//! permission the user lacks, a message over the broker's size limit) ends the run instead,
//! with nothing committed past what was acknowledged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ::metrics::{counter, gauge, Counter, Gauge};

use super::broker::Sink;
use super::error::SinkError;
use super::outgoing::Encoder;
use super::progress::ProgressRow;
use crate::consumer::{Consumer, MessageBundle};
use crate::error::{Error, Kind};
use crate::metrics;

/// How the loop runs and when it stops.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Records per poll.
    pub per_poll: usize,
    /// Messages waiting for acknowledgements before the loop waits for some.
    pub max_in_flight: usize,
    /// Stop after this many records were committed.
    pub max_records: Option<u64>,
    /// Stop after this long without records (and with everything committed).
    pub idle_exit: Option<Duration>,
    /// Commit at most this often while records keep coming.
    pub commit_every: Duration,
    /// The longest one poll waits (a stop request is noticed within it).
    pub poll_wait: Duration,
}

impl Default for DriverOptions {
    fn default() -> DriverOptions {
        DriverOptions {
            per_poll: 1000,
            max_in_flight: 16 * 1024,
            max_records: None,
            idle_exit: None,
            commit_every: Duration::from_millis(200),
            poll_wait: Duration::from_millis(250),
        }
    }
}

/// A sink driver's handles, registered once for its group.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    pub(crate) published: Counter,
    pub(crate) acked: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) reconnects: Counter,
    commit_lag: Gauge,
}

impl SinkMetrics {
    pub(crate) fn new(group: &str) -> SinkMetrics {
        let group = group.to_owned();
        SinkMetrics {
            published: counter!(metrics::SINK_PUBLISHED, "group" => group.clone()),
            acked: counter!(metrics::SINK_ACKED, "group" => group.clone()),
            in_flight: gauge!(metrics::SINK_IN_FLIGHT, "group" => group.clone()),
            reconnects: counter!(metrics::SINK_RECONNECTS, "group" => group.clone()),
            commit_lag: gauge!(metrics::SINK_COMMIT_LAG, "group" => group),
        }
    }

    pub(crate) fn commit_lag(&self, lag: Duration) {
        self.commit_lag.set(lag.as_secs_f64());
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Records committed.
    pub committed: u64,
}

/// A poll's bundle waiting for its acknowledgements.
struct Pending {
    bundle: MessageBundle,
    /// The sink's message count at its end.
    end: u64,
    records: u64,
    last_event: String,
    last_commit_time: Option<SystemTime>,
}

/// What the loop carries between polls.
struct Loop<'a, S: Sink> {
    consumer: &'a mut Consumer,
    sink: &'a mut S,
    encoder: &'a mut Encoder,
    progress: Option<&'a mut ProgressRow>,
    options: &'a DriverOptions,
    metrics: SinkMetrics,
    stop: &'a AtomicBool,
    pending: VecDeque<Pending>,
    /// Messages handed to the sink since it (re)connected.
    sent: u64,
    committed: u64,
    last_commit: Instant,
    last_record: Instant,
}

/// Publishes `consumer`'s records through `sink` until a limit is reached or `stop` is
/// raised, then waits for every acknowledgement and commits.
///
/// # Errors
/// The group failed ([`SinkError::Source`]), the sink refused the configuration
/// ([`SinkError::Config`]), or the stop flag was raised while the sink was unavailable
/// (what was not acknowledged stays uncommitted and is published again next time).
pub async fn run<S: Sink>(
    consumer: &mut Consumer,
    sink: &mut S,
    encoder: &mut Encoder,
    progress: Option<&mut ProgressRow>,
    options: &DriverOptions,
    stop: &AtomicBool,
) -> Result<Outcome, SinkError> {
    let metrics = SinkMetrics::new(consumer.group_id());
    let mut state = Loop {
        consumer,
        sink,
        encoder,
        progress,
        options,
        metrics,
        stop,
        pending: VecDeque::new(),
        sent: 0,
        committed: 0,
        last_commit: Instant::now(),
        last_record: Instant::now(),
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match state.pump().await {
            Ok(()) => break,
            Err(SinkError::Unavailable(why)) => {
                state.recover(&why, &mut backoff).await?;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(progress) = state.progress.as_deref_mut() {
        progress.flush().await;
    }
    Ok(Outcome {
        committed: state.committed,
    })
}

impl<S: Sink> Loop<'_, S> {
    /// Runs until done; returns the first failure.
    async fn pump(&mut self) -> Result<(), SinkError> {
        // A poll's records and the schema records before them, so the batch rarely grows
        // (growing copies every message already in it).
        let capacity = self.options.per_poll + 16;
        let mut batch = Vec::with_capacity(capacity);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                tracing::info!("stop requested; waiting for acknowledgements and committing");
                break;
            }
            let taken = self.committed + self.pending.iter().map(|p| p.records).sum::<u64>();
            let remaining = self.options.max_records.map(|m| m.saturating_sub(taken));
            if remaining == Some(0) {
                break;
            }
            let limit = remaining.map_or(self.options.per_poll, |r| {
                self.options
                    .per_poll
                    .min(usize::try_from(r).unwrap_or(usize::MAX))
            });
            let wait = if self.sink.in_flight() > 0 {
                Duration::ZERO
            } else {
                match self.options.idle_exit {
                    Some(idle) => idle
                        .saturating_sub(self.last_record.elapsed())
                        .min(self.options.poll_wait),
                    None => self.options.poll_wait,
                }
            };
            let bundle = self.consumer.poll(limit.max(1), wait).await?;
            if bundle.is_empty() {
                if self.sink.in_flight() > 0 || !self.pending.is_empty() {
                    // The source is slower than the broker: wait for the acknowledgements;
                    // commit if the last commit is older than `commit_every` (else at a
                    // later empty poll, at most `poll_wait` away, since nothing is in flight).
                    let durable = self.sink.settle(0).await?;
                    self.commit_durable(durable, false).await?;
                } else if self
                    .options
                    .idle_exit
                    .is_some_and(|idle| self.last_record.elapsed() >= idle)
                {
                    tracing::info!(committed = self.committed, "idle; exiting");
                    break;
                } else if let Some(progress) = self.progress.as_deref_mut() {
                    // Quiet: the last commit's row is written now, not at the next commit.
                    progress.flush().await;
                }
                continue;
            }
            self.last_record = Instant::now();
            for record in bundle.records() {
                self.encoder.encode(record, &mut batch).map_err(|e| {
                    Error::new(
                        Kind::Local,
                        format!("encoding record {}: {e}", record.event_id()),
                    )
                })?;
            }
            let Some(last) = bundle.records().last() else {
                continue;
            };
            let records = bundle.len() as u64;
            let last_event = last.event_id().to_string();
            let last_commit_time = last.txn().commit_time();
            self.sent += batch.len() as u64;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(capacity));
            self.sink.publish(full).await?;
            self.metrics.published.increment(records);
            self.pending.push_back(Pending {
                bundle,
                end: self.sent,
                records,
                last_event,
                last_commit_time,
            });
            let durable = self.sink.settle(self.options.max_in_flight).await?;
            self.commit_durable(durable, false).await?;
        }
        let durable = self.sink.settle(0).await?;
        self.commit_durable(durable, true).await
    }

    /// Commits the newest bundle whose messages are all durable (unless the last commit was
    /// less than `commit_every` ago and `force` is off).
    async fn commit_durable(&mut self, durable: u64, force: bool) -> Result<(), SinkError> {
        self.metrics.in_flight.set(self.sink.in_flight() as f64);
        let Some(covered) = self.pending.iter().rposition(|p| p.end <= durable) else {
            return Ok(());
        };
        if !force && self.last_commit.elapsed() < self.options.commit_every {
            return Ok(());
        }
        let Some(newest) = self.pending.get(covered) else {
            return Ok(());
        };
        newest.bundle.commit().await?;
        let last_event = newest.last_event.clone();
        let commit_time = newest.last_commit_time;
        let records: u64 = self.pending.drain(..=covered).map(|p| p.records).sum();
        self.committed += records;
        self.last_commit = Instant::now();
        self.metrics.acked.increment(records);
        if let Some(Ok(lag)) = commit_time.map(|t| SystemTime::now().duration_since(t)) {
            self.metrics.commit_lag(lag);
        }
        if let Some(progress) = self.progress.as_deref_mut() {
            progress.committed(last_event, records, false).await;
        }
        Ok(())
    }

    /// After a sink failure: forget what is uncommitted, reconnect, resume from the cursor.
    async fn recover(&mut self, why: &str, backoff: &mut Duration) -> Result<(), SinkError> {
        self.metrics.reconnects.increment(1);
        let uncommitted: u64 = self.pending.iter().map(|p| p.records).sum();
        tracing::warn!(
            error = why,
            uncommitted,
            "publishing failed; reconnecting and publishing again from the committed cursor \
             (the stream drops the repeats)"
        );
        self.pending.clear();
        self.sent = 0;
        self.metrics.in_flight.set(0.0);
        self.consumer.reset().await?;
        self.encoder.forget_schemas();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(SinkError::Unavailable(format!(
                    "stopped while the broker was unavailable ({why}); {uncommitted} \
                     unacknowledged records stay uncommitted and are published again next time"
                )));
            }
            tokio::time::sleep(*backoff).await;
            match self.sink.reconnect().await {
                Ok(()) => {
                    tracing::info!("reconnected to the broker");
                    *backoff = Duration::from_millis(100);
                    return Ok(());
                }
                Err(SinkError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "reconnecting failed; trying again");
                    *backoff = (*backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
