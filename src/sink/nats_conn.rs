//! The JetStream sink's publishing connection: a NATS connection of its own, speaking the
//! frames of [`nats_wire`](super::nats_wire).
//!
//! Opening it: TCP, the server's `INFO`, TLS when configured (`--tls`, a `tls://` URL) or
//! required by the server, `CONNECT` with the credentials ([`Auth`]: a token, a user and
//! password, or a creds file whose NKey signs the server's nonce; addresses, creds and TLS in
//! [`nats_handshake`](super::nats_handshake)), a subscription to the acknowledgements'
//! inbox, and a `PING` whose `PONG` says the server took all of it.
//!
//! Publishing writes a whole batch as one buffer of `HPUB` frames; message *n*'s
//! acknowledgement comes to `<inbox>.<n>`. A reader task reads everything the server
//! sends: it counts the acknowledged prefix (shared through an atomic, one wake-up per read
//! rather than per message), answers `PING`s (also while the driver is idle), and on
//! `-ERR`, a refusal, a no-responders status or the end of the connection records the
//! failure: the connection is then done, and the driver makes a new one — unless the `-ERR`
//! is one no new connection cures ([`refusal`](super::refusal): a permission, the payload
//! limit), which ends the run.
//!
//! A connection is used once and never reconnects by itself (see the module docs of
//! [`jetstream`](super::jetstream) for why): dropping it stops its reader and closes the
//! socket, so nothing written before is sent again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ack::{read_ack, Ack};
use super::error::SinkError;
use super::nats_handshake::{tls_upgrade, Creds, Endpoint, Stream, CONNECT_TIMEOUT};
use super::nats_wire::{self, Connect, ServerOp};
use super::outgoing::Outgoing;
use super::refusal::{oversized, refusal, Scope};

/// How the sink authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A token.
    Token(String),
    /// A user and password.
    UserPassword(String, String),
    /// A `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::UserPassword(user, _) => write!(f, "UserPassword({user:?}, ***)"),
            Auth::CredsFile(path) => write!(f, "CredsFile({path:?})"),
        }
    }
}

/// What opening a connection needs.
pub(super) struct Target<'a> {
    /// Server URL(s), comma-separated; tried in order.
    pub(super) url: &'a str,
    pub(super) auth: &'a Auth,
    pub(super) tls: bool,
    pub(super) name: &'a str,
    /// The stream (named in acknowledgements and messages).
    pub(super) stream: &'a str,
    /// What to say when no stream takes a message.
    pub(super) no_responders: String,
    /// The stream's subject filters, for the fix a permission refusal names.
    pub(super) subjects: String,
    /// Counts acknowledgements that said "duplicate".
    pub(super) duplicates: Arc<AtomicU64>,
}

/// The subscription id of the acknowledgements.
const ACK_SID: u64 = 1;

type Writer = Arc<tokio::sync::Mutex<WriteHalf<Stream>>>;

/// One publishing connection.
pub(super) struct Connection {
    writer: Writer,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    /// `<inbox>.`: message *n*'s acknowledgement subject is this and *n*.
    reply_prefix: String,
    /// Messages written (the next message's number).
    sent: u64,
    /// The acknowledged count seen last, and when it last grew (or the first publish after
    /// none was pending): the acknowledgement timeout runs from there.
    seen: u64,
    progress_at: Instant,
    /// A batch's frames (kept for its capacity).
    buf: Vec<u8>,
    /// The server's `max_payload` (`usize::MAX` when it names none).
    max_payload: usize,
}

/// What the reader task and the publisher share.
struct Shared {
    /// Messages written, so that the reader ignores numbers never sent.
    sent: AtomicU64,
    /// Messages acknowledged, from the first (a prefix).
    acked: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<SinkError>>,
    /// Raised on progress and on failure.
    notify: Notify,
}

impl Shared {
    fn fail(&self, error: SinkError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
        }
        self.failed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn failure(&self) -> SinkError {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        match &*failure {
            Some(SinkError::Config(m)) => SinkError::Config(m.clone()),
            Some(e) => SinkError::Unavailable(e.to_string()),
            None => lost(),
        }
    }
}

fn lost() -> SinkError {
    SinkError::Unavailable("the connection to the NATS server was lost".to_owned())
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The reader holds the other half of the socket: stopping it closes the connection.
        self.reader.abort();
    }
}

impl Connection {
    /// Connects to the first server of `target.url` that answers.
    pub(super) async fn open(target: Target<'_>) -> Result<Connection, SinkError> {
        let mut last = None;
        for url in target
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            match Connection::open_one(url, &target).await {
                Ok(conn) => return Ok(conn),
                Err(e @ SinkError::Config(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            SinkError::Config(format!(
                "--nats {:?}: no server address; use nats://host:4222",
                target.url
            ))
        }))
    }

