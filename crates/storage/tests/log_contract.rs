//! Storage contract tests: append/read/roll/retention/truncation, and recovery from torn
//! and garbage tails, against the real files.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use arctern_storage::batch::{build_batch, validate_all, SimpleRecord};
use arctern_storage::{Log, LogConfig, StorageError};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch_of(n: usize, ts: i64, tag: u8) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| vec![tag, i as u8, 7, 7, 7, 7, 7, 7])
        .collect();
    let recs: Vec<SimpleRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (None, Some(&v[..]), ts + i as i64))
        .collect();
    build_batch(0, 0, ts, &recs)
}

/// Reads the whole log from `from` to the end, batch by batch.
fn read_all(log: &Log, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = from;
    loop {
        let f = log.read(off, 1000, i64::MAX).expect("read");
        if f.bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&f.bytes);
        off = f.next_offset;
    }
    out
}

fn append_n(log: &mut Log, batches: usize, records: usize) -> Vec<Vec<u8>> {
    let mut stored = Vec::new();
    for i in 0..batches {
        let mut b = batch_of(records, NOW + i as i64 * 10, i as u8);
        log.append_as_leader(&mut b, 3, NOW).expect("append");
        stored.push(b);
    }
    stored
}

#[test]
fn append_assigns_offsets_and_reads_back_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    let stored = append_n(&mut log, 50, 3);
    assert_eq!(log.log_end_offset(), 150);
    assert!(log.segment_count() > 1, "small segment.bytes must roll");
    assert_eq!(read_all(&log, 0), stored.concat());
    // A read from the middle of a batch returns the batch containing that offset.
    let f = log.read(31, 1, i64::MAX).unwrap();
    let h = validate_all(&f.bytes).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].base_offset, 30);
    assert_eq!(h[0].partition_leader_epoch, 3);
    // The high watermark bounds what is served.
    let f = log.read(0, 1 << 20, 30).unwrap();
    assert_eq!(
        validate_all(&f.bytes)
            .unwrap()
            .last()
            .unwrap()
            .last_offset(),
        29
    );
    assert!(log.read(30, 100, 30).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(151, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.epochs().end_offset_for(3, log.log_end_offset()),
        Some((3, 150))
    );
}

#[test]
fn read_within_bounds_the_bytes_and_min_one_allows_one_oversized_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    let stored = append_n(&mut log, 4, 3);
    let size = stored[0].len();
    assert!(stored.iter().all(|b| b.len() == size));
    // Whole batches only, never past max_bytes.
    for max in [size, size + 1, 2 * size - 1, 2 * size, 3 * size + size / 2] {
        for min_one in [true, false] {
            let f = log.read_within(0, max, i64::MAX, min_one).unwrap();
            assert_eq!(
                f.bytes.len(),
                max / size * size,
                "max {max} min_one {min_one}"
            );
        }
    }
    // A first batch larger than max_bytes: served whole only with min_one (KIP-74's first
    // partition with data), else nothing.
    let f = log.read_within(0, size - 1, i64::MAX, true).unwrap();
    assert_eq!(f.bytes, stored[0]);
    assert_eq!(f.next_offset, 3);
    let f = log.read_within(3, 0, i64::MAX, true).unwrap();
    assert_eq!(f.bytes, stored[1]);
    for max in [0, 1, size - 1] {
        let f = log.read_within(0, max, i64::MAX, false).unwrap();
        assert!(f.bytes.is_empty(), "max {max}");
        assert_eq!(f.next_offset, 0);
    }
}

#[test]
fn clean_reopen_and_unclean_reopen_keep_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    let stored = append_n(&mut log, 40, 2);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 80);
    assert_eq!(read_all(&log, 0), stored.concat());
    let more = append_n(&mut log, 5, 2);
    log.sync_point().sync().unwrap();
    drop(log); // no close: like a crash after fsync
    let log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(read_all(&log, 0), [stored.concat(), more.concat()].concat());
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn recovery_truncates_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    let stored = append_n(&mut log, 10, 4);
    drop(log);
    let seg = active_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 36, "the torn last batch is dropped");
    assert_eq!(read_all(&log, 0), stored[..9].concat());
    let mut b = batch_of(1, NOW, 99);
    let info = log.append_as_leader(&mut b, 3, NOW).unwrap();
    assert_eq!(info.first_offset, 36);
}

