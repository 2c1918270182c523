//! Members of a group (`changestream.members`) and who owns which partition
//! (`changestream.cursors.owner`): registering, heartbeats, claiming, releasing, fencing.
//!
//! Each consumer registers under a random member id with its SQL session (pid and start
//! time) and refreshes its heartbeat as it polls. A member is **live** while
//!
//! - its heartbeat is younger than its `max_poll_interval`, and
//! - its SQL session still exists — checked only when that session began after the server
//!   last started, since a server restart ends every session and says nothing about the
//!   members. A consumer whose process died, or that was dropped without `close`, is
//!   therefore gone at once; one that hangs, or is cut off by the network, when its
//!   heartbeat gets old.
//!
//! **Ownership.** A partition has at most one owner. A member claims a partition that has
//! no owner, or whose owner is not live: then the owner is **fenced** — its member row is
//! deleted (its next heartbeat finds out, and its consumer fails with
//! [`Error::is_fenced`](crate::Error::is_fenced)) and the walsender still streaming the
//! partition's slot for it is terminated, so the slot frees at once. A live owner is never
//! overruled: it gives the partition up itself ([`release`]), at a bundle boundary, after
//! committing. Every cursor write checks the owner
//! (`cursor::store_cursor`), so a fenced member cannot move a cursor
//! even if it comes back before it notices.

use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Kind, Result};

/// SQL: whether member row `m` is live (see the module docs).
const LIVE: &str = "(m.heartbeat_at + m.max_poll_interval > now()
      AND NOT (coalesce(m.backend_start >= pg_postmaster_start_time(), false)
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                WHERE a.pid = m.backend_pid
                                  AND (a.backend_start IS NULL
                                       OR a.backend_start = m.backend_start))))";

/// The error of a member whose partitions were taken.
pub(crate) fn fenced(group_id: &str, member_id: &str, what: &str) -> Error {
    Error::new(
        Kind::Fenced,
        format!(
            "consumer group {group_id:?}: member {member_id} was fenced ({what}): it was \
             silent past its max_poll_interval or lost its session, and other members took \
             its partitions; what it polled but did not commit is delivered to them. Build a \
             new consumer, and poll more often than max_poll_interval (or raise it)"
        ),
    )
}

