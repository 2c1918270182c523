//! Throwaway PostgreSQL servers for tests and the demo.
