//! Faults, and what the consumer delivers through them. Every scenario runs a writer whose
//! every committed change is known (an upsert/delete workload where each change carries a
//! unique sequence number, outcomes of interrupted transactions resolved afterwards) and
//! checks what the consumers delivered against it: after dedupe by event id, exactly the
//! writer's changes in commit order (so also per key), each redelivery identical to the first
//! delivery, and nothing delivered again once it was known committed.
//!
//! Scenarios: consumer processes killed with SIGKILL at random points (manual and automatic
//! commit), server immediate shutdowns and restarts mid-stream (each also a crash between a
//! commit and the next checkpoint: the durable cursor must keep committed work from coming
//! back), connection cuts and stalls through a fault proxy (`fault_proxy.rs`), objects
//! dropped or changed while streaming, and a consumer that stops polling.
//!
//! CI runs reduced counts; `scripts/soak.sh` sets the full ones through
//! `PG_CHANGESTREAM_SOAK_CRASHES`, `_RESTARTS` and `_CUTS`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    enable_change_streaming, CommitMode, Consumer, ConsumerBuilder, Op, Record, StartLocation,
};
use pg_changestream::testing::{ClusterOptions, LocalCluster, ShutdownMode, TestServer};
use pg_changestream::{ConnectConfig, Lsn};
use tokio_postgres::{Client, NoTls};

use crate::fault_proxy::{self, FaultProxy};
use crate::recovery::{committed_up_to, wait_slot_inactive};

fn server() -> &'static TestServer {
    match TestServer::shared() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A count from the environment (the soak script's full counts), else the CI default.
fn count(name: &str, ci: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(ci)
}

async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `items (id int primary key, seq bigint, pad text)` with before-images, so that a delete
/// carries the sequence number of the row it removed.
async fn items_table(client: &Client, config: &ConnectConfig) {
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, seq bigint NOT NULL, pad text)")
        .await
        .unwrap();
    enable_change_streaming(config, "items", true)
        .await
        .unwrap();
}

// ------------------------------------------------------------------------------------------
// The writer

/// One committed change: insert or update setting `seq`, or a delete of the row that had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Change {
    op: char,
    key: i32,
    seq: i64,
}

/// Writes transactions of one to four changes on distinct keys and records the ones that
/// committed. A transaction interrupted by a lost connection is resolved after reconnecting
/// by looking at its first key (the transaction is atomic).
struct Writer {
    config: tokio_postgres::Config,
    client: Option<Client>,
    rng: fastrand::Rng,
    keys: i32,
    next_seq: i64,
    rows: HashMap<i32, i64>,
    log: Vec<Change>,
    /// Transactions whose outcome had to be resolved after a failure.
    resolved: u64,
}

impl Writer {
    fn new(config: tokio_postgres::Config, seed: u64, keys: i32) -> Writer {
        Writer {
            config,
            client: None,
            rng: fastrand::Rng::with_seed(seed),
            keys,
            next_seq: 1,
            rows: HashMap::new(),
            log: Vec::new(),
            resolved: 0,
        }
    }

    /// A connection, retrying for up to two minutes (the server may be restarting).
    async fn client(&mut self) -> &Client {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match self.config.connect(NoTls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        self.client = Some(client);
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "writer cannot reconnect: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        self.client.as_ref().unwrap()
    }

    /// Writes one transaction; returns once its outcome is known.
    async fn step(&mut self) {
        let size = if self.rng.u8(0..4) == 0 {
            self.rng.usize(2..=4)
        } else {
            1
        };
        let mut keys = Vec::new();
        while keys.len() < size {
            let key = self.rng.i32(0..self.keys);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut sql = String::from("BEGIN;");
        let mut changes = Vec::new();
        for key in keys {
            let change = match self.rows.get(&key) {
                Some(&seq) if self.rng.u8(0..4) == 0 => Change { op: 'D', key, seq },
                Some(_) => Change {
                    op: 'U',
                    key,
                    seq: self.take_seq(),
                },
                None => Change {
                    op: 'I',
                    key,
                    seq: self.take_seq(),
                },
            };
            // Now and then a row larger than a network read, so cuts land inside it.
            let pad = if self.rng.u8(0..20) == 0 { 6000 } else { 10 };
            match change.op {
                'I' => write!(
                    sql,
                    "INSERT INTO items VALUES ({key}, {}, repeat('p', {pad}));",
                    change.seq
                ),
                'U' => write!(
                    sql,
                    "UPDATE items SET seq = {}, pad = repeat('u', {pad}) WHERE id = {key};",
                    change.seq
                ),
                _ => write!(sql, "DELETE FROM items WHERE id = {key};"),
            }
            .unwrap();
            changes.push(change);
        }
        sql.push_str("COMMIT;");
        let result = self.client().await.batch_execute(&sql).await;
        let committed = match result {
            Ok(()) => true,
            Err(e) => {
                assert!(
                    e.as_db_error().is_none_or(|db| {
                        // The server going down under the transaction.
                        db.code().code().starts_with("57") || db.code().code().starts_with("08")
                    }),
                    "writer: unexpected error {e}"
                );
                self.client = None;
                self.resolved += 1;
                let first = changes[0];
                let row = loop {
                    match self
                        .client()
                        .await
                        .query_opt("SELECT seq FROM items WHERE id = $1", &[&first.key])
                        .await
                    {
                        Ok(row) => break row.map(|r| r.get::<_, i64>(0)),
                        // Down again already: ask once it is back.
                        Err(_) => self.client = None,
                    }
                };
                match first.op {
                    'D' => row.is_none(),
                    _ => row == Some(first.seq),
                }
            }
        };
        if committed {
            for change in &changes {
                match change.op {
                    'D' => self.rows.remove(&change.key),
                    _ => self.rows.insert(change.key, change.seq),
                };
            }
            self.log.extend(changes);
        }
    }

    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// Runs a writer until `stop`, pausing `pause` between transactions; returns it (its log).
fn spawn_writer(
    mut writer: Writer,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Writer> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            writer.step().await;
            tokio::time::sleep(pause).await;
        }
        writer
    })
}

