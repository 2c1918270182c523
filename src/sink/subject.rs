//! Where each record goes: subjects built from a template.
//!
//! The default template is `{prefix}.{schema}.{table}`; placeholders are `{prefix}`,
//! `{schema}`, `{table}` and `{op}`. With key partitions *N* a last token `<p>` is added,
//! `p = hash(key) mod N` (a stable FNV-1a hash of the key's JSON), so consumers can split one
//! table's subject by key and still see each key's changes in order. Logical messages go to
//! `{prefix}._message.<message prefix>`, schema records to `{prefix}._schema.<schema>.<table>`.
//!
//! NATS subjects are `.`-separated tokens that must not contain `.`, `*`, `>` or white
//! space; schema, table and message-prefix names may (quoted identifiers), so every byte
//! outside `[A-Za-z0-9_-]` is written `%XX`: one-to-one, so two tables never share a
//! subject.

use std::fmt::Write as _;

use super::error::SinkError;

/// The default subject template.
pub const DEFAULT_TEMPLATE: &str = "{prefix}.{schema}.{table}";

/// One piece of a template token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Schema,
    Table,
    Op,
}

/// How subjects are made.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    /// Tokens of the template, each a sequence of pieces (`{prefix}` is expanded already).
    tokens: Vec<Vec<Piece>>,
    key_partitions: Option<u32>,
}

impl Subjects {
    /// Subjects under `prefix` (one or more literal tokens) by `template`, with a last
    /// key-hash token when `key_partitions` is set.
    ///
    /// # Errors
    /// [`SinkError::Config`] for an empty or malformed prefix or template, an unknown
    /// placeholder, or a template that does not start with a fixed token (a stream needs
    /// one to own the subjects).
    pub fn new(
        prefix: &str,
        template: &str,
        key_partitions: Option<u32>,
    ) -> Result<Subjects, SinkError> {
        if prefix.is_empty()
            || prefix
                .split('.')
                .any(|t| t.is_empty() || t.bytes().any(|b| !literal_byte(b)))
        {
            return Err(SinkError::Config(format!(
                "subject prefix {prefix:?}: use dot-separated tokens of letters, digits, _ and -"
            )));
        }
        if key_partitions == Some(0) {
            return Err(SinkError::Config(
                "key partitions: give at least 1".to_owned(),
            ));
        }
        let expanded = template.replace("{prefix}", prefix);
        let mut tokens = Vec::new();
        for token in expanded.split('.') {
            tokens.push(parse_token(token).map_err(|why| {
                SinkError::Config(format!("subject template {template:?}: {why}"))
            })?);
        }
        let subjects = Subjects {
            prefix: prefix.to_owned(),
            tokens,
            key_partitions,
        };
        if subjects.literal_head().is_empty() {
            return Err(SinkError::Config(format!(
                "subject template {template:?} must start with a fixed token, e.g. {{prefix}}"
            )));
        }
        Ok(subjects)
    }

    /// The subject of a row change (or truncate) of `schema.table`; `key_hash` picks the
    /// partition token when key partitions are on (0 without a key).
    pub fn for_change(&self, schema: &str, table: &str, op: &str, key_hash: u64) -> String {
        let mut out = self.change_head(schema, table, op);
        if let Some(p) = self.partition(key_hash) {
            let _ = write!(out, ".{p}");
        }
        out
    }

    /// [`for_change`](Self::for_change) without the partition token: the same for every
    /// record of one table and operation, so an encoder makes it once.
    pub(crate) fn change_head(&self, schema: &str, table: &str, op: &str) -> String {
        let mut out = String::with_capacity(64);
        for (i, token) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            for piece in token {
                match piece {
                    Piece::Literal(s) => out.push_str(s),
                    Piece::Schema => escape_into(&mut out, schema),
                    Piece::Table => escape_into(&mut out, table),
                    Piece::Op => out.push_str(op),
                }
            }
        }
        out
    }

    /// Whether the template uses `{op}` (else one subject serves every operation).
    pub(crate) fn names_op(&self) -> bool {
        self.tokens
            .iter()
            .flatten()
            .any(|piece| *piece == Piece::Op)
    }

    /// The number of key partitions, if on.
    pub(crate) fn key_partitions(&self) -> Option<u32> {
        self.key_partitions
    }

    /// The partition token for `key_hash`, when key partitions are on.
    pub(crate) fn partition(&self, key_hash: u64) -> Option<u64> {
        self.key_partitions.map(|n| key_hash % u64::from(n))
    }

    /// The subject of a logical message with `message_prefix`.
    pub fn for_message(&self, message_prefix: &str) -> String {
        let mut out = format!("{}._message.", self.prefix);
        escape_into(&mut out, message_prefix);
        out
    }

    /// The subject of the schema records of `schema.table`.
    pub fn for_schema(&self, schema: &str, table: &str) -> String {
        let mut out = format!("{}._schema.", self.prefix);
        escape_into(&mut out, schema);
        out.push('.');
        escape_into(&mut out, table);
        out
    }

    /// The subject filters a stream needs to take every subject made here:
    /// `<fixed head of the template>.>` and `<prefix>.>` (the same when the template starts
    /// with the prefix).
    pub fn stream_filters(&self) -> Vec<String> {
        let head = format!("{}.>", self.literal_head());
        let prefix = format!("{}.>", self.prefix);
        if covers(&prefix, &head.replace(".>", ".x")) || head == prefix {
            vec![prefix]
        } else {
            vec![head, prefix]
        }
    }

    /// The leading tokens of the template without placeholders, joined by dots.
    fn literal_head(&self) -> String {
        let mut head = Vec::new();
        for token in &self.tokens {
            match token.as_slice() {
                [Piece::Literal(s)] => head.push(s.as_str()),
                _ => break,
            }
        }
        // The last token must stay variable, or every table would share one subject.
        if head.len() == self.tokens.len() && self.key_partitions.is_none() {
            head.pop();
        }
        head.join(".")
    }
}

