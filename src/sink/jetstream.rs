//! [`JetStreamSink`]: publishing into a NATS JetStream stream with per-message
//! de-duplication.
//!
//! Each message is published with `Nats-Msg-Id` set to its [`Outgoing::id`]; the stream drops
//! a message whose id it stored within its *duplicate window*, and answers it with
//! `"duplicate": true`. The window is the promise's limit: a record published again after
//! the window has passed (a publisher down longer than that) is stored twice. A stream this
//! sink creates gets the configured window; an existing stream with a shorter one is a
//! warning at start ([`JetStreamSink::warnings`]). The server keeps every id of the window
//! in memory (roughly 100 bytes each), so the window costs *rate × window* of server memory
//! — at 10 000 records/s, one hour is about 3.6 GB: size the window to the longest outage
//! you need to survive, not more.
//!
//! Acknowledgements come on the client's own inbox, one reply subject per message
//! (`<inbox>.<n>`), so publishing is a stream of `PUB`s with no per-message round trip and
//! the acks are matched by number. JetStream answers one connection's publishes to one
//! stream in order.
//!
//! **No automatic reconnect.** The NATS client would reconnect on its own and send what it
//! had queued on the new connection, while what sat in the dead socket's buffer is lost:
//! message *k* lost, *k+1* stored, and *k* published again later would land after *k+1*.
//! So a connection is used once: the client's reconnect delay is set to "never", and on any
//! failure the driver drops the connection and makes a new one ([`Sink::reconnect`]),
//! resuming from the group's committed cursor. (The abandoned client task waits forever
//! on its reconnect delay holding nothing but its unsent queue; one per failure.)

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{self, HeaderName};
use async_nats::jetstream::{self, stream};
use async_nats::message::OutboundMessage;
use async_nats::subject::Subject;
use async_nats::{ConnectErrorKind, HeaderMap, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::broker::Sink;
use super::error::SinkError;
use super::outgoing::{self, Outgoing};
use super::subject::covers;

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

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Server URL(s), comma-separated: `nats://host:4222` (`tls://` for TLS).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// The subject filters the stream must take (from
    /// [`Subjects::stream_filters`](super::subject::Subjects::stream_filters)).
    pub filters: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// Require TLS.
    pub tls: bool,
    /// The longest the publisher may be down and still have its repeats dropped: the
    /// duplicate window of a stream this sink creates, and the least an existing stream
    /// should have.
    pub max_restart: Duration,
    /// Replicas of a stream this sink creates (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// How long the sink waits for the next acknowledgement before it gives the connection
    /// up.
    pub ack_timeout: Duration,
    /// The client's name, shown by the server's monitoring.
    pub client_name: String,
}

impl JetStreamConfig {
    /// Defaults for `url`, `stream` and `filters`: no credentials, no TLS, one hour of
    /// duplicate window, one replica, 10 s acknowledgement timeout.
    pub fn new(url: &str, stream: &str, filters: Vec<String>) -> JetStreamConfig {
        JetStreamConfig {
            url: url.to_owned(),
            stream: stream.to_owned(),
            filters,
            auth: Auth::None,
            tls: false,
            max_restart: Duration::from_secs(3600),
            replicas: 1,
            ack_timeout: Duration::from_secs(10),
            client_name: "pg-changestream".to_owned(),
        }
    }
}

/// A JetStream publisher (see [the sink module](crate::sink) for what exactly once means here).
pub struct JetStreamSink {
    config: JetStreamConfig,
    conn: Connection,
    warnings: Vec<String>,
    duplicates: Arc<AtomicU64>,
}

/// One connection's state: used once, dropped on the first failure.
struct Connection {
    client: async_nats::Client,
    acks: async_nats::Subscriber,
    inbox: String,
    /// Raised by the client's event callback when the connection dropped.
    lost: Arc<AtomicBool>,
    lost_notify: Arc<Notify>,
    /// Messages handed to the client (the next message's number).
    sent: u64,
    /// Messages acknowledged, from the first (a prefix).
    acked: u64,
    /// Acknowledgements that arrived ahead of an earlier one.
    early: BTreeSet<u64>,
    /// When the last acknowledgement (or the first publish after none was pending)
    /// happened: the ack timeout runs from here.
    progress_at: Instant,
    /// The client's form of the subjects seen last (see [`Connection::outbound`]).
    subjects: Vec<(Arc<str>, Subject)>,
}

