//! The whole decode path for one row: pgoutput message → [`Decoder`] (relation cache,
//! transaction assembly) → [`Record`] → JSON, for the 6-column row captured from
//! PostgreSQL 15 (int, text, numeric, bool, bytea, timestamptz). This is the client-side
//! cost per row that the end-to-end benchmark compares with the server's ceiling.
//!
//! Run: `cargo bench --bench decode` (add `-- --warm-up-time 1 --measurement-time 3` for a
//! quick look).

use std::hint::black_box;
use std::io::Write;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pg_changestream::decode::decoder::{Change, Decoder, DecoderOptions};

const RELATION: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0001-R.bin");
const BEGIN: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0000-B.bin");
const INSERT: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0002-I.bin");
const COMMIT: &[u8] = include_bytes!("../tests/data/pgoutput/pg15/basic-0003-C.bin");

const ROWS_PER_TRANSACTION: usize = 100;

/// A sink that counts bytes, standing in for stdout or a socket.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn decode_and_serialise(c: &mut Criterion) {
    let (relation, begin, insert, commit) = (
        Bytes::from_static(RELATION),
        Bytes::from_static(BEGIN),
        Bytes::from_static(INSERT),
        Bytes::from_static(COMMIT),
    );
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(ROWS_PER_TRANSACTION as u64));
    group.bench_function("6-column insert → record → JSON", |b| {
        let mut decoder = Decoder::new(DecoderOptions::default());
        decoder.feed(relation.clone()).expect("relation");
        while decoder.next_change().expect("drain").is_some() {}
        let mut sink = Count(0);
        b.iter(|| {
            for message in std::iter::once(&begin)
                .chain(std::iter::repeat_n(&insert, ROWS_PER_TRANSACTION))
                .chain(std::iter::once(&commit))
            {
                decoder.feed(message.clone()).expect("valid message");
                while let Some(change) = decoder.next_change().expect("valid change") {
                    if let Change::Record(record) = change {
                        serde_json::to_writer(&mut sink, &record).expect("serialise");
                        sink.write_all(b"\n").expect("newline");
                    }
                }
            }
            black_box(sink.0)
        });
    });
    group.finish();
}

criterion_group!(benches, decode_and_serialise);
criterion_main!(benches);
