//! What a [`ConsumerBuilder`](super::ConsumerBuilder) collects and a
//! [`Consumer`](super::Consumer) is built from: the builder only sets these, the consumer
//! only reads them, so neither module depends on the other's type.

use std::time::Duration;

use super::spec::TableSpec;
use crate::config::ConnectConfig;
use crate::decode::decoder::DecoderOptions;
use crate::decode::record::Op;

/// When polled records count as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Each poll commits what the previous poll returned; closing commits the last poll.
    /// The durable cursor trails by up to [`ConsumerBuilder::auto_commit_interval`](super::ConsumerBuilder::auto_commit_interval).
    #[default]
    Automatic,
    /// Only [`MessageBundle::commit`](super::MessageBundle::commit) and
    /// [`Consumer::commit`](super::Consumer::commit) commit.
    Manual,
}

/// How far automatic mode's durable cursor may trail by default; see
/// [`ConsumerBuilder::auto_commit_interval`](super::ConsumerBuilder::auto_commit_interval).
const DEFAULT_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer's settings; see the setters of [`ConsumerBuilder`](super::ConsumerBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) config: ConnectConfig,
    pub(crate) group_id: String,
    pub(crate) add: Vec<TableSpec>,
    pub(crate) remove: Vec<String>,
    pub(crate) commit_mode: CommitMode,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) operations: Vec<Op>,
    pub(crate) message_prefixes: Vec<String>,
    pub(crate) force_reset: bool,
    pub(crate) reconnect_timeout: Duration,
    pub(crate) decoder: DecoderOptions,
    pub(crate) queue_capacity: usize,
    pub(crate) partitions: Option<i32>,
    pub(crate) failover: bool,
    pub(crate) backfill_chunk_size: usize,
}

impl Settings {
    pub(crate) fn new(config: ConnectConfig, group_id: String) -> Settings {
        Settings {
            config,
            group_id,
            add: Vec::new(),
            remove: Vec::new(),
            commit_mode: CommitMode::Automatic,
            auto_commit_interval: DEFAULT_AUTO_COMMIT_INTERVAL,
            max_poll_interval: Duration::from_secs(30),
            operations: vec![Op::Insert, Op::Update, Op::Delete, Op::Truncate],
            message_prefixes: Vec::new(),
            force_reset: false,
            reconnect_timeout: Duration::from_secs(60),
            decoder: DecoderOptions::default(),
            queue_capacity: 8192,
            partitions: None,
            failover: false,
            backfill_chunk_size: 4096,
        }
    }
}
