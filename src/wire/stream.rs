//! The replication connection while streaming (CopyBoth mode).
//!
//! ```text
//!   server (walsender)                         client (ReplicationStream)
//!   ── CopyData 'w' XLogData ───────────────▶  next() returns it
//!   ── CopyData 'k' keepalive ──────────────▶  next() records wal_end; if reply requested,
//!   ◀── CopyData 'r' status update ─────────   answers at once
//!   ◀── CopyData 'r' status update ─────────   every status_interval (from next()), or
//!                                              whenever send_status_update() is called
//!   ◀── CopyDone ───────────────────────────   stop()
//!   ── CopyDone, CommandComplete, ReadyForQuery ▶ drained; then Terminate
//! ```
//!
//! ## Staying alive while not reading
//!
//! The walsender ends a connection whose client has been silent for `wal_sender_timeout`
//! (60 s by default). What counts is the time since it last *received* a message from us,
//! not whether we read what it sends: when our socket's receive buffer fills, the
//! walsender simply blocks on sending, and its timeout check still looks only at our last
//! reply. So a consumer that stops calling [`ReplicationStream::next`] (say, its bounded
//! queue is full) keeps the stream alive by calling
//! [`ReplicationStream::send_status_update`] more often than the timeout; that method
//! never needs to read first. A keepalive that asks for a reply is answered as soon as
//! `next()` reads it.
//!
//! ## Positions
//!
//! `write`, `flush` and `apply` only move forward: a lower value than already reported is
//! ignored, so feedback from out-of-order acknowledgements cannot move the slot back. For
//! a logical slot the server acts on `flush` alone: it becomes the slot's
//! `confirmed_flush_lsn`, and WAL before it may be recycled. All three start at 0/0, which
//! the server ignores, so nothing is confirmed until the application says so. `write` is
//! reported as at least `flush`.
//!
//! See the PostgreSQL docs, "Streaming Replication Protocol" (`START_REPLICATION`, the
//! XLogData / keepalive / standby status update messages).

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::time::Instant;

use super::connection::{replication_ident, ReplicationConnection};
use super::error_response::command_error;
use crate::error::{Error, Kind, Result};
use crate::lsn::Lsn;
use crate::protocol::frame::BackendMessage;
use crate::protocol::replication::{self, ReplicationMessage, StandbyStatusUpdate, XLogData};
use crate::quote;
use crate::version::MIN_SERVER_VERSION_NUM;

/// How often a status update is sent by default: well inside the default
/// `wal_sender_timeout` (60 s), as pg_recvlogical does.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// How long [`ReplicationStream::stop`] waits for the server to finish the copy.
const STOP_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Options of `START_REPLICATION` with pgoutput, and of the stream it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    pub(crate) publications: Vec<String>,
    pub(crate) messages: bool,
    pub(crate) streaming: bool,
    pub(crate) max_proto_version: Option<u32>,
    pub(crate) status_interval: Duration,
    /// Silence from the server after which the connection is taken for dead; set from
    /// the server's `wal_sender_timeout` when replication starts.
    pub(crate) receive_timeout: Option<Duration>,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            publications: Vec::new(),
            messages: true,
            streaming: true,
            max_proto_version: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
            receive_timeout: None,
        }
    }
}

impl StartOptions {
    /// No publications yet; logical messages on; streaming of large transactions on; the
    /// highest protocol version the server supports; status updates every 10 s.
    pub fn new() -> StartOptions {
        StartOptions::default()
    }

    /// Adds a publication whose tables are streamed (at least one is needed).
    pub fn publication(mut self, name: impl Into<String>) -> StartOptions {
        self.publications.push(name.into());
        self
    }

    /// Whether `pg_logical_emit_message` messages are sent (`messages 'true'`).
    pub fn messages(mut self, yes: bool) -> StartOptions {
        self.messages = yes;
        self
    }

    /// Whether in-progress transactions are streamed (`streaming 'on'`, protocol ≥ 2).
    pub fn streaming(mut self, yes: bool) -> StartOptions {
        self.streaming = yes;
        self
    }

