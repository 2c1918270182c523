//! Committing: the durable cursor and the slot's flush position.
//!
//! An explicit commit ([`Committer::commit`]: `bundle.commit()`, `Consumer::commit`, and
//! automatic mode's close and hand-over) first writes `changestream.cursors` (durable at once)
//! and then confirms the position to the walsender (durable at the next checkpoint). If the
//! process dies between the two, the next start takes the higher of cursor and slot, so
//! nothing committed is delivered again; the reverse order would be as safe, but the cursor
//! is the one a server crash cannot roll back.
//!
//! Automatic mode commits at every poll and cannot afford a durable SQL round trip each time
//! (thousands a second under load: each a WAL flush, and WAL that every walsender of the
//! server decodes). [`Committer::commit_polled`] therefore confirms the previous poll to the
//! slot at once — the server stops sending it to this group, and a consumer crash delivers
//! again only what the slot had not been told — and leaves the cursor to a trailing writer
//! ([`Committer::trail`]): at most one write in flight, the newest committed position wins,
//! at most one write per auto-commit interval. The durable cursor so trails the committed
//! position by at most the interval plus one write, which bounds what a server crash (whose
//! slot falls back to its last checkpoint) delivers again.
//!
//! The committer is shared by the consumer and its bundles (`bundle.commit()` may run on
//! another task); the stream it confirms to is swapped on every reconnect.
//!
//! It knows every partition of the group but commits only those the member owns. A
//! partition given up in a rebalance is skipped quietly (its uncommitted records go to the
//! new owner: at least once); a partition taken while this member still thought it owned it
//! fails the commit with [`Error::is_fenced`](crate::Error::is_fenced), because the cursor
//! write checks the owner.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as MutexGuardStd, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify};
use tokio_postgres::Client;

use super::position::Position;
use super::stats::{ConsumerMetrics, Stats};
use crate::config::ConnectConfig;
use crate::decode::record::Record;
use crate::decode::relation::{Baseline, Relation};
use crate::error::{Error, Kind, Result};
use crate::group::cursor::{prepare_session, store_cursor, Cursor};
use crate::group::membership::register_session;
use crate::group::shapes::store_shapes;
use crate::group::table::TableName;
use crate::lsn::Lsn;
use crate::snapshot::driver::ChunkDone;
use crate::snapshot::progress::{store_progress, StoredProgress};
use crate::stream::Acker;

/// Where a bundle (or a poll) ended in one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionEnd {
    /// Index of the partition in the consumer's list.
    pub(crate) index: usize,
    pub(crate) position: Position,
    pub(crate) commit_time: Option<SystemTime>,
}

#[derive(Debug)]
struct PartitionState {
    partition: i32,
    /// Committed: confirmed to the slot, and never handed to the application again by this
    /// member. The durable cursor is here too, except in automatic mode, where it trails.
    committed: Position,
    /// The commit time of the last transaction (part) committed, for the trailing write.
    committed_time: Option<SystemTime>,
    /// Where this member last wrote the durable cursor (or found it when claiming).
    stored: Position,
    /// Automatic mode committed records beyond `stored`: the trailing writer has work.
    /// (Records only passed over need no cursor write: after a crash they are passed over
    /// again.)
    unstored: bool,
    /// The end of the records handed to the application so far.
    delivered: Position,
    acker: Option<Acker>,
    /// This member owns the partition (claimed and not given up).
    owned: bool,
    /// Backfill chunks whose read records were produced, oldest first, with the position
    /// just after their last read record: committing that position commits their progress.
    chunks: VecDeque<(Position, StoredProgress)>,
    /// Per relation id, the columns in force from a commit LSN on, as the stream showed
    /// them (see [`Committer::note_shape`]).
    shapes: HashMap<u32, Vec<(Lsn, Arc<Relation>)>>,
    /// What `changestream.relation_shapes` holds for this partition (as far as known).
    stored_shapes: HashMap<u32, Arc<Relation>>,
}

