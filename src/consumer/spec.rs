//! [`TableSpec`]: a table of a group with its start location, row filter and projection.
//!
//! The row filter is a condition PostgreSQL evaluates (a publication row filter): rows it
//! rejects never leave the server. The projection is applied by the consumer, before a
//! record is made: left-out columns reach no output. Both belong to the group's table and
//! are stored with it, so every member — and every later `tail` — reads the same rows and
//! columns until a spec says otherwise.

use tokio_postgres::GenericClient;

use super::location::StartLocation;
use crate::decode::relation::Projection;
use crate::error::{Error, Result};
use crate::group::key::key_columns;
use crate::group::table::TableName;

/// A table to read, with where it starts, which rows and which columns
/// ([`ConsumerBuilder::add_table_with`](super::ConsumerBuilder::add_table_with)).
///
/// ```no_run
/// # async fn example() -> pg_changestream::Result<()> {
/// use pg_changestream::consumer::{ConsumerBuilder, StartLocation, TableSpec};
///
/// let config = "postgres://app@localhost/shop".parse()?;
/// let consumer = ConsumerBuilder::new(config, "billing")
///     .add_table_with(
///         TableSpec::new("shop.orders", StartLocation::Earliest)
///             .filter("status <> 'draft'")
///             .exclude_columns(["email"]),
///     )
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// Unlike [`ConsumerBuilder::add_table`](super::ConsumerBuilder::add_table), which keeps
/// what the group stores for a table, a spec sets the table's filter and projection to
/// exactly what it says — a spec without a filter removes a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub(crate) table: String,
    pub(crate) location: StartLocation,
    /// `None`: keep what the group stores (`add_table`).
    pub(crate) settings: Option<TableSettings>,
}

/// A table's row filter and projection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TableSettings {
    pub(crate) filter: Option<String>,
    pub(crate) projection: Projection,
}

impl TableSpec {
    /// `table` (`name`, `schema.name`, or quoted SQL identifiers) starting at `location`
    /// when new to the group, every row, every column.
    pub fn new(table: impl Into<String>, location: StartLocation) -> TableSpec {
        TableSpec {
            table: table.into(),
            location,
            settings: Some(TableSettings::default()),
        }
    }

    /// Only rows for which `condition` (an SQL boolean expression over the table's columns,
    /// e.g. `status <> 'draft'`) is true. PostgreSQL applies it (a publication row filter,
    /// so rejected rows never leave the server) and allows only immutable built-in
    /// functions and operators in it; unless the table has before-images (`REPLICA IDENTITY
    /// FULL`), only key columns. An update that moves a row into the filter arrives as an
    /// insert, one that moves it out as a delete (with the old row as the before-image
    /// allows). A backfill reads only rows the filter admits. An empty condition means none.
    pub fn filter(mut self, condition: impl Into<String>) -> TableSpec {
        let condition = condition.into();
        self.settings_mut().filter = (!condition.trim().is_empty()).then_some(condition);
        self
    }

    /// Only these columns, plus the key columns (records always carry the key). Columns
    /// added to the table later are left out. Replaces any earlier column choice.
    pub fn columns<I, S>(mut self, names: I) -> TableSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings_mut().projection =
            Projection::Only(names.into_iter().map(Into::into).collect());
        self
    }

    /// Every column but these: they are dropped before a record is made, so they appear in
    /// no output (current image, before-image, key). A key column cannot be left out.
    /// Columns added to the table later are included. Replaces any earlier column choice.
    pub fn exclude_columns<I, S>(mut self, names: I) -> TableSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings_mut().projection =
            Projection::Except(names.into_iter().map(Into::into).collect());
        self
    }

    fn settings_mut(&mut self) -> &mut TableSettings {
        self.settings.get_or_insert_with(TableSettings::default)
    }
}

impl TableSettings {
    /// Checks the projection against the table and puts the key columns into an `Only`
    /// list, so it says exactly which columns records carry.
    ///
    /// # Errors
    /// [`Error::is_config`] for a column the table does not have, or a key column left out.
    pub(crate) async fn resolve(
        &self,
        client: &impl GenericClient,
        table: &TableName,
    ) -> Result<TableSettings> {
        if self.projection == Projection::All {
            return Ok(self.clone());
        }
        // Columns as pgoutput publishes them, and which belong to the key records report
        // (the primary key, or the replica identity index).
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
        let columns: Vec<(String, bool)> = rows
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let in_key = key.iter().any(|k| k.name == name);
                (name, in_key)
            })
            .collect();
        for name in self.projection.names() {
            match columns.iter().find(|(n, _)| n == name) {
                None => {
                    return Err(Error::config(format!(
                        "table {table} has no column {name:?}; column names are matched \
                         exactly (case included): {}",
                        columns
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                Some((_, true)) if matches!(self.projection, Projection::Except(_)) => {
                    return Err(Error::config(format!(
                        "column {name:?} is part of the key of table {table}; records always \
                         carry the key (it identifies the row, and backfill and partitions \
                         rely on it), so it cannot be excluded"
                    )))
                }
                Some(_) => {}
            }
        }
        let projection = match &self.projection {
            Projection::Only(names) => Projection::Only(
                columns
                    .iter()
                    .filter(|(n, key)| *key || names.contains(n))
                    .map(|(n, _)| n.clone())
                    .collect(),
            ),
            other => other.clone(),
        };
        Ok(TableSettings {
            filter: self.filter.clone(),
            projection,
        })
    }
}
