//! Backfill: a table's existing rows delivered as `read` records, chunk by chunk, interleaved
//! with the live stream by watermarks (the DBLog algorithm; DESIGN §4).
//!
//! ```text
//!  backfill session (SQL)                  partition stream (pgoutput)
//!  ──────────────────────                  ───────────────────────────
//!  emit L  ───────────────────────────────▶ … changes … L  (window opens)
//!  BEGIN REPEATABLE READ                     changes to the table: their keys dropped
//!    snapshot S; SELECT next chunk by key    from the chunk
//!    emit H; COMMIT (flushes WAL past H) ─▶ H  → chunk rows not dropped = read records,
//!                                               at H's position in the stream
//! ```
//!
//! Rows whose key changed between L and H are dropped: the stream carries their newer
//! state. The rest had no change between the watermarks, so the snapshot's version of them
//! is their state at H. A chunk whose snapshot missed a transaction the stream delivered
//! before L is selected again (see `window`). The result equals a consistent copy followed
//! by the changes: no row missing, none stale, no change lost.
//!
//! - `plan`: columns, key and chunk select of a table, per partition;
//! - `window`: the drop rule and the visibility check (pure, unit-tested);
//! - `driver`: one partition's backfill — its SQL session, the chunk in flight, the read
//!   records at H;
//! - `progress`: `changestream.backfills`, committed with the cursor.
//!
//! Which tables: those that join a group at `Earliest`, or at `FirstUncommitted` when new to
//! the group. Tables are backfilled one after another, in the order they joined; every
//! partition backfills its own share (the partition's row filter is part of the select).
//! At most one chunk per partition is held in memory.

pub(crate) mod driver;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod window;

pub use progress::BackfillProgress;

/// The prefix of the watermark messages. Every prefix starting with `pg-changestream:` is
/// internal and never delivered to the application.
pub(crate) const INTERNAL_PREFIX: &str = "pg-changestream:backfill";

/// Whether a logical message's prefix is one of this library's own.
pub(crate) fn is_internal(prefix: &str) -> bool {
    prefix.starts_with("pg-changestream:")
}
