//! `json`/`jsonb` documents straight to Python objects: what `json.loads` makes of them,
//! without going through it.
//!
//! `json.loads` is pure Python around a C scanner (a regex, a decoder object, a frame per
//! call): about 1.7 µs for a small document, as much as every other value of a row
//! together. This walks the text once and builds the same objects — `dict` (duplicate keys:
//! the last value in the first key's place, as `json.loads`), `list`, `str`, `int` (any
//! size), `float`, `bool`, `None`. Numbers keep `json.loads`'s split: an integer literal
//! (no fraction, no exponent) is an `int`, exact at any size; anything else a `float`,
//! correctly rounded by Rust's parser as by Python's `float()`.
//!
//! What Rust cannot hold or this walker does not take — a lone surrogate escape (`"\ud800"`,
//! legal in `json` though not in `jsonb`), a control character in a string, `NaN`, text that
//! is not JSON, nesting deeper than [`MAX_DEPTH`] — goes to `json.loads` itself, so results
//! and errors stay exactly its own.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString};

/// Deeper documents go to `json.loads` (which stops at Python's recursion limit).
const MAX_DEPTH: usize = 200;

/// The Python object `json.loads(text)` returns; object keys from `keys` when it has them.
pub(crate) fn loads<'py>(
    py: Python<'py>,
    text: &str,
    keys: &KeyCache,
) -> PyResult<Bound<'py, PyAny>> {
    let mut walker = Walker {
        py,
        keys,
        source: text,
        text: text.as_bytes(),
        at: 0,
        scratch: String::new(),
    };
    match walker.document() {
        Ok(object) => Ok(object),
        Err(Unsupported::Python(err)) => Err(err),
        Err(Unsupported::Text) => json_loads(py)?.call1((text,)),
    }
}

fn json_loads(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOADS.import(py, "json", "loads")
}

/// Object keys already made as Python strings: the documents of one column mostly have the
/// same keys, and a cached key needs no allocation, no decoding and no hashing (a `str`
/// keeps its hash).
#[derive(Default)]
pub(crate) struct KeyCache {
    /// First come, up to [`KeyCache::MAX_KEYS`]. Locked only to look up or add, never
    /// while Python code could run: a busy lock (another thread) is a miss, not a wait.
    keys: Mutex<Vec<(Box<str>, Py<PyString>)>>,
}

impl KeyCache {
    const MAX_KEYS: usize = 64;
    const MAX_KEY_LEN: usize = 64;

    fn get<'py>(&self, py: Python<'py>, key: &str) -> Bound<'py, PyString> {
        let cacheable = key.len() <= Self::MAX_KEY_LEN;
        if cacheable {
            if let Ok(keys) = self.keys.try_lock() {
                if let Some((_, string)) = keys.iter().find(|(k, _)| **k == *key) {
                    return string.bind(py).clone();
                }
            }
        }
        let string = PyString::new(py, key);
        if cacheable {
            if let Ok(mut keys) = self.keys.try_lock() {
                if keys.len() < Self::MAX_KEYS {
                    keys.push((key.into(), string.clone().unbind()));
                }
            }
        }
        string
    }
}

/// Why the walk stopped.
enum Unsupported {
    /// Text this walker leaves to `json.loads`.
    Text,
    /// Python failed to make an object (memory, `int`'s digit limit).
    Python(PyErr),
}

impl From<PyErr> for Unsupported {
    fn from(err: PyErr) -> Unsupported {
        Unsupported::Python(err)
    }
}

type Walked<'py> = Result<Bound<'py, PyAny>, Unsupported>;

struct Walker<'py, 'a> {
    py: Python<'py>,
    source: &'a str,
    /// `source`'s bytes.
    text: &'a [u8],
    at: usize,
    /// A string with escapes, unescaped (reused).
    scratch: String,
    keys: &'a KeyCache,
}

impl<'py, 'a> Walker<'py, 'a> {
    fn document(&mut self) -> Walked<'py> {
        let value = self.value(0)?;
        self.skip_space();
        if self.at == self.text.len() {
            Ok(value)
        } else {
            Err(Unsupported::Text)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// JSON's whitespace, as `json.loads` skips it.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Walked<'py> {
        if depth > MAX_DEPTH {
            return Err(Unsupported::Text);
        }
        self.skip_space();
        let py = self.py;
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(self.string()?.into_any()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.word(b"true", PyBool::new(py, true).to_owned().into_any()),
            Some(b'f') => self.word(b"false", PyBool::new(py, false).to_owned().into_any()),
            Some(b'n') => self.word(b"null", py.None().into_bound(py)),
            _ => Err(Unsupported::Text),
        }
    }

