//! [`Consumer`]: one member of a consumer group, reading its partitions.
//!
//! Every round (each poll, at most once a second or a quarter of `max_poll_interval`), the
//! member refreshes its heartbeat, reads the live members and the partition owners, and
//! computes its share ([`assignment`](crate::group::assignment)). Partitions no longer its
//! share are handed over at a bundle boundary — the round runs only while the poll holds no
//! records: in automatic mode what the previous poll returned from it is committed, its
//! replication connection is closed, and its owner cleared. Partitions newly its share are
//! claimed (from no owner, or from a gone one, which is fenced) and start at their committed
//! cursor. A member that finds a partition of its own owned by another, or its registration
//! gone, was fenced: the poll fails with [`Error::is_fenced`] and the consumer is done.
//! Those decisions are made by the pure `consumer::round::plan`; this module runs the
//! queries and carries them out.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::Stream;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::bundle::MessageBundle;
use super::commit::{Committer, PartitionEnd};
use super::filter::{OpSet, RecordFilter, TableStart};
use super::location::StartLocation;
use super::position::Position;
use super::reader::{Gather, PartitionReader, ReaderContext};
use super::round::{self, Fenced, Observed};
use super::settings::{CommitMode, Settings};
use super::stats::Stats;
use super::tables::{join_table, leave_table, no_tables, TableChanges};
use crate::config::ConnectConfig;
use crate::decode::decoder::DecoderOptions;
use crate::decode::record::{PartitionId, Record};
use crate::error::{Error, Kind, Result};
use crate::group::cursor::{load_cursor, prepare_session};
use crate::group::group_tables::{
    check_no_partition_of_another, load_group_tables, resolve_start_time, GroupTable,
};
use crate::group::identity::{
    check_wal_level, lacking_before_images_warning, partitions_lacking_before_images,
};
use crate::group::membership::{fenced, Claim};
use crate::group::partition::{
    check_group_id, create_or_load_group, ensure_publication_options, relation_ids,
    save_message_prefixes, GroupInfo,
};
use crate::group::table::TableName;
use crate::group::{catalog, membership};
use crate::lsn::Lsn;
use crate::snapshot::driver::Backfill;

/// The readers' shared context, borrowed field by field so that `self.readers` stays free.
macro_rules! reader_context {
    ($consumer:ident) => {
        ReaderContext {
            config: &$consumer.config,
            group_id: &$consumer.group.group_id,
            member_id: &$consumer.member_id,
            committer: &$consumer.committer,
            filter: &mut $consumer.filter,
            decoder: &$consumer.decoder,
            queue_capacity: $consumer.queue_capacity,
            reconnect_timeout: $consumer.reconnect_timeout,
        }
    };
}

/// A consumer of a group: `poll` returns bundles of records, `commit` moves the group's
/// committed cursor. Built by [`ConsumerBuilder`](super::ConsumerBuilder).
///
/// Dropping a consumer without [`Consumer::close`] stops it without committing: in automatic
/// mode the last poll's records are delivered again to the group's next consumer.
#[derive(Debug)]
pub struct Consumer {
    group: GroupInfo,
    member_id: String,
    config: ConnectConfig,
    commit_mode: CommitMode,
    max_poll_interval: Duration,
    reconnect_timeout: Duration,
    decoder: DecoderOptions,
    queue_capacity: usize,
    committer: Arc<Committer>,
    readers: Vec<PartitionReader>,
    filter: RecordFilter,
    stats: Stats,
    last_poll: Vec<PartitionEnd>,
    /// Automatic mode's trailing cursor writer, while it runs (`Committer::trail`).
    in_flight: Option<JoinHandle<Result<()>>>,
    /// The last membership round (heartbeat, hand-overs).
    last_round: Option<Instant>,
    /// The last check that the group's objects still exist.
    last_check: Instant,
    /// Where the next poll starts among the owned partitions, so none starves.
    rotation: usize,
    /// Set once another member took this one's partitions: every call fails.
    fenced: Option<String>,
    warnings: Vec<String>,
    /// Group tables found outside the publication (dropped, or dropped and created again),
    /// reported once the streams have passed the point where they were found missing, so
    /// that everything committed before the drop is delivered first.
    tables_gone: Option<TablesGone>,
}

