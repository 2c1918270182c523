//! From pgoutput messages to records: relation cache, typed values, transaction assembly.

pub mod decoder;
pub(crate) mod escape;
pub mod json;
pub mod record;
pub mod relation;
pub mod txn;
mod type_names;
pub mod types;
pub mod value;