    /// Caps the pgoutput protocol version (1–4) below what the server supports.
    pub fn max_proto_version(mut self, version: u32) -> StartOptions {
        self.max_proto_version = Some(version.clamp(1, 4));
        self
    }

    /// How often [`ReplicationStream::next`] sends a status update on its own. Starting
    /// replication shortens it to a third of the server's `wal_sender_timeout` when that is
    /// less ([`ReplicationStream::status_interval`] tells the interval in use).
    pub fn status_interval(mut self, every: Duration) -> StartOptions {
        self.status_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The pgoutput protocol version to ask for: the highest the server supports (1 up to
    /// 13, 2 on 14, 3 on 15, 4 on 16 and later), capped by
    /// [`StartOptions::max_proto_version`].
    pub fn effective_proto_version(&self, server_version_num: u32) -> u32 {
        let highest = match server_version_num {
            v if v >= 160_000 => 4,
            v if v >= 150_000 => 3,
            v if v >= 140_000 => 2,
            _ => 1,
        };
        self.max_proto_version
            .map_or(highest, |cap| highest.min(cap))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The server ended the copy and the connection is back to idle.
    Ended,
    /// An error ended the stream; the connection is unusable.
    Failed,
}

/// A replication connection in CopyBoth mode, streaming pgoutput messages.
///
/// [`ReplicationStream::next`] answers a keepalive that asks for a reply at once and sends
/// a status update every status interval; [`ReplicationStream::send_status_update`] sends
/// one at any time, and the positions it reports are set with
/// [`ReplicationStream::set_flush_position`].
pub struct ReplicationStream {
    conn: ReplicationConnection,
    proto_version: u32,
    server_wal_end: Lsn,
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    status_interval: Duration,
    next_status: Instant,
    state: State,
    receive_timeout: Option<Duration>,
    /// When a message last arrived (or listening resumed after a pause).
    last_heard: Instant,
    /// When `next()` was last entered.
    last_entered: Instant,
}

impl ReplicationStream {
    pub(crate) fn new(
        conn: ReplicationConnection,
        proto_version: u32,
        start: Lsn,
        options: &StartOptions,
    ) -> ReplicationStream {
        ReplicationStream {
            conn,
            proto_version,
            server_wal_end: start,
            write: Lsn::ZERO,
            flush: Lsn::ZERO,
            apply: Lsn::ZERO,
            status_interval: options.status_interval,
            next_status: Instant::now() + options.status_interval,
            state: State::Streaming,
            receive_timeout: options.receive_timeout,
            last_heard: Instant::now(),
            last_entered: Instant::now(),
        }
    }

    /// The next XLogData message (on a pgoutput stream, one pgoutput message), or `None`
    /// once the server has ended the copy cleanly.
    ///
    /// Keepalives are handled inside: their WAL end is remembered
    /// ([`ReplicationStream::server_wal_end`]) and one asking for a reply is answered at
    /// once. A status update is also sent whenever the status interval has passed.
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!`) loses no message; a
    /// status update interrupted half-written is completed by the next call.
    ///
    /// # Errors
    /// [`Error::is_transient`] when the connection is lost or the server ends the
    /// walsender (e.g. `pg_terminate_backend`, shutdown); protocol errors for malformed
    /// messages. After an error the stream is finished: reconnect.
    pub async fn next(&mut self) -> Result<Option<XLogData>> {
        match self.state {
            State::Streaming => {}
            State::Ended => return Ok(None),
            State::Failed => {
                return Err(Error::new(
                    Kind::Closed,
                    format!(
                        "the replication stream from {} already failed; reconnect",
                        self.peer()
                    ),
                ))
            }
        }
        let result = self.next_inner().await;
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    async fn next_inner(&mut self) -> Result<Option<XLogData>> {
        let now = Instant::now();
        if let Some(limit) = self.receive_timeout {
            // Not called for a while (the caller's queue was full): that silence was ours,
            // not the server's.
            if now.duration_since(self.last_entered) > limit / 4 {
                self.last_heard = now;
            }
        }
        self.last_entered = now;
        loop {
            if self.conn.transport.has_unsent() {
                self.conn.transport.flush().await?;
            }
            if Instant::now() >= self.next_status {
                // Silent past a status interval: ask for a reply, so that a live server
                // always has something to say before the receive timeout.
                let silent = self.last_heard.elapsed() >= self.status_interval;
                self.send_status_update(silent).await?;
            }
            let wake = match self.receive_timeout {
                Some(limit) => self.next_status.min(self.last_heard + limit),
                None => self.next_status,
            };
            let Some(msg) = self.conn.transport.recv_until(wake).await? else {
                if let Some(limit) = self.receive_timeout {
                    if self.last_heard.elapsed() >= limit {
                        return Err(self.presumed_dead(limit));
                    }
                }
                continue; // a status update is due
            };
            self.last_heard = Instant::now();
            match msg {
                BackendMessage::CopyData(body) => match replication::parse(body).map_err(|e| {
                    Error::with_source(
                        Kind::Protocol,
                        format!("malformed replication message from {}", self.peer()),
                        e,
                    )
                })? {
                    ReplicationMessage::XLogData(data) => {
                        self.server_wal_end = self.server_wal_end.max(data.wal_end);
                        return Ok(Some(data));
                    }
                    ReplicationMessage::PrimaryKeepalive(keepalive) => {
                        self.server_wal_end = self.server_wal_end.max(keepalive.wal_end);
                        if keepalive.reply_requested {
                            self.send_status_update(false).await?;
                        }
                    }
                },
                BackendMessage::CopyDone => {
                    // The server ended the copy (e.g. the end of a timeline). Acknowledge,
                    // and read up to ReadyForQuery so the connection is idle again.
                    self.conn.transport.queue(|b| {
                        frontend::copy_done(b);
                        Ok(())
                    })?;
                    self.conn.transport.flush().await?;
                    self.drain().await?;
                    self.state = State::Ended;
                    return Ok(None);
                }
                BackendMessage::ErrorResponse(fields) => {
                    return Err(command_error(self.peer(), "START_REPLICATION", fields));
                }
                BackendMessage::NoticeResponse(fields) => {
                    tracing::info!(server = self.peer(), "{}", fields.message);
                }
                BackendMessage::ParameterStatus { name, value } => {
                    self.conn.parameters.insert(name, value);
                }
                other => {
                    return Err(Error::protocol(format!(
                        "server {} sent {other:?} during replication",
                        self.peer()
                    )))
                }
            }
        }
    }

    /// The error for a server silent past the receive timeout although asked to reply: the
    /// connection is taken for dead (a network that drops everything and sends no reset),
    /// so the caller reconnects instead of waiting forever.
    fn presumed_dead(&self, limit: Duration) -> Error {
        Error::new(
            Kind::Io,
            format!(
                "no message from server {} for {:?} although replies were asked for (the \
                 limit is twice its wal_sender_timeout); the connection is presumed dead",
                self.peer(),
                limit
            ),
        )
    }

    /// Sends a standby status update now with the current write / flush / apply positions.
    ///
    /// Usable at any time, without reading first: this is how a consumer that is not
    /// calling [`ReplicationStream::next`] keeps the walsender from timing out, which counts
    /// from the last message it received. `reply_requested` asks the server to answer with a
    /// keepalive.
    /// Also restarts the periodic interval.
    ///
    /// # Errors
    /// [`Error::is_transient`] i/o errors when the connection is gone.
    pub async fn send_status_update(&mut self, reply_requested: bool) -> Result<()> {
        if self.state == State::Failed {
            return Err(Error::new(
                Kind::Closed,
                format!(
                    "the replication stream from {} already failed; reconnect",
                    self.peer()
                ),
            ));
        }
        if self.state == State::Ended {
            return Ok(());
        }
        let update = StandbyStatusUpdate {
            write: self.write.max(self.flush),
            flush: self.flush,
            apply: self.apply,
            client_time: replication::system_to_pg_time(SystemTime::now()),
            reply_requested,
        };
        let mut payload = BytesMut::with_capacity(StandbyStatusUpdate::ENCODED_LEN);
        update.encode(&mut payload);
        self.conn.transport.queue(|b| {
            frontend::CopyData::new(payload.freeze())?.write(b);
            Ok(())
        })?;
        self.next_status = Instant::now() + self.status_interval;
        let sent = self.conn.transport.flush().await;
        if sent.is_err() {
            self.state = State::Failed;
        }
        sent
    }

    /// Raises the flush position reported to the server (the slot's confirmed position).
    /// Lower values than already set are ignored. Sent with the next status update.
    pub fn set_flush_position(&mut self, lsn: Lsn) {
        self.flush = self.flush.max(lsn);
    }

    /// Raises the write position reported to the server; lower values are ignored.
    pub fn set_write_position(&mut self, lsn: Lsn) {
        self.write = self.write.max(lsn);
    }

    /// Raises the apply position reported to the server; lower values are ignored.
    pub fn set_apply_position(&mut self, lsn: Lsn) {
        self.apply = self.apply.max(lsn);
    }

    /// The flush position that will be reported.
    pub fn flush_position(&self) -> Lsn {
        self.flush
    }

    /// The highest WAL end the server has reported (in XLogData or keepalives). When
    /// nothing delivered is still unconfirmed, confirming up to here lets the server
    /// recycle WAL of an idle publication.
    pub fn server_wal_end(&self) -> Lsn {
        self.server_wal_end
    }

    /// The pgoutput protocol version in use.
    pub fn proto_version(&self) -> u32 {
        self.proto_version
    }

    /// The interval of automatic status updates.
    pub fn status_interval(&self) -> Duration {
        self.status_interval
    }

    /// Whether the periodic status update is due: a caller busy without calling
    /// [`ReplicationStream::next`] for long (replaying a large transaction, say) sends one
    /// with [`ReplicationStream::send_status_update`] to keep the walsender.
    pub fn status_due(&self) -> bool {
        Instant::now() >= self.next_status
    }

    /// The walsender's process id (`pg_stat_replication.pid`).
    pub fn backend_pid(&self) -> i32 {
        self.conn.backend_pid()
    }

    /// `host:port` (or the socket path) of the server.
    pub fn peer(&self) -> &str {
        self.conn.peer()
    }

    /// Whether the stream runs over a Unix-domain socket.
    pub(crate) fn is_unix_socket(&self) -> bool {
        self.conn.is_unix_socket()
    }

    /// The server's `server_version_num`.
    pub fn server_version_num(&self) -> u32 {
        self.conn.server_version_num()
    }

    /// Ends streaming cleanly: sends a last status update and CopyDone, reads what the
    /// server still sends until it is idle again (at most 30 s), then closes the
    /// connection with Terminate.
    ///
    /// # Errors
    /// An error the server reports while finishing; i/o errors are ignored since the
    /// connection is closed either way.
    pub async fn stop(mut self) -> Result<()> {
        let mut result = Ok(());
        if self.state == State::Streaming {
            let _ = self.send_status_update(false).await;
            let queued = self.conn.transport.queue(|b| {
                frontend::copy_done(b);
                Ok(())
            });
            if queued.is_ok() && self.conn.transport.flush().await.is_ok() {
                result = self.drain().await;
            }
        }
        self.conn.close().await;
        match result {
            // Only what the server reported matters; the connection is gone either way.
            Err(e) if e.as_server_error().is_none() => Ok(()),
            other => other,
        }
    }

    /// Reads until ReadyForQuery, skipping data still in flight.
    async fn drain(&mut self) -> Result<()> {
        let deadline = Instant::now() + STOP_DRAIN_LIMIT;
        let mut error = None;
        loop {
            match self.conn.transport.recv_until(deadline).await? {
                None => {
                    tracing::warn!(
                        server = self.peer(),
                        "server did not finish the copy within {STOP_DRAIN_LIMIT:?}; closing"
                    );
                    break;
                }
                Some(BackendMessage::ReadyForQuery(_)) => break,
                Some(BackendMessage::ErrorResponse(fields)) => {
                    error = Some(command_error(self.peer(), "START_REPLICATION", fields));
                }
                Some(_) => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("peer", &self.peer())
            .field("proto_version", &self.proto_version)
            .field("server_wal_end", &self.server_wal_end)
            .field("flush", &self.flush)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ReplicationConnection {
    /// `START_REPLICATION SLOT slot LOGICAL start (...)` with pgoutput; the connection
    /// becomes a [`ReplicationStream`].
    ///
    /// The pgoutput protocol version is the highest the server supports (3 on 15, 4 on 16
    /// and later) unless [`StartOptions::max_proto_version`] caps it. `start` below the slot's
    /// `confirmed_flush_lsn` is raised to it by the server; above it, transactions that
    /// committed before `start` are skipped.
    ///
    /// # Errors
    /// [`Error::is_config`] without publications; [`Error::is_slot_invalidated`] when the
    /// slot lost its WAL; [`Error::is_transient`] when the slot is active in another
    /// walsender (SQLSTATE 55006); other server errors as reported.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &StartOptions,
    ) -> Result<ReplicationStream> {
        self.require_version(MIN_SERVER_VERSION_NUM, "logical replication with pgoutput")?;
        let proto_version = options.effective_proto_version(self.server_version_num);
        // The walsender ends a client silent for wal_sender_timeout; status updates must
        // come well inside it, also when the server's setting is shorter than ours.
        let timeout = parse_duration_setting(&self.show("wal_sender_timeout").await?);
        let mut options = options.clone();
        options.status_interval = status_interval_within(options.status_interval, timeout);
        options.receive_timeout = receive_timeout_for(timeout);
        let options = &options;
        let sql = start_replication_command(slot, start, proto_version, options)?;
        self.transport.queue(|b| frontend::query(&sql, b))?;
        self.transport.flush().await?;
        loop {
            match self.transport.recv().await? {
                BackendMessage::CopyBothResponse => {
                    return Ok(ReplicationStream::new(self, proto_version, start, options));
                }
                BackendMessage::ErrorResponse(fields) => {
                    let error = command_error(self.peer(), "START_REPLICATION", fields);
                    // The server follows an error with ReadyForQuery; leave the connection
                    // usable (it is dropped here, but be tidy for a Terminate).
                    self.drain_to_ready().await;
                    self.transport.terminate().await;
                    return Err(error);
                }
                BackendMessage::NoticeResponse(fields) => {
                    tracing::info!(server = self.peer(), "{}", fields.message);
                }
                BackendMessage::ParameterStatus { name, value } => {
                    self.parameters.insert(name, value);
                }
                other => {
                    return Err(Error::protocol(format!(
                        "server {} sent {other:?} in reply to START_REPLICATION",
                        self.peer()
                    )))
                }
            }
        }
    }
}

fn start_replication_command(
    slot: &str,
    start: Lsn,
    proto_version: u32,
    options: &StartOptions,
) -> Result<String> {
    if options.publications.is_empty() {
        return Err(Error::config(format!(
            "no publication given for slot {slot:?}; pgoutput streams the tables of at least \
             one publication (StartOptions::publication)"
        )));
    }
    let names = options
        .publications
        .iter()
        .map(|p| quote::checked_ident(p))
        .collect::<Result<Vec<_>>>()?
        .join(",");
    let mut opts = vec![
        format!("proto_version '{proto_version}'"),
        format!("publication_names {}", quote::checked_literal(&names)?),
    ];
    if options.messages {
        opts.push("messages 'true'".to_owned());
    }
    if options.streaming && proto_version >= 2 {
        opts.push("streaming 'on'".to_owned());
    }
    Ok(format!(
        "START_REPLICATION SLOT {} LOGICAL {start} ({})",
        replication_ident(slot)?,
        opts.join(", ")
    ))
}

/// The status interval to use under a walsender timeout of `timeout` (`None` or zero: no
/// timeout): a third of it at most, so that a status update lost or delayed once still
/// leaves one more before the server gives up, and never below 100 ms.
pub(crate) fn status_interval_within(interval: Duration, timeout: Option<Duration>) -> Duration {
    match timeout {
        Some(timeout) if !timeout.is_zero() => {
            interval.min(timeout / 3).max(Duration::from_millis(100))
        }
        _ => interval,
    }
}

/// How long the server may stay silent before the connection is taken for dead: twice
/// its `wal_sender_timeout` (at least 5 s), during which the stream asks it for replies
/// every status interval; a live walsender answers at once. `None` when the server has no
/// timeout (`0`) or it could not be read: then the stream waits as long as it takes.
pub(crate) fn receive_timeout_for(wal_sender_timeout: Option<Duration>) -> Option<Duration> {
    wal_sender_timeout
        .filter(|t| !t.is_zero())
        .map(|t| (t * 2).max(Duration::from_secs(5)))
}

/// A time setting as `SHOW` prints it (`60s`, `500ms`, `1min`, `2h`, `1d`, or `0`); `None`
/// when it does not read as one.
pub(crate) fn parse_duration_setting(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let value: u64 = text[..digits].parse().ok()?;
    let unit_ms = match text[digits..].trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(value.checked_mul(unit_ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::protocol::DecodeError;
    use crate::wire::transport::{Socket, Transport};
    use bytes::{Buf, BufMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    /// The server side of a scripted connection.
    struct FakeServer {
        io: UnixStream,
    }

    impl FakeServer {
        async fn send(&mut self, tag: u8, body: &[u8]) {
            let mut frame = vec![tag];
            frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            frame.extend_from_slice(body);
            self.io.write_all(&frame).await.unwrap();
        }

        async fn copy_data(&mut self, payload: &[u8]) {
            self.send(b'd', payload).await;
        }

        async fn keepalive(&mut self, wal_end: u64, reply: bool) {
            let mut p = vec![b'k'];
            p.extend_from_slice(&wal_end.to_be_bytes());
            p.extend_from_slice(&0i64.to_be_bytes());
            p.push(u8::from(reply));
            self.copy_data(&p).await;
        }

        async fn xlog_data(&mut self, start: u64, end: u64, data: &[u8]) {
            let mut p = vec![b'w'];
            p.extend_from_slice(&start.to_be_bytes());
            p.extend_from_slice(&end.to_be_bytes());
            p.extend_from_slice(&0i64.to_be_bytes());
            p.extend_from_slice(data);
            self.copy_data(&p).await;
        }

        /// Reads one frontend message: (tag, body).
        async fn recv(&mut self) -> (u8, Vec<u8>) {
            let tag = self.io.read_u8().await.unwrap();
            let len = self.io.read_i32().await.unwrap();
            let mut body = vec![0; usize::try_from(len - 4).unwrap()];
            self.io.read_exact(&mut body).await.unwrap();
            (tag, body)
        }

        /// Reads a status update: (write, flush, apply, reply_requested).
        async fn status_update(&mut self) -> (u64, u64, u64, bool) {
            let (tag, body) = self.recv().await;
            assert_eq!(tag, b'd');
            let mut b = &body[..];
            assert_eq!(b.get_u8(), b'r');
            let (w, f, a) = (b.get_u64(), b.get_u64(), b.get_u64());
            b.get_i64();
            (w, f, a, b.get_u8() != 0)
        }
    }

    fn pair(interval: Duration) -> (ReplicationStream, FakeServer) {
        let (client, server) = UnixStream::pair().unwrap();
        let transport = Transport::new(Socket::Unix(client), "fake:5432".into());
        let conn = ReplicationConnection::for_test(transport, 160_000);
        let options = StartOptions::new()
            .publication("p")
            .status_interval(interval);
        let stream = ReplicationStream::new(conn, 4, Lsn::new(0x10), &options);
        (stream, FakeServer { io: server })
    }

    #[tokio::test]
    async fn keepalive_asking_for_a_reply_is_answered_at_once() {
        let (mut stream, mut server) = pair(Duration::from_secs(3600));
        stream.set_flush_position(Lsn::new(0x30));
        stream.set_flush_position(Lsn::new(0x20)); // ignored: lower
        stream.set_write_position(Lsn::new(0x10)); // reported as at least flush
        stream.set_apply_position(Lsn::new(0x05));
        server.keepalive(0x100, false).await;
        server.keepalive(0x200, true).await;
        server.xlog_data(0x150, 0x200, b"B...").await;
        let data = stream.next().await.unwrap().unwrap();
        assert_eq!(&data.data[..], b"B...");
        assert_eq!(data.wal_start, Lsn::new(0x150));
        assert_eq!(stream.server_wal_end(), Lsn::new(0x200));
        // Exactly one update, for the keepalive that asked (the interval is an hour).
        assert_eq!(server.status_update().await, (0x30, 0x30, 0x05, false));
        stream.send_status_update(true).await.unwrap();
        assert_eq!(server.status_update().await, (0x30, 0x30, 0x05, true));
    }

    #[tokio::test]
    async fn periodic_updates_are_sent_from_next_while_idle() {
        tokio::time::pause();
        let (mut stream, mut server) = pair(Duration::from_secs(10));
        stream.set_flush_position(Lsn::new(0x42));
        // Nothing to read: next() waits, and sends an update every interval meanwhile.
        let waiting = tokio::time::timeout(Duration::from_secs(35), stream.next()).await;
        assert!(waiting.is_err());
        for _ in 0..3 {
            assert_eq!(server.status_update().await.1, 0x42);
        }
        // The cancelled next() lost nothing: a message sent now is read.
        server.xlog_data(1, 2, b"x").await;
        assert_eq!(&stream.next().await.unwrap().unwrap().data[..], b"x");
    }

    #[tokio::test]
    async fn server_copy_done_is_a_clean_end() {
        let (mut stream, mut server) = pair(Duration::from_secs(3600));
        server.send(b'c', b"").await;
        server.send(b'C', b"COPY 0\0").await;
        server.send(b'Z', b"I").await;
        assert!(stream.next().await.unwrap().is_none());
        assert_eq!(server.recv().await, (b'c', vec![]), "CopyDone acknowledged");
        assert!(stream.next().await.unwrap().is_none(), "stays ended");
        stream.stop().await.unwrap();
        assert_eq!(server.recv().await.0, b'X', "Terminate");
    }

    #[tokio::test]
    async fn stop_sends_copy_done_and_drains() {
        let (stream, mut server) = pair(Duration::from_secs(3600));
        let stopping = tokio::spawn(stream.stop());
        assert_eq!(server.status_update().await.1, 0, "a last status update");
        assert_eq!(server.recv().await, (b'c', vec![]));
        // Data still in flight is skipped.
        server.xlog_data(1, 2, b"late").await;
        server.send(b'c', b"").await;
        server.send(b'C', b"START_REPLICATION\0").await;
        server.send(b'Z', b"I").await;
        assert_eq!(server.recv().await.0, b'X');
        stopping.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_frame_is_a_transient_torn_frame() {
        let (mut stream, mut server) = pair(Duration::from_secs(3600));
        server.xlog_data(1, 2, b"whole").await;
        server
            .io
            .write_all(&[b'd', 0, 0, 0, 100, b'w'])
            .await
            .unwrap();
        drop(server);
        assert!(stream.next().await.unwrap().is_some());
        let e = stream.next().await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        let torn = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<DecodeError>())
            .cloned();
        assert_eq!(torn, Some(DecodeError::TornFrame { buffered: 6 }), "{e}");
        let again: Error = stream.next().await.unwrap_err();
        assert!(again.is_transient(), "{again}");
    }

    #[tokio::test]
    async fn a_clean_close_between_frames_is_transient_and_server_errors_keep_their_code() {
        let (mut stream, server) = pair(Duration::from_secs(3600));
        drop(server);
        let e = stream.next().await.unwrap_err();
        assert!(e.is_transient() && e.is_closed(), "{e}");

        let (mut stream, mut server) = pair(Duration::from_secs(3600));
        let mut body = Vec::new();
        for (code, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "57P01"),
            (b'M', "terminating connection due to administrator command"),
        ] {
            body.put_u8(code);
            body.extend_from_slice(value.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        server.send(b'E', &body).await;
        let e = stream.next().await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN)
        );
        assert!(e.to_string().contains("fake:5432"), "{e}");
    }

    #[tokio::test]
    async fn malformed_replication_messages_are_protocol_errors() {
        let (mut stream, mut server) = pair(Duration::from_secs(3600));
        server.copy_data(b"?").await;
        let e = stream.next().await.unwrap_err();
        assert!(e.is_protocol(), "{e}");
        assert!(!e.is_transient(), "{e}");
    }

    #[test]
    fn proto_version_follows_the_server() {
        let o = StartOptions::new();
        assert_eq!(o.effective_proto_version(150_004), 3);
        assert_eq!(o.effective_proto_version(160_000), 4);
        assert_eq!(o.effective_proto_version(180_001), 4);
        assert_eq!(o.effective_proto_version(140_010), 2);
        let capped = StartOptions::new().max_proto_version(2);
        assert_eq!(capped.effective_proto_version(170_000), 2);
        assert_eq!(
            StartOptions::new()
                .max_proto_version(9)
                .effective_proto_version(170_000),
            4
        );
    }

    #[test]
    fn start_replication_quotes_publication_names_twice() {
        let options = StartOptions::new()
            .publication("p1")
            .publication("it's \"odd\"");
        let sql = start_replication_command("s", Lsn::new(0x1_0000_0010), 4, &options).unwrap();
        assert_eq!(
            sql,
            "START_REPLICATION SLOT \"s\" LOGICAL 1/10 (proto_version '4', publication_names \
             '\"p1\",\"it''s \"\"odd\"\"\"', messages 'true', streaming 'on')"
        );
        let e = start_replication_command("s", Lsn::ZERO, 4, &StartOptions::new()).unwrap_err();
        assert!(e.is_config(), "{e}");
        let sql = start_replication_command(
            "s",
            Lsn::ZERO,
            1,
            &StartOptions::new().publication("p").messages(false),
        )
        .unwrap();
        assert_eq!(
            sql,
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0 (proto_version '1', publication_names '\"p\"')"
        );
    }

    #[test]
    fn walsender_timeouts_parse_and_bound_the_status_interval() {
        let ten = Duration::from_secs(10);
        for (text, expected) in [
            ("60s", Some(Duration::from_secs(60))),
            ("2s", Some(Duration::from_secs(2))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1min", Some(Duration::from_secs(60))),
            ("1h", Some(Duration::from_secs(3600))),
            ("1d", Some(Duration::from_secs(86_400))),
            ("0", Some(Duration::ZERO)),
            ("", None),
            ("soon", None),
            ("99999999999999999999d", None),
        ] {
            assert_eq!(parse_duration_setting(text), expected, "{text:?}");
        }
        assert_eq!(
            status_interval_within(ten, Some(Duration::from_secs(60))),
            ten
        );
        assert_eq!(
            status_interval_within(ten, Some(Duration::from_secs(3))),
            Duration::from_secs(1)
        );
        assert_eq!(
            status_interval_within(ten, Some(Duration::from_millis(30))),
            Duration::from_millis(100)
        );
        assert_eq!(status_interval_within(ten, Some(Duration::ZERO)), ten);
        assert_eq!(
            receive_timeout_for(Some(Duration::from_secs(60))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            receive_timeout_for(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(receive_timeout_for(Some(Duration::ZERO)), None);
        assert_eq!(receive_timeout_for(None), None);
        assert_eq!(status_interval_within(ten, None), ten);
    }
}
