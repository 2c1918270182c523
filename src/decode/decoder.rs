//! From XLogData payloads to [`Change`]s: the synchronous heart of the read path.
//!
//! [`Decoder`] takes each pgoutput message of one connection in order and produces
//! records, with no I/O of its own except spill files:
//!
//! ```text
//! Begin ─ Origin? ─ (Relation | Type | Insert | Update | Delete | Truncate | Message)* ─ Commit
//!   → Record per change (commit LSN and time known from Begin; the last one is held
//!     until the Commit and carries the end LSN too), then Change::Commit
//!
//! Stream Start ─ changes ─ Stream Stop   (repeated, interleaved with other transactions)
//!   → buffered per xid in decode::txn (raw bytes, spilling past the memory bound)
//! Stream Commit → the buffered changes replayed as records, then Change::Commit
//! Stream Abort  → the sub-transaction's (or whole transaction's) changes dropped
//!
//! Message (non-transactional) → a Record of its own, then Change::Commit just past its LSN
//! ```
//!
//! A Relation message whose columns differ from the ones known becomes a schema record
//! (`Op::Schema`) in the open transaction, right before the change that follows it; tuples
//! of a table with a projection are cut down to its columns before the record is made (see
//! `decode::relation`).
//!
//! Relation and Type messages inside a stream block are buffered with the transaction and
//! applied when it is replayed: the server sends them per streamed transaction, and a
//! transaction that aborts must not leave its schema behind in the cache.
//!
//! Replaying a committed streamed transaction can yield millions of records, so output is
//! pulled: after [`Decoder::feed`], call [`Decoder::next_change`] until it returns `None`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::record::{Op, PartitionId, Record, TxnInfo};
use super::relation::{Baseline, PrimaryKeys, Projections, Relation, RelationCache};
use super::txn::{CommittedChanges, StreamedTxns};
use super::types::TypeCatalog;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::protocol::pgoutput::{self, PgOutputDecoder, PgOutputMessage};

/// One unit of output.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Change {
    /// A row change, truncate or logical message.
    Record(Record),
    /// The end of a transaction (or of a non-transactional message): every record of it
    /// has been produced; confirming `end_lsn` acknowledges it.
    Commit {
        /// The transaction.
        txn: Arc<TxnInfo>,
        /// Where the next transaction's data starts.
        end_lsn: Lsn,
        /// How many records it produced.
        records: u64,
    },
}

/// Limits and options for a [`Decoder`].
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    /// Bytes of streamed-transaction changes held in memory before spilling to disk.
    pub memory_limit: usize,
    /// Where spill files go (the system temp dir when `None`).
    pub spill_dir: Option<PathBuf>,
    /// Known user-defined types (domains, enums, their arrays).
    pub types: TypeCatalog,
    /// Primary keys to report as the key of `REPLICA IDENTITY FULL` tables.
    pub primary_keys: PrimaryKeys,
    /// Columns to leave out of each relation's records, by relation id.
    pub projections: Projections,
    /// The relations as the previous connection knew them, by relation id: a first
    /// Relation message with other columns is a schema change (see `decode::relation`).
    pub baseline: Baseline,
    /// The server's `server_encoding` is `UTF8`, so every text value it sends is valid
    /// UTF-8 and the JSON writer need not check it again ([`Relation::text_is_utf8`]).
    /// [`ChangeStream`](crate::stream::ChangeStream) sets it from the connection; leave it
    /// `false` when unsure.
    ///
    /// [`Relation::text_is_utf8`]: super::relation::Relation::text_is_utf8
    pub server_utf8: bool,
    /// The consumer-group partition the records come through, when the group has several:
    /// part of their event ids (`<commit_lsn>:<partition>:<index>`, see
    /// [`EventId`](super::record::EventId)). `None` outside groups of several.
    pub partition: Option<PartitionId>,
    /// The consumer group the records are read for, stamped on each transaction
    /// ([`TxnInfo::group`]) so a record's JSON line names it. The consumer sets it.
    pub group: Option<Arc<str>>,
}

impl Default for DecoderOptions {
    fn default() -> DecoderOptions {
        DecoderOptions {
            memory_limit: 16 * 1024 * 1024,
            spill_dir: None,
            types: TypeCatalog::new(),
            primary_keys: PrimaryKeys::new(),
            projections: Projections::new(),
            baseline: Baseline::new(),
            server_utf8: false,
            partition: None,
            group: None,
        }
    }
}

