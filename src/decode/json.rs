//! JSON straight from pgoutput's text: the record line of `tail` (and of the sinks that carry
//! the same line), written in one pass per image with no [`Value`] in between.
//!
//! A record has one JSON form, its serde form ([`Record`]'s `Serialize`); this writer is
//! the fast way to the same bytes, held to it by the tests.
//!
//! Most of what pgoutput sends is already the JSON it becomes: integers, finite floats and
//! numerics are JSON numbers as printed, `json`/`jsonb` are documents, dates and times are
//! the strings we print. So the writer checks that a value has the shape whose JSON form is
//! its own text (or, for timestamps, its text with the space made a `T` and `+00` made a
//! `Z`) and copies it; anything else — NaN and infinities, BC dates, other offsets, arrays,
//! text the server should not have sent — goes through the typed path
//! ([`Value`]'s `Serialize`), so the output is the same bytes either way. The tests compare
//! the two on every value type, on PostgreSQL's own values and on random rows.
//!
//! Strings are escaped with a scan eight bytes at a time for the bytes JSON needs escaped
//! (`"`, `\`, controls). Their UTF-8 is not validated again when the relation says the
//! server guarantees it ([`Relation::text_is_utf8`](super::relation::Relation::text_is_utf8):
//! a UTF8 database); text from other servers is checked and, if it is not UTF-8, written
//! lossily as the typed path does.
//!
//! The writer appends to a `Vec<u8>`: a caller writes the records of a poll into one buffer
//! and hands it to its sink with one write.
//!
//! ```
//! use pg_changestream::decode::json;
//! use pg_changestream::decode::types::{oid, ValueKind};
//! use pg_changestream::protocol::pgoutput::TupleColumn;
//!
//! let mut out = Vec::new();
//! let kind = ValueKind::for_type(oid::TIMESTAMPTZ);
//! json::write_value(&mut out, kind, TupleColumn::Text(b"2024-01-01 03:00:00.5+00"), true);
//! assert_eq!(out, br#""2024-01-01T03:00:00.5Z""#);
//! ```

use std::io::Write;
use std::sync::Arc;

use super::escape::{decimal, write_escaped, write_hex, write_str};
use super::record::{
    format_pg_timestamp, format_pg_timestamp_on_stack, to_value, ColumnList, Image, Record, TxnInfo,
};
use super::types::{ScalarKind, ValueKind};
use super::value::{is_canonical_int, is_json_number, Value};
use crate::calendar;
use crate::lsn::Lsn;
use crate::protocol::pgoutput::TupleColumn;

/// Appends `record`'s JSON line, newline included: the line `pg-changestream tail` prints,
/// the same bytes as serialising the [`Record`] with `serde_json` (its `Serialize` documents
/// the fields).
pub fn write_line(out: &mut Vec<u8>, record: &Record) {
    write_line_with(out, record, &mut TxnText::default());
}

/// The text of a transaction's fields, formatted once for all of its records.
#[derive(Debug, Default)]
struct TxnText {
    /// Commit LSN, commit time and xid of the transaction formatted below.
    of: Option<(Lsn, Option<i64>, Option<u32>)>,
    /// `X/Y`, for event ids.
    lsn: Vec<u8>,
    /// `"commit_lsn":"X/Y","commit_time":"…","xid":N`
    fields: Vec<u8>,
    /// The group `group_json` was written for (held, so the pointer compared is its own).
    group: Option<Arc<str>>,
    /// The `group` field's value: the group's name as a JSON string, or `null`.
    group_json: Vec<u8>,
}