/// The header names, made once: a name made from a `&str` is copied for every message.
const MSG_ID: HeaderName = header::NATS_MESSAGE_ID;
const OP: HeaderName = HeaderName::from_static(outgoing::OP);
const TABLE: HeaderName = HeaderName::from_static(outgoing::TABLE);
const EVENT_ID: HeaderName = HeaderName::from_static(outgoing::EVENT_ID);
const COMMIT_LSN: HeaderName = HeaderName::from_static(outgoing::COMMIT_LSN);

/// Subjects remembered by [`Connection::outbound`]: more than the tables one run usually
/// reads; past it the memory starts again.
const SUBJECTS_KEPT: usize = 64;

/// What an acknowledgement says.
#[derive(Debug, PartialEq, Eq)]
enum Ack {
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
fn read_ack(payload: &[u8], stream: &str) -> Result<Ack, SinkError> {
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

impl JetStreamSink {
    /// Connects, checks the stream (creating it when missing) and subscribes to the
    /// acknowledgements.
    ///
    /// # Errors
    /// [`SinkError::Config`] for rejected credentials, a bad URL, a server without
    /// JetStream, subjects owned by another stream, a stream that does not take the
    /// subjects, or a missing stream that cannot be created; [`SinkError::Unavailable`]
    /// when the server cannot be reached.
    pub async fn connect(config: JetStreamConfig) -> Result<JetStreamSink, SinkError> {
        let conn = Connection::open(&config).await?;
        let mut sink = JetStreamSink {
            config,
            conn,
            warnings: Vec::new(),
            duplicates: Arc::new(AtomicU64::new(0)),
        };
        sink.ensure_stream().await?;
        Ok(sink)
    }

    /// What the start found worth saying (a stream's duplicate window shorter than the
    /// configured maximum restart time).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Acknowledgements that said "duplicate": repeats the stream dropped.
    pub fn duplicates(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.duplicates)
    }

    /// The NATS client of the current connection (for reading the stream back in tests and
    /// tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.conn.client
    }

    async fn ensure_stream(&mut self) -> Result<(), SinkError> {
        let js = jetstream::new(self.conn.client.clone());
        let name = &self.config.stream;
        match js.get_stream(name).await {
            Ok(stream) => {
                let info = stream.cached_info();
                for filter in &self.config.filters {
                    let sample = filter.replace(".>", ".x.y");
                    if !info.config.subjects.iter().any(|s| covers(s, &sample)) {
                        return Err(SinkError::Config(format!(
                            "stream {name} takes subjects {:?}, not {filter}; add {filter} to its \
                             subjects (nats stream edit {name} --subjects ...) or pick another \
                             --stream or --subject-prefix",
                            info.config.subjects
                        )));
                    }
                }
                if info.config.duplicate_window < self.config.max_restart {
                    let warning = format!(
                        "stream {name} drops repeats for {:?} only, less than the maximum \
                         restart time {:?}: a publisher down longer than that stores records \
                         twice; raise it (nats stream edit {name} --dupe-window {}s) or \
                         lower --max-restart",
                        info.config.duplicate_window,
                        self.config.max_restart,
                        self.config.max_restart.as_secs()
                    );
                    tracing::warn!("{warning}");
                    self.warnings.push(warning);
                }
                Ok(())
            }
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    self.create_stream(&js).await
                }
                _ => Err(SinkError::Config(format!(
                    "looking up stream {name} at {} failed ({e}): is JetStream enabled \
                     (nats-server -js) and may this user use it?",
                    self.config.url
                ))),
            },
        }
    }

    async fn create_stream(&self, js: &jetstream::Context) -> Result<(), SinkError> {
        let name = &self.config.stream;
        let config = stream::Config {
            name: name.clone(),
            subjects: self.config.filters.clone(),
            storage: stream::StorageType::File,
            duplicate_window: self.config.max_restart,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        match js.create_stream(config).await {
            Ok(_) => {
                tracing::info!(stream = %name, subjects = ?self.config.filters,
                    duplicate_window = ?self.config.max_restart, "created stream");
                Ok(())
            }
            Err(e) => {
                if let jetstream::context::CreateStreamErrorKind::JetStream(api) = e.kind() {
                    if api.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP {
                        let mut owners = Vec::new();
                        for filter in &self.config.filters {
                            let sample = filter.replace(".>", ".x.y");
                            if let Ok(owner) = js.stream_by_subject(sample).await {
                                owners.push(owner);
                            }
                        }
                        return Err(SinkError::Config(format!(
                            "subjects {:?} belong to another stream ({}); publish into it with \
                             --stream, or pick another --subject-prefix",
                            self.config.filters,
                            if owners.is_empty() {
                                "unknown".to_owned()
                            } else {
                                owners.join(", ")
                            }
                        )));
                    }
                }
                Err(SinkError::Config(format!(
                    "stream {name} does not exist and creating it failed ({e}); create it \
                     (nats stream add {name} --subjects '{}' --storage file --dupe-window {}s) \
                     or let this user create streams",
                    self.config.filters.join(","),
                    self.config.max_restart.as_secs()
                )))
            }
        }
    }
}

