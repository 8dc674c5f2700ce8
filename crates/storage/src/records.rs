//! Whole records in and out of RecordBatch v2 bytes, for state the broker keeps in its own
//! logs (`__consumer_offsets`, AMQP queues). The log itself only ever reads batch headers;
//! this codec is for the layers that write and replay such internal logs, so that they
//! share one encoding (the `kafka-protocol` crate's) instead of each building batches.

use bytes::{Bytes, BytesMut};

use crate::batch::{put_batch_header, put_varlong, seal_crc, varlong_len, BatchShape, HEADER_LEN};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One record of an internal log. `offset` is ignored when encoding (the log assigns
/// offsets on append) and is the stored offset when decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlainRecord {
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; on encode the batch's timestamp is used instead.
    pub timestamp: i64,
    /// A transaction marker written by Kafka clients (never by the encoder here).
    pub control: bool,
}

impl PlainRecord {
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("record batch codec: {0}")]
pub struct RecordsError(String);

/// `records` as one uncompressed, non-idempotent RecordBatch v2, ready for an append.
pub fn encode_batch(records: &[PlainRecord], timestamp: i64) -> Result<Vec<u8>, RecordsError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    // Sized up front: growing it record by record was a series of reallocations.
    let payload: usize = records
        .iter()
        .map(|r| {
            r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 10)
                    .sum::<usize>()
                + 32
        })
        .sum();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload);
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| RecordsError(e.to_string()))?;
    Ok(Vec::from(buf))
}

/// One record as one batch, byte for byte what `encode_batch` makes of it, written
/// straight into one buffer: the AMQP publish path stores every message this way, and the
/// general encoder's intermediate records and copies were a tenth of its CPU.
pub fn encode_one_record(
    key: Option<&[u8]>,
    value: &[u8],
    headers: &[(&str, &[u8])],
    timestamp: i64,
) -> Vec<u8> {
    let field = |len: Option<usize>| len.map_or(1, |n| varlong_len(n as i64) + n);
    // attributes, timestamp delta and offset delta take a byte each.
    let record_len = 3
        + field(key.map(<[u8]>::len))
        + field(Some(value.len()))
        + varlong_len(headers.len() as i64)
        + headers
            .iter()
            .map(|(k, v)| field(Some(k.len())) + field(Some(v.len())))
            .sum::<usize>();
    let body_len = varlong_len(record_len as i64) + record_len;
    let mut b = Vec::with_capacity(HEADER_LEN + body_len);
    put_batch_header(
        &mut b,
        BatchShape {
            base_offset: 0,
            leader_epoch: -1,
            body_len,
            records: 1,
            first_timestamp: timestamp,
            max_timestamp: timestamp,
        },
    );
    put_varlong(&mut b, record_len as i64);
    b.extend_from_slice(&[0, 0, 0]);
    let put_field = |b: &mut Vec<u8>, f: Option<&[u8]>| match f {
        Some(f) => {
            put_varlong(b, f.len() as i64);
            b.extend_from_slice(f);
        }
        None => put_varlong(b, -1),
    };
    put_field(&mut b, key);
    put_field(&mut b, Some(value));
    put_varlong(&mut b, headers.len() as i64);
    for (k, v) in headers {
        put_field(&mut b, Some(k.as_bytes()));
        put_field(&mut b, Some(v));
    }
    seal_crc(&mut b);
    b
}

