//! Records: one row change each, with images that materialise on demand.
//!
//! A [`Record`] keeps the raw tuple bytes of its change and an `Arc` of the [`Relation`]
//! it was decoded with; nothing is converted until asked. [`Image`] is a view of one tuple
//! that decodes values by column kind and serialises straight into a JSON object without
//! building a map first.
//!
//! Before-images follow the table's replica identity (DESIGN §2):
//! - `REPLICA IDENTITY FULL`: updates and deletes carry the whole old row → [`BeforeImage::Full`];
//! - DEFAULT / USING INDEX: deletes, and updates that changed the key, carry the old key →
//!   [`BeforeImage::Key`]; updates that kept the key carry nothing → [`BeforeImage::NotEnabled`];
//! - inserts, reads, truncates and messages → [`BeforeImage::NotApplicable`].
//!
//! An UPDATE does not resend TOASTed values it did not change (column kind `u`). The
//! current image fills them from a full before-image when there is one; otherwise they are
//! reported as unchanged — left out of the JSON object and listed under `"unchanged"` —
//! never as null.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::relation::{Column, Relation};
use super::value::{from_ascii_shape, push_hex, Value};
use crate::calendar::{civil_from_days, PG_EPOCH_DAYS};
use crate::lsn::Lsn;
use crate::protocol::pgoutput::{
    OldTuple, ReplicaIdentity, TupleColumn, TupleColumns, TupleData,
};
use crate::protocol::replication::pg_time_to_system;

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
    /// The table was truncated (one record per table).
    Truncate,
    /// An existing row delivered by a backfill.
    Read,
    /// A logical message (`pg_logical_emit_message`) with a subscribed prefix.
    Message,
    /// The table's columns changed (added, dropped, renamed, retyped): the record comes
    /// before the first change in the new shape; see [`Record::schema_change`].
    Schema,
}

impl Op {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Read => "read",
            Op::Message => "message",
            Op::Schema => "schema",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transaction a record belongs to; shared by all its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnInfo {
    /// Transaction id (top level); `None` for what no transaction carries: a
    /// non-transactional logical message, a backfill read.
    pub xid: Option<u32>,
    /// LSN of the commit record: orders transactions and names events.
    pub commit_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC (as PostgreSQL sends it); `None` for
    /// a non-transactional logical message, which has none.
    pub commit_time_micros: Option<i64>,
    /// The replication origin the transaction came through, if any.
    pub origin: Option<String>,
    /// The consumer group it was read for (`None` outside a group, e.g. a bare
    /// [`ChangeStream`](crate::stream::ChangeStream)): the `"group"` of the JSON line.
    /// Set through [`DecoderOptions::group`](super::decoder::DecoderOptions::group).
    pub group: Option<Arc<str>>,
}

impl TxnInfo {
    /// The commit time (`None` for a non-transactional logical message).
    pub fn commit_time(&self) -> Option<SystemTime> {
        self.commit_time_micros
            .map(|micros| pg_time_to_system(micros).unwrap_or(SystemTime::UNIX_EPOCH))
    }
}

/// A partition of a consumer group: 0 to the group's partition count − 1 (at most 64).
///
/// Each partition has a slot and a publication of its own; a record's event id names its
/// partition in a group with several. Serialises as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct PartitionId(u16);

impl PartitionId {
    /// Partition `n`.
    pub const fn new(n: u16) -> PartitionId {
        PartitionId(n)
    }

