//! The CopyData payloads of the streaming replication protocol.
//!
//! After `START_REPLICATION` the connection is in copy-both mode and every CopyData message
//! carries one of these (PostgreSQL docs, "Streaming Replication Protocol"):
//!
//! ```text
//! server → client   'w' XLogData          wal_start, wal_end, send_time, data…
//!                   'k' PrimaryKeepalive  wal_end, send_time, reply_requested
//! client → server   'r' StandbyStatusUpdate  write, flush, apply, client_time, reply
//! ```
//!
//! On a logical slot the `data` of one XLogData is exactly one output-plugin message (for
//! pgoutput: one [`super::pgoutput`] message), so it is handed on as a zero-copy slice.
//!
//! Two protocol facts shape the callers more than the bytes do:
//! - A keepalive with `reply_requested` must be answered at once (with a status update),
//!   whatever the application is doing, or the server ends the stream after
//!   `wal_sender_timeout`.
//! - A keepalive's `wal_end` moves even when nothing is published (PostgreSQL 15+ skips
//!   empty transactions), so an idle consumer can confirm it and let the server recycle WAL.
//!
//! Timestamps on this protocol are microseconds since the PostgreSQL epoch,
//! 2000-01-01 00:00:00 UTC; [`pg_time_to_system`] and [`system_to_pg_time`] convert.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};

use super::reader::Reader;
use super::DecodeError;
use crate::Lsn;

/// Tags of the replication CopyData payloads.
pub mod tag {
    /// XLogData (server → client).
    pub const XLOG_DATA: u8 = b'w';
    /// Primary keepalive (server → client).
    pub const PRIMARY_KEEPALIVE: u8 = b'k';
    /// Standby status update (client → server).
    pub const STANDBY_STATUS_UPDATE: u8 = b'r';
}

/// Seconds from the Unix epoch (1970-01-01) to the PostgreSQL epoch (2000-01-01), both UTC.
pub const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// A message the server sends inside CopyData on a replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationMessage {
    /// WAL data; on a logical slot, one output-plugin message.
    XLogData(XLogData),
    /// A heartbeat carrying the server's WAL end, possibly asking for a reply.
    PrimaryKeepalive(PrimaryKeepalive),
}

/// An XLogData (`w`) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// Where this message's data starts in the WAL. For logical decoding, the LSN of the
    /// change (for a Commit: of the commit record); 0/0 for some messages.
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending, microseconds since 2000-01-01 UTC.
    pub send_time: i64,
    /// The payload, a zero-copy slice of the CopyData body.
    pub data: Bytes,
}

/// A primary keepalive (`k`) message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending, microseconds since 2000-01-01 UTC.
    pub send_time: i64,
    /// The server wants a status update now (it is nearing `wal_sender_timeout`).
    pub reply_requested: bool,
}

/// A standby status update (`r`): the client's progress, sent to the server.
///
/// For a logical slot, `flush` is what matters: the server advances the slot's
/// `confirmed_flush_lsn` to it and may then recycle older WAL. Keep all three monotonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Position received and written (the docs' "last WAL byte + 1").
    pub write: Lsn,
    /// Position durably processed; the slot's confirmed position follows it.
    pub flush: Lsn,
    /// Position applied.
    pub apply: Lsn,
    /// Client clock, microseconds since 2000-01-01 UTC (see [`system_to_pg_time`]).
    pub client_time: i64,
    /// Ask the server to reply at once (with a keepalive).
    pub reply_requested: bool,
}

/// Parses one CopyData body received on a replication stream.
///
/// # Errors
/// [`DecodeError::UnknownTag`] for a tag other than `w` or `k`; [`DecodeError::Truncated`]
/// when a header field is cut short; [`DecodeError::TrailingBytes`] after a keepalive.
pub fn parse(body: Bytes) -> Result<ReplicationMessage, DecodeError> {
    let mut r = Reader::new(body);
    match r.u8("replication message tag")? {
        tag::XLOG_DATA => {
            let wal_start = Lsn::new(r.u64("xlogdata wal start")?);
            let wal_end = Lsn::new(r.u64("xlogdata wal end")?);
            let send_time = r.i64("xlogdata send time")?;
            Ok(ReplicationMessage::XLogData(XLogData {
                wal_start,
                wal_end,
                send_time,
                data: r.rest(),
            }))
        }
        tag::PRIMARY_KEEPALIVE => {
            let wal_end = Lsn::new(r.u64("keepalive wal end")?);
            let send_time = r.i64("keepalive send time")?;
            let reply_requested = r.u8("keepalive reply flag")? != 0;
            r.finish("primary keepalive")?;
            Ok(ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end,
                send_time,
                reply_requested,
            }))
        }
        other => Err(DecodeError::UnknownTag {
            family: "replication message",
            tag: other,
        }),
    }
}

impl StandbyStatusUpdate {
    /// Length of the encoded payload: tag, three LSNs, the clock and the reply flag.
    pub const ENCODED_LEN: usize = 1 + 8 * 4 + 1;

    /// Appends the CopyData payload (not the CopyData frame around it) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(Self::ENCODED_LEN);
        buf.put_u8(tag::STANDBY_STATUS_UPDATE);
        buf.put_u64(self.write.as_u64());
        buf.put_u64(self.flush.as_u64());
        buf.put_u64(self.apply.as_u64());
        buf.put_i64(self.client_time);
        buf.put_u8(u8::from(self.reply_requested));
    }
}

/// The PostgreSQL epoch, 2000-01-01 00:00:00 UTC.
pub fn pg_epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECS)
}

