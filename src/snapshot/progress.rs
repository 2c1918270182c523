//! Backfill progress in `changestream.backfills`, one row per (group, partition, table).
//!
//! A row is created (or reset) when a table joins a group with a location that backfills,
//! advanced in the same transaction as the partition's cursor (so it never runs ahead of
//! the read records committed), and deleted with the table's membership.

use tokio_postgres::GenericClient;

use crate::decode::record::PartitionId;
use crate::error::Result;
use crate::group::table::TableName;

/// How far the backfill of one table in one partition has got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackfillProgress {
    /// The table (`schema.name`).
    pub table: String,
    /// The group partition doing this share of the table.
    pub partition: PartitionId,
    /// Rows covered so far (read, or carried by the stream as changed while read).
    pub rows_done: u64,
    /// An estimate of the rows to cover (the planner's row count over the partitions).
    pub estimated_total: Option<u64>,
    /// Key values (as text) of the last row covered.
    pub last_key: Option<Vec<String>>,
    /// Every existing row has been covered.
    pub done: bool,
}

/// A stored progress row.
#[derive(Debug, Clone)]
pub(crate) struct StoredProgress {
    pub(crate) table: TableName,
    pub(crate) last_key: Option<Vec<String>>,
    pub(crate) rows_done: u64,
    pub(crate) estimated_total: Option<u64>,
    pub(crate) done: bool,
}

/// Starts (or restarts from the beginning) the backfill of `table` in each of `partitions`.
///
/// # Errors
/// SQL failed.
pub(crate) async fn start_backfill(
    client: &impl GenericClient,
    group_id: &str,
    partitions: &[i32],
    table: &TableName,
) -> Result<()> {
    for partition in partitions {
        client
            .execute(
                "INSERT INTO changestream.backfills (group_id, partition, schema_name, table_name)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (group_id, partition, schema_name, table_name) DO UPDATE
                    SET last_key = NULL, rows_done = 0, estimated_total = NULL, done = false",
                &[&group_id, partition, &table.schema(), &table.name()],
            )
            .await?;
    }
    Ok(())
}

/// Forgets any backfill of `table` (it starts elsewhere now).
///
/// # Errors
/// SQL failed.
pub(crate) async fn clear_backfill(
    client: &impl GenericClient,
    group_id: &str,
    table: &TableName,
) -> Result<()> {
    client
        .execute(
            "DELETE FROM changestream.backfills
              WHERE group_id = $1 AND schema_name = $2 AND table_name = $3",
            &[&group_id, &table.schema(), &table.name()],
        )
        .await?;
    Ok(())
}

/// The backfills of `partition`, in the order their tables joined.
///
/// # Errors
/// SQL failed.
pub(crate) async fn load_backfills(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
) -> Result<Vec<StoredProgress>> {
    let rows = client
        .query(
            "SELECT schema_name, table_name, last_key, rows_done, estimated_total, done
               FROM changestream.backfills
              WHERE group_id = $1 AND partition = $2
              ORDER BY seq",
            &[&group_id, &partition],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredProgress {
                table: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))?,
                last_key: r.get(2),
                rows_done: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                estimated_total: r
                    .get::<_, Option<i64>>(4)
                    .and_then(|n| u64::try_from(n).ok()),
                done: r.get(5),
            })
        })
        .collect()
}

/// Stores the progress of a committed chunk (inside the cursor's transaction, or alone for
/// a chunk that produced no read records), if `owner` still owns the partition.
///
/// # Errors
/// SQL failed.
pub(crate) async fn store_progress(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    owner: &str,
    progress: &StoredProgress,
) -> Result<()> {
    let rows_done = i64::try_from(progress.rows_done).unwrap_or(i64::MAX);
    let total = progress
        .estimated_total
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    client
        .execute(
            "UPDATE changestream.backfills
                SET last_key = $5, rows_done = $6, estimated_total = $7, done = $8
              WHERE group_id = $1 AND partition = $2 AND schema_name = $3 AND table_name = $4
                AND EXISTS (SELECT 1 FROM changestream.cursors c
                             WHERE c.group_id = $1 AND c.partition = $2 AND c.owner = $9)",
            &[
                &group_id,
                &partition,
                &progress.table.schema(),
                &progress.table.name(),
                &progress.last_key,
                &rows_done,
                &total,
                &progress.done,
                &owner,
            ],
        )
        .await?;
    Ok(())
}
