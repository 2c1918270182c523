//! The exception hierarchy, mapped from the library's error kinds
//! (`pg_changestream::Error::is_*`):
//!
//! ```text
//! ChangeStreamError                  every error of the package; str() names the fix
//! ├── ConfigurationError             a bad URL, argument or builder setting (is_config)
//! ├── ConnectionError                the server cannot be reached, TLS failed, the
//! │   └── AuthenticationError        connection broke past the reconnect timeout (is_auth)
//! ├── NotFoundError                  a table (or other object) does not exist (is_not_found)
//! │   └── GroupDeletedError          the consumer group, its slot or publication was deleted
//! ├── ServerSetupError               wal_level, privileges, server version (is_server_setup)
//! ├── SlotInvalidatedError           the slot's WAL was removed (is_slot_invalidated)
//! ├── FencedError                    another member took this consumer's work (is_fenced)
//! ├── ProtocolError                  the server sent bytes that break the protocol
//! ├── TimeoutError                   a commit did not finish within timeout_ms
//! └── ClosedError                    the consumer was closed
//! ```
//!
//! SQL errors on other grounds (a constraint, a lock timeout) stay `ChangeStreamError`.
//! Each exception carries the Rust error's message, which names the object concerned and
//! the remedy; `.sqlstate` holds the SQLSTATE when the server reported one, else None.

use changestream::Error;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    pg_changestream,
    ChangeStreamError,
    PyException,
    "Every error of pg_changestream. The message names the object concerned and the fix."
);
create_exception!(
    pg_changestream,
    ConfigurationError,
    ChangeStreamError,
    "A connection string, argument or builder setting is invalid."
);
create_exception!(
    pg_changestream,
    ConnectionError,
    ChangeStreamError,
    "The server cannot be reached, TLS failed, or the connection broke for longer than the \
     reconnect timeout."
);
create_exception!(
    pg_changestream,
    AuthenticationError,
    ConnectionError,
    "The server refused the credentials or the authentication method."
);
create_exception!(
    pg_changestream,
    NotFoundError,
    ChangeStreamError,
    "A named object (table, group, slot, publication) does not exist."
);
create_exception!(
    pg_changestream,
    GroupDeletedError,
    NotFoundError,
    "The consumer group, its replication slot or its publication was deleted while the \
     consumer used it."
);
create_exception!(
    pg_changestream,
    ServerSetupError,
    ChangeStreamError,
    "The server is not set up for logical replication (wal_level, privileges, version)."
);
create_exception!(
    pg_changestream,
    SlotInvalidatedError,
    ChangeStreamError,
    "The group's replication slot was invalidated: the server removed WAL it still needed."
);
create_exception!(
    pg_changestream,
    FencedError,
    ChangeStreamError,
    "Another member of the group took this consumer's partitions; build a new consumer."
);
create_exception!(
    pg_changestream,
    ProtocolError,
    ChangeStreamError,
    "The server sent bytes that violate the replication protocol."
);
create_exception!(
    pg_changestream,
    TimeoutError,
    ChangeStreamError,
    "A commit did not finish within its timeout; it may still have taken effect."
);
create_exception!(
    pg_changestream,
    ClosedError,
    ChangeStreamError,
    "The consumer was closed; build a new one with ConsumerBuilder."
);

/// Where an error happened, which decides what a missing object means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// Building a consumer, adding tables, administration: a missing object is a missing
    /// table or group named by the caller.
    Admin,
    /// Polling or committing: a missing group object means the group was deleted.
    Consuming,
}

/// The Python exception for `error`.
pub(crate) fn to_py_err(error: &Error, context: Context) -> PyErr {
    let message = error.to_string();
    let err = if error.is_config() {
        ConfigurationError::new_err(message)
    } else if error.is_auth() {
        AuthenticationError::new_err(message)
    } else if error.is_not_found() {
        if group_gone(&message, context) {
            GroupDeletedError::new_err(message)
        } else {
            NotFoundError::new_err(message)
        }
    } else if error.is_slot_invalidated() {
        SlotInvalidatedError::new_err(message)
    } else if error.is_server_setup() {
        ServerSetupError::new_err(message)
    } else if error.is_fenced() {
        FencedError::new_err(message)
    } else if error.is_protocol() {
        ProtocolError::new_err(message)
    } else if error.is_tls() || error.is_transient() || error.is_closed() {
        ConnectionError::new_err(message)
    } else {
        ChangeStreamError::new_err(message)
    };
    // Always set, so that `e.sqlstate` is None rather than an AttributeError when the
    // server sent no code (a refused connection, a bad argument).
    Python::attach(|py| {
        let _ = err
            .value(py)
            .setattr("sqlstate", error.code().map(|code| code.code()));
    });
    err
}

/// Whether a not-found error says the group itself (or its slot or publication) is gone
/// rather than a table: the library words those as `consumer group "g" ... deleted /
/// vanished / dropped behind its back / does not exist`.
fn group_gone(message: &str, context: Context) -> bool {
    let about_group = message.contains("consumer group") && !message.contains(": table ");
    let gone = ["deleted", "vanished", "dropped behind its back", "is gone"]
        .iter()
        .any(|w| message.contains(w));
    about_group && (gone || (context == Context::Consuming && message.contains("does not exist")))
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ChangeStreamError", py.get_type::<ChangeStreamError>())?;
    m.add("ConfigurationError", py.get_type::<ConfigurationError>())?;
    m.add("ConnectionError", py.get_type::<ConnectionError>())?;
    m.add("AuthenticationError", py.get_type::<AuthenticationError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("GroupDeletedError", py.get_type::<GroupDeletedError>())?;
    m.add("ServerSetupError", py.get_type::<ServerSetupError>())?;
    m.add(
        "SlotInvalidatedError",
        py.get_type::<SlotInvalidatedError>(),
    )?;
    m.add("FencedError", py.get_type::<FencedError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}

/// A failure while consuming (polling, committing), as its Python exception.
pub(crate) fn consuming(e: changestream::Error) -> PyErr {
    to_py_err(&e, Context::Consuming)
}
