//! What can go wrong while publishing: [`SinkError`], shared by the subjects' validation,
//! the broker contract and the driver (a module of its own so that none of them imports
//! another only for the error type).

/// What can go wrong while publishing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is wrong and retrying cannot help (bad credentials, a stream that
    /// cannot be created, subjects owned by another stream, a permission the user lacks, a
    /// message over the broker's size limit); the message names the fix.
    #[error("{0}")]
    Config(String),
    /// The broker is unreachable, timed out or refused a message; reconnecting may help.
    #[error("{0}")]
    Unavailable(String),
    /// Reading or committing the group failed.
    #[error(transparent)]
    Source(#[from] crate::Error),
}

impl SinkError {
    /// Whether the user must change something (exit status 2 in the command-line tool).
    pub fn is_config(&self) -> bool {
        match self {
            SinkError::Config(_) => true,
            SinkError::Unavailable(_) => false,
            SinkError::Source(e) => e.is_config() || e.is_auth() || e.is_not_found(),
        }
    }
}
