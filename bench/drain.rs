//! Contender (d) of the side-by-side benchmark (`bench/run.sh`): this library draining a
//! replication slot, writing every record as a JSON line into a counting sink.
//!
//! Modes, each printing one JSON object on stdout for the driver to collect:
//!
//! ```text
//! bench_drain create-group --url U --group G --tables T1,T2 [--message-prefix P] [--partitions N]
//!     enables the tables and creates the consumer group before the workload, so its slot
//!     starts where the copied slots of the other contenders start
//! bench_drain drain --url U SOURCE --stop-table T --expect INSERTS,UPDATES,DELETES [--idle-timeout S]
//!     drains until the first row of table T (the driver's end marker, committed right
//!     after the workload), then checks the counts per operation
//! bench_drain latency --url U SOURCE
//!     records poll time − commit time for every row until a `bench-stop` logical message
//!
//! SOURCE: --group G --tables T1,T2 [--message-prefix P]   the consumer-group API (automatic
//!                                                          commit): contender (d), and (e)
//!                                                          on a group made with --partitions
//!         --slot S --publication P                         the low-level ChangeStream on a
//!                                                          copied slot: the consumer's
//!                                                          overhead is the difference
//! --poll-limit N: records per poll (default 4096)
//! BENCH_BULK_LINGER_US=N, BENCH_LINGER_US=N: the ChangeStream source's bulk linger and
//! linger (before/after comparisons)
//! BENCH_JSON=serde: serialise each record with serde_json (`Record`'s `Serialize`, the path
//! before the JSON writer) instead of the `tail` line from `decode::json`; BENCH_JSON=typed:
//! no JSON, every column of every image decoded to a typed `Value` (the library path for
//! users who read values)
//! ```
//!
//! Either way every record crosses the path a user's would: decode, queue, application,
//! then the lines of a poll formatted into one buffer and written to a counting sink with
//! one write.
//!
//! CPU and peak RSS are measured from outside (`/usr/bin/time`), so the process does
//! nothing but drain: no extra threads, no sampling.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pg_changestream::consumer::{CommitMode, Consumer, ConsumerBuilder, StartLocation};
use pg_changestream::consumer::{Op, Record};
use pg_changestream::json::LineBuffer;
use pg_changestream::stream::Change;
use pg_changestream::stream::{ChangeStream, ChangeStreamOptions};
use pg_changestream::ConnectConfig;
use pg_changestream::Lsn;

/// The logical message prefix the driver emits to end latency mode.
const STOP_PREFIX: &str = "bench-stop";

/// Records handed to the application per poll (`--poll-limit`), as `poll(limit, ..)`.
const POLL_LIMIT: usize = 4096;

/// How long the drain may see nothing before it gives up (a wrong slot or publication
/// would otherwise hang the benchmark); `--idle-timeout SECONDS`. A large transaction shows
/// nothing until its commit, so the large-transaction mode passes more.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A sink that counts bytes, standing in for a socket or a file.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where records come from. One poll returns up to `limit` records, waiting for the first
/// one; what a poll returned is acknowledged at the next poll (automatic commit).
enum Source {
    /// The consumer-group API: what users of the library call.
    Group(Box<Consumer>, Option<Instant>),
    /// The low-level change stream on a copied slot: the consumer's overhead is the
    /// difference between the two.
    Stream {
        stream: ChangeStream,
        /// End LSN of the last transaction fully handed out, acknowledged at the next poll.
        pending_ack: Option<Lsn>,
    },
}

impl Source {
    /// `--group G --tables T1,T2 [--message-prefix P]`, or `--slot S --publication P`.
    async fn open(args: &Args) -> Result<Source, String> {
        let config = args.config()?;
        if let Ok(group) = args.get("group") {
            let consumer = group_builder(config, group, args)?
                .build()
                .await
                .map_err(|e| format!("cannot start consumer group {group}: {e}"))?;
            let manual = std::env::var("BENCH_COMMIT").is_ok_and(|v| v == "manual");
            return Ok(Source::Group(Box::new(consumer), manual.then(Instant::now)));
        }
        let slot = args.get("slot")?;
        let mut options = ChangeStreamOptions::new(slot, vec![args.get("publication")?.to_owned()]);
        if let Ok(us) = std::env::var("BENCH_BULK_LINGER_US") {
            let us = us
                .parse()
                .map_err(|e| format!("BENCH_BULK_LINGER_US={us}: {e}"))?;
            options.bulk_linger = Duration::from_micros(us);
        }
        if let Ok(us) = std::env::var("BENCH_LINGER_US") {
            let us = us
                .parse()
                .map_err(|e| format!("BENCH_LINGER_US={us}: {e}"))?;
            options.linger = Duration::from_micros(us);
        }
        let stream = ChangeStream::start(&config, options)
            .await
            .map_err(|e| format!("cannot start replication on slot {slot}: {e}"))?;
        Ok(Source::Stream {
            stream,
            pending_ack: None,
        })
    }

