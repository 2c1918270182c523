//! A column added while `tail` runs: the schema record between the two inserts, with the
//! column lists before and after.

use pg_changestream::consumer::enable_change_streaming;
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::ConnectConfig;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::bin::cli;

/// A database with `t (id int PRIMARY KEY, a text)`, enabled without before-images.
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

#[tokio::test]
async fn tail_prints_a_schema_record_with_both_column_lists() {
    let (db, client, _config) = setup().await;
    let url = db.url();
    let tail = |max: &'static str| {
        let mut cmd = cli();
        cmd.args(["--url", &url, "tail", "-g", "cli", "-t", "t@latest"])
            .args(["--max-records", max, "--idle-exit", "2"]);
        cmd
    };
    // The first run creates the group; nothing to read yet.
    let out = tail("1").output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    client
        .batch_execute(
            "INSERT INTO t VALUES (1, 'x');
             ALTER TABLE t ADD COLUMN b int;
             INSERT INTO t VALUES (2, 'y', 5);",
        )
        .await
        .unwrap();
    let out = tail("3").output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["insert", "schema", "insert"]);
    let schema = &lines[1];
    assert_eq!(schema["table"], "public.t");
    assert_eq!(
        (&schema["key"], &schema["before"], &schema["after"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(schema["before_image"], "not_applicable");
    let names = |field: &str| -> Vec<String> {
        schema[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("columns"), ["id", "a", "b"]);
    assert_eq!(names("previous_columns"), ["id", "a"]);
    assert_eq!(schema["columns"][2]["type"], "int4");
    assert_eq!(lines[2]["after"], json!({"id": 2, "a": "y", "b": 5}));
}
