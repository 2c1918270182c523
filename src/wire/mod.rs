//! The replication connection: startup with `replication=database`, authentication, TLS,
//! simple queries and the CopyBoth streaming sub-protocol, on top of [`crate::protocol`].
