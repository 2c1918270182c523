//! Pure parsing and encoding of the bytes PostgreSQL sends on a replication connection.
//!
//! No I/O and no async here, so every parser can be fuzzed and unit-tested from hand-built
//! bytes. Three layers, outermost first:
//!
//! - [`frame`]: backend message framing (`tag`, `i32` length, body), including the
//!   `CopyBothResponse` that upstream tokio-postgres does not know;
//! - [`replication`]: the CopyData payloads of the streaming replication protocol —
//!   XLogData `w`, primary keepalive `k`, and our standby status update `r`;
//! - [`pgoutput`]: the logical replication messages the built-in `pgoutput` plugin puts
//!   inside XLogData, protocol versions 1 to 4.
//!
//! Every parser works on [`bytes::Bytes`] and slices it; nothing is copied. Every length
//! read from the wire is checked against what remains before it is used, so malformed input
//! is a [`DecodeError`], never a panic or a huge allocation.
//!
//! See the PostgreSQL docs: "Frontend/Backend Protocol — Message Formats", "Streaming
//! Replication Protocol" and "Logical Replication Message Formats".

pub mod frame;
pub mod pgoutput;
mod reader;
pub mod replication;

/// Why bytes could not be decoded. Small and allocation-free: parsers sit on the hot path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended before a field it announces.
    #[error("{what} truncated: needs {needed} more bytes, {remaining} remain")]
    Truncated {
        /// The field or message being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A length or count field is negative or larger than the message can hold.
    #[error("invalid {what}: {value}")]
    BadLength {
        /// The length or count field.
        what: &'static str,
        /// The value read.
        value: i64,
    },
    /// A message tag (or sub-tag) this decoder does not know.
    #[error("unknown {family} tag {:?}", char::from(*tag))]
    UnknownTag {
        /// The message family (`backend message`, `pgoutput message`, `tuple column`...).
        family: &'static str,
        /// The tag byte.
        tag: u8,
    },
    /// A C string with no terminating NUL before the end of the message.
    #[error("{what} is not NUL-terminated")]
    UnterminatedString {
        /// The field being read.
        what: &'static str,
    },
    /// A string field that is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes left over after a message that should have ended.
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The message.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The stream ended in the middle of a frame (as opposed to a clean end between frames).
    #[error("stream ended inside a frame ({buffered} bytes of it received)")]
    TornFrame {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
}
