//! Quoting for SQL text, where a statement cannot take parameters (replication commands,
//! DDL, names in generated SELECTs): the one copy every module uses.

use crate::error::{Error, Result};

/// `"name"` with embedded double quotes doubled: an identifier by SQL rules, whatever its
/// case or characters.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with embedded single quotes doubled (standard_conforming_strings on, the
/// default since 9.1, and the replication grammar, which has no backslash escapes).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// [`ident`] for text the protocol must carry: refuses an empty name or a NUL byte.
///
/// # Errors
/// [`Error::is_config`](crate::Error::is_config) for an empty name or one with a NUL byte.
pub(crate) fn checked_ident(name: &str) -> Result<String> {
    if name.is_empty() || name.contains('\0') {
        return Err(Error::config(format!(
            "{name:?} is not a valid identifier (empty or containing a NUL byte)"
        )));
    }
    Ok(ident(name))
}

/// [`literal`] for text the protocol must carry: refuses a NUL byte.
///
/// # Errors
/// [`Error::is_config`](crate::Error::is_config) for a string with a NUL byte.
pub(crate) fn checked_literal(value: &str) -> Result<String> {
    if value.contains('\0') {
        return Err(Error::config(format!(
            "{value:?} contains a NUL byte, which the protocol cannot carry"
        )));
    }
    Ok(literal(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("slot"), "\"slot\"");
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"'a\b'");
        assert_eq!(checked_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(checked_ident("").unwrap_err().is_config());
        assert!(checked_ident("a\0b").unwrap_err().is_config());
        assert!(checked_literal("\0").unwrap_err().is_config());
    }
}
