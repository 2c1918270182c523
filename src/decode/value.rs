//! Column values: pgoutput's text format decoded into a typed, borrowed [`Value`] view with
//! a documented JSON form.
//!
//! pgoutput sends each column as the bytes the type's output function printed inside the
//! walsender — exactly what `SELECT col::text` prints in a session with the same settings.
//! Our replication connection pins the settings that change that text:
//! `DateStyle=ISO, MDY`, `TimeZone=UTC`, `IntervalStyle=postgres`, `extra_float_digits=3`
//! and `bytea_output=hex`; the parsers here assume them.
//!
//! The column's [`ValueKind`] is resolved once per relation column (see
//! [`super::types`]); [`Value::decode`] then borrows the text, so decoding a row allocates
//! nothing except for arrays and escaped array elements.
//!
//! ```
//! use pg_changestream::decode::types::{oid, ValueKind};
//! use pg_changestream::decode::value::Value;
//!
//! let kind = ValueKind::for_type(oid::TIMESTAMPTZ); // once per relation column
//! let value = Value::decode(kind, b"2024-01-01 03:00:00.5+05:30")?; // per value
//! assert_eq!(serde_json::to_string(&value)?, r#""2023-12-31T21:30:00.5Z""#);
//!
//! let tags = Value::decode(ValueKind::for_type(1009), br#"{a,"b \"c\"",NULL}"#)?;
//! assert_eq!(serde_json::to_value(&tags)?, serde_json::json!(["a", "b \"c\"", null]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # JSON form
//!
//! | PostgreSQL | [`Value`] | JSON |
//! |---|---|---|
//! | NULL | `Null` | `null` |
//! | unchanged TOASTed value (not sent) | `Unchanged` | `"__unchanged_toast__"` ([`UNCHANGED_TOAST`]); images should rather list such columns |
//! | `bool` | `Bool` | `true` / `false` |
//! | `int2`, `int4`, `int8` | `Int` | number |
//! | `float4`, `float8` | `Float` | number with the server's shortest exact digits (`1e-300`, `-0`); `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `numeric` | `Numeric` | number with the exact digits (`1.50` stays `1.50`); `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `json`, `jsonb` | `Json` | the document itself, embedded as sent (not a string) |
//! | `bytea` | `Bytea` | `"\\x0aff"` — the hex text |
//! | `date` | `Date` | `"2024-02-29"`, `"0044-03-15 BC"`, `"infinity"`, `"-infinity"` |
//! | `time`, `timetz` | `Time`, `TimeTz` | `"12:00:00.5"`, `"12:00:00.5+05:30"` — the text as printed |
//! | `timestamp` | `Timestamp` | `"2024-01-01T12:00:00.5"`, `"0001-01-01T00:00:00 BC"`, `"infinity"` |
//! | `timestamptz` | `TimestampTz` | converted to UTC: `"2024-01-01T12:00:00.5Z"`, `"0001-01-01T00:00:00Z BC"`, `"-infinity"` |
//! | arrays of any of these | `Array` | JSON arrays, nested per dimension, elements in their own form, `null` for NULL; a non-default lower bound (`[0:1]={1,2}`) is dropped |
//! | everything else: `text`, `varchar`, `char(n)`, `"char"`, `name`, `oid`, `uuid`, enums, `xml`, `interval`, `money`, `bit`, `varbit`, `inet`, `cidr`, `macaddr`, `pg_lsn`, ranges, composites, unknown types | `Text` | the PostgreSQL text as a string |
//!
//! # Other serde formats
//!
//! The table is the form through serde_json (`to_writer`, `to_string`, `to_vec`,
//! `to_value`). Two kinds have no exact serde form of their own, so any other format (CBOR,
//! MessagePack, YAML, …) gets them as strings, the same way serde_json gets NaN:
//! - float and numeric numbers: their digits as text (`"1.50"`, `"1e-300"`), never an `f64`
//!   that would round them;
//! - `json`/`jsonb`: the document's text (`"{\"a\": [1, 2]}"`), to parse if wanted.
//!
//! serde_json writes numbers verbatim without its `arbitrary_precision` feature (which this
//! crate does not turn on): they go out as a [`RawValue`], for serde_json's serializers
//! only (recognised by type). `serde_json::to_value` gives what parsing the written text
//! gives — numbers as serde_json parses them (digits beyond an `f64`'s rounded) — except
//! that a number or document serde_json cannot hold (beyond `f64`'s range, `1e400`) becomes
//! its text rather than an error. serde_json behind a wrapper (`erased_serde`,
//! `serde_transcode`) is not recognised and gets the strings.
//!
//! BC dates keep PostgreSQL's ` BC` suffix (as `to_jsonb` does) rather than an astronomical
//! year, so a value reads the same in `psql`, in `to_jsonb` and here.
//!
//! Differences from `to_jsonb`: timestamptz is rendered in UTC with `Z` instead of
//! `+00:00`; float and numeric digits are the server's text (`1e-300`, not `0.000…1`;
//! numerically equal); `json` is embedded as sent, not normalised like `jsonb` (key order,
//! duplicate keys and spacing kept); composites are their text, not an object.
//!
//! # Malformed text
//!
//! The server only sends what its output functions print, so text that does not parse as its
//! kind means the kind is wrong (a user type registered badly, a future server format), not
//! that the data is bad. Such text is kept, never dropped and never a panic: it becomes
//! [`Value::Text`] with the text as sent (a broken array literal becomes one string, a broken
//! array element one string inside the array). Only bytes that are not UTF-8 — which the
//! server never sends on a UTF-8 connection — are an error.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use super::types::{ScalarKind, ValueKind};
use crate::calendar;
use crate::protocol::DecodeError;

