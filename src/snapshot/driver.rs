//! The backfill driver of one partition: chunks selected on its own SQL session, their
//! windows fed from the partition's stream, read records produced at high watermarks.
//!
//! The reader calls [`Backfill::advance`] whenever no chunk is in flight (it selects the
//! next one, bracketed by watermarks), [`Backfill::observe`] for every change it takes from
//! the stream, and [`Backfill::watermark`] for every internal message; the last returns the
//! chunk's read records at its high watermark.

use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel};

use super::plan::TablePlan;
use super::progress::{load_backfills, BackfillProgress, StoredProgress};
use super::window::{Key, SeenXids, Snapshot, Verdict, Window};
use super::INTERNAL_PREFIX;
use crate::config::ConnectConfig;
use crate::decode::record::{EventId, Op, PartitionId, Record, TxnInfo};
use crate::decode::relation::Relation;
use crate::decode::types::TypeCatalog;
use crate::error::Result;
use crate::group::table::TableName;
use crate::lsn::Lsn;
use crate::protocol::pgoutput::{OldTuple, TupleColumn, TupleData};
use crate::protocol::replication::system_to_pg_time;

/// The same text forms the replication connection pins (see docs/architecture.md), so a
/// value read by SQL is byte for byte what pgoutput would send; cursor-like durability for
/// the high watermark's commit (it must flush the WAL past the watermark).
const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
     SET synchronous_commit = 'on'; SET application_name = 'pg-changestream backfill'";

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A chunk whose read records have been produced: committing its high watermark position
/// (`lsn`, `records`) also commits `progress`.
#[derive(Debug, Clone)]
pub(crate) struct ChunkDone {
    pub(crate) lsn: Lsn,
    pub(crate) records: u64,
    pub(crate) progress: StoredProgress,
}

/// A chunk's output at its high watermark.
#[derive(Debug)]
pub(crate) struct Emitted {
    pub(crate) reads: Vec<Record>,
    pub(crate) done: ChunkDone,
}

#[derive(Debug)]
struct TableState {
    progress: StoredProgress,
    plan: Option<TablePlan>,
}

/// A chunk selected, waiting for its watermarks in the stream.
#[derive(Debug)]
struct Chunk {
    id: u64,
    /// Index in `tables`.
    table: usize,
    window: Window,
    rows: Vec<Vec<Option<String>>>,
    time_micros: i64,
}

