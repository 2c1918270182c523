//! The libpq environment, merged under a connection string the way libpq merges it.
//!
//! libpq fills every keyword the connection string leaves unset from its environment
//! variable (`PGHOST` for `host`, ...), then from its defaults; a password still missing
//! is looked up in the password file (`PGPASSFILE`, else `~/.pgpass`), and the client
//! certificate, its key and the root certificates default to files in `~/.postgresql/`
//! when they exist. [`ConnectConfig::from_env`] and [`ConnectConfig::parse_with_env`] do
//! the same, so a tool built on this crate connects where `psql` would.
//!
//! Two defaults differ from libpq's: without a host we connect to `localhost` over TCP
//! (libpq's default Unix-socket directory is compiled in and differs between
//! distributions), and without `~/.postgresql/root.crt` a certificate is verified against
//! the system's roots (libpq fails instead).
//!
//! See <https://www.postgresql.org/docs/current/libpq-envars.html> and
//! <https://www.postgresql.org/docs/current/libpq-pgpass.html>.

use std::path::{Path, PathBuf};

use super::{parse_conninfo, ConnectConfig, SslParams};
use crate::error::{Error, Kind, Result};

/// The libpq environment variables read, each with the connection keyword it stands for.
pub const LIBPQ_VARIABLES: &[(&str, &str)] = &[
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
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

impl ConnectConfig {
    /// The connection settings libpq would use with no connection string: the `PG*`
    /// variables ([`LIBPQ_VARIABLES`]), the password file (`PGPASSFILE` or `~/.pgpass`),
    /// client certificate files in `~/.postgresql/`, and the defaults (host `localhost`,
    /// port 5432, the operating-system user).
    ///
    /// # Errors
    /// [`Error::is_config`] when a variable's value does not parse (the error names it).
    pub fn from_env() -> Result<ConnectConfig> {
        merge(None, &|name| std::env::var(name).ok())
    }

    /// Parses a URL or `key=value` string like [`str::parse`], then fills what it leaves
    /// unset from the libpq environment as [`ConnectConfig::from_env`] does: a value in
    /// the string always wins.
    ///
    /// # Errors
    /// [`Error::is_config`] when the string or a variable does not parse.
    pub fn parse_with_env(conninfo: &str) -> Result<ConnectConfig> {
        merge(Some(conninfo), &|name| std::env::var(name).ok())
    }
}

/// [`ConnectConfig::parse_with_env`] over any environment (the tests pass their own).
pub(super) fn merge(
    conninfo: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectConfig> {
    let (mut pg, mut ssl) = match conninfo {
        Some(s) => parse_conninfo(s)?,
        None => (tokio_postgres::Config::new(), SslParams::default()),
    };
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    for &(name, key) in LIBPQ_VARIABLES {
        let Some(value) = var(name) else { continue };
        if !is_set(&pg, &ssl, key) {
            apply(&mut pg, &mut ssl, key, &value).map_err(|e| {
                Error::with_source(
                    Kind::Config,
                    format!("environment variable {name}={value:?} does not parse"),
                    e,
                )
            })?;
        }
    }
    if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
        pg.host("localhost");
    }
    if pg.get_user().is_none() {
        if let Some(user) = var("USER").or_else(|| var("LOGNAME")) {
            pg.user(user);
        }
    }
    let home = var("HOME").map(PathBuf::from);
    if pg.get_password().is_none() {
        let file = var("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".pgpass")));
        if let Some(password) = file.and_then(|f| password_from_file(&f, &pg)) {
            pg.password(password);
        }
    }
    if let Some(dir) = home.map(|h| h.join(".postgresql")) {
        let existing = |name: &str| {
            let path = dir.join(name);
            path.is_file().then(|| path.to_string_lossy().into_owned())
        };
        if ssl.cert.is_none() {
            ssl.cert = existing("postgresql.crt");
        }
        if ssl.cert.is_some() && ssl.key.is_none() {
            ssl.key = Some(dir.join("postgresql.key").to_string_lossy().into_owned());
        }
        if ssl.root_cert.is_none() {
            ssl.root_cert = existing("root.crt");
        }
    }
    ConnectConfig::from_parts(pg, ssl)
}

/// Whether the connection string set `key` (then the environment leaves it alone).
fn is_set(pg: &tokio_postgres::Config, ssl: &SslParams, key: &str) -> bool {
    match key {
        "host" => !pg.get_hosts().is_empty(),
        "hostaddr" => !pg.get_hostaddrs().is_empty(),
        "port" => !pg.get_ports().is_empty(),
        "dbname" => pg.get_dbname().is_some(),
        "user" => pg.get_user().is_some(),
        "password" => pg.get_password().is_some(),
        "application_name" => pg.get_application_name().is_some(),
        "connect_timeout" => pg.get_connect_timeout().is_some(),
        "options" => pg.get_options().is_some(),
        "sslmode" => ssl.mode.is_some(),
        "sslrootcert" => ssl.root_cert.is_some(),
        "sslcert" => ssl.cert.is_some(),
        "sslkey" => ssl.key.is_some(),
        // Keys whose unset value cannot be told from a default: did the string name them?
        other => ssl.keys.iter().any(|k| k == other),
    }
}

/// Sets one keyword from the environment, parsed by the same parsers as a connection
/// string's.
fn apply(
    pg: &mut tokio_postgres::Config,
    ssl: &mut SslParams,
    key: &str,
    value: &str,
) -> Result<()> {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    let (one, one_ssl) = parse_conninfo(&format!("{key}='{escaped}'"))?;
    match key {
        "host" => {
            for host in one.get_hosts() {
                match host {
                    tokio_postgres::config::Host::Tcp(name) => pg.host(name),
                    tokio_postgres::config::Host::Unix(path) => pg.host_path(path),
                };
            }
        }
        "hostaddr" => {
            for addr in one.get_hostaddrs() {
                pg.hostaddr(*addr);
            }
        }
        "port" => {
            for port in one.get_ports() {
                pg.port(*port);
            }
        }
        "dbname" => {
            pg.dbname(value);
        }
        "user" => {
            pg.user(value);
        }
        "password" => {
            pg.password(value);
        }
        "application_name" => {
            pg.application_name(value);
        }
        "connect_timeout" => {
            if let Some(timeout) = one.get_connect_timeout() {
                pg.connect_timeout(*timeout);
            }
        }
        "options" => {
            pg.options(value);
        }
        "sslmode" => {
            value.parse::<super::SslMode>()?;
            ssl.mode = one_ssl.mode;
        }
        "sslrootcert" => ssl.root_cert = one_ssl.root_cert,
        "sslcert" => ssl.cert = one_ssl.cert,
        "sslkey" => ssl.key = one_ssl.key,
        "sslnegotiation" => {
            pg.ssl_negotiation(one.get_ssl_negotiation());
        }
        "channel_binding" => {
            pg.channel_binding(one.get_channel_binding());
        }
        "target_session_attrs" => {
            pg.target_session_attrs(one.get_target_session_attrs());
        }
        "load_balance_hosts" => {
            pg.load_balance_hosts(one.get_load_balance_hosts());
        }
        _ => {}
    }
    Ok(())
}

/// The password for this connection from a libpq password file, or `None` when the file
/// is missing, not a regular file, readable by group or others (libpq ignores it then,
/// with a warning), or has no matching line.
fn password_from_file(file: &Path, pg: &tokio_postgres::Config) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file has group or world access; permissions should be u=rw (0600) or \
             less; ignoring it"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    // One password serves every host of a multi-host string: the first host's line.
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        // libpq matches a Unix-socket connection as `localhost`.
        Some(tokio_postgres::config::Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = pg.get_user()?;
    let database = pg.get_dbname().unwrap_or(user);
    find_password(&text, [host.as_str(), &port, database, user])
}

/// The password of the first line of a password file matching `host:port:database:user`
/// (`*` matches anything; `\` escapes `:` and `\`; `#` starts a comment line).
fn find_password(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(split_pgpass_line)
        .find(|fields| {
            fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// The five fields of a password-file line, unescaped, or `None` if it has fewer.
fn split_pgpass_line(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            // The password is the rest of the line, colons and all.
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::SslMode;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_string_wins_and_the_environment_fills_the_rest() {
        let c = merge(
            Some("postgres://alice@db.example:6543/shop?sslmode=verify-full"),
            &env(&[
                ("PGHOST", "elsewhere"),
                ("PGPORT", "1"),
                ("PGUSER", "mallory"),
                ("PGSSLMODE", "disable"),
                ("PGPASSWORD", "from env"),
                ("PGAPPNAME", "app"),
                ("PGTARGETSESSIONATTRS", "read-write"),
                ("PGCONNECT_TIMEOUT", "7"),
            ]),
        )
        .unwrap();
        let pg = c.pg_config();
        assert_eq!(c.user(), Some("alice"));
        assert_eq!(pg.get_ports(), [6543]);
        assert_eq!(
            pg.get_hosts(),
            [tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(pg.get_password(), Some(&b"from env"[..]));
        assert_eq!(c.application_name(), "app");
        assert_eq!(
            pg.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            pg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        // A key=value string names target_session_attrs: the environment leaves it.
        let c = merge(
            Some("host=h target_session_attrs=any"),
            &env(&[("PGTARGETSESSIONATTRS", "read-write")]),
        )
        .unwrap();
        assert_eq!(
            c.pg_config().get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::Any
        );
    }

    #[test]
    fn variables_keep_their_quoting_and_defaults_fill_the_rest() {
        let c = merge(
            None,
            &env(&[
                ("PGHOST", "10.0.0.7"),
                ("PGPORT", "5433"),
                ("PGPASSWORD", "it's a \\ secret"),
                ("PGDATABASE", "my db"),
                ("PGSSLMODE", "require"),
                ("PGSSLCERT", "/c/client.crt"),
                ("PGSSLKEY", "/c/client.key"),
                ("USER", "os-user"),
            ]),
        )
        .unwrap();
        let pg = c.pg_config();
        assert_eq!(pg.get_ports(), [5433]);
        assert_eq!(pg.get_password(), Some(&b"it's a \\ secret"[..]));
        assert_eq!(pg.get_dbname(), Some("my db"));
        assert_eq!(c.user(), Some("os-user"));
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.ssl_cert(), Some(Path::new("/c/client.crt")));
        assert_eq!(c.ssl_key(), Some(Path::new("/c/client.key")));
        let c = merge(None, &env(&[])).unwrap();
        assert_eq!(
            c.pg_config().get_hosts(),
            [tokio_postgres::config::Host::Tcp("localhost".into())]
        );
    }

    #[test]
    fn a_bad_variable_is_named() {
        let e = merge(None, &env(&[("PGPORT", "many")])).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("PGPORT=\"many\""), "{e}");
        let e = merge(None, &env(&[("PGSSLMODE", "allow")])).unwrap_err();
        assert!(e.to_string().contains("PGSSLMODE"), "{e}");
    }

    #[test]
    fn password_file_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:*:u:wrong\n\
                    db\\:x:*:shop:u:a\\:b:c\n\
                    *:*:*:u:fallback\n";
        assert_eq!(
            find_password(text, ["db:x", "5432", "shop", "u"]).as_deref(),
            Some("a:b:c")
        );
        assert_eq!(
            find_password(text, ["h", "1", "d", "u"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(find_password(text, ["h", "1", "d", "v"]), None);
        assert_eq!(split_pgpass_line("a:b:c"), None);
    }

    #[test]
    fn the_password_file_is_used_only_when_private_and_nothing_else_gives_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "localhost:5432:shop:alice:from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = file.to_str().unwrap();
        let vars = [
            ("PGPASSFILE", path),
            ("PGUSER", "alice"),
            ("PGDATABASE", "shop"),
        ];
        let c = merge(None, &env(&vars)).unwrap();
        assert_eq!(c.pg_config().get_password(), Some(&b"from-file"[..]));
        let c = merge(Some("postgres://alice:given@localhost/shop"), &env(&vars)).unwrap();
        assert_eq!(c.pg_config().get_password(), Some(&b"given"[..]));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = merge(None, &env(&vars)).unwrap();
        assert_eq!(
            c.pg_config().get_password(),
            None,
            "a readable file is ignored"
        );
    }

    #[test]
    fn client_certificates_default_to_the_files_in_home() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".postgresql");
        std::fs::create_dir(&dir).unwrap();
        let vars = [("HOME", home.path().to_str().unwrap())];
        let c = merge(Some("host=h"), &env(&vars)).unwrap();
        assert_eq!(c.ssl_cert(), None, "no file, no certificate");
        assert_eq!(c.ssl_root_cert(), None);
        std::fs::write(dir.join("postgresql.crt"), "").unwrap();
        std::fs::write(dir.join("root.crt"), "").unwrap();
        let c = merge(Some("host=h"), &env(&vars)).unwrap();
        assert_eq!(c.ssl_cert(), Some(dir.join("postgresql.crt").as_path()));
        assert_eq!(c.ssl_key(), Some(dir.join("postgresql.key").as_path()));
        assert_eq!(c.ssl_root_cert(), Some(dir.join("root.crt").as_path()));
        let c = merge(
            Some("host=h sslcert=/mine.crt sslkey=/mine.key"),
            &env(&vars),
        )
        .unwrap();
        assert_eq!(c.ssl_cert(), Some(Path::new("/mine.crt")));
        assert_eq!(c.ssl_key(), Some(Path::new("/mine.key")));
    }
}