impl TxnText {
    fn update(&mut self, txn: &TxnInfo) {
        self.update_group(txn.group.as_ref());
        let of = (txn.commit_lsn, txn.commit_time_micros, txn.xid);
        if self.of == Some(of) {
            return;
        }
        self.of = Some(of);
        self.lsn.clear();
        self.lsn
            .extend_from_slice(txn.commit_lsn.text().as_str().as_bytes());
        let out = &mut self.fields;
        out.clear();
        out.extend_from_slice(br#""commit_lsn":""#);
        out.extend_from_slice(&self.lsn);
        out.extend_from_slice(br#"","commit_time":""#);
        // The documented line prints 0 for what a non-transactional message lacks.
        let micros = txn.commit_time_micros.unwrap_or(0);
        match format_pg_timestamp_on_stack(micros) {
            Some(text) => out.extend_from_slice(&text),
            None => write_escaped(out, format_pg_timestamp(micros).as_bytes()),
        }
        out.extend_from_slice(br#"","xid":"#);
        write_u64(out, u64::from(txn.xid.unwrap_or(0)));
    }

    /// The group's JSON text, written again only when the group is another one (in a
    /// consumer every record carries the same group).
    fn update_group(&mut self, group: Option<&Arc<str>>) {
        let same = match (&self.group, group) {
            (Some(held), Some(group)) => Arc::ptr_eq(held, group),
            (None, None) => !self.group_json.is_empty(),
            _ => false,
        };
        if same {
            return;
        }
        self.group = group.cloned();
        self.group_json.clear();
        match group {
            Some(group) => write_str(&mut self.group_json, group.as_bytes()),
            None => self.group_json.extend_from_slice(b"null"),
        }
    }
}

fn write_line_with(out: &mut Vec<u8>, record: &Record, txn: &mut TxnText) {
    txn.update(record.txn());
    // Room for the fields around the images and the tuple text in them (~1.5 × its bytes
    // once keys and quotes are added), so the appends below rarely grow the buffer.
    out.reserve(256 + txn.group_json.len() + record.data_bytes() * 3 / 2);
    out.extend_from_slice(br#"{"event_id":""#);
    out.extend_from_slice(&txn.lsn);
    out.push(b':');
    if let Some(p) = record.partition() {
        write_u64(out, u64::from(p));
        out.push(b':');
    }
    write_u64(out, record.index());
    out.extend_from_slice(br#"","group":"#);
    out.extend_from_slice(&txn.group_json);
    out.extend_from_slice(br#","partition":"#);
    write_u64(out, record.partition().map_or(0, u64::from));
    out.extend_from_slice(br#","table":"#);
    match record.relation() {
        Some(relation) => out.extend_from_slice(relation.json_name()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","op":""#);
    out.extend_from_slice(record.op().as_str().as_bytes());
    out.extend_from_slice(br#"","#);
    out.extend_from_slice(&txn.fields);
    out.extend_from_slice(br#","key":"#);
    write_optional_image(out, record.key().as_ref());
    let before = record.before();
    out.extend_from_slice(br#","before":"#);
    write_optional_image(out, before.image().as_ref());
    let after = record.current();
    out.extend_from_slice(br#","after":"#);
    write_optional_image(out, after.as_ref());
    out.extend_from_slice(br#","before_image":""#);
    out.extend_from_slice(before.kind().as_bytes());
    out.push(b'"');
    if let Some(after) = after {
        write_unchanged(out, &after);
    }
    if let Some((prefix, content)) = record.message_content() {
        out.extend_from_slice(br#","prefix":"#);
        write_str(out, prefix.as_bytes());
        out.extend_from_slice(br#","content":"#);
        match std::str::from_utf8(content) {
            Ok(text) => write_str(out, text.as_bytes()),
            Err(_) => write_hex(out, content),
        }
    }
    if let Some(change) = record.schema_change() {
        // Rare (a column change), so serde's form of the column lists is fast enough.
        out.extend_from_slice(br#","columns":"#);
        serde_json::to_writer(&mut *out, &ColumnList(change.relation()))
            .expect("writing JSON into a Vec cannot fail");
        out.extend_from_slice(br#","previous_columns":"#);
        serde_json::to_writer(&mut *out, &ColumnList(change.previous()))
            .expect("writing JSON into a Vec cannot fail");
    }
    out.extend_from_slice(b"}\n");
}

/// Appends an image as a JSON object (unchanged TOAST values left out), the same bytes as
/// serialising the [`Image`] with `serde_json`.
pub fn write_image(out: &mut Vec<u8>, image: &Image<'_>) {
    let utf8 = image.relation().text_is_utf8();
    out.push(b'{');
    let mut first = true;
    for (meta, column) in image.columns() {
        if matches!(column, TupleColumn::UnchangedToast) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(meta.json_key());
        write_value(out, meta.kind(), column, utf8);
    }
    out.push(b'}');
}

fn write_optional_image(out: &mut Vec<u8>, image: Option<&Image<'_>>) {
    match image {
        Some(image) => write_image(out, image),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"unchanged":[..]` when the image has TOAST values nothing filled.
fn write_unchanged(out: &mut Vec<u8>, image: &Image<'_>) {
    if !image.has_unchanged() {
        return;
    }
    out.extend_from_slice(br#","unchanged":["#);
    let mut first = true;
    for (meta, column) in image.columns() {
        if matches!(column, TupleColumn::UnchangedToast) {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, meta.name().as_bytes());
        }
    }
    out.push(b']');
}

/// Appends the JSON form of one column value of `kind` (see [`Value`] for the forms):
/// the same bytes as serialising the [`Value`] the typed path decodes from it. An
/// unchanged TOAST value is written as [`UNCHANGED_TOAST`](super::value::UNCHANGED_TOAST),
/// as when serialised on its own.
///
/// `utf8`: the server guarantees the text is UTF-8 ([`Relation::text_is_utf8`]), so it is
/// not checked; pass `false` when unsure.
///
/// [`Relation::text_is_utf8`]: super::relation::Relation::text_is_utf8
pub fn write_value(out: &mut Vec<u8>, kind: ValueKind, column: TupleColumn<'_>, utf8: bool) {
    let text = match column {
        TupleColumn::Text(text) => text,
        TupleColumn::Null => return out.extend_from_slice(b"null"),
        _ => return write_typed(out, kind, column),
    };
    let ValueKind::Scalar(scalar) = kind else {
        return write_typed(out, kind, column);
    };
    // Shapes whose JSON form is the text itself (all ASCII, so UTF-8 by construction).
    let copied = match scalar {
        ScalarKind::Bool => match text {
            b"t" => Some(&b"true"[..]),
            b"f" => Some(&b"false"[..]),
            _ => None,
        },
        ScalarKind::Int => is_canonical_int(text).then_some(text),
        ScalarKind::Float | ScalarKind::Numeric => is_json_number(text).then_some(text),
        _ => None,
    };
    if let Some(json) = copied {
        return out.extend_from_slice(json);
    }
    match scalar {
        ScalarKind::Date if is_plain_date(text) => return write_quoted(out, text),
        ScalarKind::Timestamp if write_timestamp(out, text, false) => return,
        ScalarKind::TimestampTz if write_timestamp(out, text, true) => return,
        _ => {}
    }
    if !utf8 && std::str::from_utf8(text).is_err() {
        // The typed path keeps non-UTF-8 text lossily, whatever the kind.
        return write_typed(out, kind, column);
    }
    match scalar {
        // Kept as their text by the typed path, whether or not they parse.
        ScalarKind::Text | ScalarKind::Bytea | ScalarKind::Time | ScalarKind::TimeTz => {
            write_str(out, text)
        }
        ScalarKind::Float | ScalarKind::Numeric if !is_special_number(text) => write_str(out, text),
        // The server printed a valid document (json_out, jsonb_out); serde_json embeds it
        // without the whitespace around it.
        ScalarKind::Json if utf8 => match trim_json_space(text) {
            [] => write_typed(out, kind, column),
            document => out.extend_from_slice(document),
        },
        _ => write_typed(out, kind, column),
    }
}

/// The typed path: decode to a [`Value`] and serialise it.
fn write_typed(out: &mut Vec<u8>, kind: ValueKind, column: TupleColumn<'_>) {
    let value: Value<'_> = to_value(kind, column);
    // Writing into a Vec cannot fail, and a Value always serialises.
    let _ = serde_json::to_writer(&mut *out, &value);
}


fn is_special_number(text: &[u8]) -> bool {
    matches!(text, b"NaN" | b"Infinity" | b"-Infinity")
}

fn trim_json_space(text: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = text.iter().position(|b| !space(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    text.get(start..end).unwrap_or_default()
}

/// Whether the bytes at `at` are ASCII digits.
fn digits_at(text: &[u8], at: &[usize]) -> bool {
    at.iter()
        .all(|&i| text.get(i).is_some_and(u8::is_ascii_digit))
}

/// The number in `text[from..from + width]` (the caller checked the digits).
fn number(text: &[u8], from: usize, width: usize) -> u32 {
    text.iter()
        .skip(from)
        .take(width)
        .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// `YYYY-MM-DD`: every date the server prints with a four-digit AD year. Its JSON form is
/// its text whether or not it is a valid day (an invalid one is kept as text).
fn is_plain_date(text: &[u8]) -> bool {
    text.len() == 10
        && text[4] == b'-'
        && text[7] == b'-'
        && digits_at(text, &[0, 1, 2, 3, 5, 6, 8, 9])
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]`, then `+00` with `tz` (the connection pins TimeZone=UTC):
/// a valid instant of years 1–9999 with the fraction as the server prints it (no trailing
/// zero) is written as `"YYYY-MM-DDTHH:MM:SS[.f][Z]"`. Returns false, writing nothing, for
/// anything else (BC, infinities, other offsets, five-digit years).
fn write_timestamp(out: &mut Vec<u8>, text: &[u8], tz: bool) -> bool {
    let end = if tz {
        match text.strip_suffix(b"+00") {
            Some(rest) => rest.len(),
            None => return false,
        }
    } else {
        text.len()
    };
    if end < 19
        || !(text[4] == b'-'
            && text[7] == b'-'
            && text[10] == b' '
            && text[13] == b':'
            && text[16] == b':')
        || !digits_at(text, &[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
    {
        return false;
    }
    let fraction = &text[19..end];
    let fraction_ok = match fraction {
        [] => true,
        [b'.', digits @ ..] => {
            (1..=6).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && digits.last() != Some(&b'0')
        }
        _ => false,
    };
    let (year, month, day) = (number(text, 0, 4), number(text, 5, 2), number(text, 8, 2));
    if !fraction_ok
        || year == 0
        || !(1..=calendar::days_in_month(i64::from(year), month)).contains(&day)
        || number(text, 11, 2) > 23
        || number(text, 14, 2) > 59
        || number(text, 17, 2) > 59
    {
        return false;
    }
    out.push(b'"');
    out.extend_from_slice(&text[..10]);
    out.push(b'T');
    out.extend_from_slice(&text[11..end]);
    if tz {
        out.push(b'Z');
    }
    out.push(b'"');
    true
}

/// `"text"` for text that needs no escaping.
fn write_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// `n` in decimal.
#[inline]
fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// Writes records as JSON lines through a [`Write`] sink, one buffer per batch: the records
/// of a poll are formatted into the buffer and handed over with one `write_all`.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    txn: TxnText,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// Appends `record`'s line ([`write_line`]).
    pub fn push(&mut self, record: &Record) {
        write_line_with(&mut self.buf, record, &mut self.txn);
    }

    /// The lines appended since the last [`LineBuffer::write_to`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Writes the lines with one `write_all` and empties the buffer (keeping its memory
    /// for the next batch).
    ///
    /// # Errors
    /// The sink's write error; the lines stay in the buffer.
    pub fn write_to(&mut self, sink: &mut impl Write) -> std::io::Result<()> {
        sink.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
