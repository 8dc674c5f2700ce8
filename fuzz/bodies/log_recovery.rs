//! The partition log's recovery scan over arbitrary segment bytes: the input is written as
//! the only segment of a log that was not shut down cleanly, and `Log::open` validates and
//! truncates it; then the recovered log is read back as a restart (producer state) and a fetch would.
//!
//! The body of the cargo-fuzz target `log_recovery` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs). Its includer also
//! includes `batch_crcs.rs` as the crate's `batch_crcs` module.

use std::path::PathBuf;

use arctern_core::producer_state::ProducerStates;
use arctern_storage::{Log, LogConfig};

fn dir() -> PathBuf {
    // tmpfs: no disk I/O per execution.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("arctern-fuzz-log-recovery-{}", std::process::id()))
}

/// One execution: `input` is the fuzzer's input.
pub fn run(input: &[u8]) {
    let Some(data) = crate::batch_crcs::input_in_mode(input) else {
        return;
    };
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fuzz log dir");
    std::fs::write(dir.join("00000000000000000000.log"), &data).expect("write the segment");
    if let Ok(log) = Log::open(&dir, LogConfig::default(), 0) {
        // As `Partition::open` rebuilds the idempotent producers' state.
        let mut states = ProducerStates::default();
        let _ = log.scan_headers(|h| states.record(h, 0));
        let start = log.log_start_offset();
        let _ = log.read(start, 1 << 20, i64::MAX);
        let _ = log.batch_for_timestamp(0);
    }
}
