//! Parsing speed of the read path's pure layers: backend framing, the XLogData header and
//! pgoutput, on a realistic stream built from messages captured from PostgreSQL 15:
//! transactions of one Begin, 100 Inserts of a 6-column row (int, text, numeric, bool,
//! bytea, timestamptz) and a Commit, each message in its own XLogData inside a CopyData
//! frame, exactly as a walsender sends them.
//!
//! Run: `cargo bench --bench protocol` (add `-- --warm-up-time 1 --measurement-time 3` for
//! a quick look).

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pg_changestream::protocol::frame::{self, BackendMessage};
use pg_changestream::protocol::pgoutput::{PgOutputDecoder, PgOutputMessage, TupleColumn};
use pg_changestream::protocol::replication::{self, ReplicationMessage};

const BEGIN: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0000-B.bin");
const INSERT: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0002-I.bin");
const COMMIT: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0003-C.bin");

const TRANSACTIONS: usize = 100;
const ROWS_PER_TRANSACTION: usize = 100;

/// One CopyData frame holding one XLogData holding `payload`.
fn put_frame(wire: &mut BytesMut, lsn: u64, payload: &[u8]) {
    let len = 4 + 1 + 24 + payload.len();
    wire.put_u8(b'd');
    wire.put_i32(i32::try_from(len).expect("small frame"));
    wire.put_u8(b'w');
    wire.put_u64(lsn);
    wire.put_u64(lsn + 0x100);
    wire.put_i64(780_000_000_000_000);
    wire.put_slice(payload);
}

fn stream() -> Bytes {
    let mut wire = BytesMut::new();
    let mut lsn = 0x1_0000_0000u64;
    for _ in 0..TRANSACTIONS {
        put_frame(&mut wire, lsn, BEGIN);
        for _ in 0..ROWS_PER_TRANSACTION {
            lsn += 0x80;
            put_frame(&mut wire, lsn, INSERT);
        }
        put_frame(&mut wire, lsn, COMMIT);
    }
    wire.freeze()
}

/// Frames, XLogData, pgoutput and every column of every row; returns rows and value bytes
/// so nothing is optimised away.
fn read_all(mut wire: BytesMut) -> (usize, usize) {
    let mut decoder = PgOutputDecoder::new();
    let (mut rows, mut value_bytes) = (0, 0);
    while let Some(msg) = frame::parse(&mut wire).expect("valid frame") {
        let BackendMessage::CopyData(body) = msg else {
            continue;
        };
        let Ok(ReplicationMessage::XLogData(x)) = replication::parse(body) else {
            continue;
        };
        if let PgOutputMessage::Insert(insert) = decoder.decode(x.data).expect("valid pgoutput") {
            rows += 1;
            for column in &insert.new {
                if let TupleColumn::Text(v) | TupleColumn::Binary(v) = column {
                    value_bytes += v.len();
                }
            }
        }
    }
    (rows, value_bytes)
}

fn protocol(c: &mut Criterion) {
    let wire = stream();
    let rows = TRANSACTIONS * ROWS_PER_TRANSACTION;
    assert_eq!(read_all(BytesMut::from(&wire[..])).0, rows);

    let payloads: Vec<Bytes> = {
        let mut buf = BytesMut::from(&wire[..]);
        let mut v = Vec::new();
        while let Ok(Some(BackendMessage::CopyData(body))) = frame::parse(&mut buf) {
            if let Ok(ReplicationMessage::XLogData(x)) = replication::parse(body) {
                v.push(x.data);
            }
        }
        v
    };
    let payload_bytes: usize = payloads.iter().map(Bytes::len).sum();

    let mut group = c.benchmark_group("bytes");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("frame+xlogdata+pgoutput", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |w| black_box(read_all(w)),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Bytes(payload_bytes as u64));
    group.bench_function("pgoutput only", |b| {
        b.iter(|| {
            let mut decoder = PgOutputDecoder::new();
            for p in &payloads {
                black_box(decoder.decode(p.clone()).expect("valid pgoutput"));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("rows");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("frame+xlogdata+pgoutput", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |w| black_box(read_all(w)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
