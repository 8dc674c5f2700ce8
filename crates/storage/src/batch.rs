//! Kafka RecordBatch v2 header: the on-disk and on-wire unit of storage.
//!
//! Layout (big-endian), 61 bytes before the records:
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32
//!
//! The CRC32C covers everything from `attributes` to the end, so the broker may rewrite
//! `baseOffset` and `partitionLeaderEpoch` without recomputing it.

pub use crate::error::BatchError;

pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

/// Parsed header of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, including the 12-byte log overhead.
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The compression codec id in the attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads just the 12-byte log overhead: (base offset, total batch size). `None` if the
/// slice is too short or the length field is impossible.
pub fn peek_offset_and_size(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = i32_at(b, BATCH_LENGTH);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some((i64_at(b, BASE_OFFSET), LOG_OVERHEAD + len as usize))
}

/// Parses the header of the batch at the start of `b`. Requires the full 61-byte header,
/// but not the records (so it can be used on a header-sized read).
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, BatchError> {
    if b.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: b.len(),
            need: HEADER_LEN,
        });
    }
    let len = i32_at(b, BATCH_LENGTH);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(len));
    }
    let magic = b[MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let header = BatchHeader {
        base_offset: i64_at(b, BASE_OFFSET),
        size: LOG_OVERHEAD + len as usize,
        partition_leader_epoch: i32_at(b, LEADER_EPOCH),
        magic,
        crc: i32_at(b, CRC) as u32,
        attributes: i16_at(b, ATTRIBUTES),
        last_offset_delta: i32_at(b, LAST_OFFSET_DELTA),
        base_timestamp: i64_at(b, BASE_TIMESTAMP),
        max_timestamp: i64_at(b, MAX_TIMESTAMP),
        producer_id: i64_at(b, PRODUCER_ID),
        producer_epoch: i16_at(b, PRODUCER_EPOCH),
        base_sequence: i32_at(b, BASE_SEQUENCE),
        records_count: i32_at(b, RECORDS_COUNT),
    };
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(BatchError::BadOffsets {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    Ok(header)
}

/// Parses and fully validates the batch at the start of `b` (header sanity and CRC32C).
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(b)?;
    if b.len() < header.size {
        return Err(BatchError::Truncated {
            have: b.len(),
            need: header.size,
        });
    }
    let computed = crc32c::crc32c(&b[ATTRIBUTES..header.size]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Rewrites the fields the leader owns; neither is covered by the CRC.
pub fn assign_offset_and_epoch(b: &mut [u8], base_offset: i64, leader_epoch: i32) {
    b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    b[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Iterates over complete, validated batches in a buffer of concatenated batches.
/// Stops with an error on the first malformed batch or trailing partial bytes.
pub fn validate_all(mut b: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let header = validate(b)?;
        b = &b[header.size..];
        out.push(header);
    }
    Ok(out)
}

/// (key, value, timestamp) of one record for `build_batch`.
pub type SimpleRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// Builds an uncompressed batch from already encoded records; used by tests and tools that
/// need valid batches without a Kafka client.
pub fn build_batch(
    base_offset: i64,
    leader_epoch: i32,
    first_timestamp: i64,
    records: &[SimpleRecord],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (key, value, ts)) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0u8); // attributes
        put_varlong(&mut rec, ts - first_timestamp);
        put_varlong(&mut rec, i as i64);
        match key {
            Some(k) => {
                put_varlong(&mut rec, k.len() as i64);
                rec.extend_from_slice(k);
            }
            None => put_varlong(&mut rec, -1),
        }
        match value {
            Some(v) => {
                put_varlong(&mut rec, v.len() as i64);
                rec.extend_from_slice(v);
            }
            None => put_varlong(&mut rec, -1),
        }
        put_varlong(&mut rec, 0); // headers
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let max_ts = records.iter().map(|r| r.2).max().unwrap_or(first_timestamp);
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    put_batch_header(
        &mut b,
        BatchShape {
            base_offset,
            leader_epoch,
            body_len: body.len(),
            records: records.len(),
            first_timestamp,
            max_timestamp: max_ts,
        },
    );
    b.extend_from_slice(&body);
    seal_crc(&mut b);
    b
}

/// What `put_batch_header` writes for an uncompressed, non-idempotent batch.
pub(crate) struct BatchShape {
    pub base_offset: i64,
    pub leader_epoch: i32,
    /// Bytes of the records that follow the header.
    pub body_len: usize,
    pub records: usize,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
}

/// Writes a batch header at the end of `b` (which must be empty: `seal_crc` covers
/// everything after it), with a zero CRC until `seal_crc`.
pub(crate) fn put_batch_header(b: &mut Vec<u8>, shape: BatchShape) {
    b.extend_from_slice(&shape.base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + shape.body_len) as i32).to_be_bytes());
    b.extend_from_slice(&shape.leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0, 0, 0, 0]); // crc, filled by seal_crc
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(shape.records.saturating_sub(1) as i32).to_be_bytes());
    b.extend_from_slice(&shape.first_timestamp.to_be_bytes());
    b.extend_from_slice(&shape.max_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(shape.records as i32).to_be_bytes());
}

/// Fills in the CRC of the one whole batch in `b`.
pub(crate) fn seal_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes a zigzag varint (the record fields' encoding).
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// How many bytes `put_varlong` writes for `v`.
pub(crate) fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_validates_and_survives_offset_rewrite() {
        let mut b = build_batch(
            0,
            0,
            1000,
            &[(Some(b"k"), Some(b"v"), 1000), (None, Some(b"w"), 1005)],
        );
        let h = validate(&b).expect("valid");
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.max_timestamp, 1005);
        assign_offset_and_epoch(&mut b, 42, 7);
        let h = validate(&b).expect("still valid after rewrite");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn flipped_bit_fails_crc() {
        let mut b = build_batch(0, 0, 1000, &[(None, Some(b"hello"), 1000)]);
        let n = b.len();
        b[n - 3] ^= 0x01;
        assert!(matches!(validate(&b), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn short_and_garbage_inputs_are_errors_not_panics() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[0u8; 60]).is_err());
        assert!(validate(&[0xffu8; 200]).is_err());
        let b = build_batch(0, 0, 1000, &[(None, Some(b"x"), 1000)]);
        assert!(validate(&b[..b.len() - 1]).is_err());
        assert!(validate_all(&[&b[..], &b[..10]].concat()).is_err());
    }
}
