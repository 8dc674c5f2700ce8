//! Kafka request frames as a connection reads them: size prefix (`frame_length`, bounded by
//! `socket.request.max.bytes`), then `decode_request` under its decode budget. A Produce
//! request's records go through the same batch validation as `Partition::append`.
#![no_main]

#[path = "../bodies/kafka_request.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
