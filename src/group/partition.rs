//! The PostgreSQL objects behind a consumer group: one logical slot and one publication per
//! partition, plus the rows in `changestream` that describe them.
//!
//! A slot streams to one walsender at a time, which makes it the natural lock on a
//! partition. Slot names may only contain `[a-z0-9_]` (at most 63 bytes) while a group id
//! may contain anything, so names are derived: a sanitised prefix of the group id and a hash
//! of the database name and all of the group id (`pcs_orders_9f3c2a1b_p0`) — slot names are
//! server-wide, groups live in one database, so one group id in two databases must not
//! share a slot. The derived names are stored in `changestream.partitions` and read back
//! from there, never recomputed for existing groups.
//!
//! Slots are created through SQL (`pg_create_logical_replication_slot`), which needs no
//! replication connection; it must run outside a transaction that has written. Creation
//! order matters: publications first (before PostgreSQL 18 pgoutput errors on a change
//! decoded from before one of its publications existed), then slots, then the catalog rows;
//! all of it is dropped again if a step fails.
//!
//! ## Partitions
//!
//! A group with N > 1 partitions publishes every table in all N publications, each with a
//! row filter that keeps the rows whose key hashes to that partition:
//!
//! ```text
//! WHERE ((hash_record_extended(ROW(k1, k2, ...), 0::bigint) & 9223372036854775807::bigint)
//!        % N::bigint = p::bigint)
//! ```
//!
//! - `hash_record_extended` (PostgreSQL 14+) hashes a row of any built-in types with each
//!   type's own hash support function, so one expression covers composite keys and every key
//!   type PostgreSQL can hash, without arithmetic that could overflow. It is immutable and
//!   built in, which row filters require, and the hash functions are the ones hash
//!   partitioning of tables relies on, so they stay put across releases.
//! - The sign bit is masked, never `abs()`: `abs()` of the smallest bigint raises an error,
//!   and a row filter that raises an error stops decoding of the whole slot.
//! - The key is the replica identity key (the primary key, or the index of `REPLICA
//!   IDENTITY USING INDEX`): a row filter on UPDATE and DELETE may reference only replica
//!   identity columns, else PostgreSQL refuses the user's own UPDATE and DELETE. Under
//!   `REPLICA IDENTITY FULL` every column qualifies and the primary key is used.
//! - Refused, with a message saying why: tables without such a key (a row could move
//!   between partitions on any update, so no order per row would hold), key columns of
//!   user-defined types (enums, domains: row filters accept only built-in types) or of types
//!   without a hash function (`json`, `point`).
//! - Partitioned tables are spread like any table: publications publish via the partition
//!   root, so the root's row filter (over the root's key, which every partition shares)
//!   applies to the changes of all its partitions.
//! - With a row filter, pgoutput turns an UPDATE whose old row matches and new row does not
//!   into a DELETE (of the old key), and the reverse into an INSERT: a key update that moves
//!   a row to another partition arrives as a delete in the old partition and an insert in
//!   the new one.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::catalog;
use super::key::{key_columns, KeyColumn};
use super::table::TableName;
use crate::error::{Error, Kind, Result};
use crate::lsn::Lsn;
use crate::quote;

/// The longest group id accepted (it is stored, not used as an identifier).
pub const MAX_GROUP_ID_LEN: usize = 63;

/// The most partitions a group may have (each costs a slot, a walsender and a decoding
/// pass over all WAL of the database on the server).
pub const MAX_PARTITIONS: i32 = 64;

/// The state of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group id.
    pub group_id: String,
    /// Partitions, fixed at creation.
    pub partitions: Vec<PartitionInfo>,
    /// Logical-message prefixes the group receives.
    pub message_prefixes: Vec<String>,
}

/// One partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number, from 0.
    pub partition: i32,
    /// Its logical replication slot.
    pub slot_name: String,
    /// Its publication.
    pub publication_name: String,
}