/// The transaction whose records are being produced.
#[derive(Debug)]
struct Open {
    txn: Arc<TxnInfo>,
    next_index: u64,
}

/// A committed streamed transaction being replayed.
#[derive(Debug)]
struct Replay {
    changes: CommittedChanges,
    end_lsn: Lsn,
}

/// Turns one connection's pgoutput messages into [`Change`]s. Start a new one after a
/// reconnect: the server resends relations and restarts stream state.
#[derive(Debug)]
pub struct Decoder {
    messages: PgOutputDecoder,
    relations: RelationCache,
    streamed: StreamedTxns,
    open: Option<Open>,
    replay: Option<Replay>,
    ready: VecDeque<Change>,
    /// The open transaction's latest record, held until the next one or the Commit: at
    /// the Commit it is marked as the last ([`Record::txn_end`]). Costs no latency: the
    /// walsender sends a transaction's changes only once it committed, Commit right behind.
    held: Option<Record>,
    /// See [`DecoderOptions::partition`].
    partition: Option<PartitionId>,
    /// [`DecoderOptions::group`].
    group: Option<Arc<str>>,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(options: DecoderOptions) -> Decoder {
        Decoder {
            messages: PgOutputDecoder::new(),
            relations: RelationCache::new(options.types)
                .with_primary_keys(options.primary_keys)
                .with_projections(options.projections)
                .with_baseline(options.baseline)
                .with_utf8_text(options.server_utf8),
            streamed: StreamedTxns::new(options.memory_limit, options.spill_dir),
            open: None,
            replay: None,
            ready: VecDeque::new(),
            held: None,
            partition: options.partition,
            group: options.group,
        }
    }

    /// Whether changes are waiting to be taken with [`Decoder::next_change`] (it must return
    /// `None` before the next [`Decoder::feed`]).
    pub fn has_output(&self) -> bool {
        !self.ready.is_empty() || self.replay.is_some()
    }

    /// Whether a (non-streamed) transaction is between its Begin and Commit, or a
    /// committed streamed one is still being replayed.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some() || self.replay.is_some()
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Bytes of streamed changes held in memory.
    pub fn buffered_bytes(&self) -> usize {
        self.streamed.memory_used()
    }

    /// Takes the next XLogData payload. Call [`Decoder::next_change`] until `None` before
    /// feeding the next one.
    ///
    /// # Errors
    /// Malformed bytes, a change for an unknown relation, a protocol sequence violation
    /// (Commit without Begin...), or a spill file failure.
    pub fn feed(&mut self, data: Bytes) -> Result<()> {
        if self.replay.is_some() || !self.ready.is_empty() {
            return Err(Error::protocol(
                "decoder fed before its previous output was drained (a bug in the caller)",
            ));
        }
        // Inside a stream block, data messages are buffered raw, before full decoding, so
        // that spilling needs no re-encoding.
        if let Some(xid) = self.messages.open_stream() {
            let message = self.messages.decode(data.clone())?;
            return match message {
                PgOutputMessage::StreamStop => Ok(()),
                PgOutputMessage::Message(m) if !m.transactional() => self.non_transactional(m),
                other => match stream_subxid(&other) {
                    Some(subxid) => self.streamed.push(xid, subxid, data),
                    None => Err(Error::protocol(format!(
                        "unexpected {} inside a stream block",
                        message_name(&other)
                    ))),
                },
            };
        }
        let message = self.messages.decode(data)?;
        self.handle(message)
    }

