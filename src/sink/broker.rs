//! The contract between the driver and a broker: [`Sink`] (the module docs of
//! [`crate::sink`] say what exactly once takes).

use std::future::Future;

use super::error::SinkError;
use super::outgoing::Outgoing;

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
    /// [`SinkError::Unavailable`] when the connection is lost or sending timed out;
    /// [`SinkError::Config`] when the broker can never take a message of the batch (too
    /// big for it), before any of the batch is sent.
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
    /// [`SinkError::Config`] when the broker refused a message for a reason no new
    /// connection changes (a permission): the driver stops.
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
