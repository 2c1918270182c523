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
use super::spec::{TableSettings, TableSpec};
use crate::error::{Error, Result};
use crate::group::cursor::{load_cursor, Cursor};
use crate::group::group_tables::{
    check_no_partition_of_another, delete_group_table, load_group_tables, save_group_table,
    GroupTable,
};
use crate::group::identity::check_enabled;
use crate::group::partition::{
    check_row_filter, load_group, publish_table, unpublish_table, wal_insert_lsn_and_time,
    GroupInfo,
};
use crate::group::table::TableName;
use crate::lsn::Lsn;
use crate::snapshot::plan::backfill_key;
use crate::snapshot::progress::{clear_backfill, start_backfill};

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
        return change_settings(client, group, existing, wanted, replace).await;
    }
    let backfill = backfills(location, existing.is_some());
    if backfill {
        backfill_key(client, table).await?;
    }
    // The position and time before joining: every change the table's publication adds
    // commits after both.
    let now = wal_insert_lsn_and_time(client).await?;
    // Also for a table already in the group that is reset: one dropped and created again
    // is a new relation, outside the publication until added again (idempotent otherwise).
    publish_table(client, group, table, wanted.filter.as_deref(), replace).await?;
    let (start_lsn, start_time, warning) = start_bounds(table, location, existing, now, cursor);
    if let Some(warning) = &warning {
        tracing::warn!(group_id = %group.group_id, "{warning}");
    }
    let joined = GroupTable {
        table: table.clone(),
        start_location: location.to_string(),
        joined_lsn: existing.map_or(Some(now.0), |e| e.joined_lsn),
        start_lsn,
        start_time,
        added_at: existing.map_or(now.1, |e| e.added_at),
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

/// A table already in the group, not reset: keeps its start; a changed row filter is
/// replaced in the publications (`replace`), and changed settings are stored.
async fn change_settings(
    client: &Client,
    group: &GroupInfo,
    existing: &GroupTable,
    wanted: TableSettings,
    replace: bool,
) -> Result<Joined> {
    let unchanged =
        existing.row_filter == wanted.filter && existing.projection == wanted.projection;
    if unchanged {
        return Ok(Joined {
            table: existing.clone(),
            warning: None,
        });
    }
    if replace {
        publish_table(
            client,
            group,
            &existing.table,
            wanted.filter.as_deref(),
            true,
        )
        .await?;
    }
    let changed = GroupTable {
        row_filter: wanted.filter,
        projection: wanted.projection,
        ..existing.clone()
    };
    save_group_table(client, &group.group_id, &changed).await?;
    tracing::info!(
        group_id = %group.group_id,
        table = %existing.table,
        row_filter = ?changed.row_filter,
        projection = ?changed.projection,
        "row filter or projection of table changed"
    );
    Ok(Joined {
        table: changed,
        warning: None,
    })
}

/// Where the records of `table` joining at `location` start (a bound on commit LSN or on
/// commit time), given the position and time `now` of the join; and a warning when the
/// location lies before the oldest change the group can still deliver for it (the later
/// of its join and the group's `cursor`), where it starts instead.
fn start_bounds(
    table: &TableName,
    location: StartLocation,
    existing: Option<&GroupTable>,
    now: (Lsn, SystemTime),
    cursor: &Cursor,
) -> (Option<Lsn>, Option<SystemTime>, Option<String>) {
    let (oldest_lsn, oldest_time) = match existing {
        None => now,
        Some(e) => (
            e.joined_lsn.unwrap_or_default().max(cursor.commit_lsn),
            cursor.commit_time.map_or(e.added_at, |t| t.max(e.added_at)),
        ),
    };
    match location {
        // Existing rows come from the backfill, every change after the join from the
        // stream: no bound.
        StartLocation::FirstUncommitted | StartLocation::Earliest => (None, None, None),
        StartLocation::Latest => (existing.map(|_| now.0), None, None),
        StartLocation::AtLsn(lsn) if lsn < oldest_lsn => (
            None,
            None,
            Some(format!(
                "table {table}: start {location} is before the oldest change the group \
                 still holds for it ({oldest_lsn}); starting there"
            )),
        ),
        StartLocation::AtLsn(lsn) => (Some(lsn), None, None),
        StartLocation::AtTime(time) if time < oldest_time => (
            None,
            None,
            Some(format!(
                "table {table}: start {location} is before the oldest change the group \
                 still holds for it; starting there"
            )),
        ),
        StartLocation::AtTime(time) => (None, Some(time), None),
    }
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

/// A table the builder adds, as parsed and checked.
type Adding = (TableName, StartLocation, Option<TableSettings>);

/// The table changes a consumer is built with: tables added (with start locations and
/// settings) and removed.
#[derive(Debug)]
pub(crate) struct TableChanges {
    add: Vec<Adding>,
    remove: Vec<TableName>,
}

impl TableChanges {
    /// Parses the builder's lists; a table added twice must be added alike.
    ///
    /// # Errors
    /// A bad table name, or a table added twice with different starts or settings.
    pub(crate) fn parse(add: &[TableSpec], remove: &[String]) -> Result<TableChanges> {
        let add = add
            .iter()
            .map(|spec| Ok((spec.table.parse()?, spec.location, spec.settings.clone())))
            .collect::<Result<Vec<Adding>>>()?;
        for (i, (table, location, settings)) in add.iter().enumerate() {
            if let Some((_, other, _)) = add[..i]
                .iter()
                .find(|(t, l, _)| t == table && l != location)
            {
                return Err(Error::config(format!(
                    "table {table} is added twice, starting at {other} and at {location}; \
                     give it one start location"
                )));
            }
            if add[..i].iter().any(|(t, _, s)| t == table && s != settings) {
                return Err(Error::config(format!(
                    "table {table} is added twice with different row filters or columns; \
                     add it once"
                )));
            }
        }
        let remove = remove
            .iter()
            .map(|name| name.parse())
            .collect::<Result<Vec<TableName>>>()?;
        Ok(TableChanges { add, remove })
    }

    /// Checks everything that can be wrong before anything is created — a failed build must
    /// not leave a group (and a slot holding WAL) behind — and resolves each added table's
    /// settings (columns) against the catalog.
    ///
    /// # Errors
    /// A table missing or not enabled, without a key to backfill by, a refused row filter
    /// or column list, a partition of another group table, or no table left to read.
    pub(crate) async fn check(mut self, client: &Client, group_id: &str) -> Result<TableChanges> {
        let in_group = match load_group(client, group_id).await? {
            Some(_) => load_group_tables(client, group_id).await?,
            None => Vec::new(),
        };
        for (table, location, settings) in &mut self.add {
            check_enabled(client, table).await?;
            let member = in_group.iter().any(|t| &t.table == table);
            if backfills(*location, member) {
                backfill_key(client, table).await?;
            }
            if let Some(given) = settings.take() {
                *settings = Some(given.resolve(client, table).await?);
            }
            if let Some(filter) = settings.as_ref().and_then(|s| s.filter.as_deref()) {
                check_row_filter(client, table, filter).await?;
            }
        }
        let mut reading: Vec<TableName> = in_group
            .iter()
            .map(|t| t.table.clone())
            .filter(|t| !self.remove.contains(t))
            .collect();
        reading.extend(self.add.iter().map(|(t, ..)| t.clone()));
        check_no_partition_of_another(client, group_id, &reading).await?;
        if reading.is_empty() {
            return Err(no_tables(group_id));
        }
        Ok(self)
    }

    /// Applies the changes to `group`: removed tables leave, added ones join (a table both
    /// removed and added joins afresh — the way to add back a table that was dropped and
    /// created again). Returns the warnings about start locations.
    ///
    /// # Errors
    /// SQL failed, or the server refused a table (see [`join_table`]).
    pub(crate) async fn apply(
        &self,
        client: &Client,
        group: &GroupInfo,
        force_reset: bool,
    ) -> Result<Vec<String>> {
        let existing = load_group_tables(client, &group.group_id).await?;
        let cursor = load_cursor(client, &group.group_id, 0).await?;
        for table in &self.remove {
            leave_table(client, group, table).await?;
        }
        let mut warnings = Vec::new();
        for (table, location, settings) in &self.add {
            let current = existing
                .iter()
                .find(|t| &t.table == table && !self.remove.contains(&t.table));
            let joined = join_table(
                client,
                group,
                table,
                *location,
                settings.as_ref(),
                current,
                force_reset,
                &cursor,
            )
            .await?;
            warnings.extend(joined.warning);
        }
        Ok(warnings)
    }
}

/// The error of a group left with no table to read.
pub(crate) fn no_tables(group_id: &str) -> Error {
    Error::config(format!(
        "consumer group {group_id:?} reads no tables; add one with add_table (after enabling \
         it with enable_change_streaming)"
    ))
}
