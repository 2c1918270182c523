//! The JetStream sink's NATS reader (`sink::nats_wire::next_op`): any bytes from a server
//! are read into operations or refused, never a panic; and however the bytes arrive — whole,
//! in pieces, a byte at a time — the same operations, error and incomplete rest come out (a
//! connection reads whatever each `read` returned).
//!
//! Input: byte 0 seeds the piece lengths (1 to 16 bytes), the rest is the server's stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_changestream::sink::nats_wire::read_chunks;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = read_chunks([stream]);

    // xorshift32 from the seed (never 0): piece lengths the fuzzer can steer.
    let mut state = u32::from(seed) | 0x100;
    let mut pieces = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let (piece, after) = rest.split_at((state as usize % 16 + 1).min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    assert_eq!(read_chunks(pieces), whole);
    if stream.len() <= 1024 {
        assert_eq!(read_chunks(stream.chunks(1)), whole);
    }
});
