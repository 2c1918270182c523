//! Qualified table names.
//!
//! Users name tables the way they would in SQL: `orders`, `sales.orders`,
//! `"Sales"."Order Lines"`. Unquoted parts fold to lower case; quoted parts keep their case
//! and any character, with `""` standing for one `"`. Every name that reaches SQL is quoted
//! again by [`TableName::quoted`] — never spliced raw — so a name full of quotes, spaces,
//! semicolons or SQL is just a name.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Kind, Result};
use crate::quote;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A schema-qualified table name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    schema: String,
    name: String,
}

impl TableName {
    /// The error for a table that is not in the catalog (one wording everywhere).
    pub(crate) fn not_found(&self) -> Error {
        Error::new(
            Kind::NotFound,
            format!("table {self} does not exist; check the schema and the name's case"),
        )
    }

    /// A table in `schema`, both parts taken literally (no case folding, no quote parsing).
    ///
    /// # Errors
    /// A part is empty, longer than 63 bytes, or contains a NUL.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Result<TableName> {
        let (schema, name) = (schema.into(), name.into());
        check_identifier(&schema, "schema")?;
        check_identifier(&name, "table")?;
        Ok(TableName { schema, name })
    }

    /// The schema, as stored in the catalog.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table's own name, as stored in the catalog.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `"schema"."name"`, always quoted: safe to put into SQL text.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote::ident(&self.schema),
            quote::ident(&self.name)
        )
    }
}

/// Parses `table` (schema `public`) or `schema.table`, with SQL quoting rules.
impl FromStr for TableName {
    type Err = Error;

    fn from_str(s: &str) -> Result<TableName> {
        let parts = split_qualified(s)?;
        match parts.as_slice() {
            [name] => TableName::new("public", name.clone()),
            [schema, name] => TableName::new(schema.clone(), name.clone()),
            _ => Err(Error::config(format!(
                "table name {s:?} has {} dot-separated parts; use table or schema.table \
                 (quote parts that contain dots: \"my.schema\".\"t\")",
                parts.len()
            ))),
        }
    }
}

/// As PostgreSQL would print it: quoted only where needed.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_ident(&self.schema),
            display_ident(&self.name)
        )
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({self})")
    }
}

fn display_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        ident.to_owned()
    } else {
        quote::ident(ident)
    }
}

fn check_identifier(part: &str, what: &str) -> Result<()> {
    if part.is_empty() {
        return Err(Error::config(format!("{what} name is empty")));
    }
    if part.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::config(format!(
            "{what} name {part:?} is {} bytes long; PostgreSQL identifiers have at most 63",
            part.len()
        )));
    }
    if part.contains('\0') {
        return Err(Error::config(format!(
            "{what} name {part:?} contains a NUL byte"
        )));
    }
    Ok(())
}

/// Splits `a.b` into identifiers, honouring double quotes and folding unquoted parts.
fn split_qualified(s: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::config(format!("table name {s:?} is malformed: {why}"));
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad("unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return Err(bad("quote inside an unquoted part"));
                }
                if c.is_whitespace() {
                    return Err(bad("space in an unquoted part; quote it"));
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(bad("empty part"));
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(bad("text after a quoted part")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_sql() {
        let t: TableName = "Orders".parse().unwrap();
        assert_eq!((t.schema(), t.name()), ("public", "orders"));
        let t: TableName = "Sales.\"Order Lines\"".parse().unwrap();
        assert_eq!((t.schema(), t.name()), ("sales", "Order Lines"));
        let t: TableName = "\"my.schema\".\"a\"\"b\"".parse().unwrap();
        assert_eq!((t.schema(), t.name()), ("my.schema", "a\"b"));
        let t: TableName = "\"t; DROP TABLE x; --\"".parse().unwrap();
        assert_eq!(t.name(), "t; DROP TABLE x; --");
        assert_eq!(t.quoted(), "\"public\".\"t; DROP TABLE x; --\"");
        let t: TableName = "\"Ünïcødé 表\"".parse().unwrap();
        assert_eq!(t.name(), "Ünïcødé 表");
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "", "a.", ".a", "a.b.c", "\"open", "a b", "x\"y\"", "\"a\"b", "\"\"",
        ] {
            let err = bad.parse::<TableName>().unwrap_err();
            assert!(err.is_config(), "{bad:?}: {err}");
        }
        let long = "x".repeat(64);
        assert!(long
            .parse::<TableName>()
            .unwrap_err()
            .to_string()
            .contains("at most 63"));
    }

    #[test]
    fn quoting_round_trips() {
        for name in [
            "plain",
            "Mixed",
            "with space",
            "quo\"te",
            "semi;colon",
            "'single'",
        ] {
            let t = TableName::new("s", name).unwrap();
            let back: TableName = t.quoted().parse().unwrap();
            assert_eq!(back, t);
            let shown: TableName = t.to_string().parse().unwrap();
            assert_eq!(shown, t);
        }
    }
}
