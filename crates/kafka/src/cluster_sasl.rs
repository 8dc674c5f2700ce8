//! The refusal of replica requests (Fetch and OffsetsForLeaderEpoch with a replica id) from
//! connections that did not prove cluster membership when `cluster.secret` is set. The
//! proof itself is SASL mechanism ARCTERN-CLUSTER (`sasl.rs`), which makes the connection's
//! principal `Node(id)`.

use std::sync::Arc;

use arctern_kafka_wire::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use arctern_kafka_wire::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use arctern_kafka_wire::kafka_protocol::messages::{
    FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use arctern_kafka_wire::ResponseError;
use arctern_security::ClusterSecret;

use crate::handlers::Origin;

/// Whether a replica request (replica_id >= 0) must be refused: a secret is set and the
/// connection did not prove it is a node. Logged here.
fn refuse(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    replica_id: i32,
    api: &str,
) -> bool {
    if replica_id < 0 || secret.is_none() || origin.principal.is_node() {
        return false;
    }
    tracing::warn!(peer = %origin.peer, replica_id, api, principal = %origin.principal.kafka_name(), "refused a replica request from a connection that is no proven cluster node");
    true
}

/// Kafka answers a follower fetch without CLUSTER_ACTION with TOPIC_AUTHORIZATION_FAILED
/// on every partition; the top-level error says why (CLUSTER_AUTHORIZATION_FAILED).
pub fn refuse_fetch(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    req: &FetchRequest,
) -> Option<FetchResponse> {
    if !refuse(secret, origin, req.replica_id.0, "Fetch") {
        return None;
    }
    let responses = req
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(
        FetchResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_responses(responses),
    )
}

/// Kafka requires CLUSTER_ACTION for OffsetsForLeaderEpoch from a replica: every
/// partition gets CLUSTER_AUTHORIZATION_FAILED.
pub fn refuse_offset_for_leader_epoch(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    req: &OffsetForLeaderEpochRequest,
) -> Option<OffsetForLeaderEpochResponse> {
    if !refuse(secret, origin, req.replica_id.0, "OffsetForLeaderEpoch") {
        return None;
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
