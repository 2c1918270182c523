//! Consumer-group state kept in PostgreSQL itself (schema `changestream`), so it commits,
//! backs up and fails over with the data it describes.
//!
//! - [`catalog`]: the schema and its versioned migrations from `sql/`;
//! - [`table`]: qualified table names, parsed and quoted by PostgreSQL's rules;
//! - [`partition`]: slots, publications and cursors per partition of a group;
//! - [`group_tables`]: the tables a group reads and where each starts;
//! - [`cursor`]: the durable committed cursor per partition;
//! - [`membership`]: the consumers reading a group, with heartbeats, partition owners and
//!   fencing;
//! - [`assignment`]: the deterministic spread of partitions over live members;
//! - [`identity`]: enabling and disabling change streaming per table (replica identity);
//! - [`user_types`]: the database's domains, enums and their arrays, for the decoder;
//! - `key`: a table's key columns (primary key or replica identity index), one query;
//! - `shapes`: the columns of each relation as of a partition's cursor (schema records).

pub mod assignment;
pub mod catalog;
pub mod cursor;
pub mod group_tables;
pub mod identity;
pub(crate) mod key;
pub mod membership;
pub mod partition;
pub(crate) mod shapes;
pub mod table;
pub mod user_types;