/// What an unchanged TOASTed value serialises as when it is serialised on its own.
///
/// pgoutput does not send a TOASTed value the update did not change; it is unknown, not
/// null. Images fill it from a full before-image when there is one.
pub const UNCHANGED_TOAST: &str = "__unchanged_toast__";

/// Arrays nest at most 6 deep in PostgreSQL (`MAXDIM`); the parser stops well before the
/// stack could suffer from hostile input.
const MAX_ARRAY_DEPTH: usize = 64;

/// One column value, borrowing the text it was decoded from.
///
/// Build it with [`Value::decode`] (or [`Value::from_text`]); serialise it with serde
/// (`serde_json::to_writer(out, &value)`; see the module docs for other formats). Strings are
/// [`Cow`]s because array elements with escapes must be unescaped into new strings;
/// everything else borrows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A TOASTed value the change did not touch, which pgoutput does not send. Not null.
    Unchanged,
    /// `bool`.
    Bool(bool),
    /// `int2`, `int4`, `int8`.
    Int(i64),
    /// `float4`/`float8` as printed: a JSON-number-shaped text, or `NaN`, `Infinity`,
    /// `-Infinity`.
    Float(Cow<'a, str>),
    /// `numeric` as printed: exact digits, or `NaN`, `Infinity`, `-Infinity`.
    Numeric(Cow<'a, str>),
    /// Any value kept as its PostgreSQL text.
    Text(Cow<'a, str>),
    /// `json` / `jsonb`: a syntactically valid JSON document.
    Json(Cow<'a, RawValue>),
    /// `bytea` as hex text, `\x…`.
    Bytea(Cow<'a, str>),
    /// `date`.
    Date(Date),
    /// `time`, as printed (`HH:MM:SS[.ffffff]`).
    Time(Cow<'a, str>),
    /// `timetz`, as printed (`HH:MM:SS[.ffffff]±HH[:MM[:SS]]`).
    TimeTz(Cow<'a, str>),
    /// `timestamp` (without time zone).
    Timestamp(Timestamp),
    /// `timestamptz`, converted to UTC.
    TimestampTz(Timestamp),
    /// An array: elements of one dimension; a multi-dimensional array nests `Array`s.
    Array(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// Decodes one column's text-format bytes as `kind`.
    ///
    /// Text that does not parse as `kind` is kept as [`Value::Text`] (see the module docs).
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidUtf8`] when the bytes are not UTF-8.
    pub fn decode(kind: ValueKind, text: &'a [u8]) -> Result<Value<'a>, DecodeError> {
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::InvalidUtf8 {
            what: "column value",
        })?;
        Ok(Value::from_text(kind, text))
    }

    /// Decodes one column's text as `kind`; never fails (malformed text becomes
    /// [`Value::Text`]).
    // Inlined, with `scalar`, into the image walk: as calls they cost a third of a
    // scalar's decoding (registers saved for the array parser, the text passed in memory).
    #[inline]
    pub fn from_text(kind: ValueKind, text: &'a str) -> Value<'a> {
        match kind {
            ValueKind::Scalar(kind) => scalar(kind, Cow::Borrowed(text)),
            ValueKind::Array { element, delimiter } => array(text, element, delimiter),
        }
    }

    /// Whether this is SQL NULL (an unchanged TOASTed value is not null).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this is a TOASTed value the change did not send.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Value::Unchanged)
    }

    /// The boolean, for `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, for integer types and for a `numeric` that is a whole number in range
    /// and printed without a fraction.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Numeric(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The value as `f64`, for integers, floats (NaN and infinities included) and
    /// numerics (rounded to the nearest `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // Rounds above 2^53, as any conversion to f64 must.
            Value::Int(i) => Some(*i as f64),
            Value::Float(text) | Value::Numeric(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The text of a value kept as text: [`Value::Text`], [`Value::Bytea`] (hex),
    /// [`Value::Time`], [`Value::TimeTz`], and the exact digits of [`Value::Float`] and
    /// [`Value::Numeric`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text)
            | Value::Bytea(text)
            | Value::Time(text)
            | Value::TimeTz(text)
            | Value::Float(text)
            | Value::Numeric(text) => Some(text),
            _ => None,
        }
    }

    /// The JSON document of a `json`/`jsonb` value, unparsed.
    pub fn as_json(&self) -> Option<&RawValue> {
        match self {
            Value::Json(raw) => Some(raw),
            _ => None,
        }
    }

    /// The elements of an array (of its first dimension).
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The bytes of a `bytea` value (decoded from its hex text).
    pub fn bytea_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Bytea(text) => decode_hex(text),
            _ => None,
        }
    }

    /// A copy that owns its text, to keep past the buffer it was decoded from.
    pub fn into_owned(self) -> Value<'static> {
        fn own(text: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(text.into_owned())
        }
        match self {
            Value::Null => Value::Null,
            Value::Unchanged => Value::Unchanged,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(t) => Value::Float(own(t)),
            Value::Numeric(t) => Value::Numeric(own(t)),
            Value::Text(t) => Value::Text(own(t)),
            Value::Json(raw) => Value::Json(Cow::Owned(raw.into_owned())),
            Value::Bytea(t) => Value::Bytea(own(t)),
            Value::Date(d) => Value::Date(d),
            Value::Time(t) => Value::Time(own(t)),
            Value::TimeTz(t) => Value::TimeTz(own(t)),
            Value::Timestamp(ts) => Value::Timestamp(ts),
            Value::TimestampTz(ts) => Value::TimestampTz(ts),
            Value::Array(items) => Value::Array(items.into_iter().map(Value::into_owned).collect()),
        }
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Unchanged => serializer.serialize_str(UNCHANGED_TOAST),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(text) | Value::Numeric(text) => serialize_number(text, serializer),
            Value::Text(text) | Value::Bytea(text) | Value::Time(text) | Value::TimeTz(text) => {
                serializer.serialize_str(text)
            }
            Value::Json(raw) => serialize_json(raw, serializer),
            Value::Date(date) => match date.display_on_stack(&mut StackText::new()) {
                Some(text) => serializer.serialize_str(text),
                None => serializer.collect_str(date),
            },
            Value::Timestamp(ts) | Value::TimestampTz(ts) => {
                match ts.display_on_stack(&mut StackText::new()) {
                    Some(text) => serializer.serialize_str(text),
                    None => serializer.collect_str(ts),
                }
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// Writes a float/numeric text with exactly its digits: a JSON number through serde_json,
/// a string in any other format.
///
/// serde has no "number from text" call. serde_json's is a [`RawValue`], which its writer
/// copies verbatim — but other formats see a `RawValue` as a struct with a private field
/// name, so they get the text as a string, which they carry exactly, rather than an `f64`
/// that would round `numeric` digits away. (serde_json's `arbitrary_precision` feature
/// would keep digits in every format, but changes serde_json for every crate of the build.)
fn serialize_number<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if is_special_number(text) {
        return serializer.serialize_str(text);
    }
    match SerdeTarget::of::<S>() {
        SerdeTarget::JsonText => match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => raw.serialize(serializer),
            // Unreachable: decoding only builds Float/Numeric from JSON-number-shaped text.
            Err(_) => serializer.serialize_str(text),
        },
        // What parsing the written number gives; beyond f64's range, which serde_json
        // refuses, the text.
        SerdeTarget::JsonValue => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(number) => number.serialize(serializer),
            Err(_) => serializer.serialize_str(text),
        },
        SerdeTarget::Other => serializer.serialize_str(text),
    }
}

/// Writes a `json`/`jsonb` document: embedded through serde_json, its text elsewhere.
fn serialize_json<S: Serializer>(raw: &RawValue, serializer: S) -> Result<S::Ok, S::Error> {
    match SerdeTarget::of::<S>() {
        SerdeTarget::JsonText => raw.serialize(serializer),
        // As for numbers: the parsed document, or its text if serde_json cannot hold it (a
        // number beyond f64's range).
        SerdeTarget::JsonValue => match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(document) => document.serialize(serializer),
            Err(_) => serializer.serialize_str(raw.get()),
        },
        SerdeTarget::Other => serializer.serialize_str(raw.get()),
    }
}

/// Which kind of serializer a value is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SerdeTarget {
    /// serde_json's writer (`to_writer`, `to_string`, `to_vec`): copies a [`RawValue`].
    JsonText,
    /// serde_json's [`serde_json::Value`] builder (`to_value`).
    JsonValue,
    /// Any other format, or serde_json behind a wrapper (`erased_serde`,
    /// `serde_transcode`).
    Other,
}

impl SerdeTarget {
    /// serde offers no way to ask a serializer what it is, so this compares type names,
    /// which the language does not promise to keep stable; the test
    /// `serde_json_serializers_are_recognised` notices a serde_json that renames them.
    /// Unrecognised serializers take the string forms, exact either way.
    fn of<S: Serializer>() -> SerdeTarget {
        let name = std::any::type_name::<S>();
        if name.starts_with("&mut serde_json::ser::Serializer<") {
            SerdeTarget::JsonText
        } else if name == "serde_json::value::ser::Serializer" {
            SerdeTarget::JsonValue
        } else {
            SerdeTarget::Other
        }
    }
}

fn is_special_number(text: &str) -> bool {
    matches!(text, "NaN" | "Infinity" | "-Infinity")
}

/// The value of text that is one of the ASCII shapes needing no `str` to decode —
/// `t`/`f` of a bool, a canonical int — or `None` for anything else. Spares a value
/// decoded on its own (a key column, most often an integer) the UTF-8 check.
pub(crate) fn from_ascii_shape(kind: ValueKind, text: &[u8]) -> Option<Value<'static>> {
    match (kind, text) {
        (ValueKind::Scalar(ScalarKind::Bool), b"t") => Some(Value::Bool(true)),
        (ValueKind::Scalar(ScalarKind::Bool), b"f") => Some(Value::Bool(false)),
        (ValueKind::Scalar(ScalarKind::Int), _) if is_canonical_int(text) => {
            let (negative, digits) = match text.strip_prefix(b"-") {
                Some(digits) => (true, digits),
                None => (false, text),
            };
            // At most eighteen digits: no overflow.
            let magnitude = digits
                .iter()
                .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
            Some(Value::Int(if negative { -magnitude } else { magnitude }))
        }
        _ => None,
    }
}

