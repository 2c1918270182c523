//! Row filters (in the publications, evaluated by PostgreSQL) and projections (columns
//! dropped before a record is made): a PII column never reaches any output — current
//! image, before-image, key, backfill reads, the CLI's lines — updates that move a row into
//! or out of the filter, a filter changed later, a filter ANDed with a partitioned group's
//! hash, and the refusals (bad filter, filter on a non-key column without before-images,
//! unknown column, excluded key column) with the exit status and message the CLI gives.

use pg_changestream::consumer::{
    enable_change_streaming, ConsumerBuilder, Op, Record, StartLocation, TableSpec,
};
use pg_changestream::testing::{streamed_table, TestDatabase};
use pg_changestream::ConnectConfig;
use tokio_postgres::Client;

use crate::support::{assert_quiet, poll_n};

/// A database with `customers (id int PRIMARY KEY, email text, status text)`, enabled with
/// or without before-images.
async fn setup(before_images: bool) -> (TestDatabase, Client, ConnectConfig) {
    let ddl = "CREATE TABLE customers (id int PRIMARY KEY, email text, status text)";
    streamed_table(ddl, "customers", before_images)
        .await
        .unwrap()
}

/// Every way a record can be printed: the library's JSON and the images one by one.
fn all_output(record: &Record) -> String {
    let mut out = serde_json::to_string(record).unwrap();
    for image in [record.current(), record.before().image(), record.key()]
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("{image:?}"));
        out.push_str(&serde_json::to_string(&image).unwrap());
    }
    out.push_str(&format!("{record:?}"));
    out
}

fn assert_no_pii(text: &str) {
    assert!(!text.contains("pii.example"), "a PII value leaked: {text}");
    assert!(!text.contains("email"), "the PII column leaked: {text}");
}

fn op_and_id(record: &Record) -> (Op, i64) {
    let image = record.current().or_else(|| record.key()).unwrap();
    let id = serde_json::to_value(image.get("id").unwrap()).unwrap();
    (record.op(), id.as_i64().unwrap())
}

