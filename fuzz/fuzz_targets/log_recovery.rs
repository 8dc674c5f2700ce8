//! The partition log's recovery scan over arbitrary segment bytes: the input is written as
//! the only segment of a log that was not shut down cleanly, and `Log::open` validates and
//! truncates it; then the recovered log is read back as a restart (producer state) and a fetch would.
#![no_main]

#[path = "../bodies/batch_crcs.rs"]
mod batch_crcs;
#[path = "../bodies/log_recovery.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
