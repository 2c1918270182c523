//! Consumer groups against a real server: independent groups, commit modes and redelivery,
//! transactions split over bundles, start locations, idle groups and WAL, filters, live
//! table changes, deleting a group under a consumer.

use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use pg_changestream::consumer::{
    delete_group, enable_change_streaming, CommitMode, ConsumerBuilder, Op, Record, StartLocation,
};
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::{ConnectConfig, Lsn};
use tokio_postgres::Client;

use crate::support::{assert_quiet, cursor, event_ids, first_records, id, ids, insert, poll_n};

/// A database with `public.items (id int primary key, v text)` enabled with before-images.
async fn setup() -> (TestDatabase, Client, ConnectConfig) {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, v text);
             CREATE TABLE other (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    enable_change_streaming(&config, "items", true)
        .await
        .unwrap();
    enable_change_streaming(&config, "other", false)
        .await
        .unwrap();
    (db, client, config)
}

fn builder(config: &ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("items", StartLocation::Latest)
        .reconnect_timeout(Duration::from_secs(30))
}

async fn slot_of(client: &Client, group: &str) -> (String, Option<String>, Option<i32>) {
    let row = client
        .query_one(
            "SELECT p.slot_name::text, s.confirmed_flush_lsn::text, s.active_pid
               FROM changestream.partitions p
               LEFT JOIN pg_replication_slots s ON s.slot_name = p.slot_name
              WHERE p.group_id = $1",
            &[&group],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn two_groups_each_receive_every_change_and_keep_their_own_cursor() {
    let (_db, client, config) = setup().await;
    let mut a = builder(&config, "group a")
        .commit_mode(CommitMode::Manual)
        .build()
        .await
        .unwrap();
    let mut b = builder(&config, "group \"b\"; DROP TABLE items; --")
        .commit_mode(CommitMode::Manual)
        .build()
        .await
        .unwrap();
    insert(&client, 1, 10).await;

    let from_a = poll_n(&mut a, 10, 100).await;
    assert_eq!(ids(&from_a), (1..=10).collect::<Vec<_>>());
    a.commit().await.unwrap();
    let from_b = poll_n(&mut b, 5, 5).await;
    assert_eq!(ids(&from_b), (1..=5).collect::<Vec<_>>());
    assert_eq!(
        event_ids(&from_a[..5]),
        event_ids(&from_b),
        "event ids are the group-independent commit positions"
    );
    b.commit().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();

    let (slot_a, ..) = slot_of(&client, "group a").await;
    let (slot_b, ..) = slot_of(&client, "group \"b\"; DROP TABLE items; --").await;
    assert_ne!(slot_a, slot_b, "each group has its own slot");

    let mut a = builder(&config, "group a").build().await.unwrap();
    let mut b = builder(&config, "group \"b\"; DROP TABLE items; --")
        .build()
        .await
        .unwrap();
    assert_eq!(
        ids(&poll_n(&mut b, 5, 100).await),
        (6..=10).collect::<Vec<_>>()
    );
    assert_quiet(&mut a).await;
    assert_quiet(&mut b).await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10, "the hostile group id was data, not SQL");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn manual_mode_redelivers_exactly_what_was_not_committed() {
    let (_db, client, config) = setup().await;
    let manual = || builder(&config, "manual").commit_mode(CommitMode::Manual);
    let consumer = manual().build().await.unwrap();
    insert(&client, 1, 6).await;
    let mut consumer = {
        let mut c = consumer;
        let first = poll_n(&mut c, 6, 100).await;
        assert_eq!(ids(&first), (1..=6).collect::<Vec<_>>());
        drop(c); // no commit
        let mut c = manual().build().await.unwrap();
        let again = poll_n(&mut c, 6, 100).await;
        assert_eq!(
            event_ids(&again),
            event_ids(&first),
            "same records, same event ids"
        );
        c
    };

    // Commit the last bundle, then the first: the older commit changes nothing.
    consumer.reset().await.unwrap();
    let mut bundles = Vec::new();
    let mut total = 0;
    while total < 6 {
        let bundle = consumer.poll(3, Duration::from_secs(10)).await.unwrap();
        total += bundle.len();
        bundles.push(bundle);
    }
    assert_eq!(total, 6, "reset redelivers all six");
    assert!(bundles.len() >= 2);
    bundles.last().unwrap().commit().await.unwrap();
    bundles[0].commit().await.unwrap();
    drop(consumer);

    let mut consumer = manual().build().await.unwrap();
    assert_quiet(&mut consumer).await;
    insert(&client, 7, 7).await;
    assert_eq!(ids(&poll_n(&mut consumer, 1, 100).await), vec![7]);
    consumer.close().await.unwrap(); // manual: close does not commit
    let mut consumer = manual().build().await.unwrap();
    assert_eq!(ids(&poll_n(&mut consumer, 1, 100).await), vec![7]);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn automatic_mode_commits_the_previous_poll_at_the_next_poll_and_on_close() {
    let (_db, client, config) = setup().await;
    let mut consumer = builder(&config, "auto").build().await.unwrap();
    insert(&client, 1, 4).await;
    let first = first_records(&mut consumer).await;
    drop(consumer); // the poll was never followed by another: nothing committed

    let mut consumer = builder(&config, "auto").build().await.unwrap();
    let mut again = first_records(&mut consumer).await;
    assert_eq!(
        again[0].event_id(),
        first[0].event_id(),
        "the first poll is delivered again"
    );
    while again.len() < 4 {
        again.extend(first_records(&mut consumer).await); // each poll commits the one before
    }
    assert_eq!(ids(&again), [1, 2, 3, 4]);
    insert(&client, 5, 5).await;
    assert_eq!(ids(&poll_n(&mut consumer, 1, 100).await), vec![5]); // commits 1-4
    drop(consumer);
    // That commit runs in the background, so the poll did not wait for its round trip.
    let row_4 = again[3].txn().commit_lsn;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cursor(&client, "auto").await < (row_4, 1) {
        assert!(
            Instant::now() < deadline,
            "the commit of rows 1-4 never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut consumer = builder(&config, "auto").build().await.unwrap();
    assert_eq!(
        ids(&poll_n(&mut consumer, 1, 100).await),
        vec![5],
        "1-4 committed"
    );
    consumer.close().await.unwrap(); // commits 5

    let mut consumer = builder(&config, "auto").build().await.unwrap();
    assert_quiet(&mut consumer).await;
    let stats = consumer.stats();
    assert_eq!(stats.records(), 0);

    // The same through the Stream view: each next bundle commits the one before.
    insert(&client, 6, 7).await;
    let mut seen = Vec::new();
    {
        let mut bundles = consumer.bundles(1);
        while seen.len() < 2 {
            let bundle = tokio::time::timeout(Duration::from_secs(30), bundles.next())
                .await
                .expect("a bundle within 30 s")
                .expect("the stream does not end")
                .unwrap();
            seen.extend(bundle.records().map(id));
        }
    }
    assert_eq!(seen, [6, 7]);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_large_transaction_spans_bundles_and_commits_record_by_record() {
    let (_db, client, config) = setup().await;
    let manual = || builder(&config, "large").commit_mode(CommitMode::Manual);
    let mut consumer = manual().build().await.unwrap();
    client
        .execute(
            "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g",
            &[],
        )
        .await
        .unwrap();
    let first = poll_n(&mut consumer, 300, 300).await;
    assert_eq!(ids(&first), (1..=300).collect::<Vec<_>>());
    let key: Vec<&str> = first[0]
        .key()
        .unwrap()
        .iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        key,
        ["id"],
        "under REPLICA IDENTITY FULL the key is the primary key"
    );
    let xid = first[0].txn().xid;
    assert!(first.iter().all(|r| r.txn().xid == xid), "one transaction");
    consumer.commit().await.unwrap();
    let uncommitted = poll_n(&mut consumer, 100, 100).await;
    assert_eq!(id(&uncommitted[0]), 301);
    drop(consumer);

    let mut consumer = manual().build().await.unwrap();
    let rest = poll_n(&mut consumer, 700, 1000).await;
    assert_eq!(ids(&rest), (301..=1000).collect::<Vec<_>>());
    assert_eq!(
        rest[0].event_id().index,
        300,
        "event ids keep their index in the txn"
    );
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let mut consumer = manual().build().await.unwrap();
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();
}

async fn wal_insert_lsn(client: &Client) -> Lsn {
    client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap()
}

#[tokio::test]
async fn latest_at_time_and_at_lsn_start_where_specified() {
    let (_db, client, config) = setup().await;
    // The group exists before the rows, so its slot holds all of them.
    builder(&config, "starts")
        .build()
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    insert(&client, 1, 5).await;
    let lsn = wal_insert_lsn(&client).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let time: SystemTime = client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    insert(&client, 6, 10).await;

    let reset = |location| {
        ConsumerBuilder::new(config.clone(), "starts")
            .add_table("items", location)
            .force_reset(true)
            .commit_mode(CommitMode::Manual)
    };
    for location in [StartLocation::AtLsn(lsn), StartLocation::AtTime(time)] {
        let mut consumer = reset(location).build().await.unwrap();
        assert!(
            consumer.start_warnings().is_empty(),
            "{:?}",
            consumer.start_warnings()
        );
        assert_eq!(
            ids(&poll_n(&mut consumer, 5, 100).await),
            (6..=10).collect::<Vec<_>>(),
            "{location}"
        );
        assert_quiet(&mut consumer).await;
        consumer.close().await.unwrap();
    }

    // A time before the oldest change the group holds starts there, and says so.
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut consumer = reset(StartLocation::AtTime(long_ago))
        .build()
        .await
        .unwrap();
    assert_eq!(consumer.start_warnings().len(), 1);
    assert_eq!(
        ids(&poll_n(&mut consumer, 10, 100).await),
        (1..=10).collect::<Vec<_>>()
    );
    consumer.close().await.unwrap();

    let mut consumer = reset(StartLocation::Latest).build().await.unwrap();
    insert(&client, 11, 11).await;
    assert_eq!(ids(&poll_n(&mut consumer, 1, 100).await), vec![11]);
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn an_idle_group_lets_the_slot_follow_a_busy_server() {
    let (_db, client, config) = setup().await;
    let mut consumer = builder(&config, "idle").build().await.unwrap();
    let (slot, ..) = slot_of(&client, "idle").await;
    let restart_before: String = client
        .query_one(
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    // Busy writes to a table the group does not read.
    for round in 0..20 {
        client
            .execute(
                "INSERT INTO other SELECT g, repeat('x', 500) FROM generate_series($1 * 1000, $1 * 1000 + 999) g",
                &[&round],
            )
            .await
            .unwrap();
        assert!(consumer
            .poll(100, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty());
    }
    let target = wal_insert_lsn(&client).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(consumer
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty());
        let (_, confirmed, _) = slot_of(&client, "idle").await;
        let confirmed: Lsn = confirmed.unwrap().parse().unwrap();
        if confirmed >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot stuck at {confirmed}, server at {target}"
        );
    }
    // With the confirmed position current, a checkpoint lets the slot release its WAL.
    client.batch_execute("CHECKPOINT").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        consumer
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap();
        client.batch_execute("CHECKPOINT").await.unwrap();
        let row = client
            .query_one(
                "SELECT restart_lsn::text, (pg_current_wal_lsn() - restart_lsn)::bigint
                   FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap();
        let restart: String = row.get(0);
        let retained: i64 = row.get(1);
        if restart != restart_before && retained < 1024 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restart_lsn stuck at {restart} ({retained} bytes retained)"
        );
    }
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn operations_messages_and_tables_added_and_removed_while_consuming() {
    let (_db, client, config) = setup().await;
    let mut consumer = ConsumerBuilder::new(config.clone(), "filters")
        .add_table("items", StartLocation::Latest)
        .operations(&[Op::Insert, Op::Delete])
        .message_prefix("app")
        .build()
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO items VALUES (1, 'a');
             UPDATE items SET v = 'b' WHERE id = 1;
             SELECT pg_logical_emit_message(true, 'app', 'in a transaction');
             SELECT pg_logical_emit_message(false, 'other', 'not subscribed');
             DELETE FROM items WHERE id = 1;",
        )
        .await
        .unwrap();
    client
        .execute(
            "SELECT pg_logical_emit_message(false, 'app', 'on its own')",
            &[],
        )
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 4, 100).await;
    let ops: Vec<Op> = records.iter().map(Record::op).collect();
    assert_eq!(ops, [Op::Insert, Op::Message, Op::Delete, Op::Message]);
    let contents: Vec<&[u8]> = records
        .iter()
        .filter_map(|r| r.message_content().map(|(_, c)| c.as_ref()))
        .collect();
    assert_eq!(contents, [&b"in a transaction"[..], b"on its own"]);

    // A table joins while consuming: its changes from then on arrive.
    consumer
        .add_table("other", StartLocation::Latest)
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO other VALUES (1, 'x'); INSERT INTO items VALUES (2, 'y');")
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 2, 100).await;
    let tables: Vec<&str> = records
        .iter()
        .map(|r| r.relation().unwrap().name())
        .collect();
    assert_eq!(tables, ["other", "items"]);
    let bundle_tables = {
        client
            .batch_execute("INSERT INTO other VALUES (2, 'x'); INSERT INTO items VALUES (3, 'y'); INSERT INTO other VALUES (3, 'x');")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < 3 && Instant::now() < deadline {
            let bundle = consumer
                .poll(100, Duration::from_millis(500))
                .await
                .unwrap();
            for message in bundle.messages() {
                for event in message.events() {
                    seen.push((message.table().unwrap().to_owned(), event.records().len()));
                }
            }
        }
        seen
    };
    assert_eq!(
        bundle_tables,
        [("other".to_owned(), 2), ("items".to_owned(), 1)],
        "one transaction: an event per table, grouped in messages"
    );

    // And leaves: its changes stop at once.
    consumer.remove_table("other").await.unwrap();
    client
        .batch_execute("INSERT INTO other VALUES (4, 'x'); INSERT INTO items VALUES (4, 'y');")
        .await
        .unwrap();
    assert_eq!(ids(&poll_n(&mut consumer, 1, 100).await), vec![4]);
    let stats = consumer.stats();
    assert_eq!((stats.inserts, stats.deletes, stats.messages), (7, 1, 2));
    assert_eq!(stats.updates, 0, "updates were filtered out");
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_terminated_walsender_is_reconnected_without_loss_or_repeats() {
    let (_db, client, config) = setup().await;
    let mut consumer = builder(&config, "reconnect").build().await.unwrap();
    insert(&client, 1, 3).await;
    let mut got = ids(&poll_n(&mut consumer, 3, 100).await);
    for pid in consumer.backend_pids() {
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
    insert(&client, 4, 6).await;
    got.extend(ids(&poll_n(&mut consumer, 3, 100).await));
    assert_eq!(got, (1..=6).collect::<Vec<_>>());
    assert_quiet(&mut consumer).await;
    assert!(consumer.stats().reconnects >= 1);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn delete_group_refuses_while_attached_and_force_stops_the_consumer() {
    let (_db, client, config) = setup().await;
    let mut consumer = builder(&config, "doomed").build().await.unwrap();
    let e = delete_group(&config, "doomed", false).await.unwrap_err();
    assert!(e.to_string().contains("attached"), "{e}");
    delete_group(&config, "doomed", true).await.unwrap();
    let e = loop {
        match consumer.poll(100, Duration::from_millis(500)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("doomed"), "{e}");
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pcs_doomed%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
    let e = delete_group(&config, "doomed", true).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn tables_must_be_enabled_and_a_group_needs_one() {
    let (_db, client, config) = setup().await;
    client
        .batch_execute("CREATE TABLE plain (id int PRIMARY KEY)")
        .await
        .unwrap();
    let e = ConsumerBuilder::new(config.clone(), "g")
        .add_table("plain", StartLocation::Latest)
        .build()
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("public.plain is not enabled"), "{e}");
    let e = ConsumerBuilder::new(config.clone(), "g")
        .build()
        .await
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("reads no tables"),
        "{e}"
    );
    let e = ConsumerBuilder::new(config.clone(), "")
        .build()
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
}

#[tokio::test]
async fn a_publication_dropped_behind_the_consumer_is_a_definite_error() {
    let (_db, client, config) = setup().await;
    let mut consumer = builder(&config, "pub gone")
        .max_poll_interval(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let publication: String = client
        .query_one(
            "SELECT publication_name::text FROM changestream.partitions WHERE group_id = 'pub gone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!("DROP PUBLICATION \"{publication}\""))
        .await
        .unwrap();
    insert(&client, 1, 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let e = loop {
        match consumer.poll(100, Duration::from_millis(300)).await {
            Ok(_) => assert!(Instant::now() < deadline, "no error within 30 s"),
            Err(e) => break e,
        }
    };
    assert!(e.is_not_found() && !e.is_transient(), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("publication") && message.contains("pub gone"),
        "{message}"
    );
}
