//! Sinks: publishing a consumer group's records into a durable broker, exactly once.
//!
//! ```text
//!   Consumer (manual commit) ──poll──▶ driver ──encode──▶ Sink::publish ──▶ broker
//!          ▲                              │                    │ acks, in order
//!          └──── commit (bundle) ◀────────┴──── Sink::settle ◀─┘
//! ```
//!
//! The driver ([`run`]) polls the group in manual commit mode, turns each record into an
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
//! from the group's committed cursor ([`Consumer::reset`](crate::consumer::Consumer::reset)): the
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
//!   [`Outgoing::headers`] as record headers ([`Headers::iter`]) and the id as a
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

#[cfg(feature = "jetstream")]
mod ack;
mod broker;
mod driver;
mod error;
#[cfg(feature = "jetstream")]
mod jetstream;
#[cfg(feature = "jetstream")]
mod nats_conn;
#[cfg(feature = "jetstream")]
mod nats_handshake;
// Public (and hidden) with `fuzzing`, for the fuzz target of its reader, as `internal!` in
// lib.rs does for the crate's own layers; pure, so it needs no `jetstream` crates for that.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod nats_wire;
#[cfg(all(feature = "jetstream", not(feature = "fuzzing")))]
mod nats_wire;
mod outgoing;
mod progress;
#[cfg(feature = "jetstream")]
mod refusal;
mod subject;

pub use broker::Sink;
pub use driver::{run, DriverOptions, Outcome};
pub use error::SinkError;
#[cfg(feature = "jetstream")]
pub use jetstream::{JetStreamConfig, JetStreamSink};
#[cfg(feature = "jetstream")]
pub use nats_conn::Auth;
pub use outgoing::{Encoder, Headers, Outgoing, COMMIT_LSN, EVENT_ID, OP, TABLE};
pub use progress::ProgressRow;
pub use subject::{Subjects, DEFAULT_TEMPLATE};
