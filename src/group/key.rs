//! A table's key as the stream reports it: the replica identity index under `REPLICA
//! IDENTITY USING INDEX`, else the primary key. Backfill walks it, partitions hash it, and
//! a projection must keep it; this is the one catalog query all three read it from.

use tokio_postgres::GenericClient;

use super::table::TableName;
use crate::error::Result;

/// One column of a table's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyColumn {
    /// The column name.
    pub(crate) name: String,
    /// Its type's OID.
    pub(crate) type_oid: u32,
    /// Its type as `format_type` prints it (with modifiers: `numeric(10,2)`).
    pub(crate) type_name: String,
}

/// The key columns of `table` in index order; empty when it has no key (no primary key and
/// no identity index) or does not exist.
///
/// # Errors
/// The query failed.
pub(crate) async fn key_columns(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Vec<KeyColumn>> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_index x ON x.indrelid = c.oid
                AND CASE WHEN c.relreplident = 'i' THEN x.indisreplident ELSE x.indisprimary END
              CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE n.nspname = $1 AND c.relname = $2
              ORDER BY k.ord",
            &[&table.schema(), &table.name()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| KeyColumn {
            name: r.get(0),
            type_oid: r.get(1),
            type_name: r.get(2),
        })
        .collect())
}
