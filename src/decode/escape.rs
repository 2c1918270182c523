//! JSON string escaping for the line writer ([`super::json`]) and the object keys that
//! relations prepare once per column ([`super::relation::Column`]), and the digits of
//! integers for the line writer and the sink's ids: a leaf, so they can share it without
//! depending on each other.

use super::value::{push_hex, HEX_DIGITS};

/// A JSON string.
#[inline]
pub(super) fn write_str(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    write_escaped(out, text);
    out.push(b'"');
}

/// Eight copies of `byte`.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// Whether some byte of `word` is below 0x20, `"` or `\` (SWAR: "has zero byte" on the
/// word xor-ed with the byte sought; exact, no false negatives).
#[inline]
fn needs_escape(word: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(splat(1)) & !v & splat(0x80) != 0;
    let below_space = word.wrapping_sub(splat(0x20)) & !word & splat(0x80) != 0;
    below_space || has_zero(word ^ splat(b'"')) || has_zero(word ^ splat(b'\\'))
}

/// The contents of a JSON string, escaped as serde_json escapes them (`\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`; nothing else).
///
/// Clean runs are skipped a word at a time; a short tail is checked as one word padded with
/// a byte that needs no escape, so column names and short values cost one test.
pub(super) fn write_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut clean = 0;
    let mut at = 0;
    let len = text.len();
    while at < len {
        let (word, n) = match text.get(at..at + 8) {
            // A slice of eight always converts; zeros would only send it the slow way.
            Some(chunk) => (chunk.try_into().unwrap_or([0; 8]), 8),
            None => {
                let mut word = [b'a'; 8];
                word[..len - at].copy_from_slice(&text[at..]);
                (word, len - at)
            }
        };
        if !needs_escape(u64::from_ne_bytes(word)) {
            at += n;
            continue;
        }
        let end = at + n;
        while at < end {
            let byte = text[at];
            if byte >= 0x20 && byte != b'"' && byte != b'\\' {
                at += 1;
                continue;
            }
            out.extend_from_slice(&text[clean..at]);
            match byte {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX_DIGITS[usize::from(byte >> 4)],
                    HEX_DIGITS[usize::from(byte & 0xf)],
                ]),
            }
            at += 1;
            clean = at;
        }
    }
    out.extend_from_slice(&text[clean..]);
}

/// `"name":` for an object key, escaped once per relation column rather than per row.
pub(crate) fn object_key(name: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(name.len() + 3);
    write_str(&mut key, name.as_bytes());
    key.push(b':');
    key.into_boxed_slice()
}

/// `"schema.name"` for a table, escaped once per relation rather than per row.
pub(crate) fn table_name(schema: &str, name: &str) -> Box<[u8]> {
    let mut text = Vec::with_capacity(schema.len() + name.len() + 3);
    text.push(b'"');
    write_escaped(&mut text, schema.as_bytes());
    text.push(b'.');
    write_escaped(&mut text, name.as_bytes());
    text.push(b'"');
    text.into_boxed_slice()
}

/// `\x` hex of `bytes` as a JSON string (the backslash escaped).
pub(super) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(br#""\\x"#);
    push_hex(out, bytes);
    out.push(b'"');
}

/// `n` in decimal, written at the end of `buf`: two digits at a time from a table rather
/// than through `fmt`, which costs several times as much per number on the line path.
#[inline]
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_as_fmt_writes_them() {
        for n in [0, 9, 10, 99, 100, 101, 12_345, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