#[test]
fn recovery_truncates_garbage_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    let stored = append_n(&mut log, 10, 4);
    drop(log);
    let seg = active_segment(dir.path());
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xab; 1000]).unwrap();
    // A plausible-looking header with a bad CRC, too.
    let mut fake = batch_of(2, NOW, 1);
    let n = fake.len();
    fake[n - 1] ^= 0xff;
    f.write_all(&fake).unwrap();
    let log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn corrupt_batch_inside_sealed_segment_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    append_n(&mut log, 40, 2);
    log.close().unwrap();
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    // Flip a byte in the first record batch's payload of the first (sealed) segment.
    let mut bytes = std::fs::read(&logs[0]).unwrap();
    bytes[70] ^= 0xff;
    std::fs::write(&logs[0], &bytes).unwrap();
    let log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert!(matches!(
        log.read(0, 1 << 20, i64::MAX),
        Err(StorageError::CorruptStoredData { .. })
    ));
    // Data after the bad batch is still served.
    assert!(!log.read(2, 1 << 20, i64::MAX).unwrap().bytes.is_empty());
}

#[test]
fn rejects_bad_batches_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg, NOW).unwrap();
    let mut big = batch_of(40, NOW, 1);
    assert!(matches!(
        log.append_as_leader(&mut big, 0, NOW),
        Err(StorageError::BatchTooLarge { .. })
    ));
    let mut bad = batch_of(1, NOW, 1);
    let n = bad.len();
    bad[n - 2] ^= 1;
    assert!(matches!(
        log.append_as_leader(&mut bad, 0, NOW),
        Err(StorageError::InvalidBatch(_))
    ));
    let mut garbage = vec![0u8; 7];
    assert!(log.append_as_leader(&mut garbage, 0, NOW).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn retention_by_size_and_time_deletes_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    append_n(&mut log, 300, 2);
    let segs = log.segment_count();
    let mut cfg = small_config();
    cfg.retention_bytes = 8192;
    log.set_config(cfg.clone());
    let deleted = log.apply_retention(NOW).unwrap();
    assert!(deleted > 0 && log.segment_count() == segs - deleted);
    assert!(log.size_bytes() <= 8192 + 4096);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    cfg.retention_bytes = -1;
    cfg.retention_ms = 1000;
    log.set_config(cfg);
    log.apply_retention(NOW + 1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.size_bytes(),
        0,
        "everything expired, active rolled and deleted"
    );
    assert_eq!(log.log_start_offset(), 600);
    assert_eq!(log.log_end_offset(), 600);
}

#[test]
fn delete_segments_below_keeps_the_segment_holding_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    append_n(&mut log, 300, 2);
    let segs = log.segment_count();
    assert!(segs > 3);
    assert_eq!(log.delete_segments_below(0).unwrap(), 0);
    let deleted = log.delete_segments_below(301).unwrap();
    assert!(deleted > 0 && log.segment_count() == segs - deleted);
    let start = log.log_start_offset();
    assert!(
        start > 0 && start <= 301,
        "offset 301 is still readable (start {start})"
    );
    assert!(log.read(301, 100, i64::MAX).is_ok());
    assert!(matches!(
        log.read(start - 1, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Past the log end: everything but the active segment goes, the offsets stay.
    log.delete_segments_below(i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 600);
    drop(log);
    let log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 600, "reopens past the deleted prefix");
}

#[test]
fn truncate_to_drops_divergent_tail_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    let stored = append_n(&mut log, 30, 2);
    let mut b = batch_of(2, NOW, 77);
    log.append_as_leader(&mut b, 5, NOW).unwrap();
    assert_eq!(log.epochs().latest_epoch(), Some(5));
    log.truncate_to(60).unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.epochs().latest_epoch(), Some(3));
    log.truncate_to(21).unwrap();
    assert_eq!(
        log.log_end_offset(),
        20,
        "truncation cuts the whole batch containing the offset"
    );
    assert_eq!(read_all(&log, 0), stored[..10].concat());
    drop(log);
    let log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn offset_by_timestamp_finds_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    append_n(&mut log, 50, 2); // batch i has timestamps NOW+10i, NOW+10i+1
    let (h, _) = log.batch_for_timestamp(NOW + 255).unwrap().unwrap();
    assert_eq!(h.base_offset, 52);
    let (h, _) = log.batch_for_timestamp(0).unwrap().unwrap();
    assert_eq!(h.base_offset, 0);
    assert!(log.batch_for_timestamp(NOW + 10_000).unwrap().is_none());
}

#[test]
fn replicated_append_keeps_offsets_and_rejects_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    let b = build_batch(
        0,
        4,
        NOW,
        &[(None, Some(b"a"), NOW), (None, Some(b"b"), NOW)],
    );
    log.append_replicated(&b, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    let gap = build_batch(5, 4, NOW, &[(None, Some(b"c"), NOW)]);
    assert!(matches!(
        log.append_replicated(&gap, NOW),
        Err(StorageError::NonSequentialAppend { .. })
    ));
    assert_eq!(log.epochs().latest_epoch(), Some(4));
}