    async fn poll(
        &mut self,
        batch: &mut Vec<Record>,
        limit: usize,
        wait: Duration,
    ) -> Result<(), String> {
        batch.clear();
        match self {
            Source::Group(consumer, last_commit) => {
                if let Some(at) = last_commit {
                    if at.elapsed() >= Duration::from_secs(1) {
                        consumer
                            .commit()
                            .await
                            .map_err(|e| format!("commit: {e}"))?;
                        *at = Instant::now();
                    }
                }
                let bundle = consumer
                    .poll(limit, wait)
                    .await
                    .map_err(|e| format!("poll: {e}"))?;
                batch.extend(bundle.into_records());
                Ok(())
            }
            Source::Stream {
                stream,
                pending_ack,
            } => {
                if let Some(end) = pending_ack.take() {
                    stream.ack(end);
                }
                // Wait for the first record (commits alone do not end the wait), then take
                // what is ready without waiting.
                let deadline = tokio::time::Instant::now() + wait;
                while batch.is_empty() {
                    let change = match tokio::time::timeout_at(deadline, stream.next_change()).await
                    {
                        Err(_) => return Ok(()),
                        Ok(None) => return Err("the change stream ended".to_owned()),
                        Ok(Some(change)) => change.map_err(|e| e.to_string())?,
                    };
                    take(change, batch, pending_ack);
                }
                while batch.len() < limit {
                    match stream.try_next_change() {
                        Some(change) => {
                            take(change.map_err(|e| e.to_string())?, batch, pending_ack)
                        }
                        None => break,
                    }
                }
                Ok(())
            }
        }
    }

    async fn close(self) -> Result<(), String> {
        match self {
            Source::Group(consumer, _) => consumer.close().await.map_err(|e| e.to_string()),
            Source::Stream {
                stream,
                pending_ack,
            } => {
                if let Some(end) = pending_ack {
                    stream.ack(end);
                }
                stream.close().await.map_err(|e| e.to_string())
            }
        }
    }
}

fn take(change: Change, batch: &mut Vec<Record>, pending_ack: &mut Option<Lsn>) {
    match change {
        Change::Record(record) => batch.push(record),
        Change::Commit { end_lsn, .. } => *pending_ack = Some(end_lsn),
        _ => {}
    }
}

/// The group's builder: its tables start at `Latest` (the group is created before the
/// workload, so "latest" is everything the workload commits, as for the copied slots).
fn group_builder(
    config: ConnectConfig,
    group: &str,
    args: &Args,
) -> Result<ConsumerBuilder, String> {
    // BENCH_COMMIT=manual (a diagnostic, not a contender): commit at most once a second
    // instead of at every poll, to separate the cost of committing from the rest.
    let mode = match std::env::var("BENCH_COMMIT").as_deref() {
        Ok("manual") => CommitMode::Manual,
        _ => CommitMode::Automatic,
    };
    let mut builder = ConsumerBuilder::new(config, group).commit_mode(mode);
    for table in args.get("tables")?.split(',') {
        builder = builder.add_table(table, StartLocation::Latest);
    }
    if let Ok(prefix) = args.get("message-prefix") {
        builder = builder.message_prefix(prefix);
    }
    if let Ok(partitions) = args.get("partitions") {
        let partitions = partitions
            .parse()
            .map_err(|e| format!("--partitions {partitions}: {e}"))?;
        builder = builder.partitions(partitions);
    }
    Ok(builder)
}