// ------------------------------------------------------------------------------------------
// What consumers delivered, and the check

/// One line per delivered record (`R <event id> <op> <key> <seq>`) and per position known
/// committed (`C <event id>`: everything up to it); the same format in memory and in the
/// files of child processes.
fn record_line(record: &Record) -> String {
    let op = match record.op() {
        Op::Insert => 'I',
        Op::Update => 'U',
        Op::Delete => 'D',
        other => panic!("unexpected {other:?} record"),
    };
    let image = match record.op() {
        Op::Delete => record.before().image().expect("a full before-image"),
        _ => record.current().expect("a new row"),
    };
    let int = |column: &str| {
        image
            .get(column)
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("{column} of {}", record.event_id()))
    };
    format!(
        "R {} {op} {} {}\n",
        record.event_id(),
        int("id"),
        int("seq")
    )
}

/// Parses `<lsn>:<index>`.
fn event_id(text: &str) -> (Lsn, u64) {
    let (lsn, index) = text.rsplit_once(':').expect("lsn:index");
    (lsn.parse().unwrap(), index.parse().unwrap())
}

/// The counts of a check.
#[derive(Debug, Default)]
struct Checked {
    records: usize,
    duplicates: usize,
    lost: usize,
}

/// Checks delivery lines (in the order they were written, over all consumers) against the
/// writer's log: dedupe by event id gives exactly the log, in order; a redelivery has the
/// content of the first delivery; nothing at or before a committed marker comes again.
fn check(log: &[Change], lines: &[String]) -> Checked {
    let mut first: HashMap<(Lsn, u64), Change> = HashMap::new();
    let mut deduped: Vec<Change> = Vec::new();
    let mut committed: Option<(Lsn, u64)> = None;
    let mut checked = Checked::default();
    // Received but certainly not committed (no commit could start since), and what a new
    // consumer therefore has to deliver again.
    let mut uncommitted: Vec<(Lsn, u64)> = Vec::new();
    let mut required: Vec<(Lsn, u64)> = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["S", ..] => {
                // A new consumer: what the last one received after its last possible
                // commit must come again.
                required.append(&mut uncommitted);
            }
            ["B"] => uncommitted.clear(),
            ["C", id] => {
                let id = event_id(id);
                committed = committed.max(Some(id));
            }
            ["R", id, op, key, seq] => {
                let id = event_id(id);
                let change = Change {
                    op: op.chars().next().unwrap(),
                    key: key.parse().unwrap(),
                    seq: seq.parse().unwrap(),
                };
                checked.records += 1;
                uncommitted.push(id);
                required.retain(|r| *r != id);
                if let Some(c) = committed {
                    assert!(
                        id > c,
                        "{line:?} delivered again after it was committed (up to {c:?})"
                    );
                }
                match first.get(&id) {
                    Some(earlier) => {
                        assert_eq!(*earlier, change, "a redelivery of {id:?} differs");
                        checked.duplicates += 1;
                    }
                    None => {
                        first.insert(id, change);
                        deduped.push(change);
                    }
                }
            }
            _ => panic!("bad delivery line {line:?}"),
        }
    }
    assert!(
        required.is_empty(),
        "received but uncommitted when its consumer was killed, and not delivered again: \
         {required:?}"
    );
    let matched = log.iter().zip(&deduped).take_while(|(a, b)| a == b).count();
    checked.lost = log.len().saturating_sub(deduped.len());
    assert!(
        matched == log.len() && deduped.len() == log.len(),
        "deliveries differ from the writer's log at change {matched}: log has {:?}, delivered \
         {:?} ({} committed changes, {} delivered after dedupe)",
        log.get(matched),
        deduped.get(matched),
        log.len(),
        deduped.len()
    );
    checked
}

