//! Inputs found by the cargo-fuzz targets (fuzz/), replayed as regression tests: recovery of
//! a log from arbitrary segment bytes must never panic.

use arctern_storage::batch::build_batch;
use arctern_storage::{Log, LogConfig};

fn open_with_segment(bytes: &[u8]) -> Result<Log, arctern_storage::StorageError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.log"), bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), 0);
    // Keep the dir alive until the log is opened and read.
    if let Ok(l) = &log {
        let _ = l.read(l.log_start_offset(), 1 << 20, i64::MAX);
        let _ = l.scan_headers(|h| {
            let _ = h.last_offset();
        });
    }
    log
}

/// A CRC-valid batch whose offsets run past i64::MAX: recovery stops before it (an offset
/// overflow panicked in `note_appended`).
#[test]
fn recovery_stops_at_a_batch_whose_offsets_overflow() {
    let v: &[u8] = b"v";
    let ok = build_batch(0, 0, 0, &[(None, Some(v), 0)]);
    let bad = build_batch(i64::MAX - 1, 0, 0, &[(None, Some(v), 0); 3]);
    let log = open_with_segment(&[ok.clone(), bad].concat()).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}
