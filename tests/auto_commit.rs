//! Automatic commit under load (issue 19). Each poll confirms the previous one to the slot at
//! once; the durable cursor trails, written at most once per auto-commit interval. Proved
//! here with consumer processes killed (SIGKILL) at a high rate: what comes again is only
//! what the server had not been told — the same records, with the same event ids, in the
//! same order — and none of it was polled longer ago than the interval plus one write; and
//! with a server crashing at the same moment (its slot falls back to the last checkpoint):
//! the durable cursor bounds what comes again the same way, and nothing is lost.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pg_changestream::consumer::{
    enable_change_streaming, CommitMode, ConsumerBuilder, Record, StartLocation,
};
use pg_changestream::testing::{ShutdownMode, TestServer};
use pg_changestream::{ConnectConfig, Lsn};
use tokio_postgres::{Client, NoTls};

use crate::recovery::{committed_up_to, connect, own_cluster, slot_confirmed, wait_slot_inactive};
use crate::support::{cursor, id};

/// The auto-commit interval of these consumers.
const INTERVAL: Duration = Duration::from_millis(200);
/// What one cursor write (and the child's last poll) may add to the interval on a loaded
/// machine.
const SLACK: Duration = Duration::from_secs(2);
/// How long a child consumes before it is killed: well past `INTERVAL + SLACK`, so that the
/// bound means something.
const RUN: Duration = Duration::from_secs(4);

const CHILD_URL: &str = "PG_CHANGESTREAM_AUTO_CHILD_URL";
const CHILD_GROUP: &str = "PG_CHANGESTREAM_AUTO_CHILD_GROUP";
const CHILD_OUT: &str = "PG_CHANGESTREAM_AUTO_CHILD_OUT";

fn server() -> &'static TestServer {
    match TestServer::shared() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

fn builder(config: ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config, group)
        .add_table("items", StartLocation::Latest)
        .commit_mode(CommitMode::Automatic)
        .auto_commit_interval(INTERVAL)
        // A killed member counts as gone soon, so the next one takes its slot over quickly.
        .max_poll_interval(Duration::from_secs(1))
        .reconnect_timeout(Duration::from_secs(90))
}

/// `items`, enabled, and the group created before any row is written (`Latest` misses none).
async fn setup(client: &Client, config: &ConnectConfig, group: &str) {
    client
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    enable_change_streaming(config, "items", true)
        .await
        .unwrap();
    builder(config.clone(), group)
        .build()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

/// Inserts 10-row transactions (ids 1, 2, …) as fast as one session can until `stop`;
/// returns the number of rows committed.
fn spawn_writer(
    config: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let (client, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut written = 0_i64;
        while !stop.load(Ordering::SeqCst) {
            client
                .execute(
                    "INSERT INTO items SELECT g, 'v' || g FROM generate_series($1::bigint, $1::bigint + 9) g",
                    &[&(written + 1)],
                )
                .await
                .unwrap();
            written += 10;
        }
        written
    })
}

/// `(commit LSN, index)`: event ids in the order the stream delivers them.
type Id = (Lsn, u64);

fn event(record: &Record) -> Id {
    let id = record.event_id();
    (id.commit_lsn, id.index)
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    u64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

/// A record a killed child delivered, and when its poll returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Polled {
    event: Id,
    row: i64,
    at_micros: u64,
}

/// The child's delivery file: `P <micros>` after each poll, then `R <lsn> <index> <id>` per
/// record, one write per poll (a kill cuts at most the last line short).
fn read_deliveries(path: &Path) -> Vec<Polled> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut at_micros = 0;
    let mut out = Vec::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["P", at] => at_micros = at.parse().unwrap(),
            ["R", lsn, index, row] => out.push(Polled {
                event: (lsn.parse().unwrap(), index.parse().unwrap()),
                row: row.parse().unwrap(),
                at_micros,
            }),
            _ => panic!("bad delivery line {line:?}"),
        }
    }
    out
}

