//! `ConsumerBuilder`: the settings of a consumer, then `build()`.

use std::time::Duration;

use changestream::consumer::Op;
use changestream::consumer::{CommitMode, ConsumerBuilder, StartLocation};
use pyo3::prelude::*;

use crate::consumer::PyConsumer;
use crate::errors::{to_py_err, ConfigurationError, Context};
use crate::location::PyStartLocation;
use crate::runtime::{connect_config, wait};

/// Collects the settings of a consumer; every setter returns the builder, so calls chain:
///
/// ```python
/// consumer = (ConsumerBuilder().set_url(url).set_group_id("users-group")
///             .add_table("public.users", start_location=StartLocation.first_uncommitted())
///             .set_commit_manual().build())
/// ```
///
/// Without `set_url` the libpq environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
/// `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, ...) say where to connect.
#[pyclass(module = "pg_changestream", name = "ConsumerBuilder")]
#[derive(Default)]
pub(crate) struct PyConsumerBuilder {
    url: Option<String>,
    group_id: Option<String>,
    tables: Vec<(String, StartLocation)>,
    removed: Vec<String>,
    manual: bool,
    partitions: Option<u16>,
    operations: Option<Vec<Op>>,
    message_prefixes: Vec<String>,
    max_poll_interval: Option<Duration>,
    reconnect_timeout: Option<Duration>,
    force_reset: bool,
}

