//! `pg_changestream._native`: the Python extension module of pg-changestream.
//!
//! The consumer-group API of the Rust library, shaped like the `borneo.changestream` SDK
//! Python developers know: [`builder::PyConsumerBuilder`] → [`consumer::PyConsumer`] →
//! `poll` → [`bundle::PyMessageBundle`] → messages → events → records → images of native
//! Python values ([`values`]). The pure-Python package `pg_changestream` (in
//! `python/pg_changestream/`) re-exports these names and adds the listener helper.
//!
//! Every call that waits on the server releases the GIL and runs on the module's own tokio
//! runtime ([`runtime`]), checking for signals (Ctrl-C) every 50 ms while it waits.

mod builder;
mod bundle;
mod consumer;
mod errors;
mod json;
mod location;
mod relation;
mod runtime;
#[cfg(feature = "testing")]
mod testing;
mod values;

use pyo3::prelude::*;

use crate::errors::to_py_err;
use crate::runtime::{connect_config, wait};

/// Enables change streaming for `table` (`name` or `schema.name`): checks `wal_level`, that
/// the table exists and that its UPDATE and DELETE keep working once published. With
/// `before_images` it sets `REPLICA IDENTITY FULL`; with `enabled=False` it disables change
/// streaming and restores the table's original replica identity.
#[pyfunction]
#[pyo3(signature = (url, table, enabled = true, before_images = true))]
fn enable_change_streaming(
    py: Python<'_>,
    url: Option<String>,
    table: String,
    enabled: bool,
    before_images: bool,
) -> PyResult<()> {
    let config = connect_config(url.as_deref())?;
    let result = wait(py, async move {
        if enabled {
            changestream::consumer::enable_change_streaming(&config, &table, before_images).await
        } else {
            changestream::consumer::disable_change_streaming(&config, &table).await
        }
    })?;
    result.map_err(|e| to_py_err(&e, errors::Context::Admin))
}

/// The extension module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<location::PyStartLocation>()?;
    m.add_class::<builder::PyConsumerBuilder>()?;
    m.add_class::<consumer::PyConsumer>()?;
    m.add_class::<consumer::PyConsumerStats>()?;
    m.add_class::<bundle::PyMessageBundle>()?;
    m.add_class::<bundle::PyMessage>()?;
    m.add_class::<bundle::PyEvent>()?;
    m.add_class::<bundle::PyRecord>()?;
    m.add_class::<bundle::PyImage>()?;
    m.add_class::<bundle::BeforeImageState>()?;
    m.add_function(wrap_pyfunction!(enable_change_streaming, m)?)?;
    #[cfg(feature = "testing")]
    testing::register(m)?;
    Ok(())
}
