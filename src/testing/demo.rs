//! The demo's schema and scripted workload (`pg-changestream demo`): two tables with a
//! TOASTed column, then one transaction per kind of change, ending with a logical message
//! the demo waits for.

use crate::error::{Error, Kind, Result};
use crate::ConnectConfig;

/// The demo's tables (`sql/demo.sql`).
pub const TABLES: [&str; 2] = ["shop.customers", "shop.orders"];

/// The logical-message prefix of the message that ends the workload.
pub const MESSAGE_PREFIX: &str = "demo";

/// The demo schema.
const SCHEMA: &str = include_str!("../../sql/demo.sql");

/// The scripted workload: what each step shows, and its SQL (one transaction each).
const WORKLOAD: &[(&str, &str)] = &[
    (
        "two customers",
        "INSERT INTO shop.customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', 'grace@example.com')",
    ),
    (
        "an order with a TOASTed note (stored out of line)",
        "INSERT INTO shop.orders (customer_id, total, items, note)
         VALUES (1, 42.50, '[{\"sku\": \"tea\", \"qty\": 2}]', repeat('a long note ', 180))",
    ),
    (
        "an update that leaves the TOASTed note alone (filled from the before-image)",
        "UPDATE shop.orders SET status = 'paid' WHERE id = 1",
    ),
    (
        "an update of a customer (before-image: the whole old row)",
        "UPDATE shop.customers SET email = 'grace@example.org' WHERE id = 2",
    ),
    ("a delete", "DELETE FROM shop.customers WHERE id = 2"),
    ("a truncate", "TRUNCATE shop.orders"),
    (
        "a logical message marking the end",
        "SELECT pg_logical_emit_message(true, 'demo', 'workload done')",
    ),
];

/// Creates the demo's schema and tables.
///
/// # Errors
/// The connection or a statement of `sql/demo.sql` failed.
pub async fn create_schema(config: &ConnectConfig) -> Result<()> {
    let client = config.connect_sql().await?;
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| Error::with_source(Kind::Sql, "sql/demo.sql", e))
}

/// Runs the workload on a connection of its own, telling `narrate` what each step shows
/// before it runs.
///
/// # Errors
/// The connection or a step failed.
pub async fn run_workload(config: &ConnectConfig, mut narrate: impl FnMut(&str)) -> Result<()> {
    let client = config.connect_sql().await?;
    for (what, sql) in WORKLOAD {
        narrate(what);
        client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::with_source(Kind::Sql, "demo workload", e))?;
    }
    Ok(())
}