/// What the server reports about a partition's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    /// The slot's committed position (`confirmed_flush_lsn`).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// Where the slot must start decoding (`restart_lsn`); WAL from here on is retained.
    pub restart_lsn: Option<Lsn>,
    /// The walsender holding the slot, if any.
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL between the slot's restart point and the server's current position.
    pub retained_bytes: Option<i64>,
    /// The server's current WAL position.
    pub server_lsn: Lsn,
}

/// Checks a group id: 1 to 63 characters, no control characters.
///
/// # Errors
/// The id is empty, too long, or holds control characters.
pub fn check_group_id(group_id: &str) -> Result<()> {
    if group_id.is_empty() {
        return Err(Error::config("group id is empty; name the consumer group"));
    }
    if group_id.chars().count() > MAX_GROUP_ID_LEN {
        return Err(Error::config(format!(
            "group id {group_id:?} is {} characters long; at most {MAX_GROUP_ID_LEN}",
            group_id.chars().count()
        )));
    }
    if group_id.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "group id {group_id:?} contains control characters"
        )));
    }
    Ok(())
}

/// The slot (and publication) name of a partition of a group in `database`:
/// `pcs_<prefix>_<hash>_p<n>`, the hash over the database name and the group id.
///
/// Slot names are server-wide while groups live in one database, so the same group id in
/// two databases must give two names. Only creation derives names; existing groups use the
/// names stored in `changestream.partitions` (groups created before the database was part
/// of the hash keep theirs).
pub fn derived_name(database: &str, group_id: &str, partition: i32) -> String {
    let prefix: String = group_id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect();
    // A NUL separates the two parts: neither can contain one, so no two pairs hash the
    // same bytes.
    let key = [database.as_bytes(), &[0], group_id.as_bytes()].concat();
    format!("pcs_{prefix}_{:08x}_p{partition}", fnv1a(&key) as u32)
}

/// FNV-1a: tiny, stable across versions and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Loads a group, or `None` if it does not exist.
///
/// # Errors
/// The query failed.
pub async fn load_group(client: &impl GenericClient, group_id: &str) -> Result<Option<GroupInfo>> {
    let Some(row) = client
        .query_opt(
            "SELECT message_prefixes FROM changestream.groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let partitions = client
        .query(
            "SELECT partition, slot_name::text, publication_name::text FROM changestream.partitions
              WHERE group_id = $1 ORDER BY partition",
            &[&group_id],
        )
        .await?
        .iter()
        .map(|r| PartitionInfo {
            partition: r.get(0),
            slot_name: r.get(1),
            publication_name: r.get(2),
        })
        .collect();
    Ok(Some(GroupInfo {
        group_id: group_id.to_owned(),
        partitions,
        message_prefixes: row.get(0),
    }))
}

/// Stores the logical-message prefixes the group's consumer subscribes to (shown by
/// `status`).
///
/// # Errors
/// The statement failed.
pub(crate) async fn save_message_prefixes(
    client: &impl GenericClient,
    group_id: &str,
    prefixes: &[String],
) -> Result<()> {
    client
        .execute(
            "UPDATE changestream.groups SET message_prefixes = $2 WHERE group_id = $1",
            &[&group_id, &prefixes],
        )
        .await?;
    Ok(())
}

/// Whether publication `name` exists.
///
/// # Errors
/// The query failed.
pub(crate) async fn publication_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

/// The server's current WAL write position.
///
/// # Errors
/// The query failed.
pub(crate) async fn current_wal_lsn(client: &impl GenericClient) -> Result<Lsn> {
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    lsn.parse()
}

/// The server's current WAL insert position and clock.
///
/// # Errors
/// The query failed.
pub(crate) async fn wal_insert_lsn_and_time(
    client: &impl GenericClient,
) -> Result<(Lsn, std::time::SystemTime)> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, clock_timestamp()",
            &[],
        )
        .await?;
    Ok((row.get::<_, String>(0).parse()?, row.get(1)))
}