    /// Its number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// From the group catalog's `integer` column (0 to 63 there; anything else is clamped,
    /// and the catalog's constraint keeps it from happening).
    pub(crate) fn from_catalog(n: i32) -> PartitionId {
        PartitionId(u16::try_from(n).unwrap_or(u16::MAX))
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u16> for PartitionId {
    fn from(n: u16) -> PartitionId {
        PartitionId(n)
    }
}

impl From<PartitionId> for u16 {
    fn from(p: PartitionId) -> u16 {
        p.0
    }
}

impl From<PartitionId> for u32 {
    fn from(p: PartitionId) -> u32 {
        u32::from(p.0)
    }
}

impl From<PartitionId> for i32 {
    fn from(p: PartitionId) -> i32 {
        i32::from(p.0)
    }
}

impl From<PartitionId> for usize {
    fn from(p: PartitionId) -> usize {
        usize::from(p.0)
    }
}

impl From<PartitionId> for u64 {
    fn from(p: PartitionId) -> u64 {
        u64::from(p.0)
    }
}

/// Identifies a record across redeliveries: `<commit_lsn>:<index in transaction>`, and in a
/// group with several partitions `<commit_lsn>:<partition>:<index>` — each partition's slot
/// sends its own share of a transaction, counted from 0, so the index alone repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// The transaction's commit LSN.
    pub commit_lsn: Lsn,
    /// The partition the record came from, in a group with more than one.
    pub partition: Option<PartitionId>,
    /// The record's index inside the transaction (inside its partition's share of it),
    /// from 0.
    pub index: u64,
}

impl EventId {
    /// The partition an event id names for `partition` of a group of `partitions`: none in a
    /// group with one (its ids stay `<commit_lsn>:<index>`).
    pub(crate) fn partition_of(partition: i32, partitions: usize) -> Option<PartitionId> {
        (partitions > 1).then(|| PartitionId::from_catalog(partition))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{}:{p}:{}", self.commit_lsn, self.index),
            None => write!(f, "{}:{}", self.commit_lsn, self.index),
        }
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.partition.is_some() {
            return serializer.collect_str(self);
        }
        // On the stack: "<17 bytes of LSN>:<up to 20 digits>".
        let mut buf = [0u8; 40];
        let lsn = self.commit_lsn.text();
        let lsn = lsn.as_str().as_bytes();
        buf[..lsn.len()].copy_from_slice(lsn);
        buf[lsn.len()] = b':';
        let mut digits = [0u8; 20];
        let mut n = self.index;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let end = lsn.len() + 1 + (digits.len() - i);
        buf[lsn.len() + 1..end].copy_from_slice(&digits[i..]);
        serializer.serialize_str(std::str::from_utf8(&buf[..end]).unwrap_or_default())
    }
}

/// The body of a record, by kind.
#[derive(Debug, Clone)]
enum Body {
    Row {
        relation: Arc<Relation>,
        new: Option<TupleData>,
        old: Option<OldTuple>,
    },
    Truncate {
        relation: Arc<Relation>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        prefix: String,
        content: Bytes,
    },
    Schema {
        relation: Arc<Relation>,
        previous: Arc<Relation>,
    },
}

/// One row change (or truncate, or logical message).
#[derive(Debug, Clone)]
pub struct Record {
    op: Op,
    body: Body,
    txn: Arc<TxnInfo>,
    index: u64,
    /// The group partition it came through, when the group has several.
    partition: Option<PartitionId>,
    /// The transaction's end LSN on its last record only; [`Lsn::ZERO`] (PostgreSQL's "no
    /// position") on the others. Not an `Option`: eight bytes less keep a record within
    /// 128 bytes, which moves without a `memcpy` call.
    txn_end: Lsn,
}

impl Record {
    pub(crate) fn row(
        op: Op,
        relation: Arc<Relation>,
        new: Option<TupleData>,
        old: Option<OldTuple>,
        txn: Arc<TxnInfo>,
        index: u64,
    ) -> Record {
        Record {
            op,
            body: Body::Row { relation, new, old },
            txn,
            index,
            partition: None,
            txn_end: Lsn::ZERO,
        }
    }

    pub(crate) fn truncate(
        relation: Arc<Relation>,
        cascade: bool,
        restart_identity: bool,
        txn: Arc<TxnInfo>,
        index: u64,
    ) -> Record {
        Record {
            op: Op::Truncate,
            body: Body::Truncate {
                relation,
                cascade,
                restart_identity,
            },
            txn,
            index,
            partition: None,
            txn_end: Lsn::ZERO,
        }
    }

    pub(crate) fn message(prefix: String, content: Bytes, txn: Arc<TxnInfo>, index: u64) -> Record {
        Record {
            op: Op::Message,
            body: Body::Message { prefix, content },
            txn,
            index,
            partition: None,
            txn_end: Lsn::ZERO,
        }
    }

    pub(crate) fn schema(
        relation: Arc<Relation>,
        previous: Arc<Relation>,
        txn: Arc<TxnInfo>,
        index: u64,
    ) -> Record {
        Record {
            op: Op::Schema,
            body: Body::Schema { relation, previous },
            txn,
            index,
            partition: None,
            txn_end: Lsn::ZERO,
        }
    }