impl Connection {
    async fn open(config: &JetStreamConfig) -> Result<Connection, SinkError> {
        let lost = Arc::new(AtomicBool::new(false));
        let lost_notify = Arc::new(Notify::new());
        let connected = Arc::new(AtomicBool::new(false));
        let mut options = match &config.auth {
            Auth::CredsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    SinkError::Config(format!(
                        "--creds {}: cannot read the credentials file ({e})",
                        path.display()
                    ))
                })?,
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            Auth::UserPassword(user, password) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::None => async_nats::ConnectOptions::new(),
        };
        let (flag, notify) = (Arc::clone(&lost), Arc::clone(&lost_notify));
        let once = Arc::clone(&connected);
        options = options
            .name(&config.client_name)
            .require_tls(config.tls)
            .connection_timeout(Duration::from_secs(5))
            .client_capacity(16 * 1024)
            .subscription_capacity(256 * 1024)
            .event_callback(move |event| {
                let (flag, notify) = (Arc::clone(&flag), Arc::clone(&notify));
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        flag.store(true, Ordering::SeqCst);
                        notify.notify_one();
                    }
                }
            })
            // Never reconnect once connected (see the module docs); the first connection
            // itself is one attempt.
            .reconnect_delay_callback(move |_| {
                if once.load(Ordering::SeqCst) {
                    Duration::from_secs(100 * 365 * 24 * 3600)
                } else {
                    Duration::ZERO
                }
            });
        let client = options
            .connect(config.url.as_str())
            .await
            .map_err(|e| connect_error(&config.url, e))?;
        connected.store(true, Ordering::SeqCst);
        let inbox = client.new_inbox();
        let acks = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| SinkError::Unavailable(format!("subscribing to acknowledgements: {e}")))?;
        Ok(Connection {
            client,
            acks,
            inbox,
            lost,
            lost_notify,
            sent: 0,
            acked: 0,
            early: BTreeSet::new(),
            progress_at: Instant::now(),
            subjects: Vec::new(),
        })
    }

    fn lost_error(&self) -> SinkError {
        SinkError::Unavailable("the connection to the NATS server was lost".to_owned())
    }

    /// `message` as the client's message, to be sent as the next one (number `sent`) with
    /// its acknowledgement to `<inbox>.<sent>`.
    fn outbound(&mut self, message: Outgoing) -> OutboundMessage {
        let Outgoing {
            subject,
            id,
            headers,
            payload,
            ..
        } = message;
        // The encoder shares one subject among a table's records; the client's subject is
        // made once for it (a clone is then a reference count), found again by identity.
        let subject = match self.subjects.iter().find(|(s, _)| Arc::ptr_eq(s, &subject)) {
            Some((_, known)) => known.clone(),
            None => {
                if self.subjects.len() == SUBJECTS_KEPT {
                    self.subjects.clear();
                }
                let made = Subject::from(&*subject);
                self.subjects.push((subject, made.clone()));
                made
            }
        };
        let mut map = HeaderMap::new();
        map.insert(MSG_ID, id);
        map.insert(OP, headers.op);
        if let Some(table) = headers.table.as_deref() {
            map.insert(TABLE, table);
        }
        map.insert(EVENT_ID, headers.event_id);
        map.insert(COMMIT_LSN, headers.commit_lsn);
        let mut reply = String::with_capacity(self.inbox.len() + 21);
        reply.push_str(&self.inbox);
        reply.push('.');
        outgoing::push_decimal(&mut reply, self.sent);
        OutboundMessage {
            subject,
            reply: Some(Subject::from(reply)),
            payload,
            headers: Some(map),
        }
    }

    /// Records the acknowledgement of message `n`.
    fn ack(&mut self, n: u64) {
        if n == self.acked {
            self.acked += 1;
            while self.early.remove(&self.acked) {
                self.acked += 1;
            }
        } else if n > self.acked && n < self.sent {
            self.early.insert(n);
        }
    }
}