#[tokio::test]
async fn a_filtered_projected_table_never_shows_the_excluded_column() {
    let (_db, client, config) = setup(true).await;
    client
        .batch_execute(
            "INSERT INTO customers VALUES (1, 'a@pii.example', 'active'),
                                          (2, 'b@pii.example', 'draft')",
        )
        .await
        .unwrap();
    let spec = TableSpec::new("customers", StartLocation::Earliest)
        .filter("status <> 'draft'")
        .exclude_columns(["email"]);
    let mut consumer = ConsumerBuilder::new(config.clone(), "crm")
        .add_table_with(spec)
        .build()
        .await
        .unwrap();
    // The backfill reads only the rows the filter admits, without the column.
    let reads = poll_n(&mut consumer, 1, 100).await;
    assert_eq!(op_and_id(&reads[0]), (Op::Read, 1));
    for statement in [
        "INSERT INTO customers VALUES (3, 'c@pii.example', 'active')",
        "INSERT INTO customers VALUES (4, 'd@pii.example', 'draft')",
        "UPDATE customers SET status = 'vip', email = 'e@pii.example' WHERE id = 1",
        // Into the filter: an insert; out of it: a delete (as PostgreSQL decides).
        "UPDATE customers SET status = 'active' WHERE id = 4",
        "UPDATE customers SET status = 'draft' WHERE id = 3",
        "DELETE FROM customers WHERE id = 1",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    let records = poll_n(&mut consumer, 5, 100).await;
    assert_eq!(
        records.iter().map(op_and_id).collect::<Vec<_>>(),
        [
            (Op::Insert, 3),
            (Op::Update, 1),
            (Op::Insert, 4),
            (Op::Delete, 3),
            (Op::Delete, 1)
        ]
    );
    for record in reads.iter().chain(&records) {
        assert_no_pii(&all_output(record));
        let relation = record.relation().unwrap();
        let names: Vec<&str> = relation.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["id", "status"]);
    }
    // The before-images are there (full rows), just without the column.
    let update = &records[1];
    let before = serde_json::to_value(update.before().image().unwrap()).unwrap();
    assert_eq!(before, serde_json::json!({"id": 1, "status": "active"}));
    // The filter uses a non-key column: switching before-images off would make PostgreSQL
    // refuse the application's UPDATEs and DELETEs, so it is refused and nothing changes.
    let e = enable_change_streaming(&config, "customers", false)
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("row filter"), "{e}");
    client
        .batch_execute("UPDATE customers SET status = 'active' WHERE id = 2 AND false")
        .await
        .unwrap();
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();

    // Stored with the group: built again without a spec, the table keeps both.
    let mut consumer = ConsumerBuilder::new(config.clone(), "crm")
        .add_table("customers", StartLocation::FirstUncommitted)
        .build()
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO customers VALUES (5, 'f@pii.example', 'draft');
             INSERT INTO customers VALUES (6, 'g@pii.example', 'active');",
        )
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 1, 100).await;
    assert_eq!(op_and_id(&records[0]), (Op::Insert, 6));
    assert_no_pii(&all_output(&records[0]));
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();

    // A new filter replaces the stored one for changes committed after it; a spec without
    // a projection brings the column back.
    let mut consumer = ConsumerBuilder::new(config.clone(), "crm")
        .add_table_with(
            TableSpec::new("customers", StartLocation::FirstUncommitted).filter("id > 6"),
        )
        .build()
        .await
        .unwrap();
    let stored: Option<String> = client
        .query_one(
            "SELECT rowfilter FROM pg_publication_tables WHERE tablename = 'customers'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_deref(), Some("(id > 6)"));
    client
        .batch_execute(
            "INSERT INTO customers VALUES (7, 'h@x.example', 'draft');
             UPDATE customers SET status = 'new' WHERE id = 6;",
        )
        .await
        .unwrap();
    // The records' columns changed with the projection: a schema record says so first.
    let records = poll_n(&mut consumer, 2, 100).await;
    let change = records[0].schema_change().expect("a schema record");
    let names = |columns: &[pg_changestream::decode::relation::Column]| {
        columns
            .iter()
            .map(|c| c.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(change.columns()), ["id", "email", "status"]);
    assert_eq!(names(change.previous_columns()), ["id", "status"]);
    assert_eq!(op_and_id(&records[1]), (Op::Insert, 7));
    assert_eq!(
        serde_json::to_value(records[1].current().unwrap()).unwrap(),
        serde_json::json!({"id": 7, "email": "h@x.example", "status": "draft"})
    );
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn an_include_list_keeps_the_key_and_a_partitioned_group_ands_the_filter() {
    let (_db, client, config) = setup(false).await;
    // Without before-images a filter may use key columns only: id is one.
    let spec = TableSpec::new("customers", StartLocation::Latest)
        .filter("id % 2 = 0")
        .columns(["status"]);
    let mut consumer = ConsumerBuilder::new(config.clone(), "split")
        .partitions(2)
        .add_table_with(spec)
        .build()
        .await
        .unwrap();
    for id in 1..=10 {
        client
            .batch_execute(&format!(
                "INSERT INTO customers VALUES ({id}, '{id}@pii.example', 's{id}')"
            ))
            .await
            .unwrap();
    }
    client
        .batch_execute("DELETE FROM customers WHERE id IN (3, 4)")
        .await
        .unwrap();
    let records = poll_n(&mut consumer, 6, 100).await;
    let mut got: Vec<(Op, i64)> = records.iter().map(op_and_id).collect();
    got.sort_by_key(|(op, id)| (*id, op.as_str() == "delete"));
    assert_eq!(
        got,
        [
            (Op::Insert, 2),
            (Op::Insert, 4),
            (Op::Delete, 4),
            (Op::Insert, 6),
            (Op::Insert, 8),
            (Op::Insert, 10)
        ]
    );
    let partitions: std::collections::BTreeSet<_> = records.iter().map(|r| r.partition()).collect();
    assert_eq!(
        partitions.len(),
        2,
        "both partitions delivered: {partitions:?}"
    );
    for record in &records {
        assert_no_pii(&all_output(record));
    }
    let insert = records.iter().find(|r| r.op() == Op::Insert).unwrap();
    let image = serde_json::to_value(insert.current().unwrap()).unwrap();
    let keys: Vec<&String> = image.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "status"], "the key is kept: {image}");
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn refused_filters_and_columns_name_the_table_and_create_nothing() {
    let (_db, client, config) = setup(false).await;
    let build = |spec: TableSpec| {
        ConsumerBuilder::new(config.clone(), "refused")
            .add_table_with(spec)
            .build()
    };
    let table = || TableSpec::new("customers", StartLocation::Latest);
    let cases = [
        (
            table().filter("nosuch > 1"),
            "column \"nosuch\" does not exist",
        ),
        // Not part of the replica identity (no before-images): the server's reason.
        (
            table().filter("status <> 'x'"),
            "not part of the replica identity",
        ),
        (table().filter("random() > 0.5"), "customers"),
        (table().exclude_columns(["nosuch"]), "no column \"nosuch\""),
        (table().columns(["id", "Email"]), "no column \"Email\""),
        (table().exclude_columns(["id"]), "part of the key"),
    ];
    for (spec, needle) in cases {
        let e = build(spec.clone()).await.err().unwrap();
        assert!(e.is_config(), "{spec:?}: {e}");
        let message = e.to_string();
        assert!(message.contains(needle), "{needle:?} not in: {message}");
        assert!(message.contains("customers"), "{message}");
    }
    let groups: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(groups, 0, "a refused build created a slot");
}