/// Creates a group with `partitions` partitions (slot + empty publication + cursor each; 1
/// when `None`), or returns the existing one. Safe against a concurrent creation of the same
/// group. `failover` creates failover slots (PostgreSQL 17+), which a standby set up for
/// slot synchronisation keeps in step, so the group survives a failover to it.
///
/// # Errors
/// Invalid group id or partition count, a changed partition count for an existing group,
/// no free replication slots (`max_replication_slots`), or missing privileges.
pub async fn create_or_load_group(
    client: &mut Client,
    group_id: &str,
    partitions: Option<i32>,
    failover: bool,
) -> Result<GroupInfo> {
    check_group_id(group_id)?;
    if let Some(partitions) = partitions.filter(|p| !(1..=MAX_PARTITIONS).contains(p)) {
        return Err(Error::config(format!(
            "partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"
        )));
    }
    catalog::migrate(client).await?;
    // Serialise creators of this group; session-level so it spans slot creation, which
    // cannot run inside a writing transaction.
    let key = fnv1a(group_id.as_bytes()) as i64;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await?;
    let result = create_locked(client, group_id, partitions, failover).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await?;
    result
}

async fn create_locked(
    client: &mut Client,
    group_id: &str,
    partitions: Option<i32>,
    failover: bool,
) -> Result<GroupInfo> {
    if let Some(existing) = load_group(&*client, group_id).await? {
        let have = existing.partitions.len();
        match partitions {
            Some(asked) if usize::try_from(asked).ok() != Some(have) => {
                return Err(Error::config(format!(
                    "consumer group {group_id:?} has {have} partition(s), fixed at creation; \
                     asked for {asked}: leave the count out (ConsumerBuilder::partitions, \
                     tail --partitions) to use the group as it is, or delete the group \
                     (delete_group, pg-changestream delete-group) and create it again to \
                     change the count"
                )));
            }
            _ => return Ok(existing),
        }
    }
    let partitions = partitions.unwrap_or(1);
    let role = check_replication_privilege(client, group_id).await?;
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    let names: Vec<String> = (0..partitions)
        .map(|p| derived_name(&database, group_id, p))
        .collect();
    // Leftovers of a creation that died half-way hold our derived names; nobody else in
    // this database can (a slot of another database is never touched).
    for name in &names {
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND NOT active AND database = current_database()",
                &[name],
            )
            .await?;
        client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}",
                quote::ident(name)
            ))
            .await?;
    }
    let mut slots = Vec::new();
    let result = async {
        // Publications before slots: before PostgreSQL 18, pgoutput fails on any change
        // decoded from a point where one of its publications did not exist yet.
        let options = publication_options(client).await?;
        for name in &names {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} WITH ({options})",
                    quote::ident(name)
                ))
                .await?;
        }
        for name in &names {
            let lsn = create_slot(client, name, failover).await.map_err(|e| {
                // Checked before; a role changed meanwhile, or a check the server adds.
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                    missing_replication(group_id, &role, Some(e))
                } else {
                    e
                }
            })?;
            slots.push(lsn);
        }
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO changestream.groups (group_id, partitions) VALUES ($1, $2)",
            &[&group_id, &partitions],
        )
        .await?;
        for ((p, name), lsn) in (0..partitions).zip(&names).zip(&slots) {
            tx.execute(
                "INSERT INTO changestream.partitions (group_id, partition, slot_name, publication_name)
                 VALUES ($1, $2, $3, $3)",
                &[&group_id, &p, name],
            )
            .await?;
            tx.execute(
                "INSERT INTO changestream.cursors (group_id, partition, commit_lsn)
                 VALUES ($1, $2, $3::text::pg_lsn)",
                &[&group_id, &p, &lsn.to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = result {
        for name in &names {
            let _ = client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                      WHERE slot_name = $1",
                    &[name],
                )
                .await;
            let _ = client
                .batch_execute(&format!(
                    "DROP PUBLICATION IF EXISTS {}",
                    quote::ident(name)
                ))
                .await;
        }
        return Err(e);
    }
    tracing::info!(group_id, partitions, "consumer group created");
    load_group(&*client, group_id).await?.ok_or_else(|| {
        Error::new(
            Kind::NotFound,
            format!("consumer group {group_id:?} vanished"),
        )
    })
}

/// The options every group publication is created with (migration 5 sets the same on
/// publications created before):
/// - `publish_via_partition_root = true`: a change of a partition is published as its
///   partitioned root, the table the group lists (pgoutput would otherwise name the
///   partition, which no group lists, and the change would be passed over), and a row
///   filter on the root applies to all its partitions;
/// - on PostgreSQL 18, `publish_generated_columns = stored`: stored generated columns are
///   delivered like any column (15–17 cannot publish them; backfill follows suit, see
///   `snapshot::plan`).
async fn publication_options(client: &Client) -> Result<String> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let mut options = String::from("publish_via_partition_root = true");
    if version >= 180_000 {
        options.push_str(", publish_generated_columns = stored");
    }
    Ok(options)
}

