//! Drain rate of the same WAL with a group of 1, 2 and 4 partitions (issue 7's figure).
//!
//! ```text
//! cargo run --release --example partition_drain -- [ROWS]        # throwaway PostgreSQL
//! DATABASE_URL=postgres://… cargo run --release --example partition_drain -- [ROWS]
//! ```
//!
//! Creates `bench_partitions (id bigint primary key, v text, n int)` and one group per
//! partition count *before* the workload, so every group's slots hold the same WAL. The
//! workload: ROWS inserts in transactions of 1000, then one update of every row (2·ROWS
//! changes). Then, per group, two ways to drain it:
//!
//! - one consumer owning every partition (one walsender and one decoding task per
//!   partition, one application loop), and
//! - one consumer per partition, each in its own task (the group shared by N members);
//!
//! every record is serialised to JSON into a counting sink, as an application would. It
//! prints changes per second for each. The server decodes all WAL once per slot, so more
//! partitions cost server CPU: the numbers say where the bottleneck is on this machine.
//! Not a test: nothing is asserted but the counts.

use std::io::Write;
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    delete_group, enable_change_streaming, Consumer, ConsumerBuilder, StartLocation,
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

fn builder(config: &ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("bench_partitions", StartLocation::Latest)
        .max_poll_interval(Duration::from_secs(60))
}

/// Polls until `want` records arrived in total (over all `consumers`' tasks via `count`).
async fn drain(
    mut consumer: Consumer,
    want: u64,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Consumer {
    use std::sync::atomic::Ordering;
    let mut sink = CountingSink(0);
    let idle_limit = Instant::now() + Duration::from_secs(300);
    while total.load(Ordering::Relaxed) < want {
        let bundle = match consumer.poll(4096, Duration::from_millis(100)).await {
            Ok(bundle) => bundle,
            Err(e) => panic!("poll failed: {e}"),
        };
        for record in bundle.records() {
            serde_json::to_writer(&mut sink, record).expect("serialise");
        }
        total.fetch_add(bundle.len() as u64, Ordering::Relaxed);
        assert!(Instant::now() < idle_limit, "drain took over 300 s");
    }
    consumer
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
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
        .batch_execute(
            "DROP TABLE IF EXISTS bench_partitions;
             CREATE TABLE bench_partitions (id bigint PRIMARY KEY, v text, n int);",
        )
        .await?;
    enable_change_streaming(&config, "bench_partitions", false).await?;
    let counts = [1u16, 2, 4];
    // Groups: "solo<N>" drained by one consumer, "shared<N>" by N consumers.
    let mut groups = Vec::new();
    for n in counts {
        for kind in ["solo", "shared"] {
            let group = format!("{kind}{n}");
            let _ = delete_group(&config, &group, true).await;
            builder(&config, &group)
                .partitions(n)
                .build()
                .await?
                .close()
                .await?;
            groups.push((n, kind, group));
        }
    }
    let load = Instant::now();
    // One statement per call: a DO block may COMMIT only outside a transaction block.
    client.batch_execute("SET synchronous_commit = off").await?;
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               FOR i IN 0 .. {rows} / 1000 - 1 LOOP
                 INSERT INTO bench_partitions
                   SELECT g, md5(g::text), g % 100 FROM generate_series(i * 1000 + 1, i * 1000 + 1000) g;
                 COMMIT;
               END LOOP;
             END $$"
        ))
        .await?;
    client
        .batch_execute("UPDATE bench_partitions SET n = n + 1")
        .await?;
    client.batch_execute("SET synchronous_commit = on").await?;
    client.batch_execute("CHECKPOINT").await?;
    let want = u64::try_from(rows / 1000 * 1000 * 2)?;
    eprintln!("workload: {want} changes in {:?}", load.elapsed());
    println!("PostgreSQL {version}, {want} changes (inserts in 1000-row transactions, then one update of all rows), {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!(
        "{:<10} {:>10} {:>12} {:>14}",
        "group", "consumers", "seconds", "changes/s"
    );
    for (n, kind, group) in &groups {
        let members = if *kind == "solo" { 1 } else { usize::from(*n) };
        let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut consumers = Vec::new();
        for _ in 0..members {
            consumers.push(builder(&config, group).build().await?);
        }
        // Let the members settle their shares before the clock starts.
        let settle = Instant::now();
        while members > 1
            && consumers.iter().any(|c| c.partitions().is_empty())
            && settle.elapsed() < Duration::from_secs(30)
        {
            for c in &mut consumers {
                let got = c.poll(1, Duration::from_millis(1)).await?.len();
                total.fetch_add(got as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let started = Instant::now();
        let tasks: Vec<_> = consumers
            .into_iter()
            .map(|c| tokio::spawn(drain(c, want, total.clone())))
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await?);
        }
        let secs = started.elapsed().as_secs_f64();
        let got = total.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{group:<10} {members:>10} {secs:>12.2} {:>14.0}",
            got as f64 / secs
        );
        for c in done {
            c.close().await?;
        }
        delete_group(&config, group, true).await?;
    }
    Ok(())
}
