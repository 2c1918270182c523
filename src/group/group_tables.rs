//! The tables a group reads (`changestream.group_tables`), with where each starts.
//!
//! All tables of a group share its slot, so a table's start location cannot move the slot.
//! It becomes a per-table lower bound on the stream instead: `start_lsn` (deliver the
//! table's changes that committed at or after it), or `start_time` while a time has not yet
//! been reached in the stream — the consumer turns it into an LSN at the first transaction
//! committed at or after that time, and records it here.

use std::time::SystemTime;

use tokio_postgres::GenericClient;

use super::table::TableName;
use crate::decode::relation::Projection;
use crate::error::{Error, Result};
use crate::lsn::Lsn;

/// One table of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTable {
    /// The table.
    pub table: TableName,
    /// The start location it was added (or last reset) with, as text (`latest`, `lsn=…`).
    pub start_location: String,
    /// The WAL position at which it joined the group's publications.
    pub joined_lsn: Option<Lsn>,
    /// Deliver its changes committed at or after this position.
    pub start_lsn: Option<Lsn>,
    /// Deliver its changes committed at or after this time (until resolved to an LSN).
    pub start_time: Option<SystemTime>,
    /// When it was added (or last reset).
    pub added_at: SystemTime,
    /// The row filter (an SQL condition) as given; the publications hold it.
    pub row_filter: Option<String>,
    /// The columns its records carry (an `Only` list includes the key columns).
    pub projection: Projection,
}

fn projection(only: Option<Vec<String>>, except: Option<Vec<String>>) -> Projection {
    match (only, except) {
        (Some(only), _) => Projection::Only(only),
        (None, Some(except)) => Projection::Except(except),
        (None, None) => Projection::All,
    }
}

fn parse_lsn(text: Option<String>) -> Result<Option<Lsn>> {
    text.map(|s| s.parse()).transpose()
}

/// The tables of `group_id`, by name.
///
/// # Errors
/// The query failed.
pub async fn load_group_tables(
    client: &impl GenericClient,
    group_id: &str,
) -> Result<Vec<GroupTable>> {
    let rows = client
        .query(
            "SELECT schema_name, table_name, start_location, joined_lsn::text, start_lsn::text,
                    start_time, added_at, row_filter, only_columns, except_columns
               FROM changestream.group_tables WHERE group_id = $1
              ORDER BY schema_name, table_name",
            &[&group_id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(GroupTable {
                table: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1))?,
                start_location: row.get(2),
                joined_lsn: parse_lsn(row.get(3))?,
                start_lsn: parse_lsn(row.get(4))?,
                start_time: row.get(5),
                added_at: row.get(6),
                row_filter: row.get(7),
                projection: projection(row.get(8), row.get(9)),
            })
        })
        .collect()
}

/// Adds a table to a group, or replaces its start (a forced reset).
///
/// # Errors
/// The statement failed (the group does not exist, for one).
pub async fn save_group_table(
    client: &impl GenericClient,
    group_id: &str,
    table: &GroupTable,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO changestream.group_tables
                 (group_id, schema_name, table_name, start_location, joined_lsn, start_lsn,
                  start_time, added_at, row_filter, only_columns, except_columns)
             VALUES ($1, $2, $3, $4, $5::text::pg_lsn, $6::text::pg_lsn, $7, $8, $9, $10, $11)
             ON CONFLICT (group_id, schema_name, table_name) DO UPDATE
                SET start_location = excluded.start_location, joined_lsn = excluded.joined_lsn,
                    start_lsn = excluded.start_lsn, start_time = excluded.start_time,
                    added_at = excluded.added_at, row_filter = excluded.row_filter,
                    only_columns = excluded.only_columns,
                    except_columns = excluded.except_columns",
            &[
                &group_id,
                &table.table.schema(),
                &table.table.name(),
                &table.start_location,
                &table.joined_lsn.map(|l| l.to_string()),
                &table.start_lsn.map(|l| l.to_string()),
                &table.start_time,
                &table.added_at,
                &table.row_filter,
                &match &table.projection {
                    Projection::Only(names) => Some(names.clone()),
                    _ => None,
                },
                &match &table.projection {
                    Projection::Except(names) => Some(names.clone()),
                    _ => None,
                },
            ],
        )
        .await?;
    Ok(())
}

/// Records that a table's start time was reached in the stream at `lsn`.
///
/// # Errors
/// The statement failed.
pub async fn resolve_start_time(
    client: &impl GenericClient,
    group_id: &str,
    table: &TableName,
    lsn: Lsn,
) -> Result<()> {
    client
        .execute(
            "UPDATE changestream.group_tables SET start_lsn = $4::text::pg_lsn, start_time = NULL
              WHERE group_id = $1 AND schema_name = $2 AND table_name = $3",
            &[&group_id, &table.schema(), &table.name(), &lsn.to_string()],
        )
        .await?;
    Ok(())
}

/// Removes a table from a group's list.
///
/// # Errors
/// The statement failed.
pub async fn delete_group_table(
    client: &impl GenericClient,
    group_id: &str,
    table: &TableName,
) -> Result<()> {
    client
        .execute(
            "DELETE FROM changestream.group_tables
              WHERE group_id = $1 AND schema_name = $2 AND table_name = $3",
            &[&group_id, &table.schema(), &table.name()],
        )
        .await?;
    Ok(())
}

/// Refuses a group that would read a partitioned table and one of its partitions: with
/// publications publishing via the root, PostgreSQL sends the partition's changes once, as
/// the root, so the partition itself would never see a record.
///
/// # Errors
/// [`Error::is_config`](crate::Error::is_config) naming the partition and its root; SQL
/// failed.
pub(crate) async fn check_no_partition_of_another(
    client: &impl GenericClient,
    group_id: &str,
    tables: &[TableName],
) -> Result<()> {
    let quoted: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let row = client
        .query_opt(
            "SELECT format('%I.%I', pn.nspname, p.relname), format('%I.%I', an.nspname, a.relname)
               FROM unnest($1::text[]) AS u(q)
              CROSS JOIN LATERAL pg_partition_ancestors(to_regclass(u.q)) AS x(relid)
               JOIN pg_class p ON p.oid = to_regclass(u.q)
               JOIN pg_namespace pn ON pn.oid = p.relnamespace
               JOIN pg_class a ON a.oid = x.relid
               JOIN pg_namespace an ON an.oid = a.relnamespace
              WHERE x.relid <> p.oid
                AND x.relid IN (SELECT to_regclass(q) FROM unnest($1::text[]) AS v(q))
              ORDER BY 1, 2 LIMIT 1",
            &[&quoted],
        )
        .await?;
    let Some(row) = row else { return Ok(()) };
    let (partition, root): (String, String) = (row.get(0), row.get(1));
    Err(Error::config(format!(
        "consumer group {group_id:?} would read table {partition} and {root}, of which it is \
         a partition; PostgreSQL publishes the partition's changes once, as {root}, so \
         {partition} would receive none: read {root} alone, or read {partition} in another \
         group"
    )))
}
