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

use tokio_postgres::{Client, GenericClient};

use super::catalog;
use super::table::{quote_ident, TableName};
use crate::decode::relation::PrimaryKeys;
use crate::error::{Error, Kind, Result};

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
                    EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema(), &table.name()],
        )
        .await?
        .ok_or_else(|| {
            Error::new(
                Kind::NotFound,
                format!("table {table} does not exist; check the schema and the name's case"),
            )
        })?;
    Ok(TableInfo {
        relkind: row.get(0),
        identity: row.get(1),
        identity_index: row.get(2),
        has_primary_key: row.get(3),
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
                    array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE i.indisprimary AND c.relreplident = 'f'
              GROUP BY 1, 2",
            &[],
        )
        .await?;
    let mut keys = PrimaryKeys::new();
    for row in rows {
        keys.insert(row.get(0), row.get(1), row.get(2));
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
            Identity::Index(index) => format!("USING INDEX {}", quote_ident(index)),
        }
    }
}