    /// What happened.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The relation, as described when this change was decoded (`None` for messages).
    pub fn relation(&self) -> Option<&Arc<Relation>> {
        match &self.body {
            Body::Row { relation, .. }
            | Body::Truncate { relation, .. }
            | Body::Schema { relation, .. } => Some(relation),
            Body::Message { .. } => None,
        }
    }

    /// The transaction.
    pub fn txn(&self) -> &Arc<TxnInfo> {
        &self.txn
    }

    /// The record's index inside its transaction.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The event id, stable across redeliveries.
    pub fn event_id(&self) -> EventId {
        EventId {
            commit_lsn: self.txn.commit_lsn,
            partition: self.partition,
            index: self.index,
        }
    }

    /// The partition of its consumer group the record came through, when the group has
    /// several (`None` for a group with one).
    pub fn partition(&self) -> Option<PartitionId> {
        self.partition
    }

    /// Where the transaction ends (its Commit's end LSN), on the last record of a
    /// transaction only; `None` on the others.
    ///
    /// Whoever has taken the last record has taken the whole transaction and can confirm
    /// past it at once, without waiting for the Commit behind it (which a consumer that
    /// stops polling might never take, pinning WAL).
    pub fn txn_end(&self) -> Option<Lsn> {
        (self.txn_end != Lsn::ZERO).then_some(self.txn_end)
    }

    pub(crate) fn set_txn_end(&mut self, end_lsn: Lsn) {
        self.txn_end = end_lsn;
    }

    /// Marks the record as coming through `partition` of a group with several (see
    /// [`EventId`]); set where the record is made, by the decoder or the backfill.
    pub(crate) fn set_partition(&mut self, partition: Option<PartitionId>) {
        self.partition = partition;
    }

    /// The row after the change (insert, update, read), unchanged TOAST values filled from
    /// a full before-image when there is one.
    pub fn current(&self) -> Option<Image<'_>> {
        let Body::Row { relation, new, old } = &self.body else {
            return None;
        };
        let fill = match old {
            Some(OldTuple::Full(t)) if !key_only_old_row(relation, t) => Some(t),
            _ => None,
        };
        new.as_ref().map(|tuple| Image {
            relation,
            tuple,
            fill,
            key_only: false,
        })
    }

