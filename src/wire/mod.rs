//! The replication connection: startup with `replication=database`, authentication, TLS,
//! simple queries and the CopyBoth streaming sub-protocol, on top of [`crate::protocol`].
//!
//! Upstream tokio-postgres cannot run `START_REPLICATION` (it has no CopyBoth support), so
//! this module speaks the protocol itself, reusing postgres-protocol's frontend encoders
//! and SCRAM implementation and [`crate::protocol::frame`] for the backend side. Ordinary
//! SQL goes through tokio-postgres ([`ConnectConfig::connect_sql`](crate::ConnectConfig::connect_sql)) with the same settings
//! and TLS policy.
//!
//! ```no_run
//! # async fn demo() -> pg_changestream::Result<()> {
//! use pg_changestream::wire::{ReplicationConnection, SlotOptions, StartOptions};
//! use pg_changestream::ConnectConfig;
//!
//! let config: ConnectConfig =
//!     "postgres://cdc:secret@db.example/app?sslmode=verify-full&sslrootcert=ca.pem".parse()?;
//! let mut conn = ReplicationConnection::connect(&config).await?;
//! let slot = conn.create_logical_slot("my_slot", &SlotOptions::new()).await?;
//! let mut stream = conn
//!     .start_replication("my_slot", slot.consistent_point, &StartOptions::new().publication("my_pub"))
//!     .await?;
//! while let Some(data) = stream.next().await? {
//!     // `data.data` is one pgoutput message. After a transaction's Commit has been
//!     // processed durably, confirm its end LSN so the server can recycle WAL:
//!     // stream.set_flush_position(commit_end_lsn);
//!     let _ = data;
//! }
//! # Ok(()) }
//! ```

// The replication protocol's slot commands, IDENTIFY_SYSTEM and the finer status updates are
// complete and tested (tests/wire.rs) though the library itself creates slots through SQL:
// without the test harness nothing here names them.
#![cfg_attr(not(any(test, feature = "testing")), allow(dead_code, unused_imports))]

mod auth;
mod connection;
mod error_response;
mod stream;
mod transport;

pub use crate::version::MIN_SERVER_VERSION_NUM;
pub use connection::{
    CreatedSlot, ReplicationConnection, Row, SlotOptions, SnapshotAction, SystemIdentity,
    PINNED_OPTIONS,
};
pub use stream::{ReplicationStream, StartOptions, DEFAULT_STATUS_INTERVAL};
