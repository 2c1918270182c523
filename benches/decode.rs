//! The whole decode path for one row: pgoutput message → [`Decoder`] (relation cache,
//! transaction assembly) → [`Record`] → JSON, for the 6-column row captured from
//! PostgreSQL 15 (int, text, numeric, bool, bytea, timestamptz). This is the client-side
//! cost per row that the end-to-end benchmark compares with the server's ceiling.
//!
//! Three ways out of the record, per row:
//! - `serde Record`: `serde_json` over `Record` (typed `Value`s; the path before the writer);
//! - `JSON line`: the `tail` line from `decode::json::LineBuffer`, straight from the text;
//! - `typed values`: no JSON, every column of every image decoded to a typed `Value` (the
//!   library path for users who read values).
//!
//! Run: `cargo bench --bench decode` (add `-- --warm-up-time 1 --measurement-time 3` for a
//! quick look). `DECODE_BENCH_ROWS=N cargo bench --bench decode -- <serde|line|typed|decode>` skips
//! criterion and decodes N rows once (for `valgrind --tool=callgrind`: instruction counts per
//! row do not depend on the machine's load; subtract a run with N=0).

use std::hint::black_box;
use std::io::Write;

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use pg_changestream::decode::decoder::{Change, Decoder, DecoderOptions};
use pg_changestream::decode::json;

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

/// How a record leaves the decoder.
#[derive(Clone, Copy)]
enum Way {
    Serde,
    Line,
    Typed,
    /// Decode only: the records are dropped (the share of the three above that is not
    /// theirs; instruction counts only).
    Decode,
}

/// Decodes `transactions` transactions of [`ROWS_PER_TRANSACTION`] inserts and hands each
/// record out `way`; returns the bytes written.
fn run(decoder: &mut Decoder, messages: &[Bytes; 3], transactions: usize, way: Way) -> usize {
    let [begin, insert, commit] = messages;
    let mut sink = Count(0);
    let mut buf = Vec::new();
    let mut lines = json::LineBuffer::new();
    for _ in 0..transactions {
        for message in std::iter::once(begin)
            .chain(std::iter::repeat_n(insert, ROWS_PER_TRANSACTION))
            .chain(std::iter::once(commit))
        {
            decoder.feed(message.clone()).expect("valid message");
            while let Some(change) = decoder.next_change().expect("valid change") {
                let Change::Record(record) = change else {
                    continue;
                };
                match way {
                    Way::Decode => {
                        black_box(&record);
                    }
                    Way::Serde => {
                        serde_json::to_writer(&mut buf, &record).expect("serialise");
                        buf.push(b'\n');
                    }
                    Way::Line => lines.push(&record),
                    Way::Typed => {
                        let before = record.before();
                        for image in [record.key(), before.image(), record.current()]
                            .into_iter()
                            .flatten()
                        {
                            for (name, value) in image.iter() {
                                sink.0 += name.len();
                                black_box(&value);
                            }
                        }
                    }
                }
            }
        }
        // One write per transaction's worth of lines, as a poll would.
        sink.write_all(&buf).expect("write");
        buf.clear();
        lines.write_to(&mut sink).expect("write");
    }
    sink.0
}

fn decoder() -> Decoder {
    let mut decoder = Decoder::new(DecoderOptions {
        // As on a UTF8 server (the capture's).
        server_utf8: true,
        // As a consumer group's records are: the line names the group.
        group: Some("bench".into()),
        ..DecoderOptions::default()
    });
    decoder
        .feed(Bytes::from_static(RELATION))
        .expect("relation");
    while decoder.next_change().expect("drain").is_some() {}
    decoder
}

const MESSAGES: [&[u8]; 3] = [BEGIN, INSERT, COMMIT];

fn decode_and_serialise(c: &mut Criterion) {
    let messages = MESSAGES.map(Bytes::from_static);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(ROWS_PER_TRANSACTION as u64));
    for (name, way) in [
        ("6-column insert → record → JSON (serde Record)", Way::Serde),
        ("6-column insert → record → JSON line (writer)", Way::Line),
        ("6-column insert → record → typed values", Way::Typed),
    ] {
        group.bench_function(name, |b| {
            let mut decoder = decoder();
            b.iter(|| black_box(run(&mut decoder, &messages, 1, way)));
        });
    }
    group.finish();
}

criterion_group!(benches, decode_and_serialise);

fn main() {
    if let Ok(rows) = std::env::var("DECODE_BENCH_ROWS") {
        let rows: usize = rows.parse().expect("DECODE_BENCH_ROWS is a number");
        let way = match std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .as_deref()
        {
            Some("serde") => Way::Serde,
            Some("typed") => Way::Typed,
            Some("decode") => Way::Decode,
            _ => Way::Line,
        };
        let messages = MESSAGES.map(Bytes::from_static);
        let mut decoder = decoder();
        black_box(run(
            &mut decoder,
            &messages,
            rows / ROWS_PER_TRANSACTION,
            way,
        ));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