    /// The next change produced by what was fed, or `None` when all of it is out.
    ///
    /// # Errors
    /// Reading back a spilled change failed, or a replayed change is malformed.
    pub fn next_change(&mut self) -> Result<Option<Change>> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Ok(Some(change));
            }
            let Some(replay) = self.replay.as_mut() else {
                return Ok(None);
            };
            match replay.changes.next_change()? {
                Some(raw) => {
                    let message = pgoutput::parse(raw, true)?;
                    self.handle(message)?;
                }
                None => {
                    let end_lsn = replay.end_lsn;
                    self.replay = None;
                    self.finish(end_lsn)?;
                }
            }
        }
    }

    fn handle(&mut self, message: PgOutputMessage) -> Result<()> {
        match message {
            PgOutputMessage::Begin(begin) => {
                if self.open.is_some() {
                    return Err(Error::protocol("Begin inside an open transaction"));
                }
                self.open = Some(Open {
                    txn: Arc::new(TxnInfo {
                        xid: Some(begin.xid),
                        commit_lsn: begin.final_lsn,
                        commit_time_micros: Some(begin.commit_time),
                        origin: None,
                        group: self.group.clone(),
                    }),
                    next_index: 0,
                });
            }
            PgOutputMessage::Origin(origin) => {
                let open = self.open_mut("Origin")?;
                Arc::make_mut(&mut open.txn).origin = Some(origin.name);
            }
            PgOutputMessage::Commit(commit) => {
                let commit_lsn = self.open_mut("Commit")?.txn.commit_lsn;
                if commit_lsn != commit.commit_lsn {
                    return Err(Error::protocol(format!(
                        "Commit at {} does not match its Begin's final LSN {commit_lsn}",
                        commit.commit_lsn
                    )));
                }
                self.finish(commit.end_lsn)?;
            }
            PgOutputMessage::Relation(relation) => {
                let applied = self.relations.apply_relation(&relation);
                // A schema change becomes a record of its own, in front of the first change
                // in the new shape (pgoutput sends the Relation message right before it).
                if let (Some(previous), true) = (applied.previous, self.open.is_some()) {
                    let (txn, index) = self.next_index("Relation")?;
                    self.emit(Record::schema(applied.relation, previous, txn, index));
                }
            }
            PgOutputMessage::Type(ty) => self.relations.apply_type(&ty),
            PgOutputMessage::Insert(insert) => {
                let relation = Arc::clone(self.relations.get(insert.relation_id)?);
                let (txn, index) = self.next_index("Insert")?;
                let new = project(&relation, insert.new);
                self.emit(Record::row(
                    Op::Insert,
                    relation,
                    Some(new),
                    None,
                    txn,
                    index,
                ));
            }
            PgOutputMessage::Update(update) => {
                let relation = Arc::clone(self.relations.get(update.relation_id)?);
                let (txn, index) = self.next_index("Update")?;
                let new = project(&relation, update.new);
                let old = update.old.map(|old| project_old(&relation, old));
                self.emit(Record::row(
                    Op::Update,
                    relation,
                    Some(new),
                    old,
                    txn,
                    index,
                ));
            }
            PgOutputMessage::Delete(delete) => {
                let relation = Arc::clone(self.relations.get(delete.relation_id)?);
                let (txn, index) = self.next_index("Delete")?;
                let old = project_old(&relation, delete.old);
                self.emit(Record::row(
                    Op::Delete,
                    relation,
                    None,
                    Some(old),
                    txn,
                    index,
                ));
            }
            PgOutputMessage::Truncate(truncate) => {
                for id in &truncate.relation_ids {
                    let relation = Arc::clone(self.relations.get(*id)?);
                    let (txn, index) = self.next_index("Truncate")?;
                    self.emit(Record::truncate(
                        relation,
                        truncate.cascade(),
                        truncate.restart_identity(),
                        txn,
                        index,
                    ));
                }
            }
            PgOutputMessage::Message(m) if !m.transactional() => self.non_transactional(m)?,
            PgOutputMessage::Message(m) => {
                let (txn, index) = self.next_index("Message")?;
                self.emit(Record::message(m.prefix, m.content, txn, index));
            }
            PgOutputMessage::StreamStart(_) | PgOutputMessage::StreamStop => {}
            PgOutputMessage::StreamCommit(commit) => {
                if self.open.is_some() {
                    return Err(Error::protocol("Stream Commit inside an open transaction"));
                }
                let changes = self.streamed.commit(commit.xid)?;
                self.open = Some(Open {
                    txn: Arc::new(TxnInfo {
                        xid: Some(commit.xid),
                        commit_lsn: commit.commit_lsn,
                        commit_time_micros: Some(commit.commit_time),
                        origin: None,
                        group: self.group.clone(),
                    }),
                    next_index: 0,
                });
                self.replay = Some(Replay {
                    changes,
                    end_lsn: commit.end_lsn,
                });
            }
            PgOutputMessage::StreamAbort(abort) => self.streamed.abort(abort.xid, abort.subxid),
            other => {
                return Err(Error::protocol(format!(
                    "{} received, but this stream never asked for two-phase decoding",
                    message_name(&other)
                )))
            }
        }
        Ok(())
    }

    /// A non-transactional logical message: delivered at once, as a one-record
    /// transaction of its own at the message's LSN.
    fn non_transactional(&mut self, m: pgoutput::LogicalMessage) -> Result<()> {
        let txn = Arc::new(TxnInfo {
            xid: None,
            commit_lsn: m.lsn,
            commit_time_micros: None,
            origin: None,
            group: self.group.clone(),
        });
        // pgoutput reports a non-transactional message at the *end* of its WAL record (the
        // LSN `pg_logical_emit_message` returns), which is where the next record starts —
        // possibly another transaction's commit record. The server skips the message when
        // its record *starts* below the start position, so confirming its reported LSN
        // excludes it and keeps a transaction committing right there; one byte more would
        // skip that transaction.
        let end_lsn = m.lsn;
        let mut record = Record::message(m.prefix, m.content, Arc::clone(&txn), 0);
        record.set_txn_end(end_lsn);
        record.set_partition(self.partition);
        // Whatever came before it goes out before it.
        if let Some(held) = self.held.take() {
            self.ready.push_back(Change::Record(held));
        }
        self.ready.push_back(Change::Record(record));
        self.ready.push_back(Change::Commit {
            txn,
            end_lsn,
            records: 1,
        });
        Ok(())
    }

    fn open_mut(&mut self, what: &str) -> Result<&mut Open> {
        self.open
            .as_mut()
            .ok_or_else(|| Error::protocol(format!("{what} outside a transaction")))
    }

    fn next_index(&mut self, what: &str) -> Result<(Arc<TxnInfo>, u64)> {
        let open = self.open_mut(what)?;
        let index = open.next_index;
        open.next_index += 1;
        Ok((Arc::clone(&open.txn), index))
    }

    /// Queues the record held back and holds `record` in its place (see `held`).
    fn emit(&mut self, mut record: Record) {
        record.set_partition(self.partition);
        if let Some(previous) = self.held.replace(record) {
            self.ready.push_back(Change::Record(previous));
        }
    }

    fn finish(&mut self, end_lsn: Lsn) -> Result<()> {
        let open = self
            .open
            .take()
            .ok_or_else(|| Error::protocol("Commit without Begin"))?;
        if let Some(mut last) = self.held.take() {
            last.set_txn_end(end_lsn);
            self.ready.push_back(Change::Record(last));
        }
        self.ready.push_back(Change::Commit {
            txn: open.txn,
            end_lsn,
            records: open.next_index,
        });
        Ok(())
    }
}

