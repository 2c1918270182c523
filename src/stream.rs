//! The low-level change stream: one slot, one publication set, decoded records, explicit
//! acknowledgements. Usable without consumer groups; the consumer runs one per partition.
//!
//! ```text
//!            ┌──────────── background task (owns the connection) ─────────────┐
//! walsender ─┤ ReplicationStream::next ─▶ Decoder::feed ─▶ next_change ─▶ queue ├─▶ ChangeStream::next
//!            │      ▲ status updates: acks, keepalive replies, periodic          │
//!            └──────┴──────────────────────────────────────────────────────────┘
//! ```
//!
//! The task answers keepalives at once and sends a status update at least every status
//! interval even while the queue is full and it has stopped reading: the walsender's
//! timeout counts from the last message it *received*, so this keeps a slow application
//! from having its stream cut. Meanwhile the full queue stops the task reading, TCP fills,
//! and the walsender waits: memory stays bounded by the queue length.
//!
//! **Acknowledging.** [`ChangeStream::ack`] raises the flush position sent to the server,
//! which moves the slot's `confirmed_flush_lsn`. When everything delivered has been
//! acknowledged and no transaction is half-delivered, the flush position follows the
//! server's WAL end from keepalives, so an idle stream on a busy server never pins WAL
//! (PITFALLS: etl #429, Electric #1083). This is safe: a transaction that is still running
//! commits later than that position and is delivered in full.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Stream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::config::ConnectConfig;
use crate::error::{Error, Kind, Result};
use crate::lsn::Lsn;
use crate::protocol::replication::XLogData;
use crate::wire::{ReplicationConnection, ReplicationStream, StartOptions};

pub use crate::decode::decoder::{Change, Decoder, DecoderOptions};

/// How to open a [`ChangeStream`].
#[derive(Debug, Clone)]
pub struct ChangeStreamOptions {
    /// The logical replication slot (pgoutput).
    pub slot: String,
    /// Publications whose tables to receive.
    pub publications: Vec<String>,
    /// Where to start. Below the slot's confirmed position the server starts there
    /// instead; above it, transactions that committed before `start` are skipped.
    pub start: Lsn,
    /// Whether to receive `pg_logical_emit_message` messages.
    pub messages: bool,
    /// Whether the server may stream large in-progress transactions (buffered here until
    /// they commit, spilling to disk past [`DecoderOptions::memory_limit`]).
    pub streaming: bool,
    /// Decoder limits and known types.
    pub decoder: DecoderOptions,
    /// Changes queued between the connection task and the reader.
    pub queue_capacity: usize,
    /// How often a status update is sent at least (at most a third of the server's
    /// `wal_sender_timeout`, whatever is set here).
    pub status_interval: Duration,
    /// Follow the server's WAL end when nothing is unacknowledged (see the module docs).
    pub follow_idle_wal: bool,
    /// While changes keep arriving, how long the task lets the socket fill before reading
    /// again (zero: read as soon as anything arrives). A walsender sends every change as its
    /// own message, so a reader faster than the server would otherwise wake, read a few
    /// hundred bytes and wake the application once per handful of rows; that wake-up cost
    /// (context switches, futex and epoll calls) was most of the client CPU per row. A
    /// short linger lets each read take a socket-buffer full and each batch carry hundreds of
    /// rows, at the price of up to about this much (plus the timer's 1 ms granularity) added
    /// latency while the stream is busy. An idle stream is read at once. Not applied over a
    /// Unix-domain socket, which fills long before the pause ends (neither is `bulk_linger`).
    pub linger: Duration,
    /// The linger while the stream runs in bulk: for at least [`BULK_SUSTAIN`] it took data
    /// at [`BULK_BYTES_PER_SEC`] or more, [`BULK_BYTES`] at least (catching up on a
    /// backlog, a large load). A walsender whose client
    /// reads every few hundred microseconds sends each change with its own system call and
    /// wakes the client for it; letting the socket fill for longer made the server drain a
    /// backlog up to twice as fast at a fraction of the client's system time (see
    /// `docs/architecture.md`). Too long, and the bytes arriving in one pause outgrow the
    /// socket buffers on both ends, and the walsender stops. Latency while in bulk is
    /// backlog-bound anyway; a steady stream of a few thousand rows/s never enters it.
    pub bulk_linger: Duration,
}

