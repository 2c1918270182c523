//! Column values as native Python objects.
//!
//! | PostgreSQL | Python |
//! |---|---|
//! | NULL | `None` |
//! | `bool` | `bool` |
//! | `int2`, `int4`, `int8` | `int` |
//! | `float4`, `float8` | `float` (`nan`, `inf`, `-inf` included) |
//! | `numeric` | `decimal.Decimal`, exact (`Decimal('NaN')`, `Decimal('Infinity')`, `Decimal('-Infinity')`) |
//! | `json`, `jsonb` | what `json.loads` makes of the document (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`) |
//! | `bytea` | `bytes` |
//! | `date` | `datetime.date` |
//! | `time` | `datetime.time` (naive); `timetz`: `datetime.time` with a fixed-offset `tzinfo` |
//! | `timestamp` | naive `datetime.datetime` |
//! | `timestamptz` | `datetime.datetime` with `tzinfo=datetime.timezone.utc` |
//! | `uuid` | `uuid.UUID` |
//! | arrays | `list`, nested per dimension |
//! | anything else (`text`, `varchar`, enums, `interval`, `inet`, ranges, …) | `str`: the PostgreSQL text |
//!
//! Values Python's types cannot hold stay `str` with PostgreSQL's own text (what
//! `SELECT col::text` prints in a session with `TimeZone=UTC`): dates and timestamps before
//! year 1 (`0044-03-15 BC`), after 9999 (`10000-01-01`), `infinity` and `-infinity`, and
//! `time '24:00:00'`.

use std::borrow::Cow;

use changestream::calendar::civil_from_days;
use changestream::consumer::{BeforeImage, Image, Record, Timestamp, Value};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::json::KeyCache;
use crate::relation::{is_uuid_type, RelationNames};

/// A Python class or function, imported once.
macro_rules! imported {
    ($py:expr, $module:literal, $name:literal) => {{
        static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        CELL.get_or_try_init($py, || -> PyResult<Py<PyAny>> {
            Ok($py.import($module)?.getattr($name)?.unbind())
        })
        .map(|object| object.bind($py))
    }};
}

/// The image's columns as a `dict` of column name → value; unchanged TOASTed values (not
/// sent by the server, no full before-image to fill them) are left out. `names` are the
/// image's relation's (see [`RelationNames::is_of`]).
pub(crate) fn image_dict<'py>(
    py: Python<'py>,
    image: &Image<'_>,
    names: &RelationNames,
) -> PyResult<Bound<'py, PyDict>> {
    fill_dict(py, image, names, Share::Nothing, None)
}

/// A record's key, current and before images as dicts (`None` where the record has no
/// such image), each value converted once: the key's objects are those of the image whose
/// tuple it is a view of, and a full before-image takes the current image's object for
/// every column the change left as it was. An update of a wide row changes a column or
/// two, and a `Decimal` or `datetime` made again costs more than the comparison.
pub(crate) fn record_dicts<'py>(
    py: Python<'py>,
    record: &Record,
    names: &RelationNames,
) -> PyResult<[Option<Bound<'py, PyDict>>; 3]> {
    let before_image = record.before();
    let full_before = matches!(before_image, BeforeImage::Full(_));
    let mut columns = Vec::new();
    let current = match record.current() {
        Some(image) => {
            let keep = full_before.then_some(&mut columns);
            Some(fill_dict(py, &image, names, Share::Nothing, keep)?)
        }
        None => None,
    };
    let before = match before_image.image() {
        Some(image) => {
            let share = match current {
                Some(_) if full_before => Share::Columns(&columns),
                _ => Share::Nothing,
            };
            Some(fill_dict(py, &image, names, share, None)?)
        }
        None => None,
    };
    // `Record::key` is a view of the new tuple when there is one (the current image's),
    // else of the old one (the before-image's).
    let key = match record.key() {
        Some(image) => {
            let share = match current.as_ref().or(before.as_ref()) {
                Some(dict) => Share::Tuple(dict),
                None => Share::Nothing,
            };
            Some(fill_dict(py, &image, names, share, None)?)
        }
        None => None,
    };
    Ok([key, current, before])
}

/// Objects a dict may take from one made before for the same record. Only immutable ones
/// are taken — never a `dict` or `list` (json, arrays) — so changing one dict never
/// changes another.
enum Share<'s, 'a, 'py> {
    Nothing,
    /// The dict of the tuple a key image is a view of: its key columns are in it.
    Tuple(&'s Bound<'py, PyDict>),
    /// The record's other full image, by column position: an equal value's object.
    Columns(&'s [Converted<'a, 'py>]),
}

