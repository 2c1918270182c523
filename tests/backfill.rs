//! Backfill: a table's existing rows arrive as `read` records interleaved with the live
//! stream, and a materialised view built from reads and changes equals the table — under
//! concurrent writers, across a kill -9 of the consumer, for a table added to a live group,
//! and over partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    delete_group, enable_change_streaming, BeforeImage, CommitMode, Consumer, ConsumerBuilder, Op,
    Record, StartLocation,
};
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::ConnectConfig;
use serde_json::Value;
use tokio_postgres::Client;

const ROWS: i32 = 200_000;
const END_PREFIX: &str = "backfill-test-end";

/// A database with `bf (id int primary key, v text, n int)` holding `rows` rows.
async fn table_with_rows(rows: i32, before_images: bool) -> (TestDatabase, Client, ConnectConfig) {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE bf (id int PRIMARY KEY, v text NOT NULL, n int);
             INSERT INTO bf SELECT g, 'row ' || g, g % 97 FROM generate_series(1, {rows}) g;
             CREATE SEQUENCE bf_new START 1000000;
             ANALYZE bf;"
        ))
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    enable_change_streaming(&config, "bf", before_images)
        .await
        .unwrap();
    (db, client, config)
}

/// The table as `id → row object`.
async fn table_state(client: &Client) -> BTreeMap<i64, Value> {
    client
        .query("SELECT id::bigint, to_jsonb(t)::text FROM bf t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get(1)).unwrap()))
        .collect()
}

fn row_id(value: &Value) -> i64 {
    value.get("id").and_then(Value::as_i64).expect("an id")
}

/// One delivered record, reduced to what the view needs (also the child's line format).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Applied {
    op: String,
    /// The old key of an update or delete, when the stream carries it.
    old: Option<i64>,
    /// The row after the change (read, insert, update).
    row: Option<Value>,
    prefix: Option<String>,
}

impl Applied {
    fn of(record: &Record) -> Applied {
        let old = match record.before() {
            BeforeImage::Full(image) | BeforeImage::Key(image) => {
                Some(row_id(&serde_json::to_value(image).unwrap()))
            }
            _ => None,
        };
        let old = match record.op() {
            Op::Delete => old.or_else(|| {
                record
                    .key()
                    .map(|k| row_id(&serde_json::to_value(k).unwrap()))
            }),
            _ => old,
        };
        Applied {
            op: record.op().to_string(),
            old,
            row: record
                .current()
                .map(|image| serde_json::to_value(image).unwrap()),
            prefix: record.message_content().map(|(p, _)| p.to_owned()),
        }
    }
}

/// A materialised view: reads, inserts and updates set a row by key (a key update removes
/// the old key), deletes remove it, truncates clear it.
#[derive(Default)]
struct View {
    rows: BTreeMap<i64, Value>,
    reads: u64,
    first_read: Option<i64>,
    end_seen: bool,
}

impl View {
    fn apply(&mut self, a: &Applied) {
        match a.op.as_str() {
            "read" | "insert" | "update" => {
                let row = a.row.clone().expect("a current row");
                let id = row_id(&row);
                if a.op == "read" {
                    self.reads += 1;
                    self.first_read.get_or_insert(id);
                }
                if let Some(old) = a.old.filter(|&old| old != id) {
                    self.rows.remove(&old);
                }
                self.rows.insert(id, row);
            }
            "delete" => {
                self.rows.remove(&a.old.expect("a deleted key"));
            }
            "truncate" => self.rows.clear(),
            "message" => {
                assert_eq!(
                    a.prefix.as_deref(),
                    Some(END_PREFIX),
                    "an internal watermark reached the application"
                );
                self.end_seen = true;
            }
            other => panic!("unexpected op {other}"),
        }
    }
}

