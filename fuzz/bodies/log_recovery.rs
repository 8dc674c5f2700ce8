//! The partition log's recovery scan over arbitrary segment bytes: the input is written as
//! the only segment of a log that was not shut down cleanly, and `Log::open` validates and
//! truncates it; then the recovered log is read back as a restart (producer state) and a fetch would.
//!
//! The body of the cargo-fuzz target `log_recovery` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs).

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

/// Rewrites each batch's CRC32C so the fuzzer gets past the checksum to the offsets and
/// lengths behind it (a batch corrupted before its CRC was computed, or by a bad writer).
fn fix_crcs(data: &mut [u8]) {
    let mut at = 0;
    while let Some((_, size)) = arctern_storage::batch::peek_offset_and_size(&data[at..]) {
        if size < arctern_storage::batch::HEADER_LEN || at + size > data.len() {
            return;
        }
        let b = &mut data[at..at + size];
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        at += size;
    }
}

/// One execution: `input` is the fuzzer's input.
pub fn run(input: &[u8]) {
    // The first byte picks: bytes as given, or with every batch's CRC made valid.
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let mut data = data.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut data);
    }
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
