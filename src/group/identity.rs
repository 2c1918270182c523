//! Enabling and disabling change streaming per table.
//!
//! Before-images are PostgreSQL's replica identity: `REPLICA IDENTITY FULL` logs the whole
//! old row for every UPDATE and DELETE. Turning them off (or disabling the table) restores
//! the identity the table had before we first touched it, remembered in
//! `changestream.tables`.
//!
//! A published table whose identity is DEFAULT without a primary key (or NOTHING) makes the
//! user's own UPDATE and DELETE statements fail ("cannot update table because it does not
//! have a replica identity and publishes updates"), so enabling such a table without
//! before-images is refused with the two ways out.
//!
//! ## Partitioned tables
//!
//! A change to a partitioned table is written to WAL by the partition (the leaf) that holds
//! the row, under *the leaf's* replica identity; the root's own setting only decides how
//! pgoutput labels the old tuple (publications publish via the root, see
//! `group::partition`). So enabling a partitioned table sets the identity of the root and
//! of every partition below it, at any depth, and remembers each partition's previous
//! identity in `changestream.table_leaves` to restore on disable. A partition created or
//! attached later keeps its own identity until `enable` runs again: its changes are still
//! delivered (as the root), but with before-images on its updates and deletes carry only
//! the key — [`partitions_lacking_before_images`] finds such partitions so the consumer and
//! `status` can name them.
//!
//! Legacy inheritance (`INHERITS`) is different: each child is a table of its own whose
//! changes PostgreSQL publishes under the child's name, never the parent's, so a parent
//! with inheritance children is refused and the message names the children to enable.

use tokio_postgres::{Client, GenericClient};

use super::catalog;
use super::key::key_columns;
use super::table::TableName;
use crate::decode::relation::PrimaryKeys;
use crate::error::{Error, Kind, Result};
use crate::quote;

/// Checks that the server can do logical decoding.
///
/// # Errors
/// `wal_level` is not `logical` (the error says how to change it), or the query failed.
pub async fn check_wal_level(client: &impl GenericClient) -> Result<()> {
    let level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if level != "logical" {
        return Err(Error::new(
            Kind::ServerSetup,
            format!(
                "wal_level is {level:?}; logical replication needs wal_level=logical: \
                 ALTER SYSTEM SET wal_level = logical, then restart the server"
            ),
        ));
    }
    Ok(())
}

/// What the catalog says about a table's identity.
struct TableInfo {
    relkind: i8,
    /// `p` permanent, `u` unlogged, `t` temporary.
    persistence: i8,
    identity: i8,
    identity_index: Option<String>,
    has_primary_key: bool,
}

async fn table_info(client: &impl GenericClient, table: &TableName) -> Result<TableInfo> {
    let row = client
        .query_opt(
            "SELECT c.relkind, c.relreplident,
                    (SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = c.oid AND x.indisreplident),
                    EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary),
                    c.relpersistence
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema(), &table.name()],
        )
        .await?
        .ok_or_else(|| table.not_found())?;
    Ok(TableInfo {
        relkind: row.get(0),
        identity: row.get(1),
        identity_index: row.get(2),
        has_primary_key: row.get(3),
        persistence: row.get(4),
    })
}