/// Distinct event ids among delivery lines.
fn distinct(lines: &[String]) -> usize {
    let mut ids: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("R "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// Polls with random limits (so transactions span bundles) and writes delivery lines to
/// `sink` after each poll. Manual mode commits most bundles (through the bundle or the
/// consumer) and marks them; automatic mode, in a consumer that lives on, marks a poll once
/// two later polls returned (it is committed by then: a live consumer never hands out a
/// committed record again, whatever the server forgets). A consumer killed in automatic
/// mode marks nothing: its commits reach the server a moment after the poll that made them
/// (the slot at once, the cursor within the auto-commit interval), so the test marks what
/// the server holds after the kill instead.
struct Delivery {
    mode: CommitMode,
    rng: fastrand::Rng,
    /// The last event id of each earlier non-empty poll (automatic mode).
    polled: Vec<String>,
    /// Automatic mode marks polls committed (not in a consumer that is killed).
    marks: bool,
}

impl Delivery {
    fn new(mode: CommitMode, seed: u64) -> Delivery {
        Delivery {
            mode,
            rng: fastrand::Rng::with_seed(seed),
            polled: Vec::new(),
            marks: true,
        }
    }

    async fn round(
        &mut self,
        consumer: &mut Consumer,
        sink: &mut (dyn FnMut(&str) + Send),
    ) -> usize {
        let limit = self.rng.usize(1..=7);
        if self.mode == CommitMode::Automatic {
            sink("B\n"); // this poll may commit the previous one
        }
        let bundle = consumer
            .poll(limit, Duration::from_millis(200))
            .await
            .unwrap_or_else(|e| panic!("poll failed: {e}"));
        let mut text = String::new();
        if self.mode == CommitMode::Automatic && self.marks && self.polled.len() >= 2 {
            // Polls before the previous one are committed by now.
            let _ = writeln!(text, "C {}", self.polled[self.polled.len() - 2]);
        }
        for record in bundle.records() {
            text.push_str(&record_line(record));
        }
        sink(&text);
        let Some(last) = bundle.records().last().map(|r| r.event_id().to_string()) else {
            return 0;
        };
        let n = bundle.len();
        // The application's work on the records: crashes land here too.
        let work = self.rng.u64(0..20);
        if work > 10 {
            tokio::time::sleep(Duration::from_millis(work - 10)).await;
        }
        match self.mode {
            CommitMode::Automatic => self.polled.push(last),
            // A quarter of the bundles are left uncommitted (the next commit takes them
            // along; a crash delivers them again).
            CommitMode::Manual if self.rng.u8(0..4) == 0 => {}
            CommitMode::Manual => {
                sink("B\n"); // a commit may happen from here on
                let committed = if self.rng.bool() {
                    consumer.commit().await
                } else {
                    bundle.commit().await
                };
                committed.unwrap_or_else(|e| panic!("commit failed: {e}"));
                sink(&format!("C {last}\n"));
            }
        }
        n
    }
}

/// Consumes until the lines hold `target` distinct records and a few polls brought nothing
/// new; closes the consumer (automatic mode commits its last poll).
async fn drain(
    mut consumer: Consumer,
    delivery: &mut Delivery,
    lines: &mut Vec<String>,
    target: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while distinct(lines) < target || quiet < 3 {
        assert!(
            Instant::now() < deadline,
            "drain: {} of {target} distinct records within 120 s",
            distinct(lines)
        );
        let n = delivery
            .round(&mut consumer, &mut |text| {
                lines.extend(text.lines().map(str::to_owned))
            })
            .await;
        quiet = if n == 0 { quiet + 1 } else { 0 };
    }
    if delivery.mode == CommitMode::Manual {
        consumer.commit().await.unwrap();
    }
    consumer.close().await.unwrap();
}

/// Nothing arrives for a new consumer of the group: everything was committed.
async fn assert_all_committed(builder: ConsumerBuilder) {
    let mut consumer = builder.build().await.unwrap();
    for _ in 0..3 {
        let bundle = consumer
            .poll(100, Duration::from_millis(300))
            .await
            .unwrap();
        let lines: Vec<String> = bundle.records().map(record_line).collect();
        assert!(lines.is_empty(), "delivered again after commit: {lines:?}");
    }
    consumer.close().await.unwrap();
}

fn report(scenario: &str, faults: &str, writer: &Writer, checked: &Checked) {
    eprintln!(
        "{scenario}: {faults}; {} changes committed ({} transactions resolved after a failure), \
         {} records checked, {} duplicates, {} lost",
        writer.log.len(),
        writer.resolved,
        checked.records,
        checked.duplicates,
        checked.lost
    );
}

// ------------------------------------------------------------------------------------------
// 1. Consumer crashes: child processes killed with SIGKILL

const CHILD_URL: &str = "PG_CHANGESTREAM_CRASH_CHILD_URL";
const CHILD_OUT: &str = "PG_CHANGESTREAM_CRASH_CHILD_OUT";
const CHILD_MODE: &str = "PG_CHANGESTREAM_CRASH_CHILD_MODE";
const CHILD_SEED: &str = "PG_CHANGESTREAM_CRASH_CHILD_SEED";

fn crash_builder(config: ConnectConfig, mode: CommitMode) -> ConsumerBuilder {
    // One group id per mode: slot names are cluster-wide (see bad_input.rs on the same
    // group id in two databases).
    ConsumerBuilder::new(config, format!("crashing {mode:?}"))
        .add_table("items", StartLocation::Latest)
        .commit_mode(mode)
        // A killed member counts as gone soon, so the next one takes its slot over quickly.
        .max_poll_interval(Duration::from_secs(1))
        .reconnect_timeout(Duration::from_secs(60))
}

async fn consumer_crashes(mode: CommitMode, name: &str) {
    let crashes = count("PG_CHANGESTREAM_SOAK_CRASHES", 12).div_ceil(2);
    let seed = fault_proxy::seed(name);
    let mut rng = fastrand::Rng::with_seed(seed);
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let config = ConnectConfig::new(db.config());
    items_table(&client, &config).await;
    // The group exists before the writer starts, so `Latest` misses nothing.
    crash_builder(config.clone(), mode)
        .build()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        Writer::new(db.config(), seed, 50),
        Duration::from_millis(3),
        Arc::clone(&stop),
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliveries");
    let group = format!("crashing {mode:?}");
    let mut survived = 0;
    for i in 0..crashes {
        let log = dir.path().join(format!("child-{i}.log"));
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "faults::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, db.url())
            .env(CHILD_OUT, &out)
            .env(CHILD_MODE, format!("{mode:?}"))
            .env(CHILD_SEED, rng.u64(..).to_string())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join(format!("child-{i}.err"))).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(300..2000))).await;
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(dir.path().join(format!("child-{i}.err")))
                .unwrap_or_default();
            panic!("child {i} exited by itself ({status}) before the kill: {err}");
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        survived += 1;
        // What the server holds now must never come again.
        wait_slot_inactive(&client, &group).await;
        let (lsn, index) = committed_up_to(&client, &group).await;
        let mut text = std::fs::read_to_string(&out).unwrap_or_default();
        // A line cut short by the kill was never seen by the application.
        text.truncate(text.rfind('\n').map_or(0, |end| end + 1));
        text.push_str(&format!("C {lsn}:{index}\n"));
        std::fs::write(&out, text).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let writer = writer.await.unwrap();

    let text = std::fs::read_to_string(&out).unwrap_or_default();
    // A line cut short by the kill was never seen by the application.
    let mut lines: Vec<String> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end().to_owned())
        .collect();
    let before_drain = distinct(&lines);
    lines.push("S final consumer".to_owned());
    let mut delivery = Delivery::new(mode, rng.u64(..));
    let consumer = crash_builder(config.clone(), mode).build().await.unwrap();
    drain(consumer, &mut delivery, &mut lines, writer.log.len()).await;
    let checked = check(&writer.log, &lines);
    report(
        name,
        &format!(
            "{survived} consumer crashes survived ({before_drain} distinct records delivered \
             before the final consumer)"
        ),
        &writer,
        &checked,
    );
    assert!(
        before_drain > 0,
        "the killed consumers delivered nothing: the kills came too early"
    );
    assert_all_committed(crash_builder(config, mode)).await;
}