    async fn open_one(url: &str, target: &Target<'_>) -> Result<Connection, SinkError> {
        let endpoint = Endpoint::parse(url)?;
        let unreachable = |e: &dyn std::fmt::Display| {
            SinkError::Unavailable(format!(
                "cannot reach the NATS server at {url} ({e}); check --nats and that \
                 nats-server is running (with -js)"
            ))
        };
        let addrs: Vec<_> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| {
                SinkError::Config(format!(
                    "--nats {url}: not a reachable server address ({e}); use nats://host:4222"
                ))
            })?
            .collect();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| unreachable(&"timed out"))?
            .map_err(|e| unreachable(&e))?;
        tcp.set_nodelay(true).map_err(|e| unreachable(&e))?;
        let mut stream: Stream = Box::new(tcp);
        let mut buf = Vec::with_capacity(64 * 1024);
        let info = match next(&mut stream, &mut buf, url).await? {
            ServerOp::Info(json) => nats_wire::read_info(json)
                .map_err(|e| SinkError::Unavailable(format!("{url}: {e}")))?,
            other => {
                return Err(SinkError::Unavailable(format!(
                    "{url}: expected INFO from the NATS server, got {other:?}"
                )))
            }
        };
        consume_first(&mut buf);
        if !info.headers {
            return Err(SinkError::Config(format!(
                "the NATS server at {url} does not support headers (NATS 2.2 or later needed)"
            )));
        }
        let tls = target.tls || endpoint.tls || info.tls_required;
        if tls {
            stream = tls_upgrade(stream, &endpoint.host, url).await?;
        }

        // The handshake: CONNECT, the inbox's SUB and a PING, answered by PONG once the
        // server took them (or -ERR when it refused the credentials).
        let creds;
        let mut connect = Connect::new(target.name, tls);
        match target.auth {
            Auth::None => {
                connect.user = endpoint.user.as_deref();
                connect.pass = endpoint.pass.as_deref();
                connect.auth_token = endpoint.token.as_deref();
            }
            Auth::Token(token) => connect.auth_token = Some(token),
            Auth::UserPassword(user, pass) => {
                connect.user = Some(user);
                connect.pass = Some(pass);
            }
            Auth::CredsFile(path) => {
                creds = Creds::read(path).await?;
                connect.jwt = Some(&creds.jwt);
                connect.sig = Some(creds.sign(info.nonce.as_deref().unwrap_or_default())?);
            }
        }
        let inbox = format!("_INBOX.{}", nuid::next());
        let mut out = Vec::new();
        nats_wire::write_connect(&mut out, &connect);
        nats_wire::write_sub(&mut out, &format!("{inbox}.*"), ACK_SID);
        out.extend_from_slice(b"PING\r\n");
        let handshake = async {
            stream.write_all(&out).await?;
            stream.flush().await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| unreachable(&"timed out"))?
            .map_err(|e| unreachable(&e))?;
        loop {
            let op = next(&mut stream, &mut buf, url).await?;
            match op {
                ServerOp::Pong => break,
                ServerOp::Err(text) => {
                    // Rejected credentials, or the inbox's SUB refused by the permissions.
                    let subjects = &target.subjects;
                    return Err(refusal(&text, &Scope { url, subjects }));
                }
                ServerOp::Ping => {
                    // A failed write shows as the next read's error.
                    if stream.write_all(b"PONG\r\n").await.is_ok() {
                        let _ = stream.flush().await;
                    }
                }
                ServerOp::Info(_) | ServerOp::Ok | ServerOp::Msg { .. } => {}
            }
            consume_first(&mut buf);
        }
        consume_first(&mut buf);

        let (read, write) = tokio::io::split(stream);
        let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
        let shared = Arc::new(Shared {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            notify: Notify::new(),
        });
        let reply_prefix = format!("{inbox}.");
        let reader = tokio::spawn(read_loop(Reader {
            read,
            buf,
            writer: Arc::clone(&writer),
            shared: Arc::clone(&shared),
            reply_prefix: reply_prefix.clone(),
            stream: target.stream.to_owned(),
            no_responders: target.no_responders.clone(),
            url: url.to_owned(),
            subjects: target.subjects.clone(),
            duplicates: Arc::clone(&target.duplicates),
        }));
        Ok(Connection {
            writer,
            shared,
            reader,
            reply_prefix,
            sent: 0,
            seen: 0,
            progress_at: Instant::now(),
            buf: Vec::new(),
            max_payload: info
                .max_payload
                .and_then(|m| usize::try_from(m).ok())
                .filter(|&m| m > 0)
                .unwrap_or(usize::MAX),
        })
    }

    /// Refuses `batch` before any of it is written when one of its messages is larger than
    /// the server's `max_payload`: the server would close the connection on it, and close
    /// every new one again.
    pub(super) fn check_sizes(&self, batch: &[Outgoing]) -> Result<(), SinkError> {
        for message in batch {
            let size = nats_wire::hpub_size(&message.id, &message.headers, &message.payload);
            if size > self.max_payload {
                return Err(oversized(message, size, self.max_payload));
            }
        }
        Ok(())
    }

    /// Writes `batch` as one buffer of frames; fails when the connection failed or the
    /// write does not finish within `timeout`.
    pub(super) async fn publish(
        &mut self,
        batch: Vec<Outgoing>,
        timeout: Duration,
    ) -> Result<(), SinkError> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.shared.failure());
        }
        if self.sent == self.shared.acked.load(Ordering::Acquire) {
            self.progress_at = Instant::now();
        }
        self.buf.clear();
        for message in &batch {
            nats_wire::write_hpub(
                &mut self.buf,
                &message.subject,
                &self.reply_prefix,
                self.sent,
                &message.id,
                &message.headers,
                &message.payload,
            );
            self.sent += 1;
        }
        drop(batch);
        // Before the frames leave: their acknowledgements may come at once.
        self.shared.sent.store(self.sent, Ordering::Release);
        let write = async {
            let mut writer = self.writer.lock().await;
            writer.write_all(&self.buf).await?;
            writer.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::Unavailable(format!("publishing failed: {e}"))),
            Err(_) => Err(SinkError::Unavailable(format!(
                "publishing stalled for {timeout:?} (the connection is down or the server \
                 does not read)"
            ))),
        }
    }

    /// Waits until at most `keep` messages are unacknowledged, or `timeout` passes without
    /// an acknowledgement; returns the acknowledged count.
    pub(super) async fn settle(
        &mut self,
        keep: usize,
        timeout: Duration,
        stream: &str,
    ) -> Result<u64, SinkError> {
        loop {
            let acked = self.shared.acked.load(Ordering::Acquire);
            if acked != self.seen {
                self.seen = acked;
                self.progress_at = Instant::now();
            }
            if self.sent - acked <= keep as u64 {
                return Ok(acked);
            }
            if self.shared.failed.load(Ordering::SeqCst) {
                return Err(self.shared.failure());
            }
            // `notify_one` keeps a permit when nobody waits: a wake-up between the checks
            // above and this wait is not lost.
            let deadline = self.progress_at + timeout;
            tokio::select! {
                () = self.shared.notify.notified() => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SinkError::Unavailable(format!(
                        "no acknowledgement from stream {stream} for {timeout:?} ({} messages \
                         waiting)", self.sent - acked
                    )));
                }
            }
        }
    }

    /// Messages written and not yet acknowledged.
    pub(super) fn in_flight(&self) -> u64 {
        self.sent - self.shared.acked.load(Ordering::Acquire).min(self.sent)
    }
}