/// Sets the options group publications are created with (`publish_via_partition_root`,
/// and on PostgreSQL 18 `publish_generated_columns = stored`) on the publications of
/// `group` that lack them (groups created before; migration 5 does the same where its role
/// may).
///
/// # Errors
/// The role does not own the publications, or SQL failed.
pub async fn ensure_publication_options(client: &Client, group: &GroupInfo) -> Result<()> {
    let names: Vec<&str> = group
        .partitions
        .iter()
        .map(|p| p.publication_name.as_str())
        .collect();
    let stale: Vec<String> = client
        .query(
            "SELECT pubname::text FROM pg_publication
              WHERE pubname = ANY ($1::text[]) AND NOT pubviaroot",
            &[&names],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let options = publication_options(client).await?;
    for name in stale {
        client
            .batch_execute(&format!(
                "ALTER PUBLICATION {} SET ({options})",
                quote::ident(&name)
            ))
            .await?;
        tracing::info!(publication = %name, "publication now publishes via partition roots");
    }
    Ok(())
}

/// Creating and reading slots needs the REPLICATION attribute (or superuser); checked
/// before anything is created, so the error names the role and the remedy and nothing is
/// left behind.
async fn check_replication_privilege(client: &Client, group_id: &str) -> Result<String> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles
              WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (role, allowed): (String, bool) = (row.get(0), row.get(1));
    if allowed {
        return Ok(role);
    }
    Err(missing_replication(group_id, &role, None))
}

/// The error for a role without the REPLICATION attribute.
fn missing_replication(group_id: &str, role: &str, source: Option<Error>) -> Error {
    let message = format!(
        "consumer group {group_id:?}: role {} lacks the REPLICATION attribute needed for \
         replication slots; run ALTER ROLE {} REPLICATION as a superuser (see sql/role.sql)",
        quote::ident(role),
        quote::ident(role)
    );
    match source {
        Some(e) => Error::with_source(Kind::ServerSetup, message, e),
        None => Error::new(Kind::ServerSetup, message),
    }
}

async fn create_slot(client: &Client, name: &str, failover: bool) -> Result<Lsn> {
    let row = if failover {
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?
            .get(0);
        if version < 170000 {
            return Err(Error::new(
                Kind::ServerSetup,
                "failover slots need PostgreSQL 17 or newer; create the group without failover",
            ));
        }
        client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)",
                &[&name],
            )
            .await
    } else {
        client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await
    }
    .map_err(|e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::CONFIGURATION_LIMIT_EXCEEDED) {
            Error::with_source(
                Kind::ServerSetup,
                format!(
                    "no free replication slot for {name}; raise max_replication_slots (and \
                     restart) or drop unused slots"
                ),
                e,
            )
        } else {
            e.into()
        }
    })?;
    let lsn: String = row.get(0);
    lsn.parse()
}

