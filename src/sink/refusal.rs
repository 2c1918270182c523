//! The NATS server's `-ERR`s, sorted into what a new connection cannot cure (a
//! [`SinkError::Config`] naming the fix: the publisher exits) and what it may (a
//! [`SinkError::Unavailable`]: the driver reconnects and publishes again from the cursor).
//!
//! The texts are the server's documented protocol errors
//! (<https://docs.nats.io/reference/reference-protocols/nats-protocol#-err>). Permanent,
//! because the same frames on a new connection meet the same configuration:
//!
//! - `Permissions Violation for Publish to "<subject>"` (the connection stays open, the
//!   message is dropped and never acknowledged), `… for Publish with Reply of "<subject>"`
//!   and `… for Subscription to "<subject>"` (the acknowledgements' inbox);
//! - `Maximum Payload Violation` (the connection is closed; [`oversized`] refuses such a
//!   message before it is sent, this is the fallback for a smaller limit the server's `INFO`
//!   did not tell, such as an account's);
//! - `Authorization Violation`, `User/Account Authentication Expired/Revoked` (credentials);
//! - `Secure Connection - TLS Required`;
//! - `Invalid Subject` / `Invalid Publish Subject`.
//!
//! Everything else — `Stale Connection`, `Slow Consumer`, `Maximum Connections Exceeded`,
//! `Authorization/Authentication Timeout`, and any text this list does not know — is
//! transient: retrying is the safe default for an error nobody has classified.

use super::error::SinkError;
use super::outgoing::Outgoing;

/// Where the refusal happened, for the fix it names.
pub(super) struct Scope<'a> {
    /// The server's address.
    pub(super) url: &'a str,
    /// The stream's subject filters, as the user would grant them (`changestream.>`).
    pub(super) subjects: &'a str,
}

/// The error for the server's `-ERR 'text'`.
pub(super) fn refusal(text: &str, scope: &Scope<'_>) -> SinkError {
    let lower = text.to_ascii_lowercase();
    let url = scope.url;
    let subjects = scope.subjects;
    // The subject the server quotes (`%q` in its Go source), if any.
    let quoted = text
        .split_once('"')
        .and_then(|(_, rest)| rest.rsplit_once('"'))
        .map_or("", |(subject, _)| subject);
    if lower.starts_with("permissions violation for publish with reply") {
        SinkError::Config(format!(
            "the NATS server at {url} refused the reply subject \"{quoted}\" of a publish \
             ({text}); the stream's acknowledgements come there: do not deny the user publish \
             with replies on _INBOX.>"
        ))
    } else if lower.starts_with("permissions violation for publish") {
        SinkError::Config(format!(
            "the NATS server at {url} refused publishing to \"{quoted}\" ({text}); grant the \
             user publish permission on {subjects} (the stream's subjects)"
        ))
    } else if lower.starts_with("permissions violation for subscription") {
        SinkError::Config(format!(
            "the NATS server at {url} refused the subscription to \"{quoted}\" ({text}), where \
             the stream's acknowledgements come; grant the user subscribe permission on \
             _INBOX.>"
        ))
    } else if lower.starts_with("permissions violation") {
        SinkError::Config(format!(
            "the NATS server at {url} refused a permission ({text}); grant the user publish \
             permission on {subjects} and subscribe permission on _INBOX.>"
        ))
    } else if lower.starts_with("maximum payload") {
        SinkError::Config(format!(
            "the NATS server at {url} refused a message larger than its max_payload ({text}); \
             raise max_payload in the server's (or the account's) configuration, or leave \
             large columns out of the group (tail --exclude-columns)"
        ))
    } else if lower.starts_with("authorization violation")
        || (lower.contains("authentication")
            && (lower.contains("expired") || lower.contains("revoked")))
    {
        SinkError::Config(format!(
            "the NATS server at {url} refused the credentials ({text}); check --creds, \
             --token or --user/--password"
        ))
    } else if lower.starts_with("secure connection") {
        SinkError::Config(format!(
            "the NATS server at {url} requires TLS ({text}); add --tls or use a tls:// URL"
        ))
    } else if lower.starts_with("invalid subject") || lower.starts_with("invalid publish subject") {
        SinkError::Config(format!(
            "the NATS server at {url} refused a subject ({text}); check --subject-prefix and \
             --subject-template"
        ))
    } else {
        SinkError::Unavailable(format!("the NATS server at {url} said: {text}"))
    }
}

