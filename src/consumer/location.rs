//! Where a table starts in a group: [`StartLocation`].
//!
//! A group's tables share one slot per partition, so a start location never moves the slot.
//! It becomes a lower bound for that table's records (see `group::group_tables`): the
//! stream still starts at the group's committed cursor, and the table's earlier records are
//! passed over as consumed. A location earlier than what the slot still holds starts at the
//! oldest held change instead, and the consumer says so ([`crate::consumer::Consumer::start_warnings`]).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calendar;
use crate::decode::record::format_pg_timestamp;
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::protocol::replication::system_to_pg_time;

/// Where a table new to a group (or reset with `force_reset`) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartLocation {
    /// Resume at the group's committed cursor. For a table new to the group this is
    /// [`StartLocation::Earliest`]: its existing rows are backfilled.
    #[default]
    FirstUncommitted,
    /// The oldest state still available: existing rows first (a backfill: `read` records,
    /// chunk by chunk in key order, interleaved with the live stream), then every change
    /// committed after the table joined. The table needs a primary key (or a replica
    /// identity index). On a table already in the group, with `force_reset` or
    /// [`Consumer::add_table`](crate::consumer::Consumer::add_table), the backfill starts
    /// again from the beginning.
    Earliest,
    /// Only changes committed after the table joined the group (or, on a reset, after the
    /// reset).
    Latest,
    /// Changes committed at or after this time (the commit timestamps of the stream) that
    /// the group's slot still holds.
    AtTime(SystemTime),
    /// Changes whose commit record is at or after this WAL position.
    AtLsn(Lsn),
}

impl StartLocation {
    /// Whether existing rows would be delivered first (backfill).
    pub fn wants_backfill(self) -> bool {
        matches!(
            self,
            StartLocation::Earliest | StartLocation::FirstUncommitted
        )
    }
}

impl fmt::Display for StartLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLocation::FirstUncommitted => f.write_str("first-uncommitted"),
            StartLocation::Earliest => f.write_str("earliest"),
            StartLocation::Latest => f.write_str("latest"),
            StartLocation::AtTime(t) => {
                write!(f, "time={}", format_pg_timestamp(system_to_pg_time(*t)))
            }
            StartLocation::AtLsn(lsn) => write!(f, "lsn={lsn}"),
        }
    }
}

impl FromStr for StartLocation {
    type Err = Error;

    /// `first-uncommitted`, `earliest`, `latest`, `time=<RFC 3339>` or `lsn=<X/Y>`.
    fn from_str(s: &str) -> Result<StartLocation> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "first-uncommitted" | "first_uncommitted" => {
                return Ok(StartLocation::FirstUncommitted)
            }
            "earliest" => return Ok(StartLocation::Earliest),
            "latest" => return Ok(StartLocation::Latest),
            _ => {}
        }
        if let Some(time) = s.strip_prefix("time=") {
            return parse_rfc3339(time).map(StartLocation::AtTime);
        }
        if let Some(lsn) = s.strip_prefix("lsn=") {
            return lsn.parse().map(StartLocation::AtLsn).map_err(|_| {
                Error::config(format!(
                    "start location {s:?}: {lsn:?} is not an LSN like 16/B374D848"
                ))
            });
        }
        Err(Error::config(format!(
            "start location {s:?} is not one of first-uncommitted, earliest, latest, \
             time=<RFC 3339>, lsn=<X/Y>"
        )))
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space may replace the `T`).
fn parse_rfc3339(text: &str) -> Result<SystemTime> {
    let bad = || {
        Error::config(format!(
            "{text:?} is not an RFC 3339 time like 2026-11-22T10:30:00Z or 2026-11-22T11:30:00.5+01:00"
        ))
    };
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, allowed: &[u8]| -> Result<()> {
        b.get(i)
            .filter(|c| allowed.contains(c))
            .map(drop)
            .ok_or_else(bad)
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let (nanos, i) = fraction(b, 19).ok_or_else(bad)?;
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let secs = digits(i + 1..i + 3)? * 3600 + digits(i + 4..i + 6)? * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return Err(bad()),
    };
    let (Ok(month), Ok(day)) = (u32::try_from(month), u32::try_from(day)) else {
        return Err(bad());
    };
    if !(1..=calendar::days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = calendar::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| {
        Error::config(format!(
            "{text:?} is before 1970; start locations are commit times"
        ))
    })?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// The optional `.fraction` of seconds at `b[i..]`: its nanoseconds (digits past the ninth
/// are ignored) and where it ends; `None` for a dot without digits.
fn fraction(b: &[u8], i: usize) -> Option<(u32, usize)> {
    if b.get(i) != Some(&b'.') {
        return Some((0, i));
    }
    let start = i + 1;
    let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if end == start {
        return None;
    }
    let nanos = b[start..end]
        .iter()
        .take(9)
        .enumerate()
        .map(|(k, d)| u32::from(d - b'0') * 10u32.pow(8 - k as u32))
        .sum();
    Some((nanos, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_through_text() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        for location in [
            StartLocation::FirstUncommitted,
            StartLocation::Earliest,
            StartLocation::Latest,
            StartLocation::AtTime(t),
            StartLocation::AtLsn("16/B374D848".parse().unwrap()),
        ] {
            assert_eq!(
                location.to_string().parse::<StartLocation>().unwrap(),
                location
            );
        }
    }

    #[test]
    fn rfc3339_offsets_fractions_and_errors() {
        let utc = parse_rfc3339("2026-11-22T10:30:00Z").unwrap();
        assert_eq!(
            utc.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_343_400
        );
        assert_eq!(parse_rfc3339("2026-11-22T11:30:00+01:00").unwrap(), utc);
        assert_eq!(parse_rfc3339("2026-11-22 05:00:00-05:30").unwrap(), utc);
        let frac = parse_rfc3339("2026-11-22T10:30:00.25Z").unwrap();
        assert_eq!(
            frac.duration_since(utc).unwrap(),
            Duration::from_millis(250)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-22T10:30:00",
            "x",
        ] {
            let e = parse_rfc3339(bad).unwrap_err();
            assert!(
                e.is_config() && e.to_string().contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
        assert!("lsn=zz".parse::<StartLocation>().unwrap_err().is_config());
        assert!("sometime"
            .parse::<StartLocation>()
            .unwrap_err()
            .to_string()
            .contains("latest"));
    }
}
