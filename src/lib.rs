//! # pg-changestream
//!
//! Change streams from PostgreSQL (15–18) for applications: attach to an existing database,
//! read a logical replication slot with the built-in `pgoutput` plugin, and receive every
//! committed row change — with before-images when the table has `REPLICA IDENTITY FULL`.
//!
//! ## Concepts
//!
//! - A **consumer group** reads a set of tables; its committed cursor is the replication
//!   slot's `confirmed_flush_lsn`, mirrored durably in the `changestream` schema. Several
//!   groups read the same tables independently.
//! - A **start location** says where a table new to the group begins: the first uncommitted
//!   change, the earliest state (existing rows first), the latest, a commit time or an LSN.
//! - `poll(limit, wait)` returns a **bundle** of **messages** (one table each) holding
//!   **events** (one transaction's changes to that table) holding **records** (one row
//!   change: operation, key, current image, before-image, event id).
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use pg_changestream::consumer::{enable_change_streaming, ConsumerBuilder, StartLocation};
//!
//! # async fn run() -> pg_changestream::Result<()> {
//! let config: pg_changestream::ConnectConfig = "postgres://app@localhost/shop".parse()?;
//! enable_change_streaming(&config, "public.orders", true).await?; // before-images on
//! let mut consumer = ConsumerBuilder::new(config, "billing")
//!     .add_table("public.orders", StartLocation::FirstUncommitted)
//!     .build()
//!     .await?;
//! loop {
//!     let bundle = consumer.poll(1000, Duration::from_secs(1)).await?;
//!     for event in bundle.events() {
//!         for record in event.records() {
//!             println!("{} {:?} {}", record.event_id(), event.table(), record.op());
//!         }
//!     }
//!     // Automatic commit mode (the default): the next poll commits this bundle.
//! }
//! # }
//! ```
//!
//! ## Layout
//!
//! The public surface is small on purpose: [`consumer`] (groups, polls, commits, records and
//! their values), [`admin`] (enable, disable, groups, status, delete), [`sink`] (publishing
//! a group into a broker), [`stream`] (one slot's decoded changes, without groups),
//! [`protocol`] (pure pgoutput parsing), [`json`] (the JSON line), [`metrics`] (names), and
//! the connection settings, errors and LSNs at the root. The layers beneath — the
//! replication connection, the decoder's caches, the group state in the database, the
//! backfill — are private; `docs/architecture.md` maps every concept onto PostgreSQL.

#![warn(missing_docs)]
#![deny(unsafe_code)]

/// Declares a module private to the crate, public (and hidden from the docs) only with the
/// `testing` or `fuzzing` feature: the integration tests, benchmarks and fuzz targets drive
/// the layers beneath the API directly; a library user's build cannot name them.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(any(feature = "testing", feature = "fuzzing"))]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(any(feature = "testing", feature = "fuzzing")))]
        mod $name;
    )*};
}

pub mod admin;
pub mod calendar;
pub mod consumer;
pub mod json;
pub mod metrics;
pub mod protocol;
pub mod sink;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

internal!(config, decode, error, group, lsn, quote, snapshot, wire);
mod version;

pub use config::env::LIBPQ_VARIABLES;
pub use config::{ConnectConfig, SslMode};
pub use error::{Error, Result, ServerError};
pub use group::table::TableName;
pub use lsn::Lsn;
