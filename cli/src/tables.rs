//! `enable` and `disable`: change streaming per table (replica identity and bookkeeping in
//! the `changestream` schema, done by `pg_changestream::admin`).

use pg_changestream::ConnectConfig;
use pg_changestream::TableName;

use crate::connect;
use crate::failure::Failure;

/// Parses a table name as the user typed it (SQL quoting rules).
///
/// # Errors
/// Exit status 2 with the parser's message.
pub fn parse_table(table: &str) -> Result<TableName, Failure> {
    table.parse().map_err(Failure::from)
}

/// `enable TABLE [--no-before-images]`.
pub async fn enable(
    config: &ConnectConfig,
    table: &str,
    before_images: bool,
) -> Result<(), Failure> {
    let table = parse_table(table)?;
    connect::admin(config)
        .await?
        .enable(&table, before_images)
        .await?;
    println!(
        "enabled change streaming for {table} ({})",
        if before_images {
            "with before-images: REPLICA IDENTITY FULL"
        } else {
            "without before-images"
        }
    );
    Ok(())
}

/// `disable TABLE`.
pub async fn disable(config: &ConnectConfig, table: &str) -> Result<(), Failure> {
    let table = parse_table(table)?;
    connect::admin(config).await?.disable(&table).await?;
    println!("disabled change streaming for {table}; its replica identity is restored");
    Ok(())
}
