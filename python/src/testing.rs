//! `pg_changestream._native._testing` (cargo feature `testing`): the Rust tests' PostgreSQL
//! harness (`pg_changestream::testing`) for the pytest suite, so both suites find or start
//! their server the same way: `PG_CHANGESTREAM_TEST_URL`, else a Docker engine (feature
//! `testcontainers` only), else a throwaway local cluster from `PG_BIN` /
//! `pg_config --bindir` / `/usr/lib/postgresql/*/bin`, stopped and removed when the Python
//! process exits (even on SIGKILL: the harness's watcher does it).

use changestream::testing::{TestDatabase, TestServer};
use changestream::ConnectConfig;
use pyo3::prelude::*;
use tokio_postgres::SimpleQueryMessage;

use crate::errors::{to_py_err, Context};
use crate::runtime::{connect_config, runtime, wait};

/// A fresh database of the shared test server, with a superuser URL.
#[pyclass(module = "pg_changestream._testing", name = "TestDatabase", frozen)]
struct PyTestDatabase {
    inner: TestDatabase,
}

#[pymethods]
impl PyTestDatabase {
    /// A `postgres://` URL of a superuser connection to this database.
    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    /// The database's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// A name unique to this database for server-wide objects (groups, slots).
    fn unique_name(&self, prefix: &str) -> String {
        self.inner.unique_name(prefix)
    }
}

impl Drop for PyTestDatabase {
    fn drop(&mut self) {
        let _guard = runtime().enter();
    }
}

/// Creates a fresh database on the shared test server (starting the server on first use).
#[pyfunction]
fn create_database(py: Python<'_>) -> PyResult<PyTestDatabase> {
    let server = py
        .detach(TestServer::shared)
        .map_err(|e| to_py_err(&e, Context::Admin))?;
    let inner = wait(py, server.create_database())?.map_err(|e| to_py_err(&e, Context::Admin))?;
    Ok(PyTestDatabase { inner })
}

/// The test server's major version (15, 16, ...).
#[pyfunction]
fn server_major(py: Python<'_>) -> PyResult<u32> {
    let server = py
        .detach(TestServer::shared)
        .map_err(|e| to_py_err(&e, Context::Admin))?;
    Ok(server.major())
}

/// Runs `sql` (one or more statements, simple query protocol) and returns the rows of
/// every result as lists of the server's text (`None` for NULL): what `psql` prints.
#[pyfunction]
fn query(py: Python<'_>, url: &str, sql: String) -> PyResult<Vec<Vec<Option<String>>>> {
    let config: ConnectConfig = connect_config(Some(url))?;
    wait(py, async move {
        let client = config.connect_sql().await?;
        let messages = client
            .simple_query(&sql)
            .await
            .map_err(changestream::Error::from)?;
        let mut rows = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
        }
        Ok::<_, changestream::Error>(rows)
    })?
    .map_err(|e| to_py_err(&e, Context::Admin))
}

/// Adds the `_testing` submodule.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let testing = PyModule::new(m.py(), "_testing")?;
    testing.add_class::<PyTestDatabase>()?;
    testing.add_function(wrap_pyfunction!(create_database, &testing)?)?;
    testing.add_function(wrap_pyfunction!(server_major, &testing)?)?;
    testing.add_function(wrap_pyfunction!(query, &testing)?)?;
    m.add_submodule(&testing)?;
    Ok(())
}
