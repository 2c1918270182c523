//! One partition's reader: its change stream, its place in it, and reconnecting.
//!
//! A reader consumes [`Change`]s from a [`ChangeStream`] into a poll's records. The stream
//! starts at the higher of the committed position the consumer holds and the durable cursor
//! in `changestream.cursors`; records at or before that position (the first records of a
//! partly committed transaction, or redeliveries after a reconnect) are passed over. What
//! becomes of each record — delivered, passed over, held back, a watermark — is decided by
//! the pure delivery rules in `consumer::route`; this module is the I/O around them.
//!
//! Transient failures (connection lost, server restarting, slot still held by a walsender
//! that is going away) drop the stream; the next poll reconnects with exponential backoff
//! and gives up with the last error after the reconnect timeout. Before every start the
//! reader checks that the group, its slot and its publication still exist and that the slot
//! was not invalidated, so those failures end with an error that says what happened.

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::error::SqlState;

use super::commit::{Committer, PartitionEnd};
use super::filter::RecordFilter;
use super::position::Position;
use super::route::{route, Route, Rules};
use crate::config::ConnectConfig;
use crate::decode::decoder::{Change, DecoderOptions};
use crate::decode::record::{EventId, PartitionId, Record, TxnInfo};
use crate::error::{Error, Kind, Result};
use crate::group::cursor::load_cursor;
use crate::group::identity::{
    full_identity_primary_keys, lacking_before_images_warning, partitions_lacking_before_images,
};
use crate::group::membership::{fenced, owns, terminate_slot_holder};
use crate::group::partition::{
    current_wal_lsn, publication_exists, relation_ids, slot_status, tables_outside_publication,
    unlisted_published_tables, PartitionInfo,
};
use crate::group::shapes::load_shapes;
use crate::group::table::TableName;
use crate::group::user_types::register_user_types;
use crate::lsn::Lsn;
use crate::snapshot::driver::Backfill;
use crate::snapshot::BackfillProgress;
use crate::stream::{ChangeStream, ChangeStreamOptions};

/// What every reader of a consumer shares.
pub(crate) struct ReaderContext<'a> {
    pub(crate) config: &'a ConnectConfig,
    pub(crate) group_id: &'a str,
    pub(crate) member_id: &'a str,
    pub(crate) committer: &'a Committer,
    pub(crate) filter: &'a mut RecordFilter,
    pub(crate) decoder: &'a DecoderOptions,
    pub(crate) queue_capacity: usize,
    pub(crate) reconnect_timeout: Duration,
}

/// The records of one poll being gathered.
pub(crate) struct Gather {
    pub(crate) records: Vec<Record>,
    limit: usize,
}

