//! Unit tests of value decoding, per type, from the text PostgreSQL prints.

use proptest::prelude::*;

use super::*;
use crate::decode::types::oid;

/// The JSON text `Value::decode` + serde produce for `text` of type `type_oid`.
fn json_of(type_oid: u32, text: &str) -> String {
    let value = Value::from_text(ValueKind::for_type(type_oid), text);
    let json = serde_json::to_string(&value).expect("serialises");
    // The two serde_json routes agree: `to_value` is the text parsed (where serde_json can
    // parse it: not beyond f64's range).
    if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(&json) {
        assert_eq!(
            serde_json::to_value(&value).expect("serialises"),
            parsed,
            "to_value and to_string differ for {text:?}"
        );
    }
    json
}

fn array_kind(element: ScalarKind) -> ValueKind {
    ValueKind::Array {
        element,
        delimiter: b',',
    }
}

#[test]
fn null_and_unchanged_are_distinct() {
    assert!(Value::Null.is_null());
    assert!(!Value::Null.is_unchanged());
    assert!(Value::Unchanged.is_unchanged());
    assert!(!Value::Unchanged.is_null());
    assert_eq!(
        serde_json::to_string(&Value::Null).expect("serialises"),
        "null"
    );
    assert_eq!(
        serde_json::to_string(&Value::Unchanged).expect("serialises"),
        format!("\"{UNCHANGED_TOAST}\"")
    );
}

#[test]
fn bool() {
    assert_eq!(json_of(oid::BOOL, "t"), "true");
    assert_eq!(json_of(oid::BOOL, "f"), "false");
    assert_eq!(
        Value::from_text(ValueKind::for_type(oid::BOOL), "t").as_bool(),
        Some(true)
    );
    // Not what boolout prints: kept as text.
    assert_eq!(json_of(oid::BOOL, "true"), "\"true\"");
}

#[test]
fn integers() {
    assert_eq!(json_of(oid::INT2, "-32768"), "-32768");
    assert_eq!(json_of(oid::INT4, "2147483647"), "2147483647");
    assert_eq!(
        json_of(oid::INT8, "-9223372036854775808"),
        "-9223372036854775808"
    );
    assert_eq!(
        json_of(oid::INT8, "9223372036854775807"),
        "9223372036854775807"
    );
    // Like to_jsonb, oid is an identifier: a string.
    assert_eq!(json_of(oid::OID, "4294967295"), "\"4294967295\"");
    let v = Value::from_text(ValueKind::for_type(oid::INT8), "-42");
    assert_eq!(v.as_i64(), Some(-42));
    assert_eq!(v.as_f64(), Some(-42.0));
    assert_eq!(v.as_str(), None);
    // Malformed and out-of-range text is kept as a string.
    assert_eq!(json_of(oid::INT4, "abc"), "\"abc\"");
    assert_eq!(
        json_of(oid::INT8, "9223372036854775808"),
        "\"9223372036854775808\""
    );
    assert_eq!(json_of(oid::INT4, ""), "\"\"");
}

