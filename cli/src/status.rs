//! `groups`, `status` and `delete-group`: what the `changestream` schema and the server say
//! about consumer groups, as the library's admin facade (`pg_changestream::admin::Admin`)
//! reports it; this module only formats.

use std::fmt::Write as _;

use pg_changestream::admin::{GroupListing, PartitionStatus};
use pg_changestream::ConnectConfig;
use serde::Serialize;

use crate::connect;
use crate::failure::Failure;

/// `groups [--json]`.
pub async fn groups(config: &ConnectConfig, json: bool) -> Result<(), Failure> {
    let groups = connect::admin(config).await?.groups().await?;
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
    let rows = connect::admin(config).await?.status(group).await?;
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
    connect::admin(config)
        .await?
        .delete_group(group, force)
        .await?;
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
