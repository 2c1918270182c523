//! The messages of PostgreSQL's built-in `pgoutput` logical decoding plugin, protocol
//! versions 1 to 4 (PostgreSQL docs: "Logical Replication Message Formats").
//!
//! On a replication stream each XLogData payload ([`super::replication::XLogData::data`])
//! is exactly one message: a tag byte, then fixed fields. The messages of one transaction
//! come as `Begin`, then `Relation`/`Type` descriptions and row changes, then `Commit`.
//!
//! ## Streaming needs one bit of state
//!
//! With `streaming 'on'` (protocol ≥ 2) the server sends a large transaction before it
//! commits, in blocks: `Stream Start` … changes … `Stream Stop`, repeated, then
//! `Stream Commit` or `Stream Abort`. Inside a block the data messages (Relation, Type,
//! Insert, Update, Delete, Truncate, Message) carry an extra leading `xid` — the
//! (sub-)transaction the change belongs to — and nothing else in the message says so.
//! Their layout therefore depends on whether a block is open, so [`parse`] takes that as a
//! parameter and [`PgOutputDecoder`] tracks it from `Stream Start`/`Stop` for the caller
//! (and rejects an unbalanced start or stop, which would mean the two sides disagree about
//! the layout of everything that follows). Keeping [`parse`] stateless keeps it fuzzable
//! and usable on captured single messages.
//!
//! `Stream Abort` gained the abort LSN and time in protocol 4, but only when
//! `streaming 'parallel'` was negotiated. Because a message is always the whole XLogData
//! payload, its length tells which form arrived (8 or 24 bytes after the tag), so the parser
//! needs no option for it and cannot be configured wrongly.
//!
//! ## Tuples are lazy and zero-copy
//!
//! Row images ([`TupleData`]) are validated once when the message is parsed and kept as
//! one [`Bytes`] slice of the payload; [`TupleData::iter`] then walks the columns without
//! allocating, yielding borrowed slices of the text or binary values. Each column is `n`
//! (null), `u` (an unchanged TOASTed value, which is *not* sent — fill it from a full old
//! tuple when there is one), `t` (text format) or `b` (binary format).
//!
//! Every count and length is checked against the bytes that remain before it is used,
//! names must be UTF-8 (the server sends them in the database encoding; a non-UTF-8 name
//! is an error, not a panic), and an unknown tag is [`DecodeError::UnknownTag`].

use std::fmt;

use bytes::Bytes;

use super::reader::Reader;
use super::DecodeError;
use crate::Lsn;

/// A transaction id (`TransactionId`, 32 bits on the wire).
pub type Xid = u32;
/// An object id (`Oid`): a relation's or a type's.
pub type Oid = u32;

/// Message tags (first byte of each message).
pub mod tag {
    /// Begin.
    pub const BEGIN: u8 = b'B';
    /// Commit.
    pub const COMMIT: u8 = b'C';
    /// Origin.
    pub const ORIGIN: u8 = b'O';
    /// Relation.
    pub const RELATION: u8 = b'R';
    /// Type.
    pub const TYPE: u8 = b'Y';
    /// Insert.
    pub const INSERT: u8 = b'I';
    /// Update.
    pub const UPDATE: u8 = b'U';
    /// Delete.
    pub const DELETE: u8 = b'D';
    /// Truncate.
    pub const TRUNCATE: u8 = b'T';
    /// Logical decoding message (`pg_logical_emit_message`).
    pub const MESSAGE: u8 = b'M';
    /// Stream Start (protocol ≥ 2).
    pub const STREAM_START: u8 = b'S';
    /// Stream Stop (protocol ≥ 2).
    pub const STREAM_STOP: u8 = b'E';
    /// Stream Commit (protocol ≥ 2).
    pub const STREAM_COMMIT: u8 = b'c';
    /// Stream Abort (protocol ≥ 2).
    pub const STREAM_ABORT: u8 = b'A';
    /// Begin Prepare (protocol ≥ 3, two-phase).
    pub const BEGIN_PREPARE: u8 = b'b';
    /// Prepare (protocol ≥ 3, two-phase).
    pub const PREPARE: u8 = b'P';
    /// Commit Prepared (protocol ≥ 3, two-phase).
    pub const COMMIT_PREPARED: u8 = b'K';
    /// Rollback Prepared (protocol ≥ 3, two-phase).
    pub const ROLLBACK_PREPARED: u8 = b'r';
    /// Stream Prepare (protocol ≥ 3, two-phase and streaming).
    pub const STREAM_PREPARE: u8 = b'p';
}

