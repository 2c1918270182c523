//! From pgoutput messages to records: relation cache, typed values, transaction assembly.

pub mod txn;
pub mod types;
pub mod value;