/// Adds `table` to every partition's publication: as it is for a group with one partition,
/// else with each partition's row filter on the hash of the table's key (see the module
/// docs), and `user_filter` (an SQL condition) ANDed to it. With `replace`, a table already
/// published is dropped and added again with the new filter, in one transaction (pgoutput
/// reads publications as of each change, so changes committed after it see the new filter,
/// earlier ones the old). Returns the WAL position after which the table's changes are
/// published.
///
/// A row filter on a table published for UPDATE and DELETE may use only replica identity
/// columns (all of them under `REPLICA IDENTITY FULL`), else PostgreSQL refuses the
/// *application's* UPDATE and DELETE on the table. `EXPLAIN DELETE` in the same transaction
/// runs that check without touching a row or firing a trigger, so such a filter is refused
/// here, with the server's reason, instead.
///
/// Runs a transaction of its own: `client` must not be inside one.
///
/// # Errors
/// [`Error::is_config`] when a partitioned group cannot spread the table by key (no
/// primary key, a key of a user-defined or unhashable type), or the server refuses the
/// filter (naming the table and the server's reason); DDL failed.
pub async fn publish_table(
    client: &impl GenericClient,
    group: &GroupInfo,
    table: &TableName,
    user_filter: Option<&str>,
    replace: bool,
) -> Result<Lsn> {
    let count = i32::try_from(group.partitions.len()).unwrap_or(MAX_PARTITIONS);
    let hash = if count > 1 {
        Some(key_hash(client, table, &group.group_id, count).await?)
    } else {
        None
    };
    // Two members joining the same table at once (two builds of a new group) both see it
    // missing and both add it; the second's ADD then fails as a duplicate. Look again: the
    // table is there now, published by the other member with the same filter.
    let mut attempts = 0;
    'publish: loop {
        let mut statements = Vec::new();
        for p in &group.partitions {
            let present: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_publication_tables
                  WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
                    &[&p.publication_name, &table.schema(), &table.name()],
                )
                .await?
                .get(0);
            if present && !replace {
                continue;
            }
            let share = hash
                .as_ref()
                .map(|hash| format!("({})", row_filter(hash, count, p.partition)));
            let filter = match (share, user_filter) {
                (Some(share), Some(user)) => format!(" WHERE ({share} AND ({user}))"),
                (Some(share), None) => format!(" WHERE ({share})"),
                (None, Some(user)) => format!(" WHERE ({user})"),
                (None, None) => String::new(),
            };
            let publication = quote::ident(&p.publication_name);
            if present {
                statements.push(format!(
                    "ALTER PUBLICATION {publication} DROP TABLE {}",
                    table.quoted()
                ));
            }
            statements.push(format!(
                "ALTER PUBLICATION {publication} ADD TABLE {}{filter}",
                table.quoted()
            ));
        }
        if !statements.is_empty() {
            if user_filter.is_some() {
                statements.push(format!(
                    "EXPLAIN DELETE FROM {} WHERE false",
                    table.quoted()
                ));
            }
            // One transaction, all of it or nothing; each statement on its own through the
            // extended protocol, which runs exactly one, so a filter cannot smuggle in another.
            let applied = async {
                client.batch_execute("BEGIN").await?;
                for statement in &statements {
                    client.execute(statement.as_str(), &[]).await?;
                }
                client.batch_execute("COMMIT").await
            }
            .await;
            if applied.is_err() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            if let Err(e) = &applied {
                attempts += 1;
                if !replace && attempts < 3 && e.code() == Some(&SqlState::DUPLICATE_OBJECT) {
                    continue 'publish;
                }
            }
            applied.map_err(|e| {
                if let Some(user) = user_filter {
                    return refused_filter(table, user, e);
                }
                if hash.is_none() {
                    return Error::from(e);
                }
                Error::with_source(
                    Kind::Config,
                    format!(
                        "consumer group {:?}: PostgreSQL refused the row filter that spreads \
                         table {table} over {count} partitions; read the table with a \
                         1-partition group",
                        group.group_id
                    ),
                    e,
                )
            })?;
        }
        break;
    }
    let lsn: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get(0);
    lsn.parse()
}

