//! Value decoding + JSON serialisation throughput, in rows per second, for a typical
//! 6-column row: bigint, text, numeric, timestamptz, jsonb, bool.
//!
//! Column kinds are resolved once (as the relation cache does); each row is decoded from its
//! text-format column bytes and serialised straight to a JSON object with serde, without an
//! intermediate `serde_json::Value`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pg_changestream::decode::types::{oid, ValueKind};
use pg_changestream::decode::value::Value;
use serde::ser::{Serialize, SerializeMap, Serializer};

const ROWS: usize = 1_000;

struct Row<'a> {
    names: &'a [&'a str],
    kinds: &'a [ValueKind],
    columns: &'a [Option<Vec<u8>>],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.names.len()))?;
        for ((name, kind), column) in self.names.iter().zip(self.kinds).zip(self.columns) {
            let value = match column {
                None => Value::Null,
                Some(bytes) => Value::decode(*kind, bytes).map_err(serde::ser::Error::custom)?,
            };
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

fn rows() -> Vec<Vec<Option<Vec<u8>>>> {
    (0..ROWS)
        .map(|i| {
            let text = [
                Some(format!("{}", 9_000_000_000_i64 + i as i64)),
                Some(format!("customer {i} \"quoted\" name")),
                Some(format!("{}.{:02}", 1000 + i * 7, i % 100)),
                Some(format!(
                    "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
                    1 + i % 12,
                    1 + i % 28,
                    i % 24,
                    i % 60,
                    (i * 7) % 60,
                    i * 37 % 1_000_000
                )),
                Some(format!(
                    r#"{{"sku": "A-{i}", "qty": {}, "tags": ["x", "y"], "price": 12.50}}"#,
                    i % 9
                )),
                if i % 10 == 0 {
                    None
                } else {
                    Some(if i % 2 == 0 { "t" } else { "f" }.to_owned())
                },
            ];
            text.into_iter()
                .map(|c| c.map(String::into_bytes))
                .collect()
        })
        .collect()
}

fn decode_and_serialise(c: &mut Criterion) {
    let names = ["id", "name", "amount", "created_at", "payload", "active"];
    let kinds = [
        oid::INT8,
        oid::TEXT,
        oid::NUMERIC,
        oid::TIMESTAMPTZ,
        oid::JSONB,
        oid::BOOL,
    ]
    .map(ValueKind::for_type);
    let rows = rows();
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("value");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("decode_serialize_6_columns", |b| {
        b.iter(|| {
            out.clear();
            for columns in &rows {
                let row = Row {
                    names: &names,
                    kinds: &kinds,
                    columns,
                };
                if let Err(error) = serde_json::to_writer(&mut out, &row) {
                    panic!("row did not serialise: {error}");
                }
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decode_and_serialise);
criterion_main!(benches);