#[pymethods]
impl PyConsumerBuilder {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// The database: a `postgres://user:password@host:port/db?sslmode=...` URL or a libpq
    /// `key=value` string.
    fn set_url(mut slf: PyRefMut<'_, Self>, url: String) -> PyRefMut<'_, Self> {
        slf.url = Some(url);
        slf
    }

    /// The consumer group (1 to 63 characters). Consumers of one group share its work and
    /// its committed cursor; different groups read the same tables independently.
    fn set_group_id(mut slf: PyRefMut<'_, Self>, group_id: String) -> PyRefMut<'_, Self> {
        slf.group_id = Some(group_id);
        slf
    }

    /// Reads `table` (`name`, `schema.name` or quoted identifiers), which must be enabled
    /// with `enable_change_streaming`. `start_location` applies if the table is new to the
    /// group (default: `StartLocation.first_uncommitted()`).
    #[pyo3(signature = (table, start_location = None))]
    fn add_table(
        mut slf: PyRefMut<'_, Self>,
        table: String,
        start_location: Option<PyStartLocation>,
    ) -> PyRefMut<'_, Self> {
        let location = start_location.map_or(StartLocation::FirstUncommitted, |l| l.inner);
        slf.tables.push((table, location));
        slf
    }

    /// Takes `table` out of the group when the consumer is built.
    fn remove_table(mut slf: PyRefMut<'_, Self>, table: String) -> PyRefMut<'_, Self> {
        slf.removed.push(table);
        slf
    }

    /// Manual commits: nothing is committed until `bundle.commit()` or `consumer.commit()`.
    fn set_commit_manual(mut slf: PyRefMut<'_, Self>) -> PyRefMut<'_, Self> {
        slf.manual = true;
        slf
    }

    /// Automatic commits (the default): each `poll` first commits what the previous one
    /// returned, and `close()` commits the last.
    fn set_commit_automatic(mut slf: PyRefMut<'_, Self>) -> PyRefMut<'_, Self> {
        slf.manual = false;
        slf
    }

    /// Splits a new group's tables over `partitions` replication slots (1 to 64); several
    /// consumers of the group share the partitions. Fixed when the group is created.
    fn set_partitions(mut slf: PyRefMut<'_, Self>, partitions: u16) -> PyRefMut<'_, Self> {
        slf.partitions = Some(partitions);
        slf
    }

    /// The operations to deliver: any of `"insert"`, `"update"`, `"delete"`, `"truncate"`
    /// (all four by default). Others are passed over and committed with the rest.
    fn set_operations(
        mut slf: PyRefMut<'_, Self>,
        operations: Vec<String>,
    ) -> PyResult<PyRefMut<'_, Self>> {
        let mut ops = Vec::new();
        for name in &operations {
            ops.push(match name.to_ascii_lowercase().as_str() {
                "insert" => Op::Insert,
                "update" => Op::Update,
                "delete" => Op::Delete,
                "truncate" => Op::Truncate,
                _ => {
                    return Err(ConfigurationError::new_err(format!(
                        "set_operations: unknown operation {name:?}; use \"insert\", \
                         \"update\", \"delete\" or \"truncate\""
                    )))
                }
            });
        }
        slf.operations = Some(ops);
        Ok(slf)
    }

    /// Also delivers logical messages (`pg_logical_emit_message`) whose prefix is `prefix`
    /// (op `"message"`); call once per prefix.
    fn add_message_prefix(mut slf: PyRefMut<'_, Self>, prefix: String) -> PyRefMut<'_, Self> {
        slf.message_prefixes.push(prefix);
        slf
    }

    /// How long the application may go between polls before its consumer counts as gone
    /// and the group's other members take its partitions (default 30 000 ms).
    fn set_max_poll_interval_ms(mut slf: PyRefMut<'_, Self>, ms: u64) -> PyRefMut<'_, Self> {
        slf.max_poll_interval = Some(Duration::from_millis(ms));
        slf
    }

    /// How long transient failures (lost connection, server restart) are retried before a
    /// call fails with `ConnectionError` (default 60 000 ms).
    fn set_reconnect_timeout_ms(mut slf: PyRefMut<'_, Self>, ms: u64) -> PyRefMut<'_, Self> {
        slf.reconnect_timeout = Some(Duration::from_millis(ms));
        slf
    }

    /// Moves the tables of `add_table` to their start locations even when the group
    /// already reads them (a replay).
    #[pyo3(signature = (yes = true))]
    fn set_force_reset(mut slf: PyRefMut<'_, Self>, yes: bool) -> PyRefMut<'_, Self> {
        slf.force_reset = yes;
        slf
    }

    /// Connects, creates or joins the group and returns the `Consumer`.
    ///
    /// Raises `ConfigurationError` (no group id, bad URL or table name), `NotFoundError`
    /// (a table that does not exist or is not enabled), `ConnectionError`,
    /// `ServerSetupError`.
    fn build(&self, py: Python<'_>) -> PyResult<PyConsumer> {
        let group_id = self.group_id.clone().ok_or_else(|| {
            ConfigurationError::new_err(
                "ConsumerBuilder.build: no consumer group; call set_group_id(\"my-group\") first",
            )
        })?;
        let config = connect_config(self.url.as_deref())?;
        let mut builder = ConsumerBuilder::new(config, group_id.clone());
        for (table, location) in &self.tables {
            builder = builder.add_table(table.clone(), *location);
        }
        for table in &self.removed {
            builder = builder.remove_table(table.clone());
        }
        builder = builder.commit_mode(if self.manual {
            CommitMode::Manual
        } else {
            CommitMode::Automatic
        });
        if let Some(p) = self.partitions {
            builder = builder.partitions(p);
        }
        if let Some(ops) = &self.operations {
            builder = builder.operations(ops);
        }
        for prefix in &self.message_prefixes {
            builder = builder.message_prefix(prefix.clone());
        }
        if let Some(interval) = self.max_poll_interval {
            builder = builder.max_poll_interval(interval);
        }
        if let Some(timeout) = self.reconnect_timeout {
            builder = builder.reconnect_timeout(timeout);
        }
        builder = builder.force_reset(self.force_reset);
        let consumer = wait(py, builder.build())?.map_err(|e| to_py_err(&e, Context::Admin))?;
        Ok(PyConsumer::new(consumer, self.manual))
    }
}