/// Checks that PostgreSQL accepts `filter` as the row filter of `table`, by publishing the
/// table with it in a transaction that is rolled back: nothing is left behind, so a build
/// can check before it creates a group.
///
/// # Errors
/// [`Error::is_config`] naming the table and the server's reason; SQL failed.
pub async fn check_row_filter(
    client: &impl GenericClient,
    table: &TableName,
    filter: &str,
) -> Result<()> {
    let publication = format!("pcs_filter_check_{:016x}", fastrand::u64(..));
    let statements = [
        format!(
            "CREATE PUBLICATION {publication} FOR TABLE {} WHERE ({filter})",
            table.quoted()
        ),
        format!("EXPLAIN DELETE FROM {} WHERE false", table.quoted()),
    ];
    client.batch_execute("BEGIN").await?;
    let mut checked = Ok(());
    for statement in &statements {
        if let Err(e) = client.execute(statement.as_str(), &[]).await {
            checked = Err(refused_filter(table, filter, e));
            break;
        }
    }
    client.batch_execute("ROLLBACK").await?;
    checked
}

/// The error for a row filter PostgreSQL refused (its reason follows in the source).
fn refused_filter(table: &TableName, filter: &str, e: tokio_postgres::Error) -> Error {
    Error::with_source(
        Kind::Config,
        format!(
            "PostgreSQL refused the row filter ({filter}) of table {table}; a filter may use \
             the table's columns and built-in immutable functions and operators, and only key \
             columns unless the table has before-images (pg-changestream enable, REPLICA \
             IDENTITY FULL)"
        ),
        e,
    )
}

/// The row filter of partition `partition` of `partitions`, over `hash`, an SQL expression
/// of type bigint: the sign bit masked (never `abs()`, which overflows on the smallest
/// bigint), then the remainder. Every bigint maps to `0..partitions` without an error.
pub fn row_filter(hash: &str, partitions: i32, partition: i32) -> String {
    format!("(({hash}) & 9223372036854775807::bigint) % {partitions}::bigint = {partition}::bigint")
}

/// The first OID of objects created after `initdb` (`FirstNormalObjectId`): types below it
/// are built in.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// The hash expression of `table`'s key for a group with `partitions` partitions, after
/// checking that the table can be spread by key at all.
async fn key_hash(
    client: &impl GenericClient,
    table: &TableName,
    group_id: &str,
    partitions: i32,
) -> Result<String> {
    let spread = |why: String| {
        Error::config(format!(
            "consumer group {group_id:?} has {partitions} partitions, spread by a hash of \
             each table's key, but {why}"
        ))
    };
    client
        .query_opt(
            "SELECT c.relkind FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema(), &table.name()],
        )
        .await?
        .ok_or_else(|| table.not_found())?;
    // The replica identity key: a row filter on UPDATE and DELETE may use only its columns.
    let columns = key_columns(client, table).await?;
    if columns.is_empty() {
        return Err(spread(format!(
            "table {table} has no primary key: without a key a row has no fixed partition (any \
             update could move it), so no order per row would hold; add a primary key, or read \
             the table with a 1-partition group"
        )));
    }
    let mut names = Vec::new();
    let mut types = Vec::new();
    for KeyColumn {
        name,
        type_oid,
        type_name,
    } in &columns
    {
        if *type_oid >= FIRST_NORMAL_OBJECT_ID {
            return Err(spread(format!(
                "key column {name:?} of table {table} has the user-defined type {type_name}, \
                 and PostgreSQL row filters accept only built-in types; read the table with a \
                 1-partition group"
            )));
        }
        names.push(quote::ident(name));
        types.push(format!("NULL::{type_name}"));
    }
    // hash_record_extended finds each column type's hash function when it runs; find out
    // now, not when the first row arrives and the filter stops the slot.
    client
        .query_one(
            &format!(
                "SELECT hash_record_extended(ROW({}), 0::bigint)",
                types.join(", ")
            ),
            &[],
        )
        .await
        .map_err(|e| {
            let cause = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            spread(format!(
                "the key of table {table} cannot be hashed ({cause}); read the table with a \
                 1-partition group"
            ))
        })?;
    Ok(format!(
        "hash_record_extended(ROW({}), 0::bigint)",
        names.join(", ")
    ))
}

