//! `Consumer`: polls, commits, tables, reset, close; `ConsumerStats`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use changestream::consumer::Consumer;
use changestream::consumer::Stats;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::bundle::{BundleData, PyMessageBundle};
use crate::errors::{consuming, to_py_err, ClosedError, Context};
use crate::location::PyStartLocation;
use crate::runtime::{block, connect_config, runtime, wait, with_timeout};

/// A consumer of a group, made by `ConsumerBuilder.build()`.
///
/// `poll(limit, wait_ms)` returns a `MessageBundle`; commits follow the commit mode (see
/// `ConsumerBuilder.set_commit_manual`). Use it as a context manager, or call `close()`:
///
/// ```python
/// with builder.build() as consumer:
///     bundle = consumer.poll(limit=100, wait_ms=1000)
/// ```
///
/// Leaving the `with` block normally closes the consumer (committing the last poll in
/// automatic mode); leaving it with an exception stops the consumer without committing, so
/// the last poll is delivered again to the group's next consumer.
///
/// A consumer may be shared between threads; its calls run one at a time.
#[pyclass(module = "pg_changestream", name = "Consumer")]
pub(crate) struct PyConsumer {
    inner: Mutex<Option<Consumer>>,
    /// A poll was interrupted (Ctrl-C) after it may have taken records off the streams:
    /// the next poll first resets to the committed cursor so that none is skipped.
    interrupted: AtomicBool,
    manual: bool,
}

impl PyConsumer {
    pub(crate) fn new(consumer: Consumer, manual: bool) -> PyConsumer {
        PyConsumer {
            inner: Mutex::new(Some(consumer)),
            interrupted: AtomicBool::new(false),
            manual,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Consumer>> {
        // A panic while the lock was held leaves the consumer as it was: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the open consumer with the GIL released (the lock is taken without the
    /// GIL too, so a thread waiting for it never blocks one that needs the GIL).
    fn with_consumer<T, F>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(
                &'c mut Consumer,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = PyResult<T>> + Send + 'c>,
            > + Send,
    {
        py.detach(|| {
            let mut guard = self.lock();
            let consumer = guard.as_mut().ok_or_else(closed)?;
            block(f(consumer))?
        })
    }
}

fn closed() -> PyErr {
    ClosedError::new_err("the consumer is closed; build a new one with ConsumerBuilder")
}

#[pymethods]
impl PyConsumer {
    /// Returns the next changes: at most `limit` records, as soon as some are available, or
    /// an empty bundle after `wait_ms`. In automatic mode it first commits what the previous
    /// poll returned. The GIL is released while it waits; Ctrl-C interrupts it (the next
    /// poll then starts again from the committed cursor, so nothing is skipped).
    ///
    /// Raises `GroupDeletedError` when the group was deleted, `SlotInvalidatedError`,
    /// `FencedError`, `ConnectionError` past the reconnect timeout.
    #[pyo3(signature = (limit = 100, wait_ms = 1000))]
    fn poll(&self, py: Python<'_>, limit: usize, wait_ms: u64) -> PyResult<PyMessageBundle> {
        let interrupted = &self.interrupted;
        let reset_first = interrupted.load(Ordering::SeqCst);
        let wait_for = Duration::from_millis(wait_ms);
        let outcome = py.detach(|| {
            let mut guard = self.lock();
            let consumer = guard.as_mut().ok_or_else(closed)?;
            Ok::<_, PyErr>(block(async move {
                if reset_first {
                    consumer.reset().await?;
                    interrupted.store(false, Ordering::SeqCst);
                }
                consumer.poll(limit.max(1), wait_for).await
            }))
        })?;
        let bundle = match outcome {
            Ok(result) => result.map_err(consuming)?,
            Err(signal) => {
                // The poll was dropped mid-way, perhaps after taking records off the streams.
                interrupted.store(true, Ordering::SeqCst);
                return Err(signal);
            }
        };
        Ok(PyMessageBundle::new(Arc::new(BundleData::new(bundle))))
    }

    /// Commits everything the last poll returned (and all before it): none of it is
    /// delivered to the group again. With `timeout_ms`, raises `TimeoutError` if the commit
    /// takes longer (it may still have taken effect).
    #[pyo3(signature = (timeout_ms = None))]
    fn commit(&self, py: Python<'_>, timeout_ms: Option<u64>) -> PyResult<()> {
        self.with_consumer(py, move |consumer| {
            Box::pin(async move { with_timeout(timeout_ms, consumer.commit()).await })
        })
    }

    /// Adds `table` to the group while consuming; it starts at `start_location` if new to
    /// the group (default: `StartLocation.first_uncommitted()`).
    #[pyo3(signature = (table, start_location = None))]
    fn add_table(
        &self,
        py: Python<'_>,
        table: String,
        start_location: Option<PyStartLocation>,
    ) -> PyResult<()> {
        let location = start_location.map_or(
            changestream::consumer::StartLocation::FirstUncommitted,
            |l| l.inner,
        );
        self.with_consumer(py, move |consumer| {
            Box::pin(async move {
                consumer
                    .add_table(&table, location)
                    .await
                    .map_err(|e| to_py_err(&e, Context::Admin))
            })
        })
    }

    /// Takes `table` out of the group; its records stop at once.
    fn remove_table(&self, py: Python<'_>, table: String) -> PyResult<()> {
        self.with_consumer(py, move |consumer| {
            Box::pin(async move {
                consumer
                    .remove_table(&table)
                    .await
                    .map_err(|e| to_py_err(&e, Context::Admin))
            })
        })
    }

    /// Forgets what was polled but not committed: the next poll delivers it again from the
    /// committed cursor.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with_consumer(py, move |consumer| {
            Box::pin(async move { consumer.reset().await.map_err(consuming) })
        })?;
        self.interrupted.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Stops the consumer: in automatic mode commits the last poll, ends replication and
    /// leaves the group, handing its partitions to the other members at once. Closing a
    /// closed consumer does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let consumer = py.detach(|| self.lock().take());
        let Some(consumer) = consumer else {
            return Ok(());
        };
        wait(py, consumer.close())?.map_err(consuming)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.lock().is_none())
    }

