//! The delivery rules: what a partition's reader does with each decoded record.
//!
//! Pure and synchronous — no stream, no SQL — so that every rule has a unit test (listed
//! in docs/architecture.md, "Delivery rules"). The reader (`consumer::reader`) does the
//! I/O around it: it takes the change from the stream, asks [`route`], and carries out the
//! answer (hands a watermark to the backfill, pushes a delivered record, moves its
//! position, holds a record back).
//!
//! The rules, in the order they are applied:
//! 1. A logical message with one of this library's prefixes is a backfill watermark: never
//!    delivered, never counted ([`Route::Watermark`]).
//! 2. Every partition's slot decodes every logical message (each needs them for its
//!    watermarks); the application's own are delivered once, through partition 0. A
//!    non-transactional one partition 0 does not deliver is no change of the partition's
//!    stream at all ([`Route::Ignore`]).
//! 3. A record at or before the committed position (the first records of a partly
//!    committed transaction, a redelivery after a reconnect) was delivered and committed
//!    already ([`Route::Committed`]).
//! 4. A poll already full keeps the record for the next one ([`Route::Full`]).
//! 5. A record of a group table that arrives under another name means the table was
//!    renamed while the group read it: held back, with everything after it, until the
//!    consumer is rebuilt ([`Route::HoldBack`]).
//! 6. Transactional messages outside partition 0, and records the filter rejects (a table
//!    not in the group, an operation not asked for, a change before the table's start, an
//!    unsubscribed prefix), are consumed without being delivered ([`Route::PassOver`]).
//! 7. Everything else is delivered ([`Route::Deliver`]).

use super::filter::RecordFilter;
use super::position::Position;
use crate::decode::record::{Op, Record};
use crate::group::table::TableName;
use crate::snapshot::is_internal;

/// What the reader knows when a record arrives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// The group partition the reader reads (messages go out through partition 0).
    pub(crate) partition: i32,
    /// The committed position: records at or before it were delivered and committed.
    pub(crate) floor: Position,
    /// The poll has gathered as many records as it may.
    pub(crate) full: bool,
}

/// What to do with a record (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A backfill watermark: handed to the backfill, neither delivered nor counted.
    Watermark,
    /// A non-transactional message this partition does not deliver: not part of its stream.
    Ignore,
    /// At or before the committed position: already delivered and committed.
    Committed,
    /// The poll is full: kept for the next poll.
    Full,
    /// A group table renamed while the group read it (`old`, now named `new`): held back,
    /// and nothing after it is taken.
    HoldBack { old: TableName, new: String },
    /// Consumed, not delivered.
    PassOver,
    /// Delivered.
    Deliver,
}

impl Route {
    /// Whether the record belongs to the partition's stream: the backfill observes it (for
    /// its visibility check and open window) and its relation's columns are noted.
    pub(crate) fn in_stream(&self) -> bool {
        !matches!(self, Route::Watermark | Route::Ignore)
    }
}

