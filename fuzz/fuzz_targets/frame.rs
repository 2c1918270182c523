//! Backend framing: any byte stream is split into frames or refused, never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pg_changestream::protocol::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = frame::parse(&mut buf) {}
    let _ = frame::check_eof(&buf);
});