/// Bytes taken from the server, at [`BULK_BYTES_PER_SEC`] or more, from which on the stream
/// may count as running in bulk (see [`ChangeStreamOptions::bulk_linger`]).
pub const BULK_BYTES: usize = 64 * 1024;

/// The rate of arrival, in bytes per second, from which on the stream may count as running
/// in bulk: about 50 k rows/s of 400 bytes, five times the latency target's load.
pub const BULK_BYTES_PER_SEC: f64 = 20e6;

/// How long data must keep arriving at [`BULK_BYTES_PER_SEC`] before the stream counts as
/// running in bulk: longer than a steady stream's burst after a hiccup takes to drain.
pub const BULK_SUSTAIN: Duration = Duration::from_millis(10);

impl ChangeStreamOptions {
    /// Options for `slot` and `publications`, starting at the slot's confirmed position.
    pub fn new(slot: impl Into<String>, publications: Vec<String>) -> ChangeStreamOptions {
        ChangeStreamOptions {
            slot: slot.into(),
            publications,
            start: Lsn::ZERO,
            messages: true,
            streaming: true,
            decoder: DecoderOptions::default(),
            queue_capacity: 8192,
            status_interval: Duration::from_secs(10),
            follow_idle_wal: true,
            linger: Duration::from_millis(1),
            bulk_linger: Duration::from_millis(20),
        }
    }
}

/// Positions shared between the task and the handle.
#[derive(Debug, Default)]
struct Shared {
    acked: AtomicU64,
    ack_changed: Notify,
    server_wal_end: AtomicU64,
    confirmed: AtomicU64,
}

/// Decoded changes from one replication slot, as a `futures::Stream`.
#[derive(Debug)]
pub struct ChangeStream {
    rx: mpsc::Receiver<Result<Vec<Change>>>,
    /// The rest of the batch last received.
    buffer: VecDeque<Change>,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
    backend_pid: i32,
    proto_version: u32,
}

impl ChangeStream {
    /// Connects, starts replication on the slot, and begins decoding in a background task.
    ///
    /// # Errors
    /// Connection or authentication failures; the slot does not exist, is active
    /// elsewhere (transient) or was invalidated; a publication does not exist.
    pub async fn start(
        config: &ConnectConfig,
        options: ChangeStreamOptions,
    ) -> Result<ChangeStream> {
        let conn = ReplicationConnection::connect(config).await?;
        let mut decoder = options.decoder.clone();
        // The connection asks for client_encoding UTF8; a UTF8 server validated every text
        // value on its way in and converts nothing on the way out. Under SQL_ASCII any byte
        // passes, and other encodings are converted by the server: keep checking those.
        decoder.server_utf8 = conn.parameter("server_encoding") == Some("UTF8");
        let mut start = StartOptions::new()
            .messages(options.messages)
            .streaming(options.streaming)
            .status_interval(options.status_interval);
        for publication in &options.publications {
            start = start.publication(publication.clone());
        }
        let stream = conn
            .start_replication(&options.slot, options.start, &start)
            .await?;
        let backend_pid = stream.backend_pid();
        let status_interval = stream.status_interval();
        // A Unix socket holds only a couple of hundred of the walsender's messages (the
        // server's send buffer counts each message's whole allocation, not its bytes): it
        // fills well within the timer's 1 ms, after which the walsender waits for us. A
        // pause then only stalls the server — measured, a backlog drained in 6.6 s with the
        // lingers and in 1.3 s without — so such a stream is read as data arrives.
        let (linger, bulk_linger) = if stream.is_unix_socket() {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (options.linger, options.bulk_linger)
        };
        let proto_version = stream.proto_version();
        let shared = Arc::new(Shared::default());
        // The queue holds batches; its capacity in changes stays about what was asked.
        let batches = options.queue_capacity.div_ceil(MAX_BATCH).max(1);
        let (tx, rx) = mpsc::channel(batches);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let task = Task {
            stream,
            decoder: Decoder::new(decoder),
            tx,
            shared: Arc::clone(&shared),
            delivered_end: Lsn::ZERO,
            follow_idle_wal: options.follow_idle_wal,
            pace: Pace::new(linger, bulk_linger, Instant::now()),
            // Possibly shortened to fit the server's wal_sender_timeout.
            status_interval,
            applied_ack: 0,
        };
        let handle = tokio::spawn(task.run(shutdown_rx));
        Ok(ChangeStream {
            rx,
            buffer: VecDeque::new(),
            shared,
            shutdown: Some(shutdown_tx),
            task: Some(handle),
            backend_pid,
            proto_version,
        })
    }

