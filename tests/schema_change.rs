//! Schema changes as records: a column added, dropped, renamed or retyped gives one
//! `schema` record, in order, right before the first change in the new shape; a reconnect
//! (which re-sends every Relation message) gives none of its own and redelivers the
//! uncommitted ones with the same event ids, also from the middle of a transaction; the
//! CLI prints them with both column lists.

use std::time::Duration;

use pg_changestream::consumer::{
    enable_change_streaming, CommitMode, Consumer, ConsumerBuilder, Op, Record, StartLocation,
};
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::ConnectConfig;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::support::{assert_quiet, poll_n};

async fn setup() -> (TestDatabase, Client, ConnectConfig) {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, a text)")
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    enable_change_streaming(&config, "t", false).await.unwrap();
    (db, client, config)
}

async fn consumer(config: &ConnectConfig, group: &str) -> Consumer {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("t", StartLocation::Latest)
        .commit_mode(CommitMode::Manual)
        .reconnect_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap()
}

async fn terminate_walsenders(client: &Client, consumer: &Consumer) {
    for pid in consumer.backend_pids() {
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
}

/// `(event id, op)` of each record.
fn ids_and_ops(records: &[Record]) -> Vec<(String, Op)> {
    records
        .iter()
        .map(|r| (r.event_id().to_string(), r.op()))
        .collect()
}

/// A schema record's column lists as `name:type(modifier)` (`*` for key columns).
fn columns(record: &Record) -> (Vec<String>, Vec<String>) {
    let change = record.schema_change().expect("a schema record");
    let show = |columns: &[pg_changestream::decode::relation::Column]| {
        columns
            .iter()
            .map(|c| {
                format!(
                    "{}{}:{}({})",
                    if c.is_key() { "*" } else { "" },
                    c.name(),
                    c.type_name(),
                    c.type_modifier()
                )
            })
            .collect()
    };
    (show(change.columns()), show(change.previous_columns()))
}

#[tokio::test]
async fn each_column_change_is_one_schema_record_before_the_first_change_in_its_shape() {
    let (_db, client, config) = setup().await;
    let mut consumer = consumer(&config, "shapes").await;
    for statement in [
        "INSERT INTO t VALUES (1, 'x')",
        "ALTER TABLE t ADD COLUMN b varchar(20)",
        "INSERT INTO t VALUES (2, 'y', 'z')",
        "ALTER TABLE t DROP COLUMN a",
        "INSERT INTO t VALUES (3, 'w')",
        "ALTER TABLE t RENAME COLUMN b TO c",
        "INSERT INTO t VALUES (4, 'v')",
        "ALTER TABLE t ALTER COLUMN c TYPE text",
        "UPDATE t SET c = 'u' WHERE id = 4",
        // Not a change of columns: no schema record.
        "ALTER TABLE t ALTER COLUMN c SET DEFAULT 'd'",
        "DELETE FROM t WHERE id = 1",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    let records = poll_n(&mut consumer, 10, 100).await;
    let ops: Vec<Op> = records.iter().map(Record::op).collect();
    use Op::{Delete, Insert, Schema, Update};
    assert_eq!(
        ops,
        [Insert, Schema, Insert, Schema, Insert, Schema, Insert, Schema, Update, Delete]
    );
    let changes: Vec<_> = records
        .iter()
        .filter(|r| r.op() == Schema)
        .map(columns)
        .collect();
    let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(
        changes,
        [
            (
                s(&["*id:int4(-1)", "a:text(-1)", "b:varchar(24)"]),
                s(&["*id:int4(-1)", "a:text(-1)"])
            ),
            (
                s(&["*id:int4(-1)", "b:varchar(24)"]),
                s(&["*id:int4(-1)", "a:text(-1)", "b:varchar(24)"])
            ),
            (
                s(&["*id:int4(-1)", "c:varchar(24)"]),
                s(&["*id:int4(-1)", "b:varchar(24)"])
            ),
            (
                s(&["*id:int4(-1)", "c:text(-1)"]),
                s(&["*id:int4(-1)", "c:varchar(24)"])
            ),
        ]
    );
    // Each sits in the transaction of the change it precedes, right before it.
    for pair in records.windows(2) {
        if pair[0].op() == Schema {
            let (schema, change) = (pair[0].event_id(), pair[1].event_id());
            assert_eq!(schema.commit_lsn, change.commit_lsn);
            assert_eq!(schema.index + 1, change.index);
        }
    }
    // The JSON form.
    let json: Value = serde_json::to_value(&records[1]).unwrap();
    assert_eq!(json["op"], "schema");
    assert_eq!(json["table"], "public.t");
    assert_eq!(
        json["columns"][2],
        json!({"name": "b", "type": "varchar", "type_oid": 1043, "type_modifier": 24, "key": false})
    );
    assert_eq!(json["previous_columns"].as_array().unwrap().len(), 2);

    // Nothing committed: a reconnect delivers the same records, schema records included,
    // with the same event ids, and no schema record for the re-sent Relation messages.
    terminate_walsenders(&client, &consumer).await;
    let again = poll_n(&mut consumer, 10, 100).await;
    assert_eq!(ids_and_ops(&again), ids_and_ops(&records));
    consumer.commit().await.unwrap();
    terminate_walsenders(&client, &consumer).await;
    client
        .batch_execute("INSERT INTO t VALUES (7, 's')")
        .await
        .unwrap();
    let after = poll_n(&mut consumer, 1, 100).await;
    assert_eq!(after[0].op(), Insert, "{:?}", ids_and_ops(&after));
    assert_quiet(&mut consumer).await;
    assert!(consumer.stats().reconnects >= 2);
    consumer.close().await.unwrap();
}

/// Everything that arrives until the consumer is quiet, each event once (a change the
/// old stream had queued before it was terminated comes again after the reconnect, with
/// the same event id and op).
async fn drain(consumer: &mut Consumer) -> Vec<(String, Op)> {
    let mut out: Vec<(String, Op)> = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let bundle = consumer
            .poll(100, Duration::from_millis(400))
            .await
            .unwrap();
        quiet = if bundle.is_empty() { quiet + 1 } else { 0 };
        for (id, op) in ids_and_ops(&bundle.into_records()) {
            match out.iter().find(|(seen, _)| *seen == id) {
                Some((_, seen_op)) => assert_eq!(*seen_op, op, "{id} came as two ops"),
                None => out.push((id, op)),
            }
        }
    }
    out
}

#[tokio::test]
async fn a_schema_change_inside_a_transaction_resumes_at_the_same_index() {
    let (_db, client, config) = setup().await;
    let mut consumer = consumer(&config, "mid").await;
    let txn = |id: i32, column: &str| {
        format!(
            "BEGIN;
             INSERT INTO t SELECT {id}, 'old';
             ALTER TABLE t ADD COLUMN {column} int;
             INSERT INTO t (id, a, {column}) VALUES ({id} + 1, 'new', 1);
             COMMIT;"
        )
    };
    client.batch_execute(&txn(10, "z")).await.unwrap();
    let first = poll_n(&mut consumer, 1, 1).await;
    assert_eq!(first[0].op(), Op::Insert);
    // Committed inside the transaction, before its schema record: the restarted stream
    // sends the transaction again, and the schema record comes at the same index.
    consumer.commit().await.unwrap();
    terminate_walsenders(&client, &consumer).await;
    let rest = drain(&mut consumer).await;
    let ops: Vec<Op> = rest.iter().map(|(_, op)| *op).collect();
    assert_eq!(ops, [Op::Schema, Op::Insert], "{rest:?}");
    let index = |id: &str| id.rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        (index(&rest[0].0), index(&rest[1].0)),
        ("1".to_owned(), "2".to_owned())
    );
    consumer.commit().await.unwrap();

    // Committed up to and with the schema record: after a restart, only the change after it.
    client.batch_execute(&txn(20, "y")).await.unwrap();
    let two = poll_n(&mut consumer, 2, 1).await;
    assert_eq!(
        two.iter().map(Record::op).collect::<Vec<_>>(),
        [Op::Insert, Op::Schema]
    );
    consumer.commit().await.unwrap();
    terminate_walsenders(&client, &consumer).await;
    let rest = drain(&mut consumer).await;
    let ops: Vec<Op> = rest.iter().map(|(_, op)| *op).collect();
    assert_eq!(ops, [Op::Insert], "{rest:?}");
    assert_eq!(index(&rest[0].0), "2");
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_change_made_while_no_consumer_ran_is_reported_by_the_next_one() {
    let (_db, client, config) = setup().await;
    let mut first = consumer(&config, "offline").await;
    client
        .batch_execute("INSERT INTO t VALUES (1, 'x')")
        .await
        .unwrap();
    assert_eq!(poll_n(&mut first, 1, 100).await[0].op(), Op::Insert);
    first.commit().await.unwrap();
    first.close().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) FROM changestream.relation_shapes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the columns are stored with the cursor");
    // Nothing of the table in the old shape after the committed position: only the
    // columns stored with the cursor tell the next consumer that they changed.
    client
        .batch_execute(
            "ALTER TABLE t ADD COLUMN b int;
             INSERT INTO t VALUES (2, 'y', 3);",
        )
        .await
        .unwrap();
    let mut next = consumer(&config, "offline").await;
    let records = poll_n(&mut next, 2, 100).await;
    assert_eq!(
        records.iter().map(Record::op).collect::<Vec<_>>(),
        [Op::Schema, Op::Insert]
    );
    let (now, before) = columns(&records[0]);
    assert_eq!(now, ["*id:int4(-1)", "a:text(-1)", "b:int4(-1)"]);
    assert_eq!(before, ["*id:int4(-1)", "a:text(-1)"]);
    next.commit().await.unwrap();
    next.close().await.unwrap();
    // And the next one after that sees no change at all.
    client
        .batch_execute("INSERT INTO t VALUES (3, 'z', 4)")
        .await
        .unwrap();
    let mut third = consumer(&config, "offline").await;
    let records = poll_n(&mut third, 1, 100).await;
    assert_eq!(records[0].op(), Op::Insert);
    assert_quiet(&mut third).await;
    third.close().await.unwrap();
}
