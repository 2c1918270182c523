//! Where to connect: `--url`, else `DATABASE_URL` (both through clap), with the libpq
//! environment variables filling what the URL leaves unset, or those variables alone.
//!
//! The library merges them ([`ConnectConfig::parse_with_env`], [`ConnectConfig::from_env`])
//! the way libpq does, password file and client certificates included; this module only
//! insists that something names a server.

use pg_changestream::admin::Admin;
use pg_changestream::config::env::LIBPQ_VARIABLES;
use pg_changestream::ConnectConfig;

use crate::failure::Failure;

/// The connection settings from `url` (flag or `DATABASE_URL`) and the `PG*` variables.
///
/// # Errors
/// Exit status 2: the string or a variable does not parse, or nothing says where to
/// connect.
pub fn resolve(url: Option<&str>) -> Result<ConnectConfig, Failure> {
    if let Some(url) = url {
        return ConnectConfig::parse_with_env(url)
            .map_err(|e| Failure::usage(format!("{e}; check --url (or DATABASE_URL)")));
    }
    let any_set = LIBPQ_VARIABLES
        .iter()
        .any(|(name, _)| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !any_set {
        return Err(Failure::usage(
            "no database given: pass --url postgres://user@host/db, set DATABASE_URL, or set \
             the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...)",
        ));
    }
    ConnectConfig::from_env()
        .map_err(|e| Failure::usage(format!("{e}; check the PG* environment variables")))
}

/// An admin session, with a hint about where the tool tried to connect when it fails.
///
/// # Errors
/// The library's error, as a [`Failure`].
pub async fn admin(config: &ConnectConfig) -> Result<Admin, Failure> {
    Admin::connect(config).await.map_err(|e| {
        let transient = e.is_transient();
        let failure = Failure::from(e);
        if transient {
            failure.context(
                "cannot reach the server (is it running, and do --url / DATABASE_URL / PGHOST \
                 point at it?)",
            )
        } else {
            failure
        }
    })
}
