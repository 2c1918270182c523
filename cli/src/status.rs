//! `groups`, `status` and `delete-group`: what the `changestream` schema and the server say
//! about consumer groups.
//!
//! The per-partition figures come from `pg_changestream::group::partition::slot_status`;
//! the listing of groups, tables and members reads the catalog tables directly.

use std::fmt::Write as _;

use pg_changestream::group::identity;
use pg_changestream::group::partition::{self, GroupInfo};
use pg_changestream::group::table::TableName;
use pg_changestream::wire::ConnectConfig;
use serde::Serialize;
use tokio_postgres::Client;

use crate::connect;
use crate::failure::Failure;

/// A timestamp column as RFC 3339 UTC with microseconds, formatted by the server.
const UTC: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

/// One group as `groups` shows it.
#[derive(Debug, Serialize)]
pub struct GroupListing {
    group: String,
    partitions: usize,
    message_prefixes: Vec<String>,
    created_at: String,
    tables: Vec<GroupTable>,
    slots: Vec<String>,
    members: Vec<Member>,
}

/// A table of a group.
#[derive(Debug, Serialize)]
struct GroupTable {
    table: String,
    start_location: String,
    joined_lsn: Option<String>,
    backfill: String,
}

/// A member of a group.
#[derive(Debug, Serialize)]
struct Member {
    member_id: String,
    heartbeat_at: String,
    partitions: Vec<i32>,
}

/// One partition as `status` shows it.
#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    /// The group.
    pub group: String,
    /// The partition number.
    pub partition: i32,
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

