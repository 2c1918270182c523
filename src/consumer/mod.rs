//! The consumer-group API: [`ConsumerBuilder`] → [`Consumer`] → `poll` → [`MessageBundle`]
//! → [`Message`] → [`Event`] → [`Record`].
//!
//! ```text
//!  ConsumerBuilder::build ── group (slot + publication per partition), tables, cursor
//!        │
//!  Consumer::poll ── per partition: PartitionReader ── ChangeStream (background task)
//!        │              filter: tables, start locations, operations, message prefixes
//!        ▼
//!  MessageBundle ── commit(): durable cursor in changestream.cursors + slot flush position
//! ```
//!
//! **Delivery guarantee.** At least once, in commit order per partition, with event ids
//! (`<commit_lsn>:<index>`) that are the same on every delivery, so a consumer can
//! deduplicate. What is committed is never delivered to the group again — not after a
//! crash of the consumer, nor of the server (the durable cursor). Automatic mode alone
//! narrows this for speed: its durable cursor trails by at most
//! [`ConsumerBuilder::auto_commit_interval`] (plus one write), so a crash may deliver again
//! what it committed within that time. What was polled but not committed is delivered
//! again after a reconnect, a [`Consumer::reset`], or to the group's next consumer.
//!
//! **Idle groups never pin WAL.** When nothing the application received is uncommitted,
//! the slot's flush position follows the server's WAL end (from keepalives), so a group
//! reading quiet tables on a busy server lets the server recycle its WAL.
//!
//! **Start locations** are per table; see [`StartLocation`].
//!
//! **Failures.** Transient ones (connection lost, server restart) are retried with backoff
//! from the committed cursor, up to the reconnect timeout. Definite ones end the poll with
//! an error that says what happened: the slot was invalidated
//! ([`Error::is_slot_invalidated`](crate::Error::is_slot_invalidated)), the group, slot or
//! publication was deleted ([`Error::is_not_found`](crate::Error::is_not_found)),
//! permission denied ([`Error::is_server_setup`](crate::Error::is_server_setup)).

mod builder;
mod bundle;
mod commit;
mod filter;
mod location;
mod member;
mod position;
mod reader;
mod spec;
mod stats;
mod tables;

pub use builder::{CommitMode, ConsumerBuilder};
pub use bundle::{Event, Message, MessageBundle};
pub use location::StartLocation;
pub use member::Consumer;
pub use spec::TableSpec;
pub use stats::Stats;

pub use crate::decode::record::{BeforeImage, EventId, Image, Op, Record, SchemaChange};
pub use crate::decode::relation::Projection;
pub use crate::snapshot::BackfillProgress;

use crate::error::Result;
use crate::group::{identity, partition, table::TableName};
use crate::wire::ConnectConfig;

/// Enables change streaming for `table` (`name` or `schema.name`): checks `wal_level`, that
/// the table exists, and that its UPDATE and DELETE keep working once published. With
/// `before_images`, sets `REPLICA IDENTITY FULL`; without, restores the table's original
/// identity.
///
/// # Errors
/// [`Error::is_server_setup`](crate::Error::is_server_setup) when `wal_level` is not
/// logical; [`Error::is_not_found`](crate::Error::is_not_found) for a missing table;
/// [`Error::is_config`](crate::Error::is_config) for a table without a key and without
/// before-images.
pub async fn enable_change_streaming(
    config: &ConnectConfig,
    table: &str,
    before_images: bool,
) -> Result<()> {
    let table: TableName = table.parse()?;
    let mut client = config.connect_sql().await?;
    identity::enable_change_streaming(&mut client, &table, before_images).await
}

/// Disables change streaming for `table`, restoring its original replica identity.
///
/// # Errors
/// The table is not enabled, or a consumer group still reads it (remove it from the group
/// first).
pub async fn disable_change_streaming(config: &ConnectConfig, table: &str) -> Result<()> {
    let table: TableName = table.parse()?;
    let mut client = config.connect_sql().await?;
    identity::disable_change_streaming(&mut client, &table).await
}

/// Deletes a consumer group: its slots, publications and state. Without `force` it refuses
/// while a consumer is attached; with `force` it stops those consumers (their next poll
/// fails with [`Error::is_not_found`](crate::Error::is_not_found)).
///
/// # Errors
/// The group does not exist, or a consumer is attached and `force` is false.
pub async fn delete_group(config: &ConnectConfig, group_id: &str, force: bool) -> Result<()> {
    let mut client = config.connect_sql().await?;
    partition::delete_group(&mut client, group_id, force).await
}
