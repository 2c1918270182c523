//! Records as broker messages: subject, de-duplication id, headers and payload.
//!
//! The payload is the record's JSON line ([`json::write_line`], the bytes `tail` prints,
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

use bytes::Bytes;
use serde::Serialize;

use super::subject::{key_hash, Subjects};
use crate::decode::json;
use crate::decode::record::{Op, Record};

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
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub subject: String,
    /// The broker-side de-duplication id: `<group>:<event id>`.
    pub id: String,
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub payload: Bytes,
    /// A stable hash of the row key (0 for records without one), for sinks that partition
    /// by key.
    pub key_hash: u64,
    /// Whether this is a record of the group (counted as published), not a schema record.
    pub is_record: bool,
}

/// Turns records into [`Outgoing`] messages.
pub struct Encoder {
    group: String,
    subjects: Subjects,
    /// The relation version whose schema record was sent last, per `(schema, table)`.
    schemas_sent: HashMap<(String, String), u64>,
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder for `group` by `subjects`.
    pub fn new(group: &str, subjects: Subjects) -> Encoder {
        Encoder {
            group: group.to_owned(),
            subjects,
            schemas_sent: HashMap::new(),
            buf: Vec::with_capacity(1024),
        }
    }

    /// The subjects in use.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Forgets which schema records were sent: after a reconnect they are sent again.
    pub fn forget_schemas(&mut self) {
        self.schemas_sent.clear();
    }

    /// Appends `record`'s message to `out`, preceded by a schema record when its table is
    /// new to this run or changed.
    ///
    /// # Errors
    /// The payload writer failed.
    pub fn encode(&mut self, record: &Record, out: &mut Vec<Outgoing>) -> io::Result<()> {
        let event_id = record.event_id().to_string();
        let commit_lsn = record.txn().commit_lsn.to_string();
        let op = record.op();
        let mut headers = Vec::with_capacity(4);
        headers.push((OP, op.as_str().to_owned()));
        let mut hash = 0;
        let subject = match (record.relation(), record.message_content()) {
            (Some(relation), _) => {
                let (schema, table) = (relation.schema(), relation.name());
                let key = (schema.to_owned(), table.to_owned());
                if self.schemas_sent.get(&key) != Some(&relation.version()) {
                    out.push(self.schema_record(relation, &event_id, &commit_lsn)?);
                    self.schemas_sent.insert(key, relation.version());
                }
                headers.push((TABLE, format!("{schema}.{table}")));
                if op == Op::Schema {
                    // The group's own schema record (a column change mid-stream): on the
                    // table's schema subject, next to the snapshots above, as a record.
                    self.subjects.for_schema(schema, table)
                } else {
                    if op != Op::Truncate {
                        if let Some(key) = record.key() {
                            self.buf.clear();
                            serde_json::to_writer(&mut self.buf, &key)?;
                            hash = key_hash(&self.buf);
                        }
                    }
                    self.subjects.for_change(schema, table, op.as_str(), hash)
                }
            }
            (None, Some((prefix, _))) => self.subjects.for_message(prefix),
            (None, None) => self.subjects.for_message(""),
        };
        headers.push((EVENT_ID, event_id.clone()));
        headers.push((COMMIT_LSN, commit_lsn));
        self.buf.clear();
        json::write_line(&mut self.buf, record);
        // The line without its line end.
        self.buf.pop();
        out.push(Outgoing {
            subject,
            id: format!("{}:{event_id}", self.group),
            headers,
            payload: Bytes::copy_from_slice(&self.buf),
            key_hash: hash,
            is_record: true,
        });
        Ok(())
    }

    fn schema_record(
        &self,
        relation: &crate::decode::relation::Relation,
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
            table: String,
            relation_id: u32,
            replica_identity: String,
            columns: Vec<Column<'a>>,
        }
        let table = format!("{}.{}", relation.schema(), relation.name());
        let body = Schema {
            group: &self.group,
            table: table.clone(),
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
            subject: self.subjects.for_schema(relation.schema(), relation.name()),
            id: format!("{}:schema:{event_id}", self.group),
            headers: vec![
                (OP, "schema".to_owned()),
                (TABLE, table),
                (EVENT_ID, event_id.to_owned()),
                (COMMIT_LSN, commit_lsn.to_owned()),
            ],
            payload: Bytes::from(serde_json::to_vec(&body)?),
            key_hash: 0,
            is_record: false,
        })
    }
}
