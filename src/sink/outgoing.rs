//! Records as broker messages: subject, de-duplication id, headers and payload.
//!
//! The payload is the record's JSON line ([`write_line`](crate::decode::json::write_line), the bytes `tail` prints,
//! without the newline): a record has one JSON form. Headers repeat what a router needs
//! without parsing the payload: [`OP`], [`TABLE`], [`EVENT_ID`], [`COMMIT_LSN`].
//!
//! Schema records — the columns of a table, with type OIDs and key flags — are sent to the
//! table's schema subject before its first record in a run and whenever the table's
//! definition changes. They are snapshots of state, sent at least once (again after each
//! reconnect), with an id of their own (`<group>:schema:<event id of the record they
//! precede>`). The group's own schema records (`op` `schema`, a column change seen
//! mid-stream) go to the same subject as records, with their event id.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::subject::{key_hash, Subjects};
use crate::decode::escape::decimal;
use crate::decode::json::LineBuffer;
use crate::decode::record::{EventId, Op, Record};
use crate::decode::relation::Relation;

/// The header naming the operation: `insert`, `update`, `delete`, `truncate`, `read`,
/// `message` or `schema`.
pub const OP: &str = "Pg-Op";
/// The header naming the table, `schema.name` (absent on logical messages).
pub const TABLE: &str = "Pg-Table";
/// The header carrying the record's event id.
pub const EVENT_ID: &str = "Pg-Event-Id";
/// The header carrying the transaction's commit LSN.
pub const COMMIT_LSN: &str = "Pg-Commit-Lsn";

/// One message for a sink.
///
/// What repeats from record to record (the subject, the table's name) is shared, not
/// copied: a sink publishes hundreds of thousands of these a second.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes (one shared string per table and operation).
    pub subject: Arc<str>,
    /// The broker-side de-duplication id: `<group>:<event id>`.
    pub id: String,
    /// The headers' values.
    pub headers: Headers,
    /// The body.
    pub payload: Bytes,
    /// A stable hash of the row key, for the subject's key-partition token; 0 for records
    /// without a key and when the subjects have no key partitions (a sink that partitions
    /// by key itself, like Kafka's, hashes the row key its own way).
    pub key_hash: u64,
    /// Whether this is a record of the group (counted as published), not a schema record.
    pub is_record: bool,
}

/// The values of a message's headers; [`Headers::iter`] pairs them with their names.
#[derive(Debug, Clone)]
pub struct Headers {
    /// [`OP`].
    pub op: &'static str,
    /// [`TABLE`]: `schema.name`, none on logical messages.
    pub table: Option<Arc<str>>,
    /// [`EVENT_ID`].
    pub event_id: String,
    /// [`COMMIT_LSN`].
    pub commit_lsn: String,
}

impl Headers {
    /// `(name, value)` in order: [`OP`], [`TABLE`] (when there is one), [`EVENT_ID`],
    /// [`COMMIT_LSN`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            Some((OP, self.op)),
            self.table.as_deref().map(|table| (TABLE, table)),
            Some((EVENT_ID, self.event_id.as_str())),
            Some((COMMIT_LSN, self.commit_lsn.as_str())),
        ]
        .into_iter()
        .flatten()
    }
}

/// Turns records into [`Outgoing`] messages.
pub struct Encoder {
    group: String,
    subjects: Subjects,
    /// What is made once per table rather than per record, by relation id.
    tables: HashMap<u32, Table>,
    /// Payloads are written here: it formats a transaction's fields once for all of its
    /// records.
    lines: LineBuffer,
    /// A record's key as JSON, for its hash.
    buf: Vec<u8>,
}

/// One table's subjects and names, for one version of its relation.
struct Table {
    version: u64,
    /// Whether its schema record was sent in this run (since the last reconnect).
    schema_sent: bool,
    /// `schema.name`, the [`TABLE`] header.
    name: Arc<str>,
    /// The schema records' subject (also the group's own schema records').
    schema_subject: Arc<str>,
    /// Change subjects without the partition token, per operation (one for all when the
    /// template does not name the operation); made on first use.
    heads: Vec<(Op, Arc<str>)>,
    /// With key partitions: whole subjects by (operation's index in `heads`, partition),
    /// made on first use.
    partitioned: HashMap<(usize, u64), Arc<str>>,
}