/// One partition's backfill.
#[derive(Debug)]
pub(crate) struct Backfill {
    group_id: String,
    partition: i32,
    partitions: i32,
    chunk_size: usize,
    types: TypeCatalog,
    /// Identifies this driver's watermarks (a stream restarted after a crash carries the
    /// old ones too).
    session: u64,
    next_id: u64,
    client: Option<Client>,
    tables: Vec<TableState>,
    loaded: bool,
    /// On the next load, keep the known tables' progress (except `reset`'s) over the
    /// database's, which lags behind by the chunks not committed yet.
    keep: bool,
    reset: Vec<TableName>,
    chunk: Option<Chunk>,
    seen: SeenXids,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Backfill {
    /// The backfill of `partition` (of `partitions`) of `group_id`.
    pub(crate) fn new(
        group_id: String,
        partition: i32,
        partitions: i32,
        chunk_size: usize,
        types: TypeCatalog,
    ) -> Backfill {
        Backfill {
            group_id,
            partition,
            partitions,
            chunk_size: chunk_size.max(1),
            types,
            session: fastrand::u64(..),
            next_id: 0,
            client: None,
            tables: Vec::new(),
            loaded: false,
            keep: false,
            reset: Vec::new(),
            chunk: None,
            seen: SeenXids::default(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Forgets the chunk in flight and reloads progress from the database before the next
    /// chunk: the stream restarted from the committed position, so reads not committed are
    /// redone from the committed progress.
    pub(crate) fn reload(&mut self) {
        self.chunk = None;
        self.loaded = false;
        self.keep = false;
        self.reset.clear();
        self.retry_at = None;
    }

    /// The group's tables changed: reloads the list before the next chunk, keeping what
    /// this driver knows of tables already in it except `reset`, which starts again.
    pub(crate) fn refresh(&mut self, reset: &TableName) {
        self.chunk = None;
        if self.loaded {
            self.keep = true;
        }
        self.loaded = false;
        self.reset.push(reset.clone());
        self.retry_at = None;
    }

    /// Progress of every table this partition backfills (or backfilled).
    pub(crate) fn progress(&self) -> Vec<BackfillProgress> {
        self.tables
            .iter()
            .map(|t| BackfillProgress {
                table: t.progress.table.to_string(),
                partition: PartitionId::from_catalog(self.partition),
                rows_done: t.progress.rows_done,
                estimated_total: t.progress.estimated_total,
                last_key: t.progress.last_key.clone(),
                done: t.progress.done,
            })
            .collect()
    }

    /// Whether the list of tables must be (re)loaded before the next chunk.
    pub(crate) fn needs_load(&self) -> bool {
        !self.loaded
    }

    /// Loads this partition's backfills (committed progress) from `client`. Known tables'
    /// progress is kept after [`Backfill::refresh`] (the database lags behind it by the
    /// chunks not committed yet), except the reset ones'.
    ///
    /// # Errors
    /// SQL failed.
    pub(crate) async fn load(&mut self, client: &Client) -> Result<()> {
        let stored = load_backfills(client, &self.group_id, self.partition).await?;
        let mut known = std::mem::take(&mut self.tables);
        self.tables = stored
            .into_iter()
            .map(|progress| {
                let kept = (self.keep && !self.reset.contains(&progress.table))
                    .then(|| {
                        known
                            .iter()
                            .position(|t| t.progress.table == progress.table)
                    })
                    .flatten();
                match kept {
                    Some(i) => known.swap_remove(i),
                    None => TableState {
                        progress,
                        plan: None,
                    },
                }
            })
            .collect();
        self.loaded = true;
        self.keep = false;
        self.reset.clear();
        if self.tables.iter().all(|t| t.progress.done) {
            // Nothing to do: no session kept open for it.
            self.client = None;
        }
        Ok(())
    }

    /// Selects the next chunk if none is in flight and a table still needs one. Transient
    /// failures are retried later (with backoff) and do not stop the stream; a table
    /// dropped meanwhile is skipped with a warning.
    ///
    /// # Errors
    /// A definite failure (a table that cannot be read, permission denied).
    pub(crate) async fn advance(&mut self, config: &ConnectConfig) -> Result<()> {
        if !self.loaded
            || self.chunk.is_some()
            || self.retry_at.is_some_and(|at| at > Instant::now())
            || self.tables.iter().all(|t| t.progress.done)
        {
            return Ok(());
        }
        match self.select_chunk(config).await {
            Ok(()) => {
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                Ok(())
            }
            Err(e) if e.is_transient() || self.client.as_ref().is_none_or(Client::is_closed) => {
                tracing::warn!(
                    group_id = %self.group_id,
                    partition = self.partition,
                    error = %e,
                    retry_in = ?self.backoff,
                    "backfill chunk failed; retrying"
                );
                self.client = None;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Ok(())
            }
            Err(e)
                if e.is_not_found()
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                if let Some(t) = self.tables.iter_mut().find(|t| !t.progress.done) {
                    tracing::warn!(
                        group_id = %self.group_id,
                        partition = self.partition,
                        table = %t.progress.table,
                        error = %e,
                        "table to backfill is gone; skipping it"
                    );
                    t.progress.done = true;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn select_chunk(&mut self, config: &ConnectConfig) -> Result<()> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = config.connect_sql().await?;
            client.batch_execute(SESSION_SETTINGS).await?;
            self.client = Some(client);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        let Some(index) = self.tables.iter().position(|t| !t.progress.done) else {
            return Ok(());
        };
        let Some(state) = self.tables.get_mut(index) else {
            return Ok(());
        };
        if state.plan.is_none() {
            let plan = TablePlan::load(
                &*client,
                &self.group_id,
                &state.progress.table,
                self.partitions,
                self.partition,
                self.chunk_size,
                &self.types,
            )
            .await?;
            state
                .progress
                .estimated_total
                .get_or_insert(plan.estimated_rows);
            tracing::info!(
                group_id = %self.group_id,
                partition = self.partition,
                table = %plan.table,
                estimated_rows = plan.estimated_rows,
                "backfill of table starting"
            );
            state.plan = Some(plan);
        }
        let Some(plan) = state.plan.as_ref() else {
            return Ok(());
        };
        let id = self.next_id;
        self.next_id += 1;
        let payload = |kind: &str| {
            format!(
                "{kind} {:016x} {id} partition {} group {}",
                self.session, self.partition, self.group_id
            )
        };
        // (1) The low watermark, before the chunk's snapshot exists.
        client
            .query_one(
                "SELECT pg_logical_emit_message(false, $1::text, $2::text)::text",
                &[&INTERNAL_PREFIX, &payload("low")],
            )
            .await?;
        // (2) The chunk, under one snapshot (taken by the transaction's first statement).
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let row = tx
            .query_one("SELECT pg_current_snapshot()::text, now()", &[])
            .await?;
        let snapshot = Snapshot::parse(row.get(0))?;
        let time: SystemTime = row.get(1);
        let last_key = state.progress.last_key.as_deref();
        let params: Vec<&(dyn ToSql + Sync)> = last_key
            .unwrap_or_default()
            .iter()
            .map(|v| v as &(dyn ToSql + Sync))
            .collect();
        let rows = tx.query(plan.select(last_key), &params).await?;
        // (3) The high watermark after it. Its transaction gets an xid, so its commit
        // flushes WAL past the watermark: a non-transactional message alone is not flushed,
        // and the walsender sends only flushed WAL (it would wait for the WAL writer). The
        // transaction publishes no change, so pgoutput sends nothing for it.
        tx.query_one(
            "SELECT pg_logical_emit_message(false, $1::text, $2::text)::text, txid_current()",
            &[&INTERNAL_PREFIX, &payload("high")],
        )
        .await?;
        tx.commit().await?;
        let rows = rows
            .iter()
            .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
            .collect();
        self.chunk = Some(Chunk {
            id,
            table: index,
            window: Window::new(snapshot),
            rows,
            time_micros: system_to_pg_time(time),
        });
        Ok(())
    }

    /// Takes note of a change the stream delivered: the transactions of backfilled tables
    /// (for the visibility check), and keys changed inside the open window.
    pub(crate) fn observe(&mut self, record: &Record) {
        let Some(relation) = record.relation() else {
            return;
        };
        let backfilled = |t: &TableState| {
            !t.progress.done
                && t.progress.table.schema() == relation.schema()
                && t.progress.table.name() == relation.name()
        };
        if !self.tables.iter().any(backfilled) {
            return;
        }
        if let Some(xid) = record.txn().xid {
            self.seen.note(xid);
        }
        let Some(chunk) = self.chunk.as_mut() else {
            return;
        };
        let Some(state) = self.tables.get(chunk.table) else {
            return;
        };
        if !chunk.window.is_open() || !backfilled(state) {
            return;
        }
        let Some(plan) = state.plan.as_ref() else {
            return;
        };
        if record.op() == Op::Truncate {
            chunk.window.drop_all();
            return;
        }
        let Some((relation, new, old)) = record.tuples() else {
            return;
        };
        let old = old.map(OldTuple::data);
        for tuple in [new, old].into_iter().flatten() {
            match stream_key(relation, tuple, &plan.key_names) {
                Some(key) => chunk.window.drop_key(key),
                None => chunk.window.mark_stale(),
            }
        }
    }

    /// An internal message at `lsn`: opens the window of the chunk in flight at its low
    /// watermark, and at its high watermark returns the chunk's read records (or, for a
    /// stale chunk, nothing: it is selected again). Other drivers' watermarks are ignored.
    pub(crate) fn watermark(&mut self, content: &[u8], lsn: Lsn) -> Option<Emitted> {
        let text = std::str::from_utf8(content).ok()?;
        let mut words = text.split(' ');
        let (kind, session, id) = (words.next()?, words.next()?, words.next()?);
        let ours = u64::from_str_radix(session, 16).ok() == Some(self.session)
            && id.parse::<u64>().ok() == self.chunk.as_ref().map(|c| c.id);
        if !ours {
            return None;
        }
        match kind {
            "low" => {
                if let Some(chunk) = self.chunk.as_mut() {
                    chunk.window.low(&mut self.seen);
                }
                None
            }
            "high" => {
                let chunk = self.chunk.take()?;
                self.emit(chunk, lsn)
            }
            _ => None,
        }
    }

    fn emit(&mut self, chunk: Chunk, lsn: Lsn) -> Option<Emitted> {
        let state = self.tables.get_mut(chunk.table)?;
        let plan = state.plan.as_ref()?;
        if chunk.window.high() == Verdict::Retry {
            tracing::debug!(
                group_id = %self.group_id,
                partition = self.partition,
                table = %plan.table,
                "backfill chunk overlapped a commit it could not see; selecting it again"
            );
            return None;
        }
        // pgoutput reports the high watermark at the end of its WAL record, which is where a
        // transaction's commit record may start; reads are placed one byte before, so they
        // sort (and resume) before that transaction: (H - 1, i).
        let txn = std::sync::Arc::new(TxnInfo {
            xid: None,
            commit_lsn: Lsn::new(lsn.as_u64().saturating_sub(1)),
            commit_time_micros: Some(chunk.time_micros),
            origin: None,
            group: Some(self.group_id.as_str().into()),
        });
        let partition = EventId::partition_of(
            self.partition,
            usize::try_from(self.partitions).unwrap_or(0),
        );
        let mut reads = Vec::with_capacity(chunk.rows.len());
        let mut last_key = None;
        for row in &chunk.rows {
            let key: Vec<String> = plan
                .key_positions
                .iter()
                .map(|&i| row.get(i).cloned().flatten().unwrap_or_default())
                .collect();
            let raw: Key = key.iter().map(|k| k.as_bytes().to_vec()).collect();
            if chunk.window.keeps(&raw) {
                let tuple =
                    TupleData::from_text(row.iter().map(|v| v.as_deref().map(str::as_bytes)));
                let index = reads.len() as u64;
                let mut read = Record::row(
                    Op::Read,
                    std::sync::Arc::clone(&plan.relation),
                    Some(tuple),
                    None,
                    std::sync::Arc::clone(&txn),
                    index,
                );
                read.set_partition(partition);
                reads.push(read);
            }
            last_key = Some(key);
        }
        let progress = &mut state.progress;
        progress.rows_done += chunk.rows.len() as u64;
        if last_key.is_some() {
            progress.last_key = last_key;
        }
        if chunk.rows.len() < self.chunk_size {
            progress.done = true;
            tracing::info!(
                group_id = %self.group_id,
                partition = self.partition,
                table = %plan.table,
                rows = progress.rows_done,
                "backfill of table done"
            );
        }
        Some(Emitted {
            done: ChunkDone {
                lsn: txn.commit_lsn,
                records: reads.len() as u64,
                progress: progress.clone(),
            },
            reads,
        })
    }
}

/// The key values of `tuple` (a stream tuple of `relation`) as text, by key column name;
/// `None` when one is not there as text (an unchanged TOASTed key, a dropped column).
fn stream_key(relation: &Relation, tuple: &TupleData, names: &[String]) -> Option<Key> {
    names
        .iter()
        .map(|name| {
            let index = relation.columns().iter().position(|c| c.name() == name)?;
            match tuple.get(index)? {
                TupleColumn::Text(v) => Some(v.to_vec()),
                _ => None,
            }
        })
        .collect()
}