/// Markers in front of a tuple in Insert, Update and Delete.
pub mod tuple_marker {
    /// The new row.
    pub const NEW: u8 = b'N';
    /// The old row's replica identity key columns (others are null).
    pub const OLD_KEY: u8 = b'K';
    /// The whole old row (`REPLICA IDENTITY FULL`).
    pub const OLD_FULL: u8 = b'O';
}

/// Kinds of a column inside tuple data.
pub mod column_kind {
    /// SQL NULL.
    pub const NULL: u8 = b'n';
    /// An unchanged TOASTed value, not sent.
    pub const UNCHANGED_TOAST: u8 = b'u';
    /// A value in text format.
    pub const TEXT: u8 = b't';
    /// A value in binary format (`binary 'true'`).
    pub const BINARY: u8 = b'b';
}

/// Flag bits in messages.
pub mod flags {
    /// Relation column flag: the column is part of the replica identity key.
    pub const COLUMN_KEY: u8 = 1;
    /// Truncate option: `CASCADE`.
    pub const TRUNCATE_CASCADE: u8 = 1;
    /// Truncate option: `RESTART IDENTITY`.
    pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;
    /// Message flag: emitted transactionally.
    pub const MESSAGE_TRANSACTIONAL: u8 = 1;
}

/// The highest pgoutput `proto_version` a server accepts, from its `server_version_num`
/// (e.g. `150004`): 1 before 14, 2 on 14 (streaming), 3 on 15 (two-phase), 4 from 16 on
/// (parallel streaming).
pub const fn max_protocol_version(server_version_num: u32) -> u32 {
    match server_version_num {
        0..=139_999 => 1,
        140_000..=149_999 => 2,
        150_000..=159_999 => 3,
        _ => 4,
    }
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgOutputMessage {
    /// A transaction starts.
    Begin(Begin),
    /// A transaction committed.
    Commit(Commit),
    /// The transaction came from another node through replication origin `name`.
    Origin(Origin),
    /// A relation's description; precedes its first change on a connection and follows
    /// every schema change.
    Relation(Relation),
    /// A non-built-in type's name (enums, domains, composites...).
    Type(TypeMessage),
    /// A row was inserted.
    Insert(Insert),
    /// A row was updated.
    Update(Update),
    /// A row was deleted.
    Delete(Delete),
    /// Tables were truncated.
    Truncate(Truncate),
    /// A `pg_logical_emit_message` call.
    Message(LogicalMessage),
    /// A block of a streamed in-progress transaction starts.
    StreamStart(StreamStart),
    /// The current stream block ends.
    StreamStop,
    /// A streamed transaction committed.
    StreamCommit(StreamCommit),
    /// A streamed transaction, or one of its sub-transactions, aborted.
    StreamAbort(StreamAbort),
    /// A prepared (two-phase) transaction starts.
    BeginPrepare(BeginPrepare),
    /// The transaction was prepared (`PREPARE TRANSACTION`).
    Prepare(Prepare),
    /// A prepared transaction committed (`COMMIT PREPARED`).
    CommitPrepared(CommitPrepared),
    /// A prepared transaction rolled back (`ROLLBACK PREPARED`).
    RollbackPrepared(RollbackPrepared),
    /// A streamed transaction was prepared.
    StreamPrepare(Prepare),
}

/// Begin (`B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the commit record (the transaction's final LSN).
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
    /// The transaction id.
    pub xid: Xid,
}

/// Commit (`C`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Flags (currently always 0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record: where the next transaction's data starts; the
    /// position to confirm once this transaction is processed.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
}

/// Origin (`O`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit's LSN on the origin server.
    pub commit_lsn: Lsn,
    /// The replication origin's name.
    pub name: String,
}

/// A relation's replica identity (`pg_class.relreplident`): what an Update or Delete says
/// about the old row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplicaIdentity {
    /// `d`: the primary key (old key sent when it changes, and on delete).
    Default,
    /// `n`: nothing (no old row information).
    Nothing,
    /// `f`: the full old row.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The `relreplident` byte.
    pub const fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<ReplicaIdentity, DecodeError> {
        Ok(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            other => {
                return Err(DecodeError::UnknownTag {
                    family: "replica identity",
                    tag: other,
                })
            }
        })
    }
}