/// Starts the consumer process that `kill_child` ends.
fn spawn_child(url: &str, group: &str, out: &Path, err: &Path) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "auto_commit::killed_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_GROUP, group)
        .env(CHILD_OUT, out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Lets the child consume for `RUN` after its first records, then kills it (SIGKILL);
/// returns when it was killed.
async fn kill_child(child: &mut tokio::process::Child, out: &Path, err: &Path) -> SystemTime {
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        if let Some(first) = read_deliveries(out).first() {
            break UNIX_EPOCH + Duration::from_micros(first.at_micros);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(err).unwrap_or_default();
            panic!("the child consumer exited by itself ({status}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the child delivered nothing in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let until = started + RUN;
    if let Ok(left) = until.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child consumer exited by itself: {}",
        std::fs::read_to_string(err).unwrap_or_default()
    );
    let killed_at = SystemTime::now();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    killed_at
}

/// Consumes with a new consumer until every row of `1..=written` has been seen (by it or
/// the killed child), then closes it; returns what it delivered.
async fn drain(config: ConnectConfig, group: &str, child: &[Polled], written: i64) -> Vec<Polled> {
    let mut consumer = builder(config, group).build().await.unwrap();
    let mut seen = vec![false; usize::try_from(written).unwrap() + 1];
    for p in child {
        seen[usize::try_from(p.row).unwrap()] = true;
    }
    let mut missing = seen.iter().skip(1).filter(|s| !**s).count();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while missing > 0 || quiet < 2 {
        assert!(
            Instant::now() < deadline,
            "{missing} of {written} rows never delivered"
        );
        let bundle = consumer
            .poll(500, Duration::from_millis(300))
            .await
            .unwrap();
        quiet = if bundle.is_empty() { quiet + 1 } else { 0 };
        let at_micros = micros_since_epoch(SystemTime::now());
        for record in bundle.records() {
            let row = id(record);
            let slot = seen.get_mut(usize::try_from(row).unwrap()).unwrap();
            if !*slot {
                *slot = true;
                missing -= 1;
            }
            out.push(Polled {
                event: event(record),
                row,
                at_micros,
            });
        }
    }
    consumer.close().await.unwrap();
    out
}

/// The checks after a kill: the new consumer starts right after what the server held as
/// committed; what it delivers of the child's records is exactly the child's records past
/// that point (same event ids, same rows, same order), all polled within the bound before
/// the kill; together they delivered every row.
fn check(
    scenario: &str,
    child: &[Polled],
    after: &[Polled],
    committed: Id,
    killed_at: SystemTime,
) -> usize {
    if let Some(first) = after.iter().find(|p| p.event <= committed) {
        panic!("{scenario}: {first:?} delivered again although committed up to {committed:?}");
    }
    let uncommitted: Vec<&Polled> = child.iter().filter(|p| p.event > committed).collect();
    let again: Vec<&Polled> = after.iter().take(uncommitted.len()).collect();
    let pairs = uncommitted.iter().zip(&again);
    for (i, (before, now)) in pairs.enumerate() {
        assert_eq!(
            (before.event, before.row),
            (now.event, now.row),
            "{scenario}: the {i}th record delivered again differs"
        );
    }
    assert_eq!(again.len(), uncommitted.len(), "{scenario}: too few again");
    let bound = micros_since_epoch(killed_at - (INTERVAL + SLACK));
    if let Some(old) = uncommitted.iter().find(|p| p.at_micros < bound) {
        panic!(
            "{scenario}: {old:?} came again although it was polled {:?} before the kill \
             (the bound is the interval {INTERVAL:?} plus one write)",
            Duration::from_micros(micros_since_epoch(killed_at) - old.at_micros)
        );
    }
    eprintln!(
        "{scenario}: the child delivered {} records, {} of them came again (committed up to \
         {committed:?})",
        child.len(),
        uncommitted.len()
    );
    uncommitted.len()
}

#[tokio::test]
async fn a_consumer_killed_at_a_high_rate_delivers_again_only_what_was_not_committed() {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let config = ConnectConfig::new(db.config());
    let group = "killed at a high rate";
    setup(&client, &config, group).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db.config(), Arc::clone(&stop));
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("deliveries"), dir.path().join("child.err"));
    let mut child = spawn_child(&db.url(), group, &out, &err);
    let killed_at = kill_child(&mut child, &out, &err).await;
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    wait_slot_inactive(&client, group).await;
    let committed = committed_up_to(&client, group).await;

    let delivered = read_deliveries(&out);
    let after = drain(config.clone(), group, &delivered, written).await;
    check("consumer killed", &delivered, &after, committed, killed_at);
    assert!(
        delivered.len() > 1000,
        "the child delivered only {} records: not a high rate",
        delivered.len()
    );
}