impl Table {
    fn new(relation: &Relation, subjects: &Subjects) -> Table {
        let (schema, name) = (relation.schema(), relation.name());
        Table {
            version: relation.version(),
            schema_sent: false,
            name: format!("{schema}.{name}").into(),
            schema_subject: subjects.for_schema(schema, name).into(),
            heads: Vec::new(),
            partitioned: HashMap::new(),
        }
    }

    /// The subject of a change `op` whose key hashes to `hash`.
    fn change_subject(
        &mut self,
        relation: &Relation,
        subjects: &Subjects,
        op: Op,
        hash: u64,
    ) -> Arc<str> {
        // Without {op} in the template every operation shares the first entry.
        let op = if subjects.names_op() { op } else { Op::Insert };
        let index = match self.heads.iter().position(|(o, _)| *o == op) {
            Some(index) => index,
            None => {
                let head = subjects.change_head(relation.schema(), relation.name(), op.as_str());
                self.heads.push((op, head.into()));
                self.heads.len() - 1
            }
        };
        let head = &self.heads[index].1;
        match subjects.partition(hash) {
            None => Arc::clone(head),
            Some(p) => Arc::clone(
                self.partitioned
                    .entry((index, p))
                    .or_insert_with(|| format!("{head}.{p}").into()),
            ),
        }
    }
}

impl Encoder {
    /// An encoder for `group` by `subjects`.
    pub fn new(group: &str, subjects: Subjects) -> Encoder {
        Encoder {
            group: group.to_owned(),
            subjects,
            tables: HashMap::new(),
            lines: LineBuffer::new(),
            buf: Vec::new(),
        }
    }

    /// The subjects in use.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Forgets which schema records were sent: after a reconnect they are sent again.
    pub fn forget_schemas(&mut self) {
        for table in self.tables.values_mut() {
            table.schema_sent = false;
        }
    }

    /// Appends `record`'s message to `out`, preceded by a schema record when its table is
    /// new to this run or changed.
    ///
    /// # Errors
    /// The payload writer failed.
    pub fn encode(&mut self, record: &Record, out: &mut Vec<Outgoing>) -> io::Result<()> {
        let mut event_id = String::with_capacity(40);
        push_event_id(&mut event_id, record.event_id());
        let commit_lsn = record.txn().commit_lsn.text().as_str().to_owned();
        let op = record.op();
        let mut hash = 0;
        let (subject, table) = match (record.relation(), record.message_content()) {
            (Some(relation), _) => {
                let table = match self.tables.get_mut(&relation.id()) {
                    Some(table) if table.version == relation.version() => table,
                    _ => self
                        .tables
                        .entry(relation.id())
                        .insert_entry(Table::new(relation, &self.subjects))
                        .into_mut(),
                };
                if !table.schema_sent {
                    out.push(schema_record(
                        &self.group,
                        relation,
                        table,
                        &event_id,
                        &commit_lsn,
                    )?);
                    table.schema_sent = true;
                }
                let subject = if op == Op::Schema {
                    // The group's own schema record (a column change mid-stream): on the
                    // table's schema subject, next to the snapshots above, as a record.
                    Arc::clone(&table.schema_subject)
                } else {
                    if op != Op::Truncate && self.subjects.key_partitions().is_some() {
                        if let Some(key) = record.key() {
                            self.buf.clear();
                            serde_json::to_writer(&mut self.buf, &key)?;
                            hash = key_hash(&self.buf);
                        }
                    }
                    table.change_subject(relation, &self.subjects, op, hash)
                };
                (subject, Some(Arc::clone(&table.name)))
            }
            (None, Some((prefix, _))) => (self.subjects.for_message(prefix).into(), None),
            (None, None) => (self.subjects.for_message("").into(), None),
        };
        let mut id = String::with_capacity(self.group.len() + 1 + event_id.len());
        id.push_str(&self.group);
        id.push(':');
        id.push_str(&event_id);
        self.lines.push(record);
        let line = self.lines.as_bytes();
        // The line without its line end.
        let payload = Bytes::copy_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        // Empties the buffer; the transaction's text stays formatted for its next record.
        self.lines.write_to(&mut io::sink())?;
        out.push(Outgoing {
            subject,
            id,
            headers: Headers {
                op: op.as_str(),
                table,
                event_id,
                commit_lsn,
            },
            payload,
            key_hash: hash,
            is_record: true,
        });
        Ok(())
    }
}

