//! The public error type.
//!
//! Two layers, as in tokio-postgres and Materialize: parsers in [`crate::protocol`] return a
//! small [`DecodeError`](crate::protocol::DecodeError) with no allocation on the hot path; everything a user sees is an
//! opaque [`Error`] whose kind is private and asked through predicates. The split that
//! matters most to a caller is [`Error::is_transient`]: a transient error (connection lost,
//! server restarting) is retried from the committed cursor, a definite one (slot
//! invalidated, wal_level wrong, permission denied) stops and tells the user what to do.

use std::error::Error as StdError;
use std::fmt;

use tokio_postgres::error::SqlState;

/// What went wrong, coarsely. Private so that new kinds are not a breaking change; callers
/// use the `is_*` predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A connection string, builder setting or argument is invalid.
    Config,
    /// Reading from or writing to the server failed (connection refused, reset, timed out).
    Io,
    /// The server closed the connection (cleanly or not) while we still needed it.
    Closed,
    /// TLS could not be negotiated or the certificate did not verify.
    Tls,
    /// The server refused our credentials, or asked for a method we do not support.
    Auth,
    /// The server sent bytes that do not follow the protocol.
    Protocol,
    /// The server answered with an ErrorResponse.
    Server,
    /// An SQL statement on an ordinary (non-replication) connection failed.
    Sql,
    /// A named object (table, slot, publication, group) does not exist.
    NotFound,
    /// The server is not set up for what we need (wal_level, version, privileges).
    ServerSetup,
    /// The replication slot was invalidated by the server; its history is gone.
    SlotInvalidated,
    /// Another member took over this consumer's work.
    Fenced,
    /// A local file operation (spill files, test clusters) failed.
    Local,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Config => "invalid configuration",
            Kind::Io => "i/o error",
            Kind::Closed => "connection closed",
            Kind::Tls => "tls error",
            Kind::Auth => "authentication failed",
            Kind::Protocol => "protocol error",
            Kind::Server => "server error",
            Kind::Sql => "sql error",
            Kind::NotFound => "not found",
            Kind::ServerSetup => "server not ready for logical replication",
            Kind::SlotInvalidated => "replication slot invalidated",
            Kind::Fenced => "fenced",
            Kind::Local => "local error",
        }
    }
}

/// An error reported by the PostgreSQL server on a replication connection
/// (an ErrorResponse), with the fields a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Severity as sent (`ERROR`, `FATAL`, `PANIC`), not localized.
    pub severity: String,
    /// The SQLSTATE code.
    pub code: SqlState,
    /// The primary message.
    pub message: String,
    /// Optional detail.
    pub detail: Option<String>,
    /// Optional hint.
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity,
            self.code.code(),
            self.message
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl StdError for ServerError {}

/// The error type of this crate.
///
/// `Display` reads `kind: message: cause`, naming the object concerned and, where there is
/// one, the remedy.
pub struct Error(Box<Inner>);

struct Inner {
    kind: Kind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    pub(crate) fn with_source(
        kind: Kind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(Kind::Protocol, message)
    }

    #[cfg(test)]
    pub(crate) fn server(error: ServerError) -> Error {
        Error::with_source(Kind::Server, String::new(), error)
    }

    #[allow(dead_code)] // used as the crate grows; part of the error vocabulary
    pub(crate) fn kind(&self) -> Kind {
        self.0.kind
    }

    /// Whether retrying (reconnecting from the committed cursor) can succeed: lost
    /// connections, server restarts, timeouts, a slot still held by a dying walsender.
    pub fn is_transient(&self) -> bool {
        match self.0.kind {
            Kind::Io | Kind::Closed => true,
            Kind::Server => self
                .server_error()
                .is_some_and(|e| is_transient_code(&e.code)),
            Kind::Sql => self.sql_error().is_some_and(|e| {
                e.is_closed()
                    || e.code().is_some_and(is_transient_code)
                    || e.as_db_error().is_none()
            }),
            _ => false,
        }
    }

    /// Whether the server rejected the credentials (or the authentication method).
    pub fn is_auth(&self) -> bool {
        self.0.kind == Kind::Auth
            || self.code().is_some_and(|c| {
                *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            })
    }

    /// Whether TLS negotiation or certificate verification failed.
    pub fn is_tls(&self) -> bool {
        self.0.kind == Kind::Tls
    }

    /// Whether a connection string, builder setting or argument was invalid.
    pub fn is_config(&self) -> bool {
        self.0.kind == Kind::Config
    }

    /// Whether the server sent bytes that violate the protocol.
    pub fn is_protocol(&self) -> bool {
        self.0.kind == Kind::Protocol
    }