impl PartitionState {
    /// The columns in force before the transaction at `lsn` (for a position inside it, or
    /// just past it for a whole one), per relation.
    fn shapes_before(&self, lsn: Lsn) -> impl Iterator<Item = (u32, &Arc<Relation>)> + '_ {
        self.shapes.iter().filter_map(move |(oid, history)| {
            history
                .iter()
                .rev()
                .find(|(from, _)| *from < lsn)
                .map(|(_, r)| (*oid, r))
        })
    }
}

/// The partitions, and the trailing writer's state, under one lock: the writer decides to
/// stop in the same moment a poll decides whether to start one, so no work is left behind.
#[derive(Debug)]
struct State {
    partitions: Vec<PartitionState>,
    /// A trailing writer task runs (see [`Committer::trail`]).
    trailing: bool,
    /// The trailing writer is asked to write what is left without waiting for the interval.
    hurry: bool,
    /// When the trailing writer last began a write.
    last_trail: Option<Instant>,
}

/// Commits positions for a consumer's partitions.
///
/// Two locks: `session` is held for a commit's SQL round trip (commits are serialised);
/// `state` only for moments, so polling never waits for a commit in flight.
#[derive(Debug)]
pub(crate) struct Committer {
    group_id: String,
    member_id: String,
    config: ConnectConfig,
    reconnect_timeout: Duration,
    /// At most one trailing cursor write per interval (automatic mode).
    auto_commit_interval: Duration,
    session: Mutex<Option<Client>>,
    state: StdMutex<State>,
    /// Wakes the trailing writer when `hurry` is set.
    hurried: Notify,
    /// The group's metrics (cursor writes here; the rest set per poll by the consumer).
    metrics: ConsumerMetrics,
}

impl Committer {
    /// A committer for member `member_id` over `partitions` (partition number, committed
    /// position), none of them owned yet.
    pub(crate) fn new(
        group_id: String,
        member_id: String,
        config: ConnectConfig,
        client: Client,
        partitions: Vec<(i32, Position)>,
        reconnect_timeout: Duration,
        auto_commit_interval: Duration,
    ) -> Committer {
        let partitions = partitions
            .into_iter()
            .map(|(partition, committed)| PartitionState {
                partition,
                committed,
                committed_time: None,
                stored: committed,
                unstored: false,
                delivered: committed,
                acker: None,
                owned: false,
                chunks: VecDeque::new(),
                shapes: HashMap::new(),
                stored_shapes: HashMap::new(),
            })
            .collect();
        Committer {
            member_id,
            config,
            reconnect_timeout,
            auto_commit_interval,
            session: Mutex::new(Some(client)),
            state: StdMutex::new(State {
                partitions,
                trailing: false,
                hurry: false,
                last_trail: None,
            }),
            hurried: Notify::new(),
            metrics: ConsumerMetrics::new(&group_id),
            group_id,
        }
    }

    /// Sets the group's metrics from the consumer's figures (once per poll).
    pub(crate) fn observe(&self, stats: &Stats) {
        self.metrics.observe(stats);
    }

    fn state(&self) -> MutexGuardStd<'_, State> {
        // A panic while holding this lock leaves plain positions behind; they stay valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits every partition up to its end in `ends`, durably: the cursor is written
    /// (synchronously committed) before the slot is confirmed. Ends not ahead of the
    /// stored cursor are skipped.
    ///
    /// # Errors
    /// Writing the cursor failed for longer than the reconnect timeout, or the group was
    /// deleted.
    pub(crate) async fn commit(&self, ends: &[PartitionEnd]) -> Result<()> {
        let mut session = self.session.lock().await;
        for end in ends {
            let partition = {
                let state = self.state();
                match state.partitions.get(end.index) {
                    Some(p) if p.owned && end.position > p.stored => p.partition,
                    _ => continue,
                }
            };
            if !self
                .write(
                    &mut session,
                    end.index,
                    partition,
                    end.position,
                    end.commit_time,
                )
                .await?
            {
                continue;
            }
            let mut state = self.state();
            if let Some(p) = state.partitions.get_mut(end.index) {
                if p.owned && end.position > p.committed {
                    p.committed = end.position;
                    p.committed_time = end.commit_time.or(p.committed_time);
                    if let Some(acker) = &p.acker {
                        acker.ack(end.position.flush_lsn());
                    }
                }
            }
        }
        Ok(())
    }

