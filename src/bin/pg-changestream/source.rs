//! Where `tail` and `demo` get their records: one member of a consumer group
//! (`pg_changestream::consumer`), in manual commit mode so that the tool commits only what
//! it has written and flushed.

use std::time::Duration;

use pg_changestream::consumer::{CommitMode, Consumer, ConsumerBuilder, Op, Record, StartLocation};
use pg_changestream::group::table::TableName;
use pg_changestream::wire::ConnectConfig;

use crate::failure::Failure;

/// Splits `TABLE[@LOCATION]` at the last `@` outside double quotes, so a quoted table
/// name may itself contain `@`.
///
/// # Errors
/// Exit status 2 for a bad table name or location.
pub fn parse_table_arg(arg: &str) -> Result<(TableName, StartLocation), Failure> {
    let mut quoted = false;
    let mut last_at = None;
    for (i, c) in arg.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '@' if !quoted => last_at = Some(i),
            _ => {}
        }
    }
    let split = last_at.map(|at| {
        (
            arg.get(..at).unwrap_or_default(),
            arg.get(at + 1..).unwrap_or_default(),
        )
    });
    let (table, location) = match split {
        Some((table, location)) => (
            table,
            location.parse().map_err(|e: pg_changestream::Error| {
                Failure::from(e).context(format!("--table {arg:?}"))
            })?,
        ),
        None => (arg, StartLocation::FirstUncommitted),
    };
    let table = table.parse().map_err(|e: pg_changestream::Error| {
        Failure::from(e).context(format!("--table {arg:?}"))
    })?;
    Ok((table, location))
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The consumer group.
    pub group: String,
    /// Tables with their start locations.
    pub tables: Vec<(TableName, StartLocation)>,
    /// Operations to deliver; all when empty.
    pub ops: Vec<Op>,
    /// Logical-message prefixes to deliver.
    pub message_prefixes: Vec<String>,
    /// Partitions of a new group; `None` takes an existing group as it is (1 for a new one).
    pub partitions: Option<u32>,
}

/// A reader of one consumer group.
pub struct Source {
    consumer: Consumer,
    wal_bytes_behind: u64,
}

/// Joins `spec.group` (creating it and adding the tables as needed).
///
/// # Errors
/// Exit status 2 for a table that does not exist or is not enabled, a bad location or
/// partition count, or a server without `wal_level=logical`; 1 otherwise.
pub async fn open(config: &ConnectConfig, spec: Spec) -> Result<Source, Failure> {
    let mut builder =
        ConsumerBuilder::new(config.clone(), &spec.group).commit_mode(CommitMode::Manual);
    if let Some(asked) = spec.partitions {
        // The group's catalog allows 1 to 64 partitions; say so before touching the server.
        let partitions = u16::try_from(asked)
            .ok()
            .filter(|p| (1..=64).contains(p))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--partitions {asked}: a group has 1 to 64 partitions"
                ))
            })?;
        builder = builder.partitions(partitions);
    }
    for (table, location) in &spec.tables {
        builder = builder.add_table(table.to_string(), *location);
    }
    if !spec.ops.is_empty() {
        builder = builder.operations(&spec.ops);
    }
    for prefix in &spec.message_prefixes {
        builder = builder.message_prefix(prefix);
    }
    let consumer = builder.build().await?;
    Ok(Source {
        consumer,
        wal_bytes_behind: 0,
    })
}

impl Source {
    /// Up to `limit` records, returning as soon as some are there, or none after `wait`.
    ///
    /// # Errors
    /// The consumer failed (slot invalidated, group deleted, server gone for too long).
    pub async fn poll(&mut self, limit: usize, wait: Duration) -> Result<Vec<Record>, Failure> {
        let bundle = self.consumer.poll(limit, wait).await?;
        self.wal_bytes_behind = bundle.wal_bytes_behind();
        Ok(bundle.into_records())
    }

    /// Commits everything the last poll returned; returns the group's committed position.
    ///
    /// # Errors
    /// Writing the cursor failed.
    pub async fn commit(&mut self) -> Result<pg_changestream::Lsn, Failure> {
        self.consumer.commit().await?;
        Ok(self.consumer.stats().committed_lsn)
    }

    /// The consumer itself, for `publish`'s driver loop.
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// The consumer's counters and lag.
    pub fn stats(&self) -> pg_changestream::consumer::Stats {
        self.consumer.stats()
    }

    /// WAL bytes between what was polled last and the server's position.
    pub fn lag_bytes(&self) -> u64 {
        self.wal_bytes_behind
    }

    /// Leaves the group. Nothing is committed here: the tail loop commits after each
    /// flushed write, and what was polled but not written must be delivered again.
    ///
    /// # Errors
    /// Ending replication failed.
    pub async fn close(self) -> Result<(), Failure> {
        self.consumer.close().await.map_err(Failure::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_arguments_split_at_a_location_keyword() {
        let (t, l) = parse_table_arg("orders").unwrap();
        assert_eq!(
            (t.schema(), t.name(), l),
            ("public", "orders", StartLocation::FirstUncommitted)
        );
        let (t, l) = parse_table_arg("shop.orders@latest").unwrap();
        assert_eq!(
            (t.schema(), t.name(), l),
            ("shop", "orders", StartLocation::Latest)
        );
        let (_, l) = parse_table_arg("o@lsn=16/B374D848").unwrap();
        assert_eq!(l, StartLocation::AtLsn("16/B374D848".parse().unwrap()));
        let (t, l) = parse_table_arg("\"a@b\"@earliest").unwrap();
        assert_eq!((t.name(), l), ("a@b", StartLocation::Earliest));
        let (t, _) = parse_table_arg("\"mail@host\"").unwrap();
        assert_eq!(t.name(), "mail@host");
        assert_eq!(parse_table_arg("o@lsn=zz").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("a.b.c.d").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("t@soon").unwrap_err().code(), 2);
    }
}
