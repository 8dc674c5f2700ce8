//! AMQP 0-9-1 frames as a connection reads them (`FrameSource`): the 7-byte header checked
//! against frame_max, the whole frame decoded (amq-protocol's parser behind
//! `decode_whole_frame`), then the argument decoding the handlers do on what clients send:
//! queue and exchange declare arguments, headers-exchange bindings, SASL responses, content
//! properties and the per-message TTL, topic binding patterns.
#![no_main]

#[path = "../bodies/amqp_frame.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