/// An array literal's elements, or the literal as [`Value::Text`] if it is malformed.
#[inline(never)]
fn array(text: &str, element: ScalarKind, delimiter: u8) -> Value<'_> {
    match parse_array(text, element, delimiter) {
        Some(items) => Value::Array(items),
        None => Value::Text(Cow::Borrowed(text)),
    }
}

/// Decodes scalar text of `kind`, keeping text that does not parse as [`Value::Text`].
#[inline]
fn scalar(kind: ScalarKind, text: Cow<'_, str>) -> Value<'_> {
    match kind {
        ScalarKind::Bool => match &*text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => Value::Text(text),
        },
        ScalarKind::Int => match text.parse() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Text(text),
        },
        ScalarKind::Float | ScalarKind::Numeric
            if !(is_special_number(&text) || is_json_number(text.as_bytes())) =>
        {
            Value::Text(text)
        }
        ScalarKind::Float => Value::Float(text),
        ScalarKind::Numeric => Value::Numeric(text),
        ScalarKind::Text => Value::Text(text),
        ScalarKind::Json => json(text),
        ScalarKind::Bytea => Value::Bytea(text),
        ScalarKind::Date => match Date::parse(&text) {
            Some(date) => Value::Date(date),
            None => Value::Text(text),
        },
        ScalarKind::Time if is_time(&text, false) => Value::Time(text),
        ScalarKind::TimeTz if is_time(&text, true) => Value::TimeTz(text),
        ScalarKind::Time | ScalarKind::TimeTz => Value::Text(text),
        ScalarKind::Timestamp => match Timestamp::parse(&text, false) {
            Some(ts) => Value::Timestamp(ts),
            None => Value::Text(text),
        },
        ScalarKind::TimestampTz => match Timestamp::parse(&text, true) {
            Some(ts) => Value::TimestampTz(ts),
            None => Value::Text(text),
        },
    }
}

