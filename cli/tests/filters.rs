//! Row filters and projections through `tail`: the excluded column never reaches a line, in
//! backfill or stream, and a bad filter or column is refused with exit status 2.

use pg_changestream::testing::{streamed_table, TestDatabase};
use pg_changestream::ConnectConfig;
use tokio_postgres::Client;

use crate::bin::{json_lines, run};

/// The test data's PII: its domain and the column's name (as tests/filters.rs checks it).
fn assert_no_pii(text: &str) {
    assert!(!text.contains("pii.example"), "a PII value leaked: {text}");
    assert!(!text.contains("email"), "the PII column leaked: {text}");
}

/// A database with `customers (id int PRIMARY KEY, email text, status text)`, enabled with
/// or without before-images.
async fn setup(before_images: bool) -> (TestDatabase, Client, ConnectConfig) {
    let ddl = "CREATE TABLE customers (id int PRIMARY KEY, email text, status text)";
    streamed_table(ddl, "customers", before_images)
        .await
        .unwrap()
}

#[tokio::test]
async fn tail_filters_and_excludes_columns_in_backfill_and_stream() {
    let (db, client, _config) = setup(true).await;
    let url = db.url();
    client
        .batch_execute(
            "INSERT INTO customers VALUES (1, 'a@pii.example', 'active'),
                                          (2, 'b@pii.example', 'draft')",
        )
        .await
        .unwrap();
    let out = run(&[
        "--url",
        &url,
        "tail",
        "-g",
        "cli",
        "-t",
        "customers@earliest",
        "--where",
        "customers=status <> 'draft'",
        "--exclude-columns",
        "customers=email",
        "--max-records",
        "1",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_no_pii(&stdout);
    let read = json_lines(&out);
    assert_eq!(read.len(), 1, "{stdout}");
    assert_eq!(read[0]["op"], "read");
    assert_eq!(
        read[0]["after"],
        serde_json::json!({"id": 1, "status": "active"})
    );

    client
        .batch_execute(
            "INSERT INTO customers VALUES (3, 'c@pii.example', 'draft');
             UPDATE customers SET email = 'z@pii.example', status = 'gone' WHERE id = 1;
             DELETE FROM customers WHERE id = 1;",
        )
        .await
        .unwrap();
    // Without the flags: the group keeps what it stores.
    let out = run(&[
        "--url",
        &url,
        "tail",
        "-g",
        "cli",
        "-t",
        "customers",
        "--max-records",
        "2",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_pii(&stdout);
    let got = json_lines(&out);
    let ops: Vec<&str> = got.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["update", "delete"], "{stdout}");
    assert_eq!(
        got[0]["before"],
        serde_json::json!({"id": 1, "status": "active"})
    );
    assert_eq!(
        got[1]["before"],
        serde_json::json!({"id": 1, "status": "gone"})
    );
}

#[tokio::test]
async fn tail_refuses_a_bad_filter_or_column_with_exit_status_2() {
    let (db, _client, _config) = setup(false).await;
    let url = db.url();
    for (flags, needle) in [
        (
            ["--where", "customers=status <> 'x'"],
            "not part of the replica identity",
        ),
        (
            ["--where", "customers=nosuch = 1"],
            "\"nosuch\" does not exist",
        ),
        (
            ["--exclude-columns", "customers=mail"],
            "no column \"mail\"",
        ),
        (["--columns", "other=id"], "which no --table reads"),
    ] {
        let mut args = vec![
            "--url",
            url.as_str(),
            "tail",
            "-g",
            "bad",
            "-t",
            "customers",
        ];
        args.extend(flags);
        let out = run(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert!(
            stderr.contains("customers") || stderr.contains("other"),
            "{stderr}"
        );
    }
}