    /// The row before the change, as far as the replica identity tells it.
    pub fn before(&self) -> BeforeImage<'_> {
        let Body::Row { relation, new, old } = &self.body else {
            return BeforeImage::NotApplicable;
        };
        match (self.op, old) {
            // A partition created or attached after its partitioned table was enabled
            // logs only the key under its own identity, while pgoutput labels the old row
            // by the root's (FULL): report what was really sent.
            (_, Some(OldTuple::Full(tuple))) if key_only_old_row(relation, tuple) => {
                BeforeImage::Key(Image {
                    relation,
                    tuple,
                    fill: None,
                    key_only: true,
                })
            }
            (_, Some(OldTuple::Full(tuple))) => BeforeImage::Full(Image {
                relation,
                tuple,
                fill: None,
                key_only: false,
            }),
            (_, Some(OldTuple::Key(tuple))) => BeforeImage::Key(Image {
                relation,
                tuple,
                fill: None,
                key_only: true,
            }),
            // Under FULL every update carries the old row, unless it came from such a
            // partition and kept the key: then the old key is the new row's key.
            (Op::Update, None) if relation.replica_identity() == ReplicaIdentity::Full => match new
            {
                Some(tuple) => BeforeImage::Key(Image {
                    relation,
                    tuple,
                    fill: None,
                    key_only: true,
                }),
                None => BeforeImage::NotEnabled,
            },
            (Op::Update, None) => BeforeImage::NotEnabled,
            _ => BeforeImage::NotApplicable,
        }
    }

    /// Whether this change shows a partition lacking before-images: an update or delete of
    /// a relation under `REPLICA IDENTITY FULL` whose before-image holds only the key (see
    /// [`Record::before`]).
    pub fn lacks_before_image(&self) -> bool {
        matches!(self.op, Op::Update | Op::Delete)
            && self
                .relation()
                .is_some_and(|r| r.replica_identity() == ReplicaIdentity::Full)
            && matches!(self.before(), BeforeImage::Key(_))
    }

    /// The key of the row: its replica identity columns, from the current image, or from
    /// the old row for a delete.
    pub fn key(&self) -> Option<Image<'_>> {
        let Body::Row { relation, new, old } = &self.body else {
            return None;
        };
        let tuple = match (new, old) {
            (Some(new), _) => new,
            (None, Some(old)) => old.data(),
            (None, None) => return None,
        };
        Some(Image {
            relation,
            tuple,
            fill: None,
            key_only: true,
        })
    }

    /// Bytes of row data as the server sent them (new and old tuple, or message content):
    /// the measure behind byte counts in statistics.
    pub fn data_bytes(&self) -> usize {
        match &self.body {
            Body::Row { new, old, .. } => {
                new.as_ref().map_or(0, TupleData::byte_len)
                    + old.as_ref().map_or(0, |o| o.data().byte_len())
            }
            Body::Truncate { .. } | Body::Schema { .. } => 0,
            Body::Message { content, .. } => content.len(),
        }
    }

    /// For a row change: its relation, new tuple and old tuple as sent.
    pub(crate) fn tuples(&self) -> Option<(&Arc<Relation>, Option<&TupleData>, Option<&OldTuple>)> {
        match &self.body {
            Body::Row { relation, new, old } => Some((relation, new.as_ref(), old.as_ref())),
            _ => None,
        }
    }

    /// For a truncate: whether it was `CASCADE` and `RESTART IDENTITY`.
    pub fn truncate_options(&self) -> Option<(bool, bool)> {
        match &self.body {
            Body::Truncate {
                cascade,
                restart_identity,
                ..
            } => Some((*cascade, *restart_identity)),
            _ => None,
        }
    }

    /// For a schema record: the table's columns now and before.
    pub fn schema_change(&self) -> Option<SchemaChange<'_>> {
        match &self.body {
            Body::Schema { relation, previous } => Some(SchemaChange { relation, previous }),
            _ => None,
        }
    }

    /// For a logical message: its prefix and content.
    pub fn message_content(&self) -> Option<(&str, &Bytes)> {
        match &self.body {
            Body::Message { prefix, content } => Some((prefix, content)),
            _ => None,
        }
    }
}

/// The JSON line of a record (what `pg-changestream tail` prints, one per line): fields always
/// present and in this order:
///
/// ```text
/// {"event_id":"<commit_lsn>:<index>","group":"G","partition":0,"table":"schema.name",
///  "op":"insert|update|delete|truncate|read|message|schema","commit_lsn":"X/Y",
///  "commit_time":"2026-01-01T03:04:05.123456Z","xid":N,"key":{..}|null,"before":{..}|null,
///  "after":{..}|null,"before_image":"full|key|not_enabled|not_applicable"}
/// ```
///
/// then, only when they apply: `"unchanged":[..]` (TOASTed columns an update did not send
/// and no full before-image could fill; they are left out of `after`), for `message`
/// records `"prefix"` and `"content"` (UTF-8 text, else `\x` hex), and for `schema` records
/// `"columns":[..]` and `"previous_columns":[..]` ([`ColumnList`]; `key`, `before` and
/// `after` are null, `before_image` is `not_applicable`). A message has no table:
/// `"table":null`. `group` is [`TxnInfo::group`] (null outside a group), `partition` the
/// group partition the record came through (0 in a group with one).
///
/// [`json::write_line`](super::json::write_line) writes the same bytes straight from
/// pgoutput's text, faster; this is the form every serde format gets. Column values take
/// [`Value`]'s serde form: through `serde_json`, numbers keep their exact digits; other
/// formats get them as strings (see [`Value`]'s `Serialize`).
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let txn = &self.txn;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &self.event_id())?;
        map.serialize_entry("group", &txn.group.as_deref())?;
        map.serialize_entry("partition", &self.partition.map_or(0, u32::from))?;
        match self.relation() {
            Some(relation) => {
                map.serialize_entry("table", &QualifiedName(relation.schema(), relation.name()))?
            }
            None => map.serialize_entry("table", &())?,
        }
        map.serialize_entry("op", self.op.as_str())?;
        map.serialize_entry("commit_lsn", &txn.commit_lsn)?;
        map.serialize_entry("commit_time", &Rfc3339(txn.commit_time_micros.unwrap_or(0)))?;
        map.serialize_entry("xid", &txn.xid.unwrap_or(0))?;
        map.serialize_entry("key", &self.key())?;
        let before = self.before();
        map.serialize_entry("before", &before.image())?;
        let after = self.current();
        map.serialize_entry("after", &after)?;
        map.serialize_entry("before_image", before.kind())?;
        if let Some(after) = after {
            if after.has_unchanged() {
                map.serialize_entry("unchanged", &after.unchanged())?;
            }
        }
        match &self.body {
            Body::Row { .. } | Body::Truncate { .. } => {}
            Body::Message { prefix, content } => {
                map.serialize_entry("prefix", prefix)?;
                match std::str::from_utf8(content) {
                    Ok(text) => map.serialize_entry("content", text)?,
                    Err(_) => map.serialize_entry("content", &hex(content))?,
                }
            }
            Body::Schema { relation, previous } => {
                map.serialize_entry("columns", &ColumnList(relation))?;
                map.serialize_entry("previous_columns", &ColumnList(previous))?;
            }
        }
        map.end()
    }
}

