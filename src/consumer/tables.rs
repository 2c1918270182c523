//! Applying a consumer's table list to its group: joining tables with their start
//! locations, and leaving.
//!
//! A table joins the group's publications; its changes committed from then on are decoded
//! (pgoutput looks publications up in the catalog as of each change, so earlier changes are
//! never published). A start location then narrows where the table's records begin — see
//! [`StartLocation`] — and a location before the oldest change the group can still deliver
//! starts at that oldest change and says so.

use std::time::SystemTime;

use tokio_postgres::Client;

use super::filter::TableStart;
use super::location::StartLocation;
use super::spec::TableSettings;
use crate::error::{Error, Result};
use crate::group::cursor::Cursor;
use crate::group::group_tables::{delete_group_table, save_group_table, GroupTable};
use crate::group::identity::{enabled_with_before_images, not_enabled};
use crate::group::partition::{publish_table, unpublish_table, GroupInfo};
use crate::group::table::TableName;
use crate::lsn::Lsn;
use crate::snapshot::plan::backfill_key;
use crate::snapshot::progress::{clear_backfill, start_backfill};

/// Checks that `table` exists and is enabled for change streaming.
///
/// # Errors
/// [`Error::is_not_found`](crate::Error::is_not_found) for a missing table,
/// [`Error::is_config`](crate::Error::is_config) for one not enabled.
pub(crate) async fn check_enabled(client: &Client, table: &TableName) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await?
        .get(0);
    if !exists {
        return Err(table.not_found());
    }
    if enabled_with_before_images(client, table).await?.is_none() {
        return Err(not_enabled(table));
    }
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
    client: &Client,
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

/// A table joined (or kept) and any warning about where it starts.
pub(crate) struct Joined {
    pub(crate) table: GroupTable,
    pub(crate) warning: Option<String>,
}

/// Adds `table` to the group with `location`, or — when it is already in the group —
/// keeps its start unless `force` asks to reset it. `settings` (resolved, see
/// [`TableSettings::resolve`]) replace the table's row filter and projection; `None` keeps
/// the stored ones.
///
/// # Errors
/// The table is not enabled for change streaming (or does not exist), the server refuses
/// the row filter, or SQL failed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn join_table(
    client: &Client,
    group: &GroupInfo,
    table: &TableName,
    location: StartLocation,
    settings: Option<&TableSettings>,
    existing: Option<&GroupTable>,
    force: bool,
    cursor: &Cursor,
) -> Result<Joined> {
    check_enabled(client, table).await?;
    let stored = existing.map(|e| TableSettings {
        filter: e.row_filter.clone(),
        projection: e.projection.clone(),
    });
    let wanted = settings.or(stored.as_ref()).cloned().unwrap_or_default();
    // A filter is replaced in the publications (atomically: changes committed after it see
    // the new one); a table new to the group is simply added with it.
    let replace = existing.is_some_and(|e| e.row_filter != wanted.filter);
    if let (Some(existing), false) = (existing, force) {
        if stored.as_ref() == Some(&wanted) {
            return Ok(Joined {
                table: existing.clone(),
                warning: None,
            });
        }
        if replace {
            publish_table(client, group, table, wanted.filter.as_deref(), true).await?;
        }
        let changed = GroupTable {
            row_filter: wanted.filter,
            projection: wanted.projection,
            ..existing.clone()
        };
        save_group_table(client, &group.group_id, &changed).await?;
        tracing::info!(
            group_id = %group.group_id,
            table = %table,
            row_filter = ?changed.row_filter,
            projection = ?changed.projection,
            "row filter or projection of table changed"
        );
        return Ok(Joined {
            table: changed,
            warning: None,
        });
    }
    let backfill = backfills(location, existing.is_some());
    if backfill {
        backfill_key(client, table).await?;
    }
    // The position and time before joining: every change the table's publication adds
    // commits after both.
    let row = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, clock_timestamp()",
            &[],
        )
        .await?;
    let now_lsn: Lsn = row.get::<_, String>(0).parse()?;
    let now_time: SystemTime = row.get(1);
    // Also for a table already in the group that is reset: one dropped and created again
    // is a new relation, outside the publication until added again (idempotent otherwise).
    publish_table(client, group, table, wanted.filter.as_deref(), replace).await?;
    // The oldest change of this table the group can still deliver: for a new table, the
    // join; for one in the group, the later of its join and the group's cursor.
    let (oldest_lsn, oldest_time) = match existing {
        None => (now_lsn, Some(now_time)),
        Some(e) => (
            e.joined_lsn.unwrap_or_default().max(cursor.commit_lsn),
            Some(cursor.commit_time.map_or(e.added_at, |t| t.max(e.added_at))),
        ),
    };
    let mut warning = None;
    let (start_lsn, start_time) = match location {
        // Existing rows come from the backfill, every change after the join from the
        // stream: no bound.
        StartLocation::FirstUncommitted | StartLocation::Earliest => (None, None),
        StartLocation::Latest => match existing {
            None => (None, None),
            Some(_) => (Some(now_lsn), None),
        },
        StartLocation::AtLsn(lsn) => {
            if lsn < oldest_lsn {
                warning = Some(format!(
                    "table {table}: start {location} is before the oldest change the group \
                     still holds for it ({oldest_lsn}); starting there"
                ));
                (None, None)
            } else {
                (Some(lsn), None)
            }
        }
        StartLocation::AtTime(time) => {
            if oldest_time.is_some_and(|oldest| time < oldest) {
                warning = Some(format!(
                    "table {table}: start {location} is before the oldest change the group \
                     still holds for it; starting there"
                ));
                (None, None)
            } else {
                (None, Some(time))
            }
        }
    };
    if let Some(warning) = &warning {
        tracing::warn!(group_id = %group.group_id, "{warning}");
    }
    let joined = GroupTable {
        table: table.clone(),
        start_location: location.to_string(),
        joined_lsn: existing.map_or(Some(now_lsn), |e| e.joined_lsn),
        start_lsn,
        start_time,
        added_at: existing.map_or(now_time, |e| e.added_at),
        row_filter: wanted.filter,
        projection: wanted.projection,
    };
    save_group_table(client, &group.group_id, &joined).await?;
    if backfill {
        let partitions: Vec<i32> = group.partitions.iter().map(|p| p.partition).collect();
        start_backfill(client, &group.group_id, &partitions, table).await?;
    } else {
        clear_backfill(client, &group.group_id, table).await?;
    }
    Ok(Joined {
        table: joined,
        warning,
    })
}

/// Whether a table joining at `location` has its existing rows backfilled: at `Earliest`,
/// and at `FirstUncommitted` when it is new to the group (nothing of it was committed yet).
/// A table already in the group resumes at the group's cursor.
pub(crate) fn backfills(location: StartLocation, in_group: bool) -> bool {
    match location {
        StartLocation::Earliest => true,
        StartLocation::FirstUncommitted => !in_group,
        _ => false,
    }
}

/// Takes `table` out of the group: out of its publications and its list.
///
/// # Errors
/// SQL failed.
pub(crate) async fn leave_table(
    client: &Client,
    group: &GroupInfo,
    table: &TableName,
) -> Result<()> {
    // The list first: a table listed but outside the publication is reported as dropped
    // by the other members' checks.
    delete_group_table(client, &group.group_id, table).await?;
    unpublish_table(client, group, table).await
}

impl From<&GroupTable> for TableStart {
    fn from(t: &GroupTable) -> TableStart {
        TableStart {
            table: t.table.clone(),
            start_lsn: t.start_lsn,
            start_time: t.start_time,
            projection: t.projection.clone(),
        }
    }
}