impl Gather {
    pub(crate) fn new(limit: usize) -> Gather {
        Gather {
            records: Vec::with_capacity(limit.min(4096)),
            limit: limit.max(1),
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.records.len() >= self.limit
    }
}

/// One partition's stream and position.
#[derive(Debug)]
pub(crate) struct PartitionReader {
    index: usize,
    info: PartitionInfo,
    /// The partition as event ids name it (none in a group of one).
    event_partition: Option<PartitionId>,
    stream: Option<ChangeStream>,
    /// A change taken from the stream that did not fit in the last poll.
    pending: Option<Change>,
    /// A definite backfill failure met while the poll had already gathered records: those
    /// go out first (their position is already counted as polled), the error with the next
    /// poll.
    deferred: Option<Error>,
    /// This partition's backfill, and the read records of its last chunk not yet taken
    /// (at most one chunk).
    backfill: Backfill,
    reads: VecDeque<Record>,
    /// Everything up to here was taken from the stream (delivered or passed over).
    polled: Position,
    /// The commit time of the last transaction taken.
    polled_time: Option<SystemTime>,
    /// Since when the stream is down, and when to try again.
    down_since: Option<Instant>,
    next_attempt: Option<Instant>,
    backoff: Duration,
    reconnects: u64,
    /// Tables whose partitions lacking before-images were already reported (once per
    /// table: every such update and delete shows it).
    lacking_reported: HashSet<TableName>,
    /// The columns in force must be read from the group's store at the next start: the
    /// reader is new, or the partition was (re)claimed and another member may have moved
    /// its cursor. Otherwise what the committer noted from this reader's stream holds.
    load_shapes: bool,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl PartitionReader {
    /// The reader of partition `info` of a group of `partitions`, at `index` in the
    /// consumer's lists.
    pub(crate) fn new(
        index: usize,
        info: PartitionInfo,
        partitions: usize,
        backfill: Backfill,
    ) -> PartitionReader {
        PartitionReader {
            index,
            event_partition: EventId::partition_of(info.partition, partitions),
            info,
            stream: None,
            pending: None,
            deferred: None,
            backfill,
            reads: VecDeque::new(),
            polled: Position::default(),
            polled_time: None,
            down_since: None,
            next_attempt: None,
            backoff: FIRST_BACKOFF,
            reconnects: 0,
            lacking_reported: HashSet::new(),
            load_shapes: true,
        }
    }

    /// Where this reader has got to, for committing.
    pub(crate) fn end(&self) -> PartitionEnd {
        PartitionEnd {
            index: self.index,
            position: self.polled,
            commit_time: self.polled_time,
        }
    }

    /// Bytes of WAL between what was taken and the server's last reported end.
    pub(crate) fn wal_bytes_behind(&self) -> u64 {
        self.stream
            .as_ref()
            .map_or(0, |s| s.server_wal_end().bytes_since(self.polled.lsn))
    }

    /// Times the stream was started again after a failure.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Starts the stream now if it is not running (retrying transient failures until
    /// `deadline`), so that a consumer's first failures surface when it is built.
    ///
    /// # Errors
    /// A definite failure, or the deadline passed without a stream.
    pub(crate) async fn ensure_started(
        &mut self,
        ctx: &mut ReaderContext<'_>,
        deadline: Instant,
    ) -> Result<()> {
        if self.stream.is_some() || self.connect(ctx, deadline).await? {
            return Ok(());
        }
        Err(Error::new(
            Kind::Closed,
            format!(
                "consumer group {:?}: could not start streaming from slot {} in time; is \
                 another consumer of the group attached?",
                ctx.group_id, self.info.slot_name
            ),
        ))
    }

    /// The walsender serving this reader, while connected.
    pub(crate) fn backend_pid(&self) -> Option<i32> {
        self.stream.as_ref().map(ChangeStream::backend_pid)
    }

    /// Drops the stream and forgets how far it got: this member just claimed the
    /// partition, whose committed cursor is `position`.
    pub(crate) fn restart_from(&mut self, position: Position) {
        self.reset();
        self.polled = position;
        self.load_shapes = true;
    }

    /// The reader's index in the consumer's lists.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Drops the stream: the next poll starts again from the committed position.
    pub(crate) fn reset(&mut self) {
        self.stream = None;
        self.pending = None;
        self.reads.clear();
        self.backfill.reload();
    }

    /// The group's tables changed (`reset` started again from its beginning): the backfill
    /// reloads its list before its next chunk.
    pub(crate) fn tables_changed(&mut self, reset: &TableName) {
        self.backfill.refresh(reset);
    }

    /// Backfill progress of this partition's tables.
    pub(crate) fn backfill_progress(&self) -> Vec<BackfillProgress> {
        self.backfill.progress()
    }

    /// Ends the stream cleanly, sending the confirmed position.
    pub(crate) async fn close(&mut self) -> Result<()> {
        self.pending = None;
        self.reads.clear();
        self.backfill.reload();
        match self.stream.take() {
            Some(stream) => stream.close().await,
            None => Ok(()),
        }
    }

    /// Takes changes into `gather` until it is full, or — once it holds something — until
    /// nothing more is ready, or until `deadline`. What each record becomes is decided by
    /// the delivery rules (`consumer::route`); this is the I/O around them.
    ///
    /// # Errors
    /// A definite failure (group deleted, slot invalidated or dropped, permission denied,
    /// malformed data), or a transient one lasting past the reconnect timeout.
    pub(crate) async fn poll(
        &mut self,
        ctx: &mut ReaderContext<'_>,
        gather: &mut Gather,
        deadline: Instant,
    ) -> Result<()> {
        let floor = ctx.committer.resume_from(self.index);
        if gather.records.is_empty() {
            if let Some(e) = self.deferred.take() {
                return Err(e);
            }
        } else if self.deferred.is_some() {
            return Ok(());
        }
        loop {
            if self.stream.is_none() {
                match self.connect(ctx, deadline).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return self.fail_after(gather, e),
                }
            }
            if !self.take_reads(ctx.filter, gather) {
                return Ok(());
            }
            if let Err(e) = self.move_backfill(ctx).await {
                return self.fail_after(gather, e);
            }
            let change = match self.pending.take() {
                Some(change) => Ok(change),
                None => match self.next(gather.records.is_empty(), deadline).await {
                    Some(result) => result,
                    None => return Ok(()),
                },
            };
            let step = match change {
                Ok(Change::Record(record)) => self.take(ctx, gather, record, floor).await,
                Ok(Change::Commit { txn, end_lsn, .. }) => {
                    self.take_commit(&txn, end_lsn);
                    ControlFlow::Continue(())
                }
                Err(e) if e.is_transient() => self.lost(ctx, gather, &e),
                Err(e) => return Err(self.explain(ctx, e).await),
            };
            if let ControlFlow::Break(result) = step {
                return result;
            }
        }
    }