/// Appends `id` as its `Display` writes it, without going through `core::fmt`.
fn push_event_id(out: &mut String, id: EventId) {
    out.push_str(id.commit_lsn.text().as_str());
    out.push(':');
    if let Some(p) = id.partition {
        push_decimal(out, u64::from(p));
        out.push(':');
    }
    push_decimal(out, id.index);
}

/// Appends `n` in decimal, without going through `core::fmt`.
pub(super) fn push_decimal(out: &mut String, n: u64) {
    for &digit in decimal(n, &mut [0; 20]) {
        out.push(char::from(digit));
    }
}

/// The schema record of `relation` (whose [`Table`] is `table`), sent before the record
/// with `event_id`.
fn schema_record(
    group: &str,
    relation: &Relation,
    table: &Table,
    event_id: &str,
    commit_lsn: &str,
) -> io::Result<Outgoing> {
    #[derive(Serialize)]
    struct Column<'a> {
        name: &'a str,
        type_oid: u32,
        type_modifier: i32,
        key: bool,
    }
    #[derive(Serialize)]
    struct Schema<'a> {
        group: &'a str,
        table: &'a str,
        relation_id: u32,
        replica_identity: String,
        columns: Vec<Column<'a>>,
    }
    let body = Schema {
        group,
        table: &table.name,
        relation_id: relation.id(),
        replica_identity: format!("{:?}", relation.replica_identity()).to_lowercase(),
        columns: relation
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name(),
                type_oid: c.type_oid(),
                type_modifier: c.type_modifier(),
                key: c.is_key(),
            })
            .collect(),
    };
    Ok(Outgoing {
        subject: Arc::clone(&table.schema_subject),
        id: format!("{group}:schema:{event_id}"),
        headers: Headers {
            op: Op::Schema.as_str(),
            table: Some(Arc::clone(&table.name)),
            event_id: event_id.to_owned(),
            commit_lsn: commit_lsn.to_owned(),
        },
        payload: Bytes::from(serde_json::to_vec(&body)?),
        key_hash: 0,
        is_record: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::record::PartitionId;
    use crate::lsn::Lsn;

    #[test]
    fn event_ids_are_written_as_they_display() {
        for (lsn, partition, index) in [
            (0, None, 0),
            (0x1_0000_00AB, None, 7),
            (u64::MAX, Some(3), u64::MAX),
            (0x16_B374_D848, Some(0), 1_000_000),
        ] {
            let id = EventId {
                commit_lsn: Lsn::new(lsn),
                partition: partition.map(PartitionId::new),
                index,
            };
            let mut out = String::new();
            push_event_id(&mut out, id);
            assert_eq!(out, id.to_string());
        }
    }

    #[test]
    fn headers_are_listed_in_order_without_a_missing_table() {
        let mut headers = Headers {
            op: "insert",
            table: Some("public.t".into()),
            event_id: "0/1:0".to_owned(),
            commit_lsn: "0/1".to_owned(),
        };
        let names: Vec<_> = headers.iter().map(|(name, _)| name).collect();
        assert_eq!(names, [OP, TABLE, EVENT_ID, COMMIT_LSN]);
        headers.table = None;
        let pairs: Vec<_> = headers.iter().collect();
        assert_eq!(
            pairs,
            [(OP, "insert"), (EVENT_ID, "0/1:0"), (COMMIT_LSN, "0/1")]
        );
    }
}
