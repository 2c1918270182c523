//! Replication CopyData payloads, and the pgoutput message inside an XLogData.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pg_changestream::protocol::{pgoutput, replication};

fuzz_target!(|data: &[u8]| {
    if let Ok(replication::ReplicationMessage::XLogData(x)) =
        replication::parse(Bytes::copy_from_slice(data))
    {
        let _ = pgoutput::PgOutputDecoder::new().decode(x.data);
    }
});
