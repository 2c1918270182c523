//! Integration tests of the `pg-changestream` binary against a real PostgreSQL (and a real
//! nats-server for `publish`), through the library's test harness
//! (`pg_changestream::testing`). The library's own scenarios are in the root's tests/.

mod bin;
mod cli;
mod filters;
mod schema_change;
mod sink;
