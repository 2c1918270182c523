//! Integration tests against a real PostgreSQL (see `pg_changestream::testing`).
//!
//! This is the crate's one integration test binary (`autotests = false`): every scenario file
//! beside it is a module named after what it proves, declared here. All of them share one
//! server, started once, and run in parallel, each test in a database of its own.

mod admin;
mod auto_commit;
mod backfill;
mod bad_input;
mod capture;
mod consumer;
mod decode;
mod fault_proxy;
mod faults;
mod filters;
mod foundation;
mod partitions;
mod recovery;
mod schema_change;
mod security;
mod support;
mod values;
mod wire;
