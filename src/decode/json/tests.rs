//! The writer against the typed path it replaces: every value, image and record must come
//! out as the same bytes as serialising the library's [`Value`]s, [`Image`]s and
//! [`Record`]s with serde_json. (tests/values.rs compares values PostgreSQL itself printed,
//! the CLI's tests the documented line.) And the serde form in a format other than JSON.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::decode::decoder::{Change, Decoder, DecoderOptions};
use crate::decode::types::oid;

/// What the typed path writes for `column` of `kind`.
fn typed(kind: ValueKind, column: TupleColumn<'_>) -> String {
    serde_json::to_string(&to_value(kind, column)).unwrap()
}

/// What the writer writes.
fn fast(kind: ValueKind, column: TupleColumn<'_>, utf8: bool) -> String {
    let mut out = Vec::new();
    write_value(&mut out, kind, column, utf8);
    String::from_utf8(out).unwrap()
}

fn assert_same(type_oid: u32, text: &[u8]) {
    let kind = ValueKind::for_type(type_oid);
    let column = TupleColumn::Text(text);
    let expected = typed(kind, column);
    assert_eq!(
        fast(kind, column, false),
        expected,
        "type {type_oid}, {:?}",
        String::from_utf8_lossy(text)
    );
    // Trusting holds for what a UTF8 server sends: valid text, valid json documents.
    let server_could_send = std::str::from_utf8(text).is_ok()
        && (kind.scalar() != ScalarKind::Json
            || serde_json::from_slice::<&serde_json::value::RawValue>(text).is_ok());
    if server_could_send {
        assert_eq!(
            fast(kind, column, true),
            expected,
            "type {type_oid}, {:?}, UTF-8 trusted",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn every_kind_and_its_special_cases_match_the_typed_path() {
    use oid::*;
    let cases: &[(u32, &[&str])] = &[
        (BOOL, &["t", "f", "true", ""]),
        (
            INT8,
            &[
                "0",
                "-0",
                "7",
                "-7",
                "007",
                "+5",
                "123456789012345678",
                "-123456789012345678",
                "9223372036854775807",
                "-9223372036854775808",
                "99999999999999999999",
                "1e3",
                "",
                "-",
            ],
        ),
        (
            FLOAT8,
            &[
                "NaN",
                "Infinity",
                "-Infinity",
                "-0",
                "1e-300",
                "1.7976931348623157e+308",
                "0.1",
                "1.",
                ".5",
                "01",
                "1E5",
                "nan",
                "",
            ],
        ),
        (
            NUMERIC,
            &[
                "1.50",
                "-0",
                "NaN",
                "Infinity",
                "-Infinity",
                "1e1000",
                "0.000",
                "12a",
            ],
        ),
        (
            TEXT,
            &[
                "",
                "plain",
                "a\"b",
                "back\\slash",
                "line\nbreak\ttab\r",
                "\u{1}\u{8}\u{c}\u{1f}\u{7f}",
                "é😀 unicode",
                "exactly8",
                "sixteen bytes!!!",
                "sixteen bytes!!\"",
                "\u{0}",
            ],
        ),
        (
            JSON,
            &[
                r#"{"a": [1, 2.50, 1e400], "b": "\u00e9"}"#,
                " [1 , 2] ",
                "\n{}\t",
                "null",
                "3.0",
                "\"\\ud800\"",
                "",
                "  ",
            ],
        ),
        (
            JSONB,
            &[r#"{"a": "x", "b": [true, null]}"#, "[]", "-1.000", "{bad"],
        ),
        (BYTEA, &["\\x", "\\xdeadbeef"]),
        (
            DATE,
            &[
                "2024-02-29",
                "2023-02-29",
                "0000-01-01",
                "0001-01-01",
                "9999-12-31",
                "0044-03-15 BC",
                "5874897-12-31",
                "infinity",
                "-infinity",
                "2024-13-01",
                "02024-01-01",
                "2024-1-01",
            ],
        ),
        (
            TIME,
            &["00:00:00", "24:00:00", "12:00:00.5", "25:00:00", "x"],
        ),
        (TIMETZ, &["12:00:00.5+05:30", "00:00:00+00", "12:00"]),
        (
            TIMESTAMP,
            &[
                "2024-02-29 23:59:59.999999",
                "2024-02-29 23:59:59",
                "2024-02-30 00:00:00",
                "2024-01-01 24:00:00",
                "2024-01-01 00:60:00",
                "2024-01-01 00:00:60",
                "2024-01-01 12:00:00.50",
                "2024-01-01 12:00:00.",
                "2024-01-01 12:00:00.1234567",
                "0001-01-01 00:00:00.5 BC",
                "294276-12-31 23:59:59.999999",
                "infinity",
                "-infinity",
                "0000-01-01 00:00:00",
                "2024-01-01T00:00:00",
                "2024-01-01 00:00:00+00",
            ],
        ),
        (
            TIMESTAMPTZ,
            &[
                "2024-01-01 03:00:00.5+00",
                "2024-01-01 03:00:00+00",
                "2024-01-01 03:00:00.5+05:30",
                "1999-12-31 23:00:00-01",
                "0001-01-01 00:00:00+00 BC",
                "infinity",
                "-infinity",
                "2024-01-01 03:00:00",
                "2024-02-30 03:00:00+00",
                "2024-01-01 03:00:00.000+00",
                "2024-01-01 03:00:00+00:00",
            ],
        ),
        (
            1007,
            &["{1,2,NULL}", "{}", "[0:1]={1,2}", "{{1},{2}}", "{bad"],
        ),
        (1009, &[r#"{a,"b \"c\"",NULL}"#]),
        (UUID, &["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
    ];
    for (type_oid, texts) in cases {
        for text in *texts {
            assert_same(*type_oid, text.as_bytes());
        }
    }
}

#[test]
fn non_utf8_text_is_kept_lossily_unless_trusted() {
    for type_oid in [
        oid::TEXT,
        oid::INT4,
        oid::DATE,
        oid::JSONB,
        oid::TIMESTAMPTZ,
        1009,
    ] {
        assert_same(type_oid, b"caf\xe9 \xff\"");
    }
    // Trusted text is not checked: the bytes go out as they came (a UTF8 server never
    // sends such text).
    let mut out = Vec::new();
    write_value(
        &mut out,
        ValueKind::TEXT,
        TupleColumn::Text(b"caf\xe9"),
        true,
    );
    assert_eq!(out, b"\"caf\xe9\"");
}

#[test]
fn null_unchanged_and_binary_columns_match_the_typed_path() {
    for column in [
        TupleColumn::Null,
        TupleColumn::UnchangedToast,
        TupleColumn::Binary(b"\x00\xff"),
    ] {
        let kind = ValueKind::for_type(oid::INT4);
        assert_eq!(fast(kind, column, true), typed(kind, column));
    }
}

#[test]
fn integers_are_written_without_fmt_as_fmt_would() {
    let mut rng = fastrand::Rng::with_seed(11);
    let edges = [
        0,
        9,
        10,
        99,
        100,
        999,
        1000,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ];
    for n in edges
        .into_iter()
        .chain((0..10_000).map(|_| rng.u64(..) >> rng.u32(0..64)))
    {
        let mut out = Vec::new();
        write_u64(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}

// ------------------------------------------------------------------------------------------
// Whole images and records, decoded from hand-built pgoutput messages.

const REL: u32 = 16384;

#[derive(Debug, Clone)]
enum Col {
    Text(Vec<u8>),
    Null,
    Toast,
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

fn tuple(b: &mut BytesMut, cols: &[Col]) {
    b.put_i16(cols.len() as i16);
    for c in cols {
        match c {
            Col::Text(t) => {
                b.put_u8(b't');
                b.put_i32(t.len() as i32);
                b.put_slice(t);
            }
            Col::Null => b.put_u8(b'n'),
            Col::Toast => b.put_u8(b'u'),
        }
    }
}

/// A relation `s"x.t"` with the given (name, type, is key) columns and identity.
fn relation(columns: &Columns, identity: u8) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(REL);
    cstr(&mut b, "s\"x");
    cstr(&mut b, "t");
    b.put_u8(identity);
    b.put_i16(columns.len() as i16);
    for (name, type_oid, key) in columns {
        b.put_u8(u8::from(*key));
        cstr(&mut b, name);
        b.put_u32(*type_oid);
        b.put_i32(-1);
    }
    b.freeze()
}

fn update(old: Option<(u8, &[Col])>, new: &[Col]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'U');
    b.put_u32(REL);
    if let Some((kind, cols)) = old {
        b.put_u8(kind);
        tuple(&mut b, cols);
    }
    b.put_u8(b'N');
    tuple(&mut b, new);
    b.freeze()
}

fn transaction(messages: Vec<Bytes>, utf8: bool) -> Vec<Record> {
    let mut decoder = Decoder::new(DecoderOptions {
        server_utf8: utf8,
        group: Some("g".into()),
        ..DecoderOptions::default()
    });
    let mut begin = BytesMut::new();
    begin.put_u8(b'B');
    begin.put_u64(0x1_0000_0028);
    begin.put_i64(820_551_845_123_456);
    begin.put_u32(4_000_000_000);
    let mut commit = BytesMut::new();
    commit.put_u8(b'C');
    commit.put_u8(0);
    commit.put_u64(0x1_0000_0028);
    commit.put_u64(0x1_0000_0050);
    commit.put_i64(820_551_845_123_456);
    let mut out = Vec::new();
    for m in [begin.freeze()]
        .into_iter()
        .chain(messages)
        .chain([commit.freeze()])
    {
        decoder.feed(m).unwrap();
        while let Some(change) = decoder.next_change().unwrap() {
            if let Change::Record(r) = change {
                out.push(r);
            }
        }
    }
    out
}

/// Every image of `record`, and its line, written both ways.
fn assert_images_match(record: &Record) -> Result<(), TestCaseError> {
    let mut line = Vec::new();
    write_line(&mut line, record);
    let mut expected = serde_json::to_vec(record).unwrap();
    expected.push(b'\n');
    prop_assert_eq!(
        String::from_utf8_lossy(&line),
        String::from_utf8_lossy(&expected)
    );
    let before = record.before();
    for image in [record.key(), before.image(), record.current()]
        .into_iter()
        .flatten()
    {
        let mut out = Vec::new();
        write_image(&mut out, &image);
        prop_assert_eq!(
            String::from_utf8_lossy(&out),
            serde_json::to_string(&image).unwrap()
        );
    }
    Ok(())
}

/// Text a column of `type_oid` might carry: what the server prints, near misses, and noise.
fn text_for(type_oid: u32) -> BoxedStrategy<Vec<u8>> {
    let noise = prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        "[ -~\\n\\t\"\\\\é😀\u{1}]{0,24}".prop_map(String::into_bytes),
    ];
    let shaped: BoxedStrategy<String> = match type_oid {
        oid::BOOL => "[tf]|true".boxed(),
        oid::INT8 => prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[-+]?0*[0-9]{1,20}"].boxed(),
        oid::FLOAT8 => prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            "NaN|-?Infinity|-0|[0-9]{1,3}\\.[0-9]{0,3}(e[-+]?[0-9]{1,3})?",
        ]
        .boxed(),
        oid::DATE => prop_oneof![
            "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])( BC)?",
            "[0-9]{4,6}-[0-9]{2}-[0-9]{2}|-?infinity",
        ]
        .boxed(),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-4]):[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,7})?(\\+00|-03|\\+05:30|\\+00:00)?( BC)?|-?infinity"
                .boxed()
        }
        oid::JSONB => any::<Vec<(String, Option<i32>)>>()
            .prop_map(|pairs| {
                let map: serde_json::Map<_, _> = pairs
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::json!(v)))
                    .collect();
                serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap()
            })
            .boxed(),
        1007 => "\\{([0-9]{1,3}|NULL)(,([0-9]{1,3}|NULL)){0,3}\\}".boxed(),
        _ => "[ -~é\\n]{0,12}".boxed(),
    };
    prop_oneof![3 => shaped.prop_map(String::into_bytes), 1 => noise].boxed()
}

const TYPES: &[u32] = &[
    oid::BOOL,
    oid::INT8,
    oid::FLOAT8,
    oid::DATE,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::JSONB,
    oid::TEXT,
    oid::BYTEA,
    1007,
];

/// A relation's columns: name, type, whether it is a key column.
type Columns = Vec<(String, u32, bool)>;

/// A random relation and an update of one of its rows (old and new value per column).
fn row() -> impl Strategy<Value = (Columns, Vec<(Col, Col)>)> {
    prop::collection::vec(
        (
            "[a-z\"é\\\\ ]{1,6}",
            prop::sample::select(TYPES),
            any::<bool>(),
        )
            .prop_flat_map(|(name, type_oid, key)| {
                let value = move || {
                    prop_oneof![
                        6 => text_for(type_oid).prop_map(Col::Text),
                        1 => Just(Col::Null),
                        1 => Just(Col::Toast),
                    ]
                };
                (Just((name, type_oid, key)), value(), value())
            }),
        1..8,
    )
    .prop_map(|columns| {
        columns
            .into_iter()
            .map(|(meta, old, new)| (meta, (old, new)))
            .unzip()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_values_match_the_typed_path(
        type_oid in prop::sample::select(TYPES),
        bytes in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let kind = ValueKind::for_type(type_oid);
        let column = TupleColumn::Text(&bytes);
        prop_assert_eq!(fast(kind, column, false), typed(kind, column));
    }

    #[test]
    fn random_shaped_values_match_the_typed_path(
        (type_oid, text) in prop::sample::select(TYPES).prop_flat_map(|t| (Just(t), text_for(t))),
    ) {
        let kind = ValueKind::for_type(type_oid);
        let column = TupleColumn::Text(&text);
        let expected = typed(kind, column);
        prop_assert_eq!(fast(kind, column, false), expected.clone());
        // Trusting UTF-8 holds only for what a UTF8 server sends: valid text, and for json
        // the documents json_out prints.
        let server_could_send = std::str::from_utf8(&text).is_ok()
            && (kind.scalar() != ScalarKind::Json
                || serde_json::from_slice::<&serde_json::value::RawValue>(&text).is_ok());
        if server_could_send {
            prop_assert_eq!(fast(kind, column, true), expected);
        }
    }

    #[test]
    fn random_rows_match_the_typed_path((columns, values) in row(), full in any::<bool>()) {
        let (old, new): (Vec<Col>, Vec<Col>) = values.into_iter().unzip();
        // An old tuple never carries unchanged TOAST values; a key tuple only keys.
        let old: Vec<Col> = old
            .into_iter()
            .zip(&columns)
            .map(|(c, (_, _, key))| match c {
                Col::Toast => Col::Null,
                _ if !full && !key => Col::Null,
                c => c,
            })
            .collect();
        let identity = if full { b'f' } else { b'd' };
        let old_kind = if full { b'O' } else { b'K' };
        let utf8 = old.iter().chain(&new).all(|c| match c {
            Col::Text(t) => std::str::from_utf8(t).is_ok(),
            _ => true,
        }) && !columns.iter().any(|(_, t, _)| *t == oid::JSONB);
        let records = transaction(
            vec![
                relation(&columns, identity),
                update(Some((old_kind, &old)), &new),
                update(None, &new),
            ],
            utf8,
        );
        prop_assert_eq!(records.len(), 2);
        for record in &records {
            assert_images_match(record)?;
        }
    }
}

#[test]
fn line_buffer_writes_a_poll_with_one_write() {
    struct Writes(Vec<usize>);
    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let columns = vec![("id".to_owned(), oid::INT8, true)];
    let records = transaction(
        vec![
            relation(&columns, b'd'),
            update(None, &[Col::Text(b"1".to_vec())]),
            update(None, &[Col::Text(b"2".to_vec())]),
        ],
        true,
    );
    let mut lines = LineBuffer::new();
    for record in &records {
        lines.push(record);
    }
    let text = String::from_utf8(lines.as_bytes().to_vec()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with(r#"{"event_id":"1/28:0","group":"g","partition":0,"table":"s\"x.t","op":"update","commit_lsn":"1/28","commit_time":"2026-01-01T03:04:05.123456Z","xid":4000000000,"key":{"id":1}"#), "{text}");
    let mut sink = Writes(Vec::new());
    lines.write_to(&mut sink).unwrap();
    assert_eq!(sink.0, vec![text.len()]);
    assert!(lines.as_bytes().is_empty());
}

#[test]
fn lines_name_the_partition_and_no_group_outside_one() {
    let columns = vec![("id".to_owned(), oid::INT8, true)];
    let mut records = transaction(
        vec![
            relation(&columns, b'd'),
            update(None, &[Col::Text(b"1".to_vec())]),
        ],
        true,
    );
    let mut record = records.remove(0);
    record.set_partition(Some(crate::decode::record::PartitionId::new(3)));
    let mut line = Vec::new();
    write_line(&mut line, &record);
    let text = String::from_utf8(line).unwrap();
    assert!(
        text.starts_with(r#"{"event_id":"1/28:3:0","group":"g","partition":3,"#),
        "{text}"
    );
    assert_eq!(text.trim_end(), serde_json::to_string(&record).unwrap());

    // Decoded outside a consumer group: `"group":null`.
    let mut decoder = Decoder::new(DecoderOptions::default());
    let mut begin = BytesMut::new();
    begin.put_u8(b'B');
    begin.put_u64(0x28);
    begin.put_i64(0);
    begin.put_u32(7);
    decoder.feed(begin.freeze()).unwrap();
    decoder.feed(relation(&columns, b'd')).unwrap();
    decoder
        .feed(update(None, &[Col::Text(b"2".to_vec())]))
        .unwrap();
    let mut commit = BytesMut::new();
    commit.put_u8(b'C');
    commit.put_u8(0);
    commit.put_u64(0x28);
    commit.put_u64(0x50);
    commit.put_i64(0);
    decoder.feed(commit.freeze()).unwrap();
    let mut record = None;
    while let Some(change) = decoder.next_change().unwrap() {
        if let Change::Record(r) = change {
            record = Some(r);
        }
    }
    let record = record.expect("the update");
    let mut line = Vec::new();
    write_line(&mut line, &record);
    let text = String::from_utf8(line).unwrap();
    assert!(
        text.starts_with(r#"{"event_id":"0/28:0","group":null,"partition":0,"#),
        "{text}"
    );
    assert_eq!(text.trim_end(), serde_json::to_string(&record).unwrap());
}

/// A record through a serde format other than JSON (CBOR): every value comes back exactly —
/// numeric and float digits and json documents as their text, strings, nulls, arrays.
#[test]
fn other_serde_formats_keep_values_exact() {
    use ciborium::Value as Cbor;

    let numeric = "123456789012345678901234567890.000100";
    let document = r#"{"b": [1, 2.50, 1e400], "a": null}"#;
    let columns = vec![
        ("id".to_owned(), oid::INT8, true),
        ("n".to_owned(), oid::NUMERIC, false),
        ("f".to_owned(), oid::FLOAT8, false),
        ("nan".to_owned(), oid::FLOAT8, false),
        ("doc".to_owned(), oid::JSONB, false),
        ("s".to_owned(), oid::TEXT, false),
        ("z".to_owned(), oid::TEXT, false),
        ("ns".to_owned(), 1231, false), // numeric[]
        ("at".to_owned(), oid::TIMESTAMPTZ, false),
    ];
    let row = [
        "7",
        numeric,
        "1e-300",
        "NaN",
        document,
        "é \"q\"",
        "",
        "{1.50,NULL,-0}",
        "2024-01-01 03:00:00.5+00",
    ];
    let new: Vec<Col> = row
        .iter()
        .map(|t| match *t {
            "" => Col::Null,
            t => Col::Text(t.as_bytes().to_vec()),
        })
        .collect();
    let records = transaction(vec![relation(&columns, b'd'), update(None, &new)], true);
    let record = &records[0];

    let mut cbor = Vec::new();
    ciborium::into_writer(record, &mut cbor).unwrap();
    let back: Cbor = ciborium::from_reader(cbor.as_slice()).unwrap();
    let field = |map: &Cbor, name: &str| -> Cbor {
        map.as_map()
            .unwrap_or_else(|| panic!("a map: {map:?}"))
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {map:?}"))
    };
    let text = |s: &str| Cbor::Text(s.to_owned());
    assert_eq!(field(&back, "event_id"), text("1/28:0"));
    assert_eq!(field(&back, "group"), text("g"));
    assert_eq!(field(&back, "partition"), Cbor::Integer(0.into()));
    assert_eq!(field(&back, "table"), text("s\"x.t"));
    assert_eq!(field(&back, "op"), text("update"));
    assert_eq!(field(&back, "xid"), Cbor::Integer(4_000_000_000u32.into()));
    assert_eq!(field(&back, "before"), Cbor::Null);
    assert_eq!(field(&back, "before_image"), text("not_enabled"));
    assert_eq!(
        field(&back, "key"),
        Cbor::Map(vec![(text("id"), Cbor::Integer(7.into()))])
    );
    let after = field(&back, "after");
    assert_eq!(field(&after, "id"), Cbor::Integer(7.into()));
    assert_eq!(field(&after, "n"), text(numeric));
    assert_eq!(field(&after, "f"), text("1e-300"));
    assert_eq!(field(&after, "nan"), text("NaN"));
    assert_eq!(field(&after, "doc"), text(document));
    assert_eq!(field(&after, "s"), text("é \"q\""));
    assert_eq!(field(&after, "z"), Cbor::Null);
    assert_eq!(
        field(&after, "ns"),
        Cbor::Array(vec![text("1.50"), Cbor::Null, text("-0")])
    );
    assert_eq!(field(&after, "at"), text("2024-01-01T03:00:00.5Z"));
    // Every column is there, in order.
    let names: Vec<_> = after
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        columns.iter().map(|c| c.0.clone()).collect::<Vec<_>>()
    );

    // Through serde_json the same record has numbers and an embedded document.
    let line = serde_json::to_string(record).unwrap();
    assert!(
        line.contains(&format!(
            r#""n":{numeric},"f":1e-300,"nan":"NaN","doc":{document},"#
        )),
        "{line}"
    );
}
