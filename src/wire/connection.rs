//! The replication connection before streaming: connect, authenticate, run replication
//! commands with the simple-query protocol.
//!
//! A `replication=database` connection speaks the walsender's small command language
//! (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, `START_REPLICATION`, `SHOW`, ...) besides
//! SQL. Its grammar quotes identifiers with double quotes and strings with single quotes,
//! doubling the quote to embed it; every name we splice in goes through
//! `quote::checked_ident` or `quote::checked_literal`.
//!
//! The startup packet pins the settings that decide how values are printed as text, since
//! pgoutput sends column values in the walsender's text output: ISO dates, UTC, the
//! `postgres` interval style, shortest-exact floats and hex bytea. Later layers parse text
//! in exactly those formats.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, SslNegotiation};

use super::auth::{self, Credentials};
use super::error_response::{command_error, startup_error};
use super::transport::{Socket, Transport};
use crate::config::tls;
use crate::config::{ConnectConfig, SslMode};
use crate::error::{Error, Kind, Result};
use crate::lsn::Lsn;
use crate::protocol::frame::BackendMessage;
use crate::quote;
use crate::version::{check_server_version, parse_server_version, MIN_SERVER_VERSION_NUM};

/// Settings pinned in every replication connection's startup packet (`options`), so that
/// the text form of values does not depend on the server's or the role's configuration.
pub const PINNED_OPTIONS: &str = "-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres \
                                  -c extra_float_digits=3 -c bytea_output=hex";

/// A connection in replication mode (`replication=database`), idle between commands.
///
/// Created by [`ReplicationConnection::connect`]; turned into a [`ReplicationStream`](super::ReplicationStream) by
/// [`ReplicationConnection::start_replication`].
pub struct ReplicationConnection {
    pub(crate) transport: Transport,
    pub(crate) parameters: HashMap<String, String>,
    pub(crate) server_version_num: u32,
    backend_pid: i32,
}

/// One row of a simple-query result; every value is text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemIdentity {
    /// The cluster's unique system identifier.
    pub system_id: u64,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// What `CREATE_REPLICATION_SLOT` does with the snapshot at the slot's consistent point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotAction {
    /// Export it for other sessions (`SET TRANSACTION SNAPSHOT`) until the next command on
    /// this connection.
    Export,
    /// Use it for the current transaction of this connection (which must have begun one).
    Use,
    /// Neither; the cheapest, for slots whose history before now is not needed.
    #[default]
    Nothing,
}

impl SnapshotAction {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotAction::Export => "export",
            SnapshotAction::Use => "use",
            SnapshotAction::Nothing => "nothing",
        }
    }
}

/// Options of a new logical slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotOptions {
    /// Dropped when this connection ends or errors.
    pub temporary: bool,
    /// Decode prepared transactions at PREPARE time (Begin Prepare / Prepare / Commit
    /// Prepared messages).
    pub two_phase: bool,
    /// Synchronize the slot to physical standbys (PostgreSQL 17+).
    pub failover: bool,
    /// What to do with the snapshot.
    pub snapshot: SnapshotAction,
}

impl SlotOptions {
    /// Default options: permanent, no two-phase, no failover, no snapshot.
    pub fn new() -> SlotOptions {
        SlotOptions::default()
    }

    /// Sets [`SlotOptions::temporary`].
    pub fn temporary(mut self, yes: bool) -> SlotOptions {
        self.temporary = yes;
        self
    }

    /// Sets [`SlotOptions::two_phase`].
    pub fn two_phase(mut self, yes: bool) -> SlotOptions {
        self.two_phase = yes;
        self
    }

    /// Sets [`SlotOptions::failover`].
    pub fn failover(mut self, yes: bool) -> SlotOptions {
        self.failover = yes;
        self
    }

    /// Sets [`SlotOptions::snapshot`].
    pub fn snapshot(mut self, action: SnapshotAction) -> SlotOptions {
        self.snapshot = action;
        self
    }
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// The LSN from which the slot can stream: changes committed after it.
    pub consistent_point: Lsn,
    /// The exported snapshot's name ([`SnapshotAction::Export`] only).
    pub snapshot_name: Option<String>,
}

