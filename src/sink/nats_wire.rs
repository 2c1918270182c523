//! The NATS client protocol, as much of it as the JetStream sink speaks on its own
//! connection: the frames it writes (`CONNECT`, `SUB`, `HPUB`, `PING`, `PONG`) and the
//! operations it reads (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`). Pure: bytes
//! in, bytes or [`ServerOp`]s out; the connection around it is `sink/nats_conn.rs`.
//!
//! Why the sink writes its frames itself: a whole batch becomes one buffer and one write,
//! where the NATS client builds a hash map of headers per message, frames each message on
//! its own and passes it through a channel to its connection task (about a third of the
//! publisher's instructions per record; BENCHMARKS.md, the sink section).

// With `fuzzing` alone (the fuzz target, without the `jetstream` crates) only the reader is
// used.
#![cfg_attr(not(feature = "jetstream"), allow(dead_code))]

use serde::{Deserialize, Serialize};

use super::outgoing::Headers;
use crate::decode::escape::decimal;

/// The longest control line read: an `INFO` listing many cluster URLs is the longest.
const MAX_LINE: usize = 1 << 20;
/// The largest message read (the sink reads acknowledgements of about 40 bytes).
const MAX_MESSAGE: usize = 64 << 20;

/// The server sent something this codec cannot read; the connection is of no further use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable NATS protocol from the server: {0}")]
pub struct WireError(String);

/// The `INFO` fields the sink uses.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Info {
    #[serde(default)]
    pub(super) tls_required: bool,
    #[serde(default)]
    pub(super) headers: bool,
    /// Present when the server wants a signature (creds / nkey authentication).
    pub(super) nonce: Option<String>,
    /// The largest message (headers and payload) the server takes; a bigger one is refused
    /// with `-ERR 'Maximum Payload Violation'` and the connection closed.
    /// Absent or not positive: no limit the sink knows of.
    #[serde(default)]
    pub(super) max_payload: Option<i64>,
}

/// Reads an `INFO` operation's JSON.
pub(super) fn read_info(json: &[u8]) -> Result<Info, WireError> {
    serde_json::from_slice(json).map_err(|e| WireError(format!("INFO: {e}")))
}

/// The `CONNECT` options: headers and no-responders on (a publish that no stream takes is
/// answered at once with status 503), no `+OK` per frame, no strict checks; at most one
/// credential.
#[derive(Debug, Serialize)]
pub(super) struct Connect<'a> {
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    name: &'a str,
    lang: &'static str,
    version: &'static str,
    protocol: u8,
    echo: bool,
    headers: bool,
    no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) auth_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pass: Option<&'a str>,
    /// A user JWT (creds file) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) jwt: Option<&'a str>,
    /// ... and the server's nonce signed with the user's NKey, base64url without padding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sig: Option<String>,
}

impl<'a> Connect<'a> {
    pub(super) fn new(name: &'a str, tls: bool) -> Connect<'a> {
        Connect {
            verbose: false,
            pedantic: false,
            tls_required: tls,
            name,
            lang: "rust",
            version: env!("CARGO_PKG_VERSION"),
            protocol: 1,
            echo: false,
            headers: true,
            no_responders: true,
            auth_token: None,
            user: None,
            pass: None,
            jwt: None,
            sig: None,
        }
    }
}

/// Appends `CONNECT {…}\r\n`.
pub(super) fn write_connect(buf: &mut Vec<u8>, connect: &Connect<'_>) {
    buf.extend_from_slice(b"CONNECT ");
    serde_json::to_writer(&mut *buf, connect).expect("writing JSON into a Vec cannot fail");
    buf.extend_from_slice(b"\r\n");
}

/// Appends `SUB <subject> <sid>\r\n`.
pub(super) fn write_sub(buf: &mut Vec<u8>, subject: &str, sid: u64) {
    buf.extend_from_slice(b"SUB ");
    buf.extend_from_slice(subject.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(decimal(sid, &mut [0; 20]));
    buf.extend_from_slice(b"\r\n");
}

/// The `Nats-Msg-Id` header: JetStream's de-duplication id.
const MSG_ID: &str = "Nats-Msg-Id";
/// A header block's first line.
const VERSION: &[u8] = b"NATS/1.0\r\n";

/// The header fields of an `HPUB`: the de-duplication id, then `headers`.
fn fields<'h>(
    id: &'h str,
    headers: &'h Headers,
) -> impl Iterator<Item = (&'static str, &'h str)> + 'h {
    std::iter::once((MSG_ID, id)).chain(headers.iter())
}

