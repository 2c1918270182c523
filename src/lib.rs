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
//! The read path is layered one way: [`protocol`] (pure byte parsing, no I/O) ←
//! [`wire`] (the replication connection) ← [`decode`] (values, relations, transactions) ←
//! [`consumer`] (groups, polls, commits), with [`group`] keeping the group state in the
//! database.
//! See `docs/architecture.md` for the mapping of every concept onto PostgreSQL.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod admin;
pub mod calendar;
pub mod config;
pub mod consumer;
pub mod decode;
pub mod error;
pub mod group;
pub mod lsn;
pub mod protocol;
pub mod quote;
pub mod sink;
pub mod snapshot;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod version;
pub mod wire;

pub use config::ConnectConfig;
pub use consumer::{
    CommitMode, Consumer, ConsumerBuilder, Event, Message, MessageBundle, StartLocation,
};
pub use error::{Error, Result, ServerError};
pub use lsn::Lsn;
