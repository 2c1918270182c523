//! Members of a group (`changestream.members`): who is reading, with heartbeats.
//!
//! Each consumer registers under a random member id and refreshes its heartbeat as it
//! polls. A member whose heartbeat is older than its `max_poll_interval` counts as gone:
//! a walsender still holding the group's slot for it (its client died without closing the
//! socket) may be terminated so the slot can be taken.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::error::Result;

/// Registers `member_id` in `group_id`.
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
            "INSERT INTO changestream.members (group_id, member_id, max_poll_interval)
             VALUES ($1, $2, make_interval(secs => $3))
             ON CONFLICT (group_id, member_id) DO UPDATE
                SET heartbeat_at = now(), max_poll_interval = excluded.max_poll_interval",
            &[&group_id, &member_id, &max_poll_interval.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Refreshes the heartbeat of `member_id`, re-registering it if it was removed.
///
/// # Errors
/// The statement failed.
pub async fn heartbeat(
    client: &impl GenericClient,
    group_id: &str,
    member_id: &str,
    max_poll_interval: Duration,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO changestream.members (group_id, member_id, max_poll_interval)
             VALUES ($1, $2, make_interval(secs => $3))
             ON CONFLICT (group_id, member_id) DO UPDATE SET heartbeat_at = now()",
            &[&group_id, &member_id, &max_poll_interval.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Removes `member_id` from `group_id`.
///
/// # Errors
/// The statement failed.
pub async fn leave(client: &impl GenericClient, group_id: &str, member_id: &str) -> Result<()> {
    client
        .execute(
            "DELETE FROM changestream.members WHERE group_id = $1 AND member_id = $2",
            &[&group_id, &member_id],
        )
        .await?;
    Ok(())
}

/// Members of `group_id` other than `member_id` whose heartbeat is within their
/// `max_poll_interval`.
///
/// # Errors
/// The query failed.
pub async fn live_members(
    client: &impl GenericClient,
    group_id: &str,
    member_id: &str,
) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT member_id FROM changestream.members
              WHERE group_id = $1 AND member_id <> $2
                AND heartbeat_at + max_poll_interval > now()",
            &[&group_id, &member_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
