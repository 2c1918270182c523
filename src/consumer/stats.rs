//! What a consumer has delivered, and how far behind it is.

use std::time::Duration;

use ::metrics::{counter, gauge, Counter, Gauge};

use crate::decode::record::{Op, Record};
use crate::lsn::Lsn;
use crate::metrics;
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

/// The operations, in the order of `ConsumerMetrics::records`.
const OPS: [Op; 7] = [
    Op::Insert,
    Op::Update,
    Op::Delete,
    Op::Truncate,
    Op::Read,
    Op::Message,
    Op::Schema,
];

/// A consumer's handles, registered once for its group.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerMetrics {
    records: [Counter; 7],
    polls: Counter,
    reconnects: Counter,
    cursor_writes: Counter,
    committed_lsn: Gauge,
    lag_bytes: Gauge,
    commit_lag: Gauge,
}

impl ConsumerMetrics {
    pub(crate) fn new(group: &str) -> ConsumerMetrics {
        let group = group.to_owned();
        ConsumerMetrics {
            records: OPS.map(
                |op| counter!(metrics::RECORDS, "group" => group.clone(), "op" => op.as_str()),
            ),
            polls: counter!(metrics::POLLS, "group" => group.clone()),
            reconnects: counter!(metrics::RECONNECTS, "group" => group.clone()),
            cursor_writes: counter!(metrics::CURSOR_WRITES, "group" => group.clone()),
            committed_lsn: gauge!(metrics::COMMITTED_LSN, "group" => group.clone()),
            lag_bytes: gauge!(metrics::LAG_BYTES, "group" => group.clone()),
            commit_lag: gauge!(metrics::COMMIT_LAG, "group" => group),
        }
    }

    /// Sets every figure from the consumer's counters (once per poll).
    pub(crate) fn observe(&self, stats: &Stats) {
        let by_op = [
            stats.inserts,
            stats.updates,
            stats.deletes,
            stats.truncates,
            stats.reads,
            stats.messages,
            stats.schema_changes,
        ];
        for (counter, value) in self.records.iter().zip(by_op) {
            counter.absolute(value);
        }
        self.polls.absolute(stats.polls);
        self.reconnects.absolute(stats.reconnects);
        self.committed_lsn.set(stats.committed_lsn.as_u64() as f64);
        self.lag_bytes.set(stats.wal_bytes_behind as f64);
        if let Some(lag) = stats.commit_lag {
            self.commit_lag.set(lag.as_secs_f64());
        }
    }

    /// Counts a durable cursor write.
    pub(crate) fn cursor_written(&self) {
        self.cursor_writes.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ::metrics::with_local_recorder;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::lsn::Lsn;
    use crate::metrics::{COMMITTED_LSN, COMMIT_LAG, CURSOR_WRITES, LAG_BYTES, POLLS, RECORDS};

    /// Whether `snapshot` holds `want` for metric `name` of group `g"1` (and `op`).
    fn holds(
        snapshot: &[(metrics_util::CompositeKey, DebugValue)],
        name: &str,
        op: Option<&str>,
        want: &DebugValue,
    ) -> bool {
        snapshot.iter().any(|(key, value)| {
            let key = key.key();
            let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            let matches = key.name() == name
                && labels.contains(&("group", "g\"1"))
                && op.is_none_or(|op| labels.contains(&("op", op)));
            matches && value == want
        })
    }

    #[test]
    fn a_poll_sets_every_figure_with_the_group_label() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let handles = with_local_recorder(&recorder, || Arc::new(ConsumerMetrics::new("g\"1")));
        let stats = Stats {
            inserts: 3,
            messages: 1,
            polls: 2,
            reconnects: 1,
            wal_bytes_behind: 42,
            committed_lsn: Lsn::from(0x1_0000_0010),
            commit_lag: Some(Duration::from_millis(5)),
            ..Stats::default()
        };
        handles.observe(&stats);
        handles.cursor_written();
        let snapshot: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key, value))
            .collect();
        assert!(holds(
            &snapshot,
            RECORDS,
            Some("insert"),
            &DebugValue::Counter(3)
        ));
        assert!(holds(
            &snapshot,
            RECORDS,
            Some("message"),
            &DebugValue::Counter(1)
        ));
        assert!(holds(
            &snapshot,
            RECORDS,
            Some("delete"),
            &DebugValue::Counter(0)
        ));
        assert!(holds(&snapshot, POLLS, None, &DebugValue::Counter(2)));
        assert!(holds(
            &snapshot,
            CURSOR_WRITES,
            None,
            &DebugValue::Counter(1)
        ));
        assert!(holds(
            &snapshot,
            LAG_BYTES,
            None,
            &DebugValue::Gauge(42.0.into())
        ));
        assert!(holds(
            &snapshot,
            COMMITTED_LSN,
            None,
            &DebugValue::Gauge((0x1_0000_0010_u64 as f64).into())
        ));
        assert!(holds(
            &snapshot,
            COMMIT_LAG,
            None,
            &DebugValue::Gauge(0.005.into())
        ));
    }
}
