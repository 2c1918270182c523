//! Which PostgreSQL servers are supported, checked when either kind of connection opens
//! (the replication connection and SQL sessions), before anything fails later for a
//! reason that would not name the version.

use crate::error::{Error, Kind, Result};

/// The first server version whose syntax the replication connection uses (parenthesised
/// `CREATE_REPLICATION_SLOT` options, pgoutput protocol 3).
pub const MIN_SERVER_VERSION_NUM: u32 = 150_000;

/// Refuses a server older than [`MIN_SERVER_VERSION_NUM`] at connect, before anything
/// fails later for a reason that would not name the version.
///
/// # Errors
/// [`Error::is_server_setup`], naming the version found and the supported range.
pub(crate) fn check_server_version(
    version_num: u32,
    version: Option<&str>,
    peer: &str,
) -> Result<()> {
    if version_num >= MIN_SERVER_VERSION_NUM {
        return Ok(());
    }
    let found = match version {
        Some(text) => text.to_owned(),
        None => format!("server_version_num {version_num}"),
    };
    Err(Error::new(
        Kind::ServerSetup,
        format!(
            "server {peer} runs PostgreSQL {found}; pg-changestream supports PostgreSQL 15 to 18: \
             connect to (or upgrade to) a PostgreSQL 15 or newer server"
        ),
    ))
}

/// `server_version` as reported at startup (`15.4`, `16beta2`, `17.0 (Debian 17.0-1)`,
/// `9.6.24`) to `server_version_num`.
pub(crate) fn parse_server_version(s: &str) -> Option<u32> {
    let s = s.split_whitespace().next()?;
    let digits_end = |p: &str| p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
    let mut parts = s.split('.');
    let first = parts.next()?;
    let major: u32 = first.get(..digits_end(first))?.parse().ok()?;
    let second = parts.next().map(|p| p.get(..digits_end(p)).unwrap_or(""));
    let minor: u32 = match second {
        Some(d) if !d.is_empty() => d.parse().ok()?,
        _ => 0,
    };
    if major >= 10 {
        Some(major * 10_000 + minor)
    } else {
        let patch = parts
            .next()
            .and_then(|p| p.get(..digits_end(p))?.parse().ok())
            .unwrap_or(0);
        Some(major * 10_000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_parse() {
        assert_eq!(parse_server_version("15.4"), Some(150_004));
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(150_018)
        );
        assert_eq!(parse_server_version("16beta2"), Some(160_000));
        assert_eq!(parse_server_version("18rc1"), Some(180_000));
        assert_eq!(parse_server_version("9.6.24"), Some(90_624));
        assert_eq!(parse_server_version("devel"), None);
    }
}
