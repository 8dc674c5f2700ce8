//! The partition log's recovery scan over arbitrary segment bytes: the input is written as
//! the only segment of a log that was not shut down cleanly, and `Log::open` validates and
//! truncates it; then the recovered log is read back as a restart (producer state) and a fetch would.
#![no_main]

use std::path::PathBuf;

use arctern_core::producer_state::ProducerStates;
use arctern_storage::{Log, LogConfig};
use libfuzzer_sys::fuzz_target;

fn dir() -> PathBuf {
    // tmpfs: no disk I/O per execution.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("arctern-fuzz-log-recovery-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fuzz log dir");
    std::fs::write(dir.join("00000000000000000000.log"), data).expect("write the segment");
    if let Ok(log) = Log::open(&dir, LogConfig::default(), 0) {
        // As `Partition::open` rebuilds the idempotent producers' state.
        let mut states = ProducerStates::default();
        let _ = log.scan_headers(|h| states.record(h, 0));
        let start = log.log_start_offset();
        let _ = log.read(start, 1 << 20, i64::MAX);
        let _ = log.batch_for_timestamp(0);
    }
});
