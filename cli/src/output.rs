//! The JSON line of `tail`: one object per record, fields always present and in this order:
//!
//! ```text
//! {"event_id":"<commit_lsn>:<index>","group":"G","partition":0,"table":"schema.name",
//!  "op":"insert|update|delete|truncate|read|message","commit_lsn":"X/Y",
//!  "commit_time":"2026-01-01T03:04:05.123456Z","xid":N,"key":{..}|null,"before":{..}|null,
//!  "after":{..}|null,"before_image":"full|key|not_enabled|not_applicable"}
//! ```
//!
//! then, only when they apply: `"unchanged":[..]` (TOASTed columns an update did not send
//! and no full before-image could fill; they are left out of `after`), for `message`
//! records `"prefix"` and `"content"` (UTF-8 text, else `\x` hex), and for `schema` records
//! `"columns":[..]` and `"previous_columns":[..]` (the library's
//! [`ColumnList`](pg_changestream::consumer::ColumnList) form; `key`, `before` and
//! `after` are null, `before_image` is `not_applicable`). A message has no table:
//! `"table":null`.
//!
//! `group` is the consumer group, `partition` the group partition the record came through
//! (0 in a group with one).
//!
//! The line is the library's serde form of a
//! [`Record`](pg_changestream::consumer::Record), written by its JSON writer
//! ([`pg_changestream::json::write_line`]) straight from pgoutput's text: the CLI,
//! the sinks and the Python binding print the same bytes. The records of a poll go into one
//! buffer and out with one write. The tests below hold the writer to serde_json over the
//! `Record`, byte for byte.

use std::io::{self, Write};

use pg_changestream::consumer::Record;
use pg_changestream::json::LineBuffer;

/// Writes `record` as one JSON line.
///
/// # Errors
/// Writing failed (e.g. stdout was closed).
pub fn write_record(out: &mut impl Write, record: &Record) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    lines.push(record);
    lines.write_to(out)
}

#[cfg(test)]
mod tests {
    //! Records are made by the library's decoder from hand-built pgoutput messages (protocol
    //! version 1), so every op, before-image kind and TOAST case is covered without a server.

    use bytes::{BufMut, Bytes, BytesMut};
    use pg_changestream::stream::{Change, Decoder, DecoderOptions};

    use super::*;

    const REL: u32 = 16384;
    const INT4: u32 = 23;
    const TEXT: u32 = 25;
    /// 2026-01-01T03:04:05.123456Z in microseconds since 2000-01-01.
    const TS: i64 = 820_551_845_123_456;

