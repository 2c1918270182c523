//! What survives failures: the durable cursor when the slot's position falls back, a server
//! crash right after a commit, and a slot the server invalidated.

use std::path::Path;
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    enable_change_streaming, CommitMode, ConsumerBuilder, StartLocation,
};
use pg_changestream::testing::{ClusterOptions, LocalCluster, ShutdownMode, TestServer};
use pg_changestream::{ConnectConfig, Lsn};
use tokio_postgres::{Client, NoTls};

use crate::support::{assert_quiet, cursor, ids, insert, poll_n};

fn server() -> &'static TestServer {
    match TestServer::shared() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A cluster of its own (these tests crash it or change server-wide settings), or `None`
/// — said loudly — when the test server does not come from local binaries.
pub(crate) async fn own_cluster(test: &str, settings: &[(&str, &str)]) -> Option<LocalCluster> {
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
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .unwrap();
    Some(cluster.unwrap())
}

pub(crate) async fn connect(config: tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn items_table(client: &Client, config: &ConnectConfig) {
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    enable_change_streaming(config, "items", true)
        .await
        .unwrap();
}

pub(crate) async fn slot_confirmed(client: &Client, group: &str) -> Option<Lsn> {
    client
        .query_one(
            "SELECT s.confirmed_flush_lsn::text FROM changestream.partitions p
               JOIN pg_replication_slots s USING (slot_name) WHERE p.group_id = $1",
            &[&group],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .map(|s| s.parse().unwrap())
}

/// What the server holds as committed for a 1-partition `group`, as the highest event id
/// `(commit LSN, index)` committed: the durable cursor's records, and every transaction
/// committing below the slot's confirmed position. A new consumer starts right after it.
pub(crate) async fn committed_up_to(client: &Client, group: &str) -> (Lsn, u64) {
    let below = |lsn: Lsn| (Lsn::new(lsn.as_u64().saturating_sub(1)), u64::MAX);
    let (lsn, done) = cursor(client, group).await;
    let by_cursor = match u64::try_from(done) {
        Ok(done) if done > 0 => (lsn, done - 1),
        _ => below(lsn),
    };
    let by_slot = below(slot_confirmed(client, group).await.unwrap_or_default());
    by_cursor.max(by_slot)
}

/// The walsenders of a group's slot, gone.
pub(crate) async fn wait_slot_inactive(client: &Client, group: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active: bool = client
            .query_one(
                "SELECT s.active FROM changestream.partitions p
                   JOIN pg_replication_slots s USING (slot_name) WHERE p.group_id = $1",
                &[&group],
            )
            .await
            .unwrap()
            .get(0);
        if !active {
            return;
        }
        assert!(Instant::now() < deadline, "slot of {group} stays active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_durable_cursor_wins_when_the_slot_falls_behind() {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let config = ConnectConfig::new(db.config());
    items_table(&client, &config).await;
    let manual = || {
        ConsumerBuilder::new(config.clone(), "durable")
            .add_table("items", StartLocation::Latest)
            .commit_mode(CommitMode::Manual)
    };
    let mut consumer = manual().build().await.unwrap();
    insert(&client, 1, 10).await;
    assert_eq!(
        ids(&poll_n(&mut consumer, 10, 10).await),
        (1..=10).collect::<Vec<_>>()
    );
    // Cut the stream before committing: the commit then reaches the durable cursor but not
    // the slot — the state a server crash leaves when the slot's position was not yet
    // checkpointed.
    for pid in consumer.backend_pids() {
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
    wait_slot_inactive(&client, "durable").await;
    consumer.commit().await.unwrap();
    drop(consumer);
    let slot = slot_confirmed(&client, "durable").await.unwrap();
    let cursor = cursor(&client, "durable").await.0;
    assert!(
        slot < cursor,
        "slot at {slot} is behind the cursor at {cursor}"
    );

    let mut consumer = manual().build().await.unwrap();
    assert_quiet(&mut consumer).await;
    insert(&client, 11, 12).await;
    assert_eq!(ids(&poll_n(&mut consumer, 2, 2).await), vec![11, 12]);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_server_crash_right_after_a_commit_repeats_and_loses_nothing() {
    let Some(mut cluster) = own_cluster("a_server_crash_right_after_a_commit", &[]).await else {
        return;
    };
    let config = ConnectConfig::new(cluster.admin_config());
    let client = connect(cluster.admin_config()).await;
    items_table(&client, &config).await;
    let manual = || {
        ConsumerBuilder::new(config.clone(), "crash")
            .add_table("items", StartLocation::Latest)
            .commit_mode(CommitMode::Manual)
            .reconnect_timeout(Duration::from_secs(90))
    };
    let mut consumer = manual().build().await.unwrap();
    insert(&client, 1, 20).await;
    client.batch_execute("CHECKPOINT").await.unwrap();
    assert_eq!(
        ids(&poll_n(&mut consumer, 20, 20).await),
        (1..=20).collect::<Vec<_>>()
    );
    consumer.commit().await.unwrap();
    let committed = cursor(&client, "crash").await.0;
    drop(client);

    // Immediate shutdown: no checkpoint, the slot's state on disk is what it was.
    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(ShutdownMode::Immediate).unwrap();
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    let client = connect(cluster.admin_config()).await;
    let slot = slot_confirmed(&client, "crash").await.unwrap();
    eprintln!("after the crash: slot confirmed at {slot}, durable cursor at {committed}");
    assert_eq!(
        cursor(&client, "crash").await.0,
        committed,
        "the cursor survived"
    );

    // The same consumer reconnects by itself and carries on after the commit.
    insert(&client, 21, 25).await;
    assert_eq!(
        ids(&poll_n(&mut consumer, 5, 5).await),
        (21..=25).collect::<Vec<_>>()
    );
    assert_quiet(&mut consumer).await;
    assert!(consumer.stats().reconnects >= 1);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let mut consumer = manual().build().await.unwrap();
    assert_quiet(&mut consumer).await;
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn an_invalidated_slot_is_a_definite_error_that_says_so() {
    let Some(cluster) = own_cluster(
        "an_invalidated_slot_is_a_definite_error",
        &[("max_slot_wal_keep_size", "1MB"), ("wal_keep_size", "0")],
    )
    .await
    else {
        return;
    };
    let config = ConnectConfig::new(cluster.admin_config());
    let client = connect(cluster.admin_config()).await;
    items_table(&client, &config).await;
    let builder = || {
        ConsumerBuilder::new(config.clone(), "lagging")
            .add_table("items", StartLocation::Latest)
            .queue_capacity(1)
    };
    // A consumer that stops polling: its walsender stalls and the slot holds WAL.
    let mut consumer = builder().build().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    loop {
        client
            .execute(
                "INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series($1 * 20000, $1 * 20000 + 19999) g",
                &[&round],
            )
            .await
            .unwrap();
        client
            .batch_execute("SELECT pg_switch_wal(); CHECKPOINT;")
            .await
            .unwrap();
        let status: Option<String> = client
            .query_one(
                "SELECT s.wal_status FROM changestream.partitions p
                   JOIN pg_replication_slots s USING (slot_name) WHERE p.group_id = 'lagging'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if status.as_deref() == Some("lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot not invalidated (wal_status {status:?})"
        );
        round += 1;
    }
    let e = loop {
        match consumer.poll(10_000, Duration::from_millis(200)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(e.is_slot_invalidated(), "{e}");
    assert!(!e.is_transient());
    let message = e.to_string();
    assert!(
        message.contains("lagging") && message.contains("max_slot_wal_keep_size"),
        "{message}"
    );
    drop(consumer);

    let e = builder().build().await.unwrap_err();
    assert!(e.is_slot_invalidated(), "{e}");
    assert!(
        e.to_string().contains("delete the group") || e.to_string().contains("Delete the group"),
        "{e}"
    );
}
