//! The administration facade: enabling tables, and listing, inspecting and deleting
//! consumer groups — the one way the CLI and the bindings touch group state.
//!
//! [`Admin`] holds one SQL session and answers in plain data (`Serialize`, so the CLI's
//! `--json` output is these types' serde form); it never prints. The rules behind each
//! operation live in the crate's private `group` module: replica identity in `group::identity`, slots
//! and publications in `group::partition`. What a consumer itself does (join, claim a
//! partition, store its cursor) is not here and not public: those steps are safe only
//! under the membership fencing a [`Consumer`](crate::consumer::Consumer) runs them in.
//!
//! ```no_run
//! # async fn f() -> pg_changestream::Result<()> {
//! use pg_changestream::admin::Admin;
//! let config = "postgres://postgres@localhost/shop".parse()?;
//! let mut admin = Admin::connect(&config).await?;
//! admin.enable(&"shop.orders".parse()?, true).await?;
//! for partition in admin.status(Some("billing")).await? {
//!     println!("{} lags {:?} bytes", partition.slot, partition.lag_bytes);
//! }
//! # Ok(()) }
//! ```

use serde::Serialize;
use tokio_postgres::Client;

use crate::decode::record::PartitionId;
use crate::error::{Error, Kind, Result};
use crate::group::partition::{self, GroupInfo};
use crate::group::{identity, table::TableName};
use crate::ConnectConfig;

/// A timestamp column as RFC 3339 UTC with microseconds, formatted by the server.
const UTC: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

/// An SQL session for administering change streaming and consumer groups.
pub struct Admin {
    client: Client,
}

/// A table enabled for change streaming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EnabledTable {
    /// The table, as `schema.name` with SQL quoting where needed.
    pub table: String,
    /// Whether its updates and deletes carry the whole old row (REPLICA IDENTITY FULL).
    pub before_images: bool,
}

/// One consumer group, as `pg-changestream groups` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupListing {
    /// The group id.
    pub group: String,
    /// How many partitions (slots) it has.
    pub partitions: usize,
    /// The logical-message prefixes it receives.
    pub message_prefixes: Vec<String>,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// The tables it reads.
    pub tables: Vec<GroupTable>,
    /// Its replication slots, by partition.
    pub slots: Vec<String>,
    /// The consumers reading it.
    pub members: Vec<GroupMember>,
}

/// A table of a group.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupTable {
    /// `schema.name`.
    pub table: String,
    /// Where the group started reading it (the start location's text form).
    pub start_location: String,
    /// The LSN at which it joined the group, once known.
    pub joined_lsn: Option<String>,
    /// `none`, or `running`/`done` with rows done of the estimate.
    pub backfill: String,
}

/// A member (consumer) of a group.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct GroupMember {
    /// The member id.
    pub member_id: String,
    /// Its last heartbeat (RFC 3339, UTC).
    pub heartbeat_at: String,
    /// The partitions it owns.
    pub partitions: Vec<PartitionId>,
}

