//! Integration tests against a real PostgreSQL (see `pg_changestream::testing`).
//!
//! One binary; each scenario file is a module named after what it proves, and each test
//! gets its own database on the shared server, so tests run in parallel.

mod admin;
mod decode;
mod values;
mod wire;
