//! Log sequence numbers.
//!
//! PostgreSQL prints an LSN as two hexadecimal halves, `16/B374D848` (`%X/%X`: upper and
//! lower 32 bits, no padding). On the wire it is a big-endian `u64`. [`Lsn`] is the only
//! way this crate passes positions around, so a byte count is never mistaken for one.

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Kind};

/// A position in the write-ahead log.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// `0/0`, which PostgreSQL uses for "no position" (`InvalidXLogRecPtr`).
    pub const ZERO: Lsn = Lsn(0);
    /// The largest position.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The LSN with this 64-bit value.
    pub const fn new(value: u64) -> Lsn {
        Lsn(value)
    }

    /// The 64-bit value as sent on the wire.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether this is `0/0`.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + bytes`, or `None` past the end of the address space.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// Bytes from `earlier` to `self`; zero when `earlier` is not earlier.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Lsn {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

/// Advancing by a byte count saturates at [`Lsn::MAX`] rather than wrapping.
impl Add<u64> for Lsn {
    type Output = Lsn;

    fn add(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_add(bytes))
    }
}

/// The distance in bytes, saturating at zero (see [`Lsn::bytes_since`]).
impl Sub for Lsn {
    type Output = u64;

    fn sub(self, earlier: Lsn) -> u64 {
        self.bytes_since(earlier)
    }
}

/// An LSN's text, formatted on the stack: serialising millions of records must not
/// allocate (or go through `core::fmt`) for each of their LSNs.
#[derive(Clone, Copy)]
pub(crate) struct LsnText {
    buf: [u8; 17],
    len: usize,
}

impl LsnText {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits and '/' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0/0")
    }
}

impl Lsn {
    /// `X/Y` as PostgreSQL prints it: upper-case hex, no leading zeros.
    pub(crate) fn text(self) -> LsnText {
        let mut text = LsnText {
            buf: [0; 17],
            len: 0,
        };
        for (i, half) in [(self.0 >> 32) as u32, self.0 as u32]
            .into_iter()
            .enumerate()
        {
            if i == 1 {
                text.buf[text.len] = b'/';
                text.len += 1;
            }
            let digits = (32 - half.leading_zeros()).div_ceil(4).max(1) as usize;
            for d in (0..digits).rev() {
                let nibble = (half >> (4 * d)) & 0xF;
                text.buf[text.len] = b"0123456789ABCDEF"[nibble as usize];
                text.len += 1;
            }
        }
        text
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/Y` with one to eight hex digits on each side, as `pg_lsn` prints it.
    fn from_str(s: &str) -> Result<Lsn, Error> {
        let bad = || {
            Error::new(
                Kind::Config,
                format!("{s:?} is not an LSN; expected two hex numbers like \"16/B374D848\""),
            )
        };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(part, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_like_postgres() {
        assert_eq!(Lsn::new(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        assert_eq!(Lsn::new(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn::MAX.to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_both_cases_and_rejects_garbage() {
        assert_eq!(
            "16/b374d848".parse::<Lsn>().unwrap(),
            Lsn::new(0x16_B374_D848)
        );
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "g/0",
            "123456789/0",
            "0/-1",
            " 1/0",
            "+1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.is_config(), "{bad:?}");
            assert!(err.to_string().contains("is not an LSN"), "{err}");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let a = Lsn::new(100);
        assert_eq!(a + 28, Lsn::new(128));
        assert_eq!(Lsn::new(128) - a, 28);
        assert_eq!(a - Lsn::new(128), 0);
        assert_eq!(Lsn::MAX + 1, Lsn::MAX);
        assert_eq!(Lsn::MAX.checked_add(1), None);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let json = serde_json::to_string(&Lsn::new(0x1_0000_00FF)).unwrap();
        assert_eq!(json, "\"1/FF\"");
        assert_eq!(
            serde_json::from_str::<Lsn>(&json).unwrap(),
            Lsn::new(0x1_0000_00FF)
        );
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(v in any::<u64>()) {
            let lsn = Lsn::new(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn text_is_what_postgres_prints(v in any::<u64>()) {
            let expected = format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF);
            prop_assert_eq!(Lsn::new(v).to_string(), expected.clone());
            prop_assert_eq!(serde_json::to_string(&Lsn::new(v)).unwrap(), format!("\"{expected}\""));
        }

        #[test]
        fn order_follows_the_numbers(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(Lsn::new(a).cmp(&Lsn::new(b)), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(s in ".{0,24}") {
            let _ = s.parse::<Lsn>();
        }
    }
}