// A follower reset past its end (its leader's log starts beyond it) keeps no epochs from
// its old, possibly divergent history: the batches it fetches next carry the leader's
// epochs, lower or not, and read back without tripping the epoch check.
#[test]
fn a_full_truncation_forgets_the_epochs_of_the_old_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    let b = build_batch(0, 7, NOW, &[(None, Some(b"old"), NOW)]);
    log.append_replicated(&b, NOW).unwrap();
    assert_eq!(log.epochs().latest_epoch(), Some(7));
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(log.epochs().latest_epoch(), None);
    let b = build_batch(100, 4, NOW, &[(None, Some(b"new"), NOW)]);
    log.append_replicated(&b, NOW).unwrap();
    assert_eq!(log.epochs().latest_epoch(), Some(4));
    assert!(!log.read(100, 1 << 20, i64::MAX).unwrap().bytes.is_empty());
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default(), NOW).unwrap();
    assert_eq!(log.epochs().entries().len(), 1, "persisted");
    assert!(!log.read(100, 1 << 20, i64::MAX).unwrap().bytes.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever is appended and synced survives any cut of the unsynced tail plus garbage,
    /// and the log reopens to a prefix of whole batches.
    #[test]
    fn recovery_always_yields_a_prefix_of_whole_batches(
        sizes in proptest::collection::vec(1usize..6, 1..40),
        cut in 0usize..400,
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        synced in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
        let mut stored = Vec::new();
        let mut synced_end = 0;
        for (i, n) in sizes.iter().enumerate() {
            let mut b = batch_of(*n, NOW + i as i64, i as u8);
            log.append_as_leader(&mut b, 0, NOW).unwrap();
            stored.push(b);
            if i < synced {
                log.sync_point().sync().unwrap();
                synced_end = log.log_end_offset();
            }
        }
        drop(log);
        let seg = active_segment(dir.path());
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len.saturating_sub(cut as u64)).unwrap();
        drop(f);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&garbage).unwrap();
        drop(f);
        let log = Log::open(dir.path(), small_config(), NOW).unwrap();
        let all = read_all(&log, 0);
        let whole = stored.concat();
        prop_assert!(whole.starts_with(&all));
        let headers = validate_all(&all).unwrap();
        prop_assert_eq!(headers.last().map_or(0, |h| h.last_offset() + 1), log.log_end_offset());
        // The cut only touched the active segment's tail: sealed segments are intact.
        let _ = synced_end;
    }

    #[test]
    fn reads_from_any_offset_start_at_the_containing_batch(
        sizes in proptest::collection::vec(1usize..6, 1..30),
        probe in 0i64..150,
        max_bytes in 1usize..2000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
        for (i, n) in sizes.iter().enumerate() {
            let mut b = batch_of(*n, NOW, i as u8);
            log.append_as_leader(&mut b, 0, NOW).unwrap();
        }
        let end = log.log_end_offset();
        let probe = probe % (end + 1);
        let f = log.read(probe, max_bytes, i64::MAX).unwrap();
        if probe == end {
            prop_assert!(f.bytes.is_empty());
        } else {
            let h = validate_all(&f.bytes).unwrap();
            prop_assert!(!h.is_empty());
            prop_assert!(h[0].base_offset <= probe && probe <= h[0].last_offset());
            prop_assert!(f.bytes.len() <= max_bytes.max(h[0].size));
        }
    }
}

fn preallocating(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        preallocate: true,
        ..LogConfig::default()
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn preallocate_keeps_zeros_past_the_batches_and_recovery_trims_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = preallocating(4 << 20);
    let mut log = Log::open(dir.path(), cfg.clone(), NOW).unwrap();
    // Past the size where zero-filling starts (a busy log).
    let stored = append_n(&mut log, 1500, 2);
    let seg = active_segment(dir.path());
    let batches = log.size_bytes();
    assert!(batches >= 64 << 10);
    assert!(
        file_len(&seg) >= batches + (128 << 10),
        "the file is zero-filled ahead of its {batches} bytes of batches"
    );
    assert_eq!(read_all(&log, 0), stored.concat());
    log.sync_point().sync().unwrap();
    drop(log); // no close: like a crash after fsync
    let mut log = Log::open(dir.path(), cfg.clone(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), 3000);
    assert_eq!(read_all(&log, 0), stored.concat());
    assert_eq!(
        file_len(&seg),
        batches,
        "recovery drops the zero-filled tail"
    );
    let more = append_n(&mut log, 5, 2);
    assert!(file_len(&seg) > log.size_bytes());
    log.close().unwrap();
    assert_eq!(file_len(&seg), {
        let log = Log::open(dir.path(), cfg.clone(), NOW).unwrap();
        log.size_bytes()
    });
    let log = Log::open(dir.path(), cfg, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 3010);
    assert_eq!(read_all(&log, 0), [stored.concat(), more.concat()].concat());
}