    /// Whether commits are manual.
    #[getter]
    fn commit_manual(&self) -> bool {
        self.manual
    }

    /// The consumer group's id.
    #[getter]
    fn group_id(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.lock().as_ref().map(|c| c.group_id().to_owned()))
            .ok_or_else(closed)
    }

    /// The tables the consumer reads, as `schema.name`.
    fn get_tables(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| {
            self.lock()
                .as_ref()
                .map(|c| c.tables().iter().map(ToString::to_string).collect())
        })
        .ok_or_else(closed)
    }

    /// The group partitions this consumer reads now.
    fn get_partitions(&self, py: Python<'_>) -> PyResult<Vec<i32>> {
        py.detach(|| {
            let partitions = self.lock().as_ref().map(Consumer::partitions);
            partitions.map(|ps| ps.into_iter().map(i32::from).collect())
        })
        .ok_or_else(closed)
    }

    /// Counters since the consumer was built, and its lag.
    fn stats(&self, py: Python<'_>) -> PyResult<PyConsumerStats> {
        py.detach(|| self.lock().as_ref().map(Consumer::stats))
            .map(PyConsumerStats::from)
            .ok_or_else(closed)
    }

    /// Deletes the consumer group `group_id`: its slots, publications and state. Without
    /// `force_stop` it refuses while a consumer is attached; with it, those consumers'
    /// next poll raises `GroupDeletedError`.
    #[classmethod]
    #[pyo3(signature = (url, group_id, force_stop = false))]
    fn delete_group(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        url: Option<String>,
        group_id: String,
        force_stop: bool,
    ) -> PyResult<()> {
        let config = connect_config(url.as_deref())?;
        wait(py, async move {
            changestream::consumer::delete_group(&config, &group_id, force_stop).await
        })?
        .map_err(|e| to_py_err(&e, Context::Admin))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some_and(|t| !t.is_none()) {
            // Stop without committing: what the failed block received is delivered again.
            let consumer = py.detach(|| self.lock().take());
            abandon(consumer);
        } else {
            self.close(py)?;
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        py.detach(|| match self.lock().as_ref() {
            Some(c) => format!(
                "<Consumer group={:?} tables={:?}>",
                c.group_id(),
                c.tables()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
            None => "<Consumer closed>".to_owned(),
        })
    }
}

impl Drop for PyConsumer {
    fn drop(&mut self) {
        abandon(self.lock().take());
    }
}

/// Drops a consumer without committing, inside the runtime (its tasks stop there).
fn abandon(consumer: Option<Consumer>) {
    if let Some(consumer) = consumer {
        let _guard = runtime().enter();
        drop(consumer);
    }
}

/// What a consumer has delivered since it was built, and how far behind it is.
#[pyclass(module = "pg_changestream", name = "ConsumerStats", frozen, get_all)]
pub(crate) struct PyConsumerStats {
    /// Insert records delivered.
    inserts: u64,
    /// Update records delivered.
    updates: u64,
    /// Delete records delivered.
    deletes: u64,
    /// Truncate records delivered.
    truncates: u64,
    /// Backfill (`read`) records delivered.
    reads: u64,
    /// Logical messages delivered.
    messages: u64,
    /// Bytes of row data delivered, as the server sent them.
    bytes: u64,
    /// Polls made.
    polls: u64,
    /// Reconnections after transient failures.
    reconnects: u64,
    /// Bytes of WAL between the last poll's end and the server's WAL end (the lag in bytes).
    wal_bytes_behind: u64,
    /// The smallest committed position over the partitions, as text (`0/16B3748`).
    committed_lsn: String,
    /// Milliseconds between the commit of the last delivered record and its delivery.
    commit_lag_ms: Option<f64>,
}

impl From<Stats> for PyConsumerStats {
    fn from(s: Stats) -> Self {
        PyConsumerStats {
            inserts: s.inserts,
            updates: s.updates,
            deletes: s.deletes,
            truncates: s.truncates,
            reads: s.reads,
            messages: s.messages,
            bytes: s.bytes,
            polls: s.polls,
            reconnects: s.reconnects,
            wal_bytes_behind: s.wal_bytes_behind,
            committed_lsn: s.committed_lsn.to_string(),
            commit_lag_ms: s.commit_lag.map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

#[pymethods]
impl PyConsumerStats {
    /// All records delivered.
    #[getter]
    fn records(&self) -> u64 {
        self.inserts + self.updates + self.deletes + self.truncates + self.reads + self.messages
    }

    fn __repr__(&self) -> String {
        format!(
            "ConsumerStats(inserts={}, updates={}, deletes={}, truncates={}, reads={}, \
             messages={}, polls={}, wal_bytes_behind={}, committed_lsn='{}', commit_lag_ms={})",
            self.inserts,
            self.updates,
            self.deletes,
            self.truncates,
            self.reads,
            self.messages,
            self.polls,
            self.wal_bytes_behind,
            self.committed_lsn,
            self.commit_lag_ms
                .map_or_else(|| "None".to_owned(), |ms| format!("{ms:.3}"))
        )
    }
}