/// Writers hammering `bf` until `stop`: single-row inserts, updates, deletes and key
/// updates, and multi-row updates, each its own transaction.
fn spawn_writers(
    db: &TestDatabase,
    count: u64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..count)
        .map(|w| {
            let config = db.config();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                let mut rng = fastrand::Rng::with_seed(0xbf00 + w);
                let mut done = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = rng.i32(1..=ROWS);
                    let sql = match rng.u8(0..10) {
                        0..=2 => {
                            format!("UPDATE bf SET v = 'upd {done}', n = n + 1 WHERE id = {id}")
                        }
                        3 | 4 => "INSERT INTO bf SELECT nextval('bf_new'), 'new', 0".to_owned(),
                        5 => format!("DELETE FROM bf WHERE id = {id}"),
                        6 | 7 => format!("UPDATE bf SET id = nextval('bf_new') WHERE id = {id}"),
                        _ => format!(
                            "UPDATE bf SET n = n + 1000 WHERE id BETWEEN {id} AND {}",
                            id + 40
                        ),
                    };
                    client.batch_execute(&sql).await.unwrap();
                    done += 1;
                    if done % 16 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                done
            })
        })
        .collect()
}

fn all_done(consumer: &Consumer) -> bool {
    let progress = consumer.stats().backfill;
    !progress.is_empty() && progress.iter().all(|p| p.done)
}

/// Polls into `view` until the backfill is done and an end marker emitted after that has
/// arrived (so every read and every change before it was delivered). `on_done` runs once
/// when the backfill is first seen done, before the marker is emitted.
async fn consume_to_end(
    consumer: &mut Consumer,
    client: &Client,
    view: &mut View,
    mut on_done: impl FnMut(),
    mut each: impl FnMut(&[Applied]),
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut marked = false;
    while !view.end_seen {
        assert!(
            Instant::now() < deadline,
            "backfill did not finish in 300 s"
        );
        let bundle = consumer
            .poll(5000, Duration::from_millis(200))
            .await
            .unwrap();
        let applied: Vec<Applied> = bundle.records().map(Applied::of).collect();
        for a in &applied {
            view.apply(a);
        }
        each(&applied);
        if !marked && all_done(consumer) {
            on_done();
            client
                .query_one(
                    "SELECT pg_logical_emit_message(true, $1::text, 'end')::text",
                    &[&END_PREFIX],
                )
                .await
                .unwrap();
            marked = true;
        }
    }
}

fn assert_view_equals(view: &View, table: &BTreeMap<i64, Value>) {
    let missing: Vec<_> = table
        .keys()
        .filter(|k| !view.rows.contains_key(k))
        .take(5)
        .collect();
    let extra: Vec<_> = view
        .rows
        .keys()
        .filter(|k| !table.contains_key(k))
        .take(5)
        .collect();
    let stale: Vec<_> = table
        .iter()
        .filter(|(k, v)| view.rows.get(k).is_some_and(|w| w != *v))
        .take(5)
        .map(|(k, v)| (k, v.clone(), view.rows.get(k).cloned()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && stale.is_empty(),
        "view differs from the table ({} vs {} rows): missing {missing:?}, extra {extra:?}, \
         stale (table, view) {stale:?}",
        view.rows.len(),
        table.len()
    );
}

fn builder(config: &ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("bf", StartLocation::Earliest)
        .message_prefix(END_PREFIX)
        // Subscribing to a prefix of the internal one must not let watermarks through.
        .message_prefix("pg-")
        .message_prefix("pg-changestream:backfill")
        .backfill_chunk_size(4096)
        .reconnect_timeout(Duration::from_secs(60))
}

#[tokio::test]
async fn a_table_backfilled_under_concurrent_writers_equals_the_view() {
    let (db, client, config) = table_with_rows(ROWS, false).await;
    let mut consumer = builder(&config, "backfill under writers")
        // Small chunks: more windows for the writers to hit.
        .backfill_chunk_size(1024)
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&db, 3, Arc::clone(&stop));
    let mut view = View::default();
    let stopper = Arc::clone(&stop);
    consume_to_end(
        &mut consumer,
        &client,
        &mut view,
        move || stopper.store(true, Ordering::SeqCst),
        |_| {},
    )
    .await;
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    // The marker went out after the writers' last commit only if they stopped first; drain
    // what they committed after it.
    consume_more(&mut consumer, &client, &mut view).await;
    assert!(writes > 100, "the writers barely wrote ({writes})");
    let table = table_state(&client).await;
    assert_view_equals(&view, &table);
    let progress = consumer.stats().backfill;
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert!(
        progress[0].rows_done >= u64::try_from(ROWS).unwrap() / 2,
        "{progress:?}"
    );
    eprintln!(
        "backfill under writers: {} reads, {writes} concurrent writes, {} rows at the end",
        view.reads,
        table.len()
    );
    consumer.close().await.unwrap();
    // Slots are cluster-wide: free this one now rather than at the database's drop.
    delete_group(&config, "backfill under writers", true)
        .await
        .unwrap();
}