impl ReplicationConnection {
    /// Connects in replication mode and authenticates.
    ///
    /// Tries each host of the configuration in turn (with its `hostaddr`, if given, as the
    /// address and the host name for TLS) and returns the first connection that succeeds.
    /// A host starting with `/` is a Unix-socket directory. `connect_timeout` bounds each
    /// attempt.
    ///
    /// # Errors
    /// [`Error::is_auth`] for rejected credentials (the message names the user and server);
    /// [`Error::is_tls`] when TLS is required but unavailable or the certificate does not
    /// verify; [`Error::is_transient`] for refused or lost connections; server errors
    /// (e.g. a missing database) with their SQLSTATE.
    pub async fn connect(config: &ConnectConfig) -> Result<ReplicationConnection> {
        let pg = config.pg_config();
        let user = pg.get_user().ok_or_else(|| {
            Error::config("no user name given; add user=... to the connection string")
        })?;
        let targets = targets(pg)?;
        let mut last_error = None;
        for (host, addr, port) in targets {
            let attempt = connect_one(config, user, &host, addr, port);
            let result = match pg.get_connect_timeout() {
                Some(limit) => tokio::time::timeout(*limit, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::new(
                            Kind::Io,
                            format!(
                                "connecting to {} timed out after {limit:?} (connect_timeout)",
                                describe(&host, port)
                            ),
                        ))
                    }),
                None => attempt.await,
            };
            match result {
                Ok(conn) => return Ok(conn),
                // Credentials and TLS policy are the same for every host: stop at once.
                Err(e) if e.is_auth() || e.is_tls() || e.is_config() => return Err(e),
                Err(e) => {
                    tracing::debug!(target = %describe(&host, port), error = %e, "connection attempt failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::config("no host given; add host=... to the connection string")
        }))
    }

    /// The server's `server_version_num`, e.g. `150004` for 15.4.
    pub fn server_version_num(&self) -> u32 {
        self.server_version_num
    }

    /// A run-time parameter the server reported (`server_version`, `server_encoding`,
    /// `TimeZone`, `DateStyle`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The process id of the walsender serving this connection (`pg_stat_replication.pid`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// `host:port` (or the socket path) of the server.
    pub fn peer(&self) -> &str {
        self.transport.peer()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.transport.socket().is_tls()
    }

    /// Whether the connection runs over a Unix-domain socket.
    pub(crate) fn is_unix_socket(&self) -> bool {
        self.transport.socket().is_unix()
    }

    /// Runs one command (replication command or SQL) and returns its rows as text.
    ///
    /// Commands that start a copy (`START_REPLICATION`, `COPY`) are refused: use
    /// [`ReplicationConnection::start_replication`].
    ///
    /// # Errors
    /// The server's error with SQLSTATE, message, detail and hint; i/o errors.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>> {
        if sql.contains('\0') {
            return Err(Error::config(format!(
                "query {sql:?} contains a NUL byte, which the protocol cannot carry"
            )));
        }
        self.transport.queue(|b| frontend::query(sql, b))?;
        self.transport.flush().await?;
        let mut rows = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut error = None;
        loop {
            match self.transport.recv().await? {
                BackendMessage::RowDescription(names) => columns = Arc::from(names),
                BackendMessage::DataRow(values) => {
                    let values = values
                        .into_iter()
                        .map(|v| {
                            v.map(|b| {
                                String::from_utf8(b.to_vec()).map_err(|_| {
                                    Error::protocol(format!(
                                        "server {} sent a non-UTF-8 value for {sql:?}",
                                        self.peer()
                                    ))
                                })
                            })
                            .transpose()
                        })
                        .collect::<Result<Vec<_>>>()?;
                    if values.len() != columns.len() {
                        return Err(Error::protocol(format!(
                            "server {} sent a row of {} values for {} columns",
                            self.peer(),
                            values.len(),
                            columns.len()
                        )));
                    }
                    rows.push(Row {
                        columns: columns.clone(),
                        values,
                    });
                }
                BackendMessage::CommandComplete(_) | BackendMessage::EmptyQueryResponse => {}
                BackendMessage::ErrorResponse(fields) => {
                    error = Some(command_error(self.peer(), sql, fields));
                }
                BackendMessage::NoticeResponse(fields) => {
                    tracing::info!(server = self.peer(), "{}", fields.message);
                }
                BackendMessage::ParameterStatus { name, value } => {
                    self.parameters.insert(name, value);
                }
                BackendMessage::ReadyForQuery(_) => break,
                BackendMessage::CopyBothResponse
                | BackendMessage::CopyOutResponse
                | BackendMessage::CopyInResponse => {
                    return Err(Error::protocol(format!(
                        "{sql:?} started a copy on server {}; simple_query cannot run it (use \
                         start_replication for START_REPLICATION)",
                        self.peer()
                    )));
                }
                other => {
                    return Err(Error::protocol(format!(
                        "server {} sent {other:?} in reply to a query",
                        self.peer()
                    )))
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// `IDENTIFY_SYSTEM`: system id, timeline, current WAL position, database.
    ///
    /// # Errors
    /// Server or i/o errors; a protocol error if the answer is malformed.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = single_row(rows, "IDENTIFY_SYSTEM")?;
        Ok(SystemIdentity {
            system_id: parse_field(&row, "systemid", "IDENTIFY_SYSTEM", |s| s.parse().ok())?,
            timeline: parse_field(&row, "timeline", "IDENTIFY_SYSTEM", |s| s.parse().ok())?,
            xlogpos: parse_field(&row, "xlogpos", "IDENTIFY_SYSTEM", |s| s.parse().ok())?,
            dbname: row.try_get("dbname")?.map(str::to_owned),
        })
    }

    /// `SHOW name`: a setting's current value as text.
    ///
    /// # Errors
    /// An unknown setting is a server error (SQLSTATE 42704).
    pub async fn show(&mut self, name: &str) -> Result<String> {
        let sql = format!("SHOW {}", replication_ident(name)?);
        let row = single_row(self.simple_query(&sql).await?, &sql)?;
        row.values
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| Error::protocol(format!("{sql} returned no value")))
    }

    /// Creates a logical slot using the `pgoutput` plugin.
    ///
    /// # Errors
    /// [`Error::is_server_setup`] when the server is older than 15, or older than 17 and
    /// `failover` is asked for; server errors such as an existing slot (SQLSTATE 42710) or
    /// `wal_level` below logical (55000).
    pub async fn create_logical_slot(
        &mut self,
        name: &str,
        options: &SlotOptions,
    ) -> Result<CreatedSlot> {
        self.require_version(MIN_SERVER_VERSION_NUM, "creating a logical slot")?;
        if options.failover {
            self.require_version(170_000, "a failover slot (SlotOptions::failover)")?;
        }
        let sql = create_slot_command(name, options)?;
        let row = single_row(self.simple_query(&sql).await?, "CREATE_REPLICATION_SLOT")?;
        Ok(CreatedSlot {
            slot_name: row.try_get("slot_name")?.unwrap_or(name).to_owned(),
            consistent_point: parse_field(
                &row,
                "consistent_point",
                "CREATE_REPLICATION_SLOT",
                |s| s.parse().ok(),
            )?,
            snapshot_name: row.try_get("snapshot_name")?.map(str::to_owned),
        })
    }

    /// Drops a slot. With `wait`, waits for a walsender still using it to let go instead
    /// of failing with SQLSTATE 55006 (object in use).
    ///
    /// # Errors
    /// A missing slot is a server error with SQLSTATE 42704 (undefined object).
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<()> {
        let sql = format!(
            "DROP_REPLICATION_SLOT {}{}",
            replication_ident(name)?,
            if wait { " WAIT" } else { "" }
        );
        self.simple_query(&sql).await.map(drop)
    }

    /// Ends the session politely (Terminate) and closes the socket.
    pub async fn close(self) {
        self.transport.terminate().await;
    }

    pub(super) async fn drain_to_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(msg)) = self.transport.recv_until(deadline).await {
            if matches!(msg, BackendMessage::ReadyForQuery(_)) {
                break;
            }
        }
    }

    pub(super) fn require_version(&self, min: u32, what: &str) -> Result<()> {
        if self.server_version_num >= min {
            return Ok(());
        }
        Err(Error::new(
            Kind::ServerSetup,
            format!(
                "{what} needs PostgreSQL {} or later; server {} runs {}",
                min / 10_000,
                self.peer(),
                self.parameter("server_version")
                    .unwrap_or("an older version")
            ),
        ))
    }
}