/// Reads the next complete operation into `buf` (at its start), waiting at most
/// [`CONNECT_TIMEOUT`]; used while connecting, before the reader task runs.
async fn next<'b>(
    stream: &mut Stream,
    buf: &'b mut Vec<u8>,
    url: &str,
) -> Result<ServerOp<'b>, SinkError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        if nats_wire::next_op(buf)
            .map_err(|e| SinkError::Unavailable(format!("{url}: {e}")))?
            .is_some()
        {
            break;
        }
        let read = tokio::time::timeout_at(deadline, stream.read_buf(buf)).await;
        match read {
            Ok(Ok(0)) => {
                return Err(SinkError::Unavailable(format!(
                    "the NATS server at {url} closed the connection while connecting"
                )))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(SinkError::Unavailable(format!(
                    "reading from the NATS server at {url} failed: {e}"
                )))
            }
            Err(_) => {
                return Err(SinkError::Unavailable(format!(
                    "the NATS server at {url} did not answer within {CONNECT_TIMEOUT:?}"
                )))
            }
        }
    }
    let (op, _) = nats_wire::next_op(buf)
        .ok()
        .flatten()
        .expect("checked complete above");
    Ok(op)
}

/// Removes the operation [`next`] returned from the front of `buf`.
fn consume_first(buf: &mut Vec<u8>) {
    if let Ok(Some((_, used))) = nats_wire::next_op(buf) {
        buf.drain(..used);
    }
}