    /// Whether a named object (table, slot, publication, group) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.0.kind == Kind::NotFound
    }

    /// Whether the server is not configured for logical replication (wal_level, version,
    /// privileges).
    pub fn is_server_setup(&self) -> bool {
        self.0.kind == Kind::ServerSetup
    }

    /// Whether the replication slot was invalidated (its WAL was removed).
    pub fn is_slot_invalidated(&self) -> bool {
        self.0.kind == Kind::SlotInvalidated
    }

    /// Whether another member of the group took this consumer's work.
    pub fn is_fenced(&self) -> bool {
        self.0.kind == Kind::Fenced
    }

    /// Whether the connection was closed by the server or the network.
    pub fn is_closed(&self) -> bool {
        self.0.kind == Kind::Closed
    }

    /// The SQLSTATE of a server-reported error, from either connection type.
    pub fn code(&self) -> Option<&SqlState> {
        if let Some(e) = self.server_error() {
            return Some(&e.code);
        }
        self.sql_error().and_then(|e| e.code())
    }

    /// The server's error report, when the error came from the replication connection.
    pub fn as_server_error(&self) -> Option<&ServerError> {
        self.server_error()
    }

    /// The server's error report, when the error came from an SQL connection.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.sql_error().and_then(|e| e.as_db_error())
    }

    fn server_error(&self) -> Option<&ServerError> {
        self.0.source.as_deref()?.downcast_ref::<ServerError>()
    }

    fn sql_error(&self) -> Option<&tokio_postgres::Error> {
        self.0
            .source
            .as_deref()?
            .downcast_ref::<tokio_postgres::Error>()
    }
}

/// SQLSTATEs after which reconnecting is worth it: the server is shutting down or starting,
/// out of connection slots, or the slot is still held by a walsender that is going away.
fn is_transient_code(code: &SqlState) -> bool {
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::OBJECT_IN_USE,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
    ]
    .contains(code)
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("source", &self.0.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.kind.label())?;
        if !self.0.message.is_empty() {
            write!(f, ": {}", self.0.message)?;
        }
        if let Some(source) = &self.0.source {
            match source.downcast_ref::<tokio_postgres::Error>() {
                Some(sql) => write_sql_error(f, sql)?,
                None => write!(f, ": {source}")?,
            }
        }
        Ok(())
    }
}

/// tokio-postgres prints only its own kind ("db error", "error connecting to server") and
/// keeps the server's report or the I/O failure as its source; a user needs that part most
/// ("role x does not exist"), so it is printed too. Server messages never hold the
/// password sent.
fn write_sql_error(f: &mut fmt::Formatter<'_>, e: &tokio_postgres::Error) -> fmt::Result {
    match e.as_db_error() {
        Some(db) => {
            write!(
                f,
                ": {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            )?;
            if let Some(detail) = db.detail() {
                write!(f, " (detail: {detail})")?;
            }
            if let Some(hint) = db.hint() {
                write!(f, " (hint: {hint})")?;
            }
            Ok(())
        }
        None => {
            write!(f, ": {e}")?;
            match StdError::source(e) {
                Some(cause) => write!(f, ": {cause}"),
                None => Ok(()),
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        Error::with_source(Kind::Sql, String::new(), e)
    }
}

impl From<crate::protocol::DecodeError> for Error {
    fn from(e: crate::protocol::DecodeError) -> Error {
        Error::with_source(Kind::Protocol, String::new(), e)
    }
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_chains_kind_message_and_cause() {
        let e = Error::with_source(
            Kind::Io,
            "reading from 127.0.0.1:5432",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer"),
        );
        assert_eq!(
            e.to_string(),
            "i/o error: reading from 127.0.0.1:5432: reset by peer"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn server_errors_expose_their_code_and_transience() {
        let e = Error::server(ServerError {
            severity: "FATAL".into(),
            code: SqlState::ADMIN_SHUTDOWN,
            message: "terminating connection due to administrator command".into(),
            detail: None,
            hint: None,
        });
        assert_eq!(e.code(), Some(&SqlState::ADMIN_SHUTDOWN));
        assert!(e.is_transient());
        let e = Error::server(ServerError {
            severity: "ERROR".into(),
            code: SqlState::UNDEFINED_OBJECT,
            message: "replication slot \"s\" does not exist".into(),
            detail: None,
            hint: Some("create it".into()),
        });
        assert!(!e.is_transient());
        assert!(e.to_string().contains("42704"), "{e}");
        assert!(e.to_string().contains("hint: create it"), "{e}");
    }

    #[test]
    fn definite_kinds_are_not_transient() {
        for kind in [
            Kind::Config,
            Kind::Auth,
            Kind::SlotInvalidated,
            Kind::ServerSetup,
        ] {
            assert!(!Error::new(kind, "x").is_transient(), "{kind:?}");
        }
    }
}
