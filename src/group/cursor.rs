//! The durable committed cursor of a partition, in `changestream.cursors`.
//!
//! The slot's `confirmed_flush_lsn` is the cursor the server honours, but it reaches disk only
//! at checkpoints (or when the slot's restart point moves): after a crash it can fall back and
//! committed work would be sent again. The row written here commits with every consumer
//! commit, and a consumer starts replication at the higher of the two — the server skips
//! transactions that committed before a start position above the slot's.
//!
//! A cursor may point inside a transaction: a large transaction split over several bundles
//! is committed record by record, so the cursor is (commit LSN, records done in it).

use std::time::SystemTime;

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Kind, Result};
use crate::lsn::Lsn;

/// Every transaction that committed before `commit_lsn`, plus the first `records_done`
/// records of the one committing at `commit_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Where committed work ends (a commit LSN when `records_done > 0`).
    pub commit_lsn: Lsn,
    /// Records of the transaction at `commit_lsn` already committed.
    pub records_done: u64,
    /// Commit time of the last transaction (part) committed, if any was.
    pub commit_time: Option<SystemTime>,
}

/// A partition's cursor row is gone: someone deleted the group while a member used it.
pub(super) fn deleted(group_id: &str, partition: i32) -> Error {
    Error::new(
        Kind::NotFound,
        format!(
            "consumer group {group_id:?} has no cursor for partition {partition}: the group was \
             deleted (delete_group), and its slot with it; build a consumer again to create the \
             group anew from its start location, or stop this one"
        ),
    )
}

/// Reads the cursor of `partition` of `group_id`.
///
/// # Errors
/// The cursor row is missing (the group was deleted), or the query failed.
pub async fn load_cursor(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
) -> Result<Cursor> {
    let row = client
        .query_opt(
            "SELECT commit_lsn::text, records_done, commit_time FROM changestream.cursors
              WHERE group_id = $1 AND partition = $2",
            &[&group_id, &partition],
        )
        .await?
        .ok_or_else(|| deleted(group_id, partition))?;
    let records_done: i64 = row.get(1);
    Ok(Cursor {
        commit_lsn: row.get::<_, String>(0).parse()?,
        records_done: u64::try_from(records_done).unwrap_or(0),
        commit_time: row.get(2),
    })
}

/// Moves the cursor forward to `cursor`, if `owner` owns the partition; a cursor not ahead
/// of the stored one changes nothing (committing an older bundle is a no-op). Returns
/// whether it moved.
///
/// The owner is checked in the same statement that moves the cursor, so a member that lost
/// the partition (fenced while silent) can never move it, however late its commit arrives.
///
/// # Errors
/// The cursor row is missing (the group was deleted),
/// [`Error::is_fenced`](crate::Error::is_fenced) when another member (or none) owns the
/// partition, or the statement failed.
pub(crate) async fn store_cursor(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    owner: &str,
    cursor: &Cursor,
) -> Result<bool> {
    let records_done = i64::try_from(cursor.records_done).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "WITH moved AS (
                 UPDATE changestream.cursors
                    SET commit_lsn = $3::text::pg_lsn, records_done = $4,
                        commit_time = coalesce($5, commit_time), updated_at = now()
                  WHERE group_id = $1 AND partition = $2 AND owner = $6
                    AND (commit_lsn, records_done) < ($3::text::pg_lsn, $4)
                 RETURNING 1)
             SELECT (SELECT count(*) FROM moved),
                    (SELECT owner FROM changestream.cursors WHERE group_id = $1 AND partition = $2),
                    EXISTS (SELECT 1 FROM changestream.cursors WHERE group_id = $1 AND partition = $2)",
            &[
                &group_id,
                &partition,
                &cursor.commit_lsn.to_string(),
                &records_done,
                &cursor.commit_time,
                &owner,
            ],
        )
        .await?;
    let moved: i64 = row.get(0);
    let current: Option<String> = row.get(1);
    let exists: bool = row.get(2);
    if !exists {
        return Err(Error::new(
            Kind::NotFound,
            format!("consumer group {group_id:?} was deleted while this consumer committed"),
        ));
    }
    if current.as_deref() != Some(owner) {
        return Err(crate::group::membership::fenced(
            group_id,
            owner,
            &format!(
                "partition {partition} is owned by {}, so its commit was refused",
                current.as_deref().unwrap_or("nobody")
            ),
        ));
    }
    Ok(moved > 0)
}

/// Cursor writes must be durable when they return: a session with `synchronous_commit =
/// off` would acknowledge commits a crash can still lose.
pub(crate) async fn prepare_session(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "DO $$ BEGIN
               IF current_setting('synchronous_commit') = 'off' THEN
                 SET synchronous_commit = 'on';
               END IF;
             END $$",
        )
        .await?;
    Ok(())
}
