//! `StartLocation`: where a table new to the group starts.

use std::time::{Duration, UNIX_EPOCH};

use changestream::consumer::StartLocation;
use changestream::Lsn;
use pyo3::prelude::*;

use crate::errors::ConfigurationError;

/// Where a table new to the consumer group starts. Tables already in the group continue
/// from the group's committed cursor whatever the start location says.
///
/// Build one with the static methods: `first_uncommitted()`, `earliest()`, `latest()`,
/// `at_time(ms)`, `at_lsn(lsn)`.
#[pyclass(
    module = "pg_changestream",
    name = "StartLocation",
    frozen,
    eq,
    from_py_object
)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyStartLocation {
    pub(crate) inner: StartLocation,
}

#[pymethods]
impl PyStartLocation {
    /// The first change the group has not committed. For a table new to the group that is
    /// like `earliest()`: its existing rows first (op `read`), then its changes.
    #[staticmethod]
    fn first_uncommitted() -> Self {
        Self {
            inner: StartLocation::FirstUncommitted,
        }
    }

    /// The table's existing rows first (op `read`, a consistent backfill), then its changes.
    #[staticmethod]
    fn earliest() -> Self {
        Self {
            inner: StartLocation::Earliest,
        }
    }

    /// Only changes committed after the consumer is built.
    #[staticmethod]
    fn latest() -> Self {
        Self {
            inner: StartLocation::Latest,
        }
    }

    /// Changes committed at or after `ms` milliseconds since the Unix epoch (as far back as
    /// the group's slot still holds WAL).
    #[staticmethod]
    fn at_time(ms: i64) -> PyResult<Self> {
        let ms = u64::try_from(ms).map_err(|_| {
            ConfigurationError::new_err(format!(
                "StartLocation.at_time({ms}): the time must be milliseconds since 1970 \
                 (int(time.time() * 1000)), not negative"
            ))
        })?;
        Ok(Self {
            inner: StartLocation::AtTime(UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }

    /// Changes of transactions committed at or after `lsn`: a PostgreSQL LSN as text
    /// (`"0/16B3748"`, as `pg_current_wal_lsn()` prints it) or as an integer.
    #[staticmethod]
    fn at_lsn(lsn: &Bound<'_, PyAny>) -> PyResult<Self> {
        let lsn = if let Ok(n) = lsn.extract::<u64>() {
            Lsn::new(n)
        } else {
            let text: String = lsn.extract().map_err(|_| {
                ConfigurationError::new_err(
                    "StartLocation.at_lsn takes an LSN as text (\"0/16B3748\") or an int",
                )
            })?;
            text.parse::<Lsn>().map_err(|e| {
                ConfigurationError::new_err(format!(
                    "StartLocation.at_lsn({text:?}): {e}; write it as pg_current_wal_lsn() \
                     prints it, e.g. \"0/16B3748\""
                ))
            })?
        };
        Ok(Self {
            inner: StartLocation::AtLsn(lsn),
        })
    }

    fn __repr__(&self) -> String {
        match self.inner {
            StartLocation::FirstUncommitted => "StartLocation.first_uncommitted()".into(),
            StartLocation::Earliest => "StartLocation.earliest()".into(),
            StartLocation::Latest => "StartLocation.latest()".into(),
            StartLocation::AtTime(t) => format!(
                "StartLocation.at_time({})",
                t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
            ),
            StartLocation::AtLsn(lsn) => format!("StartLocation.at_lsn('{lsn}')"),
        }
    }
}