#[test]
fn a_log_holding_little_is_not_zero_filled() {
    // An idle queue with a message or two takes only the disk its data takes.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), preallocating(64 << 20), NOW).unwrap();
    append_n(&mut log, 3, 1);
    assert_eq!(file_len(&active_segment(dir.path())), log.size_bytes());
}

#[test]
fn large_appends_do_not_zero_fill() {
    // A busy log's group commits carry many bytes each: zeros would double them.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), preallocating(4 << 20), NOW).unwrap();
    let big = vec![9u8; 40 << 10];
    for i in 0..3 {
        let mut b = build_batch(0, 0, NOW, &[(None, Some(&big[..]), NOW + i)]);
        log.append_as_leader(&mut b, 3, NOW).expect("append");
    }
    assert_eq!(file_len(&active_segment(dir.path())), log.size_bytes());
    // A small append zero-fills again.
    append_n(&mut log, 1, 2);
    assert!(file_len(&active_segment(dir.path())) >= log.size_bytes() + (128 << 10));
}

#[test]
fn preallocated_segments_are_trimmed_when_they_roll() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = preallocating(2048);
    let mut log = Log::open(dir.path(), cfg.clone(), NOW).unwrap();
    let stored = append_n(&mut log, 60, 3);
    assert!(log.segment_count() > 2);
    let active = active_segment(dir.path());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "log") && p != active {
            // Whole batches to the last byte: no zeros after them.
            let bytes = std::fs::read(&p).unwrap();
            let headers = validate_all(&bytes).unwrap();
            assert_eq!(headers.iter().map(|h| h.size).sum::<usize>(), bytes.len());
            assert!(bytes.len() as u64 <= cfg.segment_bytes);
        }
    }
    // The zero-filled tail never runs past segment.bytes.
    assert!(file_len(&active) <= cfg.segment_bytes);
    log.sync_point().sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), cfg, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 180);
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn advance_log_start_moves_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    append_n(&mut log, 300, 2);
    let segs = log.segment_count();
    // Below the current start: nothing changes.
    assert_eq!(log.advance_log_start(0).unwrap(), 0);
    // Inside the first segment: no segment goes, but offsets below are out of range.
    assert_eq!(log.advance_log_start(3).unwrap(), 3);
    assert_eq!(log.segment_count(), segs);
    assert!(matches!(
        log.read(2, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(3, 100, i64::MAX).is_ok());
    // Further: whole segments below it are deleted.
    assert_eq!(log.advance_log_start(301).unwrap(), 301);
    assert!(log.segment_count() < segs);
    drop(log);
    // After an unclean stop too (no close): the start is on disk.
    let mut log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_start_offset(), 301);
    assert!(log.read(300, 100, i64::MAX).is_err());
    // Never past the log end.
    assert_eq!(log.advance_log_start(10_000).unwrap(), 600);
    // A full truncation restarts the log at its offset, with nothing of the old start.
    log.truncate_fully_and_start_at(50).unwrap();
    assert_eq!(log.log_start_offset(), 50);
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
}

/// Many logs with few descriptors: with room for 16 open segment files, 60 logs (several
/// segments each) append, sync, read back and reopen correctly while their idle files are
/// closed and reopened underneath them (`open_files`); the open count stays near the limit
/// once their writes are synced.
#[test]
fn many_logs_work_with_fewer_open_files_than_segments() {
    let dir = tempfile::tempdir().unwrap();
    let before = arctern_storage::open_files::capacity();
    arctern_storage::open_files::set_capacity(16);
    let mut logs = Vec::new();
    let mut stored = Vec::new();
    for i in 0..60 {
        let d = dir.path().join(format!("log-{i}"));
        let mut log = Log::open(&d, small_config(), NOW).unwrap();
        stored.push(append_n(&mut log, 12, 5));
        log.sync_point().sync().unwrap();
        logs.push((d, log));
    }
    assert!(
        arctern_storage::open_files::open_count() < 60,
        "{} files open",
        arctern_storage::open_files::open_count()
    );
    for ((d, log), batches) in logs.iter_mut().zip(&stored) {
        assert_eq!(read_all(log, 0), batches.concat(), "{}", d.display());
        // Appends after the file was closed and reopened, then a restart.
        let more = append_n(log, 2, 3);
        log.sync_point().sync().unwrap();
        log.close().unwrap();
        let reopened = Log::open(d, small_config(), NOW).unwrap();
        assert_eq!(
            read_all(&reopened, 0),
            [batches.concat(), more.concat()].concat()
        );
    }
    arctern_storage::open_files::set_capacity(before);
}