#[tokio::test]
async fn a_server_crash_with_the_consumer_killed_loses_nothing_and_repeats_at_most_the_interval() {
    let name = "a_server_crash_with_the_consumer_killed";
    let Some(mut cluster) = own_cluster(name, &[]).await else {
        return;
    };
    let client = connect(cluster.admin_config()).await;
    let config = ConnectConfig::new(cluster.admin_config());
    let group = "crashed at a high rate";
    setup(&client, &config, group).await;
    // The slot's position on disk is this checkpoint's: everything after it is the
    // durable cursor's to keep.
    client.batch_execute("CHECKPOINT").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(cluster.admin_config(), Arc::clone(&stop));
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("deliveries"), dir.path().join("child.err"));
    let user = cluster.admin_config().get_user().unwrap().to_owned();
    let url = format!("postgresql://{user}@127.0.0.1:{}/postgres", cluster.port());
    let mut child = spawn_child(&url, group, &out, &err);
    let killed_at = kill_child(&mut child, &out, &err).await;
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    drop(client);
    // Down with the consumer: no checkpoint, the slot falls back to the one above.
    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(ShutdownMode::Immediate).unwrap();
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    let client = connect(cluster.admin_config()).await;
    let committed = committed_up_to(&client, group).await;
    eprintln!(
        "after the crash: slot confirmed at {:?}, durable cursor at {:?}",
        slot_confirmed(&client, group).await,
        cursor(&client, group).await
    );

    let delivered = read_deliveries(&out);
    let after = drain(config.clone(), group, &delivered, written).await;
    check("server crash", &delivered, &after, committed, killed_at);
    // Closing committed durably: nothing comes again.
    let mut consumer = builder(config, group).build().await.unwrap();
    let mut text = String::new();
    for _ in 0..2 {
        let bundle = consumer
            .poll(100, Duration::from_millis(300))
            .await
            .unwrap();
        for record in bundle.records() {
            let _ = write!(text, "{} ", record.event_id());
        }
    }
    assert!(text.is_empty(), "delivered again after close: {text}");
    consumer.close().await.unwrap();
}

/// The consumer process the tests above kill: polls and appends what it got to a file.
#[tokio::test]
#[ignore = "run in a child process by the tests of this module"]
async fn killed_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let group = std::env::var(CHILD_GROUP).unwrap();
    let out = std::env::var(CHILD_OUT).unwrap();
    let mut consumer = builder(url.parse().unwrap(), &group).build().await.unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    loop {
        let bundle = consumer
            .poll(200, Duration::from_millis(100))
            .await
            .unwrap();
        let mut text = format!("P {}\n", micros_since_epoch(SystemTime::now()));
        for record in bundle.records() {
            let (lsn, index) = event(record);
            let _ = writeln!(text, "R {lsn} {index} {}", id(record));
        }
        // One write per poll: a kill cuts at most the last line short.
        file.write_all(text.as_bytes()).unwrap();
    }
}
