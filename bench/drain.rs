//! Contender (d) of the side-by-side benchmark (`bench/run.sh`): this library draining a
//! replication slot, serialising every record to JSON into a counting sink.
//!
//! Two modes, both printing one JSON object on stdout for the driver to collect:
//!
//! ```text
//! bench_drain drain   --url U --slot S --publication P --stop-table T --expect INSERTS,UPDATES,DELETES
//!     drains until the first row of table T (the driver's end marker, committed right
//!     after the workload), then checks the counts per operation
//! bench_drain latency --url U --slot S --publication P
//!     records poll time − commit time for every row until a `bench-stop` logical message
//! ```
//!
//! The source of records sits behind [`Source`] so that the benchmark measures whatever
//! the public reading API is: today the low-level [`ChangeStream`] on a slot the driver
//! copied from the base slot; the consumer-group API once it lands (one edit, in
//! `Source::open`). Either way every record crosses the same path a user's would: decode,
//! queue, application, `serde_json` into a writer.
//!
//! CPU and peak RSS are measured from outside (`/usr/bin/time`), so the process does
//! nothing but drain: no extra threads, no sampling.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pg_changestream::decode::decoder::Change;
use pg_changestream::decode::record::{Op, Record};
use pg_changestream::decode::stream::{ChangeStream, ChangeStreamOptions};
use pg_changestream::wire::ConnectConfig;
use pg_changestream::Lsn;

/// The logical message prefix the driver emits to end latency mode.
const STOP_PREFIX: &str = "bench-stop";

/// Records handed to the application per poll, as a consumer's `poll(limit, ..)` would.
const POLL_LIMIT: usize = 1024;

/// How long the drain may see nothing before it gives up (a wrong slot or publication
/// would otherwise hang the benchmark).
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

/// Where records come from. One poll returns up to [`POLL_LIMIT`] records, waiting for the
/// first one; acknowledging happens at the next poll (automatic commit).
struct Source {
    stream: ChangeStream,
    /// End LSN of the last transaction fully handed out, acknowledged at the next poll.
    pending_ack: Option<Lsn>,
}

impl Source {
    async fn open(config: &ConnectConfig, slot: &str, publication: &str) -> Result<Source, String> {
        let options = ChangeStreamOptions::new(slot, vec![publication.to_owned()]);
        let stream = ChangeStream::start(config, options)
            .await
            .map_err(|e| format!("cannot start replication on slot {slot}: {e}"))?;
        Ok(Source {
            stream,
            pending_ack: None,
        })
    }

    /// Up to `POLL_LIMIT` records; an empty batch after `wait` without any.
    async fn poll(&mut self, batch: &mut Vec<Record>, wait: Duration) -> Result<(), String> {
        batch.clear();
        // Automatic commit: what the previous poll returned is now processed.
        if let Some(end) = self.pending_ack.take() {
            self.stream.ack(end);
        }
        // Wait for the first record (commits alone do not end the wait), then take what
        // is ready without waiting.
        let deadline = tokio::time::Instant::now() + wait;
        while batch.is_empty() {
            let change = match tokio::time::timeout_at(deadline, self.stream.next_change()).await {
                Err(_) => return Ok(()),
                Ok(None) => return Err("the change stream ended".to_owned()),
                Ok(Some(change)) => change.map_err(|e| e.to_string())?,
            };
            self.take(change, batch);
        }
        while batch.len() < POLL_LIMIT {
            match self.stream.try_next_change() {
                Some(change) => self.take(change.map_err(|e| e.to_string())?, batch),
                None => break,
            }
        }
        Ok(())
    }

    fn take(&mut self, change: Change, batch: &mut Vec<Record>) {
        match change {
            Change::Record(record) => batch.push(record),
            Change::Commit { end_lsn, .. } => self.pending_ack = Some(end_lsn),
            _ => {}
        }
    }

    async fn close(mut self) -> Result<(), String> {
        if let Some(end) = self.pending_ack.take() {
            self.stream.ack(end);
        }
        self.stream.close().await.map_err(|e| e.to_string())
    }
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

fn serialise(sink: &mut CountingSink, record: &Record) -> Result<(), String> {
    serde_json::to_writer(&mut *sink, record).map_err(|e| format!("serialise: {e}"))?;
    sink.write_all(b"\n").map_err(|e| e.to_string())
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
    let mut source =
        Source::open(&args.config()?, args.get("slot")?, args.get("publication")?).await?;
    let mut counts = Counts::default();
    let mut sink = CountingSink(0);
    let mut batch = Vec::with_capacity(POLL_LIMIT);
    let mut first_record = None;
    'outer: loop {
        source.poll(&mut batch, IDLE_TIMEOUT).await?;
        if batch.is_empty() {
            return Err(format!(
                "nothing arrived for {IDLE_TIMEOUT:?} after {} rows",
                counts.rows()
            ));
        }
        first_record.get_or_insert_with(Instant::now);
        for record in &batch {
            if record.relation().is_some_and(|r| r.name() == stop_table) {
                break 'outer;
            }
            counts.add(record.op());
            serialise(&mut sink, record)?;
        }
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
    let mut source =
        Source::open(&args.config()?, args.get("slot")?, args.get("publication")?).await?;
    let mut counts = Counts::default();
    let mut sink = CountingSink(0);
    let mut batch = Vec::with_capacity(POLL_LIMIT);
    // Microseconds from commit to poll, one per row.
    let mut latencies: Vec<u64> = Vec::with_capacity(1 << 20);
    'outer: loop {
        source.poll(&mut batch, IDLE_TIMEOUT).await?;
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
            let commit = record.txn().commit_time();
            // A commit stamped after the poll (clock skew is impossible on one host, but
            // be exact) counts as zero.
            let micros = polled
                .duration_since(commit)
                .map_or(0, |d| d.as_micros() as u64);
            latencies.push(micros);
            serialise(&mut sink, record)?;
        }
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
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            match mode.as_str() {
                "drain" => drain(&args).await,
                "latency" => latency(&args).await,
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
