//! The JSON line: what `pg-changestream tail` prints for a record, written straight from
//! pgoutput's text (no intermediate values). The same bytes as serialising the record with
//! `serde_json`; `docs/architecture.md` ("One record, one serialisation") says why both exist.

pub use crate::decode::json::{write_image, write_line, LineBuffer};
