//! A checked cursor over a message body.
//!
//! Every read checks the remaining length first and returns [`DecodeError::Truncated`]
//! instead of panicking; slices are zero-copy views into the message's [`Bytes`].

use bytes::{Buf, Bytes};

use super::DecodeError;

/// Reads big-endian fields from a message body.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, what: &'static str, needed: usize) -> Result<(), DecodeError> {
        if self.buf.len() < needed {
            return Err(DecodeError::Truncated {
                what,
                needed,
                remaining: self.buf.len(),
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(what, 1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.need(what, 2)?;
        Ok(self.buf.get_i16())
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.need(what, 4)?;
        Ok(self.buf.get_i32())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.need(what, 8)?;
        Ok(self.buf.get_i64())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(what, 8)?;
        Ok(self.buf.get_u64())
    }

    /// A non-negative `i16` count, as a `usize`.
    pub(crate) fn count16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| DecodeError::BadLength {
            what,
            value: i64::from(n),
        })
    }

    /// A non-negative `i32` length, as a `usize`, no larger than what remains.
    pub(crate) fn len32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        let len = usize::try_from(n).map_err(|_| DecodeError::BadLength {
            what,
            value: i64::from(n),
        })?;
        self.need(what, len)?;
        Ok(len)
    }

    /// The next `len` bytes, zero-copy.
    pub(crate) fn bytes(&mut self, what: &'static str, len: usize) -> Result<Bytes, DecodeError> {
        self.need(what, len)?;
        Ok(self.buf.split_to(len))
    }

    /// Everything that remains, zero-copy.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A NUL-terminated string's bytes (without the NUL), zero-copy.
    pub(crate) fn cstr_bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString { what })?;
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.cstr_bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// Fails unless the message has been read to its end.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                extra: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_truncation_errors() {
        let mut r = Reader::new(Bytes::from_static(&[0, 1, 2]));
        assert_eq!(
            r.i32("field"),
            Err(DecodeError::Truncated {
                what: "field",
                needed: 4,
                remaining: 3
            })
        );
        assert_eq!(r.i16("field"), Ok(1));
    }

    #[test]
    fn negative_counts_and_lengths_are_rejected() {
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF]));
        assert_eq!(
            r.count16("columns"),
            Err(DecodeError::BadLength {
                what: "columns",
                value: -1
            })
        );
        let mut r = Reader::new(Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF]));
        assert!(matches!(
            r.len32("value"),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0, 0, 0]));
        assert!(matches!(
            r.len32("value"),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn cstr_needs_a_terminator() {
        let mut r = Reader::new(Bytes::from_static(b"ab\0cd"));
        assert_eq!(r.cstr("name").unwrap(), "ab");
        assert_eq!(
            r.cstr("name"),
            Err(DecodeError::UnterminatedString { what: "name" })
        );
    }
}
