//! Backfill throughput: rows per second a new group reads from an existing table, for
//! chunk sizes 1024 and 4096 (issue 6's figure).
//!
//! ```text
//! cargo run --release --example backfill_throughput -- [ROWS]        # throwaway PostgreSQL
//! DATABASE_URL=postgres://… cargo run --release --example backfill_throughput -- [ROWS]
//! ```
//!
//! Creates `bench_backfill (id bigint primary key, v text, n int, t timestamptz)` with ROWS
//! rows (500 000 by default), then, per chunk size, builds a group at `Earliest` and polls
//! until every row arrived as a `read` record, serialising each to JSON into a counting sink
//! as an application would. No writes run meanwhile. Not a test: nothing is asserted but
//! the counts.

use std::io::Write;
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    delete_group, enable_change_streaming, ConsumerBuilder, Op, StartLocation,
};
use pg_changestream::testing::{ClusterOptions, LocalCluster};
use pg_changestream::ConnectConfig;

/// A sink that counts bytes, standing in for a socket or a file.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500_000);
    let (config, _cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<ConnectConfig>()?, None),
        Err(_) => {
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
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS bench_backfill;
             CREATE TABLE bench_backfill (id bigint PRIMARY KEY, v text, n int, t timestamptz);
             INSERT INTO bench_backfill
               SELECT g, md5(g::text), g % 100, now() FROM generate_series(1, {rows}) g;"
        ))
        .await?;
    // Alone: VACUUM cannot run inside the implicit transaction of a multi-statement query.
    client
        .batch_execute("VACUUM ANALYZE bench_backfill")
        .await?;
    enable_change_streaming(&config, "bench_backfill", false).await?;
    println!(
        "PostgreSQL {version}, {rows} rows, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<12} {:>10} {:>12}", "chunk size", "seconds", "rows/s");
    for chunk in [1024usize, 4096] {
        let group = format!("backfill{chunk}");
        let _ = delete_group(&config, &group, true).await;
        let started = Instant::now();
        let mut consumer = ConsumerBuilder::new(config.clone(), &group)
            .add_table("bench_backfill", StartLocation::Earliest)
            .backfill_chunk_size(chunk)
            .build()
            .await?;
        let mut sink = CountingSink(0);
        let mut reads = 0i64;
        let limit = Instant::now() + Duration::from_secs(600);
        while reads < rows {
            let bundle = consumer.poll(8192, Duration::from_millis(100)).await?;
            for record in bundle.records() {
                serde_json::to_writer(&mut sink, record)?;
                reads += i64::from(record.op() == Op::Read);
            }
            assert!(Instant::now() < limit, "backfill took over 600 s");
        }
        let secs = started.elapsed().as_secs_f64();
        println!("{chunk:<12} {secs:>10.2} {:>12.0}", reads as f64 / secs);
        consumer.close().await?;
        delete_group(&config, &group, true).await?;
    }
    Ok(())
}
