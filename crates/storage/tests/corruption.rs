//! Storage faults on the read path: a flipped bit anywhere in a sealed segment never makes
//! a reader skip or receive a wrong record; reads stop with CorruptStoredData instead.
//! (The negative control, with the checks off, is `corruption_unverified.rs`: a process-wide
//! switch, so it runs in its own test binary.)

mod common;

use arctern_storage::batch::parse_header;
use arctern_storage::{Log, StorageError};
use common::*;

/// The batch at `index` of the second segment (a sealed one), and its base offset.
fn target(dir: &std::path::Path, index: usize) -> (std::path::PathBuf, usize, i64) {
    let seg = segments(dir)[1].clone();
    let pos = batch_positions(&seg)[index];
    let bytes = std::fs::read(&seg).unwrap();
    let base = parse_header(&bytes[pos..]).unwrap().base_offset;
    (seg, pos, base)
}

#[test]
fn a_flipped_base_offset_stops_the_reader_at_that_batch() {
    // Every bit of the base offset, in a batch at a sparse index entry (the first of the
    // segment) and in one between entries.
    for index in [0usize, 2] {
        for byte in 0..8 {
            for bit in [0u8, 3, 7] {
                let dir = tempfile::tempdir().unwrap();
                let stored = write_log(dir.path(), 120);
                let (seg, pos, base) = target(dir.path(), index);
                flip(&seg, pos + byte, 1 << bit);
                let log = Log::open(dir.path(), config(), NOW).unwrap();
                let got = consume(&log, &stored);
                let case = format!("batch {index}, byte {byte}, bit {bit}: {got:?}");
                assert!(got.gapless(), "skipped records: {case}");
                assert_eq!(got.wrong_batches, 0, "{case}");
                assert_eq!(got.stopped_at, Some(base), "{case}");
                assert!(
                    matches!(
                        log.read(base, 1 << 20, i64::MAX),
                        Err(StorageError::CorruptStoredData { .. })
                    ),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn a_flipped_leader_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_log(dir.path(), 120);
    let (seg, pos, base) = target(dir.path(), 1);
    flip(&seg, pos + 12 + 3, 0x04); // partitionLeaderEpoch, low byte: 3 becomes 7
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    let got = consume(&log, &stored);
    assert!(got.gapless() && got.wrong_batches == 0, "{got:?}");
    assert_eq!(got.stopped_at, Some(base));
    match log.read(base, 1 << 20, i64::MAX) {
        Err(StorageError::CorruptStoredData { reason, .. }) => {
            assert!(reason.contains("leader epoch"), "{reason}")
        }
        other => panic!("served a batch with a wrong epoch: {other:?}"),
    }
}

/// Random single-bit flips anywhere in a sealed segment (headers, payloads): whatever is
/// read is what was stored, with no gap; a read either returns that or an error.
#[test]
fn random_flips_never_yield_a_wrong_or_missing_record() {
    let mut rand = xorshift(0x5eed_2026_1207);
    let mut stopped = 0;
    for _ in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        let stored = write_log(dir.path(), 120);
        let seg = segments(dir.path())[1].clone();
        let len = std::fs::metadata(&seg).unwrap().len() as usize;
        let (pos, bit) = (rand() as usize % len, (rand() % 8) as u8);
        flip(&seg, pos, 1 << bit);
        let Ok(log) = Log::open(dir.path(), config(), NOW) else {
            stopped += 1; // refusing to open is also not serving bad data
            continue;
        };
        let got = consume(&log, &stored);
        let case = format!("flip at {pos} bit {bit}: {got:?}");
        assert!(got.gapless(), "skipped records: {case}");
        assert_eq!(got.wrong_batches, 0, "{case}");
        assert!(
            got.stopped_at.is_some(),
            "a flipped bit went unnoticed: {case}"
        );
        stopped += 1;
    }
    assert_eq!(stopped, 150);
}

/// Index files are derived data: damage to them (caught by their checksum or their sanity
/// checks) makes the log rebuild them from the segment; every record is still read.
#[test]
fn damaged_index_files_are_rebuilt_from_the_log() {
    let mut rand = xorshift(0x1dec_0de5);
    for case in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let stored = write_log(dir.path(), 120);
        let seg = segments(dir.path())[1].clone();
        let ext = if case % 2 == 0 { "index" } else { "timeindex" };
        let file = seg.with_extension(ext);
        let len = std::fs::metadata(&file).unwrap().len() as usize;
        let (pos, bit) = (rand() as usize % len, (rand() % 8) as u8);
        flip(&file, pos, 1 << bit);
        let log = Log::open(dir.path(), config(), NOW).unwrap();
        let got = consume(&log, &stored);
        let what = format!("{ext} flip at {pos} bit {bit}: {got:?}");
        assert!(got.gapless() && got.wrong_batches == 0, "{what}");
        assert_eq!(got.stopped_at, None, "{what}");
        assert_eq!(got.offsets.len(), 120 * 5, "{what}");
        // A time lookup lands where it would on the undamaged log (batch i has timestamp NOW + i).
        let (h, _) = log.batch_for_timestamp(NOW + 50).unwrap().unwrap();
        assert_eq!(h.base_offset, 250, "{what}");
    }
}

/// A sealed segment is never cut at damage found when it is opened (its index files lost,
/// so it is scanned): cutting would leave a hole that readers skip. The bytes stay; reads
/// stop at the damage.
#[test]
fn a_damaged_sealed_segment_is_not_truncated_on_open() {
    for mask in [0x01u8, 0x80] {
        let dir = tempfile::tempdir().unwrap();
        let stored = write_log(dir.path(), 120);
        let (seg, pos, base) = target(dir.path(), 2);
        let len = std::fs::metadata(&seg).unwrap().len();
        flip(&seg, pos + 6, mask);
        std::fs::remove_file(seg.with_extension("index")).unwrap();
        std::fs::remove_file(seg.with_extension("timeindex")).unwrap();
        let log = Log::open(dir.path(), config(), NOW).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "segment cut");
        let got = consume(&log, &stored);
        assert!(got.gapless() && got.wrong_batches == 0, "{got:?}");
        assert_eq!(got.stopped_at, Some(base), "{got:?}");
    }
}
