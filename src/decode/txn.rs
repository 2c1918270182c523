//! Buffering of streamed (in-progress) transactions, bounded in memory.
//!
//! With `streaming 'on'` (pgoutput protocol ≥ 2) the server sends a large transaction in
//! pieces *before* it commits: Stream Start … changes … Stream Stop, repeated, interleaved
//! with other transactions, and finally Stream Commit or Stream Abort. Its changes may not be
//! delivered until the commit arrives (it may still abort), so they wait here, per top-level
//! xid.
//!
//! Each change carries the xid of the (sub-)transaction that made it. A Stream Abort naming
//! a sub-transaction drops exactly that sub-transaction's changes; one naming the top-level
//! xid drops everything. (PostgreSQL sends one abort per aborted sub-transaction, children
//! included, so no nesting bookkeeping is needed here.)
//!
//! Memory is bounded by [`StreamedTxns::new`]'s limit across all open transactions: past it,
//! the largest buffer's pending changes are appended to an anonymous temp file and replayed
//! from there at commit, one change at a time. Changes are kept as the raw pgoutput message
//! bytes, so the spill format is just `subxid, length, bytes` and replay re-parses them.
//! Peers that held whole transactions in memory ran out of it (Electric #2101, Sequin #2128).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{Error, Kind, Result};

/// Bytes of bookkeeping charged per buffered change on top of its payload, so that a flood
/// of tiny changes is bounded too.
const ENTRY_OVERHEAD: usize = 48;