/// Removes `table` from every partition's publication.
///
/// # Errors
/// DDL failed.
pub async fn unpublish_table(
    client: &impl GenericClient,
    group: &GroupInfo,
    table: &TableName,
) -> Result<()> {
    for p in &group.partitions {
        client
            .batch_execute(&format!(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_publication_tables
                               WHERE pubname = {pub_lit} AND schemaname = {schema_lit} AND tablename = {table_lit})
                   THEN ALTER PUBLICATION {pub_ident} DROP TABLE {table_ident};
                   END IF;
                 END $$",
                pub_lit = quote::literal(&p.publication_name),
                schema_lit = quote::literal(table.schema()),
                table_lit = quote::literal(table.name()),
                pub_ident = quote::ident(&p.publication_name),
                table_ident = table.quoted(),
            ))
            .await?;
    }
    Ok(())
}

/// The tables of `group_id` that are not (or no longer) in `publication`: dropped, perhaps
/// created again (a new table is a new relation, outside the publication), or renamed.
/// Membership is by relation (`pg_publication_rel`), as the server decides what it sends.
///
/// # Errors
/// The query failed.
pub async fn tables_outside_publication(
    client: &impl GenericClient,
    group_id: &str,
    publication: &str,
) -> Result<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT t.schema_name, t.table_name FROM changestream.group_tables t
              WHERE t.group_id = $1
                AND NOT EXISTS (
                    SELECT 1 FROM pg_publication_rel pr
                      JOIN pg_publication p ON p.oid = pr.prpubid
                     WHERE p.pubname = $2
                       AND pr.prrelid = to_regclass(format('%I.%I', t.schema_name, t.table_name)))
              ORDER BY 1, 2",
            &[&group_id, &publication],
        )
        .await?;
    rows.iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

/// The tables in `publication` under a name the group does not list (a table renamed
/// while in the group keeps its place in the publication).
///
/// # Errors
/// The query failed.
pub async fn unlisted_published_tables(
    client: &impl GenericClient,
    group_id: &str,
    publication: &str,
) -> Result<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_publication_rel pr
               JOIN pg_publication p ON p.oid = pr.prpubid
               JOIN pg_class c ON c.oid = pr.prrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE p.pubname = $2
                AND NOT EXISTS (SELECT 1 FROM changestream.group_tables t
                                 WHERE t.group_id = $1 AND t.schema_name = n.nspname
                                   AND t.table_name = c.relname)
              ORDER BY 1, 2",
            &[&group_id, &publication],
        )
        .await?;
    rows.iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect()
}

/// The relation ids (OIDs) of `tables` as they are named now (missing tables are left
/// out), and the WAL position read just after. pgoutput identifies relations by OID, which
/// a rename keeps.
///
/// # Errors
/// The queries failed.
pub async fn relation_ids(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<(Vec<(u32, TableName)>, Lsn)> {
    let quoted: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = client
        .query(
            "SELECT to_regclass(q)::oid, i::int FROM unnest($1::text[]) WITH ORDINALITY AS u(q, i)
              WHERE to_regclass(q) IS NOT NULL",
            &[&quoted],
        )
        .await?;
    let ids = rows
        .iter()
        .filter_map(|r| {
            let oid: u32 = r.get(0);
            let index = usize::try_from(r.get::<_, i32>(1)).ok()?.checked_sub(1)?;
            Some((oid, tables.get(index)?.clone()))
        })
        .collect();
    let lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    Ok((ids, lsn.parse()?))
}

/// The server's view of a slot, or `None` when the slot does not exist.
///
/// # Errors
/// The query failed.
pub async fn slot_status(
    client: &impl GenericClient,
    slot_name: &str,
) -> Result<Option<SlotStatus>> {
    let server_lsn: String = client
        .query_one(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text",
            &[],
        )
        .await?
        .get(0);
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text, active_pid, wal_status,
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END
                      - restart_lsn)::bigint
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot_name],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let lsn = |i: usize| -> Result<Option<Lsn>> {
        row.get::<_, Option<String>>(i)
            .map(|s| s.parse())
            .transpose()
    };
    Ok(Some(SlotStatus {
        confirmed_flush_lsn: lsn(0)?,
        restart_lsn: lsn(1)?,
        active_pid: row.get(2),
        wal_status: row.get(3),
        retained_bytes: row.get(4),
        server_lsn: server_lsn.parse()?,
    }))
}