/// `create-group`: enables the tables (REPLICA IDENTITY FULL) and creates the group, so
/// that its slot starts before the workload; then leaves it.
async fn create_group(args: &Args) -> Result<String, String> {
    let config = args.config()?;
    let group = args.get("group")?;
    for table in args.get("tables")?.split(',') {
        pg_changestream::consumer::enable_change_streaming(&config, table, true)
            .await
            .map_err(|e| format!("enable change streaming for {table}: {e}"))?;
    }
    let consumer = group_builder(config, group, args)?
        .build()
        .await
        .map_err(|e| format!("cannot create consumer group {group}: {e}"))?;
    consumer.close().await.map_err(|e| e.to_string())?;
    Ok(format!("{{\"ok\":true,\"group\":\"{group}\"}}"))
}

#[derive(Default)]
struct Counts {
    inserts: u64,
    updates: u64,
    deletes: u64,
    other: u64,
}

impl Counts {
    fn add(&mut self, op: Op) {
        match op {
            Op::Insert => self.inserts += 1,
            Op::Update => self.updates += 1,
            Op::Delete => self.deletes += 1,
            _ => self.other += 1,
        }
    }

    fn rows(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// How records are consumed (`BENCH_JSON`).
#[derive(Clone, Copy)]
enum Output {
    /// The `tail` line from the JSON writer (the default).
    Line,
    /// `serde_json` over `Record` (before the writer).
    Serde,
    /// No JSON: every value of every image decoded to a typed `Value`.
    Typed,
}

impl Output {
    fn from_env() -> Result<Output, String> {
        match std::env::var("BENCH_JSON").as_deref() {
            Err(_) | Ok("line") => Ok(Output::Line),
            Ok("serde") => Ok(Output::Serde),
            Ok("typed") => Ok(Output::Typed),
            Ok(other) => Err(format!("BENCH_JSON={other}: use line, serde or typed")),
        }
    }
}

/// The records of one poll, formatted into `buf` and written to `sink` with one write.
fn serialise(
    output: Output,
    buf: &mut Vec<u8>,
    lines: &mut LineBuffer,
    sink: &mut CountingSink,
    record: &Record,
) -> Result<(), String> {
    match output {
        Output::Line => lines.push(record),
        Output::Serde => {
            serde_json::to_writer(&mut *buf, record).map_err(|e| format!("serialise: {e}"))?;
            buf.push(b'\n');
        }
        Output::Typed => {
            let before = record.before();
            for image in [record.key(), before.image(), record.current()]
                .into_iter()
                .flatten()
            {
                for (name, value) in image.iter() {
                    sink.0 += name.len() as u64;
                    std::hint::black_box(&value);
                }
            }
        }
    }
    Ok(())
}

fn flush(buf: &mut Vec<u8>, lines: &mut LineBuffer, sink: &mut CountingSink) -> Result<(), String> {
    sink.write_all(buf).map_err(|e| e.to_string())?;
    buf.clear();
    lines.write_to(sink).map_err(|e| e.to_string())
}

async fn drain(args: &Args) -> Result<String, String> {
    let expect: Vec<u64> = args
        .get("expect")?
        .split(',')
        .map(|n| n.parse::<u64>().map_err(|e| format!("--expect {n}: {e}")))
        .collect::<Result<_, _>>()?;
    let [inserts, updates, deletes] = expect[..] else {
        return Err("--expect takes INSERTS,UPDATES,DELETES".to_owned());
    };
    let stop_table = args.get("stop-table")?;
    let started = Instant::now();
    let limit = args.poll_limit()?;
    let idle_timeout = args.idle_timeout()?;
    let mut source = Source::open(args).await?;
    let mut counts = Counts::default();
    let mut sink = CountingSink(0);
    let output = Output::from_env()?;
    let mut buf = Vec::new();
    let mut lines = LineBuffer::new();
    let mut batch = Vec::with_capacity(limit);
    let mut first_record = None;
    // With several partitions the end marker reaches one of them while the others may still
    // be behind: the drain ends once the marker was seen and every expected row arrived.
    let total = inserts + updates + deletes;
    let mut marker_seen = false;
    while !(marker_seen && counts.rows() >= total) {
        source.poll(&mut batch, limit, idle_timeout).await?;
        if batch.is_empty() {
            return Err(format!(
                "nothing arrived for {idle_timeout:?} after {} rows",
                counts.rows()
            ));
        }
        first_record.get_or_insert_with(Instant::now);
        for record in &batch {
            if record.relation().is_some_and(|r| r.name() == stop_table) {
                marker_seen = true;
                continue;
            }
            counts.add(record.op());
            serialise(output, &mut buf, &mut lines, &mut sink, record)?;
        }
        flush(&mut buf, &mut lines, &mut sink)?;
    }
    let drained = started.elapsed();
    source.close().await?;
    let ok = counts.inserts == inserts && counts.updates == updates && counts.deletes == deletes;
    let result = format!(
        "{{\"ok\":{ok},\"inserts\":{},\"updates\":{},\"deletes\":{},\"other\":{},\"json_bytes\":{},\"drain_s\":{:.3},\"first_record_s\":{:.3}}}",
        counts.inserts,
        counts.updates,
        counts.deletes,
        counts.other,
        sink.0,
        drained.as_secs_f64(),
        first_record.map_or(0.0, |t| t.duration_since(started).as_secs_f64()),
    );
    if ok {
        Ok(result)
    } else {
        Err(format!(
            "wrong counts (expected {inserts},{updates},{deletes}): {result}"
        ))
    }
}

async fn latency(args: &Args) -> Result<String, String> {
    let limit = args.poll_limit()?;
    let mut source = Source::open(args).await?;
    let mut counts = Counts::default();
    let mut sink = CountingSink(0);
    let output = Output::from_env()?;
    let mut buf = Vec::new();
    let mut lines = LineBuffer::new();
    let mut batch = Vec::with_capacity(limit);
    // Microseconds from commit to poll, one per row.
    let mut latencies: Vec<u64> = Vec::with_capacity(1 << 20);
    'outer: loop {
        source.poll(&mut batch, limit, IDLE_TIMEOUT).await?;
        if batch.is_empty() {
            return Err(format!("nothing arrived for {IDLE_TIMEOUT:?}"));
        }
        let polled = SystemTime::now();
        for record in &batch {
            if let Some((prefix, _)) = record.message_content() {
                if prefix == STOP_PREFIX {
                    break 'outer;
                }
                continue;
            }
            counts.add(record.op());
            let commit = record.txn().commit_time().unwrap_or(polled);
            // A commit stamped after the poll (clock skew is impossible on one host, but
            // be exact) counts as zero.
            let micros = polled
                .duration_since(commit)
                .map_or(0, |d| d.as_micros() as u64);
            latencies.push(micros);
            serialise(output, &mut buf, &mut lines, &mut sink, record)?;
        }
        flush(&mut buf, &mut lines, &mut sink)?;
    }
    source.close().await?;
    if latencies.is_empty() {
        return Err("no rows arrived before the stop message".to_owned());
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1] as f64 / 1000.0
    };
    Ok(format!(
        "{{\"ok\":true,\"rows\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
        latencies.len(),
        pct(50.0),
        pct(99.0),
        pct(99.9),
        pct(100.0)
    ))
}