/// Open streamed transactions, keyed by top-level xid.
#[derive(Debug)]
pub struct StreamedTxns {
    txns: HashMap<u32, TxnBuffer>,
    memory_limit: usize,
    in_memory: usize,
    spill_dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct TxnBuffer {
    /// Changes not yet spilled, in arrival order.
    pending: VecDeque<(u32, Bytes)>,
    pending_bytes: usize,
    /// Earlier changes, on disk, in arrival order.
    spill: Option<SpillFile>,
    /// Sub-transactions aborted after some of their changes were spilled.
    aborted: HashSet<u32>,
}

#[derive(Debug)]
struct SpillFile {
    writer: BufWriter<File>,
    entries: u64,
}

impl StreamedTxns {
    /// Buffers with at most `memory_limit` bytes of changes held in memory; the rest spill to
    /// temp files in `spill_dir` (the system temp dir when `None`).
    pub fn new(memory_limit: usize, spill_dir: Option<PathBuf>) -> StreamedTxns {
        StreamedTxns {
            txns: HashMap::new(),
            memory_limit,
            in_memory: 0,
            spill_dir,
        }
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Bytes currently held in memory (payloads plus per-change overhead).
    pub fn memory_used(&self) -> usize {
        self.in_memory
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Number of open streamed transactions.
    pub fn open_transactions(&self) -> usize {
        self.txns.len()
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Whether any change of this top-level transaction has been spilled to disk.
    pub fn has_spilled(&self, xid: u32) -> bool {
        self.txns.get(&xid).is_some_and(|t| t.spill.is_some())
    }

    /// Appends one change (`message`: the raw pgoutput bytes) made by sub-transaction
    /// `subxid` (equal to `xid` for the top level) of streamed transaction `xid`.
    ///
    /// # Errors
    /// Creating or writing a spill file failed.
    pub fn push(&mut self, xid: u32, subxid: u32, message: Bytes) -> Result<()> {
        let cost = message.len() + ENTRY_OVERHEAD;
        let txn = self.txns.entry(xid).or_default();
        txn.pending.push_back((subxid, message));
        txn.pending_bytes += cost;
        self.in_memory += cost;
        while self.in_memory > self.memory_limit {
            if !self.spill_largest()? {
                break;
            }
        }
        Ok(())
    }

    /// Drops the changes of sub-transaction `subxid` of `xid`, or of the whole transaction
    /// when `subxid == xid`.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if subxid == xid {
            if let Some(txn) = self.txns.remove(&xid) {
                self.in_memory -= txn.pending_bytes;
            }
            return;
        }
        let Some(txn) = self.txns.get_mut(&xid) else {
            return;
        };
        let mut freed = 0;
        txn.pending.retain(|(sub, message)| {
            let keep = *sub != subxid;
            if !keep {
                freed += message.len() + ENTRY_OVERHEAD;
            }
            keep
        });
        txn.pending_bytes -= freed;
        self.in_memory -= freed;
        if txn.spill.is_some() {
            txn.aborted.insert(subxid);
        }
    }

    /// Ends transaction `xid` and returns its surviving changes in order. A transaction
    /// never seen (all its changes were in sub-transactions that aborted, or it streamed
    /// nothing we kept) yields nothing.
    ///
    /// # Errors
    /// Rewinding the spill file failed.
    pub fn commit(&mut self, xid: u32) -> Result<CommittedChanges> {
        let Some(txn) = self.txns.remove(&xid) else {
            return Ok(CommittedChanges::empty());
        };
        self.in_memory -= txn.pending_bytes;
        let spilled = match txn.spill {
            Some(spill) => {
                let mut file = spill
                    .writer
                    .into_inner()
                    .map_err(|e| spill_error(e.into_error()))?;
                file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
                Some((BufReader::with_capacity(256 * 1024, file), spill.entries))
            }
            None => None,
        };
        Ok(CommittedChanges {
            spilled,
            pending: txn.pending,
            aborted: txn.aborted,
        })
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Forgets every open transaction (the connection is gone; the server resends them).
    pub fn clear(&mut self) {
        self.txns.clear();
        self.in_memory = 0;
    }

    /// Moves the pending changes of the transaction with the most in memory to its spill
    /// file. Returns false when there was nothing to spill.
    fn spill_largest(&mut self) -> Result<bool> {
        let Some((&xid, _)) = self
            .txns
            .iter()
            .filter(|(_, t)| t.pending_bytes > 0)
            .max_by_key(|(_, t)| t.pending_bytes)
        else {
            return Ok(false);
        };
        let spill_dir = self.spill_dir.clone();
        let Some(txn) = self.txns.get_mut(&xid) else {
            return Ok(false);
        };
        if txn.spill.is_none() {
            let file = match &spill_dir {
                Some(dir) => tempfile::tempfile_in(dir),
                None => tempfile::tempfile(),
            }
            .map_err(spill_error)?;
            txn.spill = Some(SpillFile {
                writer: BufWriter::with_capacity(256 * 1024, file),
                entries: 0,
            });
        }
        let Some(spill) = txn.spill.as_mut() else {
            return Ok(false);
        };
        for (subxid, message) in txn.pending.drain(..) {
            let len = u32::try_from(message.len()).map_err(|_| {
                Error::new(
                    Kind::Protocol,
                    "a single change larger than 4 GiB cannot be spilled",
                )
            })?;
            spill
                .writer
                .write_all(&subxid.to_be_bytes())
                .map_err(spill_error)?;
            spill
                .writer
                .write_all(&len.to_be_bytes())
                .map_err(spill_error)?;
            spill.writer.write_all(&message).map_err(spill_error)?;
            spill.entries += 1;
        }
        self.in_memory -= txn.pending_bytes;
        txn.pending_bytes = 0;
        Ok(true)
    }
}

fn spill_error(e: io::Error) -> Error {
    Error::with_source(
        Kind::Local,
        "spilling a large streamed transaction to a temp file failed; check free space in the \
         temp directory or raise the memory limit",
        e,
    )
}

/// The surviving changes of a committed streamed transaction, in order: first those read
/// back from its spill file, then those still in memory.
#[derive(Debug)]
pub struct CommittedChanges {
    spilled: Option<(BufReader<File>, u64)>,
    pending: VecDeque<(u32, Bytes)>,
    aborted: HashSet<u32>,
}

impl CommittedChanges {
    fn empty() -> CommittedChanges {
        CommittedChanges {
            spilled: None,
            pending: VecDeque::new(),
            aborted: HashSet::new(),
        }
    }

    /// The next change's raw pgoutput bytes, or `None` at the end.
    ///
    /// # Errors
    /// Reading the spill file failed or it was cut short.
    pub fn next_change(&mut self) -> Result<Option<Bytes>> {
        while let Some((reader, remaining)) = self.spilled.as_mut() {
            if *remaining == 0 {
                self.spilled = None;
                break;
            }
            *remaining -= 1;
            let mut header = [0u8; 8];
            reader.read_exact(&mut header).map_err(spill_error)?;
            let subxid = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let mut message = vec![0u8; len];
            reader.read_exact(&mut message).map_err(spill_error)?;
            if !self.aborted.contains(&subxid) {
                return Ok(Some(Bytes::from(message)));
            }
        }
        Ok(self.pending.pop_front().map(|(_, message)| message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut c: CommittedChanges) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(m) = c.next_change().unwrap() {
            out.push(m);
        }
        out
    }

    fn msg(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn commit_releases_in_order_and_abort_drops_only_the_subtransaction() {
        let mut txns = StreamedTxns::new(1 << 20, None);
        txns.push(10, 10, msg("a")).unwrap();
        txns.push(20, 20, msg("other")).unwrap();
        txns.push(10, 11, msg("b")).unwrap();
        txns.push(10, 10, msg("c")).unwrap();
        txns.push(10, 12, msg("d")).unwrap();
        txns.abort(10, 11);
        let got = drain(txns.commit(10).unwrap());
        assert_eq!(got, vec![msg("a"), msg("c"), msg("d")]);
        assert_eq!(txns.open_transactions(), 1);
        txns.abort(20, 20);
        assert_eq!(txns.open_transactions(), 0);
        assert_eq!(txns.memory_used(), 0);
        assert!(drain(txns.commit(20).unwrap()).is_empty());
    }

    #[test]
    fn spills_past_the_limit_and_replays_everything_in_order() {
        let limit = 4096;
        let mut txns = StreamedTxns::new(limit, None);
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            let sub = if i % 7 == 3 { 99 } else { 1 };
            let m = msg(&format!("change {i:05} {}", "x".repeat(40)));
            txns.push(1, sub, m.clone()).unwrap();
            if sub != 99 {
                expected.push(m);
            }
            assert!(txns.memory_used() <= limit, "memory stays bounded");
        }
        assert!(txns.has_spilled(1));
        // The aborted sub-transaction has changes both on disk and in memory.
        txns.push(1, 99, msg("late change of the aborted subxact"))
            .unwrap();
        txns.abort(1, 99);
        txns.push(1, 1, msg("tail")).unwrap();
        expected.push(msg("tail"));
        assert_eq!(drain(txns.commit(1).unwrap()), expected);
        assert_eq!(txns.memory_used(), 0);
    }

    #[test]
    fn aborting_the_top_level_drops_spilled_changes_too() {
        let mut txns = StreamedTxns::new(256, None);
        for i in 0..100 {
            txns.push(5, 5, msg(&format!("{i}"))).unwrap();
        }
        assert!(txns.has_spilled(5));
        txns.abort(5, 5);
        assert_eq!(txns.memory_used(), 0);
        assert!(drain(txns.commit(5).unwrap()).is_empty());
    }
}