/// Every record of the whole batches in `bytes` (any compression), in offset order.
pub fn decode_batches(bytes: Vec<u8>) -> Result<Vec<PlainRecord>, RecordsError> {
    let mut buf = Bytes::from(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| RecordsError(e.to_string()))?;
        out.extend(set.records.into_iter().map(|r| {
            PlainRecord {
                offset: r.offset,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                timestamp: r.timestamp,
                control: r.control,
            }
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_offsets_from_the_batch() {
        let recs = vec![
            PlainRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                ..PlainRecord::default()
            },
            PlainRecord {
                value: None,
                ..PlainRecord::default()
            },
        ];
        let got = decode_batches(encode_batch(&recs, 7).unwrap()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].offset, 0);
        assert_eq!(got[1].offset, 1);
        assert_eq!(got[0].header("h").map(|b| &b[..]), Some(&b"x"[..]));
        assert_eq!(got[0].key, recs[0].key);
        assert_eq!(got[1].value, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_batches(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 1, 2]).is_err());
    }

    /// Found by the record_batch fuzz target: a record's timestamp delta that overflows the
    /// batch's base timestamp panicked (overflow check); it wraps, as in Kafka's decoder.
    #[test]
    fn a_timestamp_delta_that_overflows_wraps() {
        let v: &[u8] = b"v";
        let mut b = crate::batch::build_batch(0, 0, 0, &[(None, Some(v), i64::MAX)]);
        b[27..35].copy_from_slice(&1i64.to_be_bytes()); // base timestamp
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let recs = decode_batches(b).unwrap();
        assert_eq!(recs[0].timestamp, i64::MIN);
    }

    /// Found by the record_batch fuzz target: a snappy batch whose raw-snappy header claims
    /// 1.6 GB from a few bytes was allocated in full before decompressing; it is refused.
    #[test]
    fn a_snappy_length_beyond_what_the_data_can_hold_is_an_error() {
        let v: &[u8] = b"v";
        let mut b = crate::batch::build_batch(0, 0, 0, &[(None, Some(v), 0)]);
        b.truncate(crate::batch::HEADER_LEN);
        b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x06, 0, 0, 0]); // varint 1.6 GB
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[21..23].copy_from_slice(&2i16.to_be_bytes()); // snappy
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let e = decode_batches(b).unwrap_err();
        assert!(e.0.contains("claims"), "{e}");
    }

    /// A "decompression bomb": a few kilobytes of compressed batch that expand past the
    /// vendored decoder's cap (64 MiB) are a decode error, not that much memory; a batch
    /// just under the cap still decodes.
    #[test]
    fn a_batch_that_decompresses_past_the_cap_is_refused() {
        use kafka_protocol::compression::MAX_DECOMPRESSED_BATCH_BYTES;
        let batch = |value_len: usize, compression: Compression| {
            let record = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(vec![0u8; value_len])),
                headers: Default::default(),
            };
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut buf, &[record], &options).unwrap();
            Vec::from(buf)
        };
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Lz4] {
            let bomb = batch(MAX_DECOMPRESSED_BATCH_BYTES + 1, compression);
            assert!(
                bomb.len() < 1 << 20,
                "{compression:?}: {} bytes",
                bomb.len()
            );
            let e = decode_batches(bomb).unwrap_err();
            assert!(e.0.contains("decompress"), "{compression:?}: {e}");
            let fine = batch(MAX_DECOMPRESSED_BATCH_BYTES - 1024, compression);
            assert_eq!(decode_batches(fine).unwrap().len(), 1, "{compression:?}");
        }
    }

    /// Found by the record_batch fuzz target: a CRC-valid batch claiming 1.8 billion
    /// records made the decoder reserve that many records up front,
    /// an allocation failure that aborts the process. Now it is a decode error.
    #[test]
    fn a_huge_record_count_is_an_error_not_an_abort() {
        let mut b: Vec<u8> = vec![
            0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 106, 0, 0, 0, 0, 2, 168, 246, 123, 12, 0, 0, 0, 0, 0,
            0, 0, 0, 1, 162, 78, 95, 231, 43, 0, 0, 1, 48, 224, 64, 209, 96, 69, 3, 9, 111, 124,
            238, 144, 219, 68, 131, 149, 170, 29, 212, 106, 167, 141, 253, 60, 56, 177, 225, 22,
            54, 12, 115, 177, 225, 164, 255, 10, 125, 219, 56, 224, 33, 181, 225, 164, 99, 47, 106,
            108, 28, 114, 160, 216, 112, 98, 58, 195, 45, 63, 138, 35, 110, 19, 27, 78, 26, 119,
            80, 243, 81, 28, 231, 193, 139, 6, 79, 13, 143, 192, 9, 115,
        ];
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_batches(b).is_err());
    }

    #[test]
    fn one_record_encodes_as_the_general_encoder_does() {
        let big = vec![7u8; 70_000];
        let long_key = vec![b'k'; 300];
        // Distinct names: the general encoder keeps headers in a map.
        let names: Vec<String> = (0..70).map(|i| format!("h{i}")).collect();
        type Case<'a> = (Option<&'a [u8]>, &'a [u8], Vec<(&'a str, &'a [u8])>);
        let cases: Vec<Case> = vec![
            (None, b"", vec![]),
            (Some(b""), b"v", vec![]),
            (
                Some(b"a.b"),
                b"hello",
                vec![("e", b"amq.topic"), ("p", &[0, 0])],
            ),
            (Some(&long_key), &big, vec![("e", b""), ("p", &big[..200])]),
            (
                None,
                &big[..127],
                names.iter().map(|n| (n.as_str(), &b"x"[..])).collect(),
            ),
        ];
        for (key, value, headers) in cases {
            let general = encode_batch(
                &[PlainRecord {
                    key: key.map(Bytes::copy_from_slice),
                    value: Some(Bytes::copy_from_slice(value)),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), Some(Bytes::copy_from_slice(v))))
                        .collect(),
                    ..PlainRecord::default()
                }],
                1_700_000_000_123,
            )
            .unwrap();
            let one = encode_one_record(key, value, &headers, 1_700_000_000_123);
            assert_eq!(one, general, "key {key:?}, {} value bytes", value.len());
            crate::batch::validate(&one).unwrap();
        }
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            1 << 40,
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            crate::batch::put_varlong(&mut b, v);
            assert_eq!(crate::batch::varlong_len(v), b.len(), "{v}");
        }
    }
}
