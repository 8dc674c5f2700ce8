//! How a queue's log holds AMQP messages and delivery state (sans-IO).
//!
//! Every record is a Kafka RecordBatch v2 record, so the log, its CRCs, group commit and
//! replication are the core's. A message is one record: key = routing key, value = body,
//! header `e` = exchange, header `p` = the content properties in their AMQP wire encoding
//! (flags + fields, compact and lossless). Delivery state is written into the same log as
//! records with a header `c` (as RabbitMQ quorum queues log settlements):
//! `c=s` settles (acked, rejected without requeue, purged) the offsets in the value;
//! `c=d` marks offsets delivered at least once, so after a restart they come back with
//! `redelivered=true`; `c=h` announces a delivery horizon (one offset, H): no message at
//! or past H has been delivered. Delivery marks are written lazily, so a power cut or a
//! failover can lose the last ones; the horizon is made durable (and replicated) before
//! any message at or past the previous one goes out, so after such a restart every
//! unsettled message below it is flagged `redelivered=true` (it may have been delivered).
//! Offsets in a control value are 8-byte big-endian integers.

use arctern_storage::records::{
    decode_batches as decode_records, encode_batch, encode_one_record, PlainRecord,
};
use bytes::Bytes;

/// Most offsets in one control record (bounds its size to 64 KiB).
pub const MAX_OFFSETS_PER_CONTROL: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub exchange: String,
    pub routing_key: String,
    /// Content properties, AMQP wire encoding (see `wire::encode_properties`).
    pub properties: Bytes,
    pub body: Bytes,
    /// When it was appended (ms since the epoch); `encode_message` takes its own.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Settled,
    Delivered,
    Horizon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRecord {
    Message(StoredMessage),
    Control(ControlKind, Vec<i64>),
}

fn record(key: Option<Bytes>, value: Bytes, headers: Vec<(String, Option<Bytes>)>) -> PlainRecord {
    PlainRecord {
        key,
        value: Some(value),
        headers,
        ..PlainRecord::default()
    }
}

/// One message as one batch, ready for `Partition::append`.
pub fn encode_message(m: &StoredMessage, timestamp: i64) -> Vec<u8> {
    encode_one_record(
        Some(m.routing_key.as_bytes()),
        &m.body,
        &[("e", m.exchange.as_bytes()), ("p", &m.properties)],
        timestamp,
    )
}

/// Control records for `offsets`, chunked, as one batch.
pub fn encode_control(
    kind: ControlKind,
    offsets: &[i64],
    timestamp: i64,
) -> Result<Vec<u8>, String> {
    let tag = match kind {
        ControlKind::Settled => "s",
        ControlKind::Delivered => "d",
        ControlKind::Horizon => "h",
    };
    let records: Vec<PlainRecord> = offsets
        .chunks(MAX_OFFSETS_PER_CONTROL)
        .map(|chunk| {
            let mut v = Vec::with_capacity(chunk.len() * 8);
            for o in chunk {
                v.extend_from_slice(&o.to_be_bytes());
            }
            let headers = vec![("c".to_string(), Some(Bytes::from_static(tag.as_bytes())))];
            record(None, Bytes::from(v), headers)
        })
        .collect();
    encode_batch(&records, timestamp).map_err(|e| e.to_string())
}

/// Decodes stored batches into (offset, record). Records that are neither (written by a
/// Kafka client into the queue's topic) are returned as messages with empty properties.
pub fn decode_batches(bytes: Vec<u8>) -> Result<Vec<(i64, QueueRecord)>, String> {
    let mut out = Vec::new();
    for r in decode_records(bytes).map_err(|e| e.to_string())? {
        if r.control {
            continue;
        }
        if let Some(c) = r.header("c") {
            let kind = match &c[..] {
                b"s" => ControlKind::Settled,
                b"d" => ControlKind::Delivered,
                b"h" => ControlKind::Horizon,
                _ => continue,
            };
            let offsets = r
                .value
                .unwrap_or_default()
                .chunks_exact(8)
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                .collect();
            out.push((r.offset, QueueRecord::Control(kind, offsets)));
            continue;
        }
        let exchange = r
            .header("e")
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let properties = r
            .header("p")
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(&[0, 0]));
        out.push((
            r.offset,
            QueueRecord::Message(StoredMessage {
                exchange,
                routing_key: r
                    .key
                    .map(|k| String::from_utf8_lossy(&k).into_owned())
                    .unwrap_or_default(),
                properties,
                body: r.value.unwrap_or_default(),
                timestamp: r.timestamp,
            }),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_control_round_trip() {
        let m = StoredMessage {
            exchange: "amq.topic".into(),
            routing_key: "a.b".into(),
            properties: Bytes::from(crate::wire::encode_properties(
                &amq_protocol::protocol::basic::AMQPProperties::default().with_delivery_mode(2),
            )),
            body: Bytes::from_static(b"hello"),
            timestamp: 1,
        };
        let mut bytes = encode_message(&m, 1);
        let offsets: Vec<i64> = (0..20_000).collect();
        bytes.extend(encode_control(ControlKind::Settled, &offsets, 2).unwrap());
        let got = decode_batches(bytes).unwrap();
        assert_eq!(got[0].1, QueueRecord::Message(m));
        let mut all = Vec::new();
        for (_, r) in &got[1..] {
            match r {
                QueueRecord::Control(ControlKind::Settled, o) => all.extend(o.iter().copied()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(all, offsets);
        assert_eq!(got.len(), 1 + 20_000usize.div_ceil(MAX_OFFSETS_PER_CONTROL));
    }

    #[test]
    fn a_delivery_horizon_round_trips() {
        let bytes = encode_control(ControlKind::Horizon, &[1024], 3).unwrap();
        let got = decode_batches(bytes).unwrap();
        assert_eq!(
            got,
            vec![(0, QueueRecord::Control(ControlKind::Horizon, vec![1024]))]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_batches(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 1, 2]).is_err());
    }
}