/// `schema.name`, written without allocating.
struct QualifiedName<'a>(&'a str, &'a str);

impl Serialize for QualifiedName<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}.{}", self.0, self.1))
    }
}

/// Whether a full old row of a partitioned table holds only its key: every other column
/// null. That is what a partition without `REPLICA IDENTITY FULL` logs (its key, the rest
/// null) when pgoutput labels it by the root's FULL identity. A real row whose other
/// columns are all null looks the same and is reported as a key image too — less than it
/// held, never something it did not.
fn key_only_old_row(relation: &Relation, tuple: &TupleData) -> bool {
    if !relation.is_partitioned() {
        return false;
    }
    let mut others = 0;
    for (column, value) in relation.columns().iter().zip(tuple.iter()) {
        if column.is_key() {
            continue;
        }
        others += 1;
        if !matches!(value, TupleColumn::Null) {
            return false;
        }
    }
    others > 0
}

/// A schema record's content: a table's columns after and before the change, as the
/// records of the table carry them (a projection's left-out columns are not listed).
#[derive(Debug, Clone, Copy)]
pub struct SchemaChange<'a> {
    relation: &'a Arc<Relation>,
    previous: &'a Arc<Relation>,
}

impl<'a> SchemaChange<'a> {
    /// The table as it is now (its changes after this record are decoded with it).
    pub fn relation(&self) -> &'a Arc<Relation> {
        self.relation
    }

    /// The table as it was before.
    pub fn previous(&self) -> &'a Arc<Relation> {
        self.previous
    }

    /// The columns now, in tuple order.
    pub fn columns(&self) -> &'a [super::relation::Column] {
        self.relation.columns()
    }

    /// The columns before.
    pub fn previous_columns(&self) -> &'a [super::relation::Column] {
        self.previous.columns()
    }
}

/// A relation's columns as a JSON array, one object per column, fields in this order:
///
/// ```text
/// {"name":"id","type":"int4","type_oid":23,"type_modifier":-1,"key":true}
/// ```
///
/// `type` is `pg_type.typname` (`_text` for `text[]`, `schema.name` for a type of the
/// database's own, `""` if the server never named it), `type_modifier` is `atttypmod` (-1
/// when none; `varchar(20)` is 24), `key` whether the column is part of the key the records
/// report. Nullability is not known from the stream and is not given.
#[derive(Debug, Clone, Copy)]
pub struct ColumnList<'a>(pub &'a Relation);

impl Serialize for ColumnList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.columns().len()))?;
        for column in self.0.columns() {
            seq.serialize_element(&ColumnJson(column))?;
        }
        seq.end()
    }
}

struct ColumnJson<'a>(&'a super::relation::Column);

impl Serialize for ColumnJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let column = self.0;
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("name", column.name())?;
        map.serialize_entry("type", column.type_name())?;
        map.serialize_entry("type_oid", &column.type_oid())?;
        map.serialize_entry("type_modifier", &column.type_modifier())?;
        map.serialize_entry("key", &column.is_key())?;
        map.end()
    }
}