fn json(text: Cow<'_, str>) -> Value<'_> {
    match text {
        Cow::Borrowed(s) => match serde_json::from_str::<&RawValue>(s) {
            Ok(raw) => Value::Json(Cow::Borrowed(raw)),
            Err(_) => Value::Text(Cow::Borrowed(s)),
        },
        // An unescaped array element: validate before giving the String away.
        Cow::Owned(s) => {
            if serde_json::from_str::<&RawValue>(&s).is_err() {
                return Value::Text(Cow::Owned(s));
            }
            match RawValue::from_string(s) {
                Ok(raw) => Value::Json(Cow::Owned(raw)),
                // Unreachable after the check above; keep something rather than panic.
                Err(_) => Value::Null,
            }
        }
    }
}

/// `0` or `-?[1-9][0-9]{0,17}`: an int8 printed by the server, which `i64` parsing and
/// printing leave as it is (eighteen digits always fit; longer ones take the typed path).
pub(super) fn is_canonical_int(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    match digits {
        [b'0'] => text.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.len() <= 17 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` — JSON's number grammar, which every
/// finite float8/numeric output matches.
pub(super) fn is_json_number(b: &[u8]) -> bool {
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Lowercase hexadecimal digits, as bytea's hex format and JSON's `\u00XX` use them.
pub(crate) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` in hex, two lowercase digits each: bytea's text form after its `\x`.
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 0xf)]);
    }
}

