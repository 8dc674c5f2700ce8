//! The metadata quorum's bytes: Raft RPC frames from peers (length-prefixed JSON, with the
//! membership proof check) and the Raft log journal read back from disk. The first byte
//! picks the decoder; for the journal, input also goes in as the payload of a record with a
//! valid CRC, so the JSON decoding behind the checksum is reached.
#![no_main]

use arctern_metadata::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
