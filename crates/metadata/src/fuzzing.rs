//! Entry points for the cargo-fuzz targets in `fuzz/` (not an API): the decoders of bytes
//! that come from peers and from disk, which are private to their modules.

/// Cuts `bytes` into Raft RPC frames as a connection does and decodes each one; returns the
/// number of whole frames.
pub fn rpc_frames(bytes: &[u8]) -> usize {
    crate::network::decode_frames_for_fuzzing(bytes)
}

/// Decodes and replays a Raft log journal as `LogStore::open` does; returns (records, valid
/// prefix length).
pub fn raft_log(bytes: &[u8]) -> (usize, usize) {
    crate::log_store::replay_for_fuzzing(bytes)
}

/// `payload` framed as one journal record with a valid length and CRC32C.
pub fn raft_log_record(payload: &[u8]) -> Vec<u8> {
    crate::log_store::frame_record_for_fuzzing(payload)
}
