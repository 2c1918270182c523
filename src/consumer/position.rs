//! Positions in a partition's stream, as the consumer counts them.

use crate::decode::record::{Op, Record};
use crate::group::cursor::Cursor;
use crate::lsn::Lsn;

/// Every transaction that committed before `lsn`, plus the first `records` records of the
/// one committing at `lsn` — the shape of the durable cursor (`group::cursor`).
///
/// Ordered as a pair: `(C, k) < (C, k + 1) < (E, 0)` for a transaction committing at `C`
/// and ending at `E > C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Position {
    pub(crate) lsn: Lsn,
    pub(crate) records: u64,
}

impl Position {
    /// Just after `record`; after the last record of a transaction, after the whole
    /// transaction, so that committing it lets the slot move past the transaction even
    /// when its Commit has not been taken from the stream yet.
    pub(crate) fn after(record: &Record) -> Position {
        match record.txn_end() {
            Some(end_lsn) => Position::after_commit(end_lsn),
            None => Position::within(record),
        }
    }

    /// Counting `record` inside its transaction: `(commit LSN, index + 1)`, also for its
    /// last record. A record is already done when this is at or below a committed position,
    /// whether that position counts records inside the transaction or lies past its end
    /// (cursors written before last records carried the end have the former shape).
    ///
    /// A non-transactional message is a transaction of its own, reported at the end of its
    /// WAL record: counting it is the same as being past it, `(lsn, 0)`.
    pub(crate) fn within(record: &Record) -> Position {
        let txn = record.txn();
        if txn.xid.is_none() && record.op() == Op::Message {
            return Position::after_commit(txn.commit_lsn);
        }
        Position {
            lsn: txn.commit_lsn,
            records: record.index() + 1,
        }
    }

    /// Just after a whole transaction that ends at `end_lsn`.
    pub(crate) fn after_commit(end_lsn: Lsn) -> Position {
        Position {
            lsn: end_lsn,
            records: 0,
        }
    }

    /// The flush position to confirm to the server for this position: the server skips
    /// transactions whose commit record lies *below* the start position, so a partly
    /// committed transaction (records > 0) is confirmed at its own commit LSN (it will be
    /// sent again, and its first `records` records passed over), a whole one at its end.
    pub(crate) fn flush_lsn(self) -> Lsn {
        self.lsn
    }
}

impl From<&Cursor> for Position {
    fn from(cursor: &Cursor) -> Position {
        Position {
            lsn: cursor.commit_lsn,
            records: cursor.records_done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_inside_then_after_a_transaction() {
        let c = Lsn::new(100);
        let inside = Position { lsn: c, records: 3 };
        assert!(Position { lsn: c, records: 0 } < inside);
        assert!(inside < Position { lsn: c, records: 4 });
        assert!(inside < Position::after_commit(Lsn::new(101)));
        assert_eq!(inside.flush_lsn(), c);
    }
}