#[cfg(test)]
impl ReplicationConnection {
    /// A connection over an already set-up transport (tests with a scripted server).
    pub(crate) fn for_test(transport: Transport, server_version_num: u32) -> ReplicationConnection {
        ReplicationConnection {
            transport,
            parameters: HashMap::new(),
            server_version_num,
            backend_pid: 0,
        }
    }
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("peer", &self.peer())
            .field("tls", &self.is_tls())
            .field("server_version_num", &self.server_version_num)
            .field("backend_pid", &self.backend_pid)
            .finish_non_exhaustive()
    }
}

impl Row {
    /// Column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Values, in column order; `None` is SQL NULL.
    pub fn values(&self) -> &[Option<String>] {
        &self.values
    }

    /// The value of a column, or `None` if it is NULL or there is no such column.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.try_get(column).ok().flatten()
    }

    /// The value of a column (`None` for NULL).
    ///
    /// # Errors
    /// A protocol error naming the column when the result has no such column.
    pub fn try_get(&self, column: &str) -> Result<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "result has no column {column:?} (columns: {:?})",
                    self.columns
                ))
            })?;
        Ok(self.values.get(i).and_then(|v| v.as_deref()))
    }
}

/// Quotes a name for a replication command (slot names, settings). The replication
/// grammar's scanner ends a quoted identifier at the first `"` and has no doubling rule,
/// so a name containing one cannot be written at all and is refused here.
pub(super) fn replication_ident(name: &str) -> Result<String> {
    if name.contains('"') {
        return Err(Error::config(format!(
            "{name:?} contains a double quote, which replication commands cannot express; \
             slot names may use lowercase letters, digits and underscores"
        )));
    }
    quote::checked_ident(name)
}

