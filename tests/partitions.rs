//! Groups with several partitions: key-hash row filters for every supported key type and
//! composite keys, refusals, extreme hash values, key updates that move a row between
//! partitions (under both replica identities), several consumers sharing a group (spread,
//! hand-over, fencing, rejoin), and a fenced member's late commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    enable_change_streaming, CommitMode, Consumer, ConsumerBuilder, Op, Record, StartLocation,
};
use pg_changestream::group::partition::row_filter;
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::ConnectConfig;
use tokio_postgres::Client;

async fn database() -> (TestDatabase, Client, ConnectConfig) {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    let config = ConnectConfig::new(db.config());
    (db, client, config)
}

/// The partition PostgreSQL's row filter puts a key in, computed by the server from the
/// same expression (`key` is an SQL row body such as `1, 'a'::text`).
async fn partition_of(client: &Client, key: &str, partitions: i32) -> i32 {
    let hash = format!("hash_record_extended(ROW({key}), 0::bigint)");
    let row = client
        .query_one(
            &format!("SELECT (({hash}) & 9223372036854775807::bigint) % {partitions}::bigint"),
            &[],
        )
        .await
        .unwrap();
    i32::try_from(row.get::<_, i64>(0)).unwrap()
}

/// Polls until `count` records arrived, or 60 s passed.
async fn poll_n(consumer: &mut Consumer, count: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records within 60 s: {:?}",
            out.len(),
            out.iter().map(json).collect::<Vec<_>>()
        );
        let bundle = consumer
            .poll(count - out.len(), Duration::from_millis(300))
            .await
            .unwrap();
        out.extend(bundle.into_records());
    }
    out
}

fn json(record: &Record) -> serde_json::Value {
    serde_json::to_value(record).unwrap()
}

/// A column of a record's current image, else of its key.
fn column(record: &Record, name: &str) -> serde_json::Value {
    let image = record.current().or_else(|| record.key()).expect("an image");
    serde_json::to_value(image.get(name).expect("the column")).unwrap()
}

#[test]
fn the_row_filter_maps_every_bigint_into_range_without_abs() {
    let filter = row_filter("h", 4, 2);
    assert_eq!(
        filter,
        "((h) & 9223372036854775807::bigint) % 4::bigint = 2::bigint"
    );
    assert!(!filter.contains("abs"));
}