    enum Col<'a> {
        Text(&'a str),
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
                    b.put_slice(t.as_bytes());
                }
                Col::Null => b.put_u8(b'n'),
                Col::Toast => b.put_u8(b'u'),
            }
        }
    }

    fn begin(lsn: u64, xid: u32) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'B');
        b.put_u64(lsn);
        b.put_i64(TS);
        b.put_u32(xid);
        b.freeze()
    }

    /// `shop.orders (id int4 key, note text, n int4)` with the given replica identity.
    fn relation(identity: u8) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'R');
        b.put_u32(REL);
        cstr(&mut b, "shop");
        cstr(&mut b, "orders");
        b.put_u8(identity);
        b.put_i16(3);
        for (flags, name, ty) in [(1u8, "id", INT4), (0, "note", TEXT), (0, "n", INT4)] {
            b.put_u8(flags);
            cstr(&mut b, name);
            b.put_u32(ty);
            b.put_i32(-1);
        }
        b.freeze()
    }

    fn change(tag: u8, old: Option<(u8, &[Col])>, new: Option<&[Col]>) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_u32(REL);
        if let Some((kind, cols)) = old {
            b.put_u8(kind);
            tuple(&mut b, cols);
        }
        if let Some(cols) = new {
            b.put_u8(b'N');
            tuple(&mut b, cols);
        }
        b.freeze()
    }

    fn truncate() -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'T');
        b.put_u32(1);
        b.put_u8(0);
        b.put_u32(REL);
        b.freeze()
    }

    fn message(prefix: &str, content: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'M');
        b.put_u8(1);
        b.put_u64(0x0100_0000);
        cstr(&mut b, prefix);
        b.put_i32(content.len() as i32);
        b.put_slice(content);
        b.freeze()
    }

    fn commit(lsn: u64) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'C');
        b.put_u8(0);
        b.put_u64(lsn);
        b.put_u64(lsn + 0x28);
        b.put_i64(TS);
        b.freeze()
    }

    /// Decodes one transaction at commit LSN 0/1A2B3C4D for `group` and returns its records.
    fn decode_for(group: &str, messages: Vec<Bytes>) -> Vec<Record> {
        let mut decoder = Decoder::new(DecoderOptions {
            group: Some(group.into()),
            ..DecoderOptions::default()
        });
        let mut out = Vec::new();
        let lsn = 0x1A2B_3C4D;
        for m in [begin(lsn, 771)]
            .into_iter()
            .chain(messages)
            .chain([commit(lsn)])
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

    fn decode(messages: Vec<Bytes>) -> Vec<Record> {
        decode_for("g1", messages)
    }

    /// The line both ways: the writer's, checked equal to serde_json's over the record.
    fn line(record: &Record) -> String {
        let mut out = Vec::new();
        write_record(&mut out, record).unwrap();
        let mut expected = serde_json::to_vec(record).unwrap();
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected),
            "the writer and the typed path differ"
        );
        String::from_utf8(out).unwrap()
    }

    fn lines(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let text = line(r);
                assert!(
                    text.ends_with('\n') && text.matches('\n').count() == 1,
                    "{text}"
                );
                text.trim_end().to_owned()
            })
            .collect()
    }

    const HEAD: &str =
        r#"{"event_id":"0/1A2B3C4D:IDX","group":"g1","partition":0,"table":"shop.orders","op":"#;

    fn head(index: usize) -> String {
        HEAD.replace("IDX", &index.to_string())
    }

    const TXN: &str =
        r#""commit_lsn":"0/1A2B3C4D","commit_time":"2026-01-01T03:04:05.123456Z","xid":771"#;

    #[test]
    fn row_changes_under_full_identity_carry_full_before_images_in_field_order() {
        let records = decode(vec![
            relation(b'f'),
            change(
                b'I',
                None,
                Some(&[Col::Text("1"), Col::Text("hi"), Col::Null]),
            ),
            change(
                b'U',
                Some((b'O', &[Col::Text("1"), Col::Text("big"), Col::Null])),
                Some(&[Col::Text("1"), Col::Toast, Col::Text("2")]),
            ),
            change(
                b'D',
                Some((b'O', &[Col::Text("1"), Col::Text("big"), Col::Text("2")])),
                None,
            ),
            truncate(),
        ]);
        let got = lines(&records);
        assert_eq!(
            got[0],
            format!(
                r#"{}"insert",{TXN},"key":{{"id":1}},"before":null,"after":{{"id":1,"note":"hi","n":null}},"before_image":"not_applicable"}}"#,
                head(0)
            )
        );
        assert_eq!(
            got[1],
            format!(
                r#"{}"update",{TXN},"key":{{"id":1}},"before":{{"id":1,"note":"big","n":null}},"after":{{"id":1,"note":"big","n":2}},"before_image":"full"}}"#,
                head(1)
            ),
            "the unchanged TOAST value is filled from the full before-image"
        );
        assert_eq!(
            got[2],
            format!(
                r#"{}"delete",{TXN},"key":{{"id":1}},"before":{{"id":1,"note":"big","n":2}},"after":null,"before_image":"full"}}"#,
                head(2)
            )
        );
        assert_eq!(
            got[3],
            format!(
                r#"{}"truncate",{TXN},"key":null,"before":null,"after":null,"before_image":"not_applicable"}}"#,
                head(3)
            )
        );
    }

    #[test]
    fn default_identity_reports_key_not_enabled_and_unchanged_toast() {
        let records = decode(vec![
            relation(b'd'),
            change(
                b'U',
                None,
                Some(&[Col::Text("7"), Col::Toast, Col::Text("3")]),
            ),
            change(
                b'U',
                Some((b'K', &[Col::Text("7"), Col::Null, Col::Null])),
                Some(&[Col::Text("8"), Col::Text("x"), Col::Null]),
            ),
            change(
                b'D',
                Some((b'K', &[Col::Text("8"), Col::Null, Col::Null])),
                None,
            ),
        ]);
        let got = lines(&records);
        assert_eq!(
            got[0],
            format!(
                r#"{}"update",{TXN},"key":{{"id":7}},"before":null,"after":{{"id":7,"n":3}},"before_image":"not_enabled","unchanged":["note"]}}"#,
                head(0)
            ),
            "an unfilled TOAST value is listed under unchanged and left out of after"
        );
        assert_eq!(
            got[1],
            format!(
                r#"{}"update",{TXN},"key":{{"id":8}},"before":{{"id":7}},"after":{{"id":8,"note":"x","n":null}},"before_image":"key"}}"#,
                head(1)
            )
        );
        assert_eq!(
            got[2],
            format!(
                r#"{}"delete",{TXN},"key":{{"id":8}},"before":{{"id":8}},"after":null,"before_image":"key"}}"#,
                head(2)
            )
        );
    }

    #[test]
    fn messages_have_no_table_and_carry_prefix_and_content() {
        let records = decode(vec![
            message("app", b"hello \"you\""),
            message("bin", &[0xff, 0x00, 0x10]),
        ]);
        let got = lines(&records);
        let head = r#"{"event_id":"0/1A2B3C4D:IDX","group":"g1","partition":0,"table":null,"op":"message","#;
        let tail = r#""key":null,"before":null,"after":null,"before_image":"not_applicable""#;
        assert_eq!(
            got[0],
            format!(
                r#"{}{TXN},{tail},"prefix":"app","content":"hello \"you\""}}"#,
                head.replace("IDX", "0")
            )
        );
        assert_eq!(
            got[1],
            format!(
                r#"{}{TXN},{tail},"prefix":"bin","content":"\\xff0010"}}"#,
                head.replace("IDX", "1")
            )
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Random rows, groups and messages: the writer's line equals serde_json's.
        #[test]
        fn random_records_write_the_serde_line(
            group in "[a-z_\"\\\\é]{0,8}",
            rows in proptest::collection::vec(
                (
                    "-?[0-9]{1,19}|x",
                    proptest::option::of("[ -~\n\té😀]{0,16}"),
                    proptest::option::of("-?[0-9]{1,12}"),
                    0u8..4,
                ),
                1..6,
            ),
            content in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
        ) {
            let mut messages = vec![relation(b'f')];
            for (id, note, n, shape) in &rows {
                let note = note.as_deref().map_or(Col::Null, Col::Text);
                let n = n.as_deref().map_or(Col::Null, Col::Text);
                let new = [Col::Text(id), note, n];
                messages.push(match shape {
                    0 => change(b'I', None, Some(&new)),
                    1 => change(b'U', None, Some(&[Col::Text(id), Col::Toast, Col::Null])),
                    2 => change(b'U', Some((b'O', &new)), Some(&[Col::Text(id), Col::Toast, Col::Text("1")])),
                    _ => change(b'D', Some((b'K', &[Col::Text(id), Col::Null, Col::Null])), None),
                });
            }
            messages.push(message(&group, &content));
            messages.push(truncate());
            for record in decode_for(&group, messages) {
                line(&record);
            }
        }
    }
}
