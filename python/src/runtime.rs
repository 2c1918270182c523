//! The module's tokio runtime, and waiting on it from Python: GIL released, signals checked.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use changestream::ConnectConfig;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::errors::{consuming, to_py_err, ConfigurationError, Context, TimeoutError};

/// How often a waiting call looks for a pending signal: Ctrl-C interrupts within this.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The runtime every consumer of the process runs on (its background tasks included).
///
/// Multi-threaded so that the replication streams keep reading while Python holds the GIL
/// between polls; two workers are plenty for the I/O of a handful of consumers.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-changestream")
            .enable_all()
            .build()
            // Creating two threads and an epoll instance fails only when the process is out
            // of resources, where nothing else would work either.
            .expect("starting the pg_changestream tokio runtime")
    })
}

/// Runs `future` on the runtime with the GIL released, checking for Python signals every
/// [`SIGNAL_CHECK`]. A signal handler that raises (Ctrl-C's `KeyboardInterrupt`) drops the
/// future and returns its exception: the caller must leave its state consistent for that.
pub(crate) fn wait<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
{
    py.detach(|| block(future))
}

/// [`wait`] for a caller that has released the GIL already.
pub(crate) fn block<F: Future>(future: F) -> PyResult<F::Output> {
    runtime().block_on(async {
        tokio::pin!(future);
        let mut tick = tokio::time::interval(SIGNAL_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                biased;
                output = &mut future => return Ok(output),
                _ = tick.tick() => Python::attach(|py| py.check_signals())?,
            }
        }
    })
}

/// The connection settings: `url` (a `postgres://` URL or libpq `key=value` string), else
/// the libpq environment variables, as `psql` reads them.
pub(crate) fn connect_config(url: Option<&str>) -> PyResult<ConnectConfig> {
    let text = match url {
        Some(url) => url.to_owned(),
        None => libpq_env_string(),
    };
    text.parse::<ConnectConfig>()
        .map_err(|e| to_py_err(&e, Context::Admin))
        .and_then(|config| {
            if config.pg_config().get_hosts().is_empty()
                && config.pg_config().get_hostaddrs().is_empty()
            {
                Err(ConfigurationError::new_err(
                    "no server to connect to: pass url=\"postgres://user@host/db\" (or \
                     ConsumerBuilder.set_url) or set PGHOST and the other libpq variables",
                ))
            } else {
                Ok(config)
            }
        })
}

/// A libpq `key=value` string from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
/// `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`.
fn libpq_env_string() -> String {
    const VARIABLES: &[(&str, &str)] = &[
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
        ("PGDATABASE", "dbname"),
        ("PGSSLMODE", "sslmode"),
        ("PGSSLROOTCERT", "sslrootcert"),
        ("PGAPPNAME", "application_name"),
        ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ];
    let mut parts = Vec::new();
    for (variable, key) in VARIABLES {
        if let Ok(value) = std::env::var(variable) {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            parts.push(format!("{key}='{quoted}'"));
        }
    }
    parts.join(" ")
}

/// Runs a commit, bounded by `timeout_ms` when given.
pub(crate) async fn with_timeout(
    timeout_ms: Option<u64>,
    commit: impl std::future::Future<Output = changestream::Result<()>>,
) -> PyResult<()> {
    match timeout_ms {
        None => commit.await.map_err(consuming),
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), commit).await {
            Ok(result) => result.map_err(consuming),
            Err(_) => Err(TimeoutError::new_err(format!(
                "the commit did not finish within {ms} ms (the server is slow or unreachable); \
                 it may still have taken effect: commit again, or raise timeout_ms"
            ))),
        },
    }
}