#[test]
fn floats_keep_their_digits_and_specials_are_strings() {
    assert_eq!(json_of(oid::FLOAT8, "0.1"), "0.1");
    assert_eq!(json_of(oid::FLOAT8, "1e-300"), "1e-300");
    assert_eq!(
        json_of(oid::FLOAT8, "1.7976931348623157e+308"),
        "1.7976931348623157e+308"
    );
    assert_eq!(json_of(oid::FLOAT8, "5e-324"), "5e-324");
    assert_eq!(json_of(oid::FLOAT8, "-0"), "-0");
    assert_eq!(json_of(oid::FLOAT4, "3.4028235e+38"), "3.4028235e+38");
    assert_eq!(json_of(oid::FLOAT8, "NaN"), "\"NaN\"");
    assert_eq!(json_of(oid::FLOAT8, "Infinity"), "\"Infinity\"");
    assert_eq!(json_of(oid::FLOAT4, "-Infinity"), "\"-Infinity\"");
    let v = Value::from_text(ValueKind::for_type(oid::FLOAT8), "-Infinity");
    assert_eq!(v.as_f64(), Some(f64::NEG_INFINITY));
    assert!(Value::from_text(ValueKind::for_type(oid::FLOAT8), "NaN")
        .as_f64()
        .is_some_and(f64::is_nan));
    assert_eq!(
        Value::from_text(ValueKind::for_type(oid::FLOAT4), "0.1").as_f64(),
        Some(0.1)
    );
    // Not a float as floatout prints it: text.
    assert_eq!(json_of(oid::FLOAT8, ".5"), "\".5\"");
    assert_eq!(json_of(oid::FLOAT8, "inf"), "\"inf\"");
    assert_eq!(json_of(oid::FLOAT8, "1e"), "\"1e\"");
}

#[test]
fn numerics_are_exact() {
    let big = "123456789012345678901234567890.000100";
    assert_eq!(json_of(oid::NUMERIC, big), big);
    let tiny = format!("0.{}1", "0".repeat(299));
    assert_eq!(json_of(oid::NUMERIC, &tiny), tiny);
    let huge = format!("1{}", "0".repeat(1000));
    assert_eq!(json_of(oid::NUMERIC, &huge), huge);
    assert_eq!(json_of(oid::NUMERIC, "-0.50"), "-0.50");
    assert_eq!(json_of(oid::NUMERIC, "NaN"), "\"NaN\"");
    assert_eq!(json_of(oid::NUMERIC, "Infinity"), "\"Infinity\"");
    assert_eq!(json_of(oid::NUMERIC, "-Infinity"), "\"-Infinity\"");
    let v = Value::from_text(ValueKind::for_type(oid::NUMERIC), "42");
    assert_eq!(v.as_i64(), Some(42));
    assert_eq!(v.as_str(), Some("42"));
    let v = Value::from_text(ValueKind::for_type(oid::NUMERIC), "1.5");
    assert_eq!(v.as_i64(), None);
    assert_eq!(v.as_f64(), Some(1.5));
    // Beyond f64's range serde_json cannot hold the number: to_value keeps the text.
    let v = Value::from_text(ValueKind::for_type(oid::NUMERIC), &huge);
    assert_eq!(serde_json::to_value(&v).unwrap(), serde_json::json!(huge));
}