/// The row before a change.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum BeforeImage<'a> {
    /// The whole old row (REPLICA IDENTITY FULL).
    Full(Image<'a>),
    /// Only the old key (DEFAULT / USING INDEX identity: a delete, or an update that changed
    /// the key).
    Key(Image<'a>),
    /// An update under DEFAULT / USING INDEX identity that kept the key: the old row is not
    /// logged. Enable before-images to get it.
    NotEnabled,
    /// Inserts, reads, truncates, messages.
    NotApplicable,
}

impl<'a> BeforeImage<'a> {
    /// The image, for `Full` and `Key`.
    pub fn image(&self) -> Option<Image<'a>> {
        match self {
            BeforeImage::Full(image) | BeforeImage::Key(image) => Some(*image),
            _ => None,
        }
    }

    /// `full`, `key`, `not_enabled` or `not_applicable`.
    pub fn kind(&self) -> &'static str {
        match self {
            BeforeImage::Full(_) => "full",
            BeforeImage::Key(_) => "key",
            BeforeImage::NotEnabled => "not_enabled",
            BeforeImage::NotApplicable => "not_applicable",
        }
    }
}

/// A view of one row image: column values decoded on demand.
#[derive(Clone, Copy)]
pub struct Image<'a> {
    relation: &'a Relation,
    tuple: &'a TupleData,
    /// Where unchanged TOAST values are taken from (a full old row).
    fill: Option<&'a TupleData>,
    /// Only the key columns are meaningful (a 'K' tuple, or a key view).
    key_only: bool,
}

impl<'a> Image<'a> {
    /// The columns, in order: name and value. Key images yield only key columns.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + 'a {
        // A whole image is checked as UTF-8 once, its values then sliced from it; a key
        // image, usually a column or two, checks just its values.
        let text = if self.key_only {
            None
        } else {
            TupleText::of(self.tuple)
        };
        self.columns()
            .map(move |(meta, column)| (meta.name(), decode_column(meta.kind(), column, text)))
    }

    /// The columns of the image as sent, in order, with their relation column: which
    /// columns are in it (key images: only key columns) and unchanged TOAST values filled
    /// from the full before-image. The one place that decides what an image holds, for the
    /// typed view ([`Image::iter`]) and the JSON writer alike.
    pub(crate) fn columns(&self) -> ImageColumns<'a> {
        let mut meta = self.relation.columns();
        if self.key_only {
            // Nothing after the last key column is in the image: stop walking there.
            let end = meta.iter().rposition(Column::is_key).map_or(0, |last| last + 1);
            meta = &meta[..end];
        }
        ImageColumns {
            tuple: self.tuple.iter(),
            fill: self.fill.map(TupleData::iter),
            meta: meta.iter(),
            key_only: self.key_only,
        }
    }

    /// The value of the column named `name`, if it is in this image.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        // Only the column asked for is decoded.
        self.columns()
            .find(|(meta, _)| meta.name() == name)
            .map(|(meta, column)| to_value(meta.kind(), column))
    }

    /// The relation the image belongs to.
    pub fn relation(&self) -> &'a Relation {
        self.relation
    }

    /// Whether some column is an unchanged TOAST value that could not be filled (left out
    /// of the JSON object, listed by [`Image::unchanged`]).
    pub fn has_unchanged(&self) -> bool {
        self.tuple.has_unchanged_toast() && self.iter().any(|(_, v)| v.is_unchanged())
    }
}

/// The walk behind [`Image::columns`].
pub(crate) struct ImageColumns<'a> {
    tuple: TupleColumns<'a>,
    /// The full before-image, in step with `tuple`, to fill unchanged TOAST values from.
    fill: Option<TupleColumns<'a>>,
    /// The relation's columns, cut after the last key column for a key image.
    meta: std::slice::Iter<'a, Column>,
    key_only: bool,
}

impl<'a> Iterator for ImageColumns<'a> {
    type Item = (&'a Column, TupleColumn<'a>);

    // Inlined into each walk (the typed view's, the JSON writer's): a call per column
    // cost more than the walk itself.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let meta = self.meta.next()?;
            let column = self.tuple.next()?;
            let filler = match &mut self.fill {
                Some(fill) => fill.next(),
                None => None,
            };
            if self.key_only && !meta.is_key() {
                continue;
            }
            return Some(match (column, filler) {
                (TupleColumn::UnchangedToast, Some(old)) => (meta, old),
                (column, _) => (meta, column),
            });
        }
    }
}