/// `--key value` pairs.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = raw.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {key}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_owned(), value.clone());
        }
        Ok(Args(map))
    }

    fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    fn poll_limit(&self) -> Result<usize, String> {
        match self.0.get("poll-limit") {
            None => Ok(POLL_LIMIT),
            Some(n) => n.parse().map_err(|e| format!("--poll-limit {n}: {e}")),
        }
    }

    fn idle_timeout(&self) -> Result<Duration, String> {
        match self.0.get("idle-timeout") {
            None => Ok(IDLE_TIMEOUT),
            Some(s) => s
                .parse()
                .map(Duration::from_secs)
                .map_err(|e| format!("--idle-timeout {s}: {e}")),
        }
    }

    fn config(&self) -> Result<ConnectConfig, String> {
        self.get("url")?.parse().map_err(|e| format!("--url: {e}"))
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = raw.split_first() else {
        eprintln!(
            "usage: bench_drain drain|latency --url U --slot S --publication P [--expect I,U,D]"
        );
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|args| {
        // The default is tokio's multi-thread runtime, what most applications run;
        // BENCH_RUNTIME=current-thread measures the single-threaded one (no cross-thread
        // hand-off between the connection task and the application).
        let runtime = match std::env::var("BENCH_RUNTIME").as_deref() {
            Ok("current-thread") => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            _ => tokio::runtime::Runtime::new(),
        }
        .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            match mode.as_str() {
                "drain" => drain(&args).await,
                "latency" => latency(&args).await,
                "create-group" => create_group(&args).await,
                other => Err(format!("unknown mode {other}; use drain or latency")),
            }
        })
    });
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench_drain: {message}");
            ExitCode::FAILURE
        }
    }
}