/// Enables change streaming for `table`, with before-images (REPLICA IDENTITY FULL) or
/// without (the table's original identity). Calling it again switches before-images.
///
/// # Errors
/// - `wal_level` is not `logical`;
/// - the table does not exist or is not a table;
/// - without before-images, the table has no usable key (no primary key and identity
///   DEFAULT, or identity NOTHING), so its UPDATE and DELETE would fail once published;
/// - the role may not alter the table.
pub async fn enable_change_streaming(
    client: &mut Client,
    table: &TableName,
    before_images: bool,
) -> Result<()> {
    check_wal_level(&*client).await?;
    catalog::migrate(client).await?;
    let tx = client.transaction().await?;
    let info = table_info(&tx, table).await?;
    if !matches!(info.relkind as u8, b'r' | b'p') {
        return Err(Error::config(format!(
            "{table} is not a table (relkind {:?}); only ordinary and partitioned tables can \
             stream changes",
            char::from(info.relkind as u8)
        )));
    }
    if info.persistence as u8 != b'p' {
        return Err(Error::config(format!(
            "{table} is an unlogged or temporary table: its changes are not written to the \
             write-ahead log, so logical replication cannot see them; make it a logged table \
             (ALTER TABLE {} SET LOGGED) to stream it",
            table.quoted()
        )));
    }
    let remembered = tx
        .query_opt(
            "SELECT original_identity, original_index FROM changestream.tables
              WHERE schema_name = $1 AND table_name = $2 FOR UPDATE",
            &[&table.schema(), &table.name()],
        )
        .await?;
    let (original, original_index): (i8, Option<String>) = match &remembered {
        Some(row) => (row.get(0), row.get(1)),
        None => (info.identity, info.identity_index.clone()),
    };
    let target = if before_images {
        Identity::Full
    } else {
        Identity::from_catalog(original, original_index.as_deref())
    };
    refuse_inheritance_parent(&tx, table).await?;
    match target {
        Identity::Default if !info.has_primary_key => {
            return Err(Error::config(format!(
                "table {table} has no primary key; enable before-images (REPLICA IDENTITY \
                 FULL) or add a primary key"
            )))
        }
        Identity::Nothing => {
            return Err(Error::config(format!(
                "table {table} has REPLICA IDENTITY NOTHING, so its updates and deletes would \
                 fail once published; enable before-images or set a replica identity"
            )))
        }
        _ => {}
    }
    tx.batch_execute(&format!(
        "ALTER TABLE {} REPLICA IDENTITY {}",
        table.quoted(),
        target.sql()
    ))
    .await?;
    // A group's row filter on columns outside the new identity would make PostgreSQL refuse
    // the application's UPDATEs and DELETEs; EXPLAIN runs that check and touches nothing.
    tx.execute(
        &format!("EXPLAIN DELETE FROM {} WHERE false", table.quoted()),
        &[],
    )
    .await
    .map_err(|e| {
        Error::with_source(
            Kind::Config,
            format!(
                "a consumer group's row filter on table {table} uses columns outside its key, \
                 which PostgreSQL allows only with before-images (REPLICA IDENTITY FULL): \
                 without them the table's UPDATEs and DELETEs would fail; change the group's \
                 filter to key columns first (tail --where, TableSpec::filter)"
            ),
            e,
        )
    })?;
    tx.execute(
        "INSERT INTO changestream.tables
             (schema_name, table_name, before_images, original_identity, original_index)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (schema_name, table_name) DO UPDATE SET before_images = EXCLUDED.before_images",
        &[&table.schema(), &table.name(), &before_images, &original, &original_index],
    )
    .await?;
    if info.relkind as u8 == b'p' {
        enable_partitions(&tx, table, before_images).await?;
    }
    tx.commit().await?;
    tracing::info!(%table, before_images, "change streaming enabled");
    Ok(())
}

/// Disables change streaming for `table` and restores its original replica identity.
///
/// # Errors
/// The table is not enabled, a consumer group still reads it (remove it from those groups
/// first), or the role may not alter the table.
pub async fn disable_change_streaming(client: &mut Client, table: &TableName) -> Result<()> {
    catalog::migrate(client).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT original_identity, original_index FROM changestream.tables
              WHERE schema_name = $1 AND table_name = $2 FOR UPDATE",
            &[&table.schema(), &table.name()],
        )
        .await?
        .ok_or_else(|| not_enabled(table))?;
    let groups: Vec<String> = tx
        .query(
            "SELECT group_id FROM changestream.group_tables
              WHERE schema_name = $1 AND table_name = $2 ORDER BY group_id",
            &[&table.schema(), &table.name()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !groups.is_empty() {
        return Err(Error::config(format!(
            "table {table} is still read by consumer group(s) {groups:?}; remove it from them \
             (or delete the groups) before disabling"
        )));
    }
    let original = Identity::from_catalog(row.get(0), row.get::<_, Option<String>>(1).as_deref());
    restore_partitions(&tx, table).await?;
    // The table may have been dropped since; then there is nothing to restore.
    if table_info(&tx, table).await.is_ok() {
        tx.batch_execute(&format!(
            "ALTER TABLE {} REPLICA IDENTITY {}",
            table.quoted(),
            original.sql()
        ))
        .await?;
    }
    tx.execute(
        "DELETE FROM changestream.tables WHERE schema_name = $1 AND table_name = $2",
        &[&table.schema(), &table.name()],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%table, "change streaming disabled");
    Ok(())
}

/// A partition below a partitioned table, as the catalog describes it now.
struct Partition {
    name: TableName,
    info: TableInfo,
}

/// Every partition below `table` (at any depth, intermediate partitioned tables included;
/// foreign-table partitions left out: their rows are not in this server's WAL).
async fn partitions_below(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Vec<Partition>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind, c.relreplident,
                    (SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = c.oid AND x.indisreplident),
                    EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary)
               FROM pg_partition_tree($1::text::regclass) t
               JOIN pg_class c ON c.oid = t.relid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE t.level > 0 AND c.relkind IN ('r', 'p')
              ORDER BY t.level, 1, 2",
            &[&table.quoted()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Partition {
                name: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))?,
                info: TableInfo {
                    relkind: r.get(2),
                    persistence: b'p' as i8,
                    identity: r.get(3),
                    identity_index: r.get(4),
                    has_primary_key: r.get(5),
                },
            })
        })
        .collect()
}