/// A tuple's column entries as one `str` (see [`TupleData::as_utf8`]), to take value
/// texts from without checking each again.
#[derive(Clone, Copy)]
struct TupleText<'a> {
    text: &'a str,
    /// Where the entries start in memory, to find a value's place in `text`.
    base: usize,
}

impl<'a> TupleText<'a> {
    fn of(tuple: &'a TupleData) -> Option<TupleText<'a>> {
        let text = tuple.as_utf8()?;
        Some(TupleText {
            text,
            base: text.as_ptr() as usize,
        })
    }

    /// `value`'s text, if `value` lies in this tuple (a value filled from another tuple
    /// does not).
    fn slice(&self, value: &[u8]) -> Option<&'a str> {
        let start = (value.as_ptr() as usize).checked_sub(self.base)?;
        self.text.get(start..start.checked_add(value.len())?)
    }
}

/// One column's value, its text taken from `text` when it lies there.
#[inline]
fn decode_column<'a>(
    kind: super::types::ValueKind,
    column: TupleColumn<'a>,
    text: Option<TupleText<'a>>,
) -> Value<'a> {
    if let (TupleColumn::Text(value), Some(text)) = (column, text) {
        if let Some(value) = text.slice(value) {
            return Value::from_text(kind, value);
        }
    }
    to_value(kind, column)
}

impl fmt::Debug for Image<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A JSON object of the image's columns; unchanged TOAST values are left out (the record
/// lists them under `unchanged`).
impl Serialize for Image<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.iter() {
            if !value.is_unchanged() {
                map.serialize_entry(name, &value)?;
            }
        }
        map.end()
    }
}

/// The names of an image's unchanged TOAST columns; serialises as a JSON array.
#[derive(Clone, Copy)]
pub struct UnchangedColumns<'a>(Image<'a>);

impl<'a> Image<'a> {
    /// The columns whose value the server did not send and no before-image could fill.
    pub fn unchanged(&self) -> UnchangedColumns<'a> {
        UnchangedColumns(*self)
    }
}

