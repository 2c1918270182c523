//! Integration tests against a real PostgreSQL (see `pg_changestream::testing`).
mod wire;
