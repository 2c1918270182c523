//! Quoting for SQL text, where a statement cannot take parameters (replication commands,
//! DDL). The checked public forms are [`super::quote_ident`] and [`super::quote_literal`].

/// `"name"` with embedded double quotes doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with embedded single quotes doubled (standard_conforming_strings on, the
/// default since 9.1).
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