impl Serialize for UnchangedColumns<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for (name, value) in self.0.iter() {
            if value.is_unchanged() {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

pub(crate) fn to_value(kind: super::types::ValueKind, column: TupleColumn<'_>) -> Value<'_> {
    match column {
        TupleColumn::Null => Value::Null,
        TupleColumn::UnchangedToast => Value::Unchanged,
        TupleColumn::Text(text) => match from_ascii_shape(kind, text) {
            Some(value) => value,
            // Never fails: text that is not UTF-8 (a non-UTF-8 database) is kept lossily.
            None => Value::decode(kind, text)
                .unwrap_or_else(|_| Value::Text(String::from_utf8_lossy(text).into_owned().into())),
        },
        // We never ask for binary transfer; should a server send it, show the bytes.
        TupleColumn::Binary(bytes) => Value::Bytea(hex(bytes).into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = b"\\x".to_vec();
    push_hex(&mut out, bytes);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// A PostgreSQL timestamp (µs since 2000-01-01 UTC) as RFC 3339 UTC with microseconds.
struct Rfc3339(i64);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match format_pg_timestamp_on_stack(self.0) {
            Some(buf) => serializer.serialize_str(std::str::from_utf8(&buf).unwrap_or_default()),
            None => serializer.collect_str(&format_pg_timestamp(self.0)),
        }
    }
}

/// [`format_pg_timestamp`] without allocating, for years 0 to 9999 (every commit time).
pub(crate) fn format_pg_timestamp_on_stack(micros: i64) -> Option<[u8; 27]> {
    let unix_micros = micros.checked_add(PG_EPOCH_DAYS * 86_400 * 1_000_000)?;
    let secs = unix_micros.div_euclid(1_000_000);
    let frac = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, i64::from(m));
    put(8, 2, i64::from(d));
    put(11, 2, sod / 3600);
    put(14, 2, sod % 3600 / 60);
    put(17, 2, sod % 60);
    put(20, 6, frac);
    Some(buf)
}

/// Formats microseconds since 2000-01-01 UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_pg_timestamp(micros: i64) -> String {
    let unix_micros = micros + PG_EPOCH_DAYS * 86_400 * 1_000_000;
    let secs = unix_micros.div_euclid(1_000_000);
    let frac = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::decode::types::{oid, TypeCatalog};

    /// An image's values decoded one by one, each checked as UTF-8 on its own: what
    /// [`Image::iter`] must give however it takes the texts.
    fn one_by_one(image: &Image<'_>) -> Vec<String> {
        image
            .columns()
            .map(|(meta, column)| format!("{}={:?}", meta.name(), to_value(meta.kind(), column)))
            .collect()
    }

    fn iterated(image: &Image<'_>) -> Vec<String> {
        image
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect()
    }

    const TYPES: &[u32] = &[
        oid::INT8,
        oid::TEXT,
        oid::NUMERIC,
        oid::BOOL,
        oid::BYTEA,
        oid::TIMESTAMPTZ,
        oid::TIME,
        1009,
    ];

    /// A value's text: short and long (lengths of 128 bytes and more have length bytes
    /// that are not ASCII), UTF-8 or not, shaped like its type or not.
    fn text() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            1 => Just(None),
            3 => "[0-9]{1,3}|2024-01-02 03:04:05(\\.5)?\\+00|t|12:00:00|\\{a,b\\}|[ -~é]{0,12}"
                .prop_map(|t| Some(t.into_bytes())),
            1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Some),
            1 => ("[a-zé]{1,3}", 40usize..300).prop_map(|(t, n)| Some(t.repeat(n).into_bytes())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn iterated_values_are_the_values_one_by_one(
            columns in prop::collection::vec(
                (prop::sample::select(TYPES), any::<bool>(), text()),
                1..8,
            ),
        ) {
            let relation = Relation::from_catalog(
                1,
                "s".into(),
                "t".into(),
                ReplicaIdentity::Default,
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, (type_oid, key, _))| (format!("c{i}"), *type_oid, -1, *key))
                    .collect(),
                &TypeCatalog::new(),
            );
            let tuple = TupleData::from_text(columns.iter().map(|(_, _, t)| t.as_deref()));
            for key_only in [false, true] {
                let image = Image {
                    relation: &relation,
                    tuple: &tuple,
                    fill: None,
                    key_only,
                };
                prop_assert_eq!(iterated(&image), one_by_one(&image));
                for (name, value) in image.iter() {
                    prop_assert_eq!(
                        format!("{:?}", image.get(name)),
                        format!("{:?}", Some(value))
                    );
                }
            }
        }
    }

    #[test]
    fn stack_formatting_matches_the_allocating_one() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            // Commit times from 1970 to 2200, and the edges.
            let micros = rng.i64(-946_684_800_000_000..6_300_000_000_000_000);
            let stack = format_pg_timestamp_on_stack(micros).unwrap();
            assert_eq!(
                std::str::from_utf8(&stack).unwrap(),
                format_pg_timestamp(micros)
            );
        }
        assert!(format_pg_timestamp_on_stack(i64::MAX).is_none());
        for (lsn, index) in [(0, 0), (u64::MAX, u64::MAX), (0x16_B374_D848, 12_345)] {
            let mut id = EventId {
                commit_lsn: Lsn::new(lsn),
                partition: None,
                index,
            };
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
            assert_eq!(id.to_string(), format!("{}:{index}", Lsn::new(lsn)));
            id.partition = Some(PartitionId::new(3));
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
            assert_eq!(id.to_string(), format!("{}:3:{index}", Lsn::new(lsn)));
        }
    }

    #[test]
    fn pg_timestamps_format_as_rfc3339_utc() {
        assert_eq!(format_pg_timestamp(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(format_pg_timestamp(-1), "1999-12-31T23:59:59.999999Z");
        // 2024-02-29 12:34:56.5 UTC
        let days = 8825; // 2000-01-01 → 2024-02-29
        let micros = (days * 86_400 + 12 * 3600 + 34 * 60 + 56) * 1_000_000 + 500_000;
        assert_eq!(format_pg_timestamp(micros), "2024-02-29T12:34:56.500000Z");
    }

    #[test]
    fn event_ids_print_lsn_and_index() {
        let id = EventId {
            commit_lsn: Lsn::new(0x1_0000_00AB),
            partition: None,
            index: 7,
        };
        assert_eq!(id.to_string(), "1/AB:7");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"1/AB:7\"");
        let id = EventId {
            partition: Some(PartitionId::new(3)),
            ..id
        };
        assert_eq!(id.to_string(), "1/AB:3:7");
    }
}
