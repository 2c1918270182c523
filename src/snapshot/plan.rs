//! Chunk planning: a table's columns and key from the catalog, and the chunk select.
//!
//! Rows are read as text in the form pgoutput sends them (each type's output function,
//! under the same pinned session settings as the replication connection), in the columns
//! pgoutput publishes — attribute order, dropped columns left out, generated columns left
//! out before PostgreSQL 18 and stored ones kept on 18 (our publications set
//! `publish_generated_columns = stored` there; virtual ones are never published) — so a
//! `read` record decodes exactly like an insert of the same row. Chunks walk the key in
//! order: `WHERE (k1, k2) > (last) ORDER BY k1, k2 LIMIT n`, plus, in a group with several
//! partitions, the partition's row filter, so each partition reads exactly its share.
//!
//! A table's row filter and projection (`changestream.group_tables`) apply as in the
//! stream: the filter is ANDed to the select, and only the projected columns are selected,
//! so a left-out column is never even read.

use std::sync::Arc;

use tokio_postgres::GenericClient;

use crate::decode::relation::{Projection, Relation};
use crate::decode::types::TypeCatalog;
use crate::error::{Error, Kind, Result};
use crate::group::key::key_columns;
use crate::group::partition::row_filter;
use crate::group::table::TableName;
use crate::group::user_types::register_user_types;
use crate::protocol::pgoutput::ReplicaIdentity;
use crate::quote;

/// A key column: name and SQL type (as `format_type` prints it).
#[derive(Debug, Clone)]
struct KeyColumn {
    name: String,
    type_name: String,
}

/// How to read one table in chunks.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    pub(crate) table: TableName,
    /// The columns as pgoutput publishes them; read records carry it.
    pub(crate) relation: Arc<Relation>,
    /// Key column names, in key order.
    pub(crate) key_names: Vec<String>,
    /// Index of each key column among the relation's columns.
    pub(crate) key_positions: Vec<usize>,
    first_sql: String,
    next_sql: String,
    /// `pg_class.reltuples` (or a count when the table was never analysed), divided over
    /// the partitions.
    pub(crate) estimated_rows: u64,
}

