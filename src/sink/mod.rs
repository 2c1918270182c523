//! Sinks: publishing a consumer group's records into a durable broker, exactly once.
//!
//! ```text
//!   Consumer (manual commit) ──poll──▶ driver ──encode──▶ Sink::publish ──▶ broker
//!          ▲                              │                    │ acks, in order
//!          └──── commit (bundle) ◀────────┴──── Sink::settle ◀─┘
//! ```
//!
//! The [`driver`] polls the group in manual commit mode, turns each record into an
//! [`Outgoing`] message (subject, broker-side de-duplication id, headers, payload) and hands
//! whole batches to a [`Sink`] without waiting: many messages are in flight at once.
//! [`Sink::settle`] reports how many of them, counted from the first, the broker has made
//! durable; the driver commits a poll's bundle only once every message up to its last record
//! is durable. So the group's cursor never passes an unacknowledged record (at least once),
//! and because every message carries an id derived from the group and the record's
//! [`EventId`](crate::decode::record::EventId), what is published again after a crash or a
//! lost acknowledgement is dropped by the broker (exactly once into the broker, within its
//! de-duplication window).
//!
//! On any failure the driver asks the sink to [`reconnect`](Sink::reconnect) and resumes
//! from the group's committed cursor ([`Consumer::reset`](crate::Consumer::reset)): the
//! repeats are removed by the broker's de-duplication, and nothing is ever sent out of order
//! on one connection, so the order per subject is the commit order.
//!
//! `jetstream::JetStreamSink` (feature `jetstream`) is the NATS JetStream implementation.
//!
//! # What a Kafka sink would implement
//!
//! A second sink is the [`Sink`] trait and nothing else; the driver, subjects (topics) and
//! payloads stay. For Kafka (design, not code):
//!
//! - **Connection**: an idempotent producer (`enable.idempotence=true`, `acks=all`,
//!   `max.in.flight.requests.per.connection` ≤ 5) — the producer id and per-partition
//!   sequence numbers give Kafka's own in-order, no-duplicate delivery per producer session.
//! - **publish**: `produce()` each [`Outgoing`] with the topic from [`Outgoing::subject`]
//!   (or a fixed topic with the subject as a header), the row key as the record key (so one
//!   key stays in one Kafka partition, which is what keeps per-key order; the encoder would
//!   carry it, as it carries [`Outgoing::key_hash`] for key-partitioned subjects),
//!   [`Outgoing::headers`] as record headers ([`outgoing::Headers::iter`]) and the id as a
//!   header too. Returns when the messages are queued in the producer.
//! - **settle**: await the delivery reports in order; the count of the contiguous prefix
//!   reported as written is the durable count.
//! - **reconnect**: close the producer and open a new one. Kafka has no de-duplication by a
//!   caller's id across producer sessions (a new producer id starts fresh sequences), so the
//!   repeats after a restart are *not* dropped by the broker: a Kafka sink is at least once,
//!   and exactly once only for consumers that skip ids they have seen. The alternative is a
//!   transactional producer (`transactional.id` = the group) that writes the group's cursor
//!   into a Kafka topic inside the same transaction as the records — then the cursor of
//!   record would live in Kafka, not in the `changestream` schema, which is a larger change.
//!
//! A sink must never acknowledge message *n* before every message before it: `settle`
//! counts a prefix, never a set.

pub mod driver;
#[cfg(feature = "jetstream")]
pub mod jetstream;
pub mod outgoing;
pub mod progress;
pub mod subject;

use std::future::Future;

pub use driver::{run, DriverOptions, Outcome};
pub use outgoing::Outgoing;

/// What can go wrong while publishing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is wrong and retrying cannot help (bad credentials, a stream that
    /// cannot be created, subjects owned by another stream); the message names the fix.
    #[error("{0}")]
    Config(String),
    /// The broker is unreachable, timed out or refused a message; reconnecting may help.
    #[error("{0}")]
    Unavailable(String),
    /// Reading or committing the group failed.
    #[error(transparent)]
    Source(#[from] crate::Error),
}

impl SinkError {
    /// Whether the user must change something (exit status 2 in the command-line tool).
    pub fn is_config(&self) -> bool {
        match self {
            SinkError::Config(_) => true,
            SinkError::Unavailable(_) => false,
            SinkError::Source(e) => e.is_config() || e.is_auth() || e.is_not_found(),
        }
    }
}

/// A durable destination for records, with acknowledgements in order.
///
/// Messages are counted from 0 since the last [`connect`](Sink::reconnect): `publish` hands
/// them over in order without waiting for the broker; `settle` says how many of them, from
/// the first, are durable. The driver relies on three properties:
///
/// 1. the durable count is a prefix: message *n* is never reported before all before it;
/// 2. what is handed over on one connection reaches the broker in order, so re-publishing
///    from an earlier point after [`reconnect`](Sink::reconnect) cannot reorder what the
///    broker stored (its de-duplication drops the repeats);
/// 3. after `reconnect`, nothing handed over before it is sent any more.
pub trait Sink {
    /// Hands `batch` to the broker in order; returns once it is sent or queued on the
    /// connection, without waiting for acknowledgements.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when the connection is lost or sending timed out.
    fn publish(
        &mut self,
        batch: Vec<Outgoing>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Waits until at most `keep` published messages are unacknowledged; returns how many
    /// messages since the last reconnect are durable (a prefix of them).
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when an acknowledgement is negative or does not come in
    /// time; what was published is then of unknown fate and must be published again.
    fn settle(&mut self, keep: usize) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Messages published and not yet acknowledged.
    fn in_flight(&self) -> usize;

    /// Drops the connection (and everything unacknowledged on it) and opens a new one; the
    /// counts start again from 0.
    ///
    /// # Errors
    /// The broker cannot be reached ([`SinkError::Unavailable`], retried by the driver) or
    /// refuses the configuration ([`SinkError::Config`]).
    fn reconnect(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;
}
