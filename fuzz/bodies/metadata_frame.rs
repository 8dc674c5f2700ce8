//! The metadata quorum's bytes: Raft RPC frames from peers (length-prefixed JSON, with the
//! membership proof check) and the Raft log journal read back from disk. The first byte
//! picks the decoder; for the journal, input also goes in as the payload of a record with a
//! valid CRC, so the JSON decoding behind the checksum is reached.
//!
//! The body of the cargo-fuzz target `metadata_frame` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs).

use arctern_metadata::fuzzing;

/// One execution: `data` is the fuzzer's input.
pub fn run(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            fuzzing::rpc_frames(rest);
        }
        1 => {
            fuzzing::raft_log(rest);
        }
        _ => {
            fuzzing::raft_log(&fuzzing::raft_log_record(rest));
        }
    }
}