/// The reader task's state.
struct Reader {
    read: ReadHalf<Stream>,
    buf: Vec<u8>,
    writer: Writer,
    shared: Arc<Shared>,
    reply_prefix: String,
    stream: String,
    no_responders: String,
    /// The server's address and the stream's subjects, for the fix a refusal names.
    url: String,
    subjects: String,
    duplicates: Arc<AtomicU64>,
}

/// Reads until the connection fails, recording acknowledgements and answering `PING`s.
async fn read_loop(mut r: Reader) {
    let mut acks = Acks::default();
    let failure = loop {
        let (used, pings, error) = r.take_ops(&mut acks);
        r.buf.drain(..used);
        if pings > 0 {
            let mut writer = r.writer.lock().await;
            for _ in 0..pings {
                if writer.write_all(b"PONG\r\n").await.is_err() {
                    break;
                }
            }
            let _ = writer.flush().await;
        }
        if let Some(error) = error {
            break error;
        }
        if r.buf.capacity() - r.buf.len() < 16 * 1024 {
            r.buf.reserve(64 * 1024);
        }
        match r.read.read_buf(&mut r.buf).await {
            // A clean end, or one inside an operation (a torn frame).
            Ok(0) if r.buf.is_empty() => break lost(),
            Ok(0) => {
                break SinkError::Unavailable(format!(
                    "the connection to the NATS server ended inside an operation ({} bytes \
                     of it read)",
                    r.buf.len()
                ))
            }
            Ok(_) => {}
            Err(e) => break SinkError::Unavailable(format!("reading from the NATS server: {e}")),
        }
    };
    r.shared.fail(failure);
}

impl Reader {
    /// Handles the complete operations in the buffer: returns the bytes they took, the
    /// `PING`s to answer, and a failure, if any.
    fn take_ops(&mut self, acks: &mut Acks) -> (usize, usize, Option<SinkError>) {
        let (mut at, mut pings) = (0, 0);
        let before = acks.acked;
        let sent = self.shared.sent.load(Ordering::Acquire);
        let error = loop {
            let (op, used) = match nats_wire::next_op(&self.buf[at..]) {
                Ok(Some(op)) => op,
                Ok(None) => break None,
                Err(e) => break Some(SinkError::Unavailable(e.to_string())),
            };
            at += used;
            match op {
                ServerOp::Msg {
                    subject,
                    status,
                    payload,
                } => {
                    let Some(n) = nats_wire::ack_number(subject, &self.reply_prefix) else {
                        continue;
                    };
                    if status == Some(503) {
                        break Some(SinkError::Unavailable(self.no_responders.clone()));
                    }
                    match read_ack(payload, &self.stream) {
                        Ok(Ack::Stored) => {}
                        Ok(Ack::Duplicate) => {
                            self.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => break Some(e),
                    }
                    acks.ack(n, sent);
                }
                ServerOp::Ping => pings += 1,
                ServerOp::Pong | ServerOp::Ok | ServerOp::Info(_) => {}
                ServerOp::Err(text) => {
                    let (url, subjects) = (&self.url, &self.subjects);
                    break Some(refusal(&text, &Scope { url, subjects }));
                }
            }
        };
        if acks.acked != before {
            self.shared.acked.store(acks.acked, Ordering::Release);
            self.shared.notify.notify_one();
        }
        (at, pings, error)
    }
}

/// The acknowledged prefix: JetStream answers one connection's publishes to one stream in
/// order, but a prefix is all the driver may be told, whatever the order.
#[derive(Default)]
struct Acks {
    acked: u64,
    /// Acknowledgements that arrived ahead of an earlier one.
    early: BTreeSet<u64>,
}

impl Acks {
    /// Records the acknowledgement of message `n` (of `sent` written).
    fn ack(&mut self, n: u64, sent: u64) {
        if n == self.acked {
            self.acked += 1;
            while self.early.remove(&self.acked) {
                self.acked += 1;
            }
        } else if n > self.acked && n < sent {
            self.early.insert(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acknowledged_count_is_a_prefix() {
        let mut acks = Acks::default();
        acks.ack(1, 4);
        assert_eq!(acks.acked, 0);
        acks.ack(0, 4);
        assert_eq!(acks.acked, 2);
        acks.ack(9, 4); // never sent: ignored
        acks.ack(3, 4);
        acks.ack(2, 4);
        assert_eq!(acks.acked, 4);
        assert!(acks.early.is_empty());
    }
}
