//! The columns of each relation as of a partition's committed cursor
//! (`changestream.relation_shapes`), so that a new consumer can tell a schema change from a
//! Relation message it merely sees first (see `decode::relation` and the reader).
//!
//! Written in the transaction of the cursor write, owner-checked like it; read when a
//! reader starts a stream past what it has seen itself.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use crate::decode::relation::{Baseline, Relation};
use crate::decode::types::TypeCatalog;
use crate::error::Result;

/// Stores `relations` (the columns in force before the committed transaction) for
/// `partition` of `group_id`, replacing what was stored for the same relation ids.
///
/// # Errors
/// The statement failed.
pub(crate) async fn store_shapes(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    relations: &[Arc<Relation>],
) -> Result<()> {
    for relation in relations {
        let columns: Vec<Value> = relation
            .columns()
            .iter()
            .map(|c| {
                json!([
                    c.name(),
                    c.type_oid(),
                    c.type_modifier(),
                    c.is_key(),
                    c.type_name()
                ])
            })
            .collect();
        client
            .execute(
                "INSERT INTO changestream.relation_shapes
                     (group_id, partition, relation_id, schema_name, table_name, columns)
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)
                 ON CONFLICT (group_id, partition, relation_id) DO UPDATE
                    SET schema_name = excluded.schema_name, table_name = excluded.table_name,
                        columns = excluded.columns",
                &[
                    &group_id,
                    &partition,
                    &relation.id(),
                    &relation.schema(),
                    &relation.name(),
                    &Value::Array(columns).to_string(),
                ],
            )
            .await?;
    }
    Ok(())
}

/// The relations stored for `partition` of `group_id`. Rows that do not parse are left
/// out (their relation then starts without a baseline).
///
/// # Errors
/// The query failed.
pub(crate) async fn load_shapes(
    client: &impl GenericClient,
    group_id: &str,
    partition: i32,
    types: &TypeCatalog,
) -> Result<Baseline> {
    let rows = client
        .query(
            "SELECT relation_id, schema_name, table_name, columns::text
               FROM changestream.relation_shapes WHERE group_id = $1 AND partition = $2",
            &[&group_id, &partition],
        )
        .await?;
    let mut baseline = Baseline::new();
    for row in rows {
        let id: u32 = row.get(0);
        let Ok(Value::Array(columns)) = serde_json::from_str::<Value>(row.get(3)) else {
            continue;
        };
        let columns: Option<Vec<_>> = columns
            .iter()
            .map(|c| {
                Some((
                    c.get(0)?.as_str()?.to_owned(),
                    u32::try_from(c.get(1)?.as_u64()?).ok()?,
                    i32::try_from(c.get(2)?.as_i64()?).ok()?,
                    c.get(3)?.as_bool()?,
                    c.get(4)?.as_str()?.to_owned(),
                ))
            })
            .collect();
        let Some(columns) = columns else { continue };
        baseline.insert(
            id,
            Arc::new(Relation::stored(id, row.get(1), row.get(2), columns, types)),
        );
    }
    Ok(baseline)
}