/// The key a backfill walks: the primary key, or the replica identity index under
/// `REPLICA IDENTITY USING INDEX` (the columns the stream reports as the key).
///
/// # Errors
/// [`Error::is_config`](crate::Error::is_config) for a table without one (a table with
/// `REPLICA IDENTITY FULL` and no primary key); SQL failed.
pub(crate) async fn backfill_key(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Vec<(String, String)>> {
    let key = key_columns(client, table).await?;
    if key.is_empty() {
        return Err(Error::config(format!(
            "table {table} has no primary key, so its existing rows cannot be backfilled: \
             backfill tells a chunk's rows from the changes streamed meanwhile by key, and \
             without one (ctid changes on UPDATE and VACUUM FULL, identical rows cannot be \
             told apart) rows could be missed or repeated; add a primary key, or start the \
             table at latest (or at a time or LSN)"
        )));
    }
    Ok(key.into_iter().map(|c| (c.name, c.type_name)).collect())
}

impl TablePlan {
    /// Plans `table` of group `group_id` for partition `partition` of `partitions`,
    /// reading `chunk_size` rows per chunk.
    ///
    /// # Errors
    /// The table is gone or has no key; SQL failed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn load(
        client: &impl GenericClient,
        group_id: &str,
        table: &TableName,
        partitions: i32,
        partition: i32,
        chunk_size: usize,
        types: &TypeCatalog,
    ) -> Result<TablePlan> {
        let row = client
            .query_opt(
                "SELECT c.oid, c.relreplident, c.reltuples::float8 FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.schema(), &table.name()],
            )
            .await?
            .ok_or_else(|| {
                Error::new(
                    Kind::NotFound,
                    format!("table {table} to backfill does not exist any more"),
                )
            })?;
        let oid: u32 = row.get(0);
        let identity: i8 = row.get(1);
        let reltuples: f64 = row.get(2);
        let columns = client
            .query(
                "SELECT attname::text, atttypid, atttypmod FROM pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
                    AND (attgenerated = ''
                         OR (attgenerated = 's'
                             AND current_setting('server_version_num')::int >= 180000))
                  ORDER BY attnum",
                &[&oid],
            )
            .await?;
        // The table's row filter and projection, as the stream applies them.
        let (row_filter_sql, projection) = match client
            .query_opt(
                "SELECT row_filter, only_columns, except_columns FROM changestream.group_tables
                  WHERE group_id = $1 AND schema_name = $2 AND table_name = $3",
                &[&group_id, &table.schema(), &table.name()],
            )
            .await?
        {
            Some(row) => {
                let only: Option<Vec<String>> = row.get(1);
                let except: Option<Vec<String>> = row.get(2);
                let projection = match (only, except) {
                    (Some(only), _) => Projection::Only(only),
                    (None, Some(except)) => Projection::Except(except),
                    (None, None) => Projection::All,
                };
                (row.get::<_, Option<String>>(0), projection)
            }
            None => (None, Projection::All),
        };
        let columns: Vec<_> = columns
            .into_iter()
            .filter(|c| projection.keeps(&c.get::<_, String>(0)))
            .collect();
        let key: Vec<KeyColumn> = backfill_key(client, table)
            .await?
            .into_iter()
            .map(|(name, type_name)| KeyColumn { name, type_name })
            .collect();
        let names: Vec<String> = columns.iter().map(|c| c.get::<_, String>(0)).collect();
        let key_positions = key
            .iter()
            .map(|k| {
                names.iter().position(|n| *n == k.name).ok_or_else(|| {
                    Error::config(format!(
                        "key column {:?} of table {table} is not published (a generated \
                         column?), so the table cannot be backfilled; start it at latest",
                        k.name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Columns of the database's own types decode as the stream decodes them.
        let mut types = types.clone();
        register_user_types(client, &mut types).await?;
        let relation = Relation::from_catalog(
            oid,
            table.schema().to_owned(),
            table.name().to_owned(),
            ReplicaIdentity::from_byte(identity as u8).unwrap_or(ReplicaIdentity::Default),
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.get(0), c.get(1), c.get(2), key_positions.contains(&i)))
                .collect(),
            &types,
        );
        // Columns are qualified with the table alias `r` everywhere: ORDER BY a bare name
        // would pick the output column of that name — the `::text` value, in text order.
        let select = names
            .iter()
            .map(|n| format!("r.{}::text", quote::ident(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let order = key
            .iter()
            .map(|k| format!("r.{}", quote::ident(&k.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let bound = key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("${}::text::{}", i + 1, k.type_name))
            .collect::<Vec<_>>()
            .join(", ");
        let share = (partitions > 1).then(|| {
            row_filter(
                &format!("hash_record_extended(ROW({order}), 0::bigint)"),
                partitions,
                partition,
            )
        });
        // The table's own filter, ANDed like the partition's share.
        let share = match (share, row_filter_sql) {
            (Some(share), Some(user)) => Some(format!("({share}) AND ({user})")),
            (None, Some(user)) => Some(format!("({user})")),
            (share, None) => share,
        };
        let from = format!("SELECT {select} FROM {} AS r", table.quoted());
        let tail = format!("ORDER BY {order} LIMIT {chunk_size}");
        let (first_sql, next_sql) = match &share {
            Some(share) => (
                format!("{from} WHERE {share} {tail}"),
                format!("{from} WHERE ({order}) > ({bound}) AND {share} {tail}"),
            ),
            None => (
                format!("{from} {tail}"),
                format!("{from} WHERE ({order}) > ({bound}) {tail}"),
            ),
        };
        let estimated_rows = if reltuples >= 0.0 {
            reltuples as u64
        } else {
            // Never analysed (PostgreSQL 14+ says -1): count once.
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
                .await?
                .get(0);
            u64::try_from(n).unwrap_or(0)
        };
        let estimated_rows = estimated_rows / u64::try_from(partitions.max(1)).unwrap_or(1);
        Ok(TablePlan {
            table: table.clone(),
            relation: Arc::new(relation),
            key_names: key.into_iter().map(|k| k.name).collect(),
            key_positions,
            first_sql,
            next_sql,
            estimated_rows,
        })
    }

    /// The chunk select after `last_key` (from the start when `None`); its parameters are
    /// the last key's values as text.
    pub(crate) fn select(&self, last_key: Option<&[String]>) -> &str {
        match last_key {
            Some(_) => &self.next_sql,
            None => &self.first_sql,
        }
    }
}