/// Relation (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// The relation's OID; changes refer to it.
    pub id: Oid,
    /// Schema name (`pg_catalog` when the server sent the empty string it uses for it).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags; see [`RelationColumn::is_key`].
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// The column's type OID.
    pub type_oid: Oid,
    /// The type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column is part of the replica identity key (every column under
    /// `REPLICA IDENTITY FULL`).
    pub const fn is_key(&self) -> bool {
        self.flags & flags::COLUMN_KEY != 0
    }
}

/// Type (`Y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// The type's OID.
    pub id: Oid,
    /// Schema name (`pg_catalog` when the server sent the empty string).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// Insert (`I`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// The relation's OID.
    pub relation_id: Oid,
    /// The new row.
    pub new: TupleData,
}

/// Update (`U`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// The relation's OID.
    pub relation_id: Oid,
    /// The old row: its key when the key changed (DEFAULT / USING INDEX identity), all of
    /// it under FULL identity, else nothing.
    pub old: Option<OldTuple>,
    /// The new row. Unchanged TOASTed columns are [`TupleColumn::UnchangedToast`].
    pub new: TupleData,
}

/// Delete (`D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// The relation's OID.
    pub relation_id: Oid,
    /// The deleted row: its key, or all of it under FULL identity.
    pub old: OldTuple,
}

/// The old row of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity key columns; the other columns are null.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind.
    pub fn data(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// Truncate (`T`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// Option bits: [`flags::TRUNCATE_CASCADE`], [`flags::TRUNCATE_RESTART_IDENTITY`].
    pub options: u8,
    /// The truncated relations (a `TRUNCATE ... CASCADE` lists the cascaded ones too).
    pub relation_ids: Vec<Oid>,
}

impl Truncate {
    /// `TRUNCATE ... CASCADE`.
    pub const fn cascade(&self) -> bool {
        self.options & flags::TRUNCATE_CASCADE != 0
    }

    /// `TRUNCATE ... RESTART IDENTITY`.
    pub const fn restart_identity(&self) -> bool {
        self.options & flags::TRUNCATE_RESTART_IDENTITY != 0
    }
}

/// Message (`M`), from `pg_logical_emit_message(transactional, prefix, content)`.
///
/// A non-transactional message is sent when decoding reaches it, outside any transaction
/// (no Begin/Commit around it) — the ordering a watermark relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage {
    /// The streamed (sub-)transaction, inside a stream block only.
    pub xid: Option<Xid>,
    /// Flags; see [`LogicalMessage::transactional`].
    pub flags: u8,
    /// The message's LSN.
    pub lsn: Lsn,
    /// The prefix given by the caller.
    pub prefix: String,
    /// The content, zero-copy (any bytes).
    pub content: Bytes,
}

impl LogicalMessage {
    /// Whether it was emitted transactionally (delivered with its transaction's changes).
    pub const fn transactional(&self) -> bool {
        self.flags & flags::MESSAGE_TRANSACTIONAL != 0
    }
}

/// Stream Start (`S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    /// The top-level transaction being streamed.
    pub xid: Xid,
    /// This is the transaction's first block.
    pub first_segment: bool,
}

/// Stream Commit (`c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// The top-level transaction.
    pub xid: Xid,
    /// Flags (currently always 0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record; the position to confirm.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
}

/// Stream Abort (`A`).
///
/// When `subxid == xid` the whole transaction aborted; otherwise only that
/// sub-transaction's changes (`ROLLBACK TO SAVEPOINT`) are void.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction.
    pub xid: Xid,
    /// The aborted (sub-)transaction.
    pub subxid: Xid,
    /// The abort's LSN (protocol 4 with `streaming 'parallel'` only).
    pub abort_lsn: Option<Lsn>,
    /// Abort time, microseconds since 2000-01-01 UTC (as `abort_lsn`).
    pub abort_time: Option<i64>,
}

impl StreamAbort {
    /// Whether the whole transaction aborted (not just a sub-transaction).
    pub const fn is_top_level(&self) -> bool {
        self.xid == self.subxid
    }
}

/// Begin Prepare (`b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// The transaction id.
    pub xid: Xid,
    /// The global transaction identifier given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// Prepare (`P`) and Stream Prepare (`p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Flags (currently always 0).
    pub flags: u8,
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// The transaction id.
    pub xid: Xid,
    /// The global transaction identifier.
    pub gid: String,
}

/// Commit Prepared (`K`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Flags (currently always 0).
    pub flags: u8,
    /// The LSN of the commit-prepared record.
    pub commit_lsn: Lsn,
    /// Its end; the position to confirm.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
    /// The transaction id.
    pub xid: Xid,
    /// The global transaction identifier.
    pub gid: String,
}