/// `tuple` cut down to the columns `relation` keeps (see `decode::relation`).
fn project(relation: &Relation, tuple: pgoutput::TupleData) -> pgoutput::TupleData {
    match relation.kept() {
        Some(kept) => tuple.project(kept),
        None => tuple,
    }
}

/// An old tuple cut down like [`project`].
fn project_old(relation: &Relation, old: pgoutput::OldTuple) -> pgoutput::OldTuple {
    match old {
        pgoutput::OldTuple::Key(t) => pgoutput::OldTuple::Key(project(relation, t)),
        pgoutput::OldTuple::Full(t) => pgoutput::OldTuple::Full(project(relation, t)),
    }
}

/// The (sub-)transaction xid a data message carries inside a stream block.
fn stream_subxid(message: &PgOutputMessage) -> Option<u32> {
    match message {
        PgOutputMessage::Relation(m) => m.xid,
        PgOutputMessage::Type(m) => m.xid,
        PgOutputMessage::Insert(m) => m.xid,
        PgOutputMessage::Update(m) => m.xid,
        PgOutputMessage::Delete(m) => m.xid,
        PgOutputMessage::Truncate(m) => m.xid,
        PgOutputMessage::Message(m) => m.xid,
        _ => None,
    }
}

fn message_name(message: &PgOutputMessage) -> &'static str {
    match message {
        PgOutputMessage::Begin(_) => "Begin",
        PgOutputMessage::Commit(_) => "Commit",
        PgOutputMessage::Origin(_) => "Origin",
        PgOutputMessage::Relation(_) => "Relation",
        PgOutputMessage::Type(_) => "Type",
        PgOutputMessage::Insert(_) => "Insert",
        PgOutputMessage::Update(_) => "Update",
        PgOutputMessage::Delete(_) => "Delete",
        PgOutputMessage::Truncate(_) => "Truncate",
        PgOutputMessage::Message(_) => "Message",
        PgOutputMessage::StreamStart(_) => "Stream Start",
        PgOutputMessage::StreamStop => "Stream Stop",
        PgOutputMessage::StreamCommit(_) => "Stream Commit",
        PgOutputMessage::StreamAbort(_) => "Stream Abort",
        PgOutputMessage::BeginPrepare(_) => "Begin Prepare",
        PgOutputMessage::Prepare(_) => "Prepare",
        PgOutputMessage::CommitPrepared(_) => "Commit Prepared",
        PgOutputMessage::RollbackPrepared(_) => "Rollback Prepared",
        PgOutputMessage::StreamPrepare(_) => "Stream Prepare",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a captured scenario (`tests/data/pgoutput/<version>/<scenario>-NNNN-<tag>.bin`)
    /// and returns everything the decoder produced.
    fn decode_capture(version: &str, scenario: &str) -> Vec<Change> {
        decode_capture_with(version, scenario, DecoderOptions::default())
    }

    fn decode_capture_with(version: &str, scenario: &str, options: DecoderOptions) -> Vec<Change> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pgoutput")
            .join(version);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(&format!("{scenario}-")) && n.ends_with(".bin"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no capture {version}/{scenario}");
        let mut decoder = Decoder::new(options);
        let mut out = Vec::new();
        for name in files {
            let body = std::fs::read(dir.join(&name)).unwrap();
            decoder
                .feed(Bytes::from(body))
                .unwrap_or_else(|e| panic!("{version}/{name}: {e}"));
            while let Some(change) = decoder.next_change().unwrap() {
                out.push(change);
            }
        }
        assert!(
            !decoder.in_transaction(),
            "{version}/{scenario} ends inside a transaction"
        );
        out
    }

    #[test]
    fn the_last_record_of_each_transaction_carries_its_end_and_only_it() {
        for version in ["pg15", "pg18"] {
            for scenario in [
                "basic", "full", "toast", "truncate", "message", "origin", "stream",
            ] {
                let mut since_commit: Vec<Record> = Vec::new();
                let mut transactions = 0;
                for change in decode_capture(version, scenario) {
                    match change {
                        Change::Record(record) => since_commit.push(record),
                        Change::Commit {
                            end_lsn, records, ..
                        } => {
                            let case = format!("{version}/{scenario} txn ending {end_lsn}");
                            assert_eq!(since_commit.len() as u64, records, "{case}");
                            if let Some((last, rest)) = since_commit.split_last() {
                                assert_eq!(last.txn_end(), Some(end_lsn), "{case}");
                                assert!(rest.iter().all(|r| r.txn_end().is_none()), "{case}");
                                // Held back, not reordered.
                                let indexes: Vec<u64> =
                                    since_commit.iter().map(Record::index).collect();
                                let expected: Vec<u64> = (0..records).collect();
                                assert_eq!(indexes, expected, "{case}");
                            }
                            since_commit.clear();
                            transactions += 1;
                        }
                    }
                }
                assert!(
                    since_commit.is_empty(),
                    "{version}/{scenario}: records after the last commit"
                );
                assert!(transactions > 0, "{version}/{scenario}: no transaction");
            }
        }
    }

    #[test]
    fn records_carry_the_partition_of_their_event_ids() {
        for (partition, shape) in [(None, 2), (Some(PartitionId::new(3)), 3)] {
            for scenario in ["basic", "message", "stream"] {
                let options = DecoderOptions {
                    partition,
                    ..DecoderOptions::default()
                };
                for change in decode_capture_with("pg15", scenario, options) {
                    let Change::Record(record) = change else {
                        continue;
                    };
                    let id = record.event_id();
                    assert_eq!(id.partition, partition, "{scenario}");
                    assert_eq!(id.to_string().split(':').count(), shape, "{id}");
                }
            }
        }
    }
}
