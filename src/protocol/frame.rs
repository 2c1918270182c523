//! Backend message framing: `tag: u8`, `len: i32` (counting itself), body.
//!
//! postgres-protocol's backend parser does not know `CopyBothResponse` (`W`), which is what
//! `START_REPLICATION` answers with, so the replication connection frames messages here and
//! decodes the few kinds it can meet: authentication, parameter status, simple-query results,
//! errors and notices, and the copy sub-protocol.
//!
//! [`parse`] is incremental: `Ok(None)` means "not a whole frame yet, read more".

use bytes::{Buf, Bytes, BytesMut};

use super::reader::Reader;
use super::DecodeError;

/// The largest frame we accept. PostgreSQL caps a single allocation at 1 GiB
/// (`MaxAllocSize`); a length beyond that is corruption, and refusing it avoids reserving
/// gigabytes on the say-so of four bytes.
pub const MAX_FRAME_LEN: usize = (1 << 30) + (1 << 20);

/// The most [`parse`] reserves at once for a frame still arriving.
const RESERVE_STEP: usize = 64 * 1024;

/// Backend message tags (PostgreSQL "Message Formats").
pub mod tag {
    /// Authentication request (subtype in the body).
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// CopyBothResponse (START_REPLICATION).
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// A backend message, bodies zero-copy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// Authentication succeeded.
    AuthenticationOk,
    /// The server wants the password in clear text.
    AuthenticationCleartextPassword,
    /// The server wants an MD5-hashed password with this salt.
    AuthenticationMd5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// The server offers these SASL mechanisms.
    AuthenticationSasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`.
        mechanisms: Vec<String>,
    },
    /// A SASL challenge.
    AuthenticationSaslContinue(Bytes),
    /// The SASL outcome (server signature).
    AuthenticationSaslFinal(Bytes),
    /// An authentication method we do not implement (Kerberos, GSS, SSPI...).
    AuthenticationUnsupported(i32),
    /// Cancellation key of this backend.
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Cancellation secret (its first four bytes on protocol 3.2).
        secret_key: i32,
    },
    /// A query finished; the command tag.
    CommandComplete(String),
    /// Copy in both directions started (replication streaming).
    CopyBothResponse,
    /// Copy from the server started.
    CopyOutResponse,
    /// Copy to the server started.
    CopyInResponse,
    /// A chunk of copy data (on a replication stream: one replication message).
    CopyData(Bytes),
    /// The sender's copy stream ended.
    CopyDone,
    /// A result row: one value per column, `None` for NULL.
    DataRow(Vec<Option<Bytes>>),
    /// An empty query string was sent.
    EmptyQueryResponse,
    /// The server reports an error.
    ErrorResponse(ErrorFields),
    /// The server does not support the requested minor protocol version or options.
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        newest_minor: i32,
    },
    /// A warning or notice.
    NoticeResponse(ErrorFields),
    /// A run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// The backend is idle, with this transaction status (`I`, `T`, `E`).
    ReadyForQuery(u8),
    /// The columns of the rows to follow (names only; the replication commands we run
    /// return text columns).
    RowDescription(Vec<String>),
}

/// The fields of an ErrorResponse or NoticeResponse that we keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `V`: severity, never localized (falls back to `S`).
    pub severity: String,
    /// `C`: SQLSTATE.
    pub code: String,
    /// `M`: primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
}

/// Takes one whole message off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (having reserved room for
/// the rest), so the caller reads more and calls again.
///
/// # Errors
/// A length below 4 or above [`MAX_FRAME_LEN`], an unknown tag, or a body that does not
/// match its tag.
pub fn parse(buf: &mut BytesMut) -> Result<Option<BackendMessage>, DecodeError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let body_len = usize::try_from(len)
        .ok()
        .filter(|l| (4..=MAX_FRAME_LEN).contains(l))
        .ok_or(DecodeError::BadLength {
            what: "frame length",
            value: i64::from(len),
        })?
        - 4;
    if buf.len() < 5 + body_len {
        // Grow towards the frame, but never reserve more than a step on the word of a
        // length header alone: a corrupt one must not cost a gigabyte up front.
        buf.reserve((5 + body_len - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    buf.advance(5);
    let body = buf.split_to(body_len).freeze();
    decode(tag, body).map(Some)
}

/// Checks that a stream which just ended left no partial frame behind: a clean end of
/// stream comes between frames; anything else is a torn frame.
///
/// # Errors
/// [`DecodeError::TornFrame`] when `buf` holds bytes of an unfinished frame.
pub fn check_eof(buf: &BytesMut) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TornFrame {
            buffered: buf.len(),
        })
    }
}

fn decode(tag: u8, body: Bytes) -> Result<BackendMessage, DecodeError> {
    let mut r = Reader::new(body);
    let msg = match tag {
        tag::AUTHENTICATION => return decode_authentication(r),
        tag::BACKEND_KEY_DATA => {
            let process_id = r.i32("backend process id")?;
            let secret_key = r.i32("backend secret key")?;
            // Protocol 3.2 allows longer keys; we never cancel, so ignore the rest.
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            }
        }
        tag::COMMAND_COMPLETE => BackendMessage::CommandComplete(r.cstr("command tag")?),
        tag::COPY_BOTH_RESPONSE => {
            skip_copy_response(&mut r)?;
            BackendMessage::CopyBothResponse
        }
        tag::COPY_OUT_RESPONSE => {
            skip_copy_response(&mut r)?;
            BackendMessage::CopyOutResponse
        }
        tag::COPY_IN_RESPONSE => {
            skip_copy_response(&mut r)?;
            BackendMessage::CopyInResponse
        }
        tag::COPY_DATA => return Ok(BackendMessage::CopyData(r.rest())),
        tag::COPY_DONE => BackendMessage::CopyDone,
        tag::DATA_ROW => {
            let n = r.count16("data row column count")?;
            // Each column needs at least its 4-byte length: bound the allocation by the body.
            if n > r.remaining() / 4 {
                return Err(DecodeError::BadLength {
                    what: "data row column count",
                    value: n as i64,
                });
            }
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                let len = r.i32("data row value length")?;
                if len == -1 {
                    values.push(None);
                    continue;
                }
                let len = usize::try_from(len).map_err(|_| DecodeError::BadLength {
                    what: "data row value length",
                    value: i64::from(len),
                })?;
                values.push(Some(r.bytes("data row value", len)?));
            }
            BackendMessage::DataRow(values)
        }
        tag::EMPTY_QUERY_RESPONSE => BackendMessage::EmptyQueryResponse,
        tag::ERROR_RESPONSE => BackendMessage::ErrorResponse(decode_fields(&mut r)?),
        tag::NOTICE_RESPONSE => BackendMessage::NoticeResponse(decode_fields(&mut r)?),
        tag::NEGOTIATE_PROTOCOL_VERSION => {
            let newest_minor = r.i32("newest minor protocol version")?;
            let _ = r.rest(); // names of unrecognized options: nothing to act on
            BackendMessage::NegotiateProtocolVersion { newest_minor }
        }
        tag::PARAMETER_STATUS => BackendMessage::ParameterStatus {
            name: r.cstr("parameter name")?,
            value: r.cstr("parameter value")?,
        },
        tag::READY_FOR_QUERY => BackendMessage::ReadyForQuery(r.u8("transaction status")?),
        tag::ROW_DESCRIPTION => {
            let n = r.count16("row description field count")?;
            // Each field is a name plus 18 bytes of attributes.
            if n > r.remaining() / 19 {
                return Err(DecodeError::BadLength {
                    what: "row description field count",
                    value: n as i64,
                });
            }
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.cstr("column name")?);
                r.bytes("column attributes", 18)?;
            }
            BackendMessage::RowDescription(names)
        }
        other => {
            return Err(DecodeError::UnknownTag {
                family: "backend message",
                tag: other,
            })
        }
    };
    r.finish("backend message")?;
    Ok(msg)
}

fn decode_authentication(mut r: Reader) -> Result<BackendMessage, DecodeError> {
    let msg = match r.i32("authentication type")? {
        0 => BackendMessage::AuthenticationOk,
        3 => BackendMessage::AuthenticationCleartextPassword,
        5 => {
            let salt = r.bytes("md5 salt", 4)?;
            BackendMessage::AuthenticationMd5Password {
                salt: [salt[0], salt[1], salt[2], salt[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let name = r.cstr("sasl mechanism")?;
                if name.is_empty() {
                    break;
                }
                mechanisms.push(name);
            }
            BackendMessage::AuthenticationSasl { mechanisms }
        }
        11 => return Ok(BackendMessage::AuthenticationSaslContinue(r.rest())),
        12 => return Ok(BackendMessage::AuthenticationSaslFinal(r.rest())),
        other => return Ok(BackendMessage::AuthenticationUnsupported(other)),
    };
    r.finish("authentication message")?;
    Ok(msg)
}

/// Copy{In,Out,Both}Response: overall format, then a format code per column.
fn skip_copy_response(r: &mut Reader) -> Result<(), DecodeError> {
    r.u8("copy format")?;
    let n = r.count16("copy column count")?;
    r.bytes("copy column formats", n.saturating_mul(2))?;
    Ok(())
}

fn decode_fields(r: &mut Reader) -> Result<ErrorFields, DecodeError> {
    let mut fields = ErrorFields::default();
    let mut localized_severity = String::new();
    loop {
        let code = r.u8("error field type")?;
        if code == 0 {
            break;
        }
        let bytes = r.cstr_bytes("error field")?;
        // Server messages may be in the server's encoding; never fail on them.
        let value = String::from_utf8_lossy(&bytes).into_owned();
        match code {
            b'V' => fields.severity = value,
            b'S' => localized_severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            b'D' => fields.detail = Some(value),
            b'H' => fields.hint = Some(value),
            _ => {}
        }
    }
    if fields.severity.is_empty() {
        fields.severity = localized_severity;
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let whole = frame(tag::COPY_DATA, b"hello");
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(parse(&mut part), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing consumed");
        }
        let mut all = whole.clone();
        assert_eq!(
            parse(&mut all),
            Ok(Some(BackendMessage::CopyData(Bytes::from_static(b"hello"))))
        );
        assert!(all.is_empty());
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut b = frame(tag::COPY_DONE, b"");
        b.extend_from_slice(&frame(tag::READY_FOR_QUERY, b"I"));
        assert_eq!(parse(&mut b), Ok(Some(BackendMessage::CopyDone)));
        assert_eq!(parse(&mut b), Ok(Some(BackendMessage::ReadyForQuery(b'I'))));
        assert_eq!(parse(&mut b), Ok(None));
    }

    #[test]
    fn bad_lengths_are_rejected_before_allocating() {
        for len in [-1i32, 0, 3, i32::MAX] {
            let mut b = BytesMut::from(&[b'd'][..]);
            b.extend_from_slice(&len.to_be_bytes());
            assert!(
                matches!(
                    parse(&mut b),
                    Err(DecodeError::BadLength {
                        what: "frame length",
                        ..
                    })
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn unknown_tags_are_typed_errors() {
        let mut b = frame(b'!', b"");
        assert_eq!(
            parse(&mut b),
            Err(DecodeError::UnknownTag {
                family: "backend message",
                tag: b'!'
            })
        );
    }

    #[test]
    fn torn_frame_differs_from_clean_eof() {
        assert_eq!(check_eof(&BytesMut::new()), Ok(()));
        let whole = frame(tag::COPY_DATA, b"abc");
        assert_eq!(
            check_eof(&BytesMut::from(&whole[..6])),
            Err(DecodeError::TornFrame { buffered: 6 })
        );
    }

    #[test]
    fn error_response_fields() {
        let mut b = frame(
            tag::ERROR_RESPONSE,
            b"SERREUR\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Hcreate it\0\0",
        );
        let Some(BackendMessage::ErrorResponse(f)) = parse(&mut b).unwrap() else {
            panic!("not an error response");
        };
        assert_eq!(f.severity, "ERROR");
        assert_eq!(f.code, "42704");
        assert_eq!(f.message, "replication slot \"x\" does not exist");
        assert_eq!(f.hint.as_deref(), Some("create it"));
        assert_eq!(f.detail, None);
    }

    #[test]
    fn copy_both_response_and_auth() {
        let mut b = frame(tag::COPY_BOTH_RESPONSE, &[0, 0, 0]);
        assert_eq!(parse(&mut b), Ok(Some(BackendMessage::CopyBothResponse)));
        let mut b = frame(
            tag::AUTHENTICATION,
            b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0",
        );
        assert_eq!(
            parse(&mut b),
            Ok(Some(BackendMessage::AuthenticationSasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            }))
        );
        let mut b = frame(tag::AUTHENTICATION, &[0, 0, 0, 5, 1, 2, 3, 4]);
        assert_eq!(
            parse(&mut b),
            Ok(Some(BackendMessage::AuthenticationMd5Password {
                salt: [1, 2, 3, 4]
            }))
        );
    }

    #[test]
    fn data_row_with_null_and_bad_counts() {
        let mut body = vec![0, 2];
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"ok");
        let mut b = frame(tag::DATA_ROW, &body);
        assert_eq!(
            parse(&mut b),
            Ok(Some(BackendMessage::DataRow(vec![
                None,
                Some(Bytes::from_static(b"ok"))
            ])))
        );
        let mut b = frame(tag::DATA_ROW, &[0x7F, 0xFF]);
        assert!(matches!(parse(&mut b), Err(DecodeError::BadLength { .. })));
        let mut b = frame(tag::DATA_ROW, &[0xFF, 0xFF]);
        assert!(matches!(parse(&mut b), Err(DecodeError::BadLength { .. })));
    }
}
