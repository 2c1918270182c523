//! Which decoded records a consumer delivers.
//!
//! The slot decodes every published change; the consumer narrows it down: only tables of
//! the group (a table just removed may still arrive from WAL decoded before the removal),
//! only records at or after each table's start, only the operations asked for, and only
//! logical messages with a subscribed prefix. A record passed over still counts as consumed,
//! so committing moves past it.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::decode::record::{Op, Record};
use crate::decode::relation::{Projection, Projections};
use crate::group::table::TableName;
use crate::lsn::Lsn;

/// A table of the group and where its records start.
#[derive(Debug, Clone)]
pub(crate) struct TableStart {
    pub(crate) table: TableName,
    pub(crate) start_lsn: Option<Lsn>,
    pub(crate) start_time: Option<SystemTime>,
    /// The columns its records carry.
    pub(crate) projection: Projection,
}

/// The operations to deliver, as a bit set over [`Op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpSet(u8);

impl OpSet {
    fn bit(op: Op) -> u8 {
        match op {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 4,
            Op::Truncate => 8,
            Op::Read => 16,
            Op::Schema => 64,
            _ => 32,
        }
    }

    pub(crate) fn of(ops: &[Op]) -> OpSet {
        // Backfill rows are the table's state, and schema records say how to read the
        // records after them: neither is an operation one opts into.
        OpSet(
            ops.iter()
                .fold(Self::bit(Op::Read) | Self::bit(Op::Schema), |set, &op| {
                    set | Self::bit(op)
                }),
        )
    }

    pub(crate) fn contains(self, op: Op) -> bool {
        self.0 & Self::bit(op) != 0
    }
}

/// The consumer's record filter.
#[derive(Debug)]
pub(crate) struct RecordFilter {
    tables: Vec<TableStart>,
    /// Relation id → index in `tables` (or none), filled on first sight of each relation.
    by_relation: HashMap<u32, Option<usize>>,
    /// Relation id (OID) → the group table it is, as named at `oids_at`. pgoutput names a
    /// relation as of each change: under another name, a change committed before `oids_at`
    /// is from before a rename the group already follows (delivered as the table), one
    /// committed after it means the table was renamed since (see `renamed_table`).
    by_oid: HashMap<u32, TableName>,
    oids_at: Lsn,
    ops: OpSet,
    prefixes: Vec<String>,
    /// AtTime starts reached in the stream since last taken: (table, commit LSN).
    resolved: Vec<(TableName, Lsn)>,
}

impl RecordFilter {
    pub(crate) fn new(tables: Vec<TableStart>, ops: OpSet, prefixes: Vec<String>) -> RecordFilter {
        RecordFilter {
            tables,
            by_relation: HashMap::new(),
            by_oid: HashMap::new(),
            oids_at: Lsn::ZERO,
            ops,
            prefixes,
            resolved: Vec::new(),
        }
    }

    /// The tables, in the order they were given.
    pub(crate) fn tables(&self) -> impl Iterator<Item = &TableStart> {
        self.tables.iter()
    }

    /// Adds a table, or replaces its start.
    pub(crate) fn set_table(&mut self, start: TableStart) {
        match self.tables.iter_mut().find(|t| t.table == start.table) {
            Some(existing) => *existing = start,
            None => self.tables.push(start),
        }
        self.by_relation.clear();
    }

    /// Stops delivering a table.
    pub(crate) fn remove_table(&mut self, table: &TableName) {
        self.tables.retain(|t| &t.table != table);
        self.by_oid.retain(|_, t| t != table);
        self.by_relation.clear();
    }

    /// The relation ids of the tables as named at WAL position `at` (see `by_oid`).
    pub(crate) fn set_relation_ids(&mut self, ids: Vec<(u32, TableName)>, at: Lsn) {
        self.by_oid = ids.into_iter().collect();
        self.oids_at = at;
        self.by_relation.clear();
    }

    /// The projections of the tables, by relation id as last taken (a stream starting
    /// takes them with the ids, so a table is matched by relation, as the server sends it).
    pub(crate) fn projections(&self) -> Projections {
        self.by_oid
            .iter()
            .filter_map(|(oid, table)| {
                let start = self.tables.iter().find(|t| &t.table == table)?;
                (start.projection != Projection::All).then(|| (*oid, start.projection.clone()))
            })
            .collect()
    }

    /// The group table relation `oid` was when its id was last taken.
    pub(crate) fn table_of_relation(&self, oid: u32) -> Option<&TableName> {
        self.by_oid.get(&oid)
    }

    /// When `record` belongs to a group table that now has another name: that table and
    /// the new name. Matching by name alone would pass its records over in silence.
    pub(crate) fn renamed_table(&self, record: &Record) -> Option<(TableName, String)> {
        let relation = record.relation()?;
        let table = self.by_oid.get(&relation.id())?;
        if (table.schema() == relation.schema() && table.name() == relation.name())
            || record.txn().commit_lsn < self.oids_at
        {
            return None;
        }
        let new = TableName::new(relation.schema(), relation.name()).map_or_else(
            |_| format!("{}.{}", relation.schema(), relation.name()),
            |t| t.to_string(),
        );
        Some((table.clone(), new))
    }

    /// AtTime starts resolved since the last call.
    pub(crate) fn take_resolved(&mut self) -> Vec<(TableName, Lsn)> {
        std::mem::take(&mut self.resolved)
    }

    /// Whether to deliver `record`.
    pub(crate) fn admit(&mut self, record: &Record) -> bool {
        if record.op() == Op::Message {
            return record.message_content().is_some_and(|(prefix, _)| {
                !crate::snapshot::is_internal(prefix) && self.prefixes.iter().any(|p| p == prefix)
            });
        }
        if !self.ops.contains(record.op()) {
            return false;
        }
        let Some(relation) = record.relation() else {
            return false;
        };
        let tables = &self.tables;
        let known = self.by_oid.get(&relation.id());
        let index = *self.by_relation.entry(relation.id()).or_insert_with(|| {
            tables.iter().position(|t| match known {
                // By relation id: the table under an earlier name is still the table.
                Some(table) => &t.table == table,
                None => t.table.schema() == relation.schema() && t.table.name() == relation.name(),
            })
        });
        // A relation id is reused only after a drop; names are checked again (for tables
        // not known by id) so a recreated table of another name is never taken for the old
        // one.
        let Some(start) = index.and_then(|i| self.tables.get_mut(i)) else {
            return false;
        };
        if known.is_none()
            && (start.table.schema() != relation.schema() || start.table.name() != relation.name())
        {
            self.by_relation.clear();
            return self.admit(record);
        }
        let txn = record.txn();
        if let Some(lsn) = start.start_lsn {
            return txn.commit_lsn >= lsn;
        }
        if let Some(time) = start.start_time {
            if txn.commit_time().is_some_and(|t| t < time) {
                return false;
            }
            // The first transaction at or after the time fixes the position, so that the
            // start stays put even if later commit timestamps are out of order.
            start.start_lsn = Some(txn.commit_lsn);
            start.start_time = None;
            self.resolved.push((start.table.clone(), txn.commit_lsn));
        }
        true
    }
}
