//! Negative control of `corruption.rs`: with the structural checks off (as Kafka serves
//! batches: CRC only), one flipped bit in a base offset makes a consumer skip records
//! silently. If this test fails, the checks are not what stops the skip.

mod common;

use arctern_storage::batch::parse_header;
use arctern_storage::Log;
use common::*;

#[test]
fn without_the_checks_a_flipped_base_offset_skips_records_silently() {
    arctern_storage::set_verify_reads(false);
    let dir = tempfile::tempdir().unwrap();
    let stored = write_log(dir.path(), 120);
    let seg = segments(dir.path())[1].clone();
    let pos = batch_positions(&seg)[2];
    let base = parse_header(&std::fs::read(&seg).unwrap()[pos..])
        .unwrap()
        .base_offset;
    flip(&seg, pos + 6, 0x01); // base offset + 256
    let log = Log::open(dir.path(), config(), NOW).unwrap();
    let got = consume(&log, &stored);
    assert_eq!(got.stopped_at, None, "no error: {got:?}");
    assert!(
        !got.gapless(),
        "expected a silent gap after offset {base}: {got:?}"
    );
}