/// Rollback Prepared (`r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Flags (currently always 0).
    pub flags: u8,
    /// The end LSN of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// The end LSN of the rollback.
    pub rollback_end_lsn: Lsn,
    /// Prepare time, microseconds since 2000-01-01 UTC.
    pub prepare_time: i64,
    /// Rollback time, microseconds since 2000-01-01 UTC.
    pub rollback_time: i64,
    /// The transaction id.
    pub xid: Xid,
    /// The global transaction identifier.
    pub gid: String,
}

/// A row image: the columns of a tuple, validated, kept as one zero-copy slice.
///
/// Columns are in the order of the relation's columns ([`Relation::columns`]).
#[derive(Clone, PartialEq, Eq)]
pub struct TupleData {
    /// The column entries (after the column count), exactly `len` of them.
    raw: Bytes,
    /// The column count (an `Int16` on the wire). Narrower than `usize` so that a
    /// [`Record`](crate::decode::record::Record) fits in 128 bytes and moves without a
    /// `memcpy` call (three moves per change on the way out of the decoder).
    len: u32,
    /// Whether any column is an unchanged TOAST value (noted while validating, so that
    /// the common case needs no second walk).
    unchanged_toast: bool,
}

/// One column of a [`TupleData`], borrowing the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TupleColumn<'a> {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value: the server did not send it. The value is whatever the
    /// row held before; a full old tuple (REPLICA IDENTITY FULL) carries it.
    UnchangedToast,
    /// A value in text format (the type's output function), as bytes in the database
    /// encoding.
    Text(&'a [u8]),
    /// A value in binary format (the type's send function).
    Binary(&'a [u8]),
}

/// Iterator over the columns of a [`TupleData`].
#[derive(Debug, Clone)]
pub struct TupleColumns<'a> {
    buf: &'a [u8],
    left: usize,
}

impl TupleData {
    /// Number of columns.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any column is an unchanged TOAST value ([`TupleColumn::UnchangedToast`]).
    pub fn has_unchanged_toast(&self) -> bool {
        self.unchanged_toast
    }

    /// Bytes of column data as sent (kinds, lengths and values).
    pub fn byte_len(&self) -> usize {
        self.raw.len()
    }

    /// The columns, in order, without allocating.
    pub fn iter(&self) -> TupleColumns<'_> {
        TupleColumns {
            buf: &self.raw,
            left: self.len as usize,
        }
    }

    /// The column at `index` (walks the columns before it), or `None` past the end.
    pub fn get(&self, index: usize) -> Option<TupleColumn<'_>> {
        self.iter().nth(index)
    }

    /// A value slice obtained from [`TupleData::iter`] as an owned zero-copy [`Bytes`]
    /// (sharing this tuple's buffer); `None` if `value` does not point into this tuple.
    pub fn to_bytes(&self, value: &[u8]) -> Option<Bytes> {
        let base = self.raw.as_ptr() as usize;
        let start = (value.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(value.len())?;
        (end <= self.raw.len()).then(|| self.raw.slice(start..end))
    }

    /// The encoded column entries (everything after the column count).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The column entries as one `str`, when they are UTF-8: one validation for the whole
    /// tuple instead of one per value (a value's text is then a slice of it; see
    /// `decode::record::Image::iter`). `None` when a value is not UTF-8 — or when a length
    /// prefix is not (a value's length with a byte of 0x80 or more, as some of 128 bytes
    /// and longer have), although the values may be: then each value is checked on its
    /// own, after this scan stopped at that length.
    pub(crate) fn as_utf8(&self) -> Option<&str> {
        std::str::from_utf8(&self.raw).ok()
    }

    /// The same tuple with only the columns whose entry in `keep` is true (columns past the
    /// end of `keep` are kept). The kept entries are copied into a buffer of their own, so
    /// the result holds no byte of a dropped column: projection removes a value, it does
    /// not hide it.
    pub fn project(&self, keep: &[bool]) -> TupleData {
        let mut raw = Vec::with_capacity(self.raw.len());
        let mut len = 0;
        let mut unchanged_toast = false;
        let mut buf = &self.raw[..];
        for i in 0..self.len() {
            // Validated when the tuple was read; stop rather than panic if not.
            let Ok((column, rest)) = next_column(buf) else {
                break;
            };
            if keep.get(i).copied().unwrap_or(true) {
                raw.extend_from_slice(&buf[..buf.len() - rest.len()]);
                len += 1;
                unchanged_toast |= column == TupleColumn::UnchangedToast;
            }
            buf = rest;
        }
        TupleData {
            raw: Bytes::from(raw),
            len,
            unchanged_toast,
        }
    }

    /// Tuple data holding `values` as text columns (`None` for NULL), encoded exactly as
    /// pgoutput encodes them: rows read by SQL (backfill) then decode like streamed ones.
    pub fn from_text<'v>(values: impl IntoIterator<Item = Option<&'v [u8]>>) -> TupleData {
        let mut raw = Vec::new();
        let mut len: u32 = 0;
        for value in values {
            len = len.saturating_add(1);
            match value {
                None => raw.push(column_kind::NULL),
                Some(v) => {
                    raw.push(column_kind::TEXT);
                    // A value longer than i32::MAX cannot come out of PostgreSQL (1 GB limit).
                    let n = i32::try_from(v.len()).unwrap_or(i32::MAX);
                    raw.extend_from_slice(&n.to_be_bytes());
                    raw.extend_from_slice(v);
                }
            }
        }
        TupleData {
            raw: Bytes::from(raw),
            len,
            unchanged_toast: false,
        }
    }
}

