//! The chunk window: which rows of a chunk may be emitted at its high watermark.
//!
//! Between the low watermark L and the high watermark H the stream carries every change
//! that committed while the chunk was being selected. The chunk's snapshot may or may not
//! have seen each of them, so any row whose key such a change touched is *dropped*: the
//! stream already carries its newer state. The other rows did not change between L and H,
//! so the snapshot's version of them is their state at H, where they are emitted.
//!
//! One more case makes a chunk stale: a transaction whose commit record is in WAL before L
//! (so the stream delivered it before L, outside the window) but which had not yet left the
//! server's list of running transactions when the chunk's snapshot was taken (the commit
//! record is written first, the proc array entry cleared after; synchronous replication
//! stretches that gap). The snapshot does not see it, so the chunk would show the row
//! before it — and nothing later in the stream corrects that. The stream side therefore
//! remembers the xids it saw commit ([`SeenXids`]); at L, if any of them is running in the
//! snapshot (in its `xip` list, or at or past its `xmax`), the chunk is discarded and
//! selected again.

use std::collections::HashSet;

use crate::error::{Error, Result};

/// Key values of a row, as text, in key column order.
pub(crate) type Key = Vec<Vec<u8>>;

/// A snapshot as `pg_current_snapshot()` prints it: `xmin:xmax:xip,…` (64-bit xids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Snapshot {
    /// Parses the text form of `pg_snapshot`.
    ///
    /// # Errors
    /// The text is not `xmin:xmax:xip-list`.
    pub(crate) fn parse(text: &str) -> Result<Snapshot> {
        let bad = || Error::protocol(format!("unexpected snapshot text {text:?}"));
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let xip = if xip.is_empty() {
            Vec::new()
        } else {
            xip.split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_>>()?
        };
        Ok(Snapshot {
            xmin: xmin.parse().map_err(|_| bad())?,
            xmax: xmax.parse().map_err(|_| bad())?,
            xip,
        })
    }

    /// Whether the (32-bit, as the stream carries it) transaction `xid` was running, or not
    /// yet started, for this snapshot: its effects are invisible to it.
    fn invisible(&self, xid: u32) -> bool {
        self.xip.iter().any(|&x| low32(x) == xid) || !precedes(xid, low32(self.xmax))
    }

    fn xmin32(&self) -> u32 {
        low32(self.xmin)
    }
}

/// The 32-bit xid of a 64-bit full transaction id (its epoch dropped).
fn low32(xid: u64) -> u32 {
    (xid & 0xFFFF_FFFF) as u32
}

/// `a` is older than `b` in PostgreSQL's circular 32-bit xid order.
fn precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Transactions the stream delivered (committed) that touched a table being backfilled.
#[derive(Debug, Default)]
pub(crate) struct SeenXids(HashSet<u32>);

impl SeenXids {
    /// Notes a committed transaction seen in the stream.
    pub(crate) fn note(&mut self, xid: u32) {
        if xid != 0 {
            self.0.insert(xid);
        }
    }

    /// Whether any transaction seen is invisible to `snapshot`.
    fn any_invisible(&self, snapshot: &Snapshot) -> bool {
        self.0.iter().any(|&xid| snapshot.invisible(xid))
    }

    /// Forgets transactions older than `snapshot`'s xmin: every later snapshot has an
    /// xmin at least as high, so sees them as committed.
    fn prune(&mut self, snapshot: &Snapshot) {
        let xmin = snapshot.xmin32();
        self.0.retain(|&xid| !precedes(xid, xmin));
    }

    /// How many are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Where a chunk's window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Selected; the low watermark not yet seen in the stream.
    AwaitingLow,
    /// Between the watermarks.
    Open,
    /// Must be selected again (see the module docs).
    Stale,
}

/// One chunk's window.
#[derive(Debug)]
pub(crate) struct Window {
    snapshot: Snapshot,
    state: State,
    dropped: HashSet<Key>,
    /// The table was truncated inside the window: every row of the chunk is dropped.
    truncated: bool,
}

/// What to do at the high watermark.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Emit the chunk's rows for which [`Window::keeps`] holds.
    Emit,
    /// Discard the chunk and select it again; progress does not move.
    Retry,
}

impl Window {
    /// The window of a chunk selected under `snapshot`.
    pub(crate) fn new(snapshot: Snapshot) -> Window {
        Window {
            snapshot,
            state: State::AwaitingLow,
            dropped: HashSet::new(),
            truncated: false,
        }
    }

    /// The low watermark arrived; `seen` holds the transactions the stream delivered
    /// before it.
    pub(crate) fn low(&mut self, seen: &mut SeenXids) {
        if self.state != State::AwaitingLow {
            return;
        }
        self.state = if seen.any_invisible(&self.snapshot) {
            State::Stale
        } else {
            State::Open
        };
        seen.prune(&self.snapshot);
    }

