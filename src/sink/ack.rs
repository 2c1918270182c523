//! JetStream's publish acknowledgement: stored, dropped as a repeat, or refused.

use serde::Deserialize;

use super::error::SinkError;

/// What an acknowledgement says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ack {
    Stored,
    /// Dropped as a repeat of a message within the duplicate window.
    Duplicate,
}

/// A JetStream publish acknowledgement, as JSON (read only when it is not a plain success).
#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    duplicate: bool,
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

/// Reads an acknowledgement of stream `stream`.
///
/// One comes for every message, so the usual one — exactly `{"stream":"S","seq":7}`, or
/// `{"stream":"S","seq":7,"duplicate":true}` for a repeat — is recognised by comparing
/// bytes; anything else (an error, a JetStream domain, fields in another order) goes
/// through the JSON parser.
///
/// # Errors
/// [`SinkError::Unavailable`] for a refusal or an unreadable acknowledgement.
pub(super) fn read_ack(payload: &[u8], stream: &str) -> Result<Ack, SinkError> {
    let seq = payload
        .strip_prefix(br#"{"stream":""#)
        .and_then(|rest| rest.strip_prefix(stream.as_bytes()))
        .and_then(|rest| rest.strip_prefix(br#"","seq":"#));
    if let Some(seq) = seq {
        let digits = seq.iter().take_while(|b| b.is_ascii_digit()).count();
        match &seq[digits..] {
            b"}" if digits > 0 => return Ok(Ack::Stored),
            br#","duplicate":true}"# if digits > 0 => return Ok(Ack::Duplicate),
            _ => {}
        }
    }
    let ack: PubAck = serde_json::from_slice(payload)
        .map_err(|e| SinkError::Unavailable(format!("unreadable acknowledgement ({e})")))?;
    if let Some(error) = ack.error {
        return Err(SinkError::Unavailable(format!(
            "stream {stream} refused a message: {} (code {}, error code {})",
            error.description, error.code, error.err_code
        )));
    }
    Ok(if ack.duplicate {
        Ack::Duplicate
    } else {
        Ack::Stored
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_are_read_without_and_with_the_json_parser() {
        let read = |s: &str| read_ack(s.as_bytes(), "S");
        assert_eq!(read(r#"{"stream":"S","seq":7}"#).unwrap(), Ack::Stored);
        assert_eq!(
            read(r#"{"stream":"S","seq":7,"duplicate":true}"#).unwrap(),
            Ack::Duplicate
        );
        // Not the usual form: the JSON parser reads it.
        assert_eq!(
            read(r#"{"stream":"S", "domain":"hub","seq":7,"duplicate":true}"#).unwrap(),
            Ack::Duplicate
        );
        assert!(read(r#"{"stream":"S","seq":}"#).is_err());
        assert_eq!(
            read(r#"{"stream":"S","seq":7,"duplicate":false}"#).unwrap(),
            Ack::Stored
        );
        let refused = read(
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            refused,
            "stream S refused a message: maximum messages exceeded (code 503, error code 10077)"
        );
        assert!(read("+OK")
            .unwrap_err()
            .to_string()
            .starts_with("unreadable acknowledgement"));
    }
}
