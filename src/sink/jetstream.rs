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
//! Publishing goes over a connection of the sink's own ([`nats_conn`](super::nats_conn)):
//! a batch is one buffer of `HPUB` frames, and acknowledgements come on the connection's
//! own inbox, one reply subject per message (`<inbox>.<n>`), so there is no per-message
//! round trip and the acks are matched by number. JetStream answers one connection's
//! publishes to one stream in order. The NATS client (async-nats) only manages the stream:
//! it checks or creates it at start, on a connection of its own that is closed again.
//!
//! **No automatic reconnect.** A client that reconnects on its own and sends what it had
//! queued on the new connection loses what sat in the dead socket's buffer: message *k*
//! lost, *k+1* stored, and *k* published again later would land after *k+1*. So a
//! connection is used once: on any failure the driver drops it and makes a new one
//! ([`Sink::reconnect`]), resuming from the group's committed cursor.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::ConnectErrorKind;

use super::broker::Sink;
use super::error::SinkError;
use super::nats_conn::{Auth, Connection, Target};
use super::outgoing::Outgoing;
use super::subject::covers;

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
        let duplicates = Arc::new(AtomicU64::new(0));
        // The publishing connection first: its errors name the fix for addresses and
        // credentials.
        let conn = Connection::open(target(&config, &duplicates)).await?;
        let mut sink = JetStreamSink {
            config,
            conn,
            warnings: Vec::new(),
            duplicates,
        };
        let client = manager(&sink.config).await?;
        sink.ensure_stream(client).await?;
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

    /// Checks the stream (creating it when missing) with the NATS client `client`.
    async fn ensure_stream(&mut self, client: async_nats::Client) -> Result<(), SinkError> {
        let js = jetstream::new(client);
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

/// What opening a publishing connection needs, from `config`.
fn target<'a>(config: &'a JetStreamConfig, duplicates: &Arc<AtomicU64>) -> Target<'a> {
    Target {
        url: &config.url,
        auth: &config.auth,
        tls: config.tls,
        name: &config.client_name,
        stream: &config.stream,
        no_responders: format!(
            "no stream took a message (no responders): is stream {} still there, taking {:?}?",
            config.stream, config.filters
        ),
        subjects: config.filters.join(", "),
        duplicates: Arc::clone(duplicates),
    }
}

/// A NATS client for managing the stream (checking and creating it), with the sink's
/// credentials; it is dropped once that is done.
async fn manager(config: &JetStreamConfig) -> Result<async_nats::Client, SinkError> {
    let options = match &config.auth {
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
    options
        .name(&config.client_name)
        .require_tls(config.tls)
        .connection_timeout(Duration::from_secs(5))
        .connect(config.url.as_str())
        .await
        .map_err(|e| connect_error(&config.url, e))
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
        self.conn.check_sizes(&batch)?;
        self.conn.publish(batch, self.config.ack_timeout).await
    }

    async fn settle(&mut self, keep: usize) -> Result<u64, SinkError> {
        self.conn
            .settle(keep, self.config.ack_timeout, &self.config.stream)
            .await
    }

    fn in_flight(&self) -> usize {
        usize::try_from(self.conn.in_flight()).unwrap_or(usize::MAX)
    }

    async fn reconnect(&mut self) -> Result<(), SinkError> {
        let conn = Connection::open(target(&self.config, &self.duplicates)).await?;
        // The old connection is dropped here: its reader stops and its socket closes, so
        // nothing written on it is sent any more.
        self.conn = conn;
        Ok(())
    }
}
