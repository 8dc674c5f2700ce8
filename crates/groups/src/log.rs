//! Where the coordinator's records go: the `__consumer_offsets` partitions of the broker
//! core, written with acks=all. A trait so the state machine can be tested without a broker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arctern_core::{Acks, Broker, CoreError};
use arctern_storage::records::{self, PlainRecord};
use bytes::Bytes;

use crate::error::GroupError;

/// Kafka's internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Read size when loading a partition.
const LOAD_READ_BYTES: usize = 4 << 20;

/// Resolves once the append is acknowledged (replicated to every ISR member).
pub type AppendWait = Pin<Box<dyn Future<Output = Result<(), GroupError>> + Send>>;

/// One record: a key and a value, or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

pub trait OffsetsLog: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `records` as one batch to `partition` if this node still leads it at
    /// `leader_epoch`. The append itself happens now (so calls are ordered); the returned
    /// future waits for acks=all.
    fn append(
        &self,
        partition: i32,
        leader_epoch: i32,
        records: Vec<KeyValue>,
    ) -> Result<AppendWait, GroupError>;

    /// Every record of the partition, from its log start to its log end.
    fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError>;
}

/// Kafka's mapping of append errors to coordinator errors
/// (GroupMetadataManager / CoordinatorRuntime).
pub fn append_error(e: &CoreError) -> GroupError {
    match e {
        CoreError::NotEnoughReplicas(_)
        | CoreError::NotEnoughReplicasAfterAppend(_)
        | CoreError::UnknownTopicOrPartition(_)
        | CoreError::MetadataUnavailable(_)
        | CoreError::LeaderNotAvailable(_) => GroupError::CoordinatorNotAvailable,
        CoreError::NotLeaderOrFollower(_)
        | CoreError::Storage(_)
        | CoreError::ShuttingDown
        | CoreError::FencedLeaderEpoch(_)
        | CoreError::UnknownLeaderEpoch(_) => GroupError::NotCoordinator,
        CoreError::MessageTooLarge { .. } | CoreError::RecordBatchTooLarge(_) => {
            GroupError::InvalidCommitOffsetSize
        }
        _ => GroupError::CoordinatorNotAvailable,
    }
}

/// Encodes records as one uncompressed RecordBatch v2 (offsets are assigned on append).
pub fn encode_batch(records: &[KeyValue], timestamp: i64) -> Result<Vec<u8>, GroupError> {
    let records: Vec<PlainRecord> = records
        .iter()
        .map(|kv| PlainRecord {
            key: Some(kv.key.clone()),
            value: kv.value.clone(),
            ..PlainRecord::default()
        })
        .collect();
    records::encode_batch(&records, timestamp).map_err(|e| {
        tracing::error!(error = %e, "cannot encode an offsets batch");
        GroupError::CoordinatorNotAvailable
    })
}

/// Decodes stored batches into key/value records (records without a key are skipped) and
/// the offset of the last record seen.
pub fn decode_batches(bytes: Vec<u8>) -> Result<(Vec<KeyValue>, Option<i64>), String> {
    let all = records::decode_batches(bytes).map_err(|e| e.to_string())?;
    let last = all.last().map(|r| r.offset);
    let out = all
        .into_iter()
        .filter(|r| !r.control)
        .filter_map(|r| {
            r.key.map(|key| KeyValue {
                key,
                value: r.value,
            })
        })
        .collect();
    Ok((out, last))
}

/// The broker core's `__consumer_offsets` partitions.
#[derive(Debug)]
pub struct BrokerOffsetsLog {
    broker: Arc<Broker>,
    timeout: Duration,
}

impl BrokerOffsetsLog {
    pub fn new(broker: Arc<Broker>, timeout: Duration) -> Self {
        BrokerOffsetsLog { broker, timeout }
    }
}

impl OffsetsLog for BrokerOffsetsLog {
    fn append(
        &self,
        partition: i32,
        leader_epoch: i32,
        records: Vec<KeyValue>,
    ) -> Result<AppendWait, GroupError> {
        let p = self
            .broker
            .partition(OFFSETS_TOPIC, partition)
            .map_err(|e| append_error(&e))?;
        // Loaded state belongs to one leader epoch; a newer one reloads first.
        if !p.is_leader() || p.leader_epoch() != leader_epoch {
            return Err(GroupError::NotCoordinator);
        }
        let mut bytes = encode_batch(&records, arctern_core::now_ms())?;
        let appended = p.append(&mut bytes, Acks::All).map_err(|e| {
            tracing::debug!(partition, error = %e, "offsets append refused");
            append_error(&e)
        })?;
        let timeout = self.timeout;
        Ok(Box::pin(async move {
            match tokio::time::timeout(timeout, p.wait_acknowledgeable(&appended)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    tracing::debug!(partition, error = %e, "offsets append not acknowledged");
                    Err(append_error(&e))
                }
                // REQUEST_TIMED_OUT maps to COORDINATOR_NOT_AVAILABLE.
                Err(_) => Err(GroupError::CoordinatorNotAvailable),
            }
        }))
    }

    fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError> {
        let p = self
            .broker
            .partition(OFFSETS_TOPIC, partition)
            .map_err(|e| append_error(&e))?;
        let mut offset = p.log_start_offset().map_err(|e| append_error(&e))?;
        let mut out = Vec::new();
        loop {
            let fetched = p
                .read_to_log_end(offset, LOAD_READ_BYTES)
                .map_err(|e| append_error(&e))?;
            if fetched.bytes.is_empty() {
                return Ok(out);
            }
            let (records, last) = decode_batches(fetched.bytes).map_err(|e| {
                tracing::error!(partition, offset, error = %e, "undecodable batch in the offsets topic");
                GroupError::CoordinatorNotAvailable
            })?;
            out.extend(records);
            match last {
                Some(last) if last >= offset => offset = last + 1,
                // A batch with no records cannot advance the read; stop rather than spin.
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let records = vec![
            KeyValue {
                key: Bytes::from_static(b"k1"),
                value: Some(Bytes::from_static(b"v1")),
            },
            KeyValue {
                key: Bytes::from_static(b"k2"),
                value: None,
            },
        ];
        let bytes = encode_batch(&records, 1).unwrap();
        let (decoded, last) = decode_batches(bytes).unwrap();
        assert_eq!(decoded, records);
        assert_eq!(last, Some(1));
    }
}