/// After the writers stopped: a second marker, then everything before it.
async fn consume_more(consumer: &mut Consumer, client: &Client, view: &mut View) {
    view.end_seen = false;
    consume_to_end(consumer, client, view, || {}, |_| {}).await;
}

const CHILD_URL: &str = "PG_CHANGESTREAM_BACKFILL_CHILD_URL";
const CHILD_OUT: &str = "PG_CHANGESTREAM_BACKFILL_CHILD_OUT";
const KILL_GROUP: &str = "backfill killed";

async fn committed_progress(client: &Client) -> Option<(i64, Option<Vec<String>>, bool)> {
    client
        .query_opt(
            "SELECT rows_done, last_key, done FROM changestream.backfills WHERE group_id = $1",
            &[&KILL_GROUP],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test]
async fn a_consumer_killed_mid_backfill_resumes_from_its_committed_progress() {
    let (db, client, config) = table_with_rows(ROWS, true).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliveries");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&db, 1, Arc::clone(&stop));
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backfill::backfill_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, db.url())
        .env(CHILD_OUT, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("child.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Kill it once some chunks are committed, well before the end.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((rows, _, done)) = committed_progress(&client).await {
            assert!(
                !done,
                "the backfill finished before the kill; make the table larger"
            );
            if rows >= 20_000 {
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(dir.path().join("child.err")).unwrap_or_default();
            panic!("the child exited by itself ({status}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "no committed progress within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let (rows_at_kill, last_key, _) = committed_progress(&client).await.unwrap();
    let last_key: i64 = last_key.expect("a committed last key")[0].parse().unwrap();

    // Replay what the child delivered (a line cut short by the kill was never seen).
    let mut view = View::default();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut child_reads = 0;
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let a: Applied = serde_json::from_str(line.trim_end()).unwrap();
        view.apply(&a);
        child_reads += u64::from(a.op == "read");
    }
    assert!(
        child_reads > 0,
        "the child delivered no reads before the kill"
    );
    view.first_read = None;
    let reads_before = view.reads;

    let mut consumer = kill_builder(&config).build().await.unwrap();
    let stopper = Arc::clone(&stop);
    consume_to_end(
        &mut consumer,
        &client,
        &mut view,
        move || stopper.store(true, Ordering::SeqCst),
        |_| {},
    )
    .await;
    for w in writers {
        w.await.unwrap();
    }
    consume_more(&mut consumer, &client, &mut view).await;
    let table = table_state(&client).await;
    assert_view_equals(&view, &table);
    let resumed_reads = view.reads - reads_before;
    eprintln!(
        "backfill killed: child delivered {child_reads} reads, {rows_at_kill} rows committed \
         (last key {last_key}), the resumed consumer read {resumed_reads} more"
    );
    let first = view.first_read.expect("the resumed consumer read rows");
    assert!(
        first > last_key,
        "the resumed consumer started reading at key {first}, not after the committed last \
         key {last_key}"
    );
    let (_, _, done) = committed_progress(&client).await.unwrap();
    consumer.close().await.unwrap();
    let (_, _, done_after_close) = committed_progress(&client).await.unwrap();
    assert!(
        done || done_after_close,
        "the final progress is committed as done"
    );
    // Slots are cluster-wide: free this one now rather than at the database's drop.
    delete_group(&config, KILL_GROUP, true).await.unwrap();
}

fn kill_builder(config: &ConnectConfig) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), KILL_GROUP)
        .add_table("bf", StartLocation::Earliest)
        .message_prefix(END_PREFIX)
        .backfill_chunk_size(2048)
        // A killed member counts as gone soon, so the next one takes its slot over quickly.
        .max_poll_interval(Duration::from_secs(1))
        .reconnect_timeout(Duration::from_secs(60))
}