    /// The next change; `None` once the stream has ended (after an error was returned, or
    /// after [`ChangeStream::close`]).
    pub async fn next_change(&mut self) -> Option<Result<Change>> {
        if let Some(change) = self.buffer.pop_front() {
            return Some(Ok(change));
        }
        let batch = self.rx.recv().await;
        self.unpack(batch)
    }

    /// A change if one is ready now, without waiting.
    pub fn try_next_change(&mut self) -> Option<Result<Change>> {
        if let Some(change) = self.buffer.pop_front() {
            return Some(Ok(change));
        }
        let batch = self.rx.try_recv().ok();
        self.unpack(batch)
    }

    /// Keeps a received batch and returns its first change.
    fn unpack(&mut self, batch: Option<Result<Vec<Change>>>) -> Option<Result<Change>> {
        match batch? {
            Ok(batch) => {
                self.buffer = VecDeque::from(batch);
                self.buffer.pop_front().map(Ok)
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Acknowledges everything up to `end_lsn` (a [`Change::Commit`]'s `end_lsn`): the
    /// server may release the WAL before it, and will not send those transactions again.
    /// Lower values than already acknowledged are ignored. Sent to the server at once.
    pub fn ack(&self, end_lsn: Lsn) {
        self.acker().ack(end_lsn);
    }

    /// A handle that acknowledges on this stream from elsewhere (another task, a bundle
    /// being committed); acknowledging after the stream ended does nothing.
    pub fn acker(&self) -> Acker {
        Acker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The highest position acknowledged through [`ChangeStream::ack`].
    pub fn acked(&self) -> Lsn {
        Lsn::new(self.shared.acked.load(Ordering::Acquire))
    }

    /// The flush position last sent to the server (acknowledgements, or the server's WAL
    /// end while idle).
    pub fn confirmed(&self) -> Lsn {
        Lsn::new(self.shared.confirmed.load(Ordering::Acquire))
    }

    /// The server's WAL end as last reported (keepalives and data).
    pub fn server_wal_end(&self) -> Lsn {
        Lsn::new(self.shared.server_wal_end.load(Ordering::Acquire))
    }

    /// The walsender's process id (to find it in `pg_stat_replication`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// The pgoutput protocol version in use.
    pub fn proto_version(&self) -> u32 {
        self.proto_version
    }

    /// Sends the acknowledged position, ends replication and closes the connection.
    ///
    /// # Errors
    /// The final status update or the clean stop failed (the connection is closed anyway).
    pub async fn close(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.rx.close();
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(Error::new(
                    Kind::Closed,
                    format!("change stream task failed: {e}"),
                ))
            }),
            None => Ok(()),
        }
    }
}

/// Acknowledges positions on a [`ChangeStream`]; see [`ChangeStream::ack`].
#[derive(Debug, Clone)]
pub struct Acker {
    shared: Arc<Shared>,
}

impl Acker {
    /// Acknowledges everything up to `end_lsn`, as [`ChangeStream::ack`] does.
    pub fn ack(&self, end_lsn: Lsn) {
        let previous = self
            .shared
            .acked
            .fetch_max(end_lsn.as_u64(), Ordering::AcqRel);
        if previous < end_lsn.as_u64() {
            self.shared.ack_changed.notify_one();
        }
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Stream for ChangeStream {
    type Item = Result<Change>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(change) = self.buffer.pop_front() {
            return Poll::Ready(Some(Ok(change)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(batch) => Poll::Ready(self.unpack(batch)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Changes handed over at once, at most. Batches cut the cost of waking the reader per
/// change; a batch is sent as soon as no more data is ready, so latency does not suffer.
const MAX_BATCH: usize = 256;

/// The background task owning the replication connection.
struct Task {
    stream: ReplicationStream,
    decoder: Decoder,
    tx: mpsc::Sender<Result<Vec<Change>>>,
    shared: Arc<Shared>,
    /// End LSN of the last transaction handed to the queue.
    delivered_end: Lsn,
    follow_idle_wal: bool,
    pace: Pace,
    status_interval: Duration,
    /// The acknowledged position last applied to the stream.
    applied_ack: u64,
}

/// How long the task pauses before reading again while changes keep arriving: `linger`,
/// or `bulk_linger` while the stream runs in bulk — every stretch between pauses (or since
/// the task last began to wait for the socket) for at least [`BULK_SUSTAIN`] took at least
/// [`BULK_BYTES_PER_SEC`], and together at least [`BULK_BYTES`].
///
/// Each condition matters: bytes alone would let one burst after a quiet moment count as
/// bulk (and a 20 ms pause takes in 64 KiB at only a few MB/s, so a steady 10 k rows/s
/// stream would stay there); a rate over one stretch alone would count a single message
/// read a microsecond after the last, and — measured at 30 k rows/s — every burst after a
/// few milliseconds' hiccup of a steady stream, each then held 20 ms more (p99 15 ms
/// instead of 4). A backlog keeps the rate up for as long as it lasts; a hiccup's burst is
/// drained in a few milliseconds.
#[derive(Debug)]
struct Pace {
    linger: Duration,
    bulk_linger: Duration,
    /// Bytes taken since `since`.
    bytes: usize,
    /// The last pause, or when the task last began to wait for the socket.
    since: Instant,
    /// Since when every stretch has arrived at [`BULK_BYTES_PER_SEC`] or more, and the
    /// bytes they took together.
    fast_since: Option<(Instant, usize)>,
}

impl Pace {
    fn new(linger: Duration, bulk_linger: Duration, now: Instant) -> Pace {
        Pace {
            linger,
            bulk_linger,
            bytes: 0,
            since: now,
            fast_since: None,
        }
    }

    fn took(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// The pause before the next read, after a batch went out.
    fn pause(&mut self, now: Instant) -> Duration {
        let bytes = std::mem::take(&mut self.bytes);
        let start = std::mem::replace(&mut self.since, now);
        let elapsed = now.saturating_duration_since(start);
        let fast = bytes as f64 >= BULK_BYTES_PER_SEC * elapsed.as_secs_f64();
        self.fast_since = match self.fast_since {
            _ if !fast => None,
            Some((first, taken)) => Some((first, taken.saturating_add(bytes))),
            None => Some((start, bytes)),
        };
        match self.fast_since {
            Some((first, taken))
                if taken >= BULK_BYTES && now.saturating_duration_since(first) >= BULK_SUSTAIN =>
            {
                self.bulk_linger
            }
            _ => self.linger,
        }
    }

    /// The task begins to wait for the socket: what comes next counts from here.
    fn idle(&mut self, now: Instant) {
        self.bytes = 0;
        self.since = now;
        self.fast_since = None;
    }
}

/// Why the task's loop ended.
enum Exit {
    Shutdown,
    ReaderGone,
}

impl Task {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Result<()> {
        match self.pump(&mut shutdown).await {
            Ok(Exit::Shutdown) => {
                self.apply_ack();
                let flushed = self.stream.send_status_update(false).await;
                let stopped = self.stream.stop().await;
                flushed.and(stopped)
            }
            Ok(Exit::ReaderGone) => Ok(()),
            Err(e) => {
                // Hand the error to the reader; the connection is dropped.
                let _ = self.tx.send(Err(e)).await;
                Ok(())
            }
        }
    }

    async fn pump(&mut self, shutdown: &mut oneshot::Receiver<()>) -> Result<Exit> {
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut batch_end = None;
        // Whether a batch went out since the task last waited for the socket: the stream is
        // busy, and the next read waits `linger` first.
        let mut flowing = false;
        loop {
            while batch.len() < MAX_BATCH {
                let Some(change) = self.decoder.next_change()? else {
                    break;
                };
                if let Change::Commit { end_lsn, .. } = &change {
                    batch_end = Some(*end_lsn);
                }
                batch.push(change);
            }
            // An acknowledgement made while data keeps flowing is sent without waiting
            // for a quiet moment.
            if self.shared.acked.load(Ordering::Acquire) > self.applied_ack {
                self.apply_ack();
                self.stream.send_status_update(false).await?;
            }
            if batch.len() < MAX_BATCH && !self.decoder.has_output() {
                // More data already here? Take it into this batch.
                if let Some(message) = self.stream.next().now_or_never() {
                    self.take(message?)?;
                    continue;
                }
            }
            if !batch.is_empty() {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                if let Some(exit) = self.deliver(full, shutdown).await? {
                    return Ok(exit);
                }
                if let Some(end) = batch_end.take() {
                    self.delivered_end = self.delivered_end.max(end);
                }
                flowing = true;
                // Replaying a large streamed transaction reads nothing from the server for
                // as long as it takes; the walsender must still hear from us.
                if self.stream.status_due() {
                    self.stream.send_status_update(false).await?;
                }
                continue;
            }
            if self.decoder.has_output() {
                continue;
            }
            if std::mem::take(&mut flowing) {
                let pause = self.pace.pause(Instant::now());
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            self.pace.idle(Instant::now());
            tokio::select! {
                _ = &mut *shutdown => return Ok(Exit::Shutdown),
                _ = self.shared.ack_changed.notified() => {
                    self.apply_ack();
                    self.stream.send_status_update(false).await?;
                }
                _ = idle_check.tick() => self.follow_idle_wal(),
                message = self.stream.next() => self.take(message?)?,
            }
        }
    }

    /// Feeds one message from the server to the decoder.
    fn take(&mut self, message: Option<XLogData>) -> Result<()> {
        self.publish_wal_end();
        match message {
            Some(data) => {
                self.pace.took(data.data.len());
                self.decoder.feed(data.data)
            }
            None => Err(Error::new(
                Kind::Closed,
                "the server ended the replication stream",
            )),
        }
    }

    /// Queues one batch, keeping the stream alive while the queue is full.
    async fn deliver(
        &mut self,
        batch: Vec<Change>,
        shutdown: &mut oneshot::Receiver<()>,
    ) -> Result<Option<Exit>> {
        // Fast path: room in the queue.
        let batch = match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(batch));
                return Ok(None);
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Ok(Some(Exit::ReaderGone)),
            Err(mpsc::error::TrySendError::Full(())) => batch,
        };
        // The queue is full: wait for room, keeping the walsender informed meanwhile.
        let tx = self.tx.clone();
        let mut keepalive =
            tokio::time::interval(self.status_interval.max(Duration::from_millis(100)));
        keepalive.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                permit = tx.reserve() => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(Ok(batch));
                            Ok(None)
                        }
                        Err(_) => Ok(Some(Exit::ReaderGone)),
                    };
                }
                _ = &mut *shutdown => return Ok(Some(Exit::Shutdown)),
                _ = self.shared.ack_changed.notified() => {
                    self.apply_ack();
                    self.stream.send_status_update(false).await?;
                }
                _ = keepalive.tick() => self.stream.send_status_update(false).await?,
            }
        }
    }

    fn apply_ack(&mut self) {
        let acked = self.shared.acked.load(Ordering::Acquire);
        self.applied_ack = acked;
        let acked = Lsn::new(acked);
        self.stream.set_flush_position(acked);
        self.publish_confirmed();
    }

    /// While nothing delivered is unacknowledged and no transaction is half-delivered,
    /// let the flush position follow the server's WAL end.
    fn follow_idle_wal(&mut self) {
        self.publish_wal_end();
        if !self.follow_idle_wal || self.decoder.in_transaction() {
            return;
        }
        // Everything queued belongs to transactions that ended by `delivered_end` (an open
        // one returned above), so once that is acknowledged the queue need not be empty: a
        // consumer that took a transaction's last record and committed it, but not yet the
        // Commit behind it, must not pin WAL.
        let acked = Lsn::new(self.shared.acked.load(Ordering::Acquire));
        if acked >= self.delivered_end {
            self.stream.set_flush_position(self.stream.server_wal_end());
            self.publish_confirmed();
        }
    }

    fn publish_wal_end(&self) {
        self.shared
            .server_wal_end
            .store(self.stream.server_wal_end().as_u64(), Ordering::Release);
    }

    fn publish_confirmed(&self) {
        self.shared
            .confirmed
            .store(self.stream.flush_position().as_u64(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_is_the_bulk_linger_only_while_data_keeps_arriving_fast() {
        let short = Duration::from_millis(1);
        let bulk = Duration::from_millis(20);
        let ms = Duration::from_millis(1);
        let mut now = Instant::now();
        let mut pace = Pace::new(short, bulk, now);
        // A steady 10 k rows/s of 400 B: 4 kB per millisecond.
        for _ in 0..20 {
            now += ms;
            pace.took(4_000);
            assert_eq!(pace.pause(now), short);
        }
        // A steady stream's burst after a server hiccup: fast, but drained in a few
        // milliseconds, and the stream is steady again.
        for _ in 0..3 {
            now += ms;
            pace.took(100_000);
            assert_eq!(pace.pause(now), short);
        }
        now += ms;
        pace.took(4_000);
        assert_eq!(pace.pause(now), short);
        // A backlog: 64 KiB a millisecond, in however many messages; bulk once that has
        // lasted `BULK_SUSTAIN`, and it stays in bulk while the rate holds over 20 ms pauses.
        let backlog_from = now;
        loop {
            now += ms;
            for _ in 0..BULK_BYTES / 512 {
                pace.took(512);
            }
            let pause = pace.pause(now);
            if now - backlog_from < BULK_SUSTAIN {
                assert_eq!(pause, short);
            } else {
                assert_eq!(pause, bulk);
                break;
            }
        }
        now += bulk + ms;
        pace.took(1_300_000);
        assert_eq!(pace.pause(now), bulk);
        // At a few MB/s a 20 ms pause still takes in 64 KiB, but that is no backlog.
        now += bulk + ms;
        pace.took(80_000);
        assert_eq!(pace.pause(now), short);
        // A steady stream after a 20 ms server hiccup: 64 KiB at once, but slowly.
        now += 20 * ms;
        pace.took(BULK_BYTES);
        assert_eq!(pace.pause(now), short);
        // A burst after a quiet moment counts the wait: one large transaction is no backlog.
        now += 3 * ms;
        pace.idle(now);
        now += Duration::from_secs(1);
        pace.took(2 * BULK_BYTES);
        assert_eq!(pace.pause(now), short);
        // Nor do the bytes taken, or the fast stretches seen, before the task waited count
        // after it.
        let mut last = short;
        for _ in 0..20 {
            now += ms;
            pace.took(BULK_BYTES);
            last = pace.pause(now);
        }
        assert_eq!(last, bulk);
        pace.idle(now);
        now += Duration::from_micros(100);
        pace.took(BULK_BYTES);
        assert_eq!(pace.pause(now), short);
    }
}
