//! Topic creation, metadata and offset look-ups used to set up and check a benchmark run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::conn::Conn;

/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Formats a Kafka error code with its name, e.g. `NotLeaderOrFollower (6)`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(c)) => format!("unknown error ({c})"),
        Some(e) => format!("{e} ({code})"),
        None => "no error (0)".to_string(),
    }
}

pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Creates `topic` with `partitions` partitions. With a replication factor above 1 the
/// replicas are assigned explicitly with the bootstrap broker first (the preferred
/// leader), so a single-connection bench reaches every partition's leader. An existing
/// topic is kept; returns `false` in that case.
pub async fn create_topic(
    conn: &mut Conn,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<bool> {
    let mut creatable = CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    if replication_factor > 1 {
        let brokers = broker_ids(conn, bootstrap).await?;
        let rf = usize::try_from(replication_factor).context("replication factor")?;
        if brokers.len() < rf {
            bail!(
                "replication factor {rf} needs {rf} brokers; the cluster has {}",
                brokers.len()
            );
        }
        let replicas: Vec<BrokerId> = brokers.into_iter().take(rf).map(BrokerId).collect();
        creatable = creatable
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                (0..partitions)
                    .map(|p| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(p)
                            .with_broker_ids(replicas.clone())
                    })
                    .collect(),
            );
    } else {
        creatable = creatable
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor);
    }
    let req = CreateTopicsRequest::default()
        .with_topics(vec![creatable])
        .with_timeout_ms(30_000);
    let (_, resp) = conn.call(&req).await.context("CreateTopics")?;
    let Some(result) = resp.topics.first() else {
        bail!("CreateTopics response has no topic result");
    };
    match result.error_code {
        0 => Ok(true),
        TOPIC_ALREADY_EXISTS => Ok(false),
        code => bail!(
            "CreateTopics {topic}: {}{}",
            error_name(code),
            result
                .error_message
                .as_ref()
                .map(|m| format!(": {}", m.as_str()))
                .unwrap_or_default()
        ),
    }
}

/// Broker ids of the cluster, the one at `bootstrap` first.
async fn broker_ids(conn: &mut Conn, bootstrap: &str) -> Result<Vec<i32>> {
    let req = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let (_, resp) = conn.call(&req).await.context("Metadata")?;
    let mut ids: Vec<(bool, i32)> = resp
        .brokers
        .iter()
        .map(|b| {
            let addr = format!("{}:{}", b.host.as_str(), b.port);
            (addr != bootstrap, b.node_id.0)
        })
        .collect();
    ids.sort();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// Waits until the metadata of `topic` shows every partition with a leader; returns the
/// number of partitions.
pub async fn wait_for_topic(conn: &mut Conn, topic: &str, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let mut last_problem;
    loop {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let (_, resp) = conn.call(&req).await.context("Metadata")?;
        match resp.topics.first() {
            None => last_problem = "topic missing from metadata".to_string(),
            Some(t) if t.error_code != 0 => last_problem = error_name(t.error_code),
            Some(t) if t.partitions.is_empty() => last_problem = "no partitions".to_string(),
            Some(t) => {
                let leaderless: Vec<i32> = t
                    .partitions
                    .iter()
                    .filter(|p| p.error_code != 0 || p.leader_id < BrokerId(0))
                    .map(|p| p.partition_index)
                    .collect();
                if leaderless.is_empty() {
                    return i32::try_from(t.partitions.len()).context("too many partitions");
                }
                last_problem = format!("partitions without leader: {leaderless:?}");
            }
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} not ready after {timeout:?}: {last_problem}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ListOffsets for every partition of `topic`: `timestamp` -1 = latest, -2 = earliest.
pub async fn list_offsets(
    conn: &mut Conn,
    topic: &str,
    partitions: i32,
    timestamp: i64,
) -> Result<Vec<i64>> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let (_, resp) = conn.call(&req).await.context("ListOffsets")?;
    let mut out = vec![None; usize::try_from(partitions).context("partitions")?];
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets {topic}-{}: {}",
                    p.partition_index,
                    error_name(p.error_code)
                );
            }
            if let Some(slot) = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| out.get_mut(i))
            {
                *slot = Some(p.offset);
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, o)| o.with_context(|| format!("ListOffsets: no answer for partition {i}")))
        .collect()
}

/// After an acks=0 produce there is no completion signal: polls the log end offsets until
/// they add up to `expected` records (when known) or stop moving, up to `timeout`.
pub async fn wait_for_log_end(
    conn: &mut Conn,
    topic: &str,
    partitions: i32,
    expected: Option<i64>,
    timeout: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    let mut last = -1;
    let mut stable = 0;
    loop {
        let total: i64 = list_offsets(conn, topic, partitions, -1)
            .await?
            .iter()
            .sum();
        if expected == Some(total) {
            return Ok(total);
        }
        stable = if total == last { stable + 1 } else { 0 };
        last = total;
        if (expected.is_none() && stable >= 5) || Instant::now() >= deadline {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
