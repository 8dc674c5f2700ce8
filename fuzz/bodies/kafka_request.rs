//! Kafka request frames as a connection reads them: size prefix (`frame_length`, bounded by
//! `socket.request.max.bytes`), then `decode_request` under its decode budget. A Produce
//! request's records go through the same batch validation as `Partition::append`.
//!
//! The body of the cargo-fuzz target `kafka_request` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs).

use arctern_kafka_wire::kafka_protocol::messages::RequestKind;
use arctern_kafka_wire::{decode_request, frame_length, peek_correlation_id};
use bytes::Bytes;

/// The broker's default `socket.request.max.bytes`.
const MAX_REQUEST: usize = 100 * 1024 * 1024;

/// One execution: `data` is the fuzzer's input.
pub fn run(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= 4 {
        let prefix = [rest[0], rest[1], rest[2], rest[3]];
        let Ok(len) = frame_length(prefix, MAX_REQUEST) else {
            return;
        };
        rest = &rest[4..];
        // A short last frame: the connection would wait for more bytes; decode what is
        // here anyway so every input reaches the decoder.
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        let _ = peek_correlation_id(frame);
        if let Ok(req) = decode_request(Bytes::copy_from_slice(frame)) {
            if let RequestKind::Produce(p) = req.body {
                for t in p.topic_data {
                    for part in t.partition_data {
                        if let Some(records) = &part.records {
                            let _ = arctern_storage::batch::validate_all(records);
                        }
                    }
                }
            }
        }
    }
}
