//! What a poll returns: a [`MessageBundle`] of records, viewed as [`Message`]s (one table
//! each) of [`Event`]s (one transaction's changes to that table) of records.

use std::sync::Arc;
use std::time::SystemTime;

use super::commit::{Committer, PartitionEnd};
use crate::decode::record::{Record, TxnInfo};
use crate::error::Result;
use crate::lsn::Lsn;

/// The records of one poll, in commit order.
///
/// Committing a bundle (automatic mode does it at the next poll) commits every record in
/// it and everything before; committing a bundle older than what is already committed
/// does nothing.
#[derive(Debug)]
pub struct MessageBundle {
    records: Vec<Record>,
    ends: Vec<PartitionEnd>,
    committer: Arc<Committer>,
    wal_bytes_behind: u64,
}

impl MessageBundle {
    pub(crate) fn new(
        records: Vec<Record>,
        ends: Vec<PartitionEnd>,
        committer: Arc<Committer>,
        wal_bytes_behind: u64,
    ) -> MessageBundle {
        MessageBundle {
            records,
            ends,
            committer,
            wal_bytes_behind,
        }
    }

    /// Whether the poll found nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Every record, in commit order (within a transaction, in the order of its changes).
    pub fn records(&self) -> impl ExactSizeIterator<Item = &Record> {
        self.records.iter()
    }

    /// Takes the records out, in commit order.
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }

    /// The events — one transaction's changes to one table — in commit order.
    pub fn events(&self) -> Vec<Event<'_>> {
        let mut events: Vec<Event<'_>> = Vec::new();
        // Records of one transaction are contiguous; group them per table inside it.
        let mut txn_start = 0;
        for record in &self.records {
            let same_txn = events
                .get(txn_start)
                .is_some_and(|e| Arc::ptr_eq(&e.txn, record.txn()));
            if !same_txn {
                txn_start = events.len();
            }
            let table = table_of(record);
            match events[txn_start..].iter_mut().find(|e| e.table == table) {
                Some(event) => event.records.push(record),
                None => events.push(Event {
                    table,
                    txn: Arc::clone(record.txn()),
                    records: vec![record],
                }),
            }
        }
        events
    }

    /// The messages — one table's events each — in order of each table's first event.
    pub fn messages(&self) -> Vec<Message<'_>> {
        let mut messages: Vec<Message<'_>> = Vec::new();
        for event in self.events() {
            match messages.iter_mut().find(|m| m.table == event.table) {
                Some(message) => message.events.push(event),
                None => messages.push(Message {
                    table: event.table,
                    events: vec![event],
                }),
            }
        }
        messages
    }

    /// An estimate of what remains: bytes of WAL between the end of this bundle and the
    /// server's last reported WAL end (summed over partitions).
    pub fn wal_bytes_behind(&self) -> u64 {
        self.wal_bytes_behind
    }

    /// Commits this bundle and everything before it: the durable cursor is written and the
    /// slot confirmed, so none of it is delivered to this group again.
    ///
    /// # Errors
    /// Writing the cursor failed (the connection is down past the reconnect timeout, or
    /// the group was deleted).
    pub async fn commit(&self) -> Result<()> {
        self.committer.commit(&self.ends).await
    }
}

/// Where a record belongs: its table as `(schema, name)`, or `None` for logical messages.
fn table_of(record: &Record) -> Option<(&str, &str)> {
    record.relation().map(|r| (r.schema(), r.name()))
}

/// One table's events in a bundle.
#[derive(Debug)]
pub struct Message<'a> {
    table: Option<(&'a str, &'a str)>,
    events: Vec<Event<'a>>,
}

impl<'a> Message<'a> {
    /// The table's schema (`None` for logical messages).
    pub fn schema(&self) -> Option<&'a str> {
        self.table.map(|t| t.0)
    }

    /// The table's name (`None` for logical messages).
    pub fn table(&self) -> Option<&'a str> {
        self.table.map(|t| t.1)
    }

    /// The events, in commit order.
    pub fn events(&self) -> &[Event<'a>] {
        &self.events
    }
}

/// One transaction's changes to one table (or its logical messages).
#[derive(Debug)]
pub struct Event<'a> {
    table: Option<(&'a str, &'a str)>,
    txn: Arc<TxnInfo>,
    records: Vec<&'a Record>,
}

impl<'a> Event<'a> {
    /// The table's schema (`None` for logical messages).
    pub fn schema(&self) -> Option<&'a str> {
        self.table.map(|t| t.0)
    }

    /// The table's name (`None` for logical messages).
    pub fn table(&self) -> Option<&'a str> {
        self.table.map(|t| t.1)
    }

    /// The LSN of the transaction's commit record.
    pub fn commit_lsn(&self) -> Lsn {
        self.txn.commit_lsn
    }

    /// When the transaction committed (the server's clock); `None` for a
    /// non-transactional logical message.
    pub fn commit_time(&self) -> Option<SystemTime> {
        self.txn.commit_time()
    }

    /// The transaction id (`None` for a non-transactional logical message).
    pub fn xid(&self) -> Option<u32> {
        self.txn.xid
    }

    /// The records, in the transaction's order.
    pub fn records(&self) -> &[&'a Record] {
        &self.records
    }
}
