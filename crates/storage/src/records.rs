//! Whole records in and out of RecordBatch v2 bytes, for state the broker keeps in its own
//! logs (`__consumer_offsets`, AMQP queues). The log itself only ever reads batch headers;
//! this codec is for the layers that write and replay such internal logs, so that they
//! share one encoding (the `kafka-protocol` crate's) instead of each building batches.

use bytes::{Bytes, BytesMut};
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
    let mut buf = BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + payload);
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

/// The fixed part of a RecordBatch v2 (its header).
const RECORD_BATCH_OVERHEAD: usize = 61;

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
}
