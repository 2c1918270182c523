//! The database's own types, read from `pg_type` so their columns decode by what they are.
//!
//! pgoutput's Type messages name a domain's base type (enough for a domain over a built-in
//! type, see `decode::types`), but say nothing useful about an *array* of a domain (its
//! own name in a user schema) or a domain over another user type. The consumer therefore
//! registers, at each stream start and for each backfill plan, the domains and enums of the
//! database, the composite types that are not a table's row type, and the arrays of all of
//! those — not the row types of tables (one per table, and never a column type in
//! practice).

use tokio_postgres::GenericClient;

use crate::decode::types::TypeCatalog;
use crate::error::Result;

/// Registers the database's domains, enums and free-standing composite types, and their
/// arrays, in `catalog`. Types are registered in OID order (a domain's base type was
/// created before it), arrays after every element type.
///
/// # Errors
/// The query failed.
pub async fn register_user_types(
    client: &impl GenericClient,
    catalog: &mut TypeCatalog,
) -> Result<()> {
    let rows = client
        .query(
            "SELECT t.oid, t.typtype, t.typbasetype, t.typarray, t.typdelim
               FROM pg_type t
               LEFT JOIN pg_class c ON c.oid = t.typrelid
              WHERE t.oid >= 16384
                AND (t.typtype IN ('d', 'e') OR (t.typtype = 'c' AND c.relkind = 'c'))
              ORDER BY t.oid",
            &[],
        )
        .await?;
    let mut arrays = Vec::new();
    for row in &rows {
        let oid: u32 = row.get(0);
        match row.get::<_, i8>(1) as u8 {
            b'd' => catalog.add_domain(oid, row.get(2)),
            b'e' => catalog.add_enum(oid),
            _ => {}
        }
        let array: u32 = row.get(3);
        if array != 0 {
            arrays.push((array, oid, row.get::<_, i8>(4) as u8));
        }
    }
    for (array, element, delimiter) in arrays {
        catalog.add_array(array, element, delimiter);
    }
    Ok(())
}