/// One partition of a group, as `pg-changestream status` shows it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PartitionStatus {
    /// The group.
    pub group: String,
    /// The partition number.
    pub partition: PartitionId,
    /// Its slot.
    pub slot: String,
    /// The walsender streaming it, if any.
    pub active_pid: Option<i32>,
    /// The slot's committed position.
    pub confirmed_flush_lsn: Option<String>,
    /// Bytes of WAL between the committed position and the server's current position.
    pub lag_bytes: Option<u64>,
    /// Bytes of WAL the slot keeps on the server.
    pub retained_wal_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved`, `lost`, or `missing` when the slot is gone.
    pub wal_status: String,
    /// When the group last committed on this partition.
    pub last_commit_time: Option<String>,
    /// What the group's tables need (partitions lacking before-images, each with the fix);
    /// the same for every partition of the group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the group's sinks (`publish`) last saw acknowledged and committed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkProgress>,
}

/// A sink's row in `changestream.sink_progress`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SinkProgress {
    /// The kind of sink (`jetstream`).
    pub sink: String,
    /// Where it publishes.
    pub target: String,
    /// The last event the broker acknowledged that the group then committed.
    pub last_acked_event: String,
    /// Records acknowledged and committed so far.
    pub records_acked: i64,
    /// When the row was last written.
    pub updated_at: String,
}

impl Admin {
    /// Opens the SQL session.
    ///
    /// # Errors
    /// As [`ConnectConfig::connect_sql`].
    pub async fn connect(config: &ConnectConfig) -> Result<Admin> {
        Ok(Admin {
            client: config.connect_sql().await?,
        })
    }

    /// Enables change streaming for `table`, with before-images (REPLICA IDENTITY FULL) or
    /// without (the table's original identity). Calling it again switches before-images,
    /// and covers partitions attached since.
    ///
    /// # Errors
    /// [`Error::is_server_setup`] when `wal_level` is not logical;
    /// [`Error::is_not_found`] for a missing table; [`Error::is_config`] for a table
    /// without a key and without before-images, an unlogged table, or a legacy
    /// inheritance parent.
    pub async fn enable(&mut self, table: &TableName, before_images: bool) -> Result<()> {
        identity::enable_change_streaming(&mut self.client, table, before_images).await
    }

    /// Disables change streaming for `table` and restores its original replica identity.
    ///
    /// # Errors
    /// The table is not enabled, or a consumer group still reads it.
    pub async fn disable(&mut self, table: &TableName) -> Result<()> {
        identity::disable_change_streaming(&mut self.client, table).await
    }

    /// The tables enabled for change streaming, by name.
    ///
    /// # Errors
    /// The query failed.
    pub async fn tables(&self) -> Result<Vec<EnabledTable>> {
        if !self.has_table("changestream.tables").await? {
            return Ok(Vec::new());
        }
        self.client
            .query(
                "SELECT schema_name, table_name, before_images FROM changestream.tables
                  ORDER BY 1, 2",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(EnabledTable {
                    table: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))?
                        .to_string(),
                    before_images: r.get(2),
                })
            })
            .collect()
    }

    /// The ids of the consumer groups, sorted.
    ///
    /// # Errors
    /// The query failed.
    pub async fn group_ids(&self) -> Result<Vec<String>> {
        if !self.has_table("changestream.groups").await? {
            return Ok(Vec::new());
        }
        Ok(self
            .client
            .query(
                "SELECT group_id FROM changestream.groups ORDER BY group_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Every group with its tables, slots and members.
    ///
    /// # Errors
    /// The query failed.
    pub async fn groups(&self) -> Result<Vec<GroupListing>> {
        let mut out = Vec::new();
        for id in self.group_ids().await? {
            out.push(self.listing(id).await?);
        }
        Ok(out)
    }

    async fn listing(&self, id: String) -> Result<GroupListing> {
        let info = self.load(&id).await?;
        let created_at: String = self
            .client
            .query_one(
                &format!(
                    "SELECT to_char(created_at AT TIME ZONE 'UTC', {UTC})
                       FROM changestream.groups WHERE group_id = $1"
                ),
                &[&id],
            )
            .await?
            .get(0);
        let tables = self
            .client
            .query(
                "SELECT t.schema_name, t.table_name, t.start_location, t.joined_lsn::text,
                        coalesce((SELECT CASE WHEN bool_and(b.done) THEN 'done' ELSE 'running' END
                                         || ' (' || sum(b.rows_done) || ' of ~'
                                         || coalesce(sum(b.estimated_total)::text, '?') || ' rows)'
                                    FROM changestream.backfills b
                                   WHERE b.group_id = t.group_id AND b.schema_name = t.schema_name
                                     AND b.table_name = t.table_name), 'none')
                   FROM changestream.group_tables t WHERE t.group_id = $1
                  ORDER BY t.schema_name, t.table_name",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| GroupTable {
                table: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
                start_location: r.get(2),
                joined_lsn: r.get(3),
                backfill: r.get(4),
            })
            .collect();
        let members = self
            .client
            .query(
                &format!(
                    "SELECT member_id, to_char(heartbeat_at AT TIME ZONE 'UTC', {UTC}), partitions
                       FROM changestream.members WHERE group_id = $1 ORDER BY member_id"
                ),
                &[&id],
            )
            .await?
            .iter()
            .map(|r| GroupMember {
                member_id: r.get(0),
                heartbeat_at: r.get(1),
                partitions: r
                    .get::<_, Vec<i32>>(2)
                    .into_iter()
                    .map(PartitionId::from_catalog)
                    .collect(),
            })
            .collect();
        Ok(GroupListing {
            group: id,
            partitions: info.partitions.len(),
            message_prefixes: info.message_prefixes,
            created_at,
            tables,
            slots: info.partitions.into_iter().map(|p| p.slot_name).collect(),
            members,
        })
    }

    /// Per-partition status of `group`, or of every group: slot position, lag, retained
    /// WAL, last commit, the group's sinks, and warnings about its tables (partitions
    /// attached after `enable` that lack before-images, each with the fix).
    ///
    /// # Errors
    /// [`Error::is_not_found`] when `group` does not exist; [`Error::is_config`] for an
    /// invalid group id; or the query failed.
    pub async fn status(&self, group: Option<&str>) -> Result<Vec<PartitionStatus>> {
        let ids = match group {
            Some(group) => vec![group.to_owned()],
            None => self.group_ids().await?,
        };
        let mut out = Vec::new();
        for id in ids {
            let info = self.load(&id).await?;
            let warnings = self.table_warnings(&id).await?;
            let sinks = self.sink_progress(&id).await?;
            for p in info.partitions {
                let status = partition::slot_status(&self.client, &p.slot_name).await?;
                let last_commit_time: Option<String> = self
                    .client
                    .query_opt(
                        &format!(
                            "SELECT to_char(updated_at AT TIME ZONE 'UTC', {UTC})
                               FROM changestream.cursors WHERE group_id = $1 AND partition = $2"
                        ),
                        &[&id, &p.partition],
                    )
                    .await?
                    .map(|r| r.get(0));
                let (active_pid, confirmed, lag, retained, wal_status) = match status {
                    Some(s) => (
                        s.active_pid,
                        s.confirmed_flush_lsn,
                        s.confirmed_flush_lsn.map(|c| s.server_lsn.bytes_since(c)),
                        s.retained_bytes,
                        s.wal_status.unwrap_or_else(|| "unknown".into()),
                    ),
                    None => (None, None, None, None, "missing".into()),
                };
                out.push(PartitionStatus {
                    group: id.clone(),
                    partition: PartitionId::from_catalog(p.partition),
                    slot: p.slot_name,
                    active_pid,
                    confirmed_flush_lsn: confirmed.map(|l| l.to_string()),
                    lag_bytes: lag,
                    retained_wal_bytes: retained,
                    wal_status,
                    last_commit_time,
                    warnings: warnings.clone(),
                    sinks: sinks.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Deletes a group: its slots, publications and state. Without `force` it refuses
    /// while a consumer streams from one of its slots; with `force` it terminates those
    /// walsenders first (their consumers' next poll fails with [`Error::is_not_found`]).
    ///
    /// # Errors
    /// [`Error::is_not_found`] when the group does not exist; [`Error::is_config`] when a
    /// consumer is attached and `force` is false.
    pub async fn delete_group(&mut self, group: &str, force: bool) -> Result<()> {
        partition::check_group_id(group)?;
        partition::delete_group(&mut self.client, group, force).await
    }

    async fn has_table(&self, name: &str) -> Result<bool> {
        Ok(self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await?
            .get(0))
    }

    async fn load(&self, group: &str) -> Result<GroupInfo> {
        partition::check_group_id(group)?;
        let found = if self.has_table("changestream.groups").await? {
            partition::load_group(&self.client, group).await?
        } else {
            None
        };
        found.ok_or_else(|| {
            Error::new(
                Kind::NotFound,
                format!(
                    "consumer group {group:?} does not exist; `pg-changestream groups` \
                     (Admin::groups) lists the groups"
                ),
            )
        })
    }

    /// Partitions of a partitioned table of `group` created or attached after it was
    /// enabled with before-images, which lack them.
    async fn table_warnings(&self, group: &str) -> Result<Vec<String>> {
        let tables = self
            .client
            .query(
                "SELECT schema_name, table_name FROM changestream.group_tables
                  WHERE group_id = $1 ORDER BY 1, 2",
                &[&group],
            )
            .await?
            .iter()
            .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Result<Vec<_>>>()?;
        Ok(
            identity::partitions_lacking_before_images(&self.client, &tables)
                .await?
                .iter()
                .map(|(table, partition)| identity::lacking_before_images_warning(table, partition))
                .collect(),
        )
    }

    /// The sinks of `group`, when the schema has the table (version 7 and later).
    async fn sink_progress(&self, group: &str) -> Result<Vec<SinkProgress>> {
        if !self.has_table("changestream.sink_progress").await? {
            return Ok(Vec::new());
        }
        Ok(self
            .client
            .query(
                &format!(
                    "SELECT sink, target, last_acked_event, records_acked,
                            to_char(updated_at AT TIME ZONE 'UTC', {UTC})
                       FROM changestream.sink_progress WHERE group_id = $1 ORDER BY sink"
                ),
                &[&group],
            )
            .await?
            .iter()
            .map(|r| SinkProgress {
                sink: r.get(0),
                target: r.get(1),
                last_acked_event: r.get(2),
                records_acked: r.get(3),
                updated_at: r.get(4),
            })
            .collect())
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// Enables change streaming for `table` (`name` or `schema.name`) on a session of its own;
/// see [`Admin::enable`].
///
/// # Errors
/// As [`Admin::enable`], or the table name does not parse.
pub async fn enable_change_streaming(
    config: &ConnectConfig,
    table: &str,
    before_images: bool,
) -> Result<()> {
    let table: TableName = table.parse()?;
    Admin::connect(config)
        .await?
        .enable(&table, before_images)
        .await
}

/// Disables change streaming for `table` on a session of its own; see [`Admin::disable`].
///
/// # Errors
/// As [`Admin::disable`], or the table name does not parse.
pub async fn disable_change_streaming(config: &ConnectConfig, table: &str) -> Result<()> {
    let table: TableName = table.parse()?;
    Admin::connect(config).await?.disable(&table).await
}

/// Deletes a consumer group on a session of its own; see [`Admin::delete_group`].
///
/// # Errors
/// As [`Admin::delete_group`].
pub async fn delete_group(config: &ConnectConfig, group_id: &str, force: bool) -> Result<()> {
    Admin::connect(config)
        .await?
        .delete_group(group_id, force)
        .await
}