fn create_slot_command(name: &str, options: &SlotOptions) -> Result<String> {
    let mut opts = vec![format!("SNAPSHOT '{}'", options.snapshot.as_str())];
    if options.two_phase {
        opts.push("TWO_PHASE true".to_owned());
    }
    if options.failover {
        opts.push("FAILOVER true".to_owned());
    }
    Ok(format!(
        "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput ({})",
        replication_ident(name)?,
        if options.temporary { " TEMPORARY" } else { "" },
        opts.join(", ")
    ))
}

fn single_row(rows: Vec<Row>, what: &str) -> Result<Row> {
    let n = rows.len();
    let mut rows = rows.into_iter();
    match (rows.next(), n) {
        (Some(row), 1) => Ok(row),
        _ => Err(Error::protocol(format!(
            "{what} returned {n} rows, expected one"
        ))),
    }
}

fn parse_field<T>(
    row: &Row,
    column: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    let value = row.try_get(column)?;
    value.and_then(parse).ok_or_else(|| {
        Error::protocol(format!(
            "{what} returned {value:?} for {column}, which does not parse"
        ))
    })
}

/// The (host, address, port) attempts a configuration describes.
fn targets(pg: &tokio_postgres::Config) -> Result<Vec<(Host, Option<IpAddr>, u16)>> {
    let hosts: Vec<Host> = if pg.get_hosts().is_empty() {
        pg.get_hostaddrs()
            .iter()
            .map(|a| Host::Tcp(a.to_string()))
            .collect()
    } else {
        pg.get_hosts().to_vec()
    };
    let addrs = pg.get_hostaddrs();
    if !addrs.is_empty() && addrs.len() != hosts.len() {
        return Err(Error::config(format!(
            "{} hosts but {} hostaddrs given; give one hostaddr per host",
            hosts.len(),
            addrs.len()
        )));
    }
    let ports = pg.get_ports();
    let n_hosts = hosts.len();
    let port_of = |i: usize| -> Result<u16> {
        match ports {
            [] => Ok(5432),
            [port] => Ok(*port),
            _ if ports.len() == n_hosts => Ok(ports.get(i).copied().unwrap_or(5432)),
            _ => Err(Error::config(format!(
                "{n_hosts} hosts but {} ports given; give one port, or one per host",
                ports.len()
            ))),
        }
    };
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, host)| Ok((host, addrs.get(i).copied(), port_of(i)?)))
        .collect()
}

fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
        Host::Tcp(name) => format!("{name}:{port}"),
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}

async fn connect_one(
    config: &ConnectConfig,
    user: &str,
    host: &Host,
    addr: Option<IpAddr>,
    port: u16,
) -> Result<ReplicationConnection> {
    let peer = describe(host, port);
    let socket = match host {
        Host::Unix(_) => {
            let socket = UnixStream::connect(&peer).await.map_err(|e| {
                Error::with_source(Kind::Io, format!("cannot connect to socket {peer}"), e)
            })?;
            Socket::Unix(socket)
        }
        Host::Tcp(name) => {
            let tcp = match addr {
                Some(addr) => TcpStream::connect((addr, port)).await,
                None => TcpStream::connect((name.as_str(), port)).await,
            }
            .map_err(|e| Error::with_source(Kind::Io, format!("cannot connect to {peer}"), e))?;
            tcp.set_nodelay(true)
                .map_err(|e| Error::with_source(Kind::Io, format!("configuring {peer}"), e))?;
            negotiate_tls(config, name, tcp, &peer).await?
        }
    };
    let mut transport = Transport::new(socket, peer);
    let pg = config.pg_config();
    let database = pg.get_dbname().unwrap_or(user);
    let options = match pg.get_options() {
        Some(extra) if !extra.trim().is_empty() => format!("{PINNED_OPTIONS} {extra}"),
        _ => PINNED_OPTIONS.to_owned(),
    };
    let params = [
        ("user", user),
        ("database", database),
        ("replication", "database"),
        ("application_name", config.application_name()),
        ("client_encoding", "UTF8"),
        ("options", options.as_str()),
    ];
    transport.queue(|b| frontend::startup_message(params.iter().copied(), b))?;
    transport.flush().await?;
    auth::authenticate(
        &mut transport,
        &Credentials {
            user,
            database,
            password: pg.get_password(),
            channel_binding: pg.get_channel_binding(),
        },
    )
    .await?;

    let mut parameters = HashMap::new();
    let mut backend_pid = 0;
    loop {
        match transport.recv().await? {
            BackendMessage::ParameterStatus { name, value } => {
                parameters.insert(name, value);
            }
            BackendMessage::BackendKeyData { process_id, .. } => backend_pid = process_id,
            BackendMessage::NoticeResponse(fields) => {
                tracing::info!(server = transport.peer(), "{}", fields.message);
            }
            BackendMessage::NegotiateProtocolVersion { .. } => {}
            BackendMessage::ErrorResponse(fields) => {
                return Err(startup_error(transport.peer(), user, database, fields));
            }
            BackendMessage::ReadyForQuery(_) => break,
            other => {
                return Err(Error::protocol(format!(
                    "server {} sent {other:?} during startup",
                    transport.peer()
                )))
            }
        }
    }
    let mut conn = ReplicationConnection {
        transport,
        parameters,
        server_version_num: 0,
        backend_pid,
    };
    conn.server_version_num = match conn
        .parameter("server_version")
        .and_then(parse_server_version)
    {
        Some(v) => v,
        None => {
            let v = conn.show("server_version_num").await?;
            v.trim()
                .parse()
                .map_err(|_| Error::protocol(format!("server_version_num {v:?} is not a number")))?
        }
    };
    check_server_version(
        conn.server_version_num,
        conn.parameter("server_version"),
        conn.peer(),
    )?;
    Ok(conn)
}