/// Decides what to do with `record` (see the module docs). `filter` keeps state of its own
/// (a time start is fixed by the first record at or after it), so the record must be
/// carried out as routed.
pub(crate) fn route(record: &Record, rules: &Rules, filter: &mut RecordFilter) -> Route {
    if let Some((prefix, _)) = record.message_content() {
        if is_internal(prefix) {
            return Route::Watermark;
        }
        let wanted = rules.partition == 0 && filter.admit(record);
        if record.txn().xid.is_none() && !wanted {
            return Route::Ignore;
        }
    }
    if Position::within(record) <= rules.floor {
        return Route::Committed;
    }
    if rules.full {
        return Route::Full;
    }
    if let Some((old, new)) = filter.renamed_table(record) {
        return Route::HoldBack { old, new };
    }
    let through_here = record.op() != Op::Message || rules.partition == 0;
    if through_here && filter.admit(record) {
        Route::Deliver
    } else {
        Route::PassOver
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::consumer::filter::{OpSet, TableStart};
    use crate::decode::record::TxnInfo;
    use crate::decode::relation::{Projection, Relation};
    use crate::decode::types::TypeCatalog;
    use crate::lsn::Lsn;
    use crate::protocol::pgoutput::ReplicaIdentity;

    const T_OID: u32 = 16_400;

    fn txn(xid: Option<u32>, commit_lsn: u64) -> Arc<TxnInfo> {
        Arc::new(TxnInfo {
            xid,
            commit_lsn: Lsn::new(commit_lsn),
            commit_time_micros: xid.map(|_| 1_000_000),
            origin: None,
            group: None,
        })
    }

    fn relation(name: &str) -> Arc<Relation> {
        Arc::new(Relation::from_catalog(
            T_OID,
            "public".into(),
            name.into(),
            ReplicaIdentity::Default,
            vec![("id".into(), 23, -1, true)],
            &TypeCatalog::new(),
        ))
    }

    fn insert(table: &str, commit_lsn: u64, index: u64) -> Record {
        Record::row(
            Op::Insert,
            relation(table),
            None,
            None,
            txn(Some(7), commit_lsn),
            index,
        )
    }

    fn message(prefix: &str, xid: Option<u32>) -> Record {
        Record::message(prefix.into(), Bytes::from_static(b"m"), txn(xid, 500), 0)
    }

    /// A filter reading table `public.t` from the start, inserts only, prefix "app".
    fn filter() -> RecordFilter {
        RecordFilter::new(
            vec![TableStart {
                table: "public.t".parse().unwrap(),
                start_lsn: None,
                start_time: None,
                projection: Projection::All,
            }],
            OpSet::of(&[Op::Insert]),
            vec!["app".into()],
        )
    }

    fn rules(partition: i32) -> Rules {
        Rules {
            partition,
            floor: Position::default(),
            full: false,
        }
    }

    #[test]
    fn internal_messages_are_watermarks() {
        let watermark = message("pg-changestream:backfill", None);
        for partition in [0, 1] {
            let route = route(&watermark, &rules(partition), &mut filter());
            assert_eq!(route, Route::Watermark);
            assert!(!route.in_stream());
        }
    }

    #[test]
    fn non_transactional_messages_outside_partition_0_are_ignored() {
        let route = route(&message("app", None), &rules(1), &mut filter());
        assert_eq!(route, Route::Ignore);
        assert!(!route.in_stream());
    }

    #[test]
    fn unsubscribed_non_transactional_messages_are_ignored() {
        let route = route(&message("other", None), &rules(0), &mut filter());
        assert_eq!(route, Route::Ignore);
    }

    #[test]
    fn subscribed_messages_go_out_through_partition_0() {
        for xid in [None, Some(9)] {
            let route = route(&message("app", xid), &rules(0), &mut filter());
            assert_eq!(route, Route::Deliver);
        }
    }

    #[test]
    fn transactional_messages_outside_partition_0_are_passed_over() {
        let route = route(&message("app", Some(9)), &rules(1), &mut filter());
        assert_eq!(route, Route::PassOver);
        assert!(route.in_stream());
    }

    #[test]
    fn records_at_or_below_the_floor_are_committed() {
        let rules = Rules {
            floor: Position {
                lsn: Lsn::new(100),
                records: 2,
            },
            ..rules(0)
        };
        let mut filter = filter();
        assert_eq!(
            route(&insert("t", 100, 1), &rules, &mut filter),
            Route::Committed
        );
        assert_eq!(
            route(&insert("t", 100, 2), &rules, &mut filter),
            Route::Deliver
        );
        assert_eq!(
            route(&insert("t", 50, 9), &rules, &mut filter),
            Route::Committed
        );
    }

    #[test]
    fn a_full_poll_keeps_the_record() {
        let full = Rules {
            full: true,
            ..rules(0)
        };
        assert_eq!(
            route(&insert("other", 100, 0), &full, &mut filter()),
            Route::Full
        );
    }

    #[test]
    fn renamed_tables_are_held_back() {
        let mut filter = filter();
        filter.set_relation_ids(vec![(T_OID, "public.t".parse().unwrap())], Lsn::new(10));
        assert_eq!(
            route(&insert("t2", 100, 0), &rules(0), &mut filter),
            Route::HoldBack {
                old: "public.t".parse().unwrap(),
                new: "public.t2".into(),
            }
        );
        // Committed before the ids were taken: from before a rename already followed.
        assert_eq!(
            route(&insert("t_old", 5, 0), &rules(0), &mut filter),
            Route::Deliver
        );
    }

    #[test]
    fn the_floor_comes_before_a_full_poll_and_a_rename() {
        let mut filter = filter();
        filter.set_relation_ids(vec![(T_OID, "public.t".parse().unwrap())], Lsn::new(10));
        let rules = Rules {
            partition: 0,
            floor: Position::after_commit(Lsn::new(200)),
            full: true,
        };
        assert_eq!(
            route(&insert("t2", 100, 0), &rules, &mut filter),
            Route::Committed
        );
    }

    #[test]
    fn records_the_filter_rejects_are_passed_over() {
        let mut filter = filter();
        assert_eq!(
            route(&insert("other", 100, 0), &rules(0), &mut filter),
            Route::PassOver
        );
        let update = Record::row(Op::Update, relation("t"), None, None, txn(Some(7), 100), 0);
        assert_eq!(route(&update, &rules(0), &mut filter), Route::PassOver);
    }

    #[test]
    fn group_table_records_are_delivered() {
        let route = route(&insert("t", 100, 0), &rules(3), &mut filter());
        assert_eq!(route, Route::Deliver);
    }
}
