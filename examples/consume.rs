//! Consume a table's changes with a consumer group.
//!
//! ```text
//! cargo run --example consume                       # a throwaway PostgreSQL from local binaries
//! DATABASE_URL=postgres://user:pw@host/db cargo run --example consume   # your own (wal_level=logical)
//! ```
//!
//! It creates `public.example_orders`, enables change streaming with before-images, builds
//! a consumer of group `example`, writes a few changes, and prints each record as JSON.
//! Run it twice against the same database: the second run starts after what the first
//! committed.

use std::time::Duration;

use pg_changestream::consumer::{enable_change_streaming, ConsumerBuilder, StartLocation};
use pg_changestream::testing::{ClusterOptions, LocalCluster};
use pg_changestream::ConnectConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the throwaway cluster (if any) alive until the end of main.
    let (config, _cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<ConnectConfig>()?, None),
        Err(_) => {
            eprintln!("DATABASE_URL not set: starting a throwaway PostgreSQL");
            let cluster = tokio::task::spawn_blocking(|| {
                LocalCluster::start(ClusterOptions {
                    ssl: false,
                    ..ClusterOptions::default()
                })
            })
            .await??;
            (ConnectConfig::new(cluster.admin_config()), Some(cluster))
        }
    };

    let client = config.connect_sql().await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS example_orders (
                 id bigint PRIMARY KEY, customer text NOT NULL, total numeric(10,2))",
        )
        .await?;
    enable_change_streaming(&config, "example_orders", true).await?;

    let mut consumer = ConsumerBuilder::new(config.clone(), "example")
        .add_table("example_orders", StartLocation::Latest)
        .build()
        .await?;

    let next: i64 = client
        .query_one("SELECT coalesce(max(id), 0) + 1 FROM example_orders", &[])
        .await?
        .get(0);
    client
        .batch_execute(&format!(
            "INSERT INTO example_orders VALUES ({next}, 'ada', 12.50);
             UPDATE example_orders SET total = 13.75 WHERE id = {next};
             DELETE FROM example_orders WHERE id = {next};"
        ))
        .await?;

    let mut seen = 0;
    while seen < 3 {
        let bundle = consumer.poll(100, Duration::from_secs(5)).await?;
        if bundle.is_empty() {
            break;
        }
        for record in bundle.records() {
            println!("{}", serde_json::to_string(record)?);
            seen += 1;
        }
    }
    let stats = consumer.stats();
    // Automatic commit mode: closing commits the last poll.
    consumer.close().await?;
    eprintln!(
        "{seen} records: {} inserts, {} updates, {} deletes",
        stats.inserts, stats.updates, stats.deletes
    );
    Ok(())
}
