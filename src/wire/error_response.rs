//! The server's ErrorResponse on the replication connection, classified into the crate's
//! errors: authentication refusals, invalidated slots, and the rest as server errors that
//! keep their SQLSTATE (so `Error::is_transient` can tell a busy slot from a wrong command).

use tokio_postgres::error::SqlState;

use crate::error::{Error, Kind, ServerError};
use crate::protocol::frame::ErrorFields;

/// Turns an ErrorResponse into a [`ServerError`].
pub(crate) fn server_error(fields: ErrorFields) -> ServerError {
    ServerError {
        severity: fields.severity,
        code: SqlState::from_code(&fields.code),
        message: fields.message,
        detail: fields.detail,
        hint: fields.hint,
    }
}

/// An error reply to a command, classified.
pub(crate) fn command_error(peer: &str, command: &str, fields: ErrorFields) -> Error {
    let error = server_error(fields);
    let invalidated = error.code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
        && [Some(error.message.as_str()), error.detail.as_deref()]
            .into_iter()
            .flatten()
            .any(|s| s.contains("invalidated"));
    if invalidated {
        return Error::with_source(
            Kind::SlotInvalidated,
            format!(
                "{command} on server {peer}: the slot lost WAL it needs; its history is gone \
                 and it must be dropped and created again"
            ),
            error,
        );
    }
    let command = command.split_whitespace().next().unwrap_or(command);
    Error::with_source(Kind::Server, format!("{command} on server {peer}"), error)
}

/// An error reply during startup or authentication, classified.
pub(crate) fn startup_error(peer: &str, user: &str, database: &str, fields: ErrorFields) -> Error {
    let error = server_error(fields);
    if error.code == SqlState::INVALID_PASSWORD {
        return Error::with_source(
            Kind::Auth,
            format!(
                "server {peer} rejected the password of user {user:?}; check the password in \
                 the connection settings"
            ),
            error,
        );
    }
    if error.code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        return Error::with_source(
            Kind::Auth,
            format!(
                "server {peer} refused user {user:?} for a replication connection to database \
                 {database:?}; the role needs LOGIN and REPLICATION and a pg_hba.conf entry"
            ),
            error,
        );
    }
    Error::with_source(
        Kind::Server,
        format!("connecting to server {peer} as user {user:?}, database {database:?}"),
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_codes_are_auth_errors_naming_user_and_server() {
        let fields = ErrorFields {
            severity: "FATAL".into(),
            code: "28P01".into(),
            message: "password authentication failed for user \"u\"".into(),
            ..ErrorFields::default()
        };
        let e = startup_error("db.example:5432", "u", "d", fields);
        assert!(e.is_auth());
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("db.example:5432") && text.contains("\"u\""),
            "{text}"
        );
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD));
    }

    #[test]
    fn invalidated_slots_are_classified() {
        let fields = ErrorFields {
            severity: "ERROR".into(),
            code: "55000".into(),
            message: "can no longer get changes from replication slot \"s\"".into(),
            detail: Some(
                "This slot has been invalidated because it exceeded the maximum reserved size."
                    .into(),
            ),
            hint: None,
        };
        let e = command_error("h:1", "START_REPLICATION", fields);
        assert!(e.is_slot_invalidated(), "{e}");
        let fields = ErrorFields {
            severity: "ERROR".into(),
            code: "55006".into(),
            message: "replication slot \"s\" is active for PID 42".into(),
            ..ErrorFields::default()
        };
        let e = command_error("h:1", "START_REPLICATION", fields);
        assert!(e.is_transient(), "{e}");
        assert!(e.as_server_error().is_some());
    }
}
