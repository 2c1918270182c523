//! Metrics through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The library only records; the application chooses an exporter (the CLI installs a
//! Prometheus recorder for `--metrics-addr`). Without a recorder every handle is a no-op.
//! Handles are registered once, when a consumer (or sink driver) is built, so install the
//! recorder before that; per poll the figures are set from counters the consumer keeps
//! anyway ([`crate::consumer::Stats`]), so nothing is paid per record.
//!
//! Every metric carries the label `group`; the names:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `pg_changestream_records_total` (label `op`) | counter | records delivered by `poll` |
//! | `pg_changestream_polls_total` | counter | polls made |
//! | `pg_changestream_reconnects_total` | counter | replication streams started again after a transient failure |
//! | `pg_changestream_cursor_writes_total` | counter | durable cursor writes (commits) |
//! | `pg_changestream_committed_lsn` | gauge | the smallest committed position over the partitions, as a number |
//! | `pg_changestream_lag_bytes` | gauge | WAL bytes between the last poll's end and the server's WAL end |
//! | `pg_changestream_commit_lag_seconds` | gauge | time between the commit of the last delivered record and its delivery |
//! | `pg_changestream_sink_published_total` | counter | records handed to a sink (repeats after a reconnect count again) |
//! | `pg_changestream_sink_acked_total` | counter | records the broker acknowledged and the group then committed |
//! | `pg_changestream_sink_in_flight` | gauge | messages published and not yet acknowledged |
//! | `pg_changestream_sink_reconnects_total` | counter | times a sink reconnected and published again from the committed cursor |
//! | `pg_changestream_sink_commit_lag_seconds` | gauge | time between a record's database commit and its group commit after the broker's acknowledgement |

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge, Unit};

use crate::consumer::Stats;
use crate::decode::record::Op;

/// Records delivered, by operation (label `op`).
pub const RECORDS: &str = "pg_changestream_records_total";
/// Polls made.
pub const POLLS: &str = "pg_changestream_polls_total";
/// Replication streams started again after a transient failure.
pub const RECONNECTS: &str = "pg_changestream_reconnects_total";
/// Durable cursor writes.
pub const CURSOR_WRITES: &str = "pg_changestream_cursor_writes_total";
/// The group's committed position (smallest over the partitions), as a number.
pub const COMMITTED_LSN: &str = "pg_changestream_committed_lsn";
/// WAL bytes between the last poll's end and the server's WAL end.
pub const LAG_BYTES: &str = "pg_changestream_lag_bytes";
/// Seconds between the commit of the last delivered record and its delivery.
pub const COMMIT_LAG: &str = "pg_changestream_commit_lag_seconds";
/// Records handed to a sink.
pub const SINK_PUBLISHED: &str = "pg_changestream_sink_published_total";
/// Records the broker acknowledged and the group then committed.
pub const SINK_ACKED: &str = "pg_changestream_sink_acked_total";
/// Messages published and not yet acknowledged.
pub const SINK_IN_FLIGHT: &str = "pg_changestream_sink_in_flight";
/// Times a sink reconnected and published again from the committed cursor.
pub const SINK_RECONNECTS: &str = "pg_changestream_sink_reconnects_total";
/// Seconds between a record's database commit and its group commit after the acknowledgement.
pub const SINK_COMMIT_LAG: &str = "pg_changestream_sink_commit_lag_seconds";

/// The operations, in the order of [`ConsumerMetrics::records`].
const OPS: [Op; 7] = [
    Op::Insert,
    Op::Update,
    Op::Delete,
    Op::Truncate,
    Op::Read,
    Op::Message,
    Op::Schema,
];

/// Describes every metric to the installed recorder (help text and unit), so an exporter
/// can print them. Optional; call it after installing the recorder.
pub fn describe() {
    describe_counter!(RECORDS, "Records delivered by poll, by operation.");
    describe_counter!(POLLS, "Polls made.");
    describe_counter!(
        RECONNECTS,
        "Times the replication stream was started again after a transient failure."
    );
    describe_counter!(CURSOR_WRITES, "Durable cursor writes (commits).");
    describe_gauge!(
        COMMITTED_LSN,
        "The group's committed WAL position, as a number."
    );
    describe_gauge!(
        LAG_BYTES,
        Unit::Bytes,
        "WAL bytes between the server's position and the last poll's end."
    );
    describe_gauge!(
        COMMIT_LAG,
        Unit::Seconds,
        "Time between the commit of the last delivered record and its delivery."
    );
    describe_counter!(
        SINK_PUBLISHED,
        "Records handed to the broker (repeats after a reconnect count again)."
    );
    describe_counter!(
        SINK_ACKED,
        "Records the broker acknowledged and the group then committed."
    );
    describe_gauge!(
        SINK_IN_FLIGHT,
        "Messages published and not yet acknowledged."
    );
    describe_counter!(
        SINK_RECONNECTS,
        "Times the sink reconnected and published again from the committed cursor."
    );
    describe_gauge!(
        SINK_COMMIT_LAG,
        Unit::Seconds,
        "Time between the database commit of the last committed record and its group commit \
         after the broker's acknowledgement."
    );
}

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
            records: OPS.map(|op| counter!(RECORDS, "group" => group.clone(), "op" => op.as_str())),
            polls: counter!(POLLS, "group" => group.clone()),
            reconnects: counter!(RECONNECTS, "group" => group.clone()),
            cursor_writes: counter!(CURSOR_WRITES, "group" => group.clone()),
            committed_lsn: gauge!(COMMITTED_LSN, "group" => group.clone()),
            lag_bytes: gauge!(LAG_BYTES, "group" => group.clone()),
            commit_lag: gauge!(COMMIT_LAG, "group" => group),
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

/// A sink driver's handles, registered once for its group.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    pub(crate) published: Counter,
    pub(crate) acked: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) reconnects: Counter,
    commit_lag: Gauge,
}

impl SinkMetrics {
    pub(crate) fn new(group: &str) -> SinkMetrics {
        let group = group.to_owned();
        SinkMetrics {
            published: counter!(SINK_PUBLISHED, "group" => group.clone()),
            acked: counter!(SINK_ACKED, "group" => group.clone()),
            in_flight: gauge!(SINK_IN_FLIGHT, "group" => group.clone()),
            reconnects: counter!(SINK_RECONNECTS, "group" => group.clone()),
            commit_lag: gauge!(SINK_COMMIT_LAG, "group" => group),
        }
    }

    pub(crate) fn commit_lag(&self, lag: Duration) {
        self.commit_lag.set(lag.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics::with_local_recorder;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::lsn::Lsn;

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