/// Converts a PostgreSQL timestamp (microseconds since 2000-01-01 UTC, as in commit times
/// and the replication protocol's clocks) to a [`SystemTime`].
///
/// Returns `None` when the platform's `SystemTime` cannot represent it (never for the
/// commit times of a real server; `-infinity`/`infinity` are `i64::MIN`/`i64::MAX` and
/// only appear in column values, which are text).
pub fn pg_time_to_system(micros: i64) -> Option<SystemTime> {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        pg_epoch().checked_add(offset)
    } else {
        pg_epoch().checked_sub(offset)
    }
}

/// Converts a [`SystemTime`] to a PostgreSQL timestamp (microseconds since 2000-01-01 UTC),
/// truncating sub-microsecond precision and saturating at the `i64` range.
pub fn system_to_pg_time(time: SystemTime) -> i64 {
    let saturate = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    match time.duration_since(pg_epoch()) {
        Ok(after) => saturate(after),
        Err(before) => saturate(before.duration()).saturating_neg(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn xlogdata(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![b'w'];
        b.extend_from_slice(&0x0000_0001_0000_0010u64.to_be_bytes());
        b.extend_from_slice(&0x0000_0001_0000_0020u64.to_be_bytes());
        b.extend_from_slice(&777i64.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn xlogdata_payload_is_a_zero_copy_slice() {
        let body = Bytes::from(xlogdata(b"Bpayload"));
        let ReplicationMessage::XLogData(x) = parse(body.clone()).unwrap() else {
            panic!("not xlogdata");
        };
        assert_eq!(x.wal_start, Lsn::new(0x1_0000_0010));
        assert_eq!(x.wal_end, Lsn::new(0x1_0000_0020));
        assert_eq!(x.send_time, 777);
        assert_eq!(&x.data[..], b"Bpayload");
        // Same memory as the body: nothing was copied.
        assert_eq!(x.data.as_ptr(), body[25..].as_ptr());
    }

    #[test]
    fn xlogdata_may_be_empty() {
        let ReplicationMessage::XLogData(x) = parse(Bytes::from(xlogdata(b""))).unwrap() else {
            panic!("not xlogdata");
        };
        assert!(x.data.is_empty());
    }

    #[test]
    fn keepalive_fields_and_reply_flag() {
        for (flag, expected) in [(0u8, false), (1, true)] {
            let mut b = vec![b'k'];
            b.extend_from_slice(&0x2A_0000_0000u64.to_be_bytes());
            b.extend_from_slice(&(-5i64).to_be_bytes());
            b.push(flag);
            assert_eq!(
                parse(Bytes::from(b)),
                Ok(ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end: Lsn::new(0x2A_0000_0000),
                    send_time: -5,
                    reply_requested: expected,
                }))
            );
        }
    }

    #[test]
    fn keepalive_with_trailing_bytes_is_rejected() {
        let mut b = vec![b'k'];
        b.extend_from_slice(&[0; 17]);
        b.push(9);
        assert_eq!(
            parse(Bytes::from(b)),
            Err(DecodeError::TrailingBytes {
                what: "primary keepalive",
                extra: 1
            })
        );
    }

    #[test]
    fn truncation_at_every_byte_is_an_error() {
        let mut keepalive = vec![b'k'];
        keepalive.extend_from_slice(&[0; 17]);
        for whole in [xlogdata(b""), keepalive] {
            for cut in 0..whole.len() {
                let err = parse(Bytes::copy_from_slice(&whole[..cut])).unwrap_err();
                assert!(
                    matches!(err, DecodeError::Truncated { .. }),
                    "cut at {cut}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_tags_are_typed_errors() {
        assert_eq!(
            parse(Bytes::from_static(b"r")),
            Err(DecodeError::UnknownTag {
                family: "replication message",
                tag: b'r'
            })
        );
    }

    #[test]
    fn status_update_encoding() {
        let mut buf = BytesMut::from(&b"x"[..]);
        StandbyStatusUpdate {
            write: Lsn::new(3),
            flush: Lsn::new(2),
            apply: Lsn::new(1),
            client_time: 0x0102_0304_0506_0708,
            reply_requested: true,
        }
        .encode(&mut buf);
        let mut expected = b"xr".to_vec();
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.push(1);
        assert_eq!(&buf[..], &expected[..]);
        assert_eq!(buf.len() - 1, StandbyStatusUpdate::ENCODED_LEN);
    }

    #[test]
    fn pg_epoch_is_2000_01_01() {
        assert_eq!(
            pg_epoch()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            946_684_800
        );
        assert_eq!(pg_time_to_system(0), Some(pg_epoch()));
        // 2024-01-02 03:04:05.000006 UTC: Unix 1704164645.
        let t = pg_time_to_system(757_479_845_000_006).unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(1_704_164_645, 6_000)
        );
        assert_eq!(system_to_pg_time(t), 757_479_845_000_006);
        // Before 2000: negative.
        assert_eq!(
            system_to_pg_time(SystemTime::UNIX_EPOCH),
            -946_684_800_000_000
        );
        assert_eq!(
            pg_time_to_system(-946_684_800_000_000),
            Some(SystemTime::UNIX_EPOCH)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(Bytes::from(bytes));
        }

        #[test]
        fn parse_never_panics_on_known_tags(
            tag in prop_oneof![Just(b'w'), Just(b'k')],
            rest in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut b = vec![tag];
            b.extend_from_slice(&rest);
            let _ = parse(Bytes::from(b));
        }

        #[test]
        fn pg_time_roundtrip(micros in -(1i64 << 52)..(1i64 << 52)) {
            let t = pg_time_to_system(micros).unwrap();
            prop_assert_eq!(system_to_pg_time(t), micros);
        }
    }
}
