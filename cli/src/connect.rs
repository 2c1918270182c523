//! Where to connect: `--url`, else `DATABASE_URL` (both through clap), else the libpq
//! environment variables.
//!
//! Connection strings are parsed only by the library's [`ConnectConfig`] (which hands them
//! to `tokio_postgres::Config`). The `PG*` variables are turned into a libpq `key=value`
//! string for the same parser, so the values are checked exactly as in a URL.

use pg_changestream::admin::Admin;
use pg_changestream::ConnectConfig;

use crate::failure::Failure;

/// libpq environment variables and the connection keywords they stand for.
const PG_ENV: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
];

/// The connection settings from `url` (flag or `DATABASE_URL`) or the `PG*` variables.
///
/// # Errors
/// Exit status 2: the string does not parse, or nothing says where to connect.
pub fn resolve(url: Option<&str>) -> Result<ConnectConfig, Failure> {
    resolve_from(url, |name| std::env::var(name).ok())
}

fn resolve_from(
    url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ConnectConfig, Failure> {
    if let Some(url) = url {
        return url.parse().map_err(|e: pg_changestream::Error| {
            Failure::usage(format!("{e}; check --url (or DATABASE_URL)"))
        });
    }
    let mut pairs = Vec::new();
    let mut has_host = false;
    let mut has_user = false;
    for (var, key) in PG_ENV {
        if let Some(value) = env(var).filter(|v| !v.is_empty()) {
            has_host |= matches!(*key, "host" | "hostaddr");
            has_user |= *key == "user";
            pairs.push(format!("{key}='{}'", escape(&value)));
        }
    }
    if pairs.is_empty() {
        return Err(Failure::usage(
            "no database given: pass --url postgres://user@host/db, set DATABASE_URL, or set \
             the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...)",
        ));
    }
    // libpq's defaults for what the variables leave out.
    if !has_host {
        pairs.push("host='localhost'".into());
    }
    if !has_user {
        if let Some(user) = env("USER").or_else(|| env("LOGNAME")) {
            pairs.push(format!("user='{}'", escape(&user)));
        }
    }
    pairs
        .join(" ")
        .parse()
        .map_err(|e: pg_changestream::Error| {
            Failure::usage(format!("{e}; check the PG* environment variables"))
        })
}

/// Escapes a value for a single-quoted libpq keyword value.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_url_wins_over_the_environment() {
        let config = resolve_from(
            Some("postgres://alice@db.example:6543/shop?sslmode=verify-full"),
            env(&[("PGHOST", "elsewhere")]),
        )
        .unwrap();
        assert_eq!(config.user(), Some("alice"));
        assert_eq!(config.pg_config().get_ports(), [6543]);
        assert_eq!(config.ssl_mode().as_str(), "verify-full");
    }

    #[test]
    fn pg_variables_are_used_with_their_quoting_intact() {
        let config = resolve_from(
            None,
            env(&[
                ("PGHOST", "10.0.0.7"),
                ("PGPORT", "5433"),
                ("PGUSER", "bob"),
                ("PGPASSWORD", "it's a \\ secret"),
                ("PGDATABASE", "my db"),
                ("PGSSLMODE", "require"),
            ]),
        )
        .unwrap();
        let pg = config.pg_config();
        assert_eq!(pg.get_ports(), [5433]);
        assert_eq!(pg.get_password(), Some(&b"it's a \\ secret"[..]));
        assert_eq!(pg.get_dbname(), Some("my db"));
        assert_eq!(config.ssl_mode().as_str(), "require");
    }

    #[test]
    fn nothing_to_connect_to_is_a_usage_error() {
        let e = resolve_from(None, env(&[])).unwrap_err();
        assert_eq!(e.code(), 2);
        assert!(e.to_string().contains("--url"), "{e}");
        let e = resolve_from(None, env(&[("PGPORT", "many")])).unwrap_err();
        assert_eq!(e.code(), 2);
        let e = resolve_from(Some("postgres://h:port/db"), env(&[])).unwrap_err();
        assert!(e.to_string().contains("--url"), "{e}");
    }
}
