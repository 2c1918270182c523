//! Connection settings shared by the replication connection and the ordinary SQL side.
//!
//! [`tokio_postgres::Config`] is the only connection-string parser in this crate. It knows
//! every libpq key we need except the TLS files and modes: it accepts only
//! `sslmode=disable|prefer|require` and rejects `sslrootcert`, `sslcert` and `sslkey` as
//! unknown. So [`ConnectConfig`] takes exactly those keys out of the URL query or the
//! `key=value` string, hands the rest to tokio-postgres unchanged, and keeps the TLS policy
//! itself (`tls`): `verify-ca` and `verify-full` need a root certificate store and a
//! certificate verifier, and client certificates a rustls identity, which tokio-postgres
//! leaves to the TLS connector.
//!
//! `env` merges the libpq environment (`PGHOST`, ..., the password file) under a
//! connection string the way libpq does; `session` opens ordinary SQL sessions.

use crate::error::{Error, Kind, Result};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod env;
mod session;
pub(crate) mod tls;

pub use tls::SslMode;
use tls::TlsFiles;

/// The name a connection reports in `pg_stat_activity.application_name` unless the
/// connection string sets another.
pub const DEFAULT_APPLICATION_NAME: &str = "pg-changestream";

/// Where and how to connect: a [`tokio_postgres::Config`] plus the TLS settings it lacks.
///
/// Parse it from a URL (`postgres://user:pw@host:5432/db?sslmode=verify-full&sslrootcert=ca.pem`)
/// or a libpq `key=value` string; both accept every key tokio-postgres accepts. The same
/// settings open the replication connection
/// (the consumer's and [`ChangeStream`](crate::stream::ChangeStream)'s) and ordinary
/// SQL connections ([`ConnectConfig::connect_sql`]), with one TLS policy for both.
///
/// `Debug` never prints the password.
#[derive(Clone)]
pub struct ConnectConfig {
    pg: tokio_postgres::Config,
    ssl_mode: SslMode,
    tls_files: TlsFiles,
}

impl ConnectConfig {
    /// Wraps a tokio-postgres configuration; its `sslmode` (disable, prefer, require) is
    /// taken over, and the application name defaults to `pg-changestream`.
    pub fn new(pg: tokio_postgres::Config) -> ConnectConfig {
        let ssl_mode = match pg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let mut pg = pg;
        if pg.get_application_name().is_none() {
            pg.application_name(DEFAULT_APPLICATION_NAME);
        }
        ConnectConfig {
            pg,
            ssl_mode,
            tls_files: TlsFiles::default(),
        }
    }

    /// The underlying tokio-postgres settings (host, port, user, database, timeouts...).
    ///
    /// Its `ssl_mode` is not authoritative; [`ConnectConfig::ssl_mode`] is.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    /// Mutable access to the tokio-postgres settings, e.g. to set a password from a secret
    /// store rather than the connection string.
    pub fn pg_config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.pg
    }

    /// The TLS policy.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Sets the TLS policy.
    pub fn set_ssl_mode(&mut self, mode: SslMode) -> &mut ConnectConfig {
        self.ssl_mode = mode;
        self
    }

    /// The PEM file of trusted root certificates (`sslrootcert`), if one was given;
    /// otherwise the system's roots are used when a certificate must be verified.
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.tls_files.root_cert.as_deref()
    }

    /// Sets the PEM file of trusted root certificates.
    pub fn set_ssl_root_cert(&mut self, path: impl Into<PathBuf>) -> &mut ConnectConfig {
        self.tls_files.root_cert = Some(path.into());
        self
    }

    /// The client certificate (`sslcert`, PEM) presented when the server asks for one.
    pub fn ssl_cert(&self) -> Option<&Path> {
        self.tls_files.cert.as_deref()
    }

    /// The client certificate's private key (`sslkey`, unencrypted PEM).
    pub fn ssl_key(&self) -> Option<&Path> {
        self.tls_files.key.as_deref()
    }

    /// Sets the client certificate and its key (PEM files), for servers that require
    /// client certificates (`clientcert=verify-ca|verify-full` or `cert` authentication in
    /// `pg_hba.conf`). The key must not be readable by group or others, as libpq insists.
    pub fn set_ssl_client_cert(
        &mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> &mut ConnectConfig {
        self.tls_files.cert = Some(cert.into());
        self.tls_files.key = Some(key.into());
        self
    }

    /// The application name sent to the server.
    pub fn application_name(&self) -> &str {
        self.pg
            .get_application_name()
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    /// The user name, if one was given.
    pub fn user(&self) -> Option<&str> {
        self.pg.get_user()
    }

    /// `user@host:port/db`, for messages (never the password).
    pub(crate) fn describe_target(&self) -> String {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.pg.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{}@{}:{}/{}",
            self.user().unwrap_or("?"),
            hosts.join(","),
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            self.pg.get_dbname().or(self.user()).unwrap_or("?"),
        )
    }
}

