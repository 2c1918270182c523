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

use metrics::{describe_counter, describe_gauge, Unit};

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
