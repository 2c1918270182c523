//! Where `tail` and `demo` get their records: one consumer-group member, behind one small
//! type so that the rest of the tool does not care how it is read.
//!
//! Until the library's consumer (`pg_changestream::consumer`) is available this reads the
//! group's single partition with the low-level [`ChangeStream`]: the group (slot +
//! publication) comes from `group::partition`, and committing acknowledges the end of every
//! transaction whose records were all handed out. A transaction cut by `--max-records` is
//! delivered again by the next reader (at least once; its event ids are the same).

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_changestream::decode::decoder::Change;
use pg_changestream::decode::record::{Op, Record};
use pg_changestream::decode::stream::{ChangeStream, ChangeStreamOptions};
use pg_changestream::group::table::TableName;
use pg_changestream::group::{admin, partition};
use pg_changestream::wire::ConnectConfig;
use pg_changestream::Lsn;

use crate::connect;
use crate::failure::Failure;

/// Where a table new to the group starts (`TABLE@LOCATION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Resume at the group's committed position (the default).
    FirstUncommitted,
    /// Existing rows first, then changes.
    Earliest,
    /// Only changes committed from now on.
    Latest,
    /// Changes committed at or after an RFC 3339 time.
    AtTime(String),
    /// Changes committed at or after a WAL position.
    AtLsn(Lsn),
}

impl FromStr for Location {
    type Err = Failure;

    fn from_str(s: &str) -> Result<Location, Failure> {
        match s {
            "first-uncommitted" => Ok(Location::FirstUncommitted),
            "earliest" => Ok(Location::Earliest),
            "latest" => Ok(Location::Latest),
            _ => {
                if let Some(time) = s.strip_prefix("time=") {
                    Ok(Location::AtTime(time.to_owned()))
                } else if let Some(lsn) = s.strip_prefix("lsn=") {
                    lsn.parse()
                        .map(Location::AtLsn)
                        .map_err(|e: pg_changestream::Error| {
                            Failure::usage(format!("start location {s:?}: {e}"))
                        })
                } else {
                    Err(Failure::usage(format!(
                        "start location {s:?} is unknown; use first-uncommitted, earliest, \
                         latest, time=<RFC 3339> or lsn=<X/Y>"
                    )))
                }
            }
        }
    }
}

/// Splits `TABLE[@LOCATION]` at the last `@` outside double quotes, so a quoted table
/// name may itself contain `@`.
///
/// # Errors
/// Exit status 2 for a bad table name or location.
pub fn parse_table_arg(arg: &str) -> Result<(TableName, Location), Failure> {
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
        Some((table, location)) => (table, location.parse()?),
        None => (arg, Location::FirstUncommitted),
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
    pub tables: Vec<(TableName, Location)>,
    /// Operations to deliver; all when empty.
    pub ops: Vec<Op>,
    /// Logical-message prefixes to deliver.
    pub message_prefixes: Vec<String>,
    /// Partitions of the group.
    pub partitions: u32,
}

/// A reader of one consumer group.
pub struct Source {
    stream: ChangeStream,
    spec: Spec,
    /// A change taken from the stream but not yet handed out.
    pending: VecDeque<Change>,
    /// Records handed out since the last transaction end.
    in_txn: bool,
    /// The end of the last transaction whose records were all handed out.
    polled_end: Option<Lsn>,
}

/// Opens a reader of `spec.group`, creating the group and adding the tables as needed.
///
/// # Errors
/// Exit status 2 for a table that does not exist or is not enabled, an unsupported
/// location or partition count, or a server without `wal_level=logical`; 1 otherwise.
pub async fn open(config: &ConnectConfig, spec: Spec) -> Result<Source, Failure> {
    if spec.partitions != 1 {
        return Err(Failure::usage(format!(
            "--partitions {}: partitioned groups are not available in this build yet; use 1",
            spec.partitions
        )));
    }
    partition::check_group_id(&spec.group)?;
    let mut client = connect::sql(config).await?;
    admin::check_wal_level(&client).await?;
    let mut start = Lsn::ZERO;
    for (table, location) in &spec.tables {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2)",
                &[&table.schema(), &table.name()],
            )
            .await
            .map_err(pg_changestream::Error::from)?
            .get(0);
        if !exists {
            return Err(Failure::usage(format!(
                "table {table} does not exist; check the schema and the name's case"
            )));
        }
        if admin::enabled_with_before_images(&client, table)
            .await?
            .is_none()
        {
            return Err(Failure::usage(format!(
                "table {table} is not enabled for change streaming; run \
                 `pg-changestream enable {table}` first"
            )));
        }
        match location {
            Location::FirstUncommitted | Location::Latest => {}
            Location::AtLsn(lsn) => start = start.max(*lsn),
            Location::Earliest | Location::AtTime(_) => {
                return Err(Failure::usage(format!(
                    "start location {location:?} for {table} is not available in this build \
                     yet; use first-uncommitted, latest or lsn=<X/Y>"
                )))
            }
        }
    }
    let existed = partition::load_group(&client, &spec.group)
        .await
        .ok()
        .flatten()
        .is_some();
    let group = partition::create_or_load_group(&mut client, &spec.group, 1, false).await?;
    for (table, _) in &spec.tables {
        partition::publish_table(&client, &group, table).await?;
    }
    let Some(p) = group.partitions.first() else {
        return Err(Failure::other(format!(
            "consumer group {:?} has no partitions",
            spec.group
        )));
    };
    if !existed {
        // The slot is older than its publication; pgoutput looks publications up as of
        // each change, so decoding anything from between the two fails with "publication
        // does not exist" (before PostgreSQL 18). A new group has nothing to read there:
        // move the slot past it (fast-forward, no output plugin involved).
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
                &[&p.slot_name],
            )
            .await
            .map_err(pg_changestream::Error::from)?;
    }
    let mut options = ChangeStreamOptions::new(&p.slot_name, vec![p.publication_name.clone()]);
    options.start = start;
    options.messages = !spec.message_prefixes.is_empty();
    let stream = start_with_retry(config, options).await?;
    Ok(Source {
        stream,
        spec,
        pending: VecDeque::new(),
        in_txn: false,
        polled_end: None,
    })
}