/// One column of an image as converted: its value and object (`None`: unchanged TOAST).
type Converted<'a, 'py> = Option<(Value<'a>, Bound<'py, PyAny>)>;

/// `image` as a dict (see [`image_dict`]), taking what it can from `share`; with `keep`,
/// every column's value and object are pushed there in order.
fn fill_dict<'py, 'a>(
    py: Python<'py>,
    image: &Image<'a>,
    names: &RelationNames,
    share: Share<'_, 'a, 'py>,
    mut keep: Option<&mut Vec<Converted<'a, 'py>>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let mut from = 0;
    for (position, (name, value)) in image.iter().enumerate() {
        if value.is_unchanged() {
            if let Some(keep) = keep.as_mut() {
                keep.push(None);
            }
            continue;
        }
        let (key, uuid) = match names.column(name, &mut from) {
            Some(column) => (column.key.bind(py).clone(), column.uuid),
            // Not reached: an image lists its relation's columns in order.
            None => (PyString::new(py, name), is_uuid(image, name)),
        };
        let shared = match share {
            Share::Nothing => None,
            Share::Tuple(dict) => dict.get_item(&key)?,
            Share::Columns(columns) => match columns.get(position) {
                Some(Some((earlier, object))) if same_value(earlier, &value) => {
                    Some(object.clone())
                }
                _ => None,
            },
        };
        let object = match shared {
            Some(object)
                if !object.is_instance_of::<PyDict>() && !object.is_instance_of::<PyList>() =>
            {
                object
            }
            _ if uuid && matches!(value, Value::Text(_) | Value::Array(_)) => {
                uuid_value(py, &value)?
            }
            _ => to_python(py, &value, names.json_keys())?,
        };
        dict.set_item(key, &object)?;
        if let Some(keep) = keep.as_mut() {
            keep.push(Some((value, object)));
        }
    }
    Ok(dict)
}

/// Whether two values of one column make equal Python objects of an immutable type
/// (json and arrays are never shared, so they compare unequal here).
fn same_value(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b))
        | (Value::Numeric(a), Value::Numeric(b))
        | (Value::Text(a), Value::Text(b))
        | (Value::Bytea(a), Value::Bytea(b))
        | (Value::Time(a), Value::Time(b))
        | (Value::TimeTz(a), Value::TimeTz(b)) => a == b,
        (Value::Date(a), Value::Date(b)) => a == b,
        (Value::Timestamp(a), Value::Timestamp(b))
        | (Value::TimestampTz(a), Value::TimestampTz(b)) => a == b,
        _ => false,
    }
}

/// The names of the image's columns whose TOASTed value was not sent.
pub(crate) fn unchanged_columns(image: &Image<'_>) -> Vec<String> {
    image
        .iter()
        .filter(|(_, v)| v.is_unchanged())
        .map(|(n, _)| n.to_owned())
        .collect()
}

fn is_uuid(image: &Image<'_>, name: &str) -> bool {
    image
        .relation()
        .columns()
        .iter()
        .find(|c| c.name() == name)
        .is_some_and(|c| is_uuid_type(c.type_oid()))
}

/// A `uuid` (or `uuid[]`) value: `uuid.UUID`s, NULLs as `None`.
fn uuid_value<'py>(py: Python<'py>, value: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Text(text) => {
            let uuid = imported!(py, "uuid", "UUID")?;
            match uuid_int(text) {
                // `UUID(int=…)`, `int` passed by position (`hex, bytes, bytes_le, fields,
                // int`, unchanged since the module was added): skips the text parsing of
                // `UUID.__init__` (in Python) and a keyword dict; the same object.
                Some(n) => uuid.call1((py.None(), py.None(), py.None(), py.None(), n)),
                None => uuid.call1((text.as_ref(),)),
            }
        }
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(uuid_value(py, item)?)?;
            }
            Ok(list.into_any())
        }
        other => to_python(py, other, &KeyCache::default()),
    }
}

/// The 128-bit number of a `uuid` as PostgreSQL prints it (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`);
/// `None` for any other text (left to `uuid.UUID` itself).
fn uuid_int(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        n = n << 4 | u128::from(char::from(b).to_digit(16)?);
    }
    Some(n)
}