/// Deletes a group: its slots, publications and state. Without `force` it refuses while a
/// consumer streams from one of its slots; with `force` it terminates those walsenders
/// first (their consumers get an error saying the group was deleted).
///
/// # Errors
/// The group does not exist, a consumer is attached and `force` is false, or a slot stays
/// busy after its walsender was terminated.
pub async fn delete_group(client: &mut Client, group_id: &str, force: bool) -> Result<()> {
    catalog::migrate(client).await?;
    let group = load_group(&*client, group_id).await?.ok_or_else(|| {
        Error::new(
            Kind::NotFound,
            format!("consumer group {group_id:?} does not exist"),
        )
    })?;
    for p in &group.partitions {
        let Some(status) = slot_status(&*client, &p.slot_name).await? else {
            continue;
        };
        if let Some(pid) = status.active_pid {
            if !force {
                return Err(Error::config(format!(
                    "consumer group {group_id:?} has a consumer attached (slot {} is active \
                     for pid {pid}); close it first or delete with force",
                    p.slot_name
                )));
            }
            client
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await?;
        }
    }
    for p in &group.partitions {
        drop_slot_when_free(client, &p.slot_name, force).await?;
        client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}",
                quote::ident(&p.publication_name)
            ))
            .await?;
    }
    client
        .execute(
            "DELETE FROM changestream.groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    tracing::info!(group_id, "consumer group deleted");
    Ok(())
}

/// Drops a slot, waiting (up to ~10 s) for a terminated walsender to let go of it. With
/// `force`, a walsender that took the slot again meanwhile is terminated too: a consumer
/// polling at that moment reconnects within its backoff (found by the Python suite's
/// "group deleted while polling" test), and would otherwise hold the slot past the wait.
async fn drop_slot_when_free(client: &Client, slot_name: &str, force: bool) -> Result<()> {
    for _ in 0..100 {
        if force {
            if let Some(pid) = slot_status(client, slot_name)
                .await?
                .and_then(|s| s.active_pid)
            {
                client
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await?;
            }
        }
        match client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND active_pid IS NULL",
                &[&slot_name],
            )
            .await
        {
            Ok(_) => {
                if slot_status(client, slot_name).await?.is_none() {
                    return Ok(());
                }
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::new(
        Kind::Server,
        format!("replication slot {slot_name} stayed active after its walsender was terminated"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_valid_slot_names_and_distinct() {
        let ids = ["orders", "Orders", "x\"; DROP --", "表", &"long".repeat(15)];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let name = derived_name("db", id, 3);
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert!(name.ends_with("_p3"));
            assert!(seen.insert(name), "{id}");
        }
        assert_eq!(
            derived_name("db", "orders", 0),
            derived_name("db", "orders", 0)
        );
        // Slot names are server-wide: one group id in two databases is two names, and the
        // separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            derived_name("a", "orders", 0),
            derived_name("b", "orders", 0)
        );
        assert_ne!(derived_name("ab", "c", 0), derived_name("a", "bc", 0));
    }

    #[test]
    fn group_ids_are_checked() {
        assert!(check_group_id("").unwrap_err().is_config());
        assert!(check_group_id(&"g".repeat(64))
            .unwrap_err()
            .to_string()
            .contains("at most 63"));
        assert!(check_group_id("tab\there").is_err());
        check_group_id("quotes\"and;semicolons'").unwrap();
    }
}
