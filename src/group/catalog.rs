//! The `changestream` schema: versioned migrations embedded from `sql/`.
//!
//! Migrations run in one transaction under a transaction-scoped advisory lock, so two
//! processes starting at once serialise: the second waits, then finds everything applied.
//! Each applied version is recorded in `changestream.migrations`; re-running is a no-op.

use tokio_postgres::Client;

use crate::error::Result;

/// Advisory lock key serialising migrations ("pgcs" in ASCII).
const MIGRATION_LOCK: i64 = 0x7067_6373;

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "changestream",
        include_str!("../../sql/0001_changestream.sql"),
    ),
    (
        2,
        "start_positions",
        include_str!("../../sql/0002_start_positions.sql"),
    ),
    (
        3,
        "partition_owners",
        include_str!("../../sql/0003_partition_owners.sql"),
    ),
    (4, "backfill", include_str!("../../sql/0004_backfill.sql")),
    (
        5,
        "partitioned_tables",
        include_str!("../../sql/0005_partitioned_tables.sql"),
    ),
    (
        6,
        "table_filters",
        include_str!("../../sql/0006_table_filters.sql"),
    ),
    (
        7,
        "sink_progress",
        include_str!("../../sql/0007_sink_progress.sql"),
    ),
];

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: i32 = 7;

/// Creates or upgrades the `changestream` schema. Idempotent and safe to call from several
/// processes at once.
///
/// # Errors
/// The role may not create schemas in this database, or the database holds a newer schema
/// version than this library knows (an older library must not run against it).
pub async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS changestream;
         CREATE TABLE IF NOT EXISTS changestream.migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM changestream.migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let newest = applied.iter().copied().max().unwrap_or(0);
    if newest > SCHEMA_VERSION {
        return Err(crate::Error::config(format!(
            "schema changestream is at version {newest}, newer than this library's \
             {SCHEMA_VERSION}; upgrade pg-changestream"
        )));
    }
    // Every migration not recorded yet, in order (not only those past the newest: a schema
    // whose later migration ran while an earlier one's row is missing gets the earlier one).
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO changestream.migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        tracing::info!(version, name, "applied changestream migration");
    }
    tx.commit().await?;
    Ok(())
}
