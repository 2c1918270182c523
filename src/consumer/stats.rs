//! What a consumer has delivered, and how far behind it is.

use std::time::Duration;

use crate::decode::record::{Op, Record};
use crate::lsn::Lsn;
use crate::snapshot::BackfillProgress;

/// Counters since the consumer was built, and its lag. See [`crate::consumer::Consumer::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Insert records delivered.
    pub inserts: u64,
    /// Update records delivered.
    pub updates: u64,
    /// Delete records delivered.
    pub deletes: u64,
    /// Truncate records delivered (one per table truncated).
    pub truncates: u64,
    /// Backfill (`read`) records delivered.
    pub reads: u64,
    /// Logical messages delivered.
    pub messages: u64,
    /// Schema records delivered (a table's columns changed).
    pub schema_changes: u64,
    /// Bytes of row data delivered, as the server sent them.
    pub bytes: u64,
    /// Polls made.
    pub polls: u64,
    /// Times the replication stream was started again after a transient failure.
    pub reconnects: u64,
    /// Bytes of WAL between the last poll's end and the server's WAL end (all partitions).
    pub wal_bytes_behind: u64,
    /// The smallest committed position over the partitions.
    pub committed_lsn: Lsn,
    /// Wall-clock time between the commit of the last delivered record and its delivery.
    pub commit_lag: Option<Duration>,
    /// Backfill progress per table and partition (of the partitions this member reads):
    /// rows covered, estimated total, last key, done. Rows covered here may be ahead of the
    /// committed progress by the records not committed yet.
    pub backfill: Vec<BackfillProgress>,
}

impl Stats {
    /// All records delivered.
    pub fn records(&self) -> u64 {
        self.inserts
            + self.updates
            + self.deletes
            + self.truncates
            + self.reads
            + self.messages
            + self.schema_changes
    }

    pub(crate) fn count(&mut self, record: &Record) {
        let counter = match record.op() {
            Op::Insert => &mut self.inserts,
            Op::Update => &mut self.updates,
            Op::Delete => &mut self.deletes,
            Op::Truncate => &mut self.truncates,
            Op::Read => &mut self.reads,
            Op::Schema => &mut self.schema_changes,
            _ => &mut self.messages,
        };
        *counter += 1;
        self.bytes += record.data_bytes() as u64;
    }
}
