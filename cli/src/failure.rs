//! How the tool fails: an exit status and one line on stderr that says what to do.
//!
//! Exit status 2 means the user can fix it by changing the command line or the
//! configuration (a bad flag or URL, an unknown table, a server without
//! `wal_level=logical`, wrong credentials); 1 means anything else (the server went away, an
//! I/O error). The library's [`Error`] predicates decide which.

use std::fmt;
use std::process::ExitCode;

use pg_changestream::Error;

/// A failure of a command: its exit status and message.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A usage or configuration error (exit status 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Any other failure (exit status 1).
    pub fn other(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// The same failure with `context: ` in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Failure {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Prints the message as one line on stderr and returns the exit status.
    pub fn report(&self) -> ExitCode {
        eprintln!("pg-changestream: {}", one_line(&self.message));
        ExitCode::from(self.code)
    }

    /// The exit status.
    #[cfg(test)]
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let mut message = e.to_string();
        // tokio-postgres keeps the root cause ("Connection refused") in its source chain,
        // out of its Display; the one line should carry it.
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = cause.source();
        }
        if is_users_to_fix(&e) {
            Failure::usage(message)
        } else {
            Failure::other(message)
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::other(e.to_string())
    }
}

/// Whether the error is fixed by changing the command or the configuration.
fn is_users_to_fix(e: &Error) -> bool {
    e.is_config() || e.is_not_found() || e.is_server_setup() || e.is_auth() || e.is_tls()
}

/// Server messages can hold DETAIL and HINT lines; one line is easier to grep and to read
/// in a log.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Turns a clap error into its exit: help and version go to stdout with status 0; usage
/// errors become one line with a pointer to `--help` and status 2.
pub fn from_clap(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            Failure::usage(format!("{first} (see pg-changestream --help)")).report()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(
            one_line("db error: ERROR: boom\nDETAIL: more\n\nHINT: do x"),
            "db error: ERROR: boom; DETAIL: more; HINT: do x"
        );
    }

    #[test]
    fn configuration_errors_exit_2_and_others_1() {
        let bad: Error = "postgres://h:notaport/db"
            .parse::<pg_changestream::ConnectConfig>()
            .unwrap_err();
        assert_eq!(Failure::from(bad).code(), 2);
        let io = std::io::Error::other("disk on fire");
        assert_eq!(Failure::from(io).code(), 1);
    }
}