/// Whether the subject filter `filter` (with `*` and `>` wildcards) takes `subject`.
pub fn covers(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn parse_token(token: &str) -> Result<Vec<Piece>, String> {
    if token.is_empty() {
        return Err("empty token (two dots, or a dot at an end)".into());
    }
    let mut pieces = Vec::new();
    let mut rest = token;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed placeholder in {token:?}"))?;
                pieces.push(match &rest[1..end] {
                    "schema" => Piece::Schema,
                    "table" => Piece::Table,
                    "op" => Piece::Op,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}}; use {{prefix}}, {{schema}}, {{table}} or {{op}}"
                        ))
                    }
                });
                rest = &rest[end + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let literal = &rest[..end];
                if literal.bytes().any(|b| !literal_byte(b)) {
                    return Err(format!(
                        "{literal:?}: fixed text may hold letters, digits, _ and - only"
                    ));
                }
                pieces.push(Piece::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    Ok(pieces)
}

fn literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Appends `name` with every byte outside `[A-Za-z0-9_-]` as `%XX`.
fn escape_into(out: &mut String, name: &str) {
    for b in name.bytes() {
        if literal_byte(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if name.is_empty() {
        out.push('%');
    }
}

/// A stable 64-bit FNV-1a hash (the same in every process and version, unlike the
/// standard library's hasher), of a key's JSON bytes.
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_names_schema_and_table() {
        let s = Subjects::new("cdc", DEFAULT_TEMPLATE, None).unwrap();
        assert_eq!(
            s.for_change("public", "orders", "insert", 7),
            "cdc.public.orders"
        );
        assert_eq!(s.for_message("audit"), "cdc._message.audit");
        assert_eq!(
            s.for_schema("public", "orders"),
            "cdc._schema.public.orders"
        );
        assert_eq!(s.stream_filters(), ["cdc.>"]);
    }

    #[test]
    fn names_that_are_not_subject_tokens_are_escaped_one_to_one() {
        let s = Subjects::new("a.b", DEFAULT_TEMPLATE, None).unwrap();
        assert_eq!(
            s.for_change("my schema", "t.x*>", "insert", 0),
            "a.b.my%20schema.t%2Ex%2A%3E"
        );
        // "%" itself is escaped, so an escaped-looking name cannot collide.
        assert_ne!(
            s.for_change("s", "t%2E", "insert", 0),
            s.for_change("s", "t.", "insert", 0)
        );
        assert_eq!(s.for_change("s", "é", "insert", 0), "a.b.s.%C3%A9");
    }

    #[test]
    fn key_partitions_add_a_last_token() {
        let s = Subjects::new("cdc", DEFAULT_TEMPLATE, Some(4)).unwrap();
        assert_eq!(s.for_change("s", "t", "update", 10), "cdc.s.t.2");
        assert_eq!(key_hash(b"{\"id\":1}"), key_hash(b"{\"id\":1}"));
        assert_ne!(key_hash(b"{\"id\":1}"), key_hash(b"{\"id\":2}"));
    }

    #[test]
    fn templates_are_checked() {
        let s = Subjects::new("cdc", "{prefix}.{op}.{schema}_{table}", None).unwrap();
        assert_eq!(s.for_change("s", "t", "delete", 0), "cdc.delete.s_t");
        let other = Subjects::new("cdc", "db1.{table}", None).unwrap();
        assert_eq!(other.stream_filters(), ["db1.>", "cdc.>"]);
        for bad in [
            "{table}.x",
            "{prefix}..{table}",
            "{prefix}.{nope}",
            "{prefix}.{table",
        ] {
            assert!(Subjects::new("cdc", bad, None).is_err(), "{bad}");
        }
        assert!(Subjects::new("c*", DEFAULT_TEMPLATE, None).is_err());
        assert!(Subjects::new("", DEFAULT_TEMPLATE, None).is_err());
        assert!(Subjects::new("cdc", DEFAULT_TEMPLATE, Some(0)).is_err());
    }

    #[test]
    fn filters_cover_subjects() {
        assert!(covers("cdc.>", "cdc.s.t"));
        assert!(covers("cdc.*.t", "cdc.s.t"));
        assert!(!covers("cdc.*", "cdc.s.t"));
        assert!(!covers("cdc.>", "cdc"));
        assert!(covers("cdc.s.t", "cdc.s.t"));
    }
}