/// Sets the identity of every partition below the partitioned `table`: FULL with
/// before-images, else each partition's own original identity (its key or index).
async fn enable_partitions(
    tx: &impl GenericClient,
    table: &TableName,
    before_images: bool,
) -> Result<()> {
    for partition in partitions_below(tx, table).await? {
        let leaf = &partition.name;
        let remembered = tx
            .query_opt(
                "SELECT original_identity, original_index FROM changestream.table_leaves
                  WHERE schema_name = $1 AND table_name = $2 AND leaf_schema = $3 AND leaf_name = $4",
                &[&table.schema(), &table.name(), &leaf.schema(), &leaf.name()],
            )
            .await?;
        let (original, original_index): (i8, Option<String>) = match &remembered {
            Some(row) => (row.get(0), row.get(1)),
            None => (
                partition.info.identity,
                partition.info.identity_index.clone(),
            ),
        };
        let target = if before_images {
            Identity::Full
        } else {
            Identity::from_catalog(original, original_index.as_deref())
        };
        // An intermediate partitioned table holds no rows: its identity is never logged.
        if partition.info.relkind as u8 == b'r' {
            match target {
                Identity::Default if !partition.info.has_primary_key => {
                    return Err(Error::config(format!(
                        "partition {leaf} of table {table} has no primary key; enable \
                         before-images (REPLICA IDENTITY FULL) or add a primary key"
                    )))
                }
                Identity::Nothing => {
                    return Err(Error::config(format!(
                        "partition {leaf} of table {table} has REPLICA IDENTITY NOTHING, so \
                         its updates and deletes would fail once published; enable \
                         before-images or set a replica identity on it"
                    )))
                }
                _ => {}
            }
        }
        tx.batch_execute(&format!(
            "ALTER TABLE {} REPLICA IDENTITY {}",
            leaf.quoted(),
            target.sql()
        ))
        .await?;
        tx.execute(
            "INSERT INTO changestream.table_leaves
                 (schema_name, table_name, leaf_schema, leaf_name, original_identity, original_index)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
            &[
                &table.schema(),
                &table.name(),
                &leaf.schema(),
                &leaf.name(),
                &original,
                &original_index,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Restores the remembered identity of each partition of `table` that still exists, except
/// partitions enabled on their own (they keep what that enable set).
async fn restore_partitions(tx: &impl GenericClient, table: &TableName) -> Result<()> {
    let rows = tx
        .query(
            "SELECT l.leaf_schema, l.leaf_name, l.original_identity, l.original_index
               FROM changestream.table_leaves l
              WHERE l.schema_name = $1 AND l.table_name = $2
                AND to_regclass(format('%I.%I', l.leaf_schema, l.leaf_name)) IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM changestream.tables t
                                 WHERE t.schema_name = l.leaf_schema AND t.table_name = l.leaf_name)",
            &[&table.schema(), &table.name()],
        )
        .await?;
    for row in rows {
        let leaf = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1))?;
        let original =
            Identity::from_catalog(row.get(2), row.get::<_, Option<String>>(3).as_deref());
        tx.batch_execute(&format!(
            "ALTER TABLE {} REPLICA IDENTITY {}",
            leaf.quoted(),
            original.sql()
        ))
        .await?;
    }
    Ok(())
}

/// Refuses a table with legacy inheritance children (`CREATE TABLE … INHERITS`): PostgreSQL
/// publishes each child's changes under the child's own name, so they would never be
/// delivered as `table`.
async fn refuse_inheritance_parent(client: &impl GenericClient, table: &TableName) -> Result<()> {
    let children: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
               FROM pg_inherits i
               JOIN pg_class p ON p.oid = i.inhparent
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE i.inhparent = $1::text::regclass AND p.relkind = 'r'
              ORDER BY 1",
            &[&table.quoted()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    Err(Error::config(format!(
        "table {table} has inheritance children (INHERITS): {}; PostgreSQL publishes a \
         child's changes under the child's own name, never as {table}, so they would not be \
         delivered as {table}; enable the children themselves (pg-changestream enable {}) and \
         read them alongside {table}'s own rows via ONLY, or move to declarative partitioning \
         (PARTITION BY), whose changes are delivered as the root",
        children.join(", "),
        children.join(" ")
    )))
}

/// Partitions below enabled partitioned tables among `tables` whose updates and deletes
/// carry no full before-image although the table was enabled with before-images: created
/// or attached after `enable`, which sets the identity of the partitions that existed then.
/// Returns `(table, partition)` pairs; re-running `enable` on the table fixes them.
///
/// # Errors
/// The query failed.
pub async fn partitions_lacking_before_images(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<Vec<(TableName, TableName)>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('changestream.tables') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists || tables.is_empty() {
        return Ok(Vec::new());
    }
    let schemas: Vec<&str> = tables.iter().map(TableName::schema).collect();
    let names: Vec<&str> = tables.iter().map(TableName::name).collect();
    let rows = client
        .query(
            "SELECT t.schema_name, t.table_name, n.nspname::text, c.relname::text
               FROM changestream.tables t
               JOIN unnest($1::text[], $2::text[]) AS u(s, r)
                 ON u.s = t.schema_name AND u.r = t.table_name
              CROSS JOIN LATERAL
                    pg_partition_tree(to_regclass(format('%I.%I', t.schema_name, t.table_name))) p
               JOIN pg_class c ON c.oid = p.relid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE t.before_images AND p.level > 0 AND c.relkind = 'r' AND c.relreplident <> 'f'
              ORDER BY 1, 2, 3, 4",
            &[&schemas, &names],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))?,
                TableName::new(r.get::<_, String>(2), r.get::<_, String>(3))?,
            ))
        })
        .collect()
}