/// The bytes of an `HPUB`'s header block (`NATS/1.0`, the fields, the blank line).
fn header_len(id: &str, headers: &Headers) -> usize {
    // name ": " value "\r\n" per header, and the blank line ending them.
    VERSION.len()
        + fields(id, headers)
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum::<usize>()
        + 2
}

/// The size of the message [`write_hpub`] frames, as the server counts it against its
/// `max_payload`: header block and payload.
pub(super) fn hpub_size(id: &str, headers: &Headers, payload: &[u8]) -> usize {
    header_len(id, headers) + payload.len()
}

/// Appends one `HPUB` frame: `subject`, its acknowledgement to `<reply_prefix><n>`, the
/// headers `Nats-Msg-Id: <id>` and `headers`, and `payload`.
///
/// A header value cannot span lines: `\r` and `\n` in one become spaces (as the NATS client
/// does), so a table named with a line break cannot break the framing.
pub(super) fn write_hpub(
    buf: &mut Vec<u8>,
    subject: &str,
    reply_prefix: &str,
    n: u64,
    id: &str,
    headers: &Headers,
    payload: &[u8],
) {
    let header_len = header_len(id, headers);
    let total_len = header_len + payload.len();
    buf.reserve(subject.len() + reply_prefix.len() + 60 + total_len);
    buf.extend_from_slice(b"HPUB ");
    buf.extend_from_slice(subject.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(reply_prefix.as_bytes());
    buf.extend_from_slice(decimal(n, &mut [0; 20]));
    buf.push(b' ');
    buf.extend_from_slice(decimal(header_len as u64, &mut [0; 20]));
    buf.push(b' ');
    buf.extend_from_slice(decimal(total_len as u64, &mut [0; 20]));
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(VERSION);
    for (name, value) in fields(id, headers) {
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        let at = buf.len();
        buf.extend_from_slice(value.as_bytes());
        for b in &mut buf[at..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(payload);
    buf.extend_from_slice(b"\r\n");
}

/// One operation from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`: the JSON (see `read_info`).
    Info(&'a [u8]),
    /// `MSG` or `HMSG`: a message on a subscription.
    Msg {
        subject: &'a [u8],
        /// The status of a header block that has one (`NATS/1.0 503` = no responders).
        status: Option<u16>,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    /// `-ERR 'text'`: the text.
    Err(String),
}

/// Reads the operation at the start of `buf`: `Ok(None)` until all of it has arrived, else
/// the operation and how many bytes it took.
///
/// # Errors
/// Anything that is not the NATS protocol (an unknown operation, bad numbers, a message
/// not ended by `\r\n`, a line or message past the limits); never panics.
pub fn next_op(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, WireError> {
    let too_long = || Err(WireError("a control line longer than 1 MiB".to_owned()));
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return too_long();
        }
        return Ok(None);
    };
    // Checked here too, so that a long line is refused however it arrives (whole, or in
    // pieces the first of which is already too long).
    if end > MAX_LINE {
        return too_long();
    }
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let body = end + 1;
    let (op, rest) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let is = |name: &[u8]| op.eq_ignore_ascii_case(name);
    let simple = |op| Ok(Some((op, body)));
    if is(b"MSG") || is(b"HMSG") {
        // At most five arguments (subject, sid, reply, header size, total size): kept in
        // place, as an acknowledgement comes for every message.
        let mut args: [&[u8]; 5] = [&[]; 5];
        let mut count = 0;
        for arg in rest
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|a| !a.is_empty())
        {
            if count == args.len() {
                return Err(WireError(String::from_utf8_lossy(line).into_owned()));
            }
            args[count] = arg;
            count += 1;
        }
        let args = &args[..count];
        let with_headers = is(b"HMSG");
        let sizes = if with_headers { 2 } else { 1 };
        if args.len() != 2 + sizes && args.len() != 3 + sizes {
            return Err(WireError(String::from_utf8_lossy(line).into_owned()));
        }
        let number = |a: &[u8]| -> Result<usize, WireError> {
            digits(a)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= MAX_MESSAGE)
                .ok_or_else(|| WireError(format!("bad size in {}", String::from_utf8_lossy(line))))
        };
        let total = number(args[args.len() - 1])?;
        let header_len = if with_headers {
            number(args[args.len() - 2])?
        } else {
            0
        };
        if header_len > total {
            return Err(WireError(format!(
                "header size past the message in {}",
                String::from_utf8_lossy(line)
            )));
        }
        let Some(message) = buf.get(body..body + total + 2) else {
            return Ok(None);
        };
        if &message[total..] != b"\r\n" {
            return Err(WireError("a message not ended by CRLF".to_owned()));
        }
        let status = if with_headers {
            status(&message[..header_len])?
        } else {
            None
        };
        return Ok(Some((
            ServerOp::Msg {
                subject: args[0],
                status,
                payload: &message[header_len..total],
            },
            body + total + 2,
        )));
    }
    if is(b"PING") {
        simple(ServerOp::Ping)
    } else if is(b"PONG") {
        simple(ServerOp::Pong)
    } else if is(b"+OK") {
        simple(ServerOp::Ok)
    } else if is(b"-ERR") {
        let text = String::from_utf8_lossy(rest);
        let text = text.trim().trim_matches('\'').to_owned();
        simple(ServerOp::Err(text))
    } else if is(b"INFO") {
        simple(ServerOp::Info(rest))
    } else {
        Err(WireError(format!(
            "unknown operation {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        )))
    }
}

/// Reads the server's operations from a stream arriving in `chunks`, the way a connection
/// does (append what arrived, take every complete operation, wait for more): each
/// operation's `Debug` form, then how many bytes were left incomplete at the end, or the
/// error that ended the reading. However the bytes are split, the answer is the same.
#[cfg(any(test, feature = "fuzzing"))]
pub fn read_chunks<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> (Vec<String>, Result<usize, WireError>) {
    let mut ops = Vec::new();
    let mut buf = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match next_op(&buf) {
                Ok(Some((op, used))) => {
                    ops.push(format!("{op:?}"));
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => return (ops, Err(e)),
            }
        }
    }
    (ops, Ok(buf.len()))
}

/// The status code of a header block (`NATS/1.0 503\r\n…`), if it has one.
fn status(headers: &[u8]) -> Result<Option<u16>, WireError> {
    let Some(rest) = headers.strip_prefix(b"NATS/1.0") else {
        return Err(WireError("a header block without NATS/1.0".to_owned()));
    };
    let first = rest.split(|&b| b == b'\r').next().unwrap_or_default();
    let code = first.trim_ascii_start();
    let digits = code.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Ok(None);
    }
    std::str::from_utf8(&code[..digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| WireError("a bad status code".to_owned()))
}

/// The number `n` of an acknowledgement's subject `<prefix><n>`.
pub(super) fn ack_number(subject: &[u8], prefix: &str) -> Option<u64> {
    digits(subject.strip_prefix(prefix.as_bytes())?)
}

/// A decimal number of 1 to 19 digits (below `u64::MAX`), nothing else.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn headers(table: Option<&str>) -> Headers {
        Headers {
            op: "insert",
            table: table.map(Arc::from),
            event_id: "1/2/3".to_owned(),
            commit_lsn: "0/16B3748".to_owned(),
        }
    }

    #[test]
    fn hpub_frames_count_their_header_and_total_bytes() {
        let mut buf = Vec::new();
        write_hpub(
            &mut buf,
            "cs.public.t",
            "_INBOX.x.",
            7,
            "g:1/2/3",
            &headers(Some("public.t")),
            b"{\"a\":1}",
        );
        let header = "NATS/1.0\r\nNats-Msg-Id: g:1/2/3\r\nPg-Op: insert\r\nPg-Table: public.t\r\n\
                      Pg-Event-Id: 1/2/3\r\nPg-Commit-Lsn: 0/16B3748\r\n\r\n";
        let expected = format!(
            "HPUB cs.public.t _INBOX.x.7 {} {}\r\n{header}{{\"a\":1}}\r\n",
            header.len(),
            header.len() + 7
        );
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
        assert_eq!(
            hpub_size("g:1/2/3", &headers(Some("public.t")), b"{\"a\":1}"),
            header.len() + 7
        );

        // No table header on logical messages; line breaks in a value become spaces.
        let mut buf = Vec::new();
        write_hpub(&mut buf, "s", "r.", 0, "a\r\nb", &headers(None), b"");
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("Nats-Msg-Id: a  b\r\n"), "{text}");
        assert!(!text.contains("Pg-Table"), "{text}");
        let (line, rest) = text.split_once("\r\n").unwrap();
        let sizes: Vec<usize> = line
            .split(' ')
            .skip(3)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(sizes[0], sizes[1]);
        assert_eq!(rest.len(), sizes[1] + 2);
    }

    #[test]
    fn connect_and_sub_lines() {
        let mut buf = Vec::new();
        let mut connect = Connect::new("pub", false);
        connect.user = Some("u");
        connect.pass = Some("p");
        write_connect(&mut buf, &connect);
        write_sub(&mut buf, "_INBOX.x.*", 1);
        let text = String::from_utf8(buf).unwrap();
        let (connect, sub) = text.split_once("\r\n").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(connect.strip_prefix("CONNECT ").unwrap()).unwrap();
        assert_eq!(json["headers"], true);
        assert_eq!(json["no_responders"], true);
        assert_eq!(json["verbose"], false);
        assert_eq!(json["pedantic"], false);
        assert_eq!(json["user"], "u");
        assert_eq!(json["pass"], "p");
        assert!(json.get("auth_token").is_none());
        assert_eq!(sub, "SUB _INBOX.x.* 1\r\n");
    }

    /// Every operation, whole and cut at every byte: a cut one is "not yet", never wrong.
    #[test]
    fn operations_are_read_whole_and_wait_when_cut() {
        let ack = br#"{"stream":"S","seq":7}"#;
        let cases: Vec<(Vec<u8>, ServerOp<'static>)> = vec![
            (
                [&b"MSG _INBOX.x.3 1 22\r\n"[..], ack, b"\r\n"].concat(),
                ServerOp::Msg {
                    subject: b"_INBOX.x.3",
                    status: None,
                    payload: ack,
                },
            ),
            (
                b"HMSG _INBOX.x.4 1 _R 16 16\r\nNATS/1.0 503\r\n\r\n\r\n".to_vec(),
                ServerOp::Msg {
                    subject: b"_INBOX.x.4",
                    status: Some(503),
                    payload: b"",
                },
            ),
            (
                b"HMSG s 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n".to_vec(),
                ServerOp::Msg {
                    subject: b"s",
                    status: None,
                    payload: b"hi",
                },
            ),
            (b"PING\r\n".to_vec(), ServerOp::Ping),
            (b"pong\r\n".to_vec(), ServerOp::Pong),
            (b"+OK\r\n".to_vec(), ServerOp::Ok),
            (
                b"-ERR 'Authorization Violation'\r\n".to_vec(),
                ServerOp::Err("Authorization Violation".to_owned()),
            ),
            (
                b"INFO {\"headers\":true}\r\n".to_vec(),
                ServerOp::Info(b"{\"headers\":true}"),
            ),
        ];
        for (bytes, op) in cases {
            let mut with_next = bytes.clone();
            with_next.extend_from_slice(b"PING\r\n");
            assert_eq!(
                next_op(&with_next).unwrap(),
                Some((op, bytes.len())),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            for cut in 0..bytes.len() {
                assert_eq!(next_op(&bytes[..cut]).unwrap(), None, "cut at {cut}");
            }
        }
        let info =
            read_info(br#"{"server_id":"x","headers":true,"nonce":"abc","tls_required":true}"#)
                .unwrap();
        assert!(info.headers && info.tls_required);
        assert_eq!(info.nonce.as_deref(), Some("abc"));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        for bad in [
            &b"HELLO\r\n"[..],
            b"MSG a 1\r\n",
            b"MSG a 1 x\r\n",
            b"MSG a 1 -1\r\n",
            b"MSG a 1 99999999999999999999999\r\n",
            b"MSG a 1 2\r\nabcd",
            b"HMSG a 1 5 2\r\n",
            b"HMSG a 1 4 4\r\nXATS\r\n",
            b"HMSG a 1 r 0 0 0\r\n",
            b"\r\n",
            b"\xff\xfe\r\n",
        ] {
            assert!(next_op(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(next_op(&vec![b'x'; MAX_LINE + 1]).is_err());
        assert!(read_info(b"{").is_err());
        // Arbitrary bytes: an answer or an error, whatever they are.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"MSG HPING 12\r\n -+OKERR";
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            let _ = next_op(&bytes);
        }
    }

    /// A stream read in pieces gives what it gives read whole: the operations, the error,
    /// the incomplete rest (the fuzz target `nats_wire` does this with arbitrary bytes).
    #[test]
    fn splitting_never_changes_what_is_read() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let pieces: [&[u8]; 9] = [
            b"PING\r\n",
            b"MSG _INBOX.x.3 1 2\r\nok\r\n",
            b"HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            b"-ERR 'Permissions Violation for Publish to \"a\"'\r\n",
            b"INFO {}\n",
            b"+OK\r\n",
            b"MSG a 1 9",
            b"\r\n",
            b"x",
        ];
        for _ in 0..2_000 {
            let stream: Vec<u8> = (0..next(8))
                .flat_map(|_| pieces[next(pieces.len() as u64) as usize].iter().copied())
                .collect();
            let whole = read_chunks([&stream[..]]);
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at((next(7) as usize + 1).min(rest.len()));
                chunks.push(chunk);
                rest = after;
            }
            assert_eq!(
                read_chunks(chunks),
                whole,
                "{}",
                String::from_utf8_lossy(&stream)
            );
        }
        // A line too long is refused whether it arrives whole or the first piece already
        // has more than the limit.
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.extend_from_slice(b"\r\n");
        let whole = read_chunks([&long[..]]);
        assert!(whole.1.is_err());
        assert_eq!(read_chunks(long.chunks(MAX_LINE / 2 + 1)), whole);
    }

    #[test]
    fn acknowledgement_numbers() {
        assert_eq!(ack_number(b"_INBOX.x.17", "_INBOX.x."), Some(17));
        assert_eq!(ack_number(b"_INBOX.x.", "_INBOX.x."), None);
        assert_eq!(ack_number(b"_INBOX.y.1", "_INBOX.x."), None);
        assert_eq!(ack_number(b"_INBOX.x.1a", "_INBOX.x."), None);
        assert_eq!(
            ack_number(b"_INBOX.x.99999999999999999999", "_INBOX.x."),
            None
        );
    }
}