/// A slot is busy for a moment after its previous reader left; retry transient failures
/// for a while.
async fn start_with_retry(
    config: &ConnectConfig,
    options: ChangeStreamOptions,
) -> Result<ChangeStream, Failure> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match ChangeStream::start(config, options.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "slot not available yet, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Source {
    /// Up to `limit` records, returning as soon as some are there, or none after `wait`.
    ///
    /// # Errors
    /// The stream failed (connection lost, slot invalidated...).
    pub async fn poll(&mut self, limit: usize, wait: Duration) -> Result<Vec<Record>, Failure> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let change = match self.pending.pop_front() {
                Some(change) => Some(change),
                None => match self.stream.try_next_change() {
                    Some(change) => Some(change?),
                    None if !out.is_empty() && !self.in_txn => return Ok(out),
                    None => {
                        let until = if out.is_empty() {
                            deadline
                        } else {
                            // Records are out; wait briefly for their transaction's end so
                            // that it can be committed with them.
                            deadline.min(tokio::time::Instant::now() + Duration::from_millis(200))
                        };
                        match tokio::time::timeout_at(until, self.stream.next_change()).await {
                            Ok(Some(change)) => Some(change?),
                            Ok(None) => {
                                return Err(Failure::other(
                                    "the change stream ended unexpectedly; run again to resume \
                                     from the committed position",
                                ))
                            }
                            Err(_) => None,
                        }
                    }
                },
            };
            let Some(change) = change else {
                return Ok(out);
            };
            match change {
                Change::Record(record) => {
                    if out.len() >= limit {
                        self.pending.push_front(Change::Record(record));
                        return Ok(out);
                    }
                    self.in_txn = true;
                    if self.wanted(&record) {
                        out.push(record);
                    }
                }
                Change::Commit { end_lsn, .. } => {
                    self.in_txn = false;
                    self.polled_end = Some(end_lsn);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                _ => {}
            }
        }
    }

    fn wanted(&self, record: &Record) -> bool {
        match record.op() {
            Op::Message => record
                .message_content()
                .is_some_and(|(prefix, _)| self.spec.message_prefixes.iter().any(|p| p == prefix)),
            op => self.spec.ops.is_empty() || self.spec.ops.contains(&op),
        }
    }

    /// Commits every transaction whose records were all returned by `poll`; returns the
    /// committed position.
    ///
    /// # Errors
    /// None yet; the consumer's commit can fail.
    pub async fn commit(&mut self) -> Result<Lsn, Failure> {
        if let Some(end) = self.polled_end {
            self.stream.ack(end);
        }
        Ok(self.stream.acked())
    }

    /// WAL bytes between the server's position and the committed one.
    pub fn lag_bytes(&self) -> u64 {
        self.stream
            .server_wal_end()
            .bytes_since(self.stream.confirmed())
    }

    /// Commits and closes the stream.
    ///
    /// # Errors
    /// The final status update failed.
    pub async fn close(mut self) -> Result<(), Failure> {
        self.commit().await?;
        self.stream.close().await.map_err(Failure::from)
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
            ("public", "orders", Location::FirstUncommitted)
        );
        let (t, l) = parse_table_arg("shop.orders@latest").unwrap();
        assert_eq!(
            (t.schema(), t.name(), l),
            ("shop", "orders", Location::Latest)
        );
        let (_, l) = parse_table_arg("o@lsn=16/B374D848").unwrap();
        assert_eq!(l, Location::AtLsn("16/B374D848".parse().unwrap()));
        let (t, l) = parse_table_arg("\"a@b\"@earliest").unwrap();
        assert_eq!((t.name(), l), ("a@b", Location::Earliest));
        let (t, _) = parse_table_arg("\"mail@host\"").unwrap();
        assert_eq!(t.name(), "mail@host");
        assert_eq!(parse_table_arg("o@lsn=zz").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("a.b.c.d").unwrap_err().code(), 2);
        assert_eq!(parse_table_arg("t@soon").unwrap_err().code(), 2);
    }
}