/// One value as a Python object (see the module documentation).
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    value: &Value<'_>,
    json_keys: &KeyCache,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null | Value::Unchanged => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(text) => float(text).into_pyobject(py)?.into_any(),
        Value::Numeric(text) => imported!(py, "decimal", "Decimal")?.call1((text.as_ref(),))?,
        Value::Json(raw) => crate::json::loads(py, raw.get(), json_keys)?,
        Value::Bytea(_) => match value.bytea_bytes() {
            Some(bytes) => PyBytes::new(py, &bytes).into_any(),
            None => text(py, value),
        },
        Value::Date(date) => match date.ymd() {
            Some((year, month, day)) if (1..=9999).contains(&year) => {
                imported!(py, "datetime", "date")?.call1((year, month, day))?
            }
            _ => PyString::new(py, &date.to_string()).into_any(),
        },
        Value::Time(text) => match parse_time(text) {
            Some((h, m, s, us, _)) => imported!(py, "datetime", "time")?.call1((h, m, s, us))?,
            None => PyString::new(py, text).into_any(),
        },
        Value::TimeTz(text) => match parse_time(text) {
            Some((h, m, s, us, Some(offset))) => {
                let delta = imported!(py, "datetime", "timedelta")?.call1((0, offset))?;
                let tz = imported!(py, "datetime", "timezone")?.call1((delta,))?;
                imported!(py, "datetime", "time")?.call1((h, m, s, us, tz))?
            }
            _ => PyString::new(py, text).into_any(),
        },
        Value::Timestamp(ts) => timestamp(py, ts, false)?,
        Value::TimestampTz(ts) => timestamp(py, ts, true)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item, json_keys)?)?;
            }
            list.into_any()
        }
        Value::Text(text) => PyString::new(py, text).into_any(),
        // A kind added to the library later: its JSON form, as text.
        other => text(py, other),
    })
}

/// The JSON form of a value as a string (kinds without a better Python type).
fn text<'py>(py: Python<'py>, value: &Value<'_>) -> Bound<'py, PyAny> {
    // A Value always serialises; a JSON string is given without its quotes.
    let json = serde_json::to_string(value).unwrap_or_default();
    match serde_json::from_str::<String>(&json) {
        Ok(s) => PyString::new(py, &s).into_any(),
        Err(_) => PyString::new(py, &json).into_any(),
    }
}

/// `float4`/`float8` text: a number, `NaN`, `Infinity` or `-Infinity`.
fn float(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        // The server prints floats that Rust parses exactly; NaN for the impossible rest.
        _ => text.parse().unwrap_or(f64::NAN),
    }
}

/// A timestamp as a `datetime` (aware UTC when `utc`), or its PostgreSQL text when
/// Python's `datetime` cannot hold it (infinite, BC, after 9999).
fn timestamp<'py>(py: Python<'py>, ts: &Timestamp, utc: bool) -> PyResult<Bound<'py, PyAny>> {
    if let Some(micros) = ts.unix_micros() {
        if let Some(datetime) = datetime_from_unix_micros(py, micros, utc)? {
            return Ok(datetime);
        }
    }
    Ok(PyString::new(py, &pg_timestamp_text(ts, utc)).into_any())
}

