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
mod round;
mod route;
mod settings;
mod spec;
mod stats;
mod tables;

pub use builder::ConsumerBuilder;
pub use bundle::{Event, Message, MessageBundle};
pub use location::StartLocation;
pub use member::Consumer;
pub use settings::CommitMode;
pub use spec::TableSpec;
pub use stats::Stats;

pub use crate::decode::record::{
    BeforeImage, ColumnList, EventId, Image, Op, PartitionId, Record, SchemaChange, TxnInfo,
    UnchangedColumns,
};
pub use crate::decode::relation::{Column, Projection, Relation};
pub use crate::decode::types::{oid, ScalarKind, ValueKind};
pub use crate::decode::value::{Date, Timestamp, Value, UNCHANGED_TOAST};
pub use crate::snapshot::BackfillProgress;

// One-shot forms of the admin facade's calls, where a consumer's user looks for them.
pub use crate::admin::{delete_group, disable_change_streaming, enable_change_streaming};