/// The refusal of a message bigger than the server's `max_payload` (header and payload
/// bytes, as the server counts them): `size` bytes of `message`.
pub(super) fn oversized(message: &Outgoing, size: usize, max_payload: usize) -> SinkError {
    let headers = &message.headers;
    let what = match (&headers.table, message.is_record) {
        (Some(table), true) => format!("record {} of table {table}", headers.event_id),
        (Some(table), false) => format!("the schema record of table {table}"),
        (None, _) => format!("logical message {}", headers.event_id),
    };
    SinkError::Config(format!(
        "{what} is {size} bytes as a NATS message (headers and payload), more than the \
         server's max_payload of {max_payload} bytes; raise max_payload in the NATS server's \
         configuration (at most 64 MB), or leave large columns out of the group (tail \
         --exclude-columns); nothing from it on was published or committed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        url: "nats://n:4222",
        subjects: "cs.>",
    };

    fn message_of(err: &SinkError) -> &str {
        match err {
            SinkError::Config(m) | SinkError::Unavailable(m) => m,
            SinkError::Source(_) => unreachable!(),
        }
    }

    #[test]
    fn permanent_refusals_name_the_fix() {
        let cases = [
            (
                r#"Permissions Violation for Publish to "cs.public.t""#,
                &["\"cs.public.t\"", "publish permission on cs.>"][..],
            ),
            (
                r#"Permissions Violation for Subscription to "_INBOX.abc.*""#,
                &["\"_INBOX.abc.*\"", "subscribe permission on _INBOX.>"],
            ),
            (
                r#"Permissions Violation for Publish with Reply of "_INBOX.abc.1""#,
                &["reply subject \"_INBOX.abc.1\""],
            ),
            ("Maximum Payload Violation", &["max_payload"]),
            ("Authorization Violation", &["refused the credentials"]),
            ("User Authentication Expired", &["refused the credentials"]),
            (
                "Account Authentication Revoked",
                &["refused the credentials"],
            ),
            ("Secure Connection - TLS Required", &["--tls"]),
            ("Invalid Publish Subject", &["--subject-prefix"]),
        ];
        for (text, needles) in cases {
            let err = refusal(text, &SCOPE);
            assert!(err.is_config(), "{text}: {err}");
            for needle in needles {
                assert!(message_of(&err).contains(needle), "{needle:?} not in {err}");
            }
            assert!(message_of(&err).contains("nats://n:4222"), "{err}");
        }
    }

    #[test]
    fn an_oversized_message_is_named() {
        let mut message = Outgoing {
            subject: "cs.public.t".into(),
            id: "g:1/2/3".to_owned(),
            headers: crate::sink::Headers {
                op: "insert",
                table: Some("public.t".into()),
                event_id: "1/2/3".to_owned(),
                commit_lsn: "0/1".to_owned(),
            },
            payload: bytes::Bytes::new(),
            key_hash: 0,
            is_record: true,
        };
        let err = oversized(&message, 2000, 1024);
        assert!(err.is_config());
        for needle in [
            "record 1/2/3 of table public.t",
            "2000",
            "max_payload of 1024",
        ] {
            assert!(message_of(&err).contains(needle), "{needle:?} not in {err}");
        }
        message.headers.table = None;
        let err = oversized(&message, 2000, 1024);
        assert!(message_of(&err).contains("logical message 1/2/3"), "{err}");
    }

    #[test]
    fn transient_refusals_reconnect() {
        for text in [
            "Stale Connection",
            "Slow Consumer",
            "Maximum Connections Exceeded",
            "Authorization Timeout",
            "Authentication Timeout",
            "something new",
            "",
        ] {
            let err = refusal(text, &SCOPE);
            assert!(!err.is_config(), "{text}: {err}");
            assert!(message_of(&err).contains(text), "{err}");
        }
    }
}