    /// Automatic mode: commits every partition up to its end in `ends` (the previous poll,
    /// which the application had) without waiting for anything: the slot is confirmed at
    /// once, the durable cursor is left to the trailing writer. Returns whether a trailing
    /// writer must be started ([`Committer::trail`]); the caller then starts exactly one.
    pub(crate) fn commit_polled(&self, ends: &[PartitionEnd]) -> bool {
        let mut state = self.state();
        for end in ends {
            let Some(p) = state.partitions.get_mut(end.index) else {
                continue;
            };
            if !p.owned || end.position <= p.committed {
                continue;
            }
            p.committed = end.position;
            p.committed_time = end.commit_time.or(p.committed_time);
            p.unstored = true;
            if let Some(acker) = &p.acker {
                acker.ack(end.position.flush_lsn());
            }
        }
        let work = state.partitions.iter().any(|p| p.owned && p.unstored);
        if work && !state.trailing {
            state.trailing = true;
            state.hurry = false;
            return true;
        }
        false
    }

    /// Asks a running trailing writer to write what is left now and then stop waiting for
    /// the interval (before awaiting it: close, hand-over, explicit commits).
    pub(crate) fn hurry(&self) {
        self.state().hurry = true;
        self.hurried.notify_one();
    }

    /// The trailing writer: writes the durable cursor of every owned partition whose
    /// committed position it does not hold yet, at most once per auto-commit interval, the
    /// newest position each time, until nothing is left; started by the poll whose
    /// [`Committer::commit_polled`] said so. Its writes commit synchronously like every other:
    /// at one write per interval, the WAL flush costs the server little, and a cursor write
    /// that returned stays durable (see `docs/architecture.md`).
    ///
    /// # Errors
    /// A write failed for longer than the reconnect timeout, the group was deleted, or
    /// [`Error::is_fenced`]; reported by the next poll.
    pub(crate) async fn trail(self: Arc<Self>) -> Result<()> {
        let result = self.trail_until_done().await;
        if result.is_err() {
            self.writer_stopped();
        }
        result
    }

    /// The trailing writer ended without saying so itself (an error, a panic): a later poll
    /// may start another.
    pub(crate) fn writer_stopped(&self) {
        self.state().trailing = false;
    }

