//! The sink's row in `changestream.sink_progress`: the last event its broker acknowledged
//! and the group then committed, for `status`.
//!
//! Written on a SQL session of its own right after each cursor commit (at most every
//! [`WRITE_EVERY`]), never before it: the row can lag the cursor by one commit after a
//! crash, never lead it. A failed write is a warning, not a failure — the cursor is the
//! record of truth and the next write catches up.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::config::ConnectConfig;

/// How often the row is written at most.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The writer of one sink's row.
pub struct ProgressRow {
    config: ConnectConfig,
    client: Option<Client>,
    group: String,
    sink: String,
    target: String,
    written_at: Option<Instant>,
    /// What is to be written (last acked event, records acked), if newer than the row.
    due: Option<(String, u64)>,
}

impl ProgressRow {
    /// The row of `sink` (e.g. `jetstream`) publishing `group` into `target` (e.g.
    /// `nats://host:4222 stream CHANGES`).
    pub fn new(config: ConnectConfig, group: &str, sink: &str, target: &str) -> ProgressRow {
        ProgressRow {
            config,
            client: None,
            group: group.to_owned(),
            sink: sink.to_owned(),
            target: target.to_owned(),
            written_at: None,
            due: None,
        }
    }

    /// Notes a commit that covered `last_event` and `records` more records; writes the row
    /// unless it was written less than `WRITE_EVERY` (a second) ago (`force` writes anyway, at exit).
    pub async fn committed(&mut self, last_event: String, records: u64, force: bool) {
        let records = records + self.due.as_ref().map_or(0, |due| due.1);
        self.due = Some((last_event, records));
        if force || self.written_at.is_none_or(|at| at.elapsed() >= WRITE_EVERY) {
            self.flush().await;
        }
    }

    /// Writes what is due.
    pub async fn flush(&mut self) {
        let Some((event, acked)) = self.due.take() else {
            return;
        };
        self.written_at = Some(Instant::now());
        if let Err(e) = self.write(&event, acked).await {
            tracing::warn!(group_id = %self.group, error = %e,
                "could not record the sink's progress for `status`; the cursor is unaffected");
            self.client = None;
            // Counted again with the next write.
            self.due.get_or_insert((event, 0)).1 += acked;
        }
    }

    async fn write(&mut self, event: &str, acked: u64) -> crate::Result<()> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.config.connect_sql().await?);
        }
        let Some(client) = &self.client else {
            return Ok(());
        };
        let acked = i64::try_from(acked).unwrap_or(i64::MAX);
        client
            .execute(
                "INSERT INTO changestream.sink_progress AS p
                     (group_id, sink, target, last_acked_event, records_acked, updated_at)
                 VALUES ($1, $2, $3, $4, $5, now())
                 ON CONFLICT (group_id, sink) DO UPDATE
                 SET target = EXCLUDED.target, last_acked_event = EXCLUDED.last_acked_event,
                     records_acked = p.records_acked + EXCLUDED.records_acked,
                     updated_at = now()",
                &[&self.group, &self.sink, &self.target, &event, &acked],
            )
            .await?;
        Ok(())
    }
}
