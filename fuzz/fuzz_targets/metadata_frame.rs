//! The metadata quorum's bytes: Raft RPC frames from peers (length-prefixed JSON, with the
//! membership proof check) and the Raft log journal read back from disk. The first byte
//! picks the decoder; for the journal, input also goes in as the payload of a record with a
//! valid CRC, so the JSON decoding behind the checksum is reached.
#![no_main]

#[path = "../bodies/metadata_frame.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