/// bytea's text form (`\x` and hex digits) back to bytes, or `None` if it is not one.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| {
            let high = char::from(*pair.first()?).to_digit(16)?;
            let low = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Dates and times

/// A proleptic Gregorian calendar day with an astronomical year (1 BC is year 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ymd {
    year: i64,
    month: u8,
    day: u8,
}

impl Ymd {
    /// Days since 1970-01-01.
    fn to_days(self) -> i64 {
        calendar::days_from_civil(self.year, u32::from(self.month), u32::from(self.day))
    }

    /// The inverse of [`Ymd::to_days`].
    fn from_days(days: i64) -> Ymd {
        let (year, month, day) = calendar::civil_from_days(days);
        // Both are in range by construction (1..=12, 1..=31).
        Ymd {
            year,
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    fn is_valid(self) -> bool {
        (1..=calendar::days_in_month(self.year, u32::from(self.month)))
            .contains(&u32::from(self.day))
    }

    /// Writes `YYYY-MM-DD` (year as PostgreSQL prints it: at least 4 digits, BC years
    /// counted back from 1) and returns whether the ` BC` suffix is due.
    fn write_date(self, f: &mut fmt::Formatter<'_>) -> Result<bool, fmt::Error> {
        let (year, bc) = if self.year <= 0 {
            (1 - self.year, true)
        } else {
            (self.year, false)
        };
        write!(f, "{year:04}-{:02}-{:02}", self.month, self.day)?;
        Ok(bc)
    }
}

/// A byte cursor for the fixed-shape date/time texts.
struct Cursor<'t> {
    bytes: &'t [u8],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn new(text: &'t str) -> Cursor<'t> {
        Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &[u8]) -> bool {
        if self
            .bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s))
        {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Between `min` and `max` (≤ 9) ASCII digits as a number, with how many there were.
    fn digits(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let mut value: u32 = 0;
        let mut count = 0;
        while count < max {
            match self.bytes.get(self.pos) {
                Some(d @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(d - b'0');
                    self.pos += 1;
                    count += 1;
                }
                _ => break,
            }
        }
        (count >= min).then_some((value, count))
    }

    /// Exactly two ASCII digits as a number. Spelled out rather than through
    /// [`Cursor::digits`]: every date and time field goes through here.
    fn two(&mut self) -> Option<u8> {
        let [tens, ones] = *self.bytes.get(self.pos..)?.first_chunk::<2>()?;
        let (tens, ones) = (tens.wrapping_sub(b'0'), ones.wrapping_sub(b'0'));
        if tens > 9 || ones > 9 {
            return None;
        }
        self.pos += 2;
        Some(tens * 10 + ones)
    }

    /// `YYYY-MM-DD` with a year of 4 or more digits (PostgreSQL prints up to 7).
    fn ymd(&mut self) -> Option<(u32, u8, u8)> {
        let year = match self.bytes.get(self.pos..)?.first_chunk::<5>() {
            // The common four-digit year, without the general loop.
            Some(&[a, b, c, d, b'-']) if [a, b, c, d].iter().all(u8::is_ascii_digit) => {
                self.pos += 4;
                [a, b, c, d]
                    .iter()
                    .fold(0, |year, digit| year * 10 + u32::from(digit - b'0'))
            }
            _ => self.digits(4, 9)?.0,
        };
        let month = self.eat(b'-').then(|| self.two())??;
        let day = self.eat(b'-').then(|| self.two())??;
        Some((year, month, day))
    }

    /// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` with a four-digit year (what every timestamp of
    /// the years 1000 to 9999 starts with) → (year, month, day, seconds of the day,
    /// microseconds), read at fixed places in one go; `None`, the cursor unmoved, for any
    /// other shape, which [`Cursor::ymd`] and [`Cursor::clock`] then read field by field.
    fn date_time(&mut self) -> Option<(u32, u8, u8, u32, u32)> {
        let p = self.bytes.get(self.pos..)?.first_chunk::<19>()?;
        let d = |i: usize| p[i].wrapping_sub(b'0');
        let digits = [
            d(0),
            d(1),
            d(2),
            d(3),
            d(5),
            d(6),
            d(8),
            d(9),
            d(11),
            d(12),
            d(14),
            d(15),
            d(17),
            d(18),
        ];
        if digits.iter().any(|&digit| digit > 9)
            || [p[4], p[7], p[10], p[13], p[16]] != *b"-- ::"
        {
            return None;
        }
        let [y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1] = digits.map(u32::from);
        let (hour, minute, second) = (h0 * 10 + h1, mi0 * 10 + mi1, s0 * 10 + s1);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let year = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
        // Both fit: two digits each.
        let month = u8::try_from(mo0 * 10 + mo1).ok()?;
        let day = u8::try_from(d0 * 10 + d1).ok()?;
        let start = self.pos;
        self.pos += 19;
        let micros = if self.eat(b'.') {
            let Some((fraction, count)) = self.digits(1, 6) else {
                self.pos = start;
                return None;
            };
            fraction * 10u32.pow(u32::try_from(6 - count).ok()?)
        } else {
            0
        };
        Some((year, month, day, hour * 3600 + minute * 60 + second, micros))
    }

    /// `HH:MM:SS[.f{1,6}]` → (seconds of the day, microseconds).
    fn clock(&mut self, max_hour: u8) -> Option<(u32, u32)> {
        let hour = self.two()?;
        let minute = self.eat(b':').then(|| self.two())??;
        let second = self.eat(b':').then(|| self.two())??;
        if hour > max_hour || minute > 59 || second > 59 {
            return None;
        }
        let micros = if self.eat(b'.') {
            let (fraction, count) = self.digits(1, 6)?;
            fraction * 10u32.pow(u32::try_from(6 - count).ok()?)
        } else {
            0
        };
        let seconds = u32::from(hour) * 3600 + u32::from(minute) * 60 + u32::from(second);
        Some((seconds, micros))
    }

    /// `±HH[:MM[:SS]]` → seconds east of UTC.
    fn offset(&mut self) -> Option<i64> {
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = i64::from(self.two()?);
        let (mut minutes, mut seconds) = (0, 0);
        if self.eat(b':') {
            minutes = self.two()?;
            if self.eat(b':') {
                seconds = self.two()?;
            }
        }
        if minutes > 59 || seconds > 59 {
            return None;
        }
        Some(sign * (hours * 3600 + i64::from(minutes) * 60 + i64::from(seconds)))
    }

    fn rest(&self) -> &'t [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// Whether `text` is a `time` (`HH:MM:SS[.ffffff]`, hour up to 24) or, with `tz`, a
/// `timetz` (plus `±HH[:MM[:SS]]`).
fn is_time(text: &str, tz: bool) -> bool {
    let mut cursor = Cursor::new(text);
    cursor.clock(24).is_some() && (!tz || cursor.offset().is_some()) && cursor.at_end()
}

/// A `date` value. `Display` gives its JSON form: `2024-02-29`, `0044-03-15 BC`,
/// `infinity`, `-infinity` (what PostgreSQL prints with `DateStyle=ISO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(DateRepr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateRepr {
    Infinity,
    NegInfinity,
    Day(Ymd),
}

