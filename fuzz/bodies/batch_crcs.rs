//! Shared by the `record_batch` and `log_recovery` bodies: their first input byte picks
//! the bytes as given, or with every batch's CRC32C made valid.

use arctern_storage::batch;

/// The input after its first byte; when that byte is odd, with each batch's CRC32C
/// rewritten so the fuzzer gets past the checksum to the offsets and lengths behind it (a
/// batch corrupted before its CRC was computed, or by a bad writer). None: empty input.
pub fn input_in_mode(input: &[u8]) -> Option<Vec<u8>> {
    let (&mode, data) = input.split_first()?;
    let mut data = data.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut data);
    }
    Some(data)
}

fn fix_crcs(data: &mut [u8]) {
    let mut at = 0;
    while let Some((_, size)) = batch::peek_offset_and_size(&data[at..]) {
        if size < batch::HEADER_LEN || at + size > data.len() {
            return;
        }
        let b = &mut data[at..at + size];
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        at += size;
    }
}
