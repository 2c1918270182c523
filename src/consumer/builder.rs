//! [`ConsumerBuilder`]: what a consumer reads and how it commits.

use std::path::PathBuf;
use std::time::Duration;

use super::location::StartLocation;
use super::member::Consumer;
use super::settings::{CommitMode, Settings};
use super::spec::TableSpec;
use crate::config::ConnectConfig;
use crate::decode::record::Op;
use crate::error::Result;

/// Builds a [`Consumer`] of a consumer group.
///
/// ```no_run
/// # async fn example() -> pg_changestream::Result<()> {
/// use std::time::Duration;
/// use pg_changestream::consumer::{ConsumerBuilder, StartLocation};
///
/// let config = "postgres://app@localhost/shop".parse()?;
/// let mut consumer = ConsumerBuilder::new(config, "billing")
///     .add_table("public.orders", StartLocation::FirstUncommitted)
///     .build()
///     .await?;
/// let bundle = consumer.poll(1000, Duration::from_secs(1)).await?;
/// for record in bundle.records() {
///     println!("{} {}", record.op(), record.event_id());
/// }
/// consumer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    settings: Settings,
}

impl ConsumerBuilder {
    /// A consumer of group `group_id` (1 to 63 characters, any but control characters) on
    /// the database `config` connects to.
    pub fn new(config: ConnectConfig, group_id: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            settings: Settings::new(config, group_id.into()),
        }
    }

    /// Reads `table` (`name`, `schema.name`, or quoted SQL identifiers), starting at
    /// `location` if the table is new to the group (or `force_reset` is set). The table must
    /// be enabled for change streaming. Tables already in the group stay in it; see
    /// [`ConsumerBuilder::remove_table`].
    /// A table with a row filter or projection stored keeps them.
    pub fn add_table(mut self, table: impl Into<String>, location: StartLocation) -> Self {
        self.settings.add.push(TableSpec {
            table: table.into(),
            location,
            settings: None,
        });
        self
    }

    /// Reads a table as `spec` says: start location as for
    /// [`ConsumerBuilder::add_table`], plus a row filter (applied by PostgreSQL) and a
    /// projection (columns dropped before records are made). They are stored with the
    /// group's table and replace what was stored: for a table already in the group, a new
    /// filter applies to changes committed after this build (rows already in the table are
    /// not read again; add it at `Earliest` with [`ConsumerBuilder::force_reset`] for that),
    /// a new projection to the streams this consumer starts. Members already running keep
    /// the projection they started with until they reconnect.
    pub fn add_table_with(mut self, spec: TableSpec) -> Self {
        self.settings.add.push(spec);
        self
    }

    /// Takes `table` out of the group.
    pub fn remove_table(mut self, table: impl Into<String>) -> Self {
        self.settings.remove.push(table.into());
        self
    }

    /// Automatic (default) or manual commits.
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.settings.commit_mode = mode;
        self
    }

    /// Automatic mode: how far the durable cursor may trail what is committed, as the
    /// interval between its writes (1 s by default; like Kafka's `auto.commit.interval.ms`,
    /// whose default is 5 s).
    ///
    /// Each poll commits the previous one at once to the replication slot, without SQL; the
    /// cursor row in `changestream.cursors` is written in the background, at most once per
    /// interval, always the newest position, one write at a time. It matters after a server
    /// crash, when the slot's position falls back to the last checkpoint: the group then
    /// starts at the cursor and delivers again what was committed in the last interval (plus
    /// the duration of one write). After a crash of the consumer alone the slot still holds
    /// its position: only what the server had not yet been told comes again — the last poll's
    /// records and, at worst, those committed since the last cursor write. Zero writes as
    /// often as one write after the other allows. [`Consumer::close`] and hand-overs write
    /// the cursor before they return, whatever the interval.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.settings.auto_commit_interval = interval;
        self
    }

    /// How long the application may go between polls before the consumer counts as gone
    /// (its membership heartbeat is that old); 30 s by default.
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.max_poll_interval = interval;
        self
    }

    /// The operations to deliver, any of insert, update, delete and truncate (all by
    /// default). Records of other operations are passed over and committed with the rest.
    ///
    /// A backfill drops a chunk's row when the row changed while the chunk was read (the
    /// stream carries its newer state, see `docs/architecture.md`): a backfilled table read
    /// without updates or deletes can therefore miss rows changed during their chunk.
    pub fn operations(mut self, ops: &[Op]) -> Self {
        self.settings.operations = ops.to_vec();
        self
    }

    /// Also delivers logical messages (`pg_logical_emit_message`) with this prefix.
    pub fn message_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.message_prefixes.push(prefix.into());
        self
    }

    /// Applies the start locations of [`ConsumerBuilder::add_table`] to tables already in
    /// the group too, instead of resuming them at the group's committed cursor.
    pub fn force_reset(mut self, yes: bool) -> Self {
        self.settings.force_reset = yes;
        self
    }

    /// How long transient failures (server restart, network) are retried before a poll
    /// gives up with the error; 60 s by default.
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.reconnect_timeout = timeout;
        self
    }

    /// Bytes of a large (streamed) transaction's changes held in memory before they spill
    /// to disk (16 MiB by default).
    pub fn transaction_memory(mut self, bytes: usize) -> Self {
        self.settings.decoder.memory_limit = bytes;
        self
    }

    /// Where a large transaction's changes spill to (the system's temporary directory by
    /// default).
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.decoder.spill_dir = Some(dir.into());
        self
    }

    /// Changes buffered between the connection task and `poll` (8192 by default).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.settings.queue_capacity = capacity.max(1);
        self
    }

    /// The number of partitions of a group created by this build (1 by default, at most
    /// 64). A partition is a replication slot with its own walsender; each table is spread
    /// over the partitions by a hash of its key, so the changes of one key always come
    /// through one partition, in commit order, and the consumers of the group share the
    /// partitions between them (each partition read by one consumer at a time).
    ///
    /// Fixed at creation: building an existing group with another count is an error (build
    /// without `partitions` to use the group as it is). Every slot decodes all the
    /// database's WAL, so partitions cost server CPU; they pay off when the consumers, not
    /// the server, are the bottleneck.
    ///
    /// With more than one partition, each table needs a primary key (or a replica identity
    /// index) of built-in, hashable types, and is not itself partitioned; a key update that
    /// moves a row to another partition arrives as a delete of the old key and an insert of
    /// the new one. Truncates arrive through every partition; logical messages through
    /// partition 0.
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.settings.partitions = Some(i32::from(partitions));
        self
    }

    /// Creates the group's slots as failover slots (PostgreSQL 17+), which a standby set up
    /// for slot synchronisation (`sync_replication_slots`) keeps in step, so the group can
    /// continue on it after a failover. Only applies when this build creates the group.
    pub fn failover(mut self, yes: bool) -> Self {
        self.settings.failover = yes;
        self
    }

    /// Rows per backfill chunk (4096 by default). Each chunk is one select and two
    /// watermarks; a partition holds at most one chunk in memory. Larger chunks read
    /// faster; smaller ones hold less memory and drop fewer rows to concurrent writes.
    pub fn backfill_chunk_size(mut self, rows: usize) -> Self {
        self.settings.backfill_chunk_size = rows.max(1);
        self
    }

    /// Connects, creates the group (slot and publication) if it is new, applies the table
    /// list, and starts streaming from the group's committed cursor.
    ///
    /// # Errors
    /// [`Error::is_config`](crate::Error::is_config) for a bad group id or table name, a
    /// table not enabled for change streaming, or a group left without tables;
    /// [`Error::is_server_setup`](crate::Error::is_server_setup) when `wal_level` is not
    /// logical or slots run out; [`Error::is_slot_invalidated`](crate::Error::is_slot_invalidated)
    /// when the group's slot lost its WAL; connection errors.
    pub async fn build(self) -> Result<Consumer> {
        Consumer::build(self.settings).await
    }
}