impl Date {
    fn parse(text: &str) -> Option<Date> {
        match text {
            "infinity" => return Some(Date(DateRepr::Infinity)),
            "-infinity" => return Some(Date(DateRepr::NegInfinity)),
            _ => {}
        }
        let mut cursor = Cursor::new(text);
        let (year, month, day) = cursor.ymd()?;
        let bc = cursor.eat_str(b" BC");
        if !cursor.at_end() {
            return None;
        }
        let ymd = astronomical(year, month, day, bc)?;
        Some(Date(DateRepr::Day(ymd)))
    }

    /// `(year, month, day)` with an astronomical year (1 BC is 0, 2 BC is -1), or `None`
    /// for ±infinity.
    pub fn ymd(&self) -> Option<(i64, u8, u8)> {
        match self.0 {
            DateRepr::Day(d) => Some((d.year, d.month, d.day)),
            _ => None,
        }
    }
}

impl Date {
    /// Like [`Timestamp::display_on_stack`]: `YYYY-MM-DD` for years 1 to 9999 AD.
    fn display_on_stack<'b>(&self, buf: &'b mut StackText) -> Option<&'b str> {
        match self.0 {
            DateRepr::Day(ymd) => {
                buf.date(ymd)?;
                Some(buf.as_str())
            }
            _ => None,
        }
    }
}