/// The warning for a partition that lacks before-images: what it means and the fix.
pub fn lacking_before_images_warning(table: &TableName, partition: &TableName) -> String {
    format!(
        "partition {partition} of table {table} was created or attached after {table} was \
         enabled and lacks before-images: its updates and deletes arrive with before_image \
         \"key\" only; run pg-changestream enable {table} (enable_change_streaming) again to \
         cover it"
    )
}

/// Whether `table` is enabled, and with before-images.
///
/// # Errors
/// The query failed.
pub async fn enabled_with_before_images(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<bool>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('changestream.tables') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt(
            "SELECT before_images FROM changestream.tables WHERE schema_name = $1 AND table_name = $2",
            &[&table.schema(), &table.name()],
        )
        .await?
        .map(|r| r.get(0)))
}

/// The primary keys of the tables with `REPLICA IDENTITY FULL`, for the decoder to report
/// as their records' key (the server flags every column of such a table as key).
///
/// # Errors
/// The query failed.
pub async fn full_identity_primary_keys(client: &impl GenericClient) -> Result<PrimaryKeys> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    array_agg(a.attname::text ORDER BY k.ord), c.relkind
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE i.indisprimary AND c.relreplident = 'f'
              GROUP BY 1, 2, c.relkind",
            &[],
        )
        .await?;
    let mut keys = PrimaryKeys::new();
    for row in rows {
        keys.insert(row.get(0), row.get(1), row.get(2));
        if row.get::<_, i8>(3) as u8 == b'p' {
            keys.mark_partitioned(row.get(0), row.get(1));
        }
    }
    Ok(keys)
}

pub(crate) fn not_enabled(table: &TableName) -> Error {
    Error::config(format!(
        "table {table} is not enabled for change streaming; call enable_change_streaming \
         (CLI: pg-changestream enable {table}) first"
    ))
}

/// A replica identity setting.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Default,
    Full,
    Nothing,
    Index(String),
}

impl Identity {
    fn from_catalog(relreplident: i8, index: Option<&str>) -> Identity {
        match (relreplident as u8, index) {
            (b'f', _) => Identity::Full,
            (b'n', _) => Identity::Nothing,
            (b'i', Some(index)) => Identity::Index(index.to_owned()),
            _ => Identity::Default,
        }
    }

    fn sql(&self) -> String {
        match self {
            Identity::Default => "DEFAULT".into(),
            Identity::Full => "FULL".into(),
            Identity::Nothing => "NOTHING".into(),
            Identity::Index(index) => format!("USING INDEX {}", quote::ident(index)),
        }
    }
}

/// The columns of `table` as pgoutput publishes them, each with whether it belongs to the
/// key records report (the primary key, or the replica identity index), in attribute order.
///
/// # Errors
/// The query failed.
pub(crate) async fn columns_with_key(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Vec<(String, bool)>> {
    let key = key_columns(client, table).await?;
    let rows = client
        .query(
            "SELECT a.attname::text
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0
                AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&table.schema(), &table.name()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let in_key = key.iter().any(|k| k.name == name);
            (name, in_key)
        })
        .collect())
}

/// Checks that `table` exists and is enabled for change streaming.
///
/// # Errors
/// [`Error::is_not_found`](crate::Error::is_not_found) for a missing table,
/// [`Error::is_config`](crate::Error::is_config) for one not enabled.
pub(crate) async fn check_enabled(client: &impl GenericClient, table: &TableName) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await?
        .get(0);
    if !exists {
        return Err(table.not_found());
    }
    if enabled_with_before_images(client, table).await?.is_none() {
        return Err(not_enabled(table));
    }
    Ok(())
}