/// Registers `member_id` in `group_id`, with the current session as its own.
///
/// # Errors
/// The statement failed (the group does not exist, for one).
pub async fn join(
    client: &impl GenericClient,
    group_id: &str,
    member_id: &str,
    max_poll_interval: Duration,
) -> Result<()> {
    // Members gone for ten of their poll intervals are no news to anyone any more.
    client
        .execute(
            "DELETE FROM changestream.members
              WHERE group_id = $1 AND heartbeat_at + 10 * max_poll_interval < now()",
            &[&group_id],
        )
        .await?;
    client
        .execute(
            "INSERT INTO changestream.members
                    (group_id, member_id, max_poll_interval, backend_pid, backend_start)
             SELECT $1, $2, make_interval(secs => $3), pid, backend_start
               FROM pg_stat_activity WHERE pid = pg_backend_pid()
             ON CONFLICT (group_id, member_id) DO UPDATE
                SET heartbeat_at = now(), max_poll_interval = excluded.max_poll_interval,
                    backend_pid = excluded.backend_pid, backend_start = excluded.backend_start",
            &[&group_id, &member_id, &max_poll_interval.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Refreshes the heartbeat of `member_id`, records the current session as its own and
/// `owned` as its partitions (for the curious; owners in the cursors decide). Returns
/// `false` when the member is no longer registered: it was fenced.
///
/// # Errors
/// The statement failed.
pub async fn heartbeat(
    client: &impl GenericClient,
    group_id: &str,
    member_id: &str,
    owned: &[i32],
) -> Result<bool> {
    let rows = client
        .execute(
            "UPDATE changestream.members m
                SET heartbeat_at = now(), partitions = $3,
                    backend_pid = a.pid, backend_start = a.backend_start
               FROM pg_stat_activity a
              WHERE a.pid = pg_backend_pid() AND m.group_id = $1 AND m.member_id = $2",
            &[&group_id, &member_id, &owned],
        )
        .await?;
    Ok(rows > 0)
}

/// Records the current session as `member_id`'s, after its SQL session was reconnected
/// (the old one ended, and with it the member's liveness in the others' eyes).
///
/// # Errors
/// The statement failed.
pub async fn register_session(
    client: &impl GenericClient,
    group_id: &str,
    member_id: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE changestream.members m SET backend_pid = a.pid, backend_start = a.backend_start
               FROM pg_stat_activity a
              WHERE a.pid = pg_backend_pid() AND m.group_id = $1 AND m.member_id = $2",
            &[&group_id, &member_id],
        )
        .await?;
    Ok(())
}

/// Removes `member_id` from `group_id`, giving up its partitions.
///
/// # Errors
/// The statement failed.
pub async fn leave(client: &impl GenericClient, group_id: &str, member_id: &str) -> Result<()> {
    client
        .execute(
            "UPDATE changestream.cursors SET owner = NULL WHERE group_id = $1 AND owner = $2",
            &[&group_id, &member_id],
        )
        .await?;
    client
        .execute(
            "DELETE FROM changestream.members WHERE group_id = $1 AND member_id = $2",
            &[&group_id, &member_id],
        )
        .await?;
    Ok(())
}

/// The live members of `group_id` (see the module docs), by id.
///
/// # Errors
/// The query failed.
pub async fn live_members(client: &impl GenericClient, group_id: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "SELECT member_id FROM changestream.members m
                  WHERE group_id = $1 AND {LIVE} ORDER BY member_id"
            ),
            &[&group_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The owner of each partition of `group_id`: (partition, owner).
///
/// # Errors
/// The query failed.
pub async fn owners(
    client: &impl GenericClient,
    group_id: &str,
) -> Result<Vec<(i32, Option<String>)>> {
    let rows = client
        .query(
            "SELECT partition, owner FROM changestream.cursors
              WHERE group_id = $1 ORDER BY partition",
            &[&group_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The partition is the member's now; `fenced` names the gone owner it was taken from.
    Claimed {
        /// The previous owner, if one had to be fenced.
        fenced: Option<String>,
    },
    /// A live member owns it; it gives it up itself at its next round.
    Held(String),
}

/// Claims `partition` of `group_id` for `member_id` if nobody owns it or its owner is not
/// live; a gone owner is fenced (its registration deleted) and the walsender holding
/// `slot_name` terminated.
///
/// # Errors
/// The cursor row is missing (the group was deleted), or SQL failed.
pub(crate) async fn claim(
    client: &mut Client,
    group_id: &str,
    partition: i32,
    member_id: &str,
    slot_name: &str,
) -> Result<Claim> {
    let tx = client.transaction().await?;
    // The row lock serialises claimers: a second one waits, then reads the new owner.
    let owner: Option<String> = tx
        .query_opt(
            "SELECT owner FROM changestream.cursors
              WHERE group_id = $1 AND partition = $2 FOR UPDATE",
            &[&group_id, &partition],
        )
        .await?
        .ok_or_else(|| super::cursor::deleted(group_id, partition))?
        .get(0);
    let previous = owner.filter(|o| o != member_id);
    if let Some(previous) = &previous {
        let live: bool = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM changestream.members m
                                     WHERE group_id = $1 AND member_id = $2 AND {LIVE})"
                ),
                &[&group_id, previous],
            )
            .await?
            .get(0);
        if live {
            return Ok(Claim::Held(previous.clone()));
        }
        tx.execute(
            "DELETE FROM changestream.members WHERE group_id = $1 AND member_id = $2",
            &[&group_id, previous],
        )
        .await?;
    }
    tx.execute(
        "UPDATE changestream.cursors SET owner = $3 WHERE group_id = $1 AND partition = $2",
        &[&group_id, &partition, &member_id],
    )
    .await?;
    tx.commit().await?;
    if let Some(previous) = &previous {
        tracing::warn!(
            group_id,
            partition,
            member_id,
            fenced = %previous,
            "took over a partition from a member that is gone; fencing it"
        );
        terminate_slot_holder(&*client, slot_name).await?;
    }
    Ok(Claim::Claimed { fenced: previous })
}

/// Gives up `partition` of `group_id` if `member_id` owns it.
///
/// # Errors
/// The statement failed.
pub async fn release(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    member_id: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE changestream.cursors SET owner = NULL
              WHERE group_id = $1 AND partition = $2 AND owner = $3",
            &[&group_id, &partition, &member_id],
        )
        .await?;
    Ok(())
}

/// Whether `member_id` owns `partition` of `group_id`.
///
/// # Errors
/// The query failed.
pub async fn owns(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    member_id: &str,
) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM changestream.cursors
                             WHERE group_id = $1 AND partition = $2 AND owner = $3)",
            &[&group_id, &partition, &member_id],
        )
        .await?
        .get(0))
}

/// Terminates the walsender holding `slot_name`, if any; returns its pid.
///
/// # Errors
/// The statement failed (the role may not signal that backend, for one).
pub(crate) async fn terminate_slot_holder(
    client: &impl GenericClient,
    slot_name: &str,
) -> Result<Option<i32>> {
    let row = client
        .query_opt(
            "SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot_name],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