/// SSLRequest (or direct TLS) per the TLS policy.
async fn negotiate_tls(
    config: &ConnectConfig,
    host: &str,
    mut tcp: TcpStream,
    peer: &str,
) -> Result<Socket> {
    let mode = config.ssl_mode();
    if mode == SslMode::Disable {
        return Ok(Socket::Tcp(tcp));
    }
    let direct = config.pg_config().get_ssl_negotiation() == SslNegotiation::Direct;
    if direct && !mode.requires_tls() {
        return Err(Error::config(format!(
            "sslnegotiation=direct needs sslmode=require or stricter, not {mode}"
        )));
    }
    if !direct {
        let mut request = bytes::BytesMut::new();
        frontend::ssl_request(&mut request);
        let io = |e| Error::with_source(Kind::Io, format!("asking {peer} for TLS"), e);
        tcp.write_all(&request).await.map_err(io)?;
        // Exactly one byte: anything the server sent after it before the handshake would
        // be unauthenticated (CVE-2021-23222), so do not read ahead.
        match tcp.read_u8().await.map_err(io)? {
            b'S' => {}
            b'N' if mode.requires_tls() => {
                return Err(Error::new(
                    Kind::Tls,
                    format!(
                        "server {peer} does not accept TLS connections but sslmode={mode} \
                         requires TLS; enable ssl on the server or use sslmode=prefer"
                    ),
                ))
            }
            b'N' => return Ok(Socket::Tcp(tcp)),
            other => {
                return Err(Error::protocol(format!(
                    "server {peer} answered the TLS request with {:?}",
                    char::from(other)
                )))
            }
        }
    }
    let mut client = tls::client_config(mode, config.tls_files())?
        .as_ref()
        .clone();
    client.alpn_protocols = vec![b"postgresql".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let stream = connector
        .connect(tls::server_name(host)?, tcp)
        .await
        .map_err(|e| tls_handshake_error(e, host, peer, mode))?;
    Ok(Socket::Tls(Box::new(stream)))
}

fn tls_handshake_error(e: std::io::Error, host: &str, peer: &str, mode: SslMode) -> Error {
    match tls::find_rustls_error(&e) {
        Some(cause) => Error::with_source(
            Kind::Tls,
            format!(
                "server {peer} (sslmode={mode}): {}",
                tls::remedy(cause, host)
            ),
            e,
        ),
        None => Error::with_source(
            Kind::Io,
            format!("connection to {peer} failed during the tls handshake"),
            e,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_slot_uses_the_parenthesised_syntax() {
        assert_eq!(
            create_slot_command("s", &SlotOptions::new()).unwrap(),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing')"
        );
        let all = SlotOptions::new()
            .temporary(true)
            .two_phase(true)
            .failover(true)
            .snapshot(SnapshotAction::Export);
        assert_eq!(
            create_slot_command("my slot", &all).unwrap(),
            "CREATE_REPLICATION_SLOT \"my slot\" TEMPORARY LOGICAL pgoutput \
             (SNAPSHOT 'export', TWO_PHASE true, FAILOVER true)"
        );
        let e = create_slot_command("my\"slot", &all).unwrap_err();
        assert!(e.is_config(), "{e}");
    }

    #[test]
    fn targets_pair_hosts_addresses_and_ports() {
        let pg: tokio_postgres::Config = "host=a,b hostaddr=127.0.0.1,127.0.0.2 port=1,2"
            .parse()
            .unwrap();
        let t = targets(&pg).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].0, Host::Tcp("b".into()));
        assert_eq!(t[1].1, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(t[1].2, 2);
        let pg: tokio_postgres::Config = "host=a,b port=1,2,3".parse().unwrap();
        assert!(targets(&pg).unwrap_err().is_config());
        let pg: tokio_postgres::Config = "host=/tmp".parse().unwrap();
        assert_eq!(targets(&pg).unwrap()[0].2, 5432);
        assert_eq!(
            describe(&targets(&pg).unwrap()[0].0, 5432),
            "/tmp/.s.PGSQL.5432"
        );
    }
}