impl From<tokio_postgres::Config> for ConnectConfig {
    fn from(pg: tokio_postgres::Config) -> ConnectConfig {
        ConnectConfig::new(pg)
    }
}

impl FromStr for ConnectConfig {
    type Err = Error;

    /// Parses a `postgres://` / `postgresql://` URL or a libpq `key=value` string.
    ///
    /// # Errors
    /// [`Error::is_config`] for an unknown `sslmode`, or whatever tokio-postgres rejects.
    fn from_str(s: &str) -> Result<ConnectConfig> {
        let (pg, ssl) = parse_conninfo(s)?;
        ConnectConfig::from_parts(pg, ssl)
    }
}

/// A connection string as tokio-postgres parses it, and the TLS keys taken out first.
fn parse_conninfo(s: &str) -> Result<(tokio_postgres::Config, SslParams)> {
    let (rest, ssl) = split_ssl_params(s)?;
    let pg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|e| {
            Error::with_source(
                Kind::Config,
                "cannot parse the connection string; write it as a URL \
                 (postgres://user@host:5432/dbname?sslmode=require) or as libpq's key=value \
                 pairs (host=... port=5432 dbname=...)",
                e,
            )
        })?;
    Ok((pg, ssl))
}

impl ConnectConfig {
    fn from_parts(pg: tokio_postgres::Config, ssl: SslParams) -> Result<ConnectConfig> {
        let mut config = ConnectConfig::new(pg);
        if let Some(mode) = ssl.mode {
            config.ssl_mode = mode.parse()?;
        }
        config.tls_files = TlsFiles {
            root_cert: ssl.root_cert.map(PathBuf::from),
            cert: ssl.cert.map(PathBuf::from),
            key: ssl.key.map(PathBuf::from),
        };
        Ok(config)
    }

    /// The TLS files, for the replication connection's handshake.
    pub(crate) fn tls_files(&self) -> &TlsFiles {
        &self.tls_files
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("user", &self.pg.get_user())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("dbname", &self.pg.get_dbname())
            .field("hosts", &self.pg.get_hosts())
            .field("hostaddrs", &self.pg.get_hostaddrs())
            .field("ports", &self.pg.get_ports())
            .field("application_name", &self.application_name())
            .field("options", &self.pg.get_options())
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.tls_files.root_cert)
            .field("ssl_cert", &self.tls_files.cert)
            .field("ssl_key", &self.tls_files.key)
            .field("channel_binding", &self.pg.get_channel_binding())
            .field("connect_timeout", &self.pg.get_connect_timeout())
            .finish()
    }
}

/// The TLS keys taken out of a connection string (last occurrence wins, as in libpq).
#[derive(Debug, Default, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    /// Every key the string set, these and the others (for the environment to leave alone).
    keys: Vec<String>,
}

/// Removes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` from a URL query or a `key=value` string, returning
/// the rest for tokio-postgres and the values removed.
fn split_ssl_params(s: &str) -> Result<(String, SslParams)> {
    let mut ssl = SslParams::default();
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| s.starts_with(p));
    if is_url {
        let Some((base, query)) = s.split_once('?') else {
            return Ok((s.to_owned(), ssl));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            ssl.keys.push(key.clone());
            match key.as_str() {
                "sslmode" => ssl.mode = Some(percent_decode(value)?),
                "sslrootcert" => ssl.root_cert = Some(percent_decode(value)?),
                "sslcert" => ssl.cert = Some(percent_decode(value)?),
                "sslkey" => ssl.key = Some(percent_decode(value)?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, ssl));
    }
    // A malformed key=value string is left whole for tokio-postgres to report.
    let Some(params) = keyword_value_params(s) else {
        return Ok((s.to_owned(), ssl));
    };
    let mut rest = String::with_capacity(s.len());
    let mut copied_to = 0;
    for p in params {
        ssl.keys.push(p.key.to_owned());
        let value = match p.key {
            "sslmode" => &mut ssl.mode,
            "sslrootcert" => &mut ssl.root_cert,
            "sslcert" => &mut ssl.cert,
            "sslkey" => &mut ssl.key,
            _ => continue,
        };
        *value = Some(p.value);
        rest.push_str(s.get(copied_to..p.span.start).unwrap_or_default());
        copied_to = p.span.end;
    }
    rest.push_str(s.get(copied_to..).unwrap_or_default());
    Ok((rest, ssl))
}

fn percent_decode(s: &str) -> Result<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| Error::config(format!("{s:?} in the connection URL is not valid UTF-8")))
}

/// One `key = value` of a libpq keyword/value string, with the byte range it spans.
#[derive(Debug, PartialEq, Eq)]
struct KeywordValue<'a> {
    key: &'a str,
    value: String,
    span: Range<usize>,
}