/// See `Consumer::tables_gone`.
#[derive(Debug)]
struct TablesGone {
    error: Error,
    /// The server's WAL position when the tables were found missing.
    at: Lsn,
    /// Every owned stream had passed `at` with nothing left to deliver at the last poll;
    /// one more empty poll and the error is given (records decoded just before `at` may
    /// still have been on their way into the queue).
    passed: bool,
}

/// How long a poll waits on one partition before looking at the next, when several are
/// owned and none has records.
const WAIT_SLICE: Duration = Duration::from_millis(20);

impl Consumer {
    /// Builds a consumer: checks the table changes, creates or loads the group, applies
    /// them, joins as a member, and starts the partitions that are its share.
    pub(crate) async fn build(settings: Settings) -> Result<Consumer> {
        check_group_id(&settings.group_id)?;
        let changes = TableChanges::parse(&settings.add, &settings.remove)?;
        let group_id = settings.group_id.clone();
        let mut client = settings.config.connect_sql().await?;
        check_wal_level(&client).await?;
        catalog::migrate(&mut client).await?;
        let changes = changes.check(&client, &group_id).await?;
        let group = create_or_load_group(
            &mut client,
            &group_id,
            settings.partitions,
            settings.failover,
        )
        .await?;
        ensure_publication_options(&client, &group).await?;
        let mut warnings = changes.apply(&client, &group, settings.force_reset).await?;
        let tables = load_group_tables(&client, &group_id).await?;
        if tables.is_empty() {
            return Err(no_tables(&group_id));
        }
        warnings.extend(before_image_warnings(&client, &group_id, &tables).await?);
        save_message_prefixes(&client, &group_id, &settings.message_prefixes).await?;
        let member_id = format!("{:016x}", fastrand::u64(..));
        membership::join(&client, &group_id, &member_id, settings.max_poll_interval).await?;
        prepare_session(&client).await?;
        let mut positions = Vec::new();
        for p in &group.partitions {
            let cursor = load_cursor(&client, &group_id, p.partition).await?;
            positions.push((p.partition, Position::from(&cursor)));
        }
        let committer = Arc::new(Committer::new(
            group_id,
            member_id.clone(),
            settings.config.clone(),
            client,
            positions,
            settings.reconnect_timeout,
            settings.auto_commit_interval,
        ));
        let filter = RecordFilter::new(
            tables.iter().map(TableStart::from).collect(),
            OpSet::of(&settings.operations),
            settings.message_prefixes.clone(),
        );
        let mut consumer = Consumer::new(settings, group, member_id, committer, filter);
        consumer.warnings = warnings;
        consumer.start().await?;
        Ok(consumer)
    }

    /// A consumer of `group` as member `member_id`, owning nothing yet.
    fn new(
        settings: Settings,
        group: GroupInfo,
        member_id: String,
        committer: Arc<Committer>,
        filter: RecordFilter,
    ) -> Consumer {
        let readers = partition_readers(&settings, &group);
        Consumer {
            group,
            member_id,
            config: settings.config,
            commit_mode: settings.commit_mode,
            max_poll_interval: settings.max_poll_interval,
            reconnect_timeout: settings.reconnect_timeout,
            decoder: settings.decoder,
            queue_capacity: settings.queue_capacity,
            committer,
            readers,
            filter,
            stats: Stats::default(),
            last_poll: Vec::new(),
            in_flight: None,
            last_round: None,
            last_check: Instant::now(),
            rotation: 0,
            fenced: None,
            warnings: Vec::new(),
            tables_gone: None,
        }
    }

    /// Reports a slot invalidated or an object dropped behind the group's back (whatever
    /// this member's share turns out to be), runs the first membership round, and starts
    /// the streams of the partitions this member owns.
    async fn start(&mut self) -> Result<()> {
        for reader in &self.readers {
            reader
                .check_group(&self.committer, &self.group.group_id)
                .await?;
            if let Some((e, _)) = reader
                .check_tables(&self.committer, &self.group.group_id, None)
                .await?
            {
                return Err(e);
            }
        }
        self.round().await?;
        let deadline = Instant::now() + self.reconnect_timeout;
        let mut ctx = reader_context!(self);
        for reader in &mut self.readers {
            if ctx.committer.owns(reader.index()) {
                reader.ensure_started(&mut ctx, deadline).await?;
            }
        }
        tracing::info!(
            group_id = %self.group.group_id,
            member_id = %self.member_id,
            tables = self.filter.tables().count(),
            partitions = ?self.committer.owned(),
            "consumer started"
        );
        Ok(())
    }

