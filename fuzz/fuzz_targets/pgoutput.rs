//! pgoutput messages, outside and inside a stream block; tuples are iterated to the end.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pg_changestream::protocol::pgoutput::{self, OldTuple, PgOutputMessage, TupleData};

/// Iterates a validated tuple: it must yield exactly its column count.
fn walk(t: &TupleData) -> usize {
    let n = t.iter().count();
    assert_eq!(n, t.len(), "tuple iteration disagrees with validation");
    n
}

fuzz_target!(|data: &[u8]| {
    for in_stream in [false, true] {
        let n = match pgoutput::parse(Bytes::copy_from_slice(data), in_stream) {
            Ok(PgOutputMessage::Insert(i)) => walk(&i.new),
            Ok(PgOutputMessage::Update(u)) => {
                walk(&u.new) + u.old.as_ref().map_or(0, |o| walk(o.data()))
            }
            Ok(PgOutputMessage::Delete(d)) => match &d.old {
                OldTuple::Key(t) | OldTuple::Full(t) => walk(t),
            },
            _ => 0,
        };
        std::hint::black_box(n);
    }
});
