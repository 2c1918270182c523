//! The JSON writer (`decode::json`) against the typed path it replaces: for any column text
//! of any kind, `write_value` must write the bytes serde_json writes for the decoded
//! `Value`; for any decoded row change, `write_image` those of the serialised `Image`, and
//! `write_line` those of the serialised `Record`.
//!
//! Input: byte 0 picks the type, the rest is the column text; or, with byte 0 = 255, the
//! rest is the tuple data (column count, then columns) of an insert into a relation with a
//! column of every kind, `REPLICA IDENTITY FULL`.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pg_changestream::decode::decoder::{Change, Decoder, DecoderOptions};
use pg_changestream::decode::json;
use pg_changestream::decode::types::{ScalarKind, ValueKind};
use pg_changestream::decode::value::Value;
use pg_changestream::protocol::pgoutput::TupleColumn;

/// bool, int8, int4, float8, numeric, text, json, jsonb, bytea, date, time, timetz,
/// timestamp, timestamptz, int4[], text[], timestamptz[], box[]
const TYPES: [u32; 18] = [
    16, 20, 23, 701, 1700, 25, 114, 3802, 17, 1082, 1083, 1266, 1114, 1184, 1007, 1009, 1185, 1020,
];

fn typed(kind: ValueKind, text: &[u8]) -> Vec<u8> {
    let value = Value::decode(kind, text)
        .unwrap_or_else(|_| Value::Text(String::from_utf8_lossy(text).into_owned().into()));
    serde_json::to_vec(&value).expect("a Value serialises")
}

fn value(type_byte: u8, text: &[u8]) {
    let kind = ValueKind::for_type(TYPES[usize::from(type_byte) % TYPES.len()]);
    let expected = typed(kind, text);
    let mut out = Vec::new();
    json::write_value(&mut out, kind, TupleColumn::Text(text), false);
    assert_eq!(out, expected, "writer and typed path differ");
    // Trusting UTF-8 holds for what a UTF8 server sends: valid text, valid json documents.
    let server_could_send = std::str::from_utf8(text).is_ok()
        && (kind.scalar() != ScalarKind::Json
            || serde_json::from_slice::<&serde_json::value::RawValue>(text).is_ok());
    if server_could_send {
        out.clear();
        json::write_value(&mut out, kind, TupleColumn::Text(text), true);
        assert_eq!(out, expected, "writer (UTF-8 trusted) and typed path differ");
    }
}

fn relation() -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(1);
    b.put_slice(b"s\0t\0");
    b.put_u8(b'f');
    b.put_i16(TYPES.len() as i16);
    for (i, type_oid) in TYPES.iter().enumerate() {
        b.put_u8(u8::from(i == 0));
        b.put_slice(format!("c{i}\0").as_bytes());
        b.put_u32(*type_oid);
        b.put_i32(-1);
    }
    b.freeze()
}

fn record(tuple: &[u8]) {
    let mut insert = BytesMut::new();
    insert.put_u8(b'I');
    insert.put_u32(1);
    insert.put_u8(b'N');
    insert.put_slice(tuple);
    let mut decoder = Decoder::new(DecoderOptions::default());
    let mut begin = BytesMut::new();
    begin.put_u8(b'B');
    begin.put_u64(0x100);
    begin.put_i64(0);
    begin.put_u32(7);
    let mut commit = BytesMut::new();
    commit.put_u8(b'C');
    commit.put_u8(0);
    commit.put_u64(0x100);
    commit.put_u64(0x128);
    commit.put_i64(0);
    for m in [
        relation(),
        begin.freeze(),
        insert.freeze(),
        commit.freeze(),
    ] {
        if decoder.feed(m).is_err() {
            return;
        }
        while let Ok(Some(change)) = decoder.next_change() {
            let Change::Record(record) = change else {
                continue;
            };
            let before = record.before();
            for image in [record.key(), before.image(), record.current()]
                .into_iter()
                .flatten()
            {
                let mut out = Vec::new();
                json::write_image(&mut out, &image);
                assert_eq!(out, serde_json::to_vec(&image).expect("an Image serialises"));
            }
            let mut line = Vec::new();
            json::write_line(&mut line, &record);
            let mut expected = serde_json::to_vec(&record).expect("a Record serialises");
            expected.push(b'\n');
            assert_eq!(line, expected);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((255, message)) => record(message),
        Some((type_byte, text)) => value(*type_byte, text),
        None => {}
    }
});