/// The consumer process the kill test kills: consumes and appends one line per record,
/// one write per poll, until killed.
#[tokio::test]
#[ignore = "run in a child process by a_consumer_killed_mid_backfill_resumes_from_its_committed_progress"]
async fn backfill_child() {
    use std::io::Write as _;
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let out = std::env::var(CHILD_OUT).unwrap();
    let config: ConnectConfig = url.parse().unwrap();
    let mut consumer = kill_builder(&config)
        .commit_mode(CommitMode::Automatic)
        .build()
        .await
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .unwrap();
    loop {
        let bundle = consumer
            .poll(1000, Duration::from_millis(200))
            .await
            .unwrap();
        let mut text = String::new();
        for record in bundle.records() {
            text.push_str(&serde_json::to_string(&Applied::of(record)).unwrap());
            text.push('\n');
        }
        file.write_all(text.as_bytes()).unwrap();
    }
}

#[tokio::test]
async fn a_table_added_at_earliest_to_a_live_group_gets_its_rows_and_leaves_the_others_alone() {
    let (db, client, config) = table_with_rows(20_000, false).await;
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    let group = "live group";
    let mut consumer = ConsumerBuilder::new(config.clone(), group)
        .add_table("items", StartLocation::Latest)
        .message_prefix(END_PREFIX)
        .commit_mode(CommitMode::Manual)
        .backfill_chunk_size(1000)
        .build()
        .await
        .unwrap();
    // A writer inserting items 1, 2, 3, … one per transaction, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let config = db.config();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let (c, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let mut id = 0;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                c.batch_execute(&format!("INSERT INTO items VALUES ({id}, 'i')"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            id
        })
    };
    let mut items = Vec::new();
    let collect = |consumer_records: Vec<Record>, items: &mut Vec<i64>, view: &mut View| {
        for record in &consumer_records {
            let table = record.relation().map(|r| r.name().to_owned());
            if table.as_deref() == Some("items") {
                assert_eq!(record.op(), Op::Insert);
                items.push(crate::support::id(record));
            } else {
                view.apply(&Applied::of(record));
            }
        }
    };
    let mut view = View::default();
    // Stream items for a while, committing, before the table joins.
    while items.len() < 50 {
        let bundle = consumer
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap();
        bundle.commit().await.unwrap();
        collect(bundle.into_records(), &mut items, &mut view);
    }
    consumer
        .add_table("bf", StartLocation::Earliest)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut marked = false;
    while !view.end_seen {
        assert!(
            Instant::now() < deadline,
            "backfill did not finish in 120 s"
        );
        let bundle = consumer
            .poll(700, Duration::from_millis(200))
            .await
            .unwrap();
        bundle.commit().await.unwrap();
        collect(bundle.into_records(), &mut items, &mut view);
        if !marked && all_done(&consumer) {
            stop.store(true, Ordering::SeqCst);
            client
                .query_one(
                    "SELECT pg_logical_emit_message(true, $1::text, 'end')::text",
                    &[&END_PREFIX],
                )
                .await
                .unwrap();
            marked = true;
        }
    }
    let last = writer.await.unwrap();
    // The writer may have committed a few after the marker.
    while items.len() < usize::try_from(last).unwrap() {
        if Instant::now() >= deadline {
            let missing: Vec<i64> = (1..=last).filter(|i| !items.contains(i)).collect();
            panic!(
                "only {} of {last} items arrived; missing {missing:?}",
                items.len()
            );
        }
        let bundle = consumer
            .poll(700, Duration::from_millis(200))
            .await
            .unwrap();
        bundle.commit().await.unwrap();
        collect(bundle.into_records(), &mut items, &mut view);
    }
    assert_eq!(
        view.reads, 20_000,
        "every existing row read once (no writes to bf)"
    );
    assert_view_equals(&view, &table_state(&client).await);
    // The other table: every insert, in commit order, none twice, none missing.
    let first = items[0];
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(items, expected, "items kept their order");
    consumer.close().await.unwrap();
    // And their cursor: a new consumer of the group gets nothing of items again.
    let mut again = ConsumerBuilder::new(config.clone(), group)
        .commit_mode(CommitMode::Manual)
        .build()
        .await
        .unwrap();
    let bundle = again.poll(100, Duration::from_millis(700)).await.unwrap();
    let redelivered: Vec<String> = bundle.records().map(|r| r.event_id().to_string()).collect();
    assert!(
        redelivered.is_empty(),
        "committed records came again: {redelivered:?}"
    );
    again.close().await.unwrap();
    // Slots are cluster-wide: free this one now rather than at the database's drop.
    delete_group(&config, group, true).await.unwrap();
}