    /// Takes the read records of the backfill's last chunk into `gather` (they sit at its
    /// high watermark, before the change after it): delivered when the filter admits them,
    /// consumed either way. `false` when `gather` filled up first.
    fn take_reads(&mut self, filter: &mut RecordFilter, gather: &mut Gather) -> bool {
        while let Some(read) = self.reads.pop_front() {
            if gather.full() {
                self.reads.push_front(read);
                return false;
            }
            let after = Position::after(&read);
            if filter.admit(&read) {
                self.polled_time = read.txn().commit_time().or(self.polled_time);
                gather.records.push(read);
            }
            self.polled = self.polled.max(after);
        }
        true
    }

    /// Loads the backfill's progress when it must (a transient failure is retried at the
    /// next poll), then moves it on — unless a change is pending: the chunk's watermarks
    /// must follow what the poll already took.
    async fn move_backfill(&mut self, ctx: &ReaderContext<'_>) -> Result<()> {
        if self.backfill.needs_load() {
            // On the consumer's session: a partition with nothing to backfill opens none.
            let loaded = match ctx.committer.client().await {
                Ok(client) => self.backfill.load(&client).await,
                Err(e) => Err(e),
            };
            match loaded {
                Ok(()) => {}
                Err(e) if e.is_transient() => tracing::warn!(
                    group_id = ctx.group_id,
                    error = %e,
                    "loading backfill progress failed; retrying"
                ),
                Err(e) => return Err(e),
            }
        }
        if self.pending.is_none() {
            self.backfill.advance(ctx.config).await?;
        }
        Ok(())
    }

    /// Carries out what the delivery rules make of `record` (`consumer::route`).
    /// `Break` ends the poll with the result.
    async fn take(
        &mut self,
        ctx: &mut ReaderContext<'_>,
        gather: &mut Gather,
        record: Record,
        floor: Position,
    ) -> ControlFlow<Result<()>> {
        let rules = Rules {
            partition: self.info.partition,
            floor,
            full: gather.full(),
        };
        let route = route(&record, &rules, ctx.filter);
        if route.in_stream() {
            self.backfill.observe(&record);
            ctx.committer.note_shape(self.index, &record);
        }
        match route {
            Route::Watermark => self.watermark(ctx.committer, &record),
            Route::Ignore | Route::Committed => {}
            Route::Full => {
                self.pending = Some(Change::Record(record));
                return ControlFlow::Break(Ok(()));
            }
            Route::HoldBack { old, new } => {
                // Held back for every later poll too, so nothing after it is taken (and
                // committed) past it; what came before is handed out first.
                let error = renamed(ctx.group_id, &old, &new, record.txn().commit_lsn);
                self.pending = Some(Change::Record(record));
                let result = if gather.records.is_empty() {
                    Err(error)
                } else {
                    Ok(())
                };
                return ControlFlow::Break(result);
            }
            Route::PassOver => self.polled = self.polled.max(Position::after(&record)),
            Route::Deliver => {
                if record.lacks_before_image() {
                    self.report_lacking_before_images(ctx, &record).await;
                }
                self.polled = self.polled.max(Position::after(&record));
                self.polled_time = record.txn().commit_time().or(self.polled_time);
                gather.records.push(record);
            }
        }
        ControlFlow::Continue(())
    }