    /// The group's id.
    pub fn group_id(&self) -> &str {
        &self.group.group_id
    }

    /// The tables the group reads.
    pub fn tables(&self) -> Vec<TableName> {
        self.filter.tables().map(|t| t.table.clone()).collect()
    }

    /// Warnings about start locations that could not be honoured exactly (a location
    /// before the oldest change the group still holds), and about partitions of a
    /// partitioned table that lack before-images (created or attached after `enable`; each
    /// names the partition and the fix). Also logged.
    pub fn start_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Counters, lag, and the progress of backfills in the partitions this member reads.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.backfill = self
            .readers
            .iter()
            .filter(|r| self.committer.owns(r.index()))
            .flat_map(PartitionReader::backfill_progress)
            .collect();
        stats
    }

    /// This member's id in `changestream.members`.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The number of partitions of the group (fixed at its creation).
    pub fn partition_count(&self) -> usize {
        self.group.partitions.len()
    }

    /// The partitions this consumer reads now: its share of the group's partitions among
    /// the live members, as of the last poll.
    pub fn partitions(&self) -> Vec<PartitionId> {
        self.committer
            .owned()
            .into_iter()
            .map(PartitionId::from_catalog)
            .collect()
    }

    /// The walsender process ids serving this consumer (to find them in
    /// `pg_stat_replication`), one per connected partition.
    pub fn backend_pids(&self) -> Vec<i32> {
        self.readers
            .iter()
            .filter_map(PartitionReader::backend_pid)
            .collect()
    }

    /// Returns as soon as records are available — at most `limit` of them — or an empty
    /// bundle after `wait`. In automatic mode, first commits what the previous poll
    /// returned. A transaction larger than `limit` spans several bundles; committing one of
    /// them commits exactly the records up to its end.
    ///
    /// # Errors
    /// A definite failure: [`Error::is_slot_invalidated`], [`Error::is_not_found`] (the
    /// group, its slot or publication was deleted), permission denied, malformed data; or a
    /// transient failure that outlasted the reconnect timeout.
    pub async fn poll(&mut self, limit: usize, wait: Duration) -> Result<MessageBundle> {
        let deadline = Instant::now() + wait;
        self.check_fenced()?;
        if self.commit_mode == CommitMode::Automatic {
            self.auto_commit().await?;
        }
        let mut gather = Gather::new(limit);
        // Rounds run while nothing is gathered, so a hand-over falls between bundles, and a
        // long wait keeps the heartbeat going.
        loop {
            self.heartbeat().await?;
            let until = deadline.min(Instant::now() + self.round_every());
            if let Err(e) = self.gather(&mut gather, until).await {
                if e.is_fenced() {
                    self.fence(&e);
                }
                return Err(e);
            }
            if !gather.records.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        if gather.records.is_empty() {
            if let Some(e) = self.tables_gone_error() {
                return Err(e);
            }
        }
        self.save_resolved_starts().await?;
        if let Err(e) = self.committer.store_quiet_chunks().await {
            // Only progress: the chunk is selected again if this never succeeds.
            tracing::warn!(group_id = %self.group.group_id, error = %e, "storing backfill progress failed");
        }
        let ends: Vec<PartitionEnd> = self.readers.iter().map(PartitionReader::end).collect();
        for end in &ends {
            if gather.records.is_empty() {
                self.committer.pass_over(end.index, end.position);
            } else {
                self.committer.delivered(end.index, end.position);
            }
        }
        let behind = self.count(&gather.records);
        self.last_poll = ends.clone();
        Ok(MessageBundle::new(
            gather.records,
            ends,
            Arc::clone(&self.committer),
            behind,
        ))
    }

    /// Counts a poll's `records` in the stats; returns the WAL bytes behind.
    fn count(&mut self, records: &[Record]) -> u64 {
        for record in records {
            self.stats.count(record);
        }
        let behind = self
            .readers
            .iter()
            .map(PartitionReader::wal_bytes_behind)
            .sum();
        self.stats.polls += 1;
        self.stats.wal_bytes_behind = behind;
        self.stats.committed_lsn = self.committer.committed_lsn();
        if let Some(commit_time) = records.last().and_then(|r| r.txn().commit_time()) {
            self.stats.commit_lag = SystemTime::now().duration_since(commit_time).ok();
        }
        self.committer.observe(&self.stats);
        behind
    }

    /// Takes records from the owned partitions into `gather` until `until` (or it is
    /// full). One partition is waited on as long as allowed; several are first all asked
    /// for what is ready, then waited on in short turns, starting at a different one each
    /// time so that a busy partition cannot starve the others.
    async fn gather(&mut self, gather: &mut Gather, until: Instant) -> Result<()> {
        let owned: Vec<usize> = (0..self.readers.len())
            .filter(|&i| self.committer.owns(i))
            .collect();
        if owned.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return Ok(());
        }
        let start = self.rotation % owned.len();
        self.rotation = self.rotation.wrapping_add(1);
        let mut ctx = reader_context!(self);
        let mut first = true;
        loop {
            for k in 0..owned.len() {
                let Some(reader) = owned
                    .get((start + k) % owned.len())
                    .and_then(|&i| self.readers.get_mut(i))
                else {
                    continue;
                };
                let wait_until = if owned.len() == 1 {
                    until
                } else if first || !gather.records.is_empty() {
                    Instant::now()
                } else {
                    (Instant::now() + WAIT_SLICE).min(until)
                };
                let reconnects = reader.reconnects();
                let result = reader.poll(&mut ctx, gather, wait_until).await;
                self.stats.reconnects += reader.reconnects() - reconnects;
                result?;
                if gather.full() {
                    return Ok(());
                }
            }
            first = false;
            if owned.len() == 1 || !gather.records.is_empty() || Instant::now() >= until {
                return Ok(());
            }
        }
    }

    /// Commits everything the last poll returned (and all before it).
    ///
    /// # Errors
    /// Writing the cursor failed for longer than the reconnect timeout, the group was
    /// deleted, or [`Error::is_fenced`] when this member lost its partitions.
    pub async fn commit(&mut self) -> Result<()> {
        self.check_fenced()?;
        self.settle().await?;
        let result = self.committer.commit(&self.last_poll).await;
        if let Err(e) = &result {
            if e.is_fenced() {
                self.fence(e);
            }
        }
        result
    }

    /// The error of every call once fenced.
    fn check_fenced(&self) -> Result<()> {
        match &self.fenced {
            Some(what) => Err(fenced(&self.group.group_id, &self.member_id, what)),
            None => Ok(()),
        }
    }

    /// Stops everything after another member took this one's partitions: streams dropped
    /// without confirming anything, nothing owned.
    fn fence(&mut self, e: &Error) {
        tracing::warn!(group_id = %self.group.group_id, member_id = %self.member_id, error = %e, "fenced");
        self.fenced = Some("its partitions were taken".into());
        for reader in &mut self.readers {
            self.committer.release(reader.index());
            reader.reset();
        }
        self.last_poll.clear();
    }

    /// Automatic mode: commits the previous poll without making this poll wait for any
    /// SQL: the slot is confirmed at once and the durable cursor trails, written by one
    /// background writer at most once per auto-commit interval (`Committer::trail`). A
    /// failed trailing write is returned here, by the first poll after it.
    async fn auto_commit(&mut self) -> Result<()> {
        if self.in_flight.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join_writer().await?;
        }
        if self.committer.commit_polled(&self.last_poll) {
            // A writer that found nothing left a moment ago may still be finishing.
            if let Err(e) = self.join_writer().await {
                self.committer.writer_stopped();
                return Err(e);
            }
            let committer = Arc::clone(&self.committer);
            self.in_flight = Some(tokio::spawn(committer.trail()));
        }
        Ok(())
    }

    /// Has the trailing writer write what is left now, and waits for it; returns its error.
    async fn settle(&mut self) -> Result<()> {
        self.committer.hurry();
        self.join_writer().await
    }

    /// Waits for the trailing writer to end, returning its error.
    async fn join_writer(&mut self) -> Result<()> {
        match self.in_flight.take() {
            Some(running) => running.await.unwrap_or_else(|e| {
                self.committer.writer_stopped();
                Err(Error::new(
                    Kind::Local,
                    format!("the background commit task failed: {e}"),
                ))
            }),
            None => Ok(()),
        }
    }

    /// Adds a table to the group while consuming; it starts at `location` if new to the
    /// group (its changes committed after it joined, or later).
    ///
    /// # Errors
    /// A bad table name, a table not enabled for change streaming, or SQL failed.
    pub async fn add_table(&mut self, table: &str, location: StartLocation) -> Result<()> {
        let table: TableName = table.parse()?;
        // Backfill progress of the table still queued for a commit must not be written over
        // the fresh start joining may give it: no commit runs meanwhile, and none holds it.
        self.settle().await?;
        self.committer.forget_table(&table);
        let joined = {
            let client = self.committer.client().await?;
            let existing = load_group_tables(&*client, &self.group.group_id).await?;
            let mut reading: Vec<TableName> = existing.iter().map(|t| t.table.clone()).collect();
            reading.push(table.clone());
            check_no_partition_of_another(&*client, &self.group.group_id, &reading).await?;
            let current = existing.iter().find(|t| t.table == table);
            let cursor = load_cursor(&*client, &self.group.group_id, 0).await?;
            join_table(
                &client,
                &self.group,
                &table,
                location,
                None,
                current,
                true,
                &cursor,
            )
            .await?
        };
        self.warnings.extend(joined.warning);
        self.filter.set_table(TableStart::from(&joined.table));
        // The group changed in the database: the readers follow before anything can fail.
        for reader in &mut self.readers {
            reader.tables_changed(&table);
        }
        // A table added back after being dropped is a reason to look again.
        self.tables_gone = None;
        let tables: Vec<TableName> = self.filter.tables().map(|t| t.table.clone()).collect();
        let ids = match self.committer.client().await {
            Ok(client) => relation_ids(&*client, &tables).await,
            Err(e) => Err(e),
        };
        match ids {
            Ok((ids, at)) => self.filter.set_relation_ids(ids, at),
            // The table is in the group either way; each stream start looks them up again.
            Err(e) => tracing::warn!(
                group_id = %self.group.group_id,
                table = %table,
                error = %e,
                "could not refresh the tables' relation ids; the next stream start will"
            ),
        }
        Ok(())
    }

    /// Takes a table out of the group; its records stop at once, also those already
    /// decoded.
    ///
    /// # Errors
    /// A bad table name, or SQL failed.
    pub async fn remove_table(&mut self, table: &str) -> Result<()> {
        let table: TableName = table.parse()?;
        self.settle().await?;
        self.committer.forget_table(&table);
        {
            let client = self.committer.client().await?;
            leave_table(&client, &self.group, &table).await?;
        }
        self.filter.remove_table(&table);
        self.tables_gone = None;
        for reader in &mut self.readers {
            reader.tables_changed(&table);
        }
        Ok(())
    }

    /// Forgets what was polled but not committed: the next poll delivers it again, from
    /// the committed cursor.
    pub async fn reset(&mut self) -> Result<()> {
        self.settle().await?;
        for reader in &mut self.readers {
            reader.close().await.ok();
        }
        self.last_poll.clear();
        Ok(())
    }

    /// Stops the consumer: in automatic mode commits the last poll, ends replication
    /// cleanly and leaves the group, giving its partitions up to the other members at once.
    /// Closing a fenced consumer commits nothing and succeeds.
    ///
    /// # Errors
    /// The final commit failed; the consumer is stopped anyway.
    pub async fn close(mut self) -> Result<()> {
        let settled = self.settle().await;
        let committed = match (self.commit_mode, &self.fenced) {
            (_, Some(_)) => Ok(()),
            (CommitMode::Automatic, None) => self.committer.commit(&self.last_poll).await,
            (CommitMode::Manual, None) => Ok(()),
        };
        let committed = if self.fenced.is_some() {
            Ok(())
        } else {
            settled.and(committed)
        };
        let mut closed = Ok(());
        for reader in &mut self.readers {
            let result = reader.close().await;
            if closed.is_ok() {
                closed = result;
            }
        }
        if let Ok(client) = self.committer.client().await {
            let _ = membership::leave(&*client, &self.group.group_id, &self.member_id).await;
        }
        tracing::info!(group_id = %self.group.group_id, "consumer closed");
        committed.and(closed)
    }

    /// The bundles of successive polls of up to `limit` records as a `Stream`, skipping
    /// empty ones; commits follow the commit mode as with [`Consumer::poll`].
    pub fn bundles(
        &mut self,
        limit: usize,
    ) -> Pin<Box<dyn Stream<Item = Result<MessageBundle>> + Send + '_>> {
        Box::pin(futures_util::stream::unfold(
            self,
            move |consumer| async move {
                loop {
                    match consumer.poll(limit, Duration::from_secs(1)).await {
                        Ok(bundle) if bundle.is_empty() => continue,
                        result => return Some((result, consumer)),
                    }
                }
            },
        ))
    }

    /// How often membership rounds run: a quarter of `max_poll_interval`, at most a second
    /// (so hand-overs and take-overs happen within about a second).
    fn round_every(&self) -> Duration {
        (self.max_poll_interval / 4).min(Duration::from_secs(1))
    }

    /// Now and then: a membership round (heartbeat, hand-overs, take-overs), and a check
    /// that the group, its slots and publications still exist. A failing query is not fatal
    /// (the stream reports a lost server on its own); something gone is, and so is being
    /// fenced. The check matters on PostgreSQL 18, where pgoutput skips a dropped
    /// publication with a warning instead of failing.
    async fn heartbeat(&mut self) -> Result<()> {
        if self
            .last_round
            .is_some_and(|at| at.elapsed() < self.round_every())
        {
            return Ok(());
        }
        match self.round().await {
            Ok(()) => {}
            Err(e) if e.is_fenced() => {
                self.fence(&e);
                return Err(e);
            }
            Err(e) if e.is_not_found() => return Err(e),
            Err(e) => {
                tracing::warn!(group_id = %self.group.group_id, error = %e, "membership round failed");
            }
        }
        if self.last_check.elapsed() < self.max_poll_interval / 4 {
            return Ok(());
        }
        self.last_check = Instant::now();
        for reader in &self.readers {
            if !self.committer.owns(reader.index()) {
                continue;
            }
            match reader
                .check_group(&self.committer, &self.group.group_id)
                .await
            {
                Err(e) if !e.is_transient() && e.as_db_error().is_none() => return Err(e),
                _ => {}
            }
            if self.tables_gone.is_none() {
                match reader
                    .check_tables(&self.committer, &self.group.group_id, Some(&self.filter))
                    .await
                {
                    Ok(Some((error, at))) => {
                        self.tables_gone = Some(TablesGone {
                            error,
                            at,
                            passed: false,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(group_id = %self.group.group_id, error = %e, "checking the group's tables failed");
                    }
                }
            }
        }
        Ok(())
    }

    /// After a poll that found nothing: the error about dropped tables, once every owned
    /// stream has delivered all it received before they were found missing.
    fn tables_gone_error(&mut self) -> Option<Error> {
        let gone = self.tables_gone.as_mut()?;
        let passed = self.readers.iter().all(|r| {
            !self.committer.owns(r.index()) || r.server_wal_end().is_some_and(|end| end >= gone.at)
        });
        if !passed {
            gone.passed = false;
            return None;
        }
        if !gone.passed {
            gone.passed = true;
            return None;
        }
        self.tables_gone.take().map(|g| g.error)
    }

    /// One membership round: heartbeat, then hand over what is no longer this member's
    /// share and claim what newly is.
    ///
    /// # Errors
    /// [`Error::is_fenced`] when this member's registration is gone or another member owns a
    /// partition it thought its own; SQL failures.
    async fn round(&mut self) -> Result<()> {
        self.last_round = Some(Instant::now());
        let group_id = self.group.group_id.clone();
        let (registered, owners, live) = {
            let client = self.committer.client().await?;
            let owned = self.committer.owned();
            if membership::heartbeat(&*client, &group_id, &self.member_id, &owned).await? {
                (
                    true,
                    membership::owners(&*client, &group_id).await?,
                    membership::live_members(&*client, &group_id).await?,
                )
            } else {
                // Fenced: nothing else to look at.
                (false, Vec::new(), Vec::new())
            }
        };
        let partitions: Vec<i32> = self.group.partitions.iter().map(|p| p.partition).collect();
        let owned: Vec<bool> = (0..partitions.len())
            .map(|i| self.committer.owns(i))
            .collect();
        let observed = Observed {
            member_id: &self.member_id,
            registered,
            partitions: &partitions,
            owned: &owned,
            owners: &owners,
            live: &live,
        };
        let moves = round::plan(&observed)
            .map_err(|Fenced(why)| fenced(&group_id, &self.member_id, &why))?;
        for index in moves.release {
            self.hand_over(index).await?;
        }
        for index in moves.claim {
            self.claim(index).await?;
        }
        Ok(())
    }

    /// Claims partition `index` (from no owner, or from a gone one, which is fenced) and
    /// restarts its reader at the committed cursor; leaves it while another member still
    /// holds it.
    async fn claim(&mut self, index: usize) -> Result<()> {
        let Some(info) = self.group.partitions.get(index) else {
            return Ok(());
        };
        let group_id = &self.group.group_id;
        let cursor = {
            let mut client = self.committer.client().await?;
            let claim = membership::claim(
                &mut client,
                group_id,
                info.partition,
                &self.member_id,
                &info.slot_name,
            )
            .await?;
            if let Claim::Held(owner) = claim {
                tracing::debug!(group_id, partition = info.partition, %owner, "partition still held");
                return Ok(());
            }
            load_cursor(&*client, group_id, info.partition).await?
        };
        let durable = Position::from(&cursor);
        self.committer.claim(index, durable);
        if let Some(reader) = self.readers.get_mut(index) {
            reader.restart_from(durable);
        }
        tracing::info!(group_id, partition = info.partition, member_id = %self.member_id, "partition claimed");
        Ok(())
    }

    /// Gives partition `index` up: in automatic mode commits what the last poll returned
    /// from it, closes its replication connection and clears its owner.
    async fn hand_over(&mut self, index: usize) -> Result<()> {
        self.settle().await?;
        if self.commit_mode == CommitMode::Automatic {
            let ends: Vec<PartitionEnd> = self
                .last_poll
                .iter()
                .filter(|end| end.index == index)
                .copied()
                .collect();
            self.committer.commit(&ends).await?;
        }
        self.committer.release(index);
        if let Some(reader) = self.readers.get_mut(index) {
            if let Err(e) = reader.close().await {
                tracing::debug!(error = %e, "closing a handed-over partition's stream");
            }
        }
        let Some(partition) = self.group.partitions.get(index).map(|p| p.partition) else {
            return Ok(());
        };
        let client = self.committer.client().await?;
        membership::release(&*client, &self.group.group_id, partition, &self.member_id).await?;
        tracing::info!(group_id = %self.group.group_id, partition, member_id = %self.member_id, "partition handed over");
        Ok(())
    }

    async fn save_resolved_starts(&mut self) -> Result<()> {
        let resolved = self.filter.take_resolved();
        if resolved.is_empty() {
            return Ok(());
        }
        let client = self.committer.client().await?;
        for (table, lsn) in resolved {
            resolve_start_time(&*client, &self.group.group_id, &table, lsn).await?;
        }
        Ok(())
    }
}

/// One reader per partition of `group`, each with its backfill.
fn partition_readers(settings: &Settings, group: &GroupInfo) -> Vec<PartitionReader> {
    let count = i32::try_from(group.partitions.len()).unwrap_or(i32::MAX);
    group
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let backfill = Backfill::new(
                group.group_id.clone(),
                p.partition,
                count,
                settings.backfill_chunk_size,
                settings.decoder.types.clone(),
            );
            PartitionReader::new(i, p.clone(), group.partitions.len(), backfill)
        })
        .collect()
}

/// Warnings (also logged) about partitions of the group's partitioned tables that lack
/// before-images (created or attached after `enable`).
///
/// # Errors
/// The catalog query failed.
async fn before_image_warnings(
    client: &Client,
    group_id: &str,
    tables: &[GroupTable],
) -> Result<Vec<String>> {
    let names: Vec<TableName> = tables.iter().map(|t| t.table.clone()).collect();
    let mut warnings = Vec::new();
    for (table, partition) in partitions_lacking_before_images(client, &names).await? {
        let warning = lacking_before_images_warning(&table, &partition);
        tracing::warn!(group_id = %group_id, "{warning}");
        warnings.push(warning);
    }
    Ok(warnings)
}