/// A short ASCII text built on the stack: the JSON form of a date or timestamp.
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            bytes: [0; 32],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value` in exactly `width` decimal digits (the caller keeps it in range).
    fn digits(&mut self, mut value: u32, width: usize) {
        for at in (self.len..self.len + width).rev() {
            self.bytes[at] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }

    /// `YYYY-MM-DD` for years 1 to 9999; `None` for others (BC, five-digit years).
    fn date(&mut self, ymd: Ymd) -> Option<()> {
        let year = u32::try_from(ymd.year)
            .ok()
            .filter(|y| (1..=9999).contains(y))?;
        self.digits(year, 4);
        self.push(b'-');
        self.digits(u32::from(ymd.month), 2);
        self.push(b'-');
        self.digits(u32::from(ymd.day), 2);
        Some(())
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever pushed.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DateRepr::Infinity => f.write_str("infinity"),
            DateRepr::NegInfinity => f.write_str("-infinity"),
            DateRepr::Day(ymd) => {
                if ymd.write_date(f)? {
                    f.write_str(" BC")?;
                }
                Ok(())
            }
        }
    }
}

/// A year as printed (with a ` BC` flag) to a validated astronomical [`Ymd`].
fn astronomical(year: u32, month: u8, day: u8, bc: bool) -> Option<Ymd> {
    if year == 0 {
        return None;
    }
    let year = i64::from(year);
    let ymd = Ymd {
        year: if bc { 1 - year } else { year },
        month,
        day,
    };
    ymd.is_valid().then_some(ymd)
}

/// A `timestamp` or `timestamptz` value (the latter already converted to UTC).
///
/// `Display` gives its JSON form: `2024-01-01T12:00:00.5`, with `Z` appended for
/// timestamptz, ` BC` after that for BC years, and `infinity` / `-infinity`. Fractional
/// seconds are printed as PostgreSQL does: up to 6 digits, trailing zeros dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    repr: TimestampRepr,
    utc: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimestampRepr {
    Infinity,
    NegInfinity,
    At {
        date: Ymd,
        seconds: u32,
        micros: u32,
    },
}

impl Timestamp {
    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]`; with `tz` the offset is
    /// required and the result is shifted to UTC, rolling the date over as needed.
    fn parse(text: &str, tz: bool) -> Option<Timestamp> {
        let repr = match text {
            "infinity" => TimestampRepr::Infinity,
            "-infinity" => TimestampRepr::NegInfinity,
            _ => {
                let mut cursor = Cursor::new(text);
                let (year, month, day, seconds, micros) = match cursor.date_time() {
                    Some(fields) => fields,
                    None => {
                        let (year, month, day) = cursor.ymd()?;
                        if !cursor.eat(b' ') {
                            return None;
                        }
                        let (seconds, micros) = cursor.clock(23)?;
                        (year, month, day, seconds, micros)
                    }
                };
                let offset = if !tz {
                    0
                } else if matches!(cursor.rest(), b"+00" | b"+00 BC") {
                    // UTC: every timestamptz on our connections (`TimeZone=UTC`).
                    cursor.pos += 3;
                    0
                } else {
                    cursor.offset()?
                };
                let bc = cursor.eat_str(b" BC");
                if !cursor.at_end() {
                    return None;
                }
                let date = astronomical(year, month, day, bc)?;
                if offset == 0 {
                    TimestampRepr::At {
                        date,
                        seconds,
                        micros,
                    }
                } else {
                    let utc = date.to_days() * 86_400 + i64::from(seconds) - offset;
                    TimestampRepr::At {
                        date: Ymd::from_days(utc.div_euclid(86_400)),
                        seconds: u32::try_from(utc.rem_euclid(86_400)).ok()?,
                        micros,
                    }
                }
            }
        };
        Some(Timestamp { repr, utc: tz })
    }

    /// Whether this is `infinity` or `-infinity`.
    pub fn is_infinite(&self) -> bool {
        !matches!(self.repr, TimestampRepr::At { .. })
    }

    /// The `Display` text written into `buf` without the formatting machinery, for the
    /// common case (years 1 to 9999 AD); `None` otherwise. Serialising every timestamp
    /// column of every row through `fmt` was a measurable share of the client's CPU.
    fn display_on_stack<'b>(&self, buf: &'b mut StackText) -> Option<&'b str> {
        let TimestampRepr::At {
            date,
            seconds,
            micros,
        } = self.repr
        else {
            return None;
        };
        buf.date(date)?;
        buf.push(b'T');
        buf.digits(seconds / 3600, 2);
        buf.push(b':');
        buf.digits(seconds / 60 % 60, 2);
        buf.push(b':');
        buf.digits(seconds % 60, 2);
        if micros != 0 {
            let (mut fraction, mut width) = (micros, 6);
            while fraction % 10 == 0 {
                fraction /= 10;
                width -= 1;
            }
            buf.push(b'.');
            buf.digits(fraction, width);
        }
        if self.utc {
            buf.push(b'Z');
        }
        Some(buf.as_str())
    }

    /// Microseconds since 1970-01-01 00:00:00 (UTC for timestamptz), or `None` for
    /// ±infinity and for instants outside `i64` microseconds (PostgreSQL's latest
    /// timestamps, near year 294276, are beyond it when counted from 1970).
    pub fn unix_micros(&self) -> Option<i64> {
        match self.repr {
            TimestampRepr::At {
                date,
                seconds,
                micros,
            } => date
                .to_days()
                .checked_mul(86_400)?
                .checked_add(i64::from(seconds))?
                .checked_mul(1_000_000)?
                .checked_add(i64::from(micros)),
            _ => None,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, seconds, micros) = match self.repr {
            TimestampRepr::Infinity => return f.write_str("infinity"),
            TimestampRepr::NegInfinity => return f.write_str("-infinity"),
            TimestampRepr::At {
                date,
                seconds,
                micros,
            } => (date, seconds, micros),
        };
        let bc = date.write_date(f)?;
        write!(
            f,
            "T{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )?;
        if micros != 0 {
            let (mut fraction, mut width) = (micros, 6);
            while fraction % 10 == 0 {
                fraction /= 10;
                width -= 1;
            }
            write!(f, ".{fraction:0width$}")?;
        }
        if self.utc {
            f.write_str("Z")?;
        }
        if bc {
            f.write_str(" BC")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Arrays

/// `array_isspace` in PostgreSQL's `arrayfuncs.c`.
fn is_array_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Parses an array literal as `array_out` prints it (and the whitespace `array_in`
/// tolerates). Returns `None` when the literal is malformed.
fn parse_array(text: &str, element: ScalarKind, delimiter: u8) -> Option<Vec<Value<'_>>> {
    let mut parser = ArrayParser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        element,
        delimiter,
    };
    parser.skip_space();
    if parser.peek() == Some(b'[') {
        parser.skip_bounds()?;
    }
    let items = parser.level(0)?;
    parser.skip_space();
    parser.at_end().then_some(items)
}

struct ArrayParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    element: ScalarKind,
    delimiter: u8,
}

impl<'a> ArrayParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_array_space) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    fn integer(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }

    /// Skips the `[lower:upper]...=` decoration printed when a lower bound is not 1. JSON
    /// arrays have no lower bound, so it is dropped.
    fn skip_bounds(&mut self) -> Option<()> {
        while self.peek() == Some(b'[') {
            self.pos += 1;
            self.integer()?;
            self.expect(b':')?;
            self.integer()?;
            self.expect(b']')?;
        }
        self.skip_space();
        self.expect(b'=')?;
        self.skip_space();
        Some(())
    }

    /// One `{…}` level, the cursor on its `{`.
    fn level(&mut self, depth: usize) -> Option<Vec<Value<'a>>> {
        if depth >= MAX_ARRAY_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(items);
        }
        loop {
            self.skip_space();
            let item = match self.peek()? {
                b'{' => Value::Array(self.level(depth + 1)?),
                b'"' => {
                    let text = self.quoted()?;
                    scalar(self.element, text)
                }
                b'}' => return None,
                byte if byte == self.delimiter => return None,
                _ => match self.unquoted()? {
                    None => Value::Null,
                    Some(text) => scalar(self.element, text),
                },
            };
            items.push(item);
            self.skip_space();
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    return Some(items);
                }
                byte if byte == self.delimiter => self.pos += 1,
                _ => return None,
            }
        }
    }

    /// A `"…"` element, the cursor on the opening quote; backslash escapes the next char.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        let raw = self.text.get(start..self.pos)?;
        self.pos += 1;
        Some(if escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// An unquoted element up to the delimiter or `}`, trailing whitespace trimmed.
    /// `Some(None)` is the unquoted word `NULL` (any case), i.e. SQL NULL.
    fn unquoted(&mut self) -> Option<Option<Cow<'a, str>>> {
        let start = self.pos;
        let mut end = start;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return None,
                Some(b'}') => break,
                Some(byte) if byte == self.delimiter => break,
                Some(b'{' | b'"') => return None,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                    end = self.pos;
                }
                Some(byte) => {
                    self.pos += 1;
                    if !is_array_space(byte) {
                        end = self.pos;
                    }
                }
            }
        }
        let raw = self.text.get(start..end)?;
        if !escaped && raw.eq_ignore_ascii_case("NULL") {
            return Some(None);
        }
        Some(Some(if escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        }))
    }
}

/// Drops each escaping backslash, keeping the character after it.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