/// The sinks of `group`, when the schema has the table (version 7 and later).
async fn sink_progress(client: &Client, group: &str) -> Result<Vec<SinkProgress>, Failure> {
    let sql = |e: tokio_postgres::Error| Failure::from(pg_changestream::Error::from(e));
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('changestream.sink_progress') IS NOT NULL",
            &[],
        )
        .await
        .map_err(sql)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(client
        .query(
            &format!(
                "SELECT sink, target, last_acked_event, records_acked,
                        to_char(updated_at AT TIME ZONE 'UTC', {UTC})
                   FROM changestream.sink_progress WHERE group_id = $1 ORDER BY sink"
            ),
            &[&group],
        )
        .await
        .map_err(sql)?
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

async fn has_catalog(client: &Client) -> Result<bool, Failure> {
    Ok(client
        .query_one("SELECT to_regclass('changestream.groups') IS NOT NULL", &[])
        .await
        .map_err(pg_changestream::Error::from)?
        .get(0))
}

async fn group_ids(client: &Client) -> Result<Vec<String>, Failure> {
    if !has_catalog(client).await? {
        return Ok(Vec::new());
    }
    Ok(client
        .query(
            "SELECT group_id FROM changestream.groups ORDER BY group_id",
            &[],
        )
        .await
        .map_err(pg_changestream::Error::from)?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn load(client: &Client, group: &str) -> Result<GroupInfo, Failure> {
    partition::check_group_id(group)?;
    let found = if has_catalog(client).await? {
        partition::load_group(client, group).await?
    } else {
        None
    };
    found.ok_or_else(|| {
        Failure::usage(format!(
            "consumer group {group:?} does not exist; `pg-changestream groups` lists the groups"
        ))
    })
}

/// Everything `groups` shows.
pub async fn list_groups(client: &Client) -> Result<Vec<GroupListing>, Failure> {
    let sql = |e: tokio_postgres::Error| Failure::from(pg_changestream::Error::from(e));
    let mut out = Vec::new();
    for id in group_ids(client).await? {
        let info = load(client, &id).await?;
        let created_at: String = client
            .query_one(
                &format!("SELECT to_char(created_at AT TIME ZONE 'UTC', {UTC}) FROM changestream.groups WHERE group_id = $1"),
                &[&id],
            )
            .await
            .map_err(sql)?
            .get(0);
        let tables = client
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
            .await
            .map_err(sql)?
            .iter()
            .map(|r| GroupTable {
                table: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
                start_location: r.get(2),
                joined_lsn: r.get(3),
                backfill: r.get(4),
            })
            .collect();
        let members = client
            .query(
                &format!(
                    "SELECT member_id, to_char(heartbeat_at AT TIME ZONE 'UTC', {UTC}), partitions
                       FROM changestream.members WHERE group_id = $1 ORDER BY member_id"
                ),
                &[&id],
            )
            .await
            .map_err(sql)?
            .iter()
            .map(|r| Member {
                member_id: r.get(0),
                heartbeat_at: r.get(1),
                partitions: r.get(2),
            })
            .collect();
        out.push(GroupListing {
            group: id,
            partitions: info.partitions.len(),
            message_prefixes: info.message_prefixes,
            created_at,
            tables,
            slots: info.partitions.into_iter().map(|p| p.slot_name).collect(),
            members,
        });
    }
    Ok(out)
}

/// Per-partition status of `group`, or of every group.
pub async fn partition_status(
    client: &Client,
    group: Option<&str>,
) -> Result<Vec<PartitionStatus>, Failure> {
    let ids = match group {
        Some(group) => vec![group.to_owned()],
        None => group_ids(client).await?,
    };
    let mut out = Vec::new();
    for id in ids {
        let info = load(client, &id).await?;
        let warnings = table_warnings(client, &id).await?;
        let sinks = sink_progress(client, &id).await?;
        for p in info.partitions {
            let status = partition::slot_status(client, &p.slot_name).await?;
            let last_commit_time: Option<String> = client
                .query_opt(
                    &format!(
                        "SELECT to_char(updated_at AT TIME ZONE 'UTC', {UTC}) FROM changestream.cursors
                          WHERE group_id = $1 AND partition = $2"
                    ),
                    &[&id, &p.partition],
                )
                .await
                .map_err(pg_changestream::Error::from)?
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
                partition: p.partition,
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

/// Warnings about the tables of `group`: partitions of a partitioned table created or
/// attached after it was enabled with before-images, which lack them.
async fn table_warnings(client: &Client, group: &str) -> Result<Vec<String>, Failure> {
    let tables = client
        .query(
            "SELECT schema_name, table_name FROM changestream.group_tables WHERE group_id = $1
              ORDER BY 1, 2",
            &[&group],
        )
        .await
        .map_err(pg_changestream::Error::from)?
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect::<pg_changestream::Result<Vec<_>>>()?;
    Ok(identity::partitions_lacking_before_images(client, &tables)
        .await?
        .iter()
        .map(|(table, partition)| identity::lacking_before_images_warning(table, partition))
        .collect())
}

/// `groups [--json]`.
pub async fn groups(config: &ConnectConfig, json: bool) -> Result<(), Failure> {
    let client = connect::sql(config).await?;
    let groups = list_groups(&client).await?;
    if json {
        print_json(&groups)
    } else {
        print!("{}", groups_table(&groups));
        Ok(())
    }
}

/// `status [GROUP] [--json]`.
pub async fn status(
    config: &ConnectConfig,
    group: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let client = connect::sql(config).await?;
    let rows = partition_status(&client, group).await?;
    if json {
        print_json(&rows)
    } else {
        print!("{}", status_table(&rows));
        let mut warned = std::collections::HashSet::new();
        for warning in rows.iter().flat_map(|r| &r.warnings) {
            if warned.insert(warning) {
                println!("warning: {warning}");
            }
        }
        Ok(())
    }
}

/// `delete-group GROUP [--force]`.
pub async fn delete_group(config: &ConnectConfig, group: &str, force: bool) -> Result<(), Failure> {
    partition::check_group_id(group)?;
    let mut client = connect::sql(config).await?;
    partition::delete_group(&mut client, group, force).await?;
    println!("deleted consumer group {group:?} (its slots and publications are dropped)");
    Ok(())
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::other(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn groups_table(groups: &[GroupListing]) -> String {
    if groups.is_empty() {
        return "no consumer groups\n".into();
    }
    let mut out = String::new();
    for g in groups {
        let _ = writeln!(
            out,
            "group {:?}: {} partition(s), slots {}, created {}",
            g.group,
            g.partitions,
            g.slots.join(", "),
            g.created_at
        );
        if !g.message_prefixes.is_empty() {
            let _ = writeln!(out, "  message prefixes: {}", g.message_prefixes.join(", "));
        }
        for t in &g.tables {
            let _ = writeln!(
                out,
                "  table {} from {} (joined at {}, backfill {})",
                t.table,
                t.start_location,
                t.joined_lsn.as_deref().unwrap_or("-"),
                t.backfill
            );
        }
        for m in &g.members {
            let _ = writeln!(
                out,
                "  member {} partitions {:?}, last heartbeat {}",
                m.member_id, m.partitions, m.heartbeat_at
            );
        }
    }
    out
}

/// The human form of `status`: aligned columns.
pub fn status_table(rows: &[PartitionStatus]) -> String {
    if rows.is_empty() {
        return "no consumer groups\n".into();
    }
    let header = [
        "GROUP",
        "PART",
        "SLOT",
        "PID",
        "CONFIRMED",
        "LAG BYTES",
        "RETAINED",
        "WAL STATUS",
        "LAST COMMIT",
    ];
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.group.clone(),
                r.partition.to_string(),
                r.slot.clone(),
                opt(r.active_pid.map(|p| p.to_string())),
                opt(r.confirmed_flush_lsn.clone()),
                opt(r.lag_bytes.map(|b| b.to_string())),
                opt(r.retained_wal_bytes.map(|b| b.to_string())),
                r.wal_status.clone(),
                opt(r.last_commit_time.clone()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &cells {
        line(row);
    }
    // A group's sinks once, after its partitions.
    let mut shown: Vec<&str> = Vec::new();
    for r in rows {
        if shown.contains(&r.group.as_str()) {
            continue;
        }
        shown.push(&r.group);
        for s in &r.sinks {
            let _ = writeln!(
                out,
                "group {} publishes via {} to {}: last acknowledged event {} ({} records), at {}",
                r.group, s.sink, s.target, s.last_acked_event, s.records_acked, s.updated_at
            );
        }
    }
    out
}