#[tokio::test]
async fn extreme_hash_values_land_in_exactly_one_partition_without_error() {
    let (_db, client, _config) = database().await;
    for hash in [
        "'-9223372036854775808'::bigint",
        "'-9223372036854775807'::bigint",
        "(-1)::bigint",
        "0::bigint",
        "1::bigint",
        "9223372036854775807::bigint",
    ] {
        for partitions in [2, 3, 4, 7, 64] {
            let filters: Vec<String> = (0..partitions)
                .map(|p| format!("({})::int", row_filter(hash, partitions, p)))
                .collect();
            let matched: i32 = client
                .query_one(&format!("SELECT {}", filters.join(" + ")), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(matched, 1, "hash {hash} over {partitions} partitions");
        }
    }
}

/// Key types a partitioned group supports, each with values that probe their edges:
/// (column type, SQL literals of keys).
const KEY_TYPES: &[(&str, &[&str])] = &[
    ("int2", &["'-32768'", "0", "32767"]),
    ("int4", &["'-2147483648'", "-1", "2147483647"]),
    (
        "int8",
        &["'-9223372036854775808'", "0", "'9223372036854775807'"],
    ),
    ("text", &["''", "'a'", "'ünïcødé ✓'"]),
    ("varchar(20)", &["''", "'b'", "'x y'"]),
    ("char(3)", &["'a'", "'abc'", "' '"]),
    (
        "numeric",
        &["'NaN'", "'-1e-100'", "'123456789012345678901234567890.5'"],
    ),
    ("float8", &["'-Infinity'", "'0'", "'NaN'"]),
    (
        "uuid",
        &[
            "'00000000-0000-0000-0000-000000000000'",
            "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
            "gen_random_uuid()",
        ],
    ),
    ("bytea", &["'\\x'", "'\\x00'", "'\\xdeadbeef'"]),
    ("bool", &["true", "false"]),
    ("date", &["'-infinity'", "'2000-01-01'", "'infinity'"]),
    (
        "timestamptz",
        &[
            "'-infinity'",
            "'1999-12-31 23:59:59.999999+00'",
            "'infinity'",
        ],
    ),
    (
        "timestamp",
        &["'4713-01-01 BC'", "'2024-02-29 12:00'", "'infinity'"],
    ),
    (
        "interval",
        &["'-178000000 years'", "'0'", "'1 day -1 second'"],
    ),
    ("inet", &["'0.0.0.0'", "'::1'", "'10.1.2.3/8'"]),
    ("int4[]", &["'{}'", "'{1,NULL,3}'", "'{{1,2},{3,4}}'"]),
    ("oid", &["0", "4294967295"]),
];

#[tokio::test]
async fn every_supported_key_type_and_a_composite_key_is_spread_by_the_servers_hash() {
    let (_db, client, config) = database().await;
    let mut builder = ConsumerBuilder::new(config.clone(), "types").partitions(4);
    for (i, (ty, _)) in KEY_TYPES.iter().enumerate() {
        client
            .batch_execute(&format!("CREATE TABLE k{i} (k {ty} PRIMARY KEY, n int)"))
            .await
            .unwrap();
        enable_change_streaming(&config, &format!("k{i}"), false)
            .await
            .unwrap();
        builder = builder.add_table(format!("k{i}"), StartLocation::Latest);
    }
    client
        .batch_execute(
            "CREATE TABLE comp (a int, b text, c timestamptz, v int, PRIMARY KEY (b, a, c))",
        )
        .await
        .unwrap();
    enable_change_streaming(&config, "comp", true)
        .await
        .unwrap();
    let mut consumer = builder
        .add_table("comp", StartLocation::Latest)
        .build()
        .await
        .unwrap();
    assert_eq!(owned(&consumer), vec![0, 1, 2, 3], "a lone member owns all");

    // Expected partition per (table, n), computed by the server.
    let mut expected = BTreeMap::new();
    let mut n = 0;
    for (i, (ty, values)) in KEY_TYPES.iter().enumerate() {
        for value in *values {
            n += 1;
            let key: String = client
                .query_one(
                    &format!("INSERT INTO k{i} VALUES ({value}, {n}) RETURNING k::text"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            let literal = format!("{}::{ty}", quote(&key));
            expected.insert(
                (format!("k{i}"), n),
                partition_of(&client, &literal, 4).await,
            );
        }
    }
    for (a, b) in [
        (i32::MIN, ""),
        (0, "x"),
        (i32::MAX, "x"),
        (7, "y"),
        (8, "y"),
    ] {
        n += 1;
        client
            .execute(
                "INSERT INTO comp VALUES ($1, $2, '2020-01-01', $3)",
                &[&a, &b, &n],
            )
            .await
            .unwrap();
        let key = format!("{}::text, '{a}'::int4, '2020-01-01'::timestamptz", quote(b));
        expected.insert(("comp".into(), n), partition_of(&client, &key, 4).await);
    }
    let records = poll_n(&mut consumer, expected.len()).await;
    let mut got = BTreeMap::new();
    for record in &records {
        assert_eq!(record.op(), Op::Insert);
        let table = record.relation().unwrap().name().to_owned();
        let n = column(record, if table == "comp" { "v" } else { "n" })
            .as_i64()
            .unwrap() as i32;
        let partition = i32::from(record.partition().expect("tagged with its partition"));
        assert!(
            record.event_id().to_string().split(':').count() == 3,
            "{}",
            record.event_id()
        );
        assert!(
            got.insert((table, n), partition).is_none(),
            "delivered once"
        );
    }
    assert_eq!(got, expected, "each row in the partition of its key's hash");
    let used: BTreeSet<i32> = got.values().copied().collect();
    assert!(used.len() > 1, "rows spread over partitions: {used:?}");

    // The slots keep decoding after the extreme rows: a later change still arrives.
    client
        .batch_execute("UPDATE k2 SET n = -1 WHERE k = '9223372036854775807'")
        .await
        .unwrap();
    let late = poll_n(&mut consumer, 1).await;
    assert_eq!(late[0].op(), Op::Update);
    consumer.close().await.unwrap();
}

/// `'...'` with quotes doubled.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::test]
async fn tables_a_partitioned_group_cannot_spread_are_refused_saying_why() {
    let (_db, client, config) = database().await;
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy');
             CREATE TABLE nokey (v int);
             CREATE TABLE enumkey (m mood PRIMARY KEY);
             CREATE TABLE bitkey (b bit(3) PRIMARY KEY);
             CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
             CREATE TABLE fine (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    enable_change_streaming(&config, "nokey", true)
        .await
        .unwrap();
    for table in ["enumkey", "bitkey", "parted", "fine"] {
        enable_change_streaming(&config, table, false)
            .await
            .unwrap();
    }
    for (table, why) in [
        ("nokey", "no primary key"),
        ("enumkey", "user-defined type"),
        ("bitkey", "cannot be hashed"),
    ] {
        let e = ConsumerBuilder::new(config.clone(), format!("refuse_{table}"))
            .partitions(3)
            .add_table(table, StartLocation::Latest)
            .build()
            .await
            .unwrap_err();
        assert!(e.is_config(), "{table}: {e}");
        assert!(e.to_string().contains(why), "{table}: {e}");
        assert!(e.to_string().contains("1-partition group"), "{table}: {e}");
    }
    // Partitioned tables are spread like any other (publications publish via the root, so
    // the root's row filter applies; delivery is proven in `capture`).
    ConsumerBuilder::new(config.clone(), "parted")
        .partitions(3)
        .add_table("parted", StartLocation::Latest)
        .build()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    // A one-partition group reads them all.
    let consumer = ConsumerBuilder::new(config.clone(), "single")
        .add_table("nokey", StartLocation::Latest)
        .add_table("enumkey", StartLocation::Latest)
        .add_table("bitkey", StartLocation::Latest)
        .build()
        .await
        .unwrap();
    consumer.close().await.unwrap();

    // The partition count is fixed at creation.
    let four =
        || ConsumerBuilder::new(config.clone(), "fixed").add_table("fine", StartLocation::Latest);
    four()
        .partitions(4)
        .build()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let e = four().partitions(2).build().await.unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("fixed at creation"),
        "{e}"
    );
    let consumer = four().build().await.unwrap();
    assert_eq!(
        consumer.partition_count(),
        4,
        "built without partitions(): as created"
    );
    consumer.close().await.unwrap();

    // Failover slots need PostgreSQL 17.
    let server = TestServer::shared().unwrap();
    let built = four().failover(true).build().await; // an existing group: failover only applies at creation
    built.unwrap().close().await.unwrap();
    let created = ConsumerBuilder::new(config.clone(), "failover")
        .add_table("fine", StartLocation::Latest)
        .partitions(2)
        .failover(true)
        .build()
        .await;
    if server.version_num() >= 170000 {
        let consumer = created.unwrap();
        let failover: Vec<bool> = client
            .query(
                "SELECT failover FROM pg_replication_slots s
                   JOIN changestream.partitions p ON p.slot_name = s.slot_name
                  WHERE p.group_id = 'failover'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(failover, vec![true, true]);
        consumer.close().await.unwrap();
    } else {
        let e = created.unwrap_err();
        assert!(e.is_server_setup() && e.to_string().contains("17"), "{e}");
    }
}

/// Three keys of `table` for `partitions`: `a` and `c` in one partition, `b` in another.
async fn keys_across(client: &Client, partitions: i32) -> (i32, i32, i32) {
    let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for id in 1..200 {
        let p = partition_of(client, &format!("{id}::int4"), partitions).await;
        by_partition.entry(p).or_default().push(id);
    }
    let mut groups = by_partition.values();
    let first = groups.next().unwrap();
    let second = groups.next().unwrap();
    (first[0], second[0], first[1])
}

#[tokio::test]
async fn a_key_update_moving_a_row_between_partitions_is_a_delete_and_an_insert() {
    let (_db, client, config) = database().await;
    client
        .batch_execute(
            "CREATE TABLE plain (id int PRIMARY KEY, v text);
             CREATE TABLE full_ (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    enable_change_streaming(&config, "plain", false)
        .await
        .unwrap();
    enable_change_streaming(&config, "full_", true)
        .await
        .unwrap();
    let mut consumer = ConsumerBuilder::new(config.clone(), "moves")
        .partitions(2)
        .add_table("plain", StartLocation::Latest)
        .add_table("full_", StartLocation::Latest)
        .build()
        .await
        .unwrap();
    let (a, b, c) = keys_across(&client, 2).await;
    let pa = partition_of(&client, &format!("{a}::int4"), 2).await;
    let pb = partition_of(&client, &format!("{b}::int4"), 2).await;
    assert_ne!(pa, pb);
    for table in ["plain", "full_"] {
        // Non-key updates and deletes work under the identity (the filter uses only it).
        client
            .batch_execute(&format!(
                "INSERT INTO {table} VALUES ({a}, 'one');
                 UPDATE {table} SET v = 'two' WHERE id = {a};
                 UPDATE {table} SET id = {b} WHERE id = {a};
                 UPDATE {table} SET id = {a} WHERE id = {b};
                 UPDATE {table} SET id = {c}, v = 'three' WHERE id = {a};
                 DELETE FROM {table} WHERE id = {c};"
            ))
            .await
            .unwrap();
        let records = poll_n(&mut consumer, 8).await;
        let mut seen: Vec<(Op, i64, u16, String)> = records
            .iter()
            .map(|r| {
                let key = serde_json::to_value(r.key().unwrap().get("id").unwrap())
                    .unwrap()
                    .as_i64()
                    .unwrap();
                let before = serde_json::to_value(r.before().kind()).unwrap();
                (
                    r.op(),
                    key,
                    r.partition().unwrap().get(),
                    before.as_str().unwrap().to_owned(),
                )
            })
            .collect();
        // Delivery order across partitions is not defined; within one it is commit order.
        for p in [pa, pb] {
            let p = u16::try_from(p).unwrap();
            let mine: Vec<_> = seen.iter().filter(|s| s.2 == p).cloned().collect();
            let expected: Vec<(Op, i64, u16, &str)> = if p == u16::try_from(pa).unwrap() {
                let old_image = if table == "plain" { "key" } else { "full" };
                let update_before = if table == "plain" {
                    "not_enabled"
                } else {
                    "full"
                };
                let moved_before = if table == "plain" { "key" } else { "full" };
                vec![
                    (Op::Insert, a.into(), p, "not_applicable"),
                    (Op::Update, a.into(), p, update_before),
                    // a → b leaves this partition: the old row as a delete.
                    (Op::Delete, a.into(), p, old_image),
                    // b → a comes back: an insert of the new row.
                    (Op::Insert, a.into(), p, "not_applicable"),
                    // a → c stays in the partition: an update with the old key.
                    (Op::Update, c.into(), p, moved_before),
                    (Op::Delete, c.into(), p, old_image),
                ]
            } else {
                let old_image = if table == "plain" { "key" } else { "full" };
                vec![
                    (Op::Insert, b.into(), p, "not_applicable"),
                    (Op::Delete, b.into(), p, old_image),
                ]
            };
            let mine: Vec<(Op, i64, u16, &str)> = mine
                .iter()
                .map(|(op, k, p, b)| (*op, *k, *p, b.as_str()))
                .collect();
            assert_eq!(mine, expected, "{table}, partition {p}");
        }
        seen.clear();
    }
    consumer.close().await.unwrap();
}

/// What one consumer task saw and owns, shared with the test.
#[derive(Default)]
struct Seen {
    /// (sequence, consumer, key, v, event id), in delivery order.
    records: Vec<(usize, &'static str, i64, i64, String)>,
    owned: HashMap<&'static str, Vec<i32>>,
    errors: HashMap<&'static str, String>,
}

/// Polls `consumer` until `stop`, recording what it gets; hands the consumer back.
fn run(
    name: &'static str,
    mut consumer: Consumer,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Consumer> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            match consumer.poll(500, Duration::from_millis(200)).await {
                Ok(bundle) => {
                    let mut seen = seen.lock().unwrap();
                    for r in bundle.records() {
                        let seq = seen.records.len();
                        let key = column(r, "id").as_i64().unwrap();
                        let v = column(r, "v").as_i64().unwrap();
                        seen.records
                            .push((seq, name, key, v, r.event_id().to_string()));
                    }
                    seen.owned.insert(name, owned(&consumer));
                }
                Err(e) => {
                    seen.lock().unwrap().errors.insert(name, e.to_string());
                    break;
                }
            }
        }
        consumer
    })
}

/// Waits until the owners of all partitions are exactly `members`, each within one of an
/// even share; returns the shares.
async fn wait_spread(
    seen: &Arc<Mutex<Seen>>,
    members: &[&'static str],
    partitions: usize,
    within: Duration,
) -> HashMap<&'static str, Vec<i32>> {
    let deadline = Instant::now() + within;
    loop {
        let owned: HashMap<_, _> = {
            let seen = seen.lock().unwrap();
            members
                .iter()
                .map(|m| (*m, seen.owned.get(m).cloned().unwrap_or_default()))
                .collect()
        };
        let mut all: Vec<i32> = owned.values().flatten().copied().collect();
        all.sort_unstable();
        let counts: Vec<usize> = owned.values().map(Vec::len).collect();
        let even = counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1;
        if all == (0..partitions as i32).collect::<Vec<_>>() && even {
            return owned;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not spread over {members:?} within {within:?}: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_consumers_share_four_partitions_hand_over_and_fence() {
    let (_db, client, config) = database().await;
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    let max_poll_interval = Duration::from_secs(2);
    let builder = || {
        ConsumerBuilder::new(config.clone(), "shared")
            .partitions(4)
            .add_table("items", StartLocation::Latest)
            .max_poll_interval(max_poll_interval)
            .reconnect_timeout(Duration::from_secs(30))
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop_all = Arc::new(AtomicBool::new(false));
    let stop_c = Arc::new(AtomicBool::new(false));
    let a = run(
        "a",
        builder().build().await.unwrap(),
        seen.clone(),
        stop_all.clone(),
    );
    let b = run(
        "b",
        builder().build().await.unwrap(),
        seen.clone(),
        stop_all.clone(),
    );
    let c = run(
        "c",
        builder().build().await.unwrap(),
        seen.clone(),
        stop_c.clone(),
    );
    let spread = wait_spread(&seen, &["a", "b", "c"], 4, Duration::from_secs(20)).await;
    eprintln!("three members: {spread:?}");

    // Keys 1..=40, each inserted then updated; v counts the versions of a key.
    const KEYS: i64 = 40;
    let mut versions = 0;
    for _ in 0..3 {
        write_round(&client, &mut versions, KEYS).await;
    }

    // C goes silent (stops polling, keeps its session): after max_poll_interval the others
    // fence it and take its partitions.
    stop_c.store(true, Ordering::SeqCst);
    let c = c.await.unwrap();
    let stopped = Instant::now();
    for _ in 0..3 {
        write_round(&client, &mut versions, KEYS).await;
    }
    let spread = wait_spread(
        &seen,
        &["a", "b"],
        4,
        max_poll_interval + Duration::from_secs(10),
    )
    .await;
    eprintln!("c silent: moved after {:?}: {spread:?}", stopped.elapsed());
    // C comes back: fenced.
    let mut c = c;
    let e = c.poll(10, Duration::from_millis(100)).await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(e.to_string().contains("max_poll_interval"), "{e}");
    assert!(c.commit().await.unwrap_err().is_fenced());
    c.close().await.unwrap();

    // A new member joins: rebalanced over three again.
    let stop_d = Arc::new(AtomicBool::new(false));
    let d = run(
        "d",
        builder().build().await.unwrap(),
        seen.clone(),
        stop_d.clone(),
    );
    for _ in 0..3 {
        write_round(&client, &mut versions, KEYS).await;
    }
    let spread = wait_spread(&seen, &["a", "b", "d"], 4, Duration::from_secs(20)).await;
    eprintln!("d joined: {spread:?}");
    // D closes cleanly: its partitions move at once (no fencing needed).
    stop_d.store(true, Ordering::SeqCst);
    d.await.unwrap().close().await.unwrap();
    for _ in 0..2 {
        write_round(&client, &mut versions, KEYS).await;
    }
    wait_spread(&seen, &["a", "b"], 4, Duration::from_secs(20)).await;
    let total_versions = versions;

    // Everything arrives: each (key, version) at least once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: BTreeSet<(i64, i64)> = seen
            .lock()
            .unwrap()
            .records
            .iter()
            .map(|r| (r.2, r.3))
            .collect();
        if have.len() == (KEYS * total_versions) as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} changes arrived",
            have.len(),
            KEYS * total_versions
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_all.store(true, Ordering::SeqCst);
    for consumer in [a.await.unwrap(), b.await.unwrap()] {
        consumer.close().await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(seen.errors.keys().all(|k| *k == "c"), "{:?}", seen.errors);

    // Exactly once modulo redelivery: one event id, one change; per key, versions in order.
    let mut by_event: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut per_key: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut redelivered = 0;
    for (_, _, key, v, event) in &seen.records {
        match by_event.get(event.as_str()) {
            Some(first) => {
                assert_eq!(*first, (*key, *v), "event {event} is one change");
                redelivered += 1;
            }
            None => {
                by_event.insert(event, (*key, *v));
                per_key.entry(*key).or_default().push(*v);
            }
        }
    }
    assert_eq!(per_key.len(), KEYS as usize);
    for (key, vs) in &per_key {
        assert_eq!(
            vs,
            &(1..=total_versions).collect::<Vec<_>>(),
            "key {key}: every version once, in order"
        );
    }
    eprintln!(
        "{} deliveries, {} redelivered",
        seen.records.len(),
        redelivered
    );
}

/// Writes the next version of keys `1..=keys`: inserts them first, then updates all.
async fn write_round(client: &Client, versions: &mut i64, keys: i64) {
    *versions += 1;
    let sql = if *versions == 1 {
        format!("INSERT INTO items SELECT g, 1 FROM generate_series(1, {keys}) g")
    } else {
        format!("UPDATE items SET v = {versions}")
    };
    client.batch_execute(&sql).await.unwrap();
}

#[tokio::test]
async fn a_silent_members_late_commit_moves_no_cursor() {
    let (_db, client, config) = database().await;
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    let builder = || {
        ConsumerBuilder::new(config.clone(), "late")
            .add_table("items", StartLocation::Latest)
            .commit_mode(CommitMode::Manual)
            .max_poll_interval(Duration::from_secs(1))
    };
    let mut first = builder().build().await.unwrap();
    assert_eq!(owned(&first), vec![0]);
    client
        .batch_execute("INSERT INTO items VALUES (1, 1), (2, 2)")
        .await
        .unwrap();
    let records = poll_n(&mut first, 2).await;
    let cursor = || async {
        client
            .query_one(
                "SELECT commit_lsn::text, owner FROM changestream.cursors WHERE group_id = 'late'",
                &[],
            )
            .await
            .unwrap()
    };
    let before: String = cursor().await.get(0);

    // A second member waits while the first is live, then takes the partition from it
    // once it has been silent past its max_poll_interval.
    let mut second = builder().build().await.unwrap();
    assert!(owned(&second).is_empty(), "the live owner keeps it");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut again = Vec::new();
    while again.len() < 2 {
        let bundle = second.poll(10, Duration::from_millis(300)).await.unwrap();
        again.extend(bundle.into_records());
        assert!(Instant::now() < deadline, "no take-over within 15 s");
    }
    assert_eq!(owned(&second), vec![0]);
    assert_eq!(
        again.iter().map(|r| r.event_id()).collect::<Vec<_>>(),
        records.iter().map(|r| r.event_id()).collect::<Vec<_>>(),
        "the uncommitted records are delivered to the new owner"
    );
    let row = cursor().await;
    assert_eq!(row.get::<_, String>(1), second.member_id());

    // The first member's commit arrives late: refused, the cursor stays.
    let e = first.commit().await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert_eq!(cursor().await.get::<_, String>(0), before);
    assert!(first
        .poll(10, Duration::from_millis(100))
        .await
        .unwrap_err()
        .is_fenced());
    first.close().await.unwrap();

    second.commit().await.unwrap();
    assert_ne!(cursor().await.get::<_, String>(0), before);
    second.close().await.unwrap();
    let row = cursor().await;
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "close gives the partition up"
    );
}

#[tokio::test]
async fn a_walsender_holding_an_owned_partitions_slot_is_terminated() {
    use pg_changestream::stream::{ChangeStream, ChangeStreamOptions};
    let (_db, client, config) = database().await;
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    let builder = || {
        ConsumerBuilder::new(config.clone(), "held")
            .partitions(2)
            .add_table("items", StartLocation::Latest)
    };
    builder().build().await.unwrap().close().await.unwrap();
    // Something else (a consumer that died without closing, say) streams partition 1's slot.
    let row = client
        .query_one(
            "SELECT slot_name::text, publication_name::text FROM changestream.partitions
              WHERE group_id = 'held' AND partition = 1",
            &[],
        )
        .await
        .unwrap();
    let mut holder = ChangeStream::start(
        &config,
        ChangeStreamOptions::new(row.get::<_, String>(0), vec![row.get(1)]),
    )
    .await
    .unwrap();
    let holder_pid = holder.backend_pid();

    // The member owning the partition takes the slot: the holder's walsender is terminated.
    let mut consumer = builder().build().await.unwrap();
    assert_eq!(owned(&consumer), vec![0, 1]);
    assert!(!consumer.backend_pids().contains(&holder_pid));
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match holder.next_change().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the holder's stream ends");
    assert!(!matches!(gone, Some(Ok(()))));
    let (a, b, _) = keys_across(&client, 2).await;
    client
        .batch_execute(&format!("INSERT INTO items VALUES ({a}, 1), ({b}, 2)"))
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 2).await;
    let partitions: BTreeSet<u16> = records
        .iter()
        .filter_map(Record::partition)
        .map(u16::from)
        .collect();
    assert_eq!(partitions.len(), 2, "both partitions stream");
    consumer.close().await.unwrap();
}

/// Two members building a new partitioned group at the same moment both see the table
/// missing from the publications and both add it; the one that comes second must find it
/// added (by the other, with the same filter), not fail. Several rounds, each a new group,
/// since the window is small.
#[tokio::test]
async fn members_building_a_new_group_at_once_both_start() {
    let (_db, client, config) = database().await;
    client
        .batch_execute("CREATE TABLE race (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    enable_change_streaming(&config, "race", false)
        .await
        .unwrap();
    for round in 0..6 {
        let group = format!("race{round}");
        let build = || {
            ConsumerBuilder::new(config.clone(), &group)
                .partitions(2)
                .add_table("race", StartLocation::Latest)
                .build()
        };
        let (a, b) = tokio::join!(build(), build());
        let (a, b) = (a.unwrap(), b.unwrap());
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
}

/// The partitions `consumer` owns, as numbers.
fn owned(consumer: &Consumer) -> Vec<i32> {
    consumer.partitions().into_iter().map(i32::from).collect()
}