/// Splits a libpq keyword/value string with the quoting rules tokio-postgres applies
/// (values bare or in single quotes; a backslash escapes the next character), or `None`
/// if it is malformed.
fn keyword_value_params(s: &str) -> Option<Vec<KeywordValue<'_>>> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else {
            return Some(out);
        };
        let mut key_end = start;
        while let Some((i, c)) = it.next_if(|&(_, c)| !c.is_whitespace() && c != '=') {
            key_end = i + c.len_utf8();
        }
        let key = s.get(start..key_end)?;
        if key.is_empty() {
            return None;
        }
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        it.next_if(|&(_, c)| c == '=')?;
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let end;
        if it.next_if(|&(_, c)| c == '\'').is_some() {
            loop {
                let (i, c) = it.next()?;
                match c {
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => value.push(it.next()?.1),
                    c => value.push(c),
                }
            }
        } else {
            let mut last = None;
            while let Some((i, c)) = it.next_if(|&(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some((j, c2)) = it.next() {
                        value.push(c2);
                        last = Some(j + c2.len_utf8());
                        continue;
                    }
                }
                value.push(c);
                last = Some(i + c.len_utf8());
            }
            end = last?;
        }
        out.push(KeywordValue {
            key,
            value,
            span: start..end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ssl_keys_are_taken_out() {
        let c: ConnectConfig =
            "postgres://u:secret@localhost:5433/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=5"
                .parse()
                .unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert(), Some(Path::new("/tmp/ca.pem")));
        assert_eq!(c.pg_config().get_user(), Some("u"));
        assert_eq!(c.pg_config().get_password(), Some(&b"secret"[..]));
        assert_eq!(c.pg_config().get_dbname(), Some("db"));
        assert_eq!(c.pg_config().get_ports(), &[5433]);
        assert_eq!(
            c.pg_config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        assert_eq!(c.application_name(), DEFAULT_APPLICATION_NAME);
    }

    #[test]
    fn url_with_only_ssl_keys_drops_the_query() {
        let (rest, ssl) = split_ssl_params("postgresql://h/db?sslmode=verify-ca").unwrap();
        assert_eq!(rest, "postgresql://h/db");
        assert_eq!(ssl.mode.as_deref(), Some("verify-ca"));
        let (rest, ssl) = split_ssl_params("postgresql://h/db").unwrap();
        assert_eq!(rest, "postgresql://h/db");
        assert_eq!(ssl, SslParams::default());
    }

    #[test]
    fn keyword_value_ssl_keys_are_taken_out() {
        let s = "host=localhost sslmode = verify-ca  sslrootcert='/a b/c\\'s.pem' user=u application_name=x";
        let (rest, ssl) = split_ssl_params(s).unwrap();
        assert_eq!(ssl.mode.as_deref(), Some("verify-ca"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/a b/c's.pem"));
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>(),
            ["host=localhost", "user=u", "application_name=x"]
        );
        let c: ConnectConfig = s.parse().unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(c.application_name(), "x");
        assert_eq!(c.pg_config().get_user(), Some("u"));
    }

    #[test]
    fn keyword_value_tokens_follow_libpq_quoting() {
        let params = keyword_value_params(r"a=1 b='x y' c=p\ q d=")
            .map(|v| v.into_iter().map(|p| (p.key, p.value)).collect::<Vec<_>>());
        // `d=` has no value: malformed, left to tokio-postgres to report.
        assert_eq!(params, None);
        let params = keyword_value_params(r"a=1 b='x y' c=p\ q").unwrap();
        let pairs: Vec<_> = params.iter().map(|p| (p.key, p.value.as_str())).collect();
        assert_eq!(pairs, [("a", "1"), ("b", "x y"), ("c", "p q")]);
        assert_eq!(params[1].span, 4..11);
        assert_eq!(keyword_value_params("  ").unwrap(), vec![]);
        assert_eq!(keyword_value_params("a 1"), None);
        assert_eq!(keyword_value_params("a='open"), None);
    }

    #[test]
    fn last_sslmode_wins_and_unknown_is_a_config_error() {
        let c: ConnectConfig = "host=h user=u sslmode=require sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Disable);
        let e = "host=h sslmode=allow".parse::<ConnectConfig>().unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("\"allow\""), "{e}");
        let e = "host=h bogus=1".parse::<ConnectConfig>().unwrap_err();
        assert!(e.is_config(), "{e}");
    }

    #[test]
    fn tokio_postgres_ssl_mode_is_taken_over() {
        let mut pg = tokio_postgres::Config::new();
        pg.ssl_mode(tokio_postgres::config::SslMode::Require)
            .application_name("mine");
        let c = ConnectConfig::from(pg);
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.application_name(), "mine");
        let c = ConnectConfig::from(tokio_postgres::Config::new());
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn debug_never_prints_the_password() {
        for s in [
            "postgres://u:hunter2@h/db?sslmode=require",
            "host=h user=u password=hunter2",
        ] {
            let c: ConnectConfig = s.parse().unwrap();
            let d = format!("{c:?}");
            assert!(!d.contains("hunter2"), "{d}");
            assert!(d.contains("<redacted>"), "{d}");
            assert!(!c.describe_target().contains("hunter2"));
        }
    }

    #[test]
    fn ssl_mode_round_trips() {
        for m in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(m.as_str().parse::<SslMode>().unwrap(), m);
        }
    }
}