    /// Whether changes now fall inside the window.
    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// A change inside the window touched the row with `key`.
    pub(crate) fn drop_key(&mut self, key: Key) {
        if self.is_open() {
            self.dropped.insert(key);
        }
    }

    /// The table was truncated inside the window.
    pub(crate) fn drop_all(&mut self) {
        if self.is_open() {
            self.truncated = true;
        }
    }

    /// A change inside the window whose key cannot be told (an unchanged TOASTed key):
    /// the chunk is selected again rather than guessed at.
    pub(crate) fn mark_stale(&mut self) {
        if self.is_open() {
            self.state = State::Stale;
        }
    }

    /// The high watermark arrived.
    pub(crate) fn high(&self) -> Verdict {
        match self.state {
            State::Open => Verdict::Emit,
            // A high watermark without its low one cannot happen in one stream (they are
            // emitted in this order); be safe.
            State::AwaitingLow | State::Stale => Verdict::Retry,
        }
    }

    /// Whether the chunk row with `key` is emitted.
    pub(crate) fn keeps(&self, key: &[Vec<u8>]) -> bool {
        !self.truncated && !self.dropped.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        vec![k.as_bytes().to_vec()]
    }

    #[test]
    fn snapshots_parse_with_and_without_running_transactions() {
        let s = Snapshot::parse("100:105:100,103").unwrap();
        assert_eq!(s.xip, vec![100, 103]);
        assert_eq!(Snapshot::parse("7:7:").unwrap().xip, Vec::<u64>::new());
        assert!(Snapshot::parse("7:7").is_err());
        assert!(Snapshot::parse("a:7:").is_err());
    }

    #[test]
    fn rows_changed_inside_the_window_are_dropped_the_rest_kept() {
        let mut seen = SeenXids::default();
        let mut w = Window::new(Snapshot::parse("100:100:").unwrap());
        w.drop_key(key("1")); // before L: not in the window
        w.low(&mut seen);
        assert!(w.is_open());
        w.drop_key(key("2"));
        assert_eq!(w.high(), Verdict::Emit);
        assert!(w.keeps(&key("1")));
        assert!(!w.keeps(&key("2")));
    }

    #[test]
    fn a_truncate_inside_the_window_drops_every_row() {
        let mut w = Window::new(Snapshot::parse("100:100:").unwrap());
        w.low(&mut SeenXids::default());
        w.drop_all();
        assert_eq!(w.high(), Verdict::Emit);
        assert!(!w.keeps(&key("1")));
    }

    #[test]
    fn a_transaction_seen_before_low_but_running_in_the_snapshot_makes_the_chunk_stale() {
        // Transaction 103 committed (the stream delivered it before L) but was still in the
        // proc array when the chunk's snapshot was taken.
        let mut seen = SeenXids::default();
        seen.note(99);
        seen.note(103);
        let mut w = Window::new(Snapshot::parse("101:106:101,103").unwrap());
        w.low(&mut seen);
        assert_eq!(w.high(), Verdict::Retry);
        // Changes after a stale low are ignored; the chunk is selected again.
        w.drop_key(key("1"));
        assert_eq!(w.high(), Verdict::Retry);
    }

    #[test]
    fn a_transaction_at_or_past_xmax_is_invisible_too() {
        let mut seen = SeenXids::default();
        seen.note(106);
        let mut w = Window::new(Snapshot::parse("101:106:").unwrap());
        w.low(&mut seen);
        assert_eq!(w.high(), Verdict::Retry);
    }

    #[test]
    fn transactions_visible_to_the_snapshot_keep_it_valid_and_old_ones_are_forgotten() {
        let mut seen = SeenXids::default();
        seen.note(90);
        seen.note(102);
        let mut w = Window::new(Snapshot::parse("101:106:101,104").unwrap());
        w.low(&mut seen);
        assert_eq!(w.high(), Verdict::Emit);
        // 90 precedes xmin 101: no later snapshot can see it running.
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn xids_compare_across_wraparound_and_epochs() {
        // Full xid of epoch 1; the stream carries its low 32 bits.
        let full = (1u64 << 32) + 5;
        let mut seen = SeenXids::default();
        seen.note(5);
        let mut w = Window::new(Snapshot::parse(&format!("{full}:{}:{full}", full + 2)).unwrap());
        w.low(&mut seen);
        assert_eq!(w.high(), Verdict::Retry);
        // Just before wraparound, 0xFFFF_FFF0 precedes 3.
        assert!(precedes(0xFFFF_FFF0, 3));
        assert!(!precedes(3, 0xFFFF_FFF0));
    }

    #[test]
    fn an_unreadable_key_inside_the_window_makes_the_chunk_stale() {
        let mut w = Window::new(Snapshot::parse("100:100:").unwrap());
        w.low(&mut SeenXids::default());
        w.mark_stale();
        assert_eq!(w.high(), Verdict::Retry);
    }
}