    /// A backfill watermark: never delivered; the chunk it closes hands over its reads and
    /// its progress (committed with the position after them). Its Commit moves the position.
    fn watermark(&mut self, committer: &Committer, record: &Record) {
        let Some((_, content)) = record.message_content() else {
            return;
        };
        if let Some(emitted) = self.backfill.watermark(content, record.txn().commit_lsn) {
            committer.chunk_done(self.index, emitted.done);
            self.reads.extend(emitted.reads);
        }
    }

    /// A transaction's Commit: everything before `end_lsn` was taken.
    fn take_commit(&mut self, txn: &TxnInfo, end_lsn: Lsn) {
        let after = Position::after_commit(end_lsn);
        if after > self.polled {
            self.polled = after;
            self.polled_time = txn.commit_time().or(self.polled_time);
        }
    }

    /// The stream failed transiently: dropped, to start again from the committed position.
    /// What arrived before the failure goes out now; the next poll reconnects.
    fn lost(
        &mut self,
        ctx: &ReaderContext<'_>,
        gather: &Gather,
        e: &Error,
    ) -> ControlFlow<Result<()>> {
        tracing::warn!(
            group_id = ctx.group_id,
            slot = %self.info.slot_name,
            error = %e,
            "replication stream lost; reconnecting from the committed position"
        );
        self.reset();
        self.down_since.get_or_insert_with(Instant::now);
        if gather.records.is_empty() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Ok(()))
        }
    }

    /// Fails the poll with `e`, unless records were gathered already: dropping them would
    /// lose them (their position counts as polled, and a later commit would pass them), so
    /// they go out and `e` waits for the next poll.
    fn fail_after(&mut self, gather: &Gather, e: Error) -> Result<()> {
        if gather.records.is_empty() {
            return Err(e);
        }
        self.deferred = Some(e);
        Ok(())
    }

    /// The next change: waits until `deadline` when `wait`, else only takes a ready one.
    async fn next(&mut self, wait: bool, deadline: Instant) -> Option<Result<Change>> {
        let stream = self.stream.as_mut()?;
        let next = if wait {
            tokio::time::timeout_at(deadline.into(), stream.next_change())
                .await
                .ok()?
        } else {
            Some(stream.try_next_change()?)
        };
        Some(next.unwrap_or_else(|| {
            Err(Error::new(
                Kind::Closed,
                "the replication stream ended without an error",
            ))
        }))
    }

    /// Starts the stream, retrying transient failures with backoff. `Ok(false)` when the
    /// deadline came first.
    async fn connect(&mut self, ctx: &mut ReaderContext<'_>, deadline: Instant) -> Result<bool> {
        loop {
            if let Some(at) = self.next_attempt {
                if at > deadline {
                    tokio::time::sleep_until(deadline.into()).await;
                    return Ok(false);
                }
                tokio::time::sleep_until(at.into()).await;
            }
            match self.start(ctx).await {
                Ok(()) => {
                    if let Some(since) = self.down_since.take() {
                        self.reconnects += 1;
                        tracing::info!(
                            group_id = ctx.group_id,
                            slot = %self.info.slot_name,
                            after = ?since.elapsed(),
                            "replication stream reconnected"
                        );
                    }
                    self.next_attempt = None;
                    self.backoff = FIRST_BACKOFF;
                    return Ok(true);
                }
                Err(e) if e.is_transient() => {
                    let since = *self.down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ctx.reconnect_timeout {
                        return Err(Error::with_source(
                            Kind::Closed,
                            format!(
                                "consumer group {:?}: could not reconnect to slot {} for {:?} \
                                 (the reconnect timeout); check that the server is up and \
                                 reachable",
                                ctx.group_id,
                                self.info.slot_name,
                                since.elapsed()
                            ),
                            e,
                        ));
                    }
                    tracing::warn!(
                        group_id = ctx.group_id,
                        slot = %self.info.slot_name,
                        error = %e,
                        retry_in = ?self.backoff,
                        "cannot start the replication stream yet"
                    );
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the stream at the later of the committed position and the durable cursor.
    async fn start(&mut self, ctx: &mut ReaderContext<'_>) -> Result<()> {
        let durable = self.check_group(ctx.committer, ctx.group_id).await?;
        if let Some((e, _)) = self.check_tables(ctx.committer, ctx.group_id, None).await? {
            return Err(e);
        }
        let (options, start) = self.stream_options(ctx, durable).await?;
        let stream = match ChangeStream::start(ctx.config, options).await {
            Ok(stream) => stream,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                self.take_over_if_abandoned(ctx).await?;
                return Err(e);
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => return Err(self.explain(ctx, e).await),
        };
        let acker = stream.acker();
        acker.ack(start.flush_lsn());
        ctx.committer.attach(self.index, Some(acker), start);
        self.stream = Some(stream);
        self.pending = None;
        // Reads not committed are redone: from the committed progress, at new watermarks.
        self.reads.clear();
        self.backfill.reload();
        self.polled = start;
        Ok(())
    }

    /// The options of a stream starting at the later of the committed position and the
    /// `durable` cursor (returned with them), from the catalog as it is now: after checking
    /// that this member still owns the partition (a member that lost it, fenced, must not
    /// take the slot back), the tables' relation ids, user types, the primary keys of FULL
    /// tables, and the columns in force at the start.
    async fn stream_options(
        &mut self,
        ctx: &mut ReaderContext<'_>,
        durable: Position,
    ) -> Result<(ChangeStreamOptions, Position)> {
        let client = ctx.committer.client().await?;
        if !owns(&*client, ctx.group_id, self.info.partition, ctx.member_id).await? {
            return Err(fenced(
                ctx.group_id,
                ctx.member_id,
                &format!("partition {} has another owner", self.info.partition),
            ));
        }
        let tables: Vec<TableName> = ctx.filter.tables().map(|t| t.table.clone()).collect();
        let (ids, at) = relation_ids(&*client, &tables).await?;
        ctx.filter.set_relation_ids(ids, at);
        let mut decoder = ctx.decoder.clone();
        register_user_types(&*client, &mut decoder.types).await?;
        decoder.primary_keys = full_identity_primary_keys(&*client).await?;
        decoder.projections = ctx.filter.projections();
        decoder.partition = self.event_partition;
        decoder.group = Some(ctx.group_id.into());
        let start = ctx.committer.resume_from(self.index).max(durable);
        // The columns in force at the start: what this member noted from its own stream,
        // unless the reader is new or the partition was claimed again (another member may
        // have moved on meanwhile): then what the group stored with the cursor.
        let stored = if self.load_shapes {
            let (group, partition) = (ctx.group_id, self.info.partition);
            Some(load_shapes(&*client, group, partition, &ctx.decoder.types).await?)
        } else {
            None
        };
        drop(client);
        decoder.baseline = ctx.committer.restart_shapes(self.index, start.lsn, stored);
        self.load_shapes = false;
        let publications = vec![self.info.publication_name.clone()];
        let mut options = ChangeStreamOptions::new(&self.info.slot_name, publications);
        options.start = start.lsn;
        // Every slot decodes every logical message. Each partition needs them for its
        // backfill watermarks; the application's own are delivered by partition 0 only.
        options.messages = true;
        options.decoder = decoder;
        options.queue_capacity = ctx.queue_capacity;
        Ok((options, start))
    }

    /// A record of a partitioned table enabled with before-images carries only the key: one
    /// of its partitions lacks them (created or attached after `enable`). Logs, once per
    /// table, which partitions (asked of the catalog now) and the fix.
    async fn report_lacking_before_images(&mut self, ctx: &ReaderContext<'_>, record: &Record) {
        let Some(relation) = record.relation() else {
            return;
        };
        let Ok(table) = TableName::new(relation.schema(), relation.name()) else {
            return;
        };
        if !self.lacking_reported.insert(table.clone()) {
            return;
        }
        let found = match ctx.committer.client().await {
            Ok(client) => {
                partitions_lacking_before_images(&*client, std::slice::from_ref(&table)).await
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(partitions) if !partitions.is_empty() => {
                for (table, partition) in partitions {
                    tracing::warn!(
                        group_id = ctx.group_id,
                        "{}",
                        lacking_before_images_warning(&table, &partition)
                    );
                }
            }
            // Enabled again since, or the catalog could not be asked: the record still
            // says what it carries.
            Ok(_) | Err(_) => tracing::warn!(
                group_id = ctx.group_id,
                %table,
                "an update or delete of table {table} arrived with before_image \"key\": a \
                 partition of it lacked before-images when the change was made; run \
                 pg-changestream enable {table} again if one still does"
            ),
        }
    }

    /// The slot is held by a walsender although this member owns the partition (checked
    /// just before starting): it serves a consumer that died without closing its connection
    /// (it would keep the slot until `wal_sender_timeout`), or a member fenced since. Either
    /// way it is terminated so the slot frees at once.
    async fn take_over_if_abandoned(&self, ctx: &ReaderContext<'_>) -> Result<()> {
        let client = ctx.committer.client().await?;
        if !owns(&*client, ctx.group_id, self.info.partition, ctx.member_id).await? {
            return Ok(());
        }
        if let Some(pid) = terminate_slot_holder(&*client, &self.info.slot_name).await? {
            tracing::warn!(
                group_id = ctx.group_id,
                slot = %self.info.slot_name,
                pid,
                "slot held by a walsender of no live owner; terminated it"
            );
        }
        Ok(())
    }

    /// Checks that the group, its slot and its publication still exist and that the slot
    /// was not invalidated; returns the durable cursor.
    ///
    /// # Errors
    /// A definite error naming what is gone, or the queries failed.
    pub(crate) async fn check_group(&self, committer: &Committer, group: &str) -> Result<Position> {
        let client = committer.client().await?;
        let cursor = load_cursor(&*client, group, self.info.partition).await?;
        let status = slot_status(&*client, &self.info.slot_name).await?;
        let slot = &self.info.slot_name;
        match status {
            None => {
                return Err(Error::new(
                    Kind::NotFound,
                    format!(
                        "consumer group {group:?}: its replication slot {slot} was dropped \
                         behind its back, and the changes it held are gone; delete the group \
                         (delete_group) and build it again"
                    ),
                ))
            }
            Some(s) if s.wal_status.as_deref() == Some("lost") => {
                return Err(invalidated(group, slot, cursor.commit_lsn));
            }
            Some(_) => {}
        }
        if !publication_exists(&*client, &self.info.publication_name).await? {
            return Err(Error::new(
                Kind::NotFound,
                format!(
                    "consumer group {group:?}: its publication {} was dropped behind its back; \
                     delete the group (delete_group) and build it again",
                    self.info.publication_name
                ),
            ));
        }
        Ok(Position::from(&cursor))
    }

    /// Checks that every table of the group is still in this partition's publication.
    /// Returns the error to give, and the WAL position by which the server had dropped the
    /// table (the stream delivers everything before it first). With `filter`, a table
    /// renamed while the stream runs is left to the stream, which reports it when its first
    /// record under the new name arrives — held back, in order.
    ///
    /// # Errors
    /// The queries failed.
    pub(crate) async fn check_tables(
        &self,
        committer: &Committer,
        group: &str,
        filter: Option<&RecordFilter>,
    ) -> Result<Option<(Error, Lsn)>> {
        let client = committer.client().await?;
        let publication = &self.info.publication_name;
        let mut outside = tables_outside_publication(&*client, group, publication).await?;
        if outside.is_empty() {
            return Ok(None);
        }
        let unlisted = unlisted_published_tables(&*client, group, publication).await?;
        if let Some(filter) = filter {
            for (oid, _) in relation_ids(&*client, &unlisted).await?.0 {
                if let Some(old) = filter.table_of_relation(oid) {
                    outside.retain(|t| t != old);
                }
            }
            if outside.is_empty() {
                return Ok(None);
            }
        }
        let at = current_wal_lsn(&*client).await?;
        Ok(Some((tables_gone(group, &outside, &unlisted), at)))
    }

    /// The server's WAL end as the stream last reported it: everything before it was sent.
    pub(crate) fn server_wal_end(&self) -> Option<Lsn> {
        self.stream.as_ref().map(ChangeStream::server_wal_end)
    }

    /// Turns a definite failure into an error that names the group and the remedy.
    async fn explain(&self, ctx: &ReaderContext<'_>, e: Error) -> Error {
        let group = ctx.group_id;
        let slot = &self.info.slot_name;
        if e.is_slot_invalidated() {
            let cursor = ctx.committer.committed(self.index).lsn;
            return Error::with_source(
                Kind::SlotInvalidated,
                invalidated(group, slot, cursor).to_string(),
                e,
            );
        }
        match e.code() {
            Some(code) if *code == SqlState::UNDEFINED_OBJECT => {
                // The slot or publication vanished; say which, if the catalog still can.
                match self.check_group(ctx.committer, ctx.group_id).await {
                    Err(definite) if !definite.is_transient() => definite,
                    _ => Error::with_source(
                        Kind::NotFound,
                        format!("consumer group {group:?}: an object it reads is gone"),
                        e,
                    ),
                }
            }
            Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => Error::with_source(
                Kind::ServerSetup,
                format!(
                    "consumer group {group:?}: permission denied reading slot {slot}; the role \
                     needs the REPLICATION attribute (ALTER ROLE … REPLICATION; see sql/role.sql)"
                ),
                e,
            ),
            _ => e,
        }
    }
}

/// Group tables no longer in the group's publication: pgoutput sends nothing for them, so
/// only this check can tell. A table dropped and created again is a new relation, which
/// the publication does not hold; a renamed one stays in it under its new name.
fn tables_gone(group: &str, outside: &[TableName], unlisted: &[TableName]) -> Error {
    let names = |tables: &[TableName]| {
        tables
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let renamed = if unlisted.is_empty() {
        String::new()
    } else {
        format!(
            " (the publication now holds {}, which the group does not list: renamed?)",
            names(unlisted)
        )
    };
    Error::new(
        Kind::NotFound,
        format!(
            "consumer group {group:?}: table {} is no longer in the group's publication: it was \
             dropped, or dropped and created again, or renamed{renamed}; its changes since are \
             not delivered. If it was created again, enable it and add it back \
             (Consumer::add_table, or build with remove_table and add_table of it): changes \
             made before that are not delivered. If it was renamed, enable the new name and \
             build the consumer with remove_table of the old name and add_table of the new \
             one (StartLocation::FirstUncommitted resumes at the committed cursor)",
            names(outside)
        ),
    )
}

/// A record of a group table that arrives under another name: the table was renamed while
/// the group read it. The record is held back, not passed over.
fn renamed(group: &str, old: &TableName, new: &str, commit_lsn: Lsn) -> Error {
    Error::new(
        Kind::NotFound,
        format!(
            "consumer group {group:?}: table {old} was renamed to {new} while the group read \
             it; its changes from {commit_lsn} on are held back, nothing is lost. To read it \
             under the new name: enable_change_streaming({new}), then build the consumer with \
             remove_table({old}) and add_table({new}, StartLocation::FirstUncommitted), \
             which resumes at the committed cursor"
        ),
    )
}

fn invalidated(group: &str, slot: &str, cursor: Lsn) -> Error {
    Error::new(
        Kind::SlotInvalidated,
        format!(
            "consumer group {group:?}: replication slot {slot} was invalidated by the server \
             (WAL it needed was removed, e.g. past max_slot_wal_keep_size); changes committed \
             after {cursor} are lost to this group. Delete the group (delete_group) and build it \
             again, and raise max_slot_wal_keep_size or consume faster"
        ),
    )
}