#[tokio::test]
async fn consumers_killed_at_random_points_lose_nothing_manual_commit() {
    consumer_crashes(CommitMode::Manual, "consumer crashes (manual commit)").await;
}

#[tokio::test]
async fn consumers_killed_at_random_points_lose_nothing_automatic_commit() {
    consumer_crashes(CommitMode::Automatic, "consumer crashes (automatic commit)").await;
}

/// The consumer process the crash tests kill: consumes and appends delivery lines to a file
/// until it is killed.
#[tokio::test]
#[ignore = "run in a child process by consumers_killed_at_random_points_lose_nothing_*"]
async fn crash_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let out = std::env::var(CHILD_OUT).unwrap();
    let mode = match std::env::var(CHILD_MODE).unwrap().as_str() {
        "Manual" => CommitMode::Manual,
        _ => CommitMode::Automatic,
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let config: ConnectConfig = url.parse().unwrap();
    let mut consumer = crash_builder(config, mode).build().await.unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .unwrap();
    let mut delivery = Delivery::new(mode, seed);
    delivery.marks = false;
    {
        use std::io::Write as _;
        writeln!(file, "S child started").unwrap();
    }
    loop {
        delivery
            .round(&mut consumer, &mut |text| {
                use std::io::Write as _;
                // One write per poll: a kill cuts at most the last line short.
                file.write_all(text.as_bytes()).unwrap();
            })
            .await;
    }
}

// ------------------------------------------------------------------------------------------
// 2. Server immediate shutdowns and restarts mid-stream (5. crash between commit and
//    checkpoint, many times over)

/// A cluster of its own, or `None` — said loudly — when the test server is not local.
async fn own_cluster(test: &str, settings: &[(&str, &str)]) -> Option<LocalCluster> {
    let server = server();
    if !server.is_local() {
        eprintln!("{test}: skipped, the test server is not a local cluster (needs local binaries)");
        return None;
    }
    let options = ClusterOptions {
        bin_dir: server.bin_dir().map(Path::to_path_buf),
        settings: settings
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ssl: false,
    };
    Some(
        tokio::task::spawn_blocking(move || LocalCluster::start(options))
            .await
            .unwrap()
            .unwrap(),
    )
}

/// Consumes on a task of its own into `lines` until `stop`; closes the consumer.
fn spawn_consumer(
    consumer: Consumer,
    mut delivery: Delivery,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = consumer;
        while !stop.load(Ordering::SeqCst) {
            delivery
                .round(&mut consumer, &mut |text| {
                    lines
                        .lock()
                        .unwrap()
                        .extend(text.lines().map(str::to_owned))
                })
                .await;
        }
        if delivery.mode == CommitMode::Manual {
            consumer.commit().await.unwrap();
        }
        consumer.close().await.unwrap();
    })
}

/// Waits until `lines` hold `target` distinct records.
async fn wait_for(lines: &Mutex<Vec<String>>, target: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let have = distinct(&lines.lock().unwrap());
        if have >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {target} distinct records within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_crashes_and_restarts_mid_stream_lose_nothing_and_repeat_nothing_committed() {
    server_crashes(
        CommitMode::Manual,
        "server immediate shutdowns (manual commit)",
    )
    .await;
}

#[tokio::test]
async fn server_crashes_and_restarts_mid_stream_lose_nothing_automatic_commit() {
    server_crashes(
        CommitMode::Automatic,
        "server immediate shutdowns (automatic commit)",
    )
    .await;
}

async fn server_crashes(mode: CommitMode, name: &str) {
    let Some(mut cluster) = own_cluster(name, &[]).await else {
        return;
    };
    let restarts = count("PG_CHANGESTREAM_SOAK_RESTARTS", 5);
    let seed = fault_proxy::seed(name);
    let mut rng = fastrand::Rng::with_seed(seed);
    let config = ConnectConfig::new(cluster.admin_config());
    let client = connect(&cluster.admin_config()).await;
    items_table(&client, &config).await;
    drop(client);
    let builder = || {
        ConsumerBuilder::new(config.clone(), "restarts")
            .add_table("items", StartLocation::Latest)
            .commit_mode(mode)
            .reconnect_timeout(Duration::from_secs(120))
    };
    let consumer = builder().build().await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stop_writer = Arc::new(AtomicBool::new(false));
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        Writer::new(cluster.admin_config(), seed, 50),
        Duration::from_millis(3),
        Arc::clone(&stop_writer),
    );
    let consuming = spawn_consumer(
        consumer,
        Delivery::new(mode, rng.u64(..)),
        Arc::clone(&lines),
        Arc::clone(&stop_consumer),
    );
    for _ in 0..restarts {
        // Mid-stream: the consumer is receiving when the server goes down.
        let seen = distinct(&lines.lock().unwrap());
        wait_for(&lines, seen + 20, Duration::from_secs(120)).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        let down = Duration::from_millis(rng.u64(0..1000));
        cluster = tokio::task::spawn_blocking(move || {
            cluster.stop(ShutdownMode::Immediate).unwrap();
            std::thread::sleep(down);
            cluster.start_again().unwrap();
            cluster
        })
        .await
        .unwrap();
    }
    let seen = distinct(&lines.lock().unwrap());
    wait_for(&lines, seen + 20, Duration::from_secs(120)).await;
    stop_writer.store(true, Ordering::SeqCst);
    let writer = writer.await.unwrap();
    wait_for(&lines, writer.log.len(), Duration::from_secs(120)).await;
    stop_consumer.store(true, Ordering::SeqCst);
    consuming.await.unwrap();
    let lines = lines.lock().unwrap().clone();
    let checked = check(&writer.log, &lines);
    report(
        name,
        &format!("{restarts} immediate shutdowns and restarts survived"),
        &writer,
        &checked,
    );
    assert_all_committed(builder()).await;
}

