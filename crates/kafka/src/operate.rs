//! The admin APIs Kafka's CLI and UIs (kafka-ui, AKHQ) call to look after a cluster:
//! DescribeLogDirs (replica sizes per log directory), ElectLeaders (preferred and unclean
//! elections on demand) and DescribeProducers (the idempotent producers a leader tracks).

use arctern_core::{Broker, ElectionOutcome, ElectionType, ReplicaUsage};
use arctern_kafka_wire::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use arctern_kafka_wire::kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use arctern_kafka_wire::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use arctern_kafka_wire::kafka_protocol::messages::*;
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;
use arctern_kafka_wire::ResponseError;
use arctern_security::acl::AclOperation;

use crate::authz::Authz;
use crate::errors::error_code;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Kafka's value for "unknown" in DescribeLogDirs' total/usable bytes.
const UNKNOWN_BYTES: i64 = -1;

/// (total, usable) bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let total = st.f_blocks.saturating_mul(st.f_frsize);
            let usable = st.f_bavail.saturating_mul(st.f_frsize);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "statvfs of the log dir failed");
            (UNKNOWN_BYTES, UNKNOWN_BYTES)
        }
    }
}

/// Whether a replica is asked for: `None` = every topic; a topic with an empty partition
/// list names none of its partitions (as in Kafka).
fn wanted(
    filter: Option<&[describe_log_dirs_request::DescribableLogDirTopic]>,
    r: &ReplicaUsage,
) -> bool {
    filter.is_none_or(|topics| {
        topics
            .iter()
            .any(|t| t.topic.0.as_str() == r.topic && t.partitions.contains(&r.partition))
    })
}

/// DescribeLogDirs (key 35, v1-v4): Arctern's one data directory, with every replica of
/// the requested topics hosted here. Needs DESCRIBE on the cluster.
pub(crate) fn describe_log_dirs(
    broker: &Broker,
    req: DescribeLogDirsRequest,
    authz: &Authz,
) -> DescribeLogDirsResponse {
    if !authz.cluster(AclOperation::Describe) {
        // v3+ carry the error; older versions get no directories, as Kafka answers.
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let dir = broker.log_dir();
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for r in broker.replica_usage() {
        if !wanted(req.topics.as_deref(), &r) {
            continue;
        }
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(r.partition)
            .with_partition_size(i64::try_from(r.size_bytes).unwrap_or(i64::MAX))
            .with_offset_lag(r.offset_lag)
            .with_is_future_key(false);
        // replica_usage is ordered by topic, so a topic's partitions are adjacent.
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == r.topic => t.partitions.push(partition),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(s(r.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let (total, usable) = disk_space(&dir);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(s(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

fn election_result(partition: i32, outcome: ElectionOutcome) -> PartitionResult {
    let (error, message) = match outcome {
        ElectionOutcome::Elected => return PartitionResult::default().with_partition_id(partition),
        ElectionOutcome::NotNeeded => (ResponseError::ElectionNotNeeded, None),
        ElectionOutcome::PreferredNotAvailable(m) => {
            (ResponseError::PreferredLeaderNotAvailable, Some(m))
        }
        ElectionOutcome::EligibleNotAvailable(m) => {
            (ResponseError::EligibleLeadersNotAvailable, Some(m))
        }
        ElectionOutcome::UnknownPartition => (ResponseError::UnknownTopicOrPartition, None),
        ElectionOutcome::Failed(m) => (ResponseError::RequestTimedOut, Some(m)),
    };
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(error.code())
        .with_error_message(Some(s(message.unwrap_or_else(|| error.to_string()))))
}

/// Groups per-partition results by topic, in the order first seen.
fn by_topic(results: Vec<(String, PartitionResult)>) -> Vec<ReplicaElectionResult> {
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, r) in results {
        match out.iter_mut().find(|t| t.topic.0.as_str() == topic) {
            Some(t) => t.partition_result.push(r),
            None => out.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(s(topic)))
                    .with_partition_result(vec![r]),
            ),
        }
    }
    out
}

/// ElectLeaders (key 43, v0-v2): preferred (0) or unclean (1) elections, proposed through
/// the metadata quorum. Null partitions = every partition, and then, as Kafka, partitions
/// needing no election are left out. Needs ALTER on the cluster.
pub(crate) async fn elect_leaders(
    broker: &Broker,
    req: ElectLeadersRequest,
    authz: &Authz,
) -> ElectLeadersResponse {
    let all = req.topic_partitions.is_none();
    let named: Vec<(String, i32)> = req
        .topic_partitions
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| {
            let name = t.topic.0.to_string();
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        })
        .collect();
    if !authz.cluster(AclOperation::Alter) {
        // Only the partitions the request named: "all" must not list the cluster's topics
        // to someone who may not even describe them.
        let e = ResponseError::ClusterAuthorizationFailed;
        let results = named
            .into_iter()
            .map(|(t, p)| {
                let r = PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string())));
                (t, r)
            })
            .collect();
        return ElectLeadersResponse::default()
            .with_error_code(e.code())
            .with_replica_election_results(by_topic(results));
    }
    let kind = match req.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            tracing::debug!(
                election_type = other,
                "ElectLeaders with an unknown election type"
            );
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    let partitions = if all { broker.all_partitions() } else { named };
    let outcomes = futures::future::join_all(partitions.into_iter().map(|(topic, p)| async move {
        let outcome = broker.elect_leader(&topic, p, kind).await;
        (topic, p, outcome)
    }))
    .await;
    let results = outcomes
        .into_iter()
        .filter(|(_, _, o)| !(all && *o == ElectionOutcome::NotNeeded))
        .map(|(t, p, o)| (t, election_result(p, o)))
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(by_topic(results))
}

/// DescribeProducers (key 61, v0): per partition, the idempotent producers its leader
/// tracks. Needs READ on the topic; a replica that does not lead answers
/// NOT_LEADER_OR_FOLLOWER.
pub(crate) fn describe_producers(
    broker: &Broker,
    req: DescribeProducersRequest,
    authz: &Authz,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let readable = authz.topic(AclOperation::Read, &t.name.0);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    if !readable {
                        return base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let producers = broker
                        .partition(&t.name.0, index)
                        .and_then(|p| p.active_producers());
                    match producers {
                        Ok(list) => base.with_active_producers(
                            list.into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.producer_epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                        Err(e) => base
                            .with_error_code(error_code(&e))
                            .with_error_message(Some(s(e.to_string()))),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