#[tokio::test]
async fn a_table_without_primary_key_is_refused_for_backfill_with_the_reason() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE heap (v text); INSERT INTO heap VALUES ('a'), ('a');
             CREATE TABLE keyed (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    enable_change_streaming(&config, "heap", true)
        .await
        .unwrap();
    enable_change_streaming(&config, "keyed", false)
        .await
        .unwrap();
    for location in [StartLocation::Earliest, StartLocation::FirstUncommitted] {
        let err = ConsumerBuilder::new(config.clone(), "no key")
            .add_table("heap", location)
            .build()
            .await
            .unwrap_err();
        assert!(err.is_config(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("table public.heap has no primary key"),
            "{text}"
        );
        assert!(text.contains("add a primary key"), "{text}");
    }
    // Nothing was created by the failed builds.
    let groups: i64 = client
        .query_one("SELECT count(*) FROM changestream.groups", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(groups, 0);
    // Latest needs no backfill; adding it at earliest later is refused the same way.
    let mut consumer = ConsumerBuilder::new(config.clone(), "no key")
        .add_table("keyed", StartLocation::Latest)
        .add_table("heap", StartLocation::Latest)
        .build()
        .await
        .unwrap();
    let err = consumer
        .add_table("heap", StartLocation::Earliest)
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    consumer.close().await.unwrap();
    // Slots are cluster-wide: free this one now rather than at the database's drop.
    delete_group(&config, "no key", true).await.unwrap();
}

#[tokio::test]
async fn two_partitions_backfill_each_row_exactly_once_and_hide_their_watermarks() {
    let rows = 6_000;
    let (_db, client, config) = table_with_rows(rows, false).await;
    let mut consumer = ConsumerBuilder::new(config.clone(), "backfill partitions")
        .add_table("bf", StartLocation::Earliest)
        .partitions(2)
        // Asking for the internal prefix itself must not let watermarks through.
        .message_prefix("pg-changestream:backfill")
        .message_prefix(END_PREFIX)
        .backfill_chunk_size(500)
        .build()
        .await
        .unwrap();
    let mut reads: HashMap<i64, u32> = HashMap::new();
    let mut by_partition = [0u64; 2];
    let mut event_ids = std::collections::HashSet::new();
    let mut end_seen = false;
    let mut marked = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !end_seen {
        assert!(
            Instant::now() < deadline,
            "backfill did not finish in 120 s"
        );
        let bundle = consumer
            .poll(1000, Duration::from_millis(200))
            .await
            .unwrap();
        for record in bundle.records() {
            if let Some((prefix, _)) = record.message_content() {
                assert_eq!(prefix, END_PREFIX, "an internal watermark was delivered");
                end_seen = true;
                continue;
            }
            assert_eq!(record.op(), Op::Read, "no writes happen");
            *reads.entry(crate::support::id(record)).or_default() += 1;
            let p = record
                .partition()
                .expect("a partitioned group tags records");
            by_partition[usize::from(p)] += 1;
            assert!(event_ids.insert(record.event_id()), "event ids are unique");
        }
        if !marked && all_done(&consumer) {
            client
                .query_one(
                    "SELECT pg_logical_emit_message(true, $1::text, 'end')::text",
                    &[&END_PREFIX],
                )
                .await
                .unwrap();
            marked = true;
        }
    }
    // Partition 0 delivered the marker; partition 1 finished its share before it was sent.
    let twice: Vec<_> = reads.iter().filter(|(_, &n)| n != 1).take(5).collect();
    assert!(twice.is_empty(), "rows read more than once: {twice:?}");
    assert_eq!(
        reads.len(),
        usize::try_from(rows).unwrap(),
        "every row read"
    );
    assert!(
        by_partition[0] > 0 && by_partition[1] > 0,
        "both partitions backfilled their share: {by_partition:?}"
    );
    let progress = consumer.stats().backfill;
    assert_eq!(
        progress.len(),
        2,
        "one progress per partition: {progress:?}"
    );
    assert_eq!(
        progress.iter().map(|p| p.rows_done).sum::<u64>(),
        u64::try_from(rows).unwrap()
    );
    consumer.close().await.unwrap();
    // Slots are cluster-wide: free this one now rather than at the database's drop.
    delete_group(&config, "backfill partitions", true)
        .await
        .unwrap();
}