fn connect_error(url: &str, e: async_nats::ConnectError) -> SinkError {
    match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            SinkError::Config(format!(
                "the NATS server at {url} refused the credentials ({e}); check --creds, \
                 --token or --user/--password"
            ))
        }
        ConnectErrorKind::ServerParse | ConnectErrorKind::Dns => SinkError::Config(format!(
            "--nats {url}: not a reachable server address ({e}); use nats://host:4222"
        )),
        ConnectErrorKind::Tls => SinkError::Config(format!(
            "TLS with the NATS server at {url} failed ({e}); check --tls and the server's \
             certificate"
        )),
        _ => SinkError::Unavailable(format!(
            "cannot reach the NATS server at {url} ({e}); check --nats and that nats-server \
             is running (with -js)"
        )),
    }
}

impl Sink for JetStreamSink {
    async fn publish(&mut self, batch: Vec<Outgoing>) -> Result<(), SinkError> {
        let conn = &mut self.conn;
        if conn.lost.load(Ordering::SeqCst) {
            return Err(conn.lost_error());
        }
        if conn.sent == conn.acked {
            conn.progress_at = Instant::now();
        }
        let timeout = self.config.ack_timeout;
        let send = async {
            for message in batch {
                let outbound = conn.outbound(message);
                // The client as a `Sink`: the message moves into its queue as it is (the
                // `publish_*` methods would copy the subjects and check them again).
                conn.client
                    .feed(outbound)
                    .await
                    .map_err(|e| SinkError::Unavailable(format!("publishing failed: {e}")))?;
                conn.sent += 1;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Unavailable(format!(
                "publishing stalled for {timeout:?} (the connection is down or the server \
                 does not read)"
            ))),
        }
    }

    async fn settle(&mut self, keep: usize) -> Result<u64, SinkError> {
        let timeout = self.config.ack_timeout;
        let conn = &mut self.conn;
        while conn.sent - conn.acked > keep as u64 {
            if conn.lost.load(Ordering::SeqCst) {
                return Err(conn.lost_error());
            }
            let deadline = conn.progress_at + timeout;
            // Acknowledgements first: while they keep coming, neither the timer nor the
            // notification is registered (and dropped again) once per acknowledgement.
            let message = tokio::select! {
                biased;
                message = conn.acks.next() => message,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SinkError::Unavailable(format!(
                        "no acknowledgement from stream {} for {timeout:?} ({} messages \
                         waiting)", self.config.stream, conn.sent - conn.acked
                    )));
                }
                () = conn.lost_notify.notified() => continue,
            };
            let Some(message) = message else {
                return Err(conn.lost_error());
            };
            let n = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            let Some(n) = n else { continue };
            if message.status == Some(StatusCode::NO_RESPONDERS) {
                return Err(SinkError::Unavailable(format!(
                    "no stream took a message (no responders): is stream {} still there, \
                     taking {:?}?",
                    self.config.stream, self.config.filters
                )));
            }
            if read_ack(&message.payload, &self.config.stream)? == Ack::Duplicate {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            conn.progress_at = Instant::now();
            conn.ack(n);
        }
        Ok(conn.acked)
    }

    fn in_flight(&self) -> usize {
        usize::try_from(self.conn.sent - self.conn.acked).unwrap_or(usize::MAX)
    }

    async fn reconnect(&mut self) -> Result<(), SinkError> {
        let conn = Connection::open(&self.config).await?;
        // The old client is dropped here: it never reconnects, so nothing queued on it is
        // sent any more.
        self.conn = conn;
        Ok(())
    }
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