// ------------------------------------------------------------------------------------------
// 3. Connection cuts and stalls through the fault proxy

#[tokio::test]
async fn a_replication_connection_gone_silent_without_a_close_is_reconnected_losing_nothing() {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    items_table(&client, &ConnectConfig::new(db.config())).await;
    let pg = db.config();
    let host = match &pg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the proxy needs a TCP server, not {other:?}"),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), pg.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    // Never armed: it only forwards, until it becomes a black hole.
    let proxy = FaultProxy::start(upstream, 0, 1 << 30).await;
    let mut through = tokio_postgres::Config::new();
    through
        .host("127.0.0.1")
        .port(proxy.port())
        .dbname(db.name())
        .user(pg.get_user().unwrap())
        // A short walsender timeout, so the client's receive limit (twice it, at least
        // 5 s) comes soon.
        .options("-c wal_sender_timeout=2s");
    if let Some(password) = pg.get_password() {
        through.password(password);
    }
    let mut config = ConnectConfig::new(through);
    config.set_ssl_mode(pg_changestream::config::SslMode::Disable);
    let mut consumer = ConsumerBuilder::new(config, "black hole")
        .add_table("items", StartLocation::Latest)
        .commit_mode(CommitMode::Manual)
        .max_poll_interval(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    insert(&client, 1, 3).await;
    assert_eq!(ids(&mut consumer, 3).await, [1, 2, 3]);
    consumer.commit().await.unwrap();
    // The replication connection now swallows everything and is never closed; rows
    // written meanwhile must arrive over a new one.
    proxy.blackhole_replication();
    insert(&client, 4, 6).await;
    assert_eq!(ids(&mut consumer, 3).await, [4, 5, 6]);
    assert!(consumer.stats().reconnects >= 1, "{:?}", consumer.stats());
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn connection_cuts_and_stalls_through_a_proxy_lose_nothing() {
    let name = "connection cuts and stalls";
    let faults = count("PG_CHANGESTREAM_SOAK_CUTS", 30);
    let seed = fault_proxy::seed(name);
    let mut rng = fastrand::Rng::with_seed(seed);
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let direct = ConnectConfig::new(db.config());
    items_table(&client, &direct).await;

    let pg = db.config();
    let host = match &pg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the proxy needs a TCP server, not {other:?}"),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), pg.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FaultProxy::start(upstream, seed, 48 * 1024).await;
    let mut through = tokio_postgres::Config::new();
    through
        .host("127.0.0.1")
        .port(proxy.port())
        .dbname(db.name())
        .user(pg.get_user().unwrap());
    if let Some(password) = pg.get_password() {
        through.password(password);
    }
    let mut config = ConnectConfig::new(through);
    config.set_ssl_mode(pg_changestream::config::SslMode::Disable);
    let builder = || {
        ConsumerBuilder::new(config.clone(), "cuts")
            .add_table("items", StartLocation::Latest)
            .commit_mode(CommitMode::Manual)
            .max_poll_interval(Duration::from_secs(2))
            .reconnect_timeout(Duration::from_secs(120))
    };
    let consumer = builder().build().await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stop_writer = Arc::new(AtomicBool::new(false));
    let stop_consumer = Arc::new(AtomicBool::new(false));
    // The writer connects directly: its outcomes stay certain.
    let writer = spawn_writer(
        Writer::new(db.config(), seed, 50),
        Duration::from_millis(2),
        Arc::clone(&stop_writer),
    );
    let consuming = spawn_consumer(
        consumer,
        Delivery::new(CommitMode::Manual, rng.u64(..)),
        Arc::clone(&lines),
        Arc::clone(&stop_consumer),
    );
    proxy.arm(faults);
    let deadline = Instant::now() + Duration::from_secs(600);
    while proxy.remaining() > 0 {
        assert!(
            Instant::now() < deadline,
            "only {} of {faults} faults injected in 600 s",
            faults - proxy.remaining()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.disarm();
    stop_writer.store(true, Ordering::SeqCst);
    let writer = writer.await.unwrap();
    wait_for(&lines, writer.log.len(), Duration::from_secs(120)).await;
    stop_consumer.store(true, Ordering::SeqCst);
    consuming.await.unwrap();
    let lines = lines.lock().unwrap().clone();
    let checked = check(&writer.log, &lines);
    let counts = proxy.counts();
    report(
        name,
        &format!(
            "{} cuts and {} stalls over {} proxied connections",
            counts.cuts.load(Ordering::Relaxed),
            counts.stalls.load(Ordering::Relaxed),
            counts.connections.load(Ordering::Relaxed)
        ),
        &writer,
        &checked,
    );
    assert_all_committed(builder()).await;
}

// ------------------------------------------------------------------------------------------
// 4. Objects dropped or changed while streaming

/// A database with `items`, a consumer of group `group` that has received and committed
/// rows 1..=3, and the superuser client.
async fn streaming(
    group: &str,
) -> (
    pg_changestream::testing::TestDatabase,
    Client,
    ConnectConfig,
    Consumer,
) {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let config = ConnectConfig::new(db.config());
    items_table(&client, &config).await;
    let mut consumer = ddl_builder(&config, group).build().await.unwrap();
    insert(&client, 1, 3).await;
    assert_eq!(ids(&mut consumer, 3).await, [1, 2, 3]);
    consumer.commit().await.unwrap();
    (db, client, config, consumer)
}

fn ddl_builder(config: &ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("items", StartLocation::Latest)
        .commit_mode(CommitMode::Manual)
        .max_poll_interval(Duration::from_secs(1))
        .reconnect_timeout(Duration::from_secs(20))
}

async fn insert(client: &Client, from: i32, to: i32) {
    for id in from..=to {
        client
            .execute(
                "INSERT INTO items VALUES ($1, $2, 'x')",
                &[&id, &i64::from(id)],
            )
            .await
            .unwrap();
    }
}

/// The ids of the next `count` records (or fewer, when an error or 20 s come first).
async fn ids(consumer: &mut Consumer, count: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        let bundle = consumer
            .poll(count - out.len(), Duration::from_millis(300))
            .await
            .unwrap();
        for record in bundle.records() {
            let image = record
                .current()
                .or_else(|| record.before().image())
                .unwrap();
            out.push(image.get("id").unwrap().as_i64().unwrap());
        }
    }
    out
}

/// Polls until an error, or `None` after a quiet while; the ids received meanwhile.
async fn until_error(
    consumer: &mut Consumer,
    within: Duration,
) -> (Vec<i64>, Option<pg_changestream::Error>) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(100, Duration::from_millis(300)).await {
            Ok(bundle) => {
                for record in bundle.records() {
                    let image = record
                        .current()
                        .or_else(|| record.before().image())
                        .unwrap();
                    got.push(image.get("id").unwrap().as_i64().unwrap());
                }
            }
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

async fn slot_name(client: &Client, group: &str) -> String {
    client
        .query_one(
            "SELECT slot_name::text FROM changestream.partitions WHERE group_id = $1",
            &[&group],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_slot_dropped_while_streaming_is_a_definite_error_and_never_recreated_silently() {
    let (_db, client, config, mut consumer) = streaming("slot gone").await;
    let slot = slot_name(&client, "slot gone").await;
    // The walsender holds the slot; end it and drop the slot before the consumer is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
                  WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await
            .unwrap();
        if client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "cannot drop the slot");
    }
    insert(&client, 4, 5).await;
    let (got, e) = until_error(&mut consumer, Duration::from_secs(30)).await;
    assert!(got.is_empty(), "records from a dropped slot? {got:?}");
    let e = e.expect("a definite error, not silence");
    assert!(e.is_not_found() && !e.is_transient(), "{e}");
    assert!(e.to_string().contains("dropped"), "{e}");
    drop(consumer);
    // Building the group again must not quietly create a fresh slot: rows 4 and 5 are gone
    // for this group and only an error can say so.
    let e = ddl_builder(&config, "slot gone").build().await.err();
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        e.as_ref().is_some_and(|e| e.is_not_found()) && slots == 0,
        "rebuilding a group whose slot was dropped: {e:?}, slot recreated: {}",
        slots == 1
    );
}

#[tokio::test]
async fn a_group_whose_publication_was_dropped_cannot_be_built_again_silently() {
    let (_db, client, config, consumer) = streaming("pub gone again").await;
    drop(consumer);
    let publication: String = client
        .query_one(
            "SELECT publication_name::text FROM changestream.partitions WHERE group_id = 'pub gone again'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("DROP PUBLICATION \"{publication}\""))
        .await
        .unwrap();
    insert(&client, 4, 5).await;
    let e = ddl_builder(&config, "pub gone again").build().await.err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.is_not_found() && e.to_string().contains("publication")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_table_dropped_while_streaming_delivers_everything_before_the_drop() {
    let (_db, client, _config, mut consumer) = streaming("table gone").await;
    insert(&client, 4, 5).await;
    client.batch_execute("DROP TABLE items").await.unwrap();
    let (got, e) = until_error(&mut consumer, Duration::from_secs(5)).await;
    assert_eq!(got, [4, 5], "changes before the drop (then: {e:?})");
    eprintln!("after DROP TABLE the consumer reports: {e:?}");
}

#[tokio::test]
async fn a_table_dropped_and_created_again_is_read_again_or_a_definite_error() {
    let (_db, client, config, mut consumer) = streaming("table again").await;
    client.batch_execute("DROP TABLE items").await.unwrap();
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, seq bigint NOT NULL, pad text)")
        .await
        .unwrap();
    // The user enables the new table as the consumer's error or docs would tell them to.
    let enabled = enable_change_streaming(&config, "items", true).await;
    insert(&client, 4, 5).await;
    let (got, e) = until_error(&mut consumer, Duration::from_secs(5)).await;
    eprintln!("a table created again: enable {enabled:?}, received {got:?}, error {e:?}");
    let running_ok = got == [4, 5] || e.is_some() || enabled.is_err();
    drop(consumer);
    // A consumer built again (naming the table) must not be silent about it either.
    let rebuilt = ddl_builder(&config, "table again").build().await;
    insert(&client, 6, 6).await;
    let rebuilt_ok = match rebuilt {
        Ok(mut consumer) => {
            let (got, e) = until_error(&mut consumer, Duration::from_secs(5)).await;
            eprintln!("rebuilt: received {got:?}, error {e:?}");
            got.contains(&6) || e.is_some()
        }
        Err(e) => {
            eprintln!("rebuilding: {e}");
            true
        }
    };
    assert!(
        running_ok && rebuilt_ok,
        "the new table's rows were passed over silently (running consumer: {}, rebuilt \
         consumer: {})",
        if running_ok { "ok" } else { "silent" },
        if rebuilt_ok { "ok" } else { "silent" }
    );
}

#[tokio::test]
async fn a_table_renamed_while_streaming_is_followed_or_a_definite_error() {
    let (_db, client, _config, mut consumer) = streaming("renamed").await;
    insert(&client, 4, 4).await;
    client
        .batch_execute("ALTER TABLE items RENAME TO items_renamed")
        .await
        .unwrap();
    client
        .execute("INSERT INTO items_renamed VALUES (5, 5, 'x')", &[])
        .await
        .unwrap();
    let (got, e) = until_error(&mut consumer, Duration::from_secs(5)).await;
    // The publication follows the table (by oid) and the server sends row 5; delivering it
    // or failing with an error are both honest. Passing over it is silent loss.
    eprintln!("after a rename: received {got:?}, error {e:?}");
    assert!(
        got == [4, 5] || (got == [4] && e.is_some()),
        "after a rename: received {got:?}, error {e:?}"
    );
    // An error must name the old and the new name, so the user knows what to do.
    if let Some(e) = e {
        let message = e.to_string();
        assert!(
            message.contains("items") && message.contains("items_renamed"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_table_dropped_and_created_again_is_read_once_added_back_as_the_error_says() {
    let (_db, client, config, mut consumer) = streaming("table back").await;
    client
        .batch_execute(
            "DROP TABLE items;
             CREATE TABLE items (id int PRIMARY KEY, seq bigint NOT NULL, pad text)",
        )
        .await
        .unwrap();
    let (_, e) = until_error(&mut consumer, Duration::from_secs(10)).await;
    let e = e.expect("a dropped table is a definite error");
    assert!(
        e.is_not_found() && e.to_string().contains("add_table"),
        "{e}"
    );
    // What the error says to do: enable the new table and add it back.
    enable_change_streaming(&config, "items", true)
        .await
        .unwrap();
    consumer
        .add_table("items", StartLocation::Latest)
        .await
        .unwrap();
    insert(&client, 7, 8).await;
    assert_eq!(ids(&mut consumer, 2).await, [7, 8]);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_renamed_table_read_under_its_new_name_as_the_error_says_loses_nothing() {
    let (_db, client, config, mut consumer) = streaming("renamed then followed").await;
    insert(&client, 4, 4).await;
    client
        .batch_execute(
            "ALTER TABLE items RENAME TO items_renamed;
             INSERT INTO items_renamed VALUES (5, 5, 'x')",
        )
        .await
        .unwrap();
    let (_, e) = until_error(&mut consumer, Duration::from_secs(10)).await;
    let e = e.expect("a rename is a definite error");
    assert!(e.to_string().contains("remove_table"), "{e}");
    drop(consumer);
    // What the error says to do: enable the new name, swap the names in the group.
    enable_change_streaming(&config, "items_renamed", true)
        .await
        .unwrap();
    let mut consumer = ConsumerBuilder::new(config.clone(), "renamed then followed")
        .remove_table("items")
        .add_table("items_renamed", StartLocation::FirstUncommitted)
        .commit_mode(CommitMode::Manual)
        .max_poll_interval(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    client
        .execute("INSERT INTO items_renamed VALUES (6, 6, 'x')", &[])
        .await
        .unwrap();
    // Row 4 was polled but never committed (manual mode): it comes again, before 5 and 6.
    assert_eq!(ids(&mut consumer, 3).await, [4, 5, 6]);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_column_dropped_while_streaming_changes_the_schema_of_later_records() {
    let (_db, client, _config, mut consumer) = streaming("column gone").await;
    insert(&client, 4, 4).await;
    client
        .batch_execute("ALTER TABLE items DROP COLUMN pad; INSERT INTO items VALUES (5, 5)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut records = Vec::new();
    while records.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "got {} of 3 records",
            records.len()
        );
        let bundle = consumer.poll(10, Duration::from_millis(300)).await.unwrap();
        records.extend(bundle.into_records());
    }
    // The drop is announced by a schema record before the first row without the column.
    assert_eq!(records[1].op(), pg_changestream::consumer::Op::Schema);
    let records = [records[0].clone(), records[2].clone()];
    let columns = |r: &Record| -> Vec<String> {
        r.current()
            .unwrap()
            .iter()
            .map(|(n, _)| n.to_owned())
            .collect()
    };
    assert_eq!(columns(&records[0]), ["id", "seq", "pad"]);
    assert_eq!(columns(&records[1]), ["id", "seq"]);
}

// ------------------------------------------------------------------------------------------
// 6. A consumer that stops polling

async fn confirmed_flush(client: &Client, slot: &str) -> Lsn {
    client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap()
}

async fn walsenders(client: &Client) -> Vec<i32> {
    client
        .query("SELECT pid FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn current_wal(client: &Client) -> Lsn {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap()
}

/// Writes WAL the group does not read for `silence`.
async fn busy(client: &Client, silence: Duration) {
    let until = Instant::now() + silence;
    while Instant::now() < until {
        client
            .batch_execute(
                "INSERT INTO busy (pad) SELECT repeat('b', 500) FROM generate_series(1, 200)",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster whose walsenders end a client silent for 2 s, a consumer of `items` there
/// that has committed rows 1..=3, the slot's name and the walsender's pid.
async fn silent_consumer(name: &str) -> Option<(LocalCluster, Client, Consumer, String, Vec<i32>)> {
    // Five minutes of silence, shortened: the walsender would end a silent client after 2 s.
    let cluster = own_cluster(name, &[("wal_sender_timeout", "2s")]).await?;
    let config = ConnectConfig::new(cluster.admin_config());
    let client = connect(&cluster.admin_config()).await;
    items_table(&client, &config).await;
    client
        .batch_execute("CREATE TABLE busy (id serial PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let mut consumer = ddl_builder(&config, "silent")
        .max_poll_interval(Duration::from_secs(60))
        .queue_capacity(4)
        .build()
        .await
        .unwrap();
    let slot = slot_name(&client, "silent").await;
    insert(&client, 1, 3).await;
    assert_eq!(ids(&mut consumer, 3).await, [1, 2, 3]);
    consumer.commit().await.unwrap();
    let pids = walsenders(&client).await;
    assert_eq!(pids.len(), 1);
    Some((cluster, client, consumer, slot, pids))
}

fn assert_no_replication_timeout(cluster: &LocalCluster) {
    let log = std::fs::read_to_string(cluster.log_path()).unwrap_or_default();
    assert!(
        !log.contains("terminating walsender process due to replication timeout"),
        "the server timed the walsender out: {}",
        log.lines()
            .filter(|l| l.contains("walsender"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_consumer_that_stops_polling_keeps_its_walsender_and_holds_only_uncommitted_wal() {
    let name = "a consumer that stops polling";
    let Some((cluster, client, mut consumer, slot, pids)) = silent_consumer(name).await else {
        return;
    };
    // A record received and not committed, the application silent for 3.5 times
    // wal_sender_timeout, the server busy with tables the group does not read: the
    // walsender stays, and the slot holds from the uncommitted record on, no further.
    insert(&client, 4, 4).await;
    let bundle = consumer.poll(1, Duration::from_secs(20)).await.unwrap();
    let record = bundle.records().next().expect("record 4 delivered");
    assert_eq!(
        record.current().unwrap().get("id").unwrap().as_i64(),
        Some(4)
    );
    let uncommitted = record.txn().commit_lsn;
    // The slot may still move up to the uncommitted transaction: a status update that
    // follows the idle WAL written before it can reach the server after this point. It
    // must never reach the transaction's commit, or a restart would skip the record.
    let mut confirmed = confirmed_flush(&client, &slot).await;
    for _ in 0..14 {
        busy(&client, Duration::from_millis(500)).await;
        let now = confirmed_flush(&client, &slot).await;
        assert!(
            confirmed <= now && now < uncommitted,
            "the slot holds the uncommitted record: confirmed went {confirmed} -> {now}, \
             the record's transaction commits at {uncommitted}"
        );
        confirmed = now;
    }
    assert_eq!(walsenders(&client).await, pids, "the walsender stayed");
    assert_no_replication_timeout(&cluster);
    // Committed and polled once: the slot follows the WAL written meanwhile.
    consumer.commit().await.unwrap();
    let written = current_wal(&client).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while confirmed_flush(&client, &slot).await < written {
        assert!(
            Instant::now() < deadline,
            "the slot stays behind after the commit"
        );
        let bundle = consumer.poll(10, Duration::from_millis(300)).await.unwrap();
        assert!(bundle.is_empty());
    }
    assert_eq!(consumer.stats().reconnects, 0);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_fully_committed_consumer_that_stops_polling_does_not_pin_wal() {
    let name = "a fully committed consumer that stops polling";
    let Some((cluster, client, consumer, slot, pids)) = silent_consumer(name).await else {
        return;
    };
    busy(&client, Duration::from_secs(7)).await;
    let written = current_wal(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let confirmed = confirmed_flush(&client, &slot).await;
    assert!(
        confirmed >= written,
        "an idle, fully committed consumer pins WAL: slot confirmed at {confirmed}, WAL \
         written up to {written}"
    );
    assert_eq!(walsenders(&client).await, pids, "the walsender stayed");
    assert_no_replication_timeout(&cluster);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_that_stops_polling_with_a_full_queue_keeps_its_walsender() {
    let name = "a consumer that stops polling with a full queue";
    let Some((cluster, client, mut consumer, _slot, pids)) = silent_consumer(name).await else {
        return;
    };
    // More records than the queue (4) holds, and the application silent. (With
    // wal_sender_timeout above the stream's 10 s status interval — 13 s was tried — the
    // walsender survives 30 s of this.)
    insert(&client, 4, 40).await;
    busy(&client, Duration::from_secs(7)).await;
    assert_eq!(
        walsenders(&client).await,
        pids,
        "the walsender was ended while the application was not polling"
    );
    assert_no_replication_timeout(&cluster);
    assert_eq!(ids(&mut consumer, 37).await, (4..=40).collect::<Vec<_>>());
    consumer.close().await.unwrap();
}