/// A `datetime` for `micros` since 1970-01-01 (aware UTC when `utc`, else naive), or `None`
/// outside years 1 to 9999.
pub(crate) fn datetime_from_unix_micros<'py>(
    py: Python<'py>,
    micros: i64,
    utc: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    const DAY: i64 = 86_400_000_000;
    let (days, in_day) = (micros.div_euclid(DAY), micros.rem_euclid(DAY));
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Ok(None);
    }
    let seconds = in_day / 1_000_000;
    let (hour, minute, second, micro) = (
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        in_day % 1_000_000,
    );
    // `datetime.fromisoformat` of the ISO text is 2.5 times as fast as the constructor,
    // which parses its eight arguments by keyword rules (the datetime C API is not part of
    // the stable ABI), and makes the same object: `+00:00` is `timezone.utc` itself.
    let mut text = [0u8; 32];
    let len = iso_datetime(
        &mut text,
        [year, i64::from(month), i64::from(day), hour, minute, second],
        micro,
        utc,
    );
    // Digits and ASCII punctuation only.
    let text = std::str::from_utf8(&text[..len]).expect("ASCII");
    Ok(Some(fromisoformat(py)?.call1((text,))?))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` (and `+00:00` when `utc`) into `out`, for years 1 to 9999:
/// the form `datetime.isoformat()` prints, which `fromisoformat` reads on every Python
/// from 3.7. Returns the length.
fn iso_datetime(out: &mut [u8; 32], fields: [i64; 6], micro: i64, utc: bool) -> usize {
    let mut at = 0;
    let mut put = |value: i64, width: u32, after: u8| {
        for i in (0..width).rev() {
            // In range by construction: each field has at most `width` digits.
            out[at] = b'0' + (value / 10i64.pow(i) % 10) as u8;
            at += 1;
        }
        if after != 0 {
            out[at] = after;
            at += 1;
        }
    };
    let [year, month, day, hour, minute, second] = fields;
    put(year, 4, b'-');
    put(month, 2, b'-');
    put(day, 2, b'T');
    put(hour, 2, b':');
    put(minute, 2, b':');
    put(second, 2, b'.');
    put(micro, 6, 0);
    if utc {
        out[at..at + 6].copy_from_slice(b"+00:00");
        at += 6;
    }
    at
}

/// `datetime.datetime.fromisoformat`, looked up once.
fn fromisoformat(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FROMISOFORMAT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FROMISOFORMAT
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(imported!(py, "datetime", "datetime")?
                .getattr("fromisoformat")?
                .unbind())
        })
        .map(|object| object.bind(py))
}

/// PostgreSQL's text of a timestamp in a `TimeZone=UTC` session, from the library's JSON
/// form: `2024-01-01T12:00:00.5Z BC` → `2024-01-01 12:00:00.5+00 BC`.
fn pg_timestamp_text(ts: &Timestamp, utc: bool) -> String {
    let json = ts.to_string();
    let text: Cow<'_, str> = if ts.is_infinite() {
        Cow::Borrowed(&json)
    } else {
        let spaced = json.replacen('T', " ", 1);
        Cow::Owned(if utc {
            spaced.replacen('Z', "+00", 1)
        } else {
            spaced
        })
    };
    text.into_owned()
}

/// `HH:MM:SS[.ffffff][±HH[:MM[:SS]]]` → hour, minute, second, microsecond and the offset in
/// seconds east of UTC; `None` for what `datetime.time` cannot hold (`24:00:00`).
fn parse_time(text: &str) -> Option<(u32, u32, u32, u32, Option<i64>)> {
    let b = text.as_bytes();
    let two = |at: usize| -> Option<u32> {
        let d = b.get(at..at + 2)?;
        (d[0].is_ascii_digit() && d[1].is_ascii_digit())
            .then(|| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let (h, m, s) = (two(0)?, two(3)?, two(6)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut at = 8;
    let mut micros = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let digits = &text[start..at];
        if digits.is_empty() || digits.len() > 6 {
            return None;
        }
        micros = digits.parse::<u32>().ok()? * 10u32.pow(6 - digits.len() as u32);
    }
    let offset = match b.get(at) {
        None => None,
        Some(&sign @ (b'+' | b'-')) => {
            let parts: Vec<&str> = text[at + 1..].split(':').collect();
            if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
                return None;
            }
            let mut seconds = 0i64;
            for (i, part) in parts.iter().enumerate() {
                let n: i64 = part.parse().ok()?;
                seconds += n * [3600, 60, 1][i];
            }
            Some(if sign == b'-' { -seconds } else { seconds })
        }
        Some(_) => return None,
    };
    Some((h, m, s, micros, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert_eq!(
            uuid_int("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Some(0xa0eebc99_9c0b_4ef8_bb6d_6bb9bd380a11)
        );
        assert_eq!(
            uuid_int("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
            Some(u128::MAX)
        );
        assert_eq!(uuid_int("a0eebc999c0b4ef8bb6d6bb9bd380a11"), None);
        assert_eq!(uuid_int("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"), None);
    }

    #[test]
    fn iso_datetimes() {
        let iso = |fields, micro, utc| {
            let mut out = [0; 32];
            let len = iso_datetime(&mut out, fields, micro, utc);
            String::from_utf8(out[..len].to_vec()).unwrap()
        };
        assert_eq!(
            iso([2024, 1, 2, 3, 4, 5], 60, true),
            "2024-01-02T03:04:05.000060+00:00"
        );
        assert_eq!(
            iso([1, 12, 31, 23, 59, 59], 999_999, false),
            "0001-12-31T23:59:59.999999"
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("12:00:00.5"), Some((12, 0, 0, 500_000, None)));
        assert_eq!(
            parse_time("01:02:03+05:30"),
            Some((1, 2, 3, 0, Some(19_800)))
        );
        assert_eq!(
            parse_time("01:02:03.000001-08"),
            Some((1, 2, 3, 1, Some(-28_800)))
        );
        assert_eq!(parse_time("24:00:00"), None);
        assert_eq!(parse_time("garbage"), None);
    }
}
