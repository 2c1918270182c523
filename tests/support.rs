//! Helpers shared by the consumer scenarios: a writer of known rows and ways to read them
//! back through a consumer.

use std::time::{Duration, Instant};

use pg_changestream::consumer::{Consumer, Record};
use pg_changestream::Lsn;
use tokio_postgres::Client;

/// Inserts rows `from..=to` of `items`, one transaction each.
pub(crate) async fn insert(client: &Client, from: i32, to: i32) {
    for id in from..=to {
        client
            .batch_execute(&format!("INSERT INTO items VALUES ({id}, 'v{id}')"))
            .await
            .unwrap();
    }
}

/// The `id` of a record's current (or key) image.
pub(crate) fn id(record: &Record) -> i64 {
    let image = record
        .current()
        .or_else(|| record.key())
        .expect("a row image");
    let value = serde_json::to_value(image.get("id").expect("an id column")).unwrap();
    value.as_i64().expect("id is a number")
}

/// Polls until `count` records arrived (each poll up to `limit`), or 60 s passed.
pub(crate) async fn poll_n(consumer: &mut Consumer, count: usize, limit: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records within 60 s",
            out.len()
        );
        let bundle = consumer
            .poll(limit.min(count - out.len()), Duration::from_millis(500))
            .await
            .unwrap();
        out.extend(bundle.into_records());
    }
    assert_eq!(out.len(), count, "no more than asked for");
    out
}

/// The records of the first poll that returns any.
pub(crate) async fn first_records(consumer: &mut Consumer) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bundle = consumer
            .poll(100, Duration::from_millis(500))
            .await
            .unwrap();
        if !bundle.is_empty() {
            return bundle.into_records();
        }
        assert!(Instant::now() < deadline, "nothing within 60 s");
    }
}

/// Asserts that nothing arrives for a while.
pub(crate) async fn assert_quiet(consumer: &mut Consumer) {
    for _ in 0..3 {
        let bundle = consumer
            .poll(100, Duration::from_millis(400))
            .await
            .unwrap();
        let ids: Vec<i64> = bundle.records().map(id).collect();
        assert!(bundle.is_empty(), "unexpected records {ids:?}");
    }
}

pub(crate) fn ids(records: &[Record]) -> Vec<i64> {
    records.iter().map(id).collect()
}

pub(crate) fn event_ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.event_id().to_string()).collect()
}

/// The durable cursor: (commit LSN, records done in the transaction there).
pub(crate) async fn cursor(client: &Client, group: &str) -> (Lsn, i64) {
    let row = client
        .query_one(
            "SELECT commit_lsn::text, records_done FROM changestream.cursors WHERE group_id = $1",
            &[&group],
        )
        .await
        .unwrap();
    (row.get::<_, String>(0).parse().unwrap(), row.get(1))
}