#[test]
fn text_like_types_are_strings() {
    for (type_oid, text) in [
        (oid::TEXT, "it's \"quoted\" \\ back\nslash"),
        (oid::VARCHAR, ""),
        (oid::BPCHAR, "ab  "),
        (oid::NAME, "pg_class"),
        (oid::CHAR, "\u{1}"),
        (oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (oid::XML, "<a x=\"1\">é</a>"),
        (oid::INET, "192.168.0.1/24"),
        (oid::CIDR, "::1/128"),
        (oid::MACADDR, "08:00:2b:01:02:03"),
        (oid::MACADDR8, "08:00:2b:01:02:03:04:05"),
        (oid::MONEY, "-$1,234.56"),
        (oid::INTERVAL, "1 year 2 mons -3 days +04:05:06.5"),
        (oid::BIT, "101"),
        (oid::VARBIT, ""),
        (oid::PG_LSN, "16/B374D848"),
        (3904, "[1,5)"),         // int4range
        (99_999, "(1,\"a b\")"), // an unknown composite
        (oid::TEXT, "NULL"),
    ] {
        let v = Value::from_text(ValueKind::for_type(type_oid), text);
        assert_eq!(v.as_str(), Some(text), "{type_oid}");
        assert_eq!(
            json_of(type_oid, text),
            serde_json::to_string(text).expect("serialises")
        );
    }
}

#[test]
fn json_is_embedded() {
    let text = r#"{"a": [1, 2.50, 1e400, null], "b": {"c": "é\u00e9\ud83d\ude00"}}"#;
    assert_eq!(json_of(oid::JSONB, text), text);
    assert_eq!(json_of(oid::JSON, "\"s\""), "\"s\"");
    assert_eq!(json_of(oid::JSON, "[]"), "[]");
    let v = Value::from_text(ValueKind::for_type(oid::JSON), text);
    assert_eq!(v.as_json().map(RawValue::get), Some(text));
    // serde_json cannot hold 1e400: to_value keeps the document's text.
    assert_eq!(serde_json::to_value(&v).unwrap(), serde_json::json!(text));
    let v = Value::from_text(ValueKind::for_type(oid::JSON), r#"{"a": [1, 2.50]}"#);
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        serde_json::json!({"a": [1, 2.5]})
    );
    // Invalid JSON cannot be embedded: kept as a string.
    assert_eq!(json_of(oid::JSON, "{"), "\"{\"");
}

#[test]
fn bytea_is_hex_text() {
    assert_eq!(json_of(oid::BYTEA, "\\x00ff10"), "\"\\\\x00ff10\"");
    let v = Value::from_text(ValueKind::for_type(oid::BYTEA), "\\x00ff10");
    assert_eq!(v.bytea_bytes(), Some(vec![0, 255, 16]));
    assert_eq!(
        Value::from_text(ValueKind::for_type(oid::BYTEA), "\\x").bytea_bytes(),
        Some(vec![])
    );
    assert_eq!(
        Value::from_text(ValueKind::for_type(oid::BYTEA), "\\x0").bytea_bytes(),
        None
    );
    assert_eq!(
        Value::from_text(ValueKind::for_type(oid::BYTEA), "\\xzz").bytea_bytes(),
        None
    );
}

#[test]
fn dates() {
    for text in [
        "2024-02-29",
        "0001-01-01 BC",
        "4713-01-01 BC",
        "5874897-12-31",
        "infinity",
        "-infinity",
        "2000-02-29",
        "0004-02-29 BC", // 4 BC is astronomical -3: not a leap year...
    ]
    .into_iter()
    .filter(|t| *t != "0004-02-29 BC")
    {
        assert_eq!(json_of(oid::DATE, text), format!("\"{text}\""));
        assert!(matches!(
            Value::from_text(ValueKind::for_type(oid::DATE), text),
            Value::Date(_)
        ));
    }
    // ...but 1 BC and 5 BC are (astronomical 0 and -4).
    let leap_bc = Value::from_text(ValueKind::for_type(oid::DATE), "0005-02-29 BC");
    assert!(matches!(leap_bc, Value::Date(d) if d.ymd() == Some((-4, 2, 29))));
    for bad in [
        "2023-02-29",
        "1900-02-29",
        "0004-02-29 BC",
        "2024-13-01",
        "0000-01-01",
        "24-01-01",
    ] {
        assert!(
            matches!(
                Value::from_text(ValueKind::for_type(oid::DATE), bad),
                Value::Text(_)
            ),
            "{bad}"
        );
    }
}

#[test]
fn times_are_kept_as_printed() {
    for text in ["00:00:00", "12:00:00.5", "24:00:00", "23:59:59.999999"] {
        let v = Value::from_text(ValueKind::for_type(oid::TIME), text);
        assert!(matches!(v, Value::Time(_)), "{text}");
        assert_eq!(json_of(oid::TIME, text), format!("\"{text}\""));
    }
    for text in ["12:00:00+00", "12:00:00.5+05:30", "24:00:00-15:59:59"] {
        let v = Value::from_text(ValueKind::for_type(oid::TIMETZ), text);
        assert!(matches!(v, Value::TimeTz(_)), "{text}");
        assert_eq!(json_of(oid::TIMETZ, text), format!("\"{text}\""));
    }
    assert!(matches!(
        Value::from_text(ValueKind::for_type(oid::TIME), "12:00:00+00"),
        Value::Text(_)
    ));
    assert!(matches!(
        Value::from_text(ValueKind::for_type(oid::TIMETZ), "12:00:00"),
        Value::Text(_)
    ));
}

#[test]
fn timestamps_are_iso() {
    for (text, json) in [
        ("2024-01-01 12:00:00", "2024-01-01T12:00:00"),
        ("2024-01-01 12:00:00.5", "2024-01-01T12:00:00.5"),
        ("2024-02-29 23:59:59.999999", "2024-02-29T23:59:59.999999"),
        ("2024-02-29 23:59:59.00001", "2024-02-29T23:59:59.00001"),
        ("0001-01-01 00:00:00.5 BC", "0001-01-01T00:00:00.5 BC"),
        ("294276-12-31 23:59:59", "294276-12-31T23:59:59"),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
    ] {
        assert_eq!(json_of(oid::TIMESTAMP, text), format!("\"{json}\""));
    }
    // The latest timestamps do not fit i64 microseconds from 1970: None, not a panic.
    let v = Value::from_text(ValueKind::for_type(oid::TIMESTAMP), "294276-12-31 23:59:59");
    assert!(matches!(v, Value::Timestamp(ts) if ts.unix_micros().is_none()));
    let v = Value::from_text(
        ValueKind::for_type(oid::TIMESTAMP),
        "999999999-12-31 23:59:59",
    );
    assert!(matches!(v, Value::Timestamp(ts) if ts.unix_micros().is_none()));
    let v = Value::from_text(ValueKind::for_type(oid::TIMESTAMP), "1970-01-02 00:00:01.5");
    assert!(matches!(v, Value::Timestamp(ts) if ts.unix_micros() == Some(86_401_500_000)));
    for bad in [
        "2024-01-01T12:00:00",
        "2024-01-01 24:00:00",
        "2024-01-01 12:00",
        "2024-01-01 12:00:00+00",
    ] {
        assert!(
            matches!(
                Value::from_text(ValueKind::for_type(oid::TIMESTAMP), bad),
                Value::Text(_)
            ),
            "{bad}"
        );
    }
}

#[test]
fn timestamptz_is_converted_to_utc() {
    for (text, json) in [
        ("2024-01-01 12:00:00.5+00", "2024-01-01T12:00:00.5Z"),
        ("2024-01-01 03:00:00+05:30", "2023-12-31T21:30:00Z"),
        ("2023-12-31 22:00:00-03", "2024-01-01T01:00:00Z"),
        ("2024-02-28 23:00:00-02", "2024-02-29T01:00:00Z"),
        ("2023-02-28 23:00:00-02", "2023-03-01T01:00:00Z"),
        ("2024-03-01 00:00:00.25+00:00:01", "2024-02-29T23:59:59.25Z"),
        ("1900-01-01 05:21:10+05:21:10", "1900-01-01T00:00:00Z"),
        (
            "0001-01-01 00:00:00.5+05:53:28 BC",
            "0002-12-31T18:06:32.5Z BC",
        ),
        ("0001-12-31 23:00:00-01 BC", "0001-01-01T00:00:00Z"),
        // UTC's `+00` is read on its own: not when more of an offset follows.
        ("2024-01-01 00:10:00+00:30", "2023-12-31T23:40:00Z"),
        ("2024-01-01 00:00:00+00:00:01", "2023-12-31T23:59:59Z"),
        ("0044-03-15 12:00:00+00 BC", "0044-03-15T12:00:00Z BC"),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
    ] {
        assert_eq!(
            json_of(oid::TIMESTAMPTZ, text),
            format!("\"{json}\""),
            "{text}"
        );
    }
    let v = Value::from_text(
        ValueKind::for_type(oid::TIMESTAMPTZ),
        "1970-01-01 01:00:00+01",
    );
    assert!(matches!(v, Value::TimestampTz(ts) if ts.unix_micros() == Some(0)));
    // An offset is required.
    assert!(matches!(
        Value::from_text(ValueKind::for_type(oid::TIMESTAMPTZ), "2024-01-01 12:00:00"),
        Value::Text(_)
    ));
}

#[test]
fn arrays() {
    assert_eq!(json_of(1007, "{1,NULL,3}"), "[1,null,3]");
    assert_eq!(json_of(1007, "{}"), "[]");
    assert_eq!(json_of(1007, "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
    assert_eq!(json_of(1007, "[0:1]={1,2}"), "[1,2]");
    assert_eq!(json_of(1007, "[-2:-1][1:2]={{1,2},{3,4}}"), "[[1,2],[3,4]]");
    assert_eq!(json_of(1007, "{{{NULL}}}"), "[[[null]]]");
    assert_eq!(
        json_of(1009, r#"{"a\"b","{","","NULL",NULL," x ","a\\b",null,é}"#),
        r#"["a\"b","{","","NULL",null," x ","a\\b",null,"é"]"#
    );
    assert_eq!(json_of(1009, "{ a b , c }"), r#"["a b","c"]"#);
    assert_eq!(
        json_of(1020, "{(1,2),(0,0);(3,3),(1,1)}"),
        r#"["(1,2),(0,0)","(3,3),(1,1)"]"#
    );
    assert_eq!(
        json_of(3807, r#"{"{\"a\": 1}",NULL,"\"s\"",3}"#),
        r#"[{"a": 1},null,"s",3]"#
    );
    assert_eq!(
        json_of(
            1185,
            r#"{"2024-01-01 00:00:00+00","2024-01-01 00:00:00-01",infinity}"#
        ),
        r#"["2024-01-01T00:00:00Z","2024-01-01T01:00:00Z","infinity"]"#
    );
    assert_eq!(
        json_of(1231, "{1.50,NaN,-Infinity}"),
        r#"[1.50,"NaN","-Infinity"]"#
    );
    assert_eq!(json_of(1000, "{t,f}"), "[true,false]");
    assert_eq!(json_of(1001, r#"{"\\x00ff"}"#), r#"["\\x00ff"]"#);
    // A malformed element is kept as a string inside the array.
    assert_eq!(json_of(1007, "{1,x}"), r#"[1,"x"]"#);
    let v = Value::from_text(ValueKind::for_type(1007), "{1,2}");
    assert_eq!(v.as_array().map(<[Value]>::len), Some(2));
}

#[test]
fn broken_array_literals_are_kept_as_text() {
    for bad in [
        "", "{", "}", "{1,2", "{1,,2}", "{,}", "{1}}", "{1} x", "{\"a}", "{\"a\"b}", "{a\"b}",
        "{{1}", "[0:1]{1}", "[0:]={1}", "1,2", "{1,}", "{\\", "{a\\",
    ] {
        let v = Value::from_text(ValueKind::for_type(1007), bad);
        assert!(matches!(&v, Value::Text(t) if t == bad), "{bad:?}: {v:?}");
    }
    let bomb = format!("{}{}", "{".repeat(100_000), "}".repeat(100_000));
    assert!(matches!(
        Value::from_text(ValueKind::for_type(1007), &bomb),
        Value::Text(_)
    ));
}

#[test]
fn invalid_utf8_is_an_error() {
    assert_eq!(
        Value::decode(ValueKind::TEXT, b"\xff").expect_err("not UTF-8"),
        DecodeError::InvalidUtf8 {
            what: "column value"
        }
    );
    assert!(Value::decode(ValueKind::TEXT, "é".as_bytes()).is_ok());
}

#[test]
fn into_owned_outlives_the_buffer() {
    let owned = {
        let buffer = String::from(r#"{"x\"y","{\"a\":1}"}"#);
        let value = Value::from_text(array_kind(ScalarKind::Text), &buffer);
        value.into_owned()
    };
    assert_eq!(
        serde_json::to_string(&owned).unwrap(),
        r#"["x\"y","{\"a\":1}"]"#
    );
}

/// Formats a string as `array_out` would: quoted when empty, the word NULL, or containing
/// a special character; `"` and `\` backslash-escaped inside quotes.
fn pg_quote(s: &str, delimiter: u8) -> String {
    let needs_quotes = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes().any(|b| {
            matches!(b, b'"' | b'\\' | b'{' | b'}') || b == delimiter || is_array_space(b)
        });
    if !needs_quotes {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[derive(Debug, Clone)]
enum Tree {
    Leaf(Option<String>),
    Node(Vec<Tree>),
}

fn pg_format(tree: &Tree, delimiter: u8) -> String {
    match tree {
        Tree::Leaf(None) => "NULL".to_owned(),
        Tree::Leaf(Some(s)) => pg_quote(s, delimiter),
        Tree::Node(items) => {
            let parts: Vec<String> = items.iter().map(|t| pg_format(t, delimiter)).collect();
            format!("{{{}}}", parts.join(&char::from(delimiter).to_string()))
        }
    }
}

fn expected_json(tree: &Tree) -> serde_json::Value {
    match tree {
        Tree::Leaf(None) => serde_json::Value::Null,
        Tree::Leaf(Some(s)) => serde_json::Value::String(s.clone()),
        Tree::Node(items) => serde_json::Value::Array(items.iter().map(expected_json).collect()),
    }
}

fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("NULL".to_owned()),
        Just("null".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        "[a-c{}\",;\\\\ \t\nNUL]{0,8}",
        "\\PC{0,6}",
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop::option::weighted(0.85, nasty_string()).prop_map(Tree::Leaf);
    // One level of leaves, or nested levels of sub-arrays (PostgreSQL never mixes the two).
    let flat = prop::collection::vec(leaf, 0..6).prop_map(Tree::Node);
    flat.prop_recursive(3, 40, 4, |inner| {
        prop::collection::vec(inner, 1..4).prop_map(Tree::Node)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn array_literals_round_trip(tree in tree(), semicolon in any::<bool>()) {
        let delimiter = if semicolon { b';' } else { b',' };
        let literal = pg_format(&tree, delimiter);
        let kind = ValueKind::Array { element: ScalarKind::Text, delimiter };
        let value = Value::from_text(kind, &literal);
        prop_assert!(matches!(value, Value::Array(_)), "{literal}");
        prop_assert_eq!(serde_json::to_value(&value).unwrap(), expected_json(&tree), "{}", literal);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for type_oid in [16, 17, 20, 25, 114, 700, 1082, 1083, 1114, 1184, 1266, 1700, 1007, 1009, 1020, 3807, 1185] {
            if let Ok(value) = Value::decode(ValueKind::for_type(type_oid), &bytes) {
                let _ = serde_json::to_string(&value);
                let _ = serde_json::to_value(&value);
                let _ = (value.as_i64(), value.as_f64(), value.bytea_bytes());
                if let Value::Timestamp(ts) | Value::TimestampTz(ts) = value {
                    let _ = ts.unix_micros();
                }
            }
        }
    }

    #[test]
    fn array_shaped_garbage_never_panics(text in "[{}\",;\\\\ a1N\\[\\]:=-é]{0,40}") {
        for type_oid in [1007, 1009, 1020, 3807, 1185] {
            let value = Value::from_text(ValueKind::for_type(type_oid), &text);
            let _ = serde_json::to_string(&value);
        }
    }

    #[test]
    fn serialised_dates_and_timestamps_equal_their_display(
        days in -1_000_000i64..100_000_000,
        seconds in 0u32..86_400,
        micros in 0u32..1_000_000,
    ) {
        // Serialising takes a formatting shortcut for years 1..=9999; its text must be the
        // Display text for every date, inside that range and outside it.
        let ymd = Ymd::from_days(days);
        prop_assume!(ymd.year >= -4712 && ymd.year <= 294_276);
        let (year, bc) = if ymd.year <= 0 { (1 - ymd.year, " BC") } else { (ymd.year, "") };
        let date = format!("{year:04}-{:02}-{:02}", ymd.month, ymd.day);
        let time = format!(
            "{:02}:{:02}:{:02}.{micros:06}", seconds / 3600, seconds / 60 % 60, seconds % 60
        );
        for (type_oid, text) in [
            (oid::DATE, format!("{date}{bc}")),
            (oid::TIMESTAMP, format!("{date} {time}{bc}")),
            (oid::TIMESTAMPTZ, format!("{date} {time}+00{bc}")),
        ] {
            let value = Value::from_text(ValueKind::for_type(type_oid), &text);
            let display = match &value {
                Value::Date(d) => d.to_string(),
                Value::Timestamp(ts) | Value::TimestampTz(ts) => ts.to_string(),
                other => return Err(TestCaseError::fail(format!("{text}: {other:?}"))),
            };
            prop_assert_eq!(serde_json::to_string(&value).unwrap(), format!("\"{display}\""));
        }
    }

    #[test]
    fn timestamptz_offsets_convert_like_arithmetic(
        days in -700_000i64..700_000,
        seconds in 0u32..86_400,
        micros in 0u32..1_000_000,
        offset in -57_599i64..57_600,
    ) {
        // A local time and offset printed as PostgreSQL would, then decoded: the UTC
        // instant must equal local - offset.
        let local = Ymd::from_days(days);
        prop_assume!(local.year >= -4712 && local.year <= 294_276);
        let (year, bc) = if local.year <= 0 { (1 - local.year, " BC") } else { (local.year, "") };
        let (sign, abs) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
        let text = format!(
            "{year:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06}{sign}{:02}:{:02}:{:02}{bc}",
            local.month, local.day, seconds / 3600, seconds / 60 % 60, seconds % 60,
            abs / 3600, abs / 60 % 60, abs % 60,
        );
        let value = Value::from_text(ValueKind::for_type(oid::TIMESTAMPTZ), &text);
        let Value::TimestampTz(ts) = value else {
            return Err(TestCaseError::fail(format!("{text} did not decode")));
        };
        let expected = (days * 86_400 + i64::from(seconds) - offset) * 1_000_000 + i64::from(micros);
        prop_assert_eq!(ts.unix_micros(), Some(expected), "{}", text);
        // And the printed form parses back to the same instant.
        let printed = ts.to_string().replace('T', " ").replacen('Z', "+00", 1);
        let back = Value::from_text(ValueKind::for_type(oid::TIMESTAMPTZ), &printed);
        prop_assert!(matches!(back, Value::TimestampTz(b) if b == ts), "{}", printed);
    }
}

#[test]
fn serde_json_serializers_are_recognised() {
    use serde_json::ser::{CompactFormatter, PrettyFormatter};
    type Writer<'a, F> = &'a mut serde_json::Serializer<&'a mut Vec<u8>, F>;
    assert_eq!(
        SerdeTarget::of::<Writer<'_, CompactFormatter>>(),
        SerdeTarget::JsonText
    );
    assert_eq!(
        SerdeTarget::of::<Writer<'_, PrettyFormatter<'_>>>(),
        SerdeTarget::JsonText
    );
    assert_eq!(
        SerdeTarget::of::<serde_json::value::Serializer>(),
        SerdeTarget::JsonValue
    );
    // And in use: digits verbatim, pretty or not; parsed by to_value.
    let n = Value::from_text(ValueKind::for_type(oid::NUMERIC), "1.50");
    assert_eq!(serde_json::to_string(&n).unwrap(), "1.50");
    assert_eq!(serde_json::to_string_pretty(&[&n]).unwrap(), "[\n  1.50\n]");
    assert_eq!(serde_json::to_value(&n).unwrap(), serde_json::json!(1.5));
}