    async fn trail_until_done(&self) -> Result<()> {
        loop {
            loop {
                let due = {
                    let state = self.state();
                    match state.last_trail {
                        Some(at) if !state.hurry => at + self.auto_commit_interval,
                        _ => break,
                    }
                };
                if Instant::now() >= due {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = self.hurried.notified() => {}
                }
            }
            // The newest committed positions, taken in the same moment as the decision to
            // stop: a poll committing after it starts a writer of its own.
            let work: Vec<(usize, i32, Position, Option<SystemTime>)> = {
                let mut state = self.state();
                let work: Vec<_> = state
                    .partitions
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, p)| p.owned && p.unstored)
                    .map(|(index, p)| {
                        p.unstored = false;
                        (index, p.partition, p.committed, p.committed_time)
                    })
                    .collect();
                if work.is_empty() {
                    state.trailing = false;
                    return Ok(());
                }
                state.last_trail = Some(Instant::now());
                work
            };
            let mut session = self.session.lock().await;
            for (i, &(index, partition, position, time)) in work.iter().enumerate() {
                if let Err(e) = self
                    .write(&mut session, index, partition, position, time)
                    .await
                {
                    // Left to the next writer (and an explicit commit) to write.
                    let mut state = self.state();
                    for &(index, ..) in &work[i..] {
                        if let Some(p) = state.partitions.get_mut(index) {
                            p.unstored = p.owned;
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Writes the cursor of partition `index` (number `partition`) at `position`, with the
    /// progress of the backfill chunks it covers, and notes it stored. `Ok(false)` when the
    /// partition was given up in a rebalance while the write was on its way (the new owner
    /// delivers those records again).
    async fn write(
        &self,
        session: &mut Option<Client>,
        index: usize,
        partition: i32,
        position: Position,
        commit_time: Option<SystemTime>,
    ) -> Result<bool> {
        let cursor = Cursor {
            commit_lsn: position.lsn,
            records_done: position.records,
            commit_time,
        };
        // The progress of every chunk whose reads this commit covers, latest per table;
        // the columns in force at the position, where they changed.
        let mut progress: Vec<StoredProgress> = Vec::new();
        let mut shapes: Vec<Arc<Relation>> = Vec::new();
        if let Some(p) = self.state().partitions.get(index) {
            shapes = p
                .shapes_before(position.lsn)
                .filter(|(oid, r)| {
                    p.stored_shapes
                        .get(oid)
                        .is_none_or(|stored| !stored.same_columns(r))
                })
                .map(|(_, r)| Arc::clone(r))
                .collect();
            for (chunk_end, chunk) in &p.chunks {
                if *chunk_end > position {
                    break;
                }
                progress.retain(|c| c.table != chunk.table);
                progress.push(chunk.clone());
            }
        }
        match self
            .store(session, partition, &cursor, &progress, &shapes)
            .await
        {
            Err(e) if e.is_fenced() && !self.owns(index) => return Ok(false),
            result => result?,
        }
        if let Some(p) = self.state().partitions.get_mut(index) {
            p.stored = p.stored.max(position);
            while p.chunks.front().is_some_and(|(e, _)| *e <= position) {
                p.chunks.pop_front();
            }
            for relation in shapes {
                p.stored_shapes.insert(relation.id(), relation);
            }
            // Entries older than the one in force at the stored position are done.
            for history in p.shapes.values_mut() {
                if let Some(i) = history.iter().rposition(|(from, _)| *from < position.lsn) {
                    history.drain(..i);
                }
            }
        }
        self.metrics.cursor_written();
        Ok(true)
    }

    /// Notes the columns `record` was decoded with, taken from partition `index`'s stream
    /// (delivered or passed over): a new entry when they differ from the last one noted,
    /// in force from the record's commit LSN on (from 0 for a relation's first sighting).
    pub(crate) fn note_shape(&self, index: usize, record: &Record) {
        let Some(relation) = record.relation() else {
            return;
        };
        let mut state = self.state();
        let Some(p) = state.partitions.get_mut(index) else {
            return;
        };
        let history = p.shapes.entry(relation.id()).or_default();
        match history.last() {
            None => history.push((Lsn::ZERO, Arc::clone(relation))),
            Some((_, last)) if !last.same_columns(relation) => {
                history.push((record.txn().commit_lsn, Arc::clone(relation)));
            }
            Some(_) => {}
        }
    }

    /// Partition `index`'s stream starts again at `start`: the baseline for its decoder,
    /// the columns in force before the transaction it resumes in (the server resends that
    /// transaction from its Begin, Relation messages included, so the decoder finds each
    /// schema change again at the same index, and a re-sent Relation message is none).
    /// `stored` (read from `changestream.relation_shapes`) replaces what this member noted
    /// when the stream starts past what it saw itself. What comes again is noted again.
    pub(crate) fn restart_shapes(
        &self,
        index: usize,
        start: Lsn,
        stored: Option<Baseline>,
    ) -> Baseline {
        let mut state = self.state();
        let Some(p) = state.partitions.get_mut(index) else {
            return Baseline::new();
        };
        if let Some(stored) = stored {
            p.shapes = stored
                .iter()
                .map(|(oid, r)| (*oid, vec![(Lsn::ZERO, Arc::clone(r))]))
                .collect();
            p.stored_shapes = stored;
        }
        let mut baseline = Baseline::new();
        p.shapes.retain(|oid, history| {
            history.retain(|(from, _)| *from < start);
            if let Some((_, last)) = history.pop() {
                baseline.insert(*oid, Arc::clone(&last));
                *history = vec![(Lsn::ZERO, last)];
            }
            !history.is_empty()
        });
        baseline
    }

    /// Writes a cursor (and with it, in one transaction, backfill progress and the columns
    /// in force), reconnecting the SQL session with backoff on transient failures.
    async fn store(
        &self,
        session: &mut Option<Client>,
        partition: i32,
        cursor: &Cursor,
        progress: &[StoredProgress],
        shapes: &[Arc<Relation>],
    ) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let client = self.connected(session).await?;
                self.store_once(client, partition, cursor, progress, shapes)
                    .await
            }
            .await;
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() && started.elapsed() < self.reconnect_timeout => {
                    tracing::warn!(group_id = %self.group_id, error = %e, "committing failed; retrying");
                    *session = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt of [`Committer::store`] on `client`: the cursor alone, or with the
    /// progress and shapes in one transaction.
    async fn store_once(
        &self,
        client: &Client,
        partition: i32,
        cursor: &Cursor,
        progress: &[StoredProgress],
        shapes: &[Arc<Relation>],
    ) -> Result<bool> {
        let (group, member) = (&self.group_id, &self.member_id);
        if progress.is_empty() && shapes.is_empty() {
            return store_cursor(client, group, partition, member, cursor).await;
        }
        client.batch_execute("BEGIN").await?;
        let written = async {
            let moved = store_cursor(client, group, partition, member, cursor).await?;
            for p in progress {
                store_progress(client, group, partition, member, p).await?;
            }
            store_shapes(client, group, partition, shapes).await?;
            Ok(moved)
        }
        .await;
        match written {
            Ok(moved) => {
                client.batch_execute("COMMIT").await?;
                Ok(moved)
            }
            Err(e) => {
                // A failed session is replaced anyway; a live one must not stay inside the
                // aborted transaction.
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Installs the acknowledger of partition `index`'s new stream, which starts at `start`
    /// (the higher of the committed position and the durable cursor).
    pub(crate) fn attach(&self, index: usize, acker: Option<Acker>, start: Position) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            p.acker = acker;
            p.committed = p.committed.max(start);
            // The new stream sends everything after the committed position again.
            p.delivered = p.committed;
            // Chunks whose reads were not committed are read again, at new watermarks;
            // their progress must never be written.
            let kept = p.committed;
            p.chunks.retain(|(end, _)| *end <= kept);
        }
    }

    /// A backfill chunk's read records were produced in partition `index`.
    pub(crate) fn chunk_done(&self, index: usize, chunk: ChunkDone) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            let end = Position {
                lsn: chunk.lsn,
                records: chunk.records,
            };
            p.chunks.push_back((end, chunk.progress));
        }
    }

    /// Stores the progress of chunks that produced no read records (every row dropped, or
    /// the last, empty chunk) once every chunk before them is committed: nothing of theirs
    /// needs the cursor — the changes that dropped their rows are in the stream after the
    /// committed position and come again after a restart. Without this, a consumer that
    /// never receives a record (so never commits) would select such chunks again forever.
    ///
    /// # Errors
    /// The SQL session failed.
    pub(crate) async fn store_quiet_chunks(&self) -> Result<()> {
        loop {
            let next = self
                .state()
                .partitions
                .iter()
                .enumerate()
                .find_map(|(index, p)| match p.chunks.front() {
                    Some((end, progress)) if p.owned && end.records == 0 => {
                        Some((index, p.partition, *end, progress.clone()))
                    }
                    _ => None,
                });
            let Some((index, partition, end, progress)) = next else {
                return Ok(());
            };
            {
                let mut session = self.session.lock().await;
                // A commit may have stored a later chunk of this partition (and dropped this
                // one) while we waited for the session: writing this one now would move the
                // stored progress back.
                let still_first = self
                    .state()
                    .partitions
                    .get(index)
                    .is_some_and(|p| p.chunks.front().is_some_and(|(e, _)| *e == end));
                if !still_first {
                    continue;
                }
                let client = self.connected(&mut session).await?;
                store_progress(
                    client,
                    &self.group_id,
                    partition,
                    &self.member_id,
                    &progress,
                )
                .await?;
            }
            if let Some(p) = self.state().partitions.get_mut(index) {
                if p.chunks.front().is_some_and(|(e, _)| *e == end) {
                    p.chunks.pop_front();
                }
            }
        }
    }

    /// Forgets chunks of `table` not yet committed: its backfill started again.
    pub(crate) fn forget_table(&self, table: &TableName) {
        for p in self.state().partitions.iter_mut() {
            p.chunks.retain(|(_, c)| &c.table != table);
        }
    }

    /// Partition `index` is this member's now, committed up to `durable` (the cursor as its
    /// previous owner left it; what this member knew of it before is stale).
    pub(crate) fn claim(&self, index: usize, durable: Position) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            p.owned = true;
            p.committed = durable;
            p.committed_time = None;
            p.stored = durable;
            p.unstored = false;
            p.delivered = durable;
            p.acker = None;
            p.chunks.clear();
        }
    }

    /// Partition `index` is not this member's any more: its commits are skipped.
    pub(crate) fn release(&self, index: usize) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            p.owned = false;
            p.unstored = false;
            p.acker = None;
            p.chunks.clear();
        }
    }

    /// Whether this member owns partition `index`.
    pub(crate) fn owns(&self, index: usize) -> bool {
        self.state().partitions.get(index).is_some_and(|p| p.owned)
    }

    /// The partition numbers this member owns.
    pub(crate) fn owned(&self) -> Vec<i32> {
        self.state()
            .partitions
            .iter()
            .filter(|p| p.owned)
            .map(|p| p.partition)
            .collect()
    }

    /// Where a restarted stream may begin, and below which records are passed over: the
    /// committed position (in automatic mode possibly ahead of the durable cursor, whose
    /// trailing write a failure reports at the next poll).
    pub(crate) fn resume_from(&self, index: usize) -> Position {
        self.committed(index)
    }

    /// The committed position of partition `index`.
    pub(crate) fn committed(&self, index: usize) -> Position {
        self.state()
            .partitions
            .get(index)
            .map(|p| p.committed)
            .unwrap_or_default()
    }

    /// The lowest committed LSN over the partitions this member owns.
    pub(crate) fn committed_lsn(&self) -> Lsn {
        self.state()
            .partitions
            .iter()
            .filter(|p| p.owned)
            .map(|p| p.committed.lsn)
            .min()
            .unwrap_or_default()
    }

    /// Notes that records up to `position` were handed to the application.
    pub(crate) fn delivered(&self, index: usize, position: Position) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            p.delivered = p.delivered.max(position);
        }
    }

    /// Moves the slot past records the application never saw (filtered out, or other
    /// tables' transactions), but only while nothing it did see is uncommitted: then no
    /// record can be lost by it. Nothing durable is written; after a crash those records
    /// are simply passed over again.
    pub(crate) fn pass_over(&self, index: usize, position: Position) {
        if let Some(p) = self.state().partitions.get_mut(index) {
            if p.owned && p.committed >= p.delivered && position > p.committed {
                p.committed = position;
                p.delivered = position;
                if let Some(acker) = &p.acker {
                    acker.ack(position.flush_lsn());
                }
            }
        }
    }

    /// The SQL session, reconnected if it was lost. Holding it delays commits.
    ///
    /// # Errors
    /// Reconnecting failed.
    pub(crate) async fn client(&self) -> Result<MappedMutexGuard<'_, Client>> {
        let mut session = self.session.lock().await;
        self.connected(&mut session).await?;
        MutexGuard::try_map(session, Option::as_mut)
            .map_err(|_| Error::new(Kind::Closed, "the consumer's SQL session is gone"))
    }

    /// The session in `slot`, connecting a new one when there is none or it closed. A new
    /// session is registered as the member's at once: the others take a member whose
    /// session ended for gone.
    async fn connected<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a Client> {
        let client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let client = self.config.connect_sql().await?;
                prepare_session(&client).await?;
                register_session(&client, &self.group_id, &self.member_id).await?;
                client
            }
        };
        Ok(slot.insert(client))
    }
}