    fn word(&mut self, word: &[u8], object: Bound<'py, PyAny>) -> Walked<'py> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(object)
        } else {
            Err(Unsupported::Text)
        }
    }

    fn object(&mut self, depth: usize) -> Walked<'py> {
        self.at += 1; // '{'
        let dict = PyDict::new(self.py);
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(dict.into_any());
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(Unsupported::Text);
            }
            let key = self.key()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(Unsupported::Text);
            }
            self.at += 1;
            let value = self.value(depth + 1)?;
            // A repeated key keeps its first place and takes the last value, as in
            // `json.loads`.
            dict.set_item(key, value)?;
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(dict.into_any());
                }
                _ => return Err(Unsupported::Text),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Walked<'py> {
        self.at += 1; // '['
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(PyList::empty(self.py).into_any());
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(PyList::new(self.py, items)?.into_any());
                }
                _ => return Err(Unsupported::Text),
            }
        }
    }

    /// A number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, JSON's grammar.
    fn number(&mut self) -> Walked<'py> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unsupported::Text),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(Unsupported::Text);
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(Unsupported::Text);
            }
            self.digits();
        }
        let literal = self.slice(start, self.at);
        let py = self.py;
        if !integer {
            // Correctly rounded, as Python's `float()` is: the same float `json.loads` makes.
            let float: f64 = literal.parse().map_err(|_| Unsupported::Text)?;
            return Ok(PyFloat::new(py, float).into_any());
        }
        match literal.parse::<i64>() {
            Ok(small) => Ok(pyo3::types::PyInt::new(py, small).into_any()),
            // Past 64 bits: Python's own `int()` of the digits (its limits included).
            Err(_) => Ok(int(py)?.call1((literal,))?),
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> Result<Bound<'py, PyString>, Unsupported> {
        let start = self.at + 1;
        match self.plain()? {
            Some(text) => Ok(PyString::new(self.py, text)),
            None => self.escaped_string(start),
        }
    }

    /// An object's key, from its opening quote: from `self.keys` when it has no escapes.
    fn key(&mut self) -> Result<Bound<'py, PyString>, Unsupported> {
        let start = self.at + 1;
        match self.plain()? {
            Some(text) => Ok(self.keys.get(self.py, text)),
            None => self.escaped_string(start),
        }
    }

    /// A string without escapes, from its opening quote to past its closing one; `None`
    /// (stopped at the first backslash) for one with escapes.
    fn plain(&mut self) -> Result<Option<&'a str>, Unsupported> {
        self.at += 1; // '"'
        let start = self.at;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let text = self.slice(start, self.at);
                    self.at += 1;
                    return Ok(Some(text));
                }
                b'\\' => return Ok(None),
                // `json.loads` refuses control characters in strings.
                0..=0x1f => return Err(Unsupported::Text),
                _ => self.at += 1,
            }
        }
        Err(Unsupported::Text)
    }

    /// A string with escapes from `start` (after its opening quote), `self.at` at the
    /// first backslash.
    fn escaped_string(&mut self, start: usize) -> Result<Bound<'py, PyString>, Unsupported> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = self.escaped(start, &mut scratch);
        let string = result.map(|()| PyString::new(self.py, &scratch));
        self.scratch = scratch;
        string
    }

    /// The rest of a string with escapes, from `start` (after the quote) into `out`.
    fn escaped(&mut self, start: usize, out: &mut String) -> Result<(), Unsupported> {
        let mut run = start;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(self.slice(run, self.at));
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    out.push_str(self.slice(run, self.at));
                    self.at += 1;
                    let escape = self.peek().ok_or(Unsupported::Text)?;
                    self.at += 1;
                    out.push(match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(Unsupported::Text),
                    });
                    run = self.at;
                }
                Some(0..=0x1f) | None => return Err(Unsupported::Text),
                Some(_) => self.at += 1,
            }
        }
    }

    /// `XXXX` after `\u`, and a low surrogate's `\uXXXX` after a high one. A lone surrogate
    /// (which `json.loads` keeps, and a Rust string cannot) is left to `json.loads`.
    fn unicode_escape(&mut self) -> Result<char, Unsupported> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if !self.text[self.at..].starts_with(b"\\u") {
                    return Err(Unsupported::Text);
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Unsupported::Text);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Unsupported::Text),
            other => other,
        };
        char::from_u32(code).ok_or(Unsupported::Text)
    }

    fn hex4(&mut self) -> Result<u32, Unsupported> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or(Unsupported::Text)?;
        let mut code = 0;
        for &d in digits {
            let nibble = char::from(d).to_digit(16).ok_or(Unsupported::Text)?;
            code = code * 16 + nibble;
        }
        self.at += 4;
        Ok(code)
    }

    /// The text between two positions, each at an ASCII byte or the end (so on character
    /// boundaries: slicing cannot panic).
    fn slice(&self, start: usize, end: usize) -> &'a str {
        &self.source[start..end]
    }
}

fn int(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static INT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    INT.import(py, "builtins", "int")
}