impl fmt::Debug for TupleData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = TupleColumn<'a>;
    type IntoIter = TupleColumns<'a>;

    fn into_iter(self) -> TupleColumns<'a> {
        self.iter()
    }
}

impl<'a> TupleColumn<'a> {
    /// The text value, if this is a text column.
    pub fn as_text(&self) -> Option<&'a [u8]> {
        match *self {
            TupleColumn::Text(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the column is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, TupleColumn::Null)
    }
}

impl fmt::Debug for TupleColumn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TupleColumn::Null => f.write_str("Null"),
            TupleColumn::UnchangedToast => f.write_str("UnchangedToast"),
            TupleColumn::Text(v) => f
                .debug_tuple("Text")
                .field(&String::from_utf8_lossy(v))
                .finish(),
            TupleColumn::Binary(v) => f.debug_tuple("Binary").field(v).finish(),
        }
    }
}

impl<'a> Iterator for TupleColumns<'a> {
    type Item = TupleColumn<'a>;

    // Inlined into the image walks of `decode` (a call per column was a tenth of the
    // typed path's instructions).
    #[inline]
    fn next(&mut self) -> Option<TupleColumn<'a>> {
        if self.left == 0 {
            return None;
        }
        // The tuple was validated by `scan_tuple`, so this cannot fail; if it somehow
        // did, end the iteration rather than panic.
        match next_column(self.buf) {
            Ok((column, rest)) => {
                self.buf = rest;
                self.left -= 1;
                Some(column)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for TupleColumns<'_> {}

impl std::iter::FusedIterator for TupleColumns<'_> {}

/// Reads one column entry off the front of `buf`.
///
/// Works on a borrowed slice rather than through [`Reader`] because it runs for every
/// column of every row twice (validation, then iteration) and must not touch the
/// reference count of the shared buffer.
#[inline(always)]
fn next_column(buf: &[u8]) -> Result<(TupleColumn<'_>, &[u8]), DecodeError> {
    let (&kind, rest) = buf.split_first().ok_or(DecodeError::Truncated {
        what: "tuple column kind",
        needed: 1,
        remaining: 0,
    })?;
    match kind {
        column_kind::NULL => Ok((TupleColumn::Null, rest)),
        column_kind::UNCHANGED_TOAST => Ok((TupleColumn::UnchangedToast, rest)),
        column_kind::TEXT | column_kind::BINARY => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(DecodeError::Truncated {
                    what: "tuple column length",
                    needed: 4,
                    remaining: rest.len(),
                })?;
            let len = i32::from_be_bytes(*len);
            let len = usize::try_from(len).map_err(|_| DecodeError::BadLength {
                what: "tuple column length",
                value: i64::from(len),
            })?;
            if rest.len() < len {
                return Err(DecodeError::Truncated {
                    what: "tuple column value",
                    needed: len,
                    remaining: rest.len(),
                });
            }
            let (value, rest) = rest.split_at(len);
            let column = if kind == column_kind::TEXT {
                TupleColumn::Text(value)
            } else {
                TupleColumn::Binary(value)
            };
            Ok((column, rest))
        }
        other => Err(DecodeError::UnknownTag {
            family: "tuple column kind",
            tag: other,
        }),
    }
}

/// Reads tuple data (`Int16` column count, then the columns), validating every column.
fn read_tuple(r: &mut Reader) -> Result<TupleData, DecodeError> {
    let len = r.count16("tuple column count")?;
    let mut rest = r.rest();
    let mut buf = &rest[..];
    let mut unchanged_toast = false;
    for _ in 0..len {
        let (column, next) = next_column(buf)?;
        unchanged_toast |= column == TupleColumn::UnchangedToast;
        buf = next;
    }
    let consumed = rest.len() - buf.len();
    let raw = rest.split_to(consumed);
    *r = Reader::new(rest);
    Ok(TupleData {
        raw,
        // From an `Int16`: fits.
        len: u32::try_from(len).unwrap_or(u32::MAX),
        unchanged_toast,
    })
}

/// Reads the marker in front of a tuple and checks it is one of `allowed`.
fn read_marker(r: &mut Reader, allowed: &[u8]) -> Result<u8, DecodeError> {
    let marker = r.u8("tuple marker")?;
    if allowed.contains(&marker) {
        Ok(marker)
    } else {
        Err(DecodeError::UnknownTag {
            family: "tuple marker",
            tag: marker,
        })
    }
}

fn read_old(r: &mut Reader, marker: u8) -> Result<OldTuple, DecodeError> {
    let tuple = read_tuple(r)?;
    Ok(if marker == tuple_marker::OLD_FULL {
        OldTuple::Full(tuple)
    } else {
        OldTuple::Key(tuple)
    })
}

/// A schema name; pgoutput sends `pg_catalog` as the empty string.
fn read_namespace(r: &mut Reader, what: &'static str) -> Result<String, DecodeError> {
    let ns = r.cstr(what)?;
    Ok(if ns.is_empty() {
        "pg_catalog".to_owned()
    } else {
        ns
    })
}

fn read_lsn(r: &mut Reader, what: &'static str) -> Result<Lsn, DecodeError> {
    r.u64(what).map(Lsn::new)
}

/// Parses one pgoutput message (one XLogData payload).
///
/// `in_stream` says whether a stream block (`Stream Start` … `Stream Stop`) is open, in
/// which case the data messages carry a leading xid (see the module docs).
/// [`PgOutputDecoder`] tracks it for you.
///
/// # Errors
/// [`DecodeError::UnknownTag`] for an unknown message tag, tuple marker, column kind or
/// replica identity; [`DecodeError::Truncated`] / [`DecodeError::UnterminatedString`] when
/// the message ends early; [`DecodeError::BadLength`] for a negative count or length;
/// [`DecodeError::InvalidUtf8`] for a name that is not UTF-8;
/// [`DecodeError::TrailingBytes`] when bytes follow the message.
pub fn parse(body: Bytes, in_stream: bool) -> Result<PgOutputMessage, DecodeError> {
    let mut r = Reader::new(body);
    let tag = r.u8("pgoutput message tag")?;
    let stream_xid = |r: &mut Reader| -> Result<Option<Xid>, DecodeError> {
        if in_stream {
            r.u32("streamed transaction id").map(Some)
        } else {
            Ok(None)
        }
    };
    let (msg, what) = match tag {
        tag::BEGIN => (
            PgOutputMessage::Begin(Begin {
                final_lsn: read_lsn(&mut r, "begin final lsn")?,
                commit_time: r.i64("begin commit time")?,
                xid: r.u32("begin xid")?,
            }),
            "begin message",
        ),
        tag::COMMIT => (
            PgOutputMessage::Commit(Commit {
                flags: r.u8("commit flags")?,
                commit_lsn: read_lsn(&mut r, "commit lsn")?,
                end_lsn: read_lsn(&mut r, "commit end lsn")?,
                commit_time: r.i64("commit time")?,
            }),
            "commit message",
        ),
        tag::ORIGIN => (
            PgOutputMessage::Origin(Origin {
                commit_lsn: read_lsn(&mut r, "origin commit lsn")?,
                name: r.cstr("origin name")?,
            }),
            "origin message",
        ),
        tag::RELATION => {
            let xid = stream_xid(&mut r)?;
            (
                PgOutputMessage::Relation(read_relation(&mut r, xid)?),
                "relation message",
            )
        }
        tag::TYPE => (
            PgOutputMessage::Type(TypeMessage {
                xid: stream_xid(&mut r)?,
                id: r.u32("type oid")?,
                namespace: read_namespace(&mut r, "type namespace")?,
                name: r.cstr("type name")?,
            }),
            "type message",
        ),
        tag::INSERT => {
            let xid = stream_xid(&mut r)?;
            let relation_id = r.u32("insert relation id")?;
            read_marker(&mut r, &[tuple_marker::NEW])?;
            let new = read_tuple(&mut r)?;
            (
                PgOutputMessage::Insert(Insert {
                    xid,
                    relation_id,
                    new,
                }),
                "insert message",
            )
        }
        tag::UPDATE => {
            let xid = stream_xid(&mut r)?;
            let relation_id = r.u32("update relation id")?;
            let marker = read_marker(
                &mut r,
                &[
                    tuple_marker::OLD_KEY,
                    tuple_marker::OLD_FULL,
                    tuple_marker::NEW,
                ],
            )?;
            let old = if marker == tuple_marker::NEW {
                None
            } else {
                let old = read_old(&mut r, marker)?;
                read_marker(&mut r, &[tuple_marker::NEW])?;
                Some(old)
            };
            let new = read_tuple(&mut r)?;
            (
                PgOutputMessage::Update(Update {
                    xid,
                    relation_id,
                    old,
                    new,
                }),
                "update message",
            )
        }
        tag::DELETE => {
            let xid = stream_xid(&mut r)?;
            let relation_id = r.u32("delete relation id")?;
            let marker = read_marker(&mut r, &[tuple_marker::OLD_KEY, tuple_marker::OLD_FULL])?;
            let old = read_old(&mut r, marker)?;
            (
                PgOutputMessage::Delete(Delete {
                    xid,
                    relation_id,
                    old,
                }),
                "delete message",
            )
        }
        tag::TRUNCATE => {
            let xid = stream_xid(&mut r)?;
            let n = r.i32("truncate relation count")?;
            let options = r.u8("truncate options")?;
            // Each id is four bytes: a count the message cannot hold is refused before
            // anything is allocated for it.
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= r.remaining() / 4)
                .ok_or(DecodeError::BadLength {
                    what: "truncate relation count",
                    value: i64::from(n),
                })?;
            let mut relation_ids = Vec::with_capacity(n);
            for _ in 0..n {
                relation_ids.push(r.u32("truncate relation id")?);
            }
            (
                PgOutputMessage::Truncate(Truncate {
                    xid,
                    options,
                    relation_ids,
                }),
                "truncate message",
            )
        }
        tag::MESSAGE => {
            let xid = stream_xid(&mut r)?;
            let flags = r.u8("message flags")?;
            let lsn = read_lsn(&mut r, "message lsn")?;
            let prefix = r.cstr("message prefix")?;
            let len = r.len32("message content")?;
            let content = r.bytes("message content", len)?;
            (
                PgOutputMessage::Message(LogicalMessage {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content,
                }),
                "logical decoding message",
            )
        }
        tag::STREAM_START => (
            PgOutputMessage::StreamStart(StreamStart {
                xid: r.u32("stream start xid")?,
                first_segment: r.u8("stream start first-segment flag")? == 1,
            }),
            "stream start message",
        ),
        tag::STREAM_STOP => (PgOutputMessage::StreamStop, "stream stop message"),
        tag::STREAM_COMMIT => (
            PgOutputMessage::StreamCommit(StreamCommit {
                xid: r.u32("stream commit xid")?,
                flags: r.u8("stream commit flags")?,
                commit_lsn: read_lsn(&mut r, "stream commit lsn")?,
                end_lsn: read_lsn(&mut r, "stream commit end lsn")?,
                commit_time: r.i64("stream commit time")?,
            }),
            "stream commit message",
        ),
        tag::STREAM_ABORT => {
            let xid = r.u32("stream abort xid")?;
            let subxid = r.u32("stream abort subxid")?;
            // Abort LSN and time follow only under `streaming 'parallel'` (protocol 4);
            // the message is the whole payload, so what remains tells which form it is.
            let (abort_lsn, abort_time) = if r.remaining() == 0 {
                (None, None)
            } else {
                (
                    Some(read_lsn(&mut r, "stream abort lsn")?),
                    Some(r.i64("stream abort time")?),
                )
            };
            (
                PgOutputMessage::StreamAbort(StreamAbort {
                    xid,
                    subxid,
                    abort_lsn,
                    abort_time,
                }),
                "stream abort message",
            )
        }
        tag::BEGIN_PREPARE => (
            PgOutputMessage::BeginPrepare(BeginPrepare {
                prepare_lsn: read_lsn(&mut r, "begin prepare lsn")?,
                end_lsn: read_lsn(&mut r, "begin prepare end lsn")?,
                prepare_time: r.i64("begin prepare time")?,
                xid: r.u32("begin prepare xid")?,
                gid: r.cstr("begin prepare gid")?,
            }),
            "begin prepare message",
        ),
        tag::PREPARE => (
            PgOutputMessage::Prepare(read_prepare(&mut r)?),
            "prepare message",
        ),
        tag::STREAM_PREPARE => (
            PgOutputMessage::StreamPrepare(read_prepare(&mut r)?),
            "stream prepare message",
        ),
        tag::COMMIT_PREPARED => (
            PgOutputMessage::CommitPrepared(CommitPrepared {
                flags: r.u8("commit prepared flags")?,
                commit_lsn: read_lsn(&mut r, "commit prepared lsn")?,
                end_lsn: read_lsn(&mut r, "commit prepared end lsn")?,
                commit_time: r.i64("commit prepared time")?,
                xid: r.u32("commit prepared xid")?,
                gid: r.cstr("commit prepared gid")?,
            }),
            "commit prepared message",
        ),
        tag::ROLLBACK_PREPARED => (
            PgOutputMessage::RollbackPrepared(RollbackPrepared {
                flags: r.u8("rollback prepared flags")?,
                prepare_end_lsn: read_lsn(&mut r, "rollback prepared prepare end lsn")?,
                rollback_end_lsn: read_lsn(&mut r, "rollback prepared end lsn")?,
                prepare_time: r.i64("rollback prepared prepare time")?,
                rollback_time: r.i64("rollback prepared time")?,
                xid: r.u32("rollback prepared xid")?,
                gid: r.cstr("rollback prepared gid")?,
            }),
            "rollback prepared message",
        ),
        other => {
            return Err(DecodeError::UnknownTag {
                family: "pgoutput message",
                tag: other,
            })
        }
    };
    r.finish(what)?;
    Ok(msg)
}

fn read_relation(r: &mut Reader, xid: Option<Xid>) -> Result<Relation, DecodeError> {
    let id = r.u32("relation oid")?;
    let namespace = read_namespace(r, "relation namespace")?;
    let name = r.cstr("relation name")?;
    let replica_identity = ReplicaIdentity::from_byte(r.u8("relation replica identity")?)?;
    let n = r.count16("relation column count")?;
    // A column takes at least 10 bytes (flags, empty name, type oid, modifier).
    if n > r.remaining() / 10 {
        return Err(DecodeError::BadLength {
            what: "relation column count",
            value: i64::try_from(n).unwrap_or(i64::MAX),
        });
    }
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        columns.push(RelationColumn {
            flags: r.u8("relation column flags")?,
            name: r.cstr("relation column name")?,
            type_oid: r.u32("relation column type oid")?,
            type_modifier: r.i32("relation column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn read_prepare(r: &mut Reader) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: r.u8("prepare flags")?,
        prepare_lsn: read_lsn(r, "prepare lsn")?,
        end_lsn: read_lsn(r, "prepare end lsn")?,
        prepare_time: r.i64("prepare time")?,
        xid: r.u32("prepare xid")?,
        gid: r.cstr("prepare gid")?,
    })
}

/// Decodes a connection's pgoutput messages in order, tracking stream blocks.
///
/// Use one per replication connection, feeding it every XLogData payload in order; start
/// a new one after a reconnect (the server starts outside any block).
#[derive(Debug, Clone, Default)]
pub struct PgOutputDecoder {
    stream: Option<Xid>,
}

impl PgOutputDecoder {
    /// A decoder outside any stream block.
    pub fn new() -> PgOutputDecoder {
        PgOutputDecoder::default()
    }

    /// The top-level xid of the open stream block, if one is open.
    pub fn open_stream(&self) -> Option<Xid> {
        self.stream
    }

    /// Decodes the next message.
    ///
    /// # Errors
    /// As [`parse`], plus [`DecodeError::Invalid`] for a Stream Start inside an open block
    /// or a Stream Stop outside one. On error the stream state is unchanged.
    pub fn decode(&mut self, body: Bytes) -> Result<PgOutputMessage, DecodeError> {
        let msg = parse(body, self.stream.is_some())?;
        match (&msg, self.stream) {
            (PgOutputMessage::StreamStart(_), Some(_)) => {
                return Err(DecodeError::Invalid {
                    what: "stream start",
                    detail: "a stream block is already open",
                })
            }
            (PgOutputMessage::StreamStart(start), None) => self.stream = Some(start.xid),
            (PgOutputMessage::StreamStop, None) => {
                return Err(DecodeError::Invalid {
                    what: "stream stop",
                    detail: "no stream block is open",
                })
            }
            (PgOutputMessage::StreamStop, Some(_)) => self.stream = None,
            _ => {}
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests;
